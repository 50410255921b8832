// The w4 GEMM (4-bit weights, per-vector scales and, on the asymmetric grid, minimums; dequantized in the
// GEMM): exact against a plain reference loop on exactly representable inputs, bit-identical to GemmF32 on
// the dequantized weight (so batch invariant) on every path (the register-decoding dot kernel for few rows,
// 16-row fp32 tiles, slabs for many rows, the portable path), and the CPU backend's w4 upload paths.
#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/backend/cpu/cpu_gemm.h"
#include "server/quant/int_format.h"
#include "server/quant/w4.h"

namespace qrag::backend::cpu {
namespace {

using quant::W4Grid;

// Symmetric codes in [-7, 7] or asymmetric codes in [0, 15] with minimums of -8..0 scale steps, power-of-two
// scales, x in [-2, 2] integers: every weight, product and sum is exact in fp32.
quant::W4Matrix ExactW4(int64_t n, int64_t k, int vector_size, W4Grid grid, std::mt19937& rng) {
  quant::W4Matrix m;
  m.n = n;
  m.k = k;
  m.vector_size = vector_size;
  const bool asymmetric = grid == W4Grid::kAsymmetric;
  std::uniform_int_distribution<int> code(asymmetric ? 0 : -7, asymmetric ? 15 : 7), exp(-3, 1), steps(-8, 0);
  std::vector<int8_t> row(k);
  m.codes.resize(n * m.row_bytes());
  for (int64_t r = 0; r < n; ++r) {
    for (auto& c : row) c = static_cast<int8_t>(code(rng));
    quant::PackInt4(row.data(), k, m.codes.data() + r * m.row_bytes());
  }
  m.scales.resize(n * m.vectors_per_row());
  for (float& s : m.scales) s = std::ldexp(1.0f, exp(rng));
  if (asymmetric) {
    for (float s : m.scales) m.mins.push_back(static_cast<float>(steps(rng)) * s);
  }
  return m;
}

struct Shape {
  int64_t m, n, k;
  int vector_size;
};

class GemmW4Exact : public ::testing::TestWithParam<std::tuple<Shape, W4Grid>> {};

TEST_P(GemmW4Exact, FastAndReferenceEqualPlainLoop) {
  const auto [s, grid] = GetParam();
  std::mt19937 rng(11);
  const quant::W4Matrix w = ExactW4(s.n, s.k, s.vector_size, grid, rng);
  ASSERT_TRUE(quant::ValidateW4(w, "exact").ok());
  std::uniform_int_distribution<int> xi(-2, 2);
  std::vector<float> x(s.m * s.k), bias(s.n);
  for (float& v : x) v = static_cast<float>(xi(rng));
  for (float& v : bias) v = static_cast<float>(xi(rng)) * 0.5f;
  std::vector<float> expect(s.m * s.n);
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < s.n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < s.k; ++p) {
        const int64_t v = j * w.vectors_per_row() + p / s.vector_size;
        const uint8_t* codes = w.codes.data() + j * w.row_bytes();
        const double weight = grid == W4Grid::kAsymmetric
                                  ? static_cast<double>(quant::UnpackUint4(codes, p)) * w.scales[v] + w.mins[v]
                                  : static_cast<double>(quant::UnpackInt4(codes, p)) * w.scales[v];
        acc += x[i * s.k + p] * weight;
      }
      expect[i * s.n + j] = static_cast<float>(acc) + bias[j];
    }
  }
  ThreadPool pool(2);
  double nonzero = 0;
  for (int mode = 0; mode < 3; ++mode) {
    GemmKernelOptions o;
    o.reference = mode == 0;
    o.allow_avx2 = mode != 2;
    o.pool = mode == 1 ? &pool : nullptr;
    std::vector<float> y(s.m * s.n, -1.0f);
    EXPECT_TRUE(GemmW4(x.data(), s.m, w.view(), bias.data(), y.data(), o).ok());
    EXPECT_EQ(y, expect) << "mode " << mode;
    for (float v : y) nonzero += std::fabs(v);
  }
  EXPECT_GT(nonzero, 0);
}

// Few rows with vectors of a multiple of 16 (the dot kernel; k = 70 and 172 end in a partial group of 16),
// 16 < m < 64 (fp32 tiles), vectors of 10 and 9 (odd: vectors start mid-byte) with few rows (tiles), and
// many rows (slabs).
INSTANTIATE_TEST_SUITE_P(Shapes, GemmW4Exact,
                         ::testing::Combine(::testing::Values(Shape{1, 37, 70, 32}, Shape{7, 64, 256, 32},
                                                              Shape{13, 48, 172, 32}, Shape{3, 17, 96, 16},
                                                              Shape{2, 33, 128, 64}, Shape{20, 40, 100, 32},
                                                              Shape{3, 9, 50, 10}, Shape{2, 9, 45, 9},
                                                              Shape{70, 48, 96, 32}),
                                            ::testing::Values(W4Grid::kAsymmetric, W4Grid::kSymmetric)),
                         [](const auto& info) {
                           const Shape& s = std::get<0>(info.param);
                           return "M" + std::to_string(s.m) + "_N" + std::to_string(s.n) + "_K" + std::to_string(s.k) +
                                  "_V" + std::to_string(s.vector_size) +
                                  (std::get<1>(info.param) == W4Grid::kAsymmetric ? "_Asymmetric" : "_Symmetric");
                         });

