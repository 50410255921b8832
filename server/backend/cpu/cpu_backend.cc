#include "server/backend/cpu/cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include <cblas.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <unistd.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/backend/cpu/cpu_gemm.h"
#include "server/backend/cpu/cpu_vector_math.h"
#include "server/common/cpu_features.h"
#include "server/common/status.h"
#include "server/quant/row_quant.h"

namespace qrag::backend {
namespace {

constexpr size_t kAlignment = 64;

// Row of the cache that holds `position` of a sequence with `block_table`.
inline int64_t SlotOf(const AttentionBatch& batch, int token) {
  const int32_t pos = batch.positions[token];
  const auto& table = batch.sequences[batch.token_seq[token]].block_table;
  const size_t block = static_cast<size_t>(pos / batch.block_size);
  QRAG_CHECK(block < table.size());
  return static_cast<int64_t>(table[block]) * batch.block_size + pos % batch.block_size;
}

inline int64_t SlotOfPosition(const AttentionBatch& batch, int seq, int32_t pos) {
  const auto& table = batch.sequences[seq].block_table;
  return static_cast<int64_t>(table[pos / batch.block_size]) * batch.block_size + pos % batch.block_size;
}

}  // namespace

void RestartForOpenBlasKernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user's choice, or this is the restart
  const std::string current = openblas_get_corename();
  const CpuFeatures& f = GetCpuFeatures();
  const char* core = nullptr;
  if (f.avx512f && f.avx512bw && f.avx512vl) {
    if (current == "SkylakeX" || current == "Cooperlake" || current == "SapphireRapids") return;
    core = "SkylakeX";
  } else if (f.avx2 && f.fma) {
    if (current == "Haswell" || current == "Zen" || current == "SkylakeX" || current == "Cooperlake") return;
    core = "Haswell";
  }
  if (core == nullptr) return;  // no better kernels for this CPU
  setenv("OPENBLAS_CORETYPE", core, 1);
  execv("/proc/self/exe", argv);
  // Only on failure: carry on with the kernels OpenBLAS chose (slower, still correct).
  std::fprintf(stderr, "note: could not restart with OPENBLAS_CORETYPE=%s (%s); OpenBLAS runs its %s kernels\n",
               core, std::strerror(errno), current.c_str());
}

std::string CpuBackend::BlasDescription() {
  return absl::StrCat(absl::StripAsciiWhitespace(OPENBLAS_VERSION), " (", openblas_get_corename(), " kernels)");
}

CpuBackend::CpuBackend(const CpuBackendOptions& options)
    : options_(options), pool_(std::make_unique<ThreadPool>(options.reference ? 1 : options.num_threads)) {
  // OpenBLAS runs on the calling thread (process-wide setting): this backend's pool splits the rows.
  if (options_.blas) openblas_set_num_threads(1);
}

CpuBackend::~CpuBackend() = default;

absl::StatusOr<DeviceBuffer> CpuBackend::Allocate(size_t bytes) {
  const size_t rounded = std::max<size_t>(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cpu backend: cannot allocate ", bytes, " bytes"));
  }
  std::memset(p, 0, rounded);
  return DeviceBuffer(this, p, bytes);
}

void CpuBackend::Free(void* data, size_t /*bytes*/) { std::free(data); }

