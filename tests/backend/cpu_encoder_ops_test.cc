// The CPU backend's encoder ops: fast mode against reference mode, and both against formulas written out
// here (LayerNorm, exact GELU, bidirectional attention confined to each packed sequence).
#include <cmath>
#include <random>
#include <vector>

#include "server/backend/cpu/cpu_backend.h"
#include "tests/test_util.h"

namespace qrag::backend {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TEST(CpuEncoderOps, LayerNorm_Rows3_Dim384_FastAndReferenceMatchFormula) {
  const int rows = 3, dim = 384;
  const auto x = Random(rows * dim, 1, 3.0f), w = Random(dim, 2), b = Random(dim, 3);
  for (const CpuBackendOptions& o : {CpuBackendOptions{}, CpuBackendOptions{.reference = true},
                                     CpuBackendOptions{.num_threads = 2, .blas = true}}) {
    const bool reference = o.reference;
    CpuBackend cpu(o);
    std::vector<float> out(rows * dim);
    cpu.LayerNorm(x.data(), w.data(), b.data(), rows, dim, 1e-12f, out.data());
    for (int r = 0; r < rows; ++r) {
      double mean = 0, var = 0;
      for (int j = 0; j < dim; ++j) mean += x[r * dim + j] / double(dim);
      for (int j = 0; j < dim; ++j) var += (x[r * dim + j] - mean) * (x[r * dim + j] - mean) / dim;
      for (int j = 0; j < dim; ++j) {
        const double want = (x[r * dim + j] - mean) / std::sqrt(var + 1e-12) * w[j] + b[j];
        ASSERT_NEAR(out[r * dim + j], want, 1e-4 * (1 + std::abs(want))) << reference << " " << r << " " << j;
      }
    }
    // In place.
    std::vector<float> y = x;
    cpu.LayerNorm(y.data(), w.data(), b.data(), rows, dim, 1e-12f, y.data());
    EXPECT_EQ(y, out);
  }
}

// The residual step fused with the LayerNorm: x keeps x + y, out is LayerNorm(x + y); the same as Add then
// LayerNorm in every mode, for dims on and off the 16-lane width (the blas mode's vector rows need dim % 16 == 0).
TEST(CpuEncoderOps, AddLayerNorm_EqualsAddThenLayerNorm_EveryMode) {
  for (int dim : {384, 40, 7}) {
    const int rows = 37;
    const auto x = Random(rows * dim, 4, 2.0f), y = Random(rows * dim, 5), w = Random(dim, 6), b = Random(dim, 7);
    for (const CpuBackendOptions& o : {CpuBackendOptions{}, CpuBackendOptions{.reference = true},
                                       CpuBackendOptions{.num_threads = 2, .blas = true}}) {
      CpuBackend cpu(o);
      std::vector<float> sum = x, want(rows * dim);
      cpu.Add(sum.data(), y.data(), sum.size());
      cpu.LayerNorm(sum.data(), w.data(), b.data(), rows, dim, 1e-12f, want.data());
      std::vector<float> got_x = x, got(rows * dim, NAN);
      cpu.AddLayerNorm(got_x.data(), y.data(), w.data(), b.data(), rows, dim, 1e-12f, got.data());
      EXPECT_EQ(got_x, sum) << dim << " " << o.reference << o.blas;
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i], want[i], 2e-5 * (1 + std::abs(want[i]))) << dim << " " << o.blas << " " << i;
      }
      // In place, as the encoder calls it.
      std::vector<float> inplace = x;
      cpu.AddLayerNorm(inplace.data(), y.data(), w.data(), b.data(), rows, dim, 1e-12f, inplace.data());
      EXPECT_EQ(inplace, got) << dim << " " << o.reference << o.blas;
    }
  }
}

TEST(CpuEncoderOps, Gelu_Erf_NotTanhApproximation) {
  const std::vector<float> x = {-3.0f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 3.0f};
  for (bool reference : {false, true}) {
    CpuBackend cpu(CpuBackendOptions{.reference = reference});
    std::vector<float> out(x.size());
    cpu.Gelu(x.data(), x.size(), out.data());
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_NEAR(out[i], x[i] * 0.5 * (1 + std::erf(x[i] / std::sqrt(2.0))), 1e-6) << x[i];
    }
    // GELU(1) = 0.841344746 (erf); the tanh approximation gives 0.841191990.
    EXPECT_NEAR(out[5], 0.8413447f, 2e-7);
  }
}

