// Op-level tests of the CPU backend: the fast mode against the reference mode and against direct
// formulas. These cases are the template for the CUDA parity tests (op x dtype x shape).
#include "server/backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "server/quant/bf16.h"
#include "server/quant/fp8.h"
#include "tests/test_util.h"

namespace qrag::backend {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Integer values in [-2, 2]: exact in every served format, so GEMMs compare exactly.
std::vector<float> SmallIntegers(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(static_cast<int>(rng() % 5) - 2);
  return v;
}

struct Both {
  CpuBackend fast{CpuBackendOptions{.reference = false, .num_threads = 2}};
  CpuBackend ref{CpuBackendOptions{.reference = true}};
};

class CpuGemmOp : public ::testing::TestWithParam<std::tuple<Precision, int, int, int>> {};

TEST_P(CpuGemmOp, IntegerInputsExactInEveryPrecision_OpsCounted) {
  const auto [precision, m, n, k] = GetParam();
  Both b;
  // Every row gets one "anchor" element so that its dynamic scale makes all of {-2..2} exact codes:
  // int8 anchor 127 -> scale 1; fp8 anchor 2 -> scale 2/448, codes 224x (+-224, +-448 are E4M3 values).
  const float anchor = precision == Precision::kInt8 ? 127.0f : 2.0f;
  std::vector<float> w = SmallIntegers(static_cast<size_t>(n) * k, 1), x = SmallIntegers(static_cast<size_t>(m) * k, 2);
  std::vector<float> bias = SmallIntegers(n, 3);
  for (int r = 0; r < n; ++r) w[static_cast<size_t>(r) * k] = anchor;
  for (int r = 0; r < m; ++r) x[static_cast<size_t>(r) * k] = anchor;
  auto wf = b.fast.UploadWeight(w.data(), n, k, precision, bias.data());
  auto wr = b.ref.UploadWeight(w.data(), n, k, precision, bias.data());
  ASSERT_TRUE(wf.ok() && wr.ok());
  std::vector<float> yf(static_cast<size_t>(m) * n, NAN), yr(yf.size(), NAN);
  GemmStats sf = b.fast.Gemm(x.data(), m, *wf, yf.data());
  GemmStats sr = b.ref.Gemm(x.data(), m, *wr, yr.data());
  EXPECT_EQ(sf.ops, 2LL * m * n * k);
  EXPECT_EQ(sr.ops, sf.ops);
  EXPECT_EQ(sf.precision, precision);
  bool any_nonzero = false;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double exact = bias[j];
      for (int p = 0; p < k; ++p) exact += static_cast<double>(x[i * k + p]) * w[j * k + p];
      const size_t at = static_cast<size_t>(i) * n + j;
      ASSERT_EQ(yf[at], yr[at]) << i << "," << j;
      // Codes are exact, so the result is exact up to the final rounding of acc * (s_x * s_w) in fp32.
      ASSERT_NEAR(yf[at], exact, 1e-5 * std::max(1.0, std::abs(exact))) << i << "," << j;
      any_nonzero |= yf[at] != 0;
    }
  }
  EXPECT_TRUE(any_nonzero);
}

// The RAG embedder's OpenBLAS fp32 GEMM (CpuBackendOptions::blas): exact on small integers (every partial
// sum is an exact float), with and without bias, over row counts that split across the pool's threads or not.
TEST(CpuBackendBlas, Fp32Gemm_IntegerInputsExact_BiasAndRowSplits) {
  CpuBackend blas(CpuBackendOptions{.num_threads = 2, .blas = true});
  for (const int m : {1, 17, 33, 300}) {
    for (const bool with_bias : {false, true}) {
      const int n = 70, k = 129;
      const std::vector<float> w = SmallIntegers(static_cast<size_t>(n) * k, 4 + m),
                               x = SmallIntegers(static_cast<size_t>(m) * k, 5 + m), bias = SmallIntegers(n, 6);
      auto wt = blas.UploadWeight(w.data(), n, k, Precision::kF32, with_bias ? bias.data() : nullptr);
      ASSERT_TRUE(wt.ok());
      std::vector<float> y(static_cast<size_t>(m) * n, NAN);
      EXPECT_EQ(blas.Gemm(x.data(), m, *wt, y.data()).ops, 2LL * m * n * k);
      ASSERT_TRUE(blas.Synchronize().ok());
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < n; ++j) {
          double exact = with_bias ? bias[j] : 0.0;
          for (int p = 0; p < k; ++p) exact += static_cast<double>(x[i * k + p]) * w[j * k + p];
          ASSERT_EQ(y[static_cast<size_t>(i) * n + j], static_cast<float>(exact)) << m << " " << i << "," << j;
        }
      }
    }
  }
  EXPECT_THAT(CpuBackend::BlasDescription(), ::testing::StartsWith("OpenBLAS "));
}