absl::Status CpuBackend::CopyToDevice(const void* host_src, size_t bytes, void* device_dst) {
  if (bytes > 0) std::memcpy(device_dst, host_src, bytes);
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyToHost(const void* device_src, size_t bytes, void* host_dst) {
  if (bytes > 0) std::memcpy(host_dst, device_src, bytes);
  return absl::OkStatus();
}

absl::StatusOr<Weight> CpuBackend::UploadWeight(const float* host, int64_t n, int64_t k, Precision precision,
                                                const float* host_bias) {
  Weight w;
  w.precision = precision;
  w.n = n;
  w.k = k;
  const int64_t count = n * k;
  switch (precision) {
    case Precision::kF32: {
      QRAG_ASSIGN_OR_RETURN(w.data, Allocate(count * sizeof(float)));
      std::memcpy(w.data.data(), host, count * sizeof(float));
      break;
    }
    case Precision::kBF16: {
      QRAG_ASSIGN_OR_RETURN(w.data, Allocate(count * sizeof(uint16_t)));
      quant::RoundToBf16(host, count, w.data.as<uint16_t>());
      break;
    }
    case Precision::kFP8: {
      QRAG_ASSIGN_OR_RETURN(w.data, Allocate(count));
      QRAG_ASSIGN_OR_RETURN(w.scales, Allocate(n * sizeof(float)));
      quant::QuantizeRowsE4M3(host, n, k, w.data.as<uint8_t>(), w.scales.as<float>());
      break;
    }
    case Precision::kInt8: {
      QRAG_ASSIGN_OR_RETURN(w.data, Allocate(count));
      QRAG_ASSIGN_OR_RETURN(w.scales, Allocate(n * sizeof(float)));
      quant::QuantizeRowsInt8(host, n, k, w.data.as<int8_t>(), w.scales.as<float>());
      break;
    }
    case Precision::kW4: {
      QRAG_ASSIGN_OR_RETURN(quant::W4Matrix q, quant::QuantizeW4(host, n, k, options_.w4));
      return UploadW4Weight(q, host_bias);
    }
  }
  if (host_bias != nullptr) {
    QRAG_ASSIGN_OR_RETURN(w.bias, Allocate(n * sizeof(float)));
    std::memcpy(w.bias.data(), host_bias, n * sizeof(float));
  }
  return w;
}

absl::StatusOr<Weight> CpuBackend::UploadW4Weight(const quant::W4Matrix& q, const float* host_bias) {
  QRAG_RETURN_IF_ERROR(quant::ValidateW4(q, "w4 weight"));
  Weight w;
  w.precision = Precision::kW4;
  w.n = q.n;
  w.k = q.k;
  w.vector_size = q.vector_size;
  QRAG_ASSIGN_OR_RETURN(w.data, Allocate(q.codes.size()));
  std::memcpy(w.data.data(), q.codes.data(), q.codes.size());
  QRAG_ASSIGN_OR_RETURN(w.scales, Allocate(q.scales.size() * sizeof(float)));
  std::memcpy(w.scales.data(), q.scales.data(), q.scales.size() * sizeof(float));
  if (!q.mins.empty()) {
    QRAG_ASSIGN_OR_RETURN(w.mins, Allocate(q.mins.size() * sizeof(float)));
    std::memcpy(w.mins.data(), q.mins.data(), q.mins.size() * sizeof(float));
  }
  if (host_bias != nullptr) {
    QRAG_ASSIGN_OR_RETURN(w.bias, Allocate(q.n * sizeof(float)));
    std::memcpy(w.bias.data(), host_bias, q.n * sizeof(float));
  }
  return w;
}

void CpuBackend::Embed(const float* table, int dim, absl::Span<const int32_t> tokens, float* out) {
  for (size_t t = 0; t < tokens.size(); ++t) {
    std::memcpy(out + t * dim, table + static_cast<int64_t>(tokens[t]) * dim, dim * sizeof(float));
  }
}

void CpuBackend::RmsNorm(const float* x, const float* weight, int rows, int dim, float eps, float* out) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<int64_t>(r) * dim;
    float* o = out + static_cast<int64_t>(r) * dim;
    float inv;
    if (options_.reference) {
      double ss = 0;
      for (int j = 0; j < dim; ++j) ss += static_cast<double>(xr[j]) * xr[j];
      inv = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
    } else {
      float ss = 0;
      for (int j = 0; j < dim; ++j) ss += xr[j] * xr[j];
      inv = 1.0f / std::sqrt(ss / dim + eps);
    }
    for (int j = 0; j < dim; ++j) o[j] = weight[j] * (inv * xr[j]);
  }
}

