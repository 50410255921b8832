// The CPU backend's encoder (BERT-style) ops: LayerNorm, exact GELU and bidirectional packed attention.
//
// Reference mode: plain loops with double accumulation. Fast mode: LayerNorm in fp32 loops, GELU and the
// softmax's exp vectorized (cpu_vector_math.h), attention per (sequence, head) as two fp32 GEMMs through
// the fast CPU GEMM kernels (scores = Q K^T, out = P V),
// items spread over the thread pool.
#include <algorithm>
#include <cmath>
#include <vector>

#include <cblas.h>

#include "server/backend/cpu/cpu_backend.h"
#include "server/backend/cpu/cpu_gemm.h"
#include "server/backend/cpu/cpu_vector_math.h"
#include "server/common/status.h"

namespace qrag::backend {

void CpuBackend::AddLayerNorm(float* x, const float* y, const float* weight, const float* bias, int rows, int dim,
                              float eps, float* out) {
  if (!options_.blas || options_.reference) return Backend::AddLayerNorm(x, y, weight, bias, rows, dim, eps, out);
  pool_->ParallelFor(rows, 16, [&](int64_t begin, int64_t end) {
    cpu::LayerNormRows(x + begin * dim, y + begin * dim, weight, bias, end - begin, dim, eps, out + begin * dim);
  });
}

void CpuBackend::LayerNorm(const float* x, const float* weight, const float* bias, int rows, int dim, float eps,
                           float* out) {
  if (options_.blas && !options_.reference) {
    // Vendor-GEMM mode is not batch-invariant anyway: the vectorized rows (LayerNormRows reads x before it
    // writes out, so in place is fine; x itself is not written without y).
    pool_->ParallelFor(rows, 16, [&](int64_t begin, int64_t end) {
      cpu::LayerNormRows(const_cast<float*>(x) + begin * dim, nullptr, weight, bias, end - begin, dim, eps,
                         out + begin * dim);
    });
    return;
  }
  const bool reference = options_.reference;
  auto work = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * dim;
      float* o = out + r * dim;
      float mean, inv;
      if (reference) {
        double s = 0;
        for (int j = 0; j < dim; ++j) s += xr[j];
        const double m = s / dim;
        double ss = 0;
        for (int j = 0; j < dim; ++j) ss += (xr[j] - m) * (xr[j] - m);
        mean = static_cast<float>(m);
        inv = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
      } else {
        float s = 0;
        for (int j = 0; j < dim; ++j) s += xr[j];
        mean = s / dim;
        float ss = 0;
        for (int j = 0; j < dim; ++j) ss += (xr[j] - mean) * (xr[j] - mean);
        inv = 1.0f / std::sqrt(ss / dim + eps);
      }
      for (int j = 0; j < dim; ++j) o[j] = (xr[j] - mean) * inv * weight[j] + bias[j];
    }
  };
  pool_->ParallelFor(rows, 16, work);
}

void CpuBackend::Gelu(const float* x, int64_t n, float* out) {
  constexpr double kInvSqrt2 = 0.70710678118654752440;
  if (options_.reference) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(x[i] * 0.5 * (1.0 + std::erf(x[i] * kInvSqrt2)));
    return;
  }
  pool_->ParallelFor(n, 4096, [&](int64_t begin, int64_t end) { cpu::GeluErf(x + begin, end - begin, out + begin); });
}