// blas mode's int8 GEMM (oneDNN's VNNI kernels, where the CPU has VNNI): the same codes and scales as the own
// int8 kernels, so the same products up to the epilogue's rounding (mul + add vs fma).
TEST(CpuBackendBlas, Int8Gemm_MatchesTheOwnKernels) {
  CpuBackend blas(CpuBackendOptions{.num_threads = 2, .blas = true});
  CpuBackend own(CpuBackendOptions{.num_threads = 2});
  for (const int m : {1, 17, 300}) {
    const int n = 70, k = 129;
    const std::vector<float> w = Random(static_cast<size_t>(n) * k, 8 + m), x = Random(static_cast<size_t>(m) * k, 9 + m),
                             bias = Random(n, 10);
    auto wb = blas.UploadWeight(w.data(), n, k, Precision::kInt8, bias.data());
    auto wo = own.UploadWeight(w.data(), n, k, Precision::kInt8, bias.data());
    ASSERT_TRUE(wb.ok() && wo.ok());
    std::vector<float> yb(static_cast<size_t>(m) * n, NAN), yo(yb.size(), NAN);
    EXPECT_EQ(blas.Gemm(x.data(), m, *wb, yb.data()).ops, 2LL * m * n * k);
    own.Gemm(x.data(), m, *wo, yo.data());
    ASSERT_TRUE(blas.Synchronize().ok());
    for (size_t i = 0; i < yb.size(); ++i) {
      ASSERT_NEAR(yb[i], yo[i], 1e-6f * std::max(1.0f, std::abs(yo[i]))) << m << " at " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuGemmOp,
                         ::testing::Combine(::testing::Values(Precision::kF32, Precision::kBF16, Precision::kFP8,
                                                              Precision::kInt8),
                                            ::testing::Values(1, 5), ::testing::Values(3, 64),
                                            ::testing::Values(1, 33, 256)),
                         [](const auto& info) {
                           return std::string(PrecisionName(std::get<0>(info.param))) + "_M" +
                                  std::to_string(std::get<1>(info.param)) + "_N" +
                                  std::to_string(std::get<2>(info.param)) + "_K" +
                                  std::to_string(std::get<3>(info.param));
                         });

TEST(CpuBackendOps, UploadWeightQuantizesPerRow) {
  CpuBackend cpu(CpuBackendOptions{});
  const std::vector<float> w = {1.0f, -448.0f, 0.5f, 0.0f, 0.0f, 0.0f, 3.0f, 1.5f, -0.75f};
  auto fp8 = cpu.UploadWeight(w.data(), 3, 3, Precision::kFP8, nullptr);
  ASSERT_TRUE(fp8.ok());
  const float* s = fp8->scales.as<float>();
  EXPECT_EQ(s[0], 1.0f);          // amax 448
  EXPECT_EQ(s[1], 1.0f);          // zero row -> scale 1
  EXPECT_EQ(s[2], 3.0f / 448.0f);
  EXPECT_EQ(quant::E4M3ToFloat(fp8->data.as<uint8_t>()[1]), -448.0f);
  auto i8 = cpu.UploadWeight(w.data(), 3, 3, Precision::kInt8, nullptr);
  ASSERT_TRUE(i8.ok());
  EXPECT_EQ(i8->data.as<int8_t>()[1], -127);
  EXPECT_EQ(i8->data.as<int8_t>()[6], 127);
  auto bf = cpu.UploadWeight(w.data(), 3, 3, Precision::kBF16, nullptr);
  ASSERT_TRUE(bf.ok());
  EXPECT_EQ(quant::Bf16ToFloat(bf->data.as<uint16_t>()[8]), -0.75f);
}

TEST(CpuBackendOps, RmsNormFastMatchesReferenceAndFormula) {
  Both b;
  const int rows = 3, dim = 70;
  auto x = Random(rows * dim, 4, -3, 3), w = Random(dim, 5, 0.5, 1.5);
  std::vector<float> of(x.size()), orf(x.size());
  b.fast.RmsNorm(x.data(), w.data(), rows, dim, 1e-5f, of.data());
  b.ref.RmsNorm(x.data(), w.data(), rows, dim, 1e-5f, orf.data());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int j = 0; j < dim; ++j) ss += x[r * dim + j] * x[r * dim + j];
    const double inv = 1 / std::sqrt(ss / dim + 1e-5);
    for (int j = 0; j < dim; ++j) {
      EXPECT_NEAR(orf[r * dim + j], w[j] * x[r * dim + j] * inv, 1e-6);
      EXPECT_NEAR(of[r * dim + j], orf[r * dim + j], 1e-5);
    }
  }
  // In place.
  std::vector<float> inplace = x;
  b.fast.RmsNorm(inplace.data(), w.data(), rows, dim, 1e-5f, inplace.data());
  EXPECT_EQ(inplace, of);
}