// Few rows (the dot kernel; also split over the pool's threads at n = 300), 16 < m < 64 (tiles of 16
// weight rows), many rows with the whole weight in one slab, and many rows over three slabs (k = 8192: 128
// rows a slab, the last one partial), on the calling thread and on a pool, on both grids; every row alone
// gives the bits it gets inside the batch.
TEST(GemmW4, FastEqualsGemmF32OnDequantizedWeight_AnyBatch) {
  struct Case {
    int64_t m, n, k;
  };
  ThreadPool pool(2);
  for (const Case c : {Case{9, 70, 200}, Case{3, 300, 576}, Case{20, 70, 200}, Case{100, 70, 200},
                       Case{64, 300, 8192}}) {
    for (const W4Grid grid : {W4Grid::kAsymmetric, W4Grid::kSymmetric}) {
      for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
        SCOPED_TRACE(::testing::Message() << "m " << c.m << " n " << c.n << " k " << c.k << (p ? " pool " : " ")
                                          << quant::W4GridName(grid));
        std::mt19937 rng(2);
        std::normal_distribution<float> g;
        const int64_t m = c.m, n = c.n, k = c.k;
        std::vector<float> wf(n * k);
        for (float& v : wf) v = g(rng);
        const quant::W4Matrix w = *quant::QuantizeW4(wf.data(), n, k, quant::W4Options{.grid = grid});
        std::vector<float> deq(n * k), bias(n);
        for (float& v : bias) v = g(rng);
        quant::DequantizeW4Rows(w.view(), 0, n, deq.data());
        std::vector<float> x(m * k);
        for (float& v : x) v = g(rng);
        GemmKernelOptions o;
        o.pool = p;
        std::vector<float> y(m * n), y_ref(m * n), y_one(n);
        EXPECT_TRUE(GemmW4(x.data(), m, w.view(), bias.data(), y.data(), o).ok());
        EXPECT_TRUE(GemmF32(x.data(), m, deq.data(), n, k, bias.data(), y_ref.data(), o).ok());
        EXPECT_EQ(y, y_ref);
        for (int64_t i = 0; i < m; ++i) {  // row i alone gives the same bits as inside the batch
          EXPECT_TRUE(GemmW4(x.data() + i * k, 1, w.view(), bias.data(), y_one.data(), o).ok());
          EXPECT_TRUE(std::equal(y_one.begin(), y_one.end(), y.begin() + i * n)) << i;
        }
      }
    }
  }
}

TEST(CpuBackendW4, UploadWeightQuantizesLikeQuantizeW4AndReportsOps) {
  CpuBackend cpu(CpuBackendOptions{});
  std::mt19937 rng(4);
  std::normal_distribution<float> g;
  const int64_t n = 24, k = 64;
  std::vector<float> wf(n * k), bias(n, 0.25f), x(3 * k);
  for (float& v : wf) v = g(rng);
  for (float& v : x) v = g(rng);
  auto a = cpu.UploadWeight(wf.data(), n, k, Precision::kW4, bias.data());
  auto b = cpu.UploadW4Weight(*quant::QuantizeW4(wf.data(), n, k, quant::W4Options{}), bias.data());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->vector_size, 32);
  EXPECT_EQ(a->data.bytes(), static_cast<size_t>(n * k / 2));
  EXPECT_EQ(a->scales.bytes(), static_cast<size_t>(n * 2 * 4));
  EXPECT_EQ(a->mins.bytes(), static_cast<size_t>(n * 2 * 4));  // the default grid is asymmetric
  std::vector<float> ya(3 * n), yb(3 * n);
  const GemmStats s = cpu.Gemm(x.data(), 3, *a, ya.data());
  cpu.Gemm(x.data(), 3, *b, yb.data());
  EXPECT_EQ(ya, yb);
  EXPECT_EQ(s.precision, Precision::kW4);
  EXPECT_EQ(s.ops, 2 * 3 * n * k);
  quant::W4Matrix bad = *quant::QuantizeW4(wf.data(), n, k, quant::W4Options{});
  bad.scales.pop_back();
  EXPECT_EQ(cpu.UploadW4Weight(bad, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CpuBackendW4, SymmetricGridOption) {
  CpuBackend cpu(CpuBackendOptions{.w4 = {.grid = W4Grid::kSymmetric}});
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  const int64_t n = 8, k = 64;
  std::vector<float> wf(n * k), x(k);
  for (float& v : wf) v = g(rng);
  for (float& v : x) v = g(rng);
  auto a = cpu.UploadWeight(wf.data(), n, k, Precision::kW4, nullptr);
  auto b = cpu.UploadW4Weight(*quant::QuantizeW4(wf.data(), n, k, {.grid = W4Grid::kSymmetric}), nullptr);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a->mins.empty());
  std::vector<float> ya(n), yb(n);
  cpu.Gemm(x.data(), 1, *a, ya.data());
  cpu.Gemm(x.data(), 1, *b, yb.data());
  EXPECT_EQ(ya, yb);
}

TEST(Precision, W4NameAndSize) {
  EXPECT_STREQ(PrecisionName(Precision::kW4), "w4");
  EXPECT_EQ(*ParsePrecision("w4"), Precision::kW4);
  EXPECT_EQ(PrecisionWeightBytes(Precision::kW4), 0.5);
}

}  // namespace
}  // namespace qrag::backend::cpu