// softmax(q k^T / sqrt(d)) v per head, each sequence on its own.
std::vector<float> NaiveAttention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                  const std::vector<int32_t>& offsets, int heads, int hd) {
  const int stride = heads * hd;
  std::vector<float> out(q.size());
  for (size_t s = 0; s + 1 < offsets.size(); ++s) {
    for (int h = 0; h < heads; ++h) {
      for (int i = offsets[s]; i < offsets[s + 1]; ++i) {
        std::vector<double> p;
        double mx = -1e300;
        for (int j = offsets[s]; j < offsets[s + 1]; ++j) {
          double d = 0;
          for (int c = 0; c < hd; ++c) d += double(q[i * stride + h * hd + c]) * k[j * stride + h * hd + c];
          p.push_back(d / std::sqrt(double(hd)));
          mx = std::max(mx, p.back());
        }
        double sum = 0;
        for (double& e : p) sum += (e = std::exp(e - mx));
        for (int c = 0; c < hd; ++c) {
          double acc = 0;
          for (int j = offsets[s]; j < offsets[s + 1]; ++j) acc += p[j - offsets[s]] / sum * v[j * stride + h * hd + c];
          out[i * stride + h * hd + c] = static_cast<float>(acc);
        }
      }
    }
  }
  return out;
}

TEST(CpuEncoderOps, EncoderAttention_3Seqs_Lens5_1_37_Heads4_Dim32_MatchesNaive) {
  const int heads = 4, hd = 32;
  const std::vector<int32_t> offsets = {0, 5, 6, 43};
  const int tokens = offsets.back();
  const auto q = Random(tokens * heads * hd, 11), k = Random(tokens * heads * hd, 12), v = Random(tokens * heads * hd, 13);
  const auto want = NaiveAttention(q, k, v, offsets, heads, hd);
  // The canonical-order kernels, the plain-loop reference, and OpenBLAS (the RAG embedder's blas mode).
  for (const CpuBackendOptions& o : {CpuBackendOptions{.num_threads = 2}, CpuBackendOptions{.reference = true},
                                     CpuBackendOptions{.num_threads = 2, .blas = true}}) {
    CpuBackend cpu(o);
    std::vector<float> out(q.size(), NAN);
    const int64_t ops = cpu.EncoderAttention(q.data(), k.data(), v.data(), offsets, {heads, heads, hd}, out.data());
    EXPECT_EQ(ops, 4LL * (25 + 1 + 37 * 37) * hd * heads);
    bool nonzero = false;
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_NEAR(out[i], want[i], 1e-5) << o.reference << o.blas << " " << i;
      nonzero |= out[i] != 0;
    }
    EXPECT_TRUE(nonzero);
  }
  // Row lengths on both sides of the 16-lane softmax width, and a long one (BERT's 254 + 2).
  {
    const std::vector<int32_t> offs = {0, 15, 31, 48, 304};
    const int n = offs.back();
    const auto q2 = Random(n * heads * hd, 21, 2.0f), k2 = Random(n * heads * hd, 22), v2 = Random(n * heads * hd, 23);
    const auto want2 = NaiveAttention(q2, k2, v2, offs, heads, hd);
    CpuBackend cpu(CpuBackendOptions{.num_threads = 2, .blas = true});
    std::vector<float> out(q2.size(), NAN);
    cpu.EncoderAttention(q2.data(), k2.data(), v2.data(), offs, {heads, heads, hd}, out.data());
    for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], want2[i], 1e-5) << i;
  }
  // A sequence of one token attends only to itself: its output is its own v.
  CpuBackend cpu(CpuBackendOptions{});
  std::vector<float> out(q.size());
  cpu.EncoderAttention(q.data(), k.data(), v.data(), offsets, {heads, heads, hd}, out.data());
  for (int c = 0; c < heads * hd; ++c) EXPECT_NEAR(out[5 * heads * hd + c], v[5 * heads * hd + c], 1e-6);
}

}  // namespace
}  // namespace qrag::backend
