// The w4 GEMM (INT4 weights, per-vector scales, dequantized in the GEMM): exact against a plain reference
// loop on exactly representable inputs, bit-identical to GemmF32 on the dequantized weight (so batch
// invariant), and the CPU backend's w4 upload paths.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "server/backend/cpu/cpu_backend.h"
#include "server/backend/cpu/cpu_gemm.h"
#include "server/quant/int_format.h"
#include "server/quant/w4.h"

namespace qrag::backend::cpu {
namespace {

// Codes in [-7, 7], power-of-two scales, x in [-2, 2] integers: every product and sum is exact in fp32.
quant::W4Matrix ExactW4(int64_t n, int64_t k, int vector_size, std::mt19937& rng) {
  quant::W4Matrix m;
  m.n = n;
  m.k = k;
  m.vector_size = vector_size;
  std::uniform_int_distribution<int> code(-7, 7), exp(-3, 1);
  std::vector<int8_t> row(k);
  m.codes.resize(n * m.row_bytes());
  for (int64_t r = 0; r < n; ++r) {
    for (auto& c : row) c = static_cast<int8_t>(code(rng));
    quant::PackInt4(row.data(), k, m.codes.data() + r * m.row_bytes());
  }
  m.scales.resize(n * m.vectors_per_row());
  for (float& s : m.scales) s = std::ldexp(1.0f, exp(rng));
  return m;
}

struct Shape {
  int64_t m, n, k;
  int vector_size;
};

class GemmW4Exact : public ::testing::TestWithParam<Shape> {};

TEST_P(GemmW4Exact, FastAndReferenceEqualPlainLoop) {
  const Shape s = GetParam();
  std::mt19937 rng(11);
  const quant::W4Matrix w = ExactW4(s.n, s.k, s.vector_size, rng);
  std::uniform_int_distribution<int> xi(-2, 2);
  std::vector<float> x(s.m * s.k), bias(s.n);
  for (float& v : x) v = static_cast<float>(xi(rng));
  for (float& v : bias) v = static_cast<float>(xi(rng)) * 0.5f;
  std::vector<float> expect(s.m * s.n);
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < s.n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < s.k; ++p) {
        acc += x[i * s.k + p] * quant::UnpackInt4(w.codes.data() + j * w.row_bytes(), p) *
               w.scales[j * w.vectors_per_row() + p / s.vector_size];
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

INSTANTIATE_TEST_SUITE_P(Shapes, GemmW4Exact,
                         ::testing::Values(Shape{1, 37, 70, 32}, Shape{7, 64, 256, 32}, Shape{13, 48, 172, 32},
                                           Shape{3, 17, 96, 16}, Shape{2, 33, 128, 64}, Shape{70, 48, 96, 32}),
                         [](const auto& info) {
                           const Shape& s = info.param;
                           return "M" + std::to_string(s.m) + "_N" + std::to_string(s.n) + "_K" + std::to_string(s.k) +
                                  "_V" + std::to_string(s.vector_size);
                         });

// Few rows (tiles of 16 weight rows), many rows with the whole weight in one slab, and many rows over three
// slabs (k = 8192: 128 rows a slab, the last one partial), on the calling thread and on a pool.
TEST(GemmW4, FastEqualsGemmF32OnDequantizedWeight_AnyBatch) {
  struct Case {
    int64_t m, n, k;
  };
  ThreadPool pool(2);
  for (const Case c : {Case{9, 70, 200}, Case{100, 70, 200}, Case{64, 300, 8192}}) {
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
      SCOPED_TRACE(::testing::Message() << "m " << c.m << " n " << c.n << " k " << c.k << (p ? " pool" : ""));
      std::mt19937 rng(2);
      std::normal_distribution<float> g;
      const int64_t m = c.m, n = c.n, k = c.k;
      std::vector<float> wf(n * k);
      for (float& v : wf) v = g(rng);
      const quant::W4Matrix w = *quant::QuantizeW4(wf.data(), n, k, quant::W4Options{});
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

TEST(Precision, W4NameAndSize) {
  EXPECT_STREQ(PrecisionName(Precision::kW4), "w4");
  EXPECT_EQ(*ParsePrecision("w4"), Precision::kW4);
  EXPECT_EQ(PrecisionWeightBytes(Precision::kW4), 0.5);
}

}  // namespace
}  // namespace qrag::backend::cpu