TEST(CpuBackendOps, RopeRotateHalfEqualsInterleavedUnderPermutation) {
  CpuBackend cpu(CpuBackendOptions{});
  const AttentionShape shape{.n_heads = 2, .n_kv_heads = 1, .head_dim = 8};
  const std::vector<int32_t> positions = {0, 3, 100};
  std::vector<float> inv_freq(4);
  for (int i = 0; i < 4; ++i) inv_freq[i] = 1.0f / std::pow(10000.0f, 2.0f * i / 8);
  auto q = Random(3 * 16, 6), k = Random(3 * 8, 7);
  // Permute each head from interleaved (2i, 2i+1) to rotate-half (i, i+4) order.
  auto permute = [](const std::vector<float>& v) {
    std::vector<float> out(v.size());
    for (size_t h = 0; h < v.size() / 8; ++h) {
      for (int i = 0; i < 4; ++i) {
        out[h * 8 + i] = v[h * 8 + 2 * i];
        out[h * 8 + 4 + i] = v[h * 8 + 2 * i + 1];
      }
    }
    return out;
  };
  auto qi = q, ki = k, qh = permute(q), kh = permute(k);
  cpu.Rope(qi.data(), ki.data(), positions, shape, inv_freq.data(), RopePairing::kInterleaved);
  cpu.Rope(qh.data(), kh.data(), positions, shape, inv_freq.data(), RopePairing::kRotateHalf);
  EXPECT_EQ(permute(qi), qh);
  EXPECT_EQ(permute(ki), kh);
  // Position 0 is the identity; rotation preserves each pair's norm.
  for (int j = 0; j < 16; ++j) EXPECT_EQ(qi[j], q[j]);
  const float before = q[16] * q[16] + q[17] * q[17], after = qi[16] * qi[16] + qi[17] * qi[17];
  EXPECT_NEAR(before, after, 1e-6);
}