int64_t CpuBackend::EncoderAttention(const float* q, const float* k, const float* v,
                                     absl::Span<const int32_t> seq_offsets, const AttentionShape& shape,
                                     float* out) {
  QRAG_CHECK(shape.n_kv_heads == shape.n_heads);
  QRAG_CHECK(!seq_offsets.empty());
  const int hd = shape.head_dim, heads = shape.n_heads;
  const int64_t stride = static_cast<int64_t>(heads) * hd;
  const int num_seqs = static_cast<int>(seq_offsets.size()) - 1;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const bool reference = options_.reference;

  int64_t ops = 0;
  for (int s = 0; s < num_seqs; ++s) {
    const int64_t len = seq_offsets[s + 1] - seq_offsets[s];
    ops += 2LL * 2 * len * len * hd * heads;
  }

  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> qh, kh, vt, scores, oh;
    std::vector<double> acc(hd);
    for (int64_t item = begin; item < end; ++item) {
      const int s = static_cast<int>(item / heads), h = static_cast<int>(item % heads);
      const int64_t first = seq_offsets[s];
      const int len = seq_offsets[s + 1] - seq_offsets[s];
      if (len <= 0) continue;
      const int64_t off = static_cast<int64_t>(h) * hd;
      scores.resize(static_cast<size_t>(len) * len);
      if (reference) {
        for (int i = 0; i < len; ++i) {
          const float* qi = q + (first + i) * stride + off;
          float* row = scores.data() + static_cast<int64_t>(i) * len;
          for (int j = 0; j < len; ++j) {
            const float* kj = k + (first + j) * stride + off;
            double d = 0;
            for (int c = 0; c < hd; ++c) d += static_cast<double>(qi[c]) * kj[c];
            row[j] = static_cast<float>(d) * scale;
          }
          const float max_score = *std::max_element(row, row + len);
          double sum = 0;
          for (int j = 0; j < len; ++j) sum += std::exp(static_cast<double>(row[j]) - max_score);
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int j = 0; j < len; ++j) {
            const double p = std::exp(static_cast<double>(row[j]) - max_score) / sum;
            const float* vj = v + (first + j) * stride + off;
            for (int c = 0; c < hd; ++c) acc[c] += p * vj[c];
          }
          float* o = out + (first + i) * stride + off;
          for (int c = 0; c < hd; ++c) o[c] = static_cast<float>(acc[c]);
        }
        continue;
      }
      if (options_.blas) {
        // OpenBLAS (single-threaded on this worker): the head's q, k, v read in place (leading dimension =
        // the packed row stride), scores = scale * q k^T, softmax, out = scores v written in place.
        const float* qb = q + first * stride + off;
        const float* kb = k + first * stride + off;
        const float* vb = v + first * stride + off;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, len, hd, scale, qb, static_cast<int>(stride), kb,
                    static_cast<int>(stride), 0.0f, scores.data(), len);
        cpu::SoftmaxRows(scores.data(), len, len);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, len, hd, len, 1.0f, scores.data(), len, vb,
                    static_cast<int>(stride), 0.0f, out + first * stride + off, static_cast<int>(stride));
        continue;
      }
      // Fast: gather the head's q, k (row-major [len, hd]) and v^T ([hd, len]); two GEMMs.
      qh.resize(static_cast<size_t>(len) * hd);
      kh.resize(static_cast<size_t>(len) * hd);
      vt.resize(static_cast<size_t>(len) * hd);
      oh.resize(static_cast<size_t>(len) * hd);
      for (int i = 0; i < len; ++i) {
        const int64_t row = (first + i) * stride + off;
        for (int c = 0; c < hd; ++c) {
          qh[static_cast<int64_t>(i) * hd + c] = q[row + c] * scale;
          kh[static_cast<int64_t>(i) * hd + c] = k[row + c];
          vt[static_cast<int64_t>(c) * len + i] = v[row + c];
        }
      }
      cpu::GemmKernelOptions ko;  // on this worker's thread
      if (absl::Status st = cpu::GemmF32(qh.data(), len, kh.data(), len, hd, nullptr, scores.data(), ko);
          !st.ok()) {
        RecordError(st);
        return;
      }
      for (int i = 0; i < len; ++i) {
        float* row = scores.data() + static_cast<int64_t>(i) * len;
        const float max_score = *std::max_element(row, row + len);
        const float sum = cpu::ExpShiftedSum(row, len, max_score);
        const float inv = 1.0f / sum;
        for (int j = 0; j < len; ++j) row[j] *= inv;
      }
      if (absl::Status st = cpu::GemmF32(scores.data(), len, vt.data(), hd, len, nullptr, oh.data(), ko);
          !st.ok()) {
        RecordError(st);
        return;
      }
      for (int i = 0; i < len; ++i) {
        std::copy(oh.data() + static_cast<int64_t>(i) * hd, oh.data() + static_cast<int64_t>(i + 1) * hd,
                  out + (first + i) * stride + off);
      }
    }
  };
  pool_->ParallelFor(static_cast<int64_t>(num_seqs) * heads, 1, work);
  return ops;
}

}  // namespace qrag::backend