GemmStats CpuBackend::Gemm(const float* x, int m, const Weight& w, float* y) {
  cpu::GemmKernelOptions ko;
  ko.reference = options_.reference;
  ko.pool = pool_.get();
  const int64_t n = w.n, k = w.k;
  const float* bias = w.bias.empty() ? nullptr : w.bias.as<float>();
  absl::Status status;
  switch (w.precision) {
    case Precision::kF32:
      if (options_.blas && !options_.reference) {
        // y[m, n] = x[m, k] . W[n, k]^T (+ bias): OpenBLAS single-threaded on each of our pool's threads, over
        // row blocks (OpenBLAS's own threads would spin between calls and starve the pool's other ops).
        const float* wd = w.data.as<float>();
        auto rows = [&](int64_t r0, int64_t r1) {
          if (bias != nullptr) {  // y = bias, then y += x W^T (beta 1): no separate pass over y
            for (int64_t r = r0; r < r1; ++r) std::memcpy(y + r * n, bias, n * sizeof(float));
          }
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(r1 - r0), static_cast<int>(n),
                      static_cast<int>(k), 1.0f, x + r0 * k, static_cast<int>(k), wd, static_cast<int>(k),
                      bias != nullptr ? 1.0f : 0.0f, y + r0 * n, static_cast<int>(n));
        };
        const int64_t per_thread = (m + pool_->num_threads() - 1) / pool_->num_threads();
        pool_->ParallelFor(m, std::max<int64_t>(16, per_thread), rows);
      } else {
        status = cpu::GemmF32(x, m, w.data.as<float>(), n, k, bias, y, ko);
      }
      break;
    case Precision::kBF16:
      act_codes_.resize(static_cast<size_t>(m) * k * sizeof(uint16_t));
      quant::RoundToBf16(x, static_cast<int64_t>(m) * k, reinterpret_cast<uint16_t*>(act_codes_.data()));
      status = cpu::GemmBf16(reinterpret_cast<const uint16_t*>(act_codes_.data()), m, w.data.as<uint16_t>(), n, k,
                             bias, y, ko);
      break;
    case Precision::kFP8:
      act_codes_.resize(static_cast<size_t>(m) * k);
      act_scales_.resize(m);
      quant::QuantizeRowsE4M3(x, m, k, act_codes_.data(), act_scales_.data());
      status = cpu::GemmFp8(act_codes_.data(), act_scales_.data(), m, w.data.as<uint8_t>(), w.scales.as<float>(),
                            n, k, bias, y, ko);
      break;
    case Precision::kInt8:
      act_codes_.resize(static_cast<size_t>(m) * k);
      act_scales_.resize(m);
      if (options_.blas && !options_.reference && VnniForInt8()) {
        status = Int8GemmDnnl(x, m, w, y);
        break;
      }
      quant::QuantizeRowsInt8(x, m, k, reinterpret_cast<int8_t*>(act_codes_.data()), act_scales_.data());
      status = cpu::GemmInt8(reinterpret_cast<const int8_t*>(act_codes_.data()), act_scales_.data(), m,
                             w.data.as<int8_t>(), w.scales.as<float>(), n, k, bias, y, ko);
      break;
    case Precision::kW4:
      status = cpu::GemmW4(x, m,
                           quant::W4View{n, k, w.vector_size, w.data.as<uint8_t>(), w.scales.as<float>(),
                                         w.mins.empty() ? nullptr : w.mins.as<float>()},
                           bias, y, ko);
      break;
  }
  if (!status.ok()) RecordError(status);
  return GemmStats{w.precision, 2 * static_cast<int64_t>(m) * n * k};
}

bool CpuBackend::VnniForInt8() {
  // Without VNNI, oneDNN's int8 GEMM multiplies through vpmaddubsw, whose int16 pair sums can saturate on
  // full-range codes: the own kernels then.
  const CpuFeatures& f = GetCpuFeatures();
  return f.avx512_vnni || f.avx_vnni;
}