// Naive attention straight from the definition, for one sequence in contiguous memory.
std::vector<float> NaiveAttention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                  int tokens, const AttentionShape& s, int window) {
  std::vector<float> out(static_cast<size_t>(tokens) * s.n_heads * s.head_dim);
  const int group = s.n_heads / s.n_kv_heads, kvd = s.n_kv_heads * s.head_dim, qd = s.n_heads * s.head_dim;
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < s.n_heads; ++h) {
      const int start = window > 0 ? std::max(0, t - window + 1) : 0;
      std::vector<double> sc;
      for (int p = start; p <= t; ++p) {
        double d = 0;
        for (int j = 0; j < s.head_dim; ++j) d += q[t * qd + h * s.head_dim + j] * k[p * kvd + (h / group) * s.head_dim + j];
        sc.push_back(d / std::sqrt(s.head_dim));
      }
      double mx = *std::max_element(sc.begin(), sc.end()), z = 0;
      for (double& x : sc) z += (x = std::exp(x - mx));
      for (int j = 0; j < s.head_dim; ++j) {
        double acc = 0;
        for (int p = start; p <= t; ++p) acc += sc[p - start] / z * v[p * kvd + (h / group) * s.head_dim + j];
        out[t * qd + h * s.head_dim + j] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

class CpuAttentionOp : public ::testing::TestWithParam<std::tuple<int, int, int, int>> {};

TEST_P(CpuAttentionOp, PagedMatchesNaive) {
  const auto [tokens, kv_heads, block_size, window] = GetParam();
  const AttentionShape shape{.n_heads = 4, .n_kv_heads = kv_heads, .head_dim = 16};
  const int qd = 64, kvd = kv_heads * 16;
  auto q = Random(tokens * qd, 8), k = Random(tokens * kvd, 9), v = Random(tokens * kvd, 10);
  const auto expected = NaiveAttention(q, k, v, tokens, shape, window);
  const int blocks = (tokens + block_size - 1) / block_size;
  const int num_blocks = blocks + 5;
  std::vector<int32_t> all(num_blocks);
  for (int i = 0; i < num_blocks; ++i) all[i] = i;
  std::shuffle(all.begin(), all.end(), std::mt19937(tokens));  // scattered physical blocks
  const std::vector<int32_t> table(all.begin(), all.begin() + blocks);
  std::vector<int32_t> pos(tokens), seq(tokens, 0);
  for (int i = 0; i < tokens; ++i) pos[i] = i;
  const AttentionBatch::Sequence s{table};
  AttentionBatch batch;
  batch.positions = pos;
  batch.token_seq = seq;
  batch.sequences = absl::MakeConstSpan(&s, 1);
  batch.block_size = block_size;
  batch.sliding_window = window;
  for (bool reference : {false, true}) {
    CpuBackend cpu(CpuBackendOptions{.reference = reference, .num_threads = 2});
    std::vector<float> kc(static_cast<size_t>(num_blocks) * block_size * kvd, NAN), vc(kc.size(), NAN);
    const KvLayer layer{kc.data(), vc.data(), static_cast<int64_t>(num_blocks) * block_size};
    cpu.KvWrite(k.data(), v.data(), batch, shape, layer);
    std::vector<float> out(q.size(), NAN);
    const int64_t ops = cpu.Attention(q.data(), layer, batch, shape, out.data());
    int64_t expected_ops = 0;
    for (int t = 0; t < tokens; ++t) {
      const int len = window > 0 ? std::min(t + 1, window) : t + 1;
      expected_ops += 2LL * 2 * len * 16 * 4;
    }
    EXPECT_EQ(ops, expected_ops);
    for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expected[i], 1e-5) << (reference ? "ref " : "fast ") << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuAttentionOp,
                         ::testing::Combine(::testing::Values(1, 9, 40), ::testing::Values(1, 2, 4),
                                            ::testing::Values(1, 4, 16), ::testing::Values(0, 5)),
                         [](const auto& info) {
                           return "T" + std::to_string(std::get<0>(info.param)) + "_KvHeads" +
                                  std::to_string(std::get<1>(info.param)) + "_Block" +
                                  std::to_string(std::get<2>(info.param)) + "_Window" +
                                  std::to_string(std::get<3>(info.param));
                         });

TEST(CpuBackendOps, SiluMulAddEmbed) {
  CpuBackend cpu(CpuBackendOptions{});
  const std::vector<float> g = {-2.0f, 0.0f, 3.0f}, u = {1.5f, 2.0f, -1.0f};
  std::vector<float> out(3);
  cpu.SiluMul(g.data(), u.data(), 3, out.data());
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(out[i], g[i] / (1 + std::exp(-g[i])) * u[i], 1e-6);
  std::vector<float> x = {1, 2, 3};
  cpu.Add(x.data(), u.data(), 3);
  EXPECT_EQ(x, (std::vector<float>{2.5f, 4.0f, 2.0f}));
  const std::vector<float> table = {0, 1, 10, 11, 20, 21};
  const std::vector<int32_t> ids = {2, 0, 2};
  std::vector<float> rows(6);
  cpu.Embed(table.data(), 2, ids, rows.data());
  EXPECT_EQ(rows, (std::vector<float>{20, 21, 0, 1, 20, 21}));
}

TEST(CpuBackendOps, AllocateIsZeroedAndAligned) {
  CpuBackend cpu(CpuBackendOptions{});
  auto buf = cpu.Allocate(1000);
  ASSERT_TRUE(buf.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buf->data()) % 64, 0u);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(static_cast<uint8_t*>(buf->data())[i], 0);
  auto huge = cpu.Allocate(size_t{1} << 62);
  EXPECT_THAT(huge.status(), StatusIsCode(absl::StatusCode::kResourceExhausted));
}

}  // namespace
}  // namespace qrag::backend