absl::Status CpuBackend::Int8GemmDnnl(const float* x, int m, const Weight& w, float* y) {
  const int64_t n = w.n, k = w.k;
  int8_t* a = reinterpret_cast<int8_t*>(act_codes_.data());
  const int8_t* wd = w.data.as<int8_t>();
  float* sx = act_scales_.data();
  const float* sw = w.scales.as<float>();
  const float* bias = w.bias.empty() ? nullptr : w.bias.as<float>();
  std::atomic<int> failed{0};
  // Blocks of rows small enough that the int32 accumulators stay in L2 between the GEMM that writes them and
  // the epilogue that reads them (whole-batch accumulators went through memory: 8% of the encoder's time).
  const int64_t block = std::max<int64_t>(32, std::min<int64_t>(512, (512 * 1024) / (4 * n)));
  auto rows = [&](int64_t r0, int64_t r1) {
    omp_set_num_threads(1);  // oneDNN runs on this pool thread; the pool splits the rows
    thread_local std::vector<int32_t> acc;
    acc.resize(static_cast<size_t>(std::min(block, r1 - r0)) * n);
    for (int64_t b0 = r0; b0 < r1; b0 += block) {
      const int64_t rows_b = std::min(block, r1 - b0);
      cpu::QuantizeRowsInt8Fast(x + b0 * k, rows_b, k, a + b0 * k, sx + b0);  // per token, as the own kernels
      const int32_t zero = 0;
      const dnnl_status_t st = dnnl_gemm_s8s8s32('N', 'T', 'F', rows_b, n, k, 1.0f, a + b0 * k, k, 0, wd, k, 0, 0.0f,
                                                 acc.data(), n, &zero);
      if (st != dnnl_success) {
        failed.store(static_cast<int>(st));
        return;
      }
      cpu::DequantizeInt32(acc.data(), rows_b, n, sx + b0, sw, bias, y + b0 * n);
    }
  };
  const int64_t per_thread = (m + pool_->num_threads() - 1) / pool_->num_threads();
  pool_->ParallelFor(m, std::max<int64_t>(16, per_thread), rows);
  if (failed.load() != 0) {
    return absl::InternalError(absl::StrCat("oneDNN int8 GEMM failed with status ", failed.load()));
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::Synchronize() {
  absl::MutexLock lock(&error_mu_);
  return error_;
}

void CpuBackend::RecordError(const absl::Status& status) {
  absl::MutexLock lock(&error_mu_);
  if (error_.ok()) error_ = status;
}

void CpuBackend::Rope(float* q, float* k, absl::Span<const int32_t> positions, const AttentionShape& shape,
                      const float* inv_freq, RopePairing pairing) {
  const int hd = shape.head_dim, half = hd / 2;
  const int64_t q_stride = static_cast<int64_t>(shape.n_heads) * hd;
  const int64_t k_stride = static_cast<int64_t>(shape.n_kv_heads) * hd;
  std::vector<float> cos_v(half), sin_v(half);
  for (size_t t = 0; t < positions.size(); ++t) {
    // Same arithmetic as llama2.c run.c: angle = pos * freq in fp32, then cosf/sinf.
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(positions[t]) * inv_freq[i];
      cos_v[i] = std::cos(angle);
      sin_v[i] = std::sin(angle);
    }
    auto rotate = [&](float* head) {
      for (int i = 0; i < half; ++i) {
        const int a = pairing == RopePairing::kInterleaved ? 2 * i : i;
        const int b = pairing == RopePairing::kInterleaved ? 2 * i + 1 : i + half;
        const float v0 = head[a], v1 = head[b];
        head[a] = v0 * cos_v[i] - v1 * sin_v[i];
        head[b] = v0 * sin_v[i] + v1 * cos_v[i];
      }
    };
    for (int h = 0; h < shape.n_heads; ++h) rotate(q + t * q_stride + static_cast<int64_t>(h) * hd);
    for (int h = 0; h < shape.n_kv_heads; ++h) rotate(k + t * k_stride + static_cast<int64_t>(h) * hd);
  }
}

void CpuBackend::KvWrite(const float* k, const float* v, const AttentionBatch& batch,
                         const AttentionShape& shape, const KvLayer& cache) {
  const int64_t row = static_cast<int64_t>(shape.n_kv_heads) * shape.head_dim;
  for (size_t t = 0; t < batch.positions.size(); ++t) {
    const int64_t slot = SlotOf(batch, static_cast<int>(t));
    QRAG_CHECK(slot >= 0 && slot < cache.num_slots);
    std::memcpy(cache.k + slot * row, k + t * row, row * sizeof(float));
    std::memcpy(cache.v + slot * row, v + t * row, row * sizeof(float));
  }
}

int64_t CpuBackend::Attention(const float* q, const KvLayer& cache, const AttentionBatch& batch,
                              const AttentionShape& shape, float* out) {
  const int hd = shape.head_dim;
  const int group = shape.n_heads / shape.n_kv_heads;
  const int64_t q_stride = static_cast<int64_t>(shape.n_heads) * hd;
  const int64_t kv_stride = static_cast<int64_t>(shape.n_kv_heads) * hd;
  const int tokens = static_cast<int>(batch.positions.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const bool reference = options_.reference;

  int64_t ops = 0;
  for (int t = 0; t < tokens; ++t) {
    const int32_t pos = batch.positions[t];
    const int32_t start = batch.sliding_window > 0 ? std::max(0, pos - batch.sliding_window + 1) : 0;
    ops += 2LL * 2 * (pos - start + 1) * hd * shape.n_heads;  // QK^T and PV
  }

  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    std::vector<double> acc(hd);
    for (int64_t item = begin; item < end; ++item) {
      const int t = static_cast<int>(item / shape.n_heads), h = static_cast<int>(item % shape.n_heads);
      const int seq = batch.token_seq[t];
      const int32_t pos = batch.positions[t];
      const int32_t start = batch.sliding_window > 0 ? std::max(0, pos - batch.sliding_window + 1) : 0;
      const int len = pos - start + 1;
      const float* qh = q + t * q_stride + static_cast<int64_t>(h) * hd;
      const int64_t kv_off = static_cast<int64_t>(h / group) * hd;
      scores.resize(len);
      float max_score = -INFINITY;
      for (int i = 0; i < len; ++i) {
        const float* kh = cache.k + SlotOfPosition(batch, seq, start + i) * kv_stride + kv_off;
        float s;
        if (reference) {
          double d = 0;
          for (int j = 0; j < hd; ++j) d += static_cast<double>(qh[j]) * kh[j];
          s = static_cast<float>(d);
        } else {
          s = 0;
          for (int j = 0; j < hd; ++j) s += qh[j] * kh[j];
        }
        s *= scale;
        scores[i] = s;
        max_score = std::max(max_score, s);
      }
      float* oh = out + t * q_stride + static_cast<int64_t>(h) * hd;
      if (reference) {
        double sum = 0;
        for (int i = 0; i < len; ++i) sum += std::exp(static_cast<double>(scores[i]) - max_score);
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int i = 0; i < len; ++i) {
          const double p = std::exp(static_cast<double>(scores[i]) - max_score) / sum;
          const float* vh = cache.v + SlotOfPosition(batch, seq, start + i) * kv_stride + kv_off;
          for (int j = 0; j < hd; ++j) acc[j] += p * vh[j];
        }
        for (int j = 0; j < hd; ++j) oh[j] = static_cast<float>(acc[j]);
      } else {
        float sum = 0;
        for (int i = 0; i < len; ++i) {
          scores[i] = std::exp(scores[i] - max_score);
          sum += scores[i];
        }
        const float inv = 1.0f / sum;
        std::fill(oh, oh + hd, 0.0f);
        for (int i = 0; i < len; ++i) {
          const float p = scores[i] * inv;
          const float* vh = cache.v + SlotOfPosition(batch, seq, start + i) * kv_stride + kv_off;
          for (int j = 0; j < hd; ++j) oh[j] += p * vh[j];
        }
      }
    }
  };
  const int64_t items = static_cast<int64_t>(tokens) * shape.n_heads;
  pool_->ParallelFor(items, 1, work);
  return ops;
}

void CpuBackend::SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g * (1.0f / (1.0f + std::exp(-g))) * up[i];
  }
}

void CpuBackend::Add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace qrag::backend
