// The fast CPU GEMM kernels (AVX2 and portable) against the reference kernels, per scheme and shape, and
// their batch invariance.
//
// Integer-valued inputs in [-2, 2] are exact in every format and their sums are exact in fp32, so fast and
// reference must agree bit for bit (the epilogue rounds identically by contract, cpu_gemm.h). Random inputs
// must agree within the rigorous forward error bound of fp32 summation; int8 is exact always.
//
// Batch invariance (CpuGemmBatchInvariance.<Scheme>_M<m>_N<n>_K<k>_Threads<t>): with random inputs, where
// the order of the fp32 sums shows in the bits, every row of a batched call must be bit-identical to the
// row computed alone, to the row inside a batch of other composition, across kernel families, and to a
// direct implementation of the canonical order documented in cpu_gemm.h.
#include "server/backend/cpu/cpu_gemm.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "server/common/thread_pool.h"
#include "server/quant/bf16.h"
#include "server/quant/fp8.h"

namespace qrag::backend::cpu {
namespace {

enum class Scheme { kF32, kBf16, kFp8, kInt8 };
enum class Inputs { kIntegers, kRandom };

struct Shape {
  int64_t m, n, k;
};

ThreadPool& Pool(int threads) {
  static ThreadPool one(1);
  static ThreadPool two(2);
  return threads == 1 ? one : two;
}

// The operands of one problem in every representation the four schemes take. `value_x` / `value_w` are
// the exact values the kernels see (decoded codes), for the error bound.
struct Problem {
  Shape shape;
  std::vector<float> xf, wf;
  std::vector<uint16_t> xb, wb;
  std::vector<uint8_t> xq, wq;
  std::vector<int8_t> xi, wi;
  std::vector<float> x_scale, w_scale, bias;
  std::vector<double> value_x, value_w;
};

// Draws a value of `inputs` kind for `scheme` and stores it at index p; returns its exact value.
double Draw(Scheme scheme, Inputs inputs, std::mt19937& rng, int64_t p, std::vector<float>& f,
            std::vector<uint16_t>& b, std::vector<uint8_t>& q, std::vector<int8_t>& i8) {
  if (inputs == Inputs::kIntegers) {
    const int v = std::uniform_int_distribution<int>(-2, 2)(rng);
    f[p] = static_cast<float>(v);
    b[p] = quant::FloatToBf16(static_cast<float>(v));
    q[p] = quant::FloatToE4M3(static_cast<float>(v));
    i8[p] = static_cast<int8_t>(v);
    switch (scheme) {
      case Scheme::kF32:
        return f[p];
      case Scheme::kBf16:
        return quant::Bf16ToFloat(b[p]);
      case Scheme::kFp8:
        return quant::E4M3ToFloat(q[p]);
      case Scheme::kInt8:
        return i8[p];
    }
  }
  switch (scheme) {
    case Scheme::kF32:
      f[p] = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
      return f[p];
    case Scheme::kBf16:
      b[p] = quant::FloatToBf16(std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng));
      return quant::Bf16ToFloat(b[p]);
    case Scheme::kFp8: {
      uint8_t c;
      do {
        c = static_cast<uint8_t>(std::uniform_int_distribution<int>(0, 255)(rng));
      } while ((c & 0x7f) == 0x7f);  // every finite code, NaN excluded
      q[p] = c;
      return quant::E4M3ToFloat(c);
    }
    case Scheme::kInt8:
      i8[p] = static_cast<int8_t>(std::uniform_int_distribution<int>(-128, 127)(rng));
      return i8[p];
  }
  return 0.0;
}

// Makes x[0][0] non-zero and gives w row 0 the signs of x row 0, so that acc[0][0] = sum |x w| > 0: the
// output cannot be all zero by accident.
void ForceNonZero(Scheme scheme, Problem& p) {
  const int64_t k = p.shape.k;
  if (p.value_x[0] == 0.0) {
    p.xf[0] = 1.0f;
    p.xb[0] = quant::FloatToBf16(1.0f);
    p.xq[0] = quant::FloatToE4M3(1.0f);
    p.xi[0] = 1;
    p.value_x[0] = 1.0;
  }
  if (p.value_w[0] == 0.0) {
    p.wf[0] = 1.0f;
    p.wb[0] = quant::FloatToBf16(1.0f);
    p.wq[0] = quant::FloatToE4M3(1.0f);
    p.wi[0] = 1;
    p.value_w[0] = 1.0;
  }
  for (int64_t c = 0; c < k; ++c) {
    if ((p.value_x[c] < 0) == (p.value_w[c] < 0) || p.value_w[c] == 0.0) continue;
    p.value_w[c] = -p.value_w[c];
    p.wf[c] = -p.wf[c];
    p.wb[c] ^= 0x8000u;
    p.wq[c] ^= 0x80u;
    if (p.wi[c] == -128) {
      p.wi[c] = 127;
      if (scheme == Scheme::kInt8) p.value_w[c] = 127;
    } else {
      p.wi[c] = static_cast<int8_t>(-p.wi[c]);
    }
  }
}

Problem MakeProblem(Scheme scheme, Inputs inputs, const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p;
  p.shape = shape;
  const int64_t nx = shape.m * shape.k, nw = shape.n * shape.k;
  p.xf.resize(nx), p.xb.resize(nx), p.xq.resize(nx), p.xi.resize(nx), p.value_x.resize(nx);
  p.wf.resize(nw), p.wb.resize(nw), p.wq.resize(nw), p.wi.resize(nw), p.value_w.resize(nw);
  for (int64_t i = 0; i < nx; ++i) p.value_x[i] = Draw(scheme, inputs, rng, i, p.xf, p.xb, p.xq, p.xi);
  for (int64_t i = 0; i < nw; ++i) p.value_w[i] = Draw(scheme, inputs, rng, i, p.wf, p.wb, p.wq, p.wi);
  ForceNonZero(scheme, p);
  std::uniform_real_distribution<float> scale(0.01f, 1.0f), bias(-1.0f, 1.0f);
  for (int64_t i = 0; i < shape.m; ++i) p.x_scale.push_back(scale(rng));
  for (int64_t j = 0; j < shape.n; ++j) p.w_scale.push_back(scale(rng));
  for (int64_t j = 0; j < shape.n; ++j) p.bias.push_back(bias(rng));
  return p;
}

// Runs the GEMM into a NaN-filled output, so that every element must be written.
std::vector<float> Run(Scheme scheme, const Problem& p, bool with_bias, const GemmKernelOptions& options) {
  const auto [m, n, k] = p.shape;
  std::vector<float> y(m * n, std::nanf(""));
  const float* bias = with_bias ? p.bias.data() : nullptr;
  switch (scheme) {
    case Scheme::kF32:
      EXPECT_TRUE(GemmF32(p.xf.data(), m, p.wf.data(), n, k, bias, y.data(), options).ok());
      break;
    case Scheme::kBf16:
      EXPECT_TRUE(GemmBf16(p.xb.data(), m, p.wb.data(), n, k, bias, y.data(), options).ok());
      break;
    case Scheme::kFp8:
      EXPECT_TRUE(
          GemmFp8(p.xq.data(), p.x_scale.data(), m, p.wq.data(), p.w_scale.data(), n, k, bias, y.data(), options).ok());
      break;
    case Scheme::kInt8:
      EXPECT_TRUE(
          GemmInt8(p.xi.data(), p.x_scale.data(), m, p.wi.data(), p.w_scale.data(), n, k, bias, y.data(), options)
              .ok());
      break;
  }
  return y;
}

bool Scaled(Scheme scheme) { return scheme == Scheme::kFp8 || scheme == Scheme::kInt8; }

// The forward error bound of the fast result against the reference for output (i, j): the fast fp32
// accumulation of k exact (fp8, bf16) or once-rounded (fp32 without FMA) products is within
// gamma(k + 1) * sum |x w| of the exact sum (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed.,
// eq. 3.4 and 4.4); the reference rounds the exact sum once; the epilogue multiplies by s and each side
// rounds once more.
double ErrorBound(Scheme scheme, const Problem& p, const std::vector<float>& ref,
                  const std::vector<float>& fast, int64_t i, int64_t j) {
  const int64_t k = p.shape.k;
  const double u = std::ldexp(1.0, -24);
  const double gamma = (k + 1) * u / (1.0 - (k + 1) * u);
  double sum_abs = 0.0, sum = 0.0;
  for (int64_t c = 0; c < k; ++c) {
    const double prod = p.value_x[i * k + c] * p.value_w[j * k + c];
    sum_abs += std::fabs(prod);
    sum += prod;
  }
  const double s =
      Scaled(scheme) ? std::fabs(static_cast<double>(p.x_scale[i]) * p.w_scale[j]) * (1 + u) : 1.0;
  const double y = std::max(std::fabs(ref[i * p.shape.n + j]), std::fabs(fast[i * p.shape.n + j]));
  return s * (gamma * sum_abs + u * std::fabs(sum)) + 2 * u * y;
}

// The fast kernel families this machine can run: portable, AVX2, and AVX2 with the AVX-512F float
// micro-kernel.
enum class Family { kPortable, kAvx2, kAvx512 };

std::vector<Family> KernelFamilies() {
  std::vector<Family> v = {Family::kPortable};
  if (CpuHasAvx2()) v.push_back(Family::kAvx2);
  if (CpuHasAvx512()) v.push_back(Family::kAvx512);
  return v;
}

GemmKernelOptions FamilyOptions(Family family, ThreadPool* pool) {
  return {.reference = false, .pool = pool, .allow_avx2 = family != Family::kPortable,
          .allow_avx512 = family == Family::kAvx512};
}

const char* FamilyName(Family family) {
  return family == Family::kPortable ? "portable" : family == Family::kAvx2 ? "AVX2" : "AVX-512";
}

std::string Describe(Inputs inputs, bool with_bias, int threads, Family family) {
  return absl::StrFormat("%s inputs, %s bias, %d thread(s), %s kernels",
                         inputs == Inputs::kIntegers ? "integer" : "random", with_bias ? "with" : "without",
                         threads, FamilyName(family));
}

// Checks fast against reference for one shape over every input kind, bias, pool and kernel family.
void CheckShape(Scheme scheme, const Shape& shape) {
  const std::vector<Family> kernel_families = KernelFamilies();
  for (Inputs inputs : {Inputs::kIntegers, Inputs::kRandom}) {
    const Problem p = MakeProblem(
        scheme, inputs, shape, /*seed=*/
        static_cast<uint32_t>(1000003 * shape.m + 1009 * shape.n + shape.k + (inputs == Inputs::kRandom)));
    for (bool with_bias : {false, true}) {
      const std::vector<float> ref = Run(scheme, p, with_bias, {.reference = true});
      for (int threads : {1, 2}) {
        for (Family family : kernel_families) {
          SCOPED_TRACE(Describe(inputs, with_bias, threads, family));
          const std::vector<float> fast = Run(scheme, p, with_bias, FamilyOptions(family, &Pool(threads)));
          const bool exact = inputs == Inputs::kIntegers || scheme == Scheme::kInt8;
          int64_t mismatches = 0, differs_from_bias = 0;
          for (int64_t i = 0; i < shape.m; ++i) {
            for (int64_t j = 0; j < shape.n; ++j) {
              const int64_t o = i * shape.n + j;
              ASSERT_TRUE(std::isfinite(fast[o])) << "y[" << i << "][" << j << "] = " << fast[o];
              if (fast[o] != (with_bias ? p.bias[j] : 0.0f)) ++differs_from_bias;
              if (exact) {
                if (std::bit_cast<uint32_t>(fast[o]) != std::bit_cast<uint32_t>(ref[o]) &&
                    ++mismatches <= 5) {
                  ADD_FAILURE() << "y[" << i << "][" << j << "]: fast " << fast[o] << " reference " << ref[o];
                }
              } else {
                const double bound = ErrorBound(scheme, p, ref, fast, i, j);
                if (std::fabs(static_cast<double>(fast[o]) - ref[o]) > bound && ++mismatches <= 5) {
                  ADD_FAILURE() << "y[" << i << "][" << j << "]: fast " << fast[o] << " reference " << ref[o]
                                << " bound " << bound;
                }
              }
            }
          }
          EXPECT_EQ(mismatches, 0);
          EXPECT_GT(differs_from_bias, 0) << "the output is all zero (or all bias)";
        }
      }
    }
  }
}

using ShapeParam = std::tuple<int64_t, int64_t, int64_t>;

std::string ShapeName(const ::testing::TestParamInfo<ShapeParam>& info) {
  const auto [m, n, k] = info.param;
  return absl::StrFormat("M%d_N%d_K%d", m, n, k);
}

class CpuGemmF32 : public ::testing::TestWithParam<ShapeParam> {};
class CpuGemmBf16 : public ::testing::TestWithParam<ShapeParam> {};
class CpuGemmFp8 : public ::testing::TestWithParam<ShapeParam> {};
class CpuGemmInt8 : public ::testing::TestWithParam<ShapeParam> {};

Shape ToShape(const ShapeParam& param) {
  return {std::get<0>(param), std::get<1>(param), std::get<2>(param)};
}

TEST_P(CpuGemmF32, Fast_Matches_Reference) { CheckShape(Scheme::kF32, ToShape(GetParam())); }
TEST_P(CpuGemmBf16, Fast_Matches_Reference) { CheckShape(Scheme::kBf16, ToShape(GetParam())); }
TEST_P(CpuGemmFp8, Fast_Matches_Reference) { CheckShape(Scheme::kFp8, ToShape(GetParam())); }
TEST_P(CpuGemmInt8, Fast_Matches_Reference) { CheckShape(Scheme::kInt8, ToShape(GetParam())); }

// The grid of the brief: every m (decode, small batches, the dot/blocked boundary, prefill) against every n
// (narrower than a panel, a panel, a panel plus one) and k (shorter than a step, a step, odd tails, several
// k-blocks).
const auto kGrid = ::testing::Combine(::testing::Values<int64_t>(1, 2, 3, 7, 64, 130),
                                      ::testing::Values<int64_t>(1, 5, 64, 257),
                                      ::testing::Values<int64_t>(1, 7, 8, 33, 256, 1000));
// Beyond the grid: either side of the dot/blocked switch of each format (4 | 5 rows for fp32, 8 | 9 for
// bf16, 16 | 17 for fp8 and int8), an odd last int8 k-block, dot kernels over several weight blocks
// (k = 4099: 128 rows per 512 KiB block), and problems large enough to be split over two threads, by
// columns (decode) or by rows (n narrower than a panel).
const auto kExtra = ::testing::Values(
    ShapeParam{4, 33, 1025}, ShapeParam{5, 17, 513}, ShapeParam{8, 19, 300}, ShapeParam{9, 40, 1537},
    ShapeParam{16, 33, 300}, ShapeParam{17, 20, 100}, ShapeParam{6, 300, 4099}, ShapeParam{1, 1024, 1024},
    ShapeParam{2, 600, 999}, ShapeParam{200, 3, 1000});

INSTANTIATE_TEST_SUITE_P(Grid, CpuGemmF32, kGrid, ShapeName);
INSTANTIATE_TEST_SUITE_P(Grid, CpuGemmBf16, kGrid, ShapeName);
INSTANTIATE_TEST_SUITE_P(Grid, CpuGemmFp8, kGrid, ShapeName);
INSTANTIATE_TEST_SUITE_P(Grid, CpuGemmInt8, kGrid, ShapeName);
INSTANTIATE_TEST_SUITE_P(Extra, CpuGemmF32, kExtra, ShapeName);
INSTANTIATE_TEST_SUITE_P(Extra, CpuGemmBf16, kExtra, ShapeName);
INSTANTIATE_TEST_SUITE_P(Extra, CpuGemmFp8, kExtra, ShapeName);
INSTANTIATE_TEST_SUITE_P(Extra, CpuGemmInt8, kExtra, ShapeName);

// ---- Targeted cases ----

std::vector<GemmKernelOptions> FastVariants() {
  std::vector<GemmKernelOptions> v;
  for (Family family : KernelFamilies()) v.push_back(FamilyOptions(family, &Pool(2)));
  return v;
}

const char* VariantName(const GemmKernelOptions& o) {
  return !o.allow_avx2 ? "portable" : o.allow_avx512 && CpuHasAvx512() ? "AVX-512" : "AVX2";
}

// Every finite E4M3 code through both operands of both kernel families (m_other = 1: dot kernels for the
// codes as weights; 20: the blocked GEMM; the codes as 254 activation rows always take the blocked GEMM):
// y[c] = 40 * value(c) exactly.
void CheckAllE4M3Codes(int64_t m_other) {
  std::vector<uint8_t> codes;
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) != 0x7f) codes.push_back(static_cast<uint8_t>(c));
  }
  const int64_t count = static_cast<int64_t>(codes.size()), k = 40;
  const uint8_t one = quant::FloatToE4M3(1.0f);
  std::vector<uint8_t> by_code(count * k), ones(m_other * k, one);
  for (int64_t c = 0; c < count; ++c) {
    std::fill(by_code.begin() + c * k, by_code.begin() + (c + 1) * k, codes[c]);
  }
  std::vector<float> scale_codes(count, 1.0f), scale_ones(m_other, 1.0f);
  for (const GemmKernelOptions& options : FastVariants()) {
    SCOPED_TRACE(VariantName(options));
    // Codes as weights (n = count), and as activations (m = count).
    std::vector<float> y(m_other * count, std::nanf(""));
    EXPECT_TRUE(GemmFp8(ones.data(), scale_ones.data(), m_other, by_code.data(), scale_codes.data(), count, k, nullptr,
                        y.data(), options)
                    .ok());
    for (int64_t i = 0; i < m_other; ++i) {
      for (int64_t c = 0; c < count; ++c) {
        ASSERT_EQ(y[i * count + c], 40.0f * quant::E4M3ToFloat(codes[c])) << "weight code " << int{codes[c]};
      }
    }
    std::vector<float> yt(count * m_other, std::nanf(""));
    EXPECT_TRUE(GemmFp8(by_code.data(), scale_codes.data(), count, ones.data(), scale_ones.data(), m_other, k, nullptr,
                        yt.data(), options)
                    .ok());
    for (int64_t c = 0; c < count; ++c) {
      for (int64_t j = 0; j < m_other; ++j) {
        ASSERT_EQ(yt[c * m_other + j], 40.0f * quant::E4M3ToFloat(codes[c]))
            << "activation code " << int{codes[c]};
      }
    }
  }
}

TEST(CpuGemmFp8, AllFiniteCodes_Exact_M1) { CheckAllE4M3Codes(1); }
TEST(CpuGemmFp8, AllFiniteCodes_Exact_M20) { CheckAllE4M3Codes(20); }

// A NaN activation code makes its output row NaN, as in the reference, in both kernel families.
TEST(CpuGemmFp8, NaNActivation_PropagatesToItsRow_M1_And_M20) {
  for (int64_t m : {1, 20}) {
    const int64_t n = 20, k = 50;
    std::vector<uint8_t> x(m * k, quant::FloatToE4M3(0.5f)), w(n * k, quant::FloatToE4M3(-1.5f));
    x[(m - 1) * k + 17] = 0xff;
    std::vector<float> xs(m, 1.0f), ws(n, 1.0f);
    for (const GemmKernelOptions& options : FastVariants()) {
      SCOPED_TRACE(absl::StrFormat("m=%d %s", m, VariantName(options)));
      std::vector<float> y(m * n, 0.0f);
      EXPECT_TRUE(GemmFp8(x.data(), xs.data(), m, w.data(), ws.data(), n, k, nullptr, y.data(), options).ok());
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          if (i == m - 1) {
            EXPECT_TRUE(std::isnan(y[i * n + j])) << i << "," << j;
          } else {
            EXPECT_EQ(y[i * n + j], -0.75f * k) << i << "," << j;
          }
        }
      }
    }
  }
}

// The fp8 special values of the fast-path contract (cpu_gemm.h), in every path (dot kernels, blocked GEMM)
// and both kernel families: a NaN weight code reads as +-480, and a row with a NaN activation code is the
// quiet NaN 0x7FC00000 throughout.
TEST(CpuGemmFp8, NaNCodes_SameBitsInEveryPath_M1_M5_M20_M40) {
  for (int64_t m : {1, 5, 20, 40}) {
    const int64_t n = 20, k = 50;
    std::vector<uint8_t> x(m * k, quant::FloatToE4M3(0.5f)), w(n * k, quant::FloatToE4M3(-1.5f));
    w[3 * k + 7] = 0x7f;  // reads as +480
    w[5 * k + 9] = 0xff;  // reads as -480
    if (m > 1) x[(m - 1) * k + 17] = 0xff;
    std::vector<float> xs(m, 1.0f), ws(n, 1.0f);
    for (const GemmKernelOptions& options : FastVariants()) {
      SCOPED_TRACE(absl::StrFormat("m=%d %s", m, VariantName(options)));
      std::vector<float> y(m * n, 0.0f);
      EXPECT_TRUE(GemmFp8(x.data(), xs.data(), m, w.data(), ws.data(), n, k, nullptr, y.data(), options).ok());
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          const float got = y[i * n + j];
          if (m > 1 && i == m - 1) {
            EXPECT_EQ(std::bit_cast<uint32_t>(got), 0x7fc00000u) << i << "," << j;
          } else if (j == 3 || j == 5) {
            EXPECT_EQ(got, -0.75f * (k - 1) + (j == 3 ? 240.0f : -240.0f)) << i << "," << j;
          } else {
            EXPECT_EQ(got, -0.75f * k) << i << "," << j;
          }
        }
      }
    }
  }
}

// k = 0: every output is the epilogue of an empty sum, as in the reference, in every path.
TEST(CpuGemm, EmptySum_K0_M1_M40) {
  for (int64_t m : {1, 40}) {
    const int64_t n = 21;
    const std::vector<float> xs(m, 0.5f), ws(n, 3.0f);
    std::vector<float> bias(n);
    for (int64_t j = 0; j < n; ++j) bias[j] = 0.25f * static_cast<float>(j) - 1.0f;
    const float xf = 0.0f, wf = 0.0f;
    const uint16_t xb = 0, wb = 0;
    const uint8_t xq = 0, wq = 0;
    const int8_t xi = 0, wi = 0;
    for (const GemmKernelOptions& options : FastVariants()) {
      SCOPED_TRACE(absl::StrFormat("m=%d %s", m, VariantName(options)));
      std::vector<float> y(m * n, std::nanf(""));
      for (int scheme = 0; scheme < 4; ++scheme) {
        std::fill(y.begin(), y.end(), std::nanf(""));
        switch (scheme) {
          case 0:
            EXPECT_TRUE(GemmF32(&xf, m, &wf, n, 0, bias.data(), y.data(), options).ok());
            break;
          case 1:
            EXPECT_TRUE(GemmBf16(&xb, m, &wb, n, 0, bias.data(), y.data(), options).ok());
            break;
          case 2:
            EXPECT_TRUE(GemmFp8(&xq, xs.data(), m, &wq, ws.data(), n, 0, bias.data(), y.data(), options).ok());
            break;
          case 3:
            EXPECT_TRUE(GemmInt8(&xi, xs.data(), m, &wi, ws.data(), n, 0, bias.data(), y.data(), options).ok());
            break;
        }
        for (int64_t o = 0; o < m * n; ++o) ASSERT_EQ(y[o], bias[o % n]) << "scheme " << scheme << " " << o;
      }
    }
  }
}

// -128 * -128 everywhere: sums past 2^24 (so the int -> float conversion rounds) over several k-blocks,
// and past 2^31 where the AVX2 int32 lanes could not hold them (the dispatch carries into int64 there).
void CheckInt8Extremes(int64_t m, int64_t n, int64_t k) {
  std::vector<int8_t> x(m * k, -128), w(n * k, -128);
  x[0] = 127;  // not every sum a power of two
  std::vector<float> xs(m, 0.37f), ws(n, 1.3f), bias(n, 0.25f), ref(m * n);
  EXPECT_TRUE(
      GemmInt8(x.data(), xs.data(), m, w.data(), ws.data(), n, k, bias.data(), ref.data(), {.reference = true}).ok());
  EXPECT_NE(ref[0], 0.0f);
  for (const GemmKernelOptions& options : FastVariants()) {
    SCOPED_TRACE(VariantName(options));
    std::vector<float> y(m * n, std::nanf(""));
    EXPECT_TRUE(GemmInt8(x.data(), xs.data(), m, w.data(), ws.data(), n, k, bias.data(), y.data(), options).ok());
    for (int64_t o = 0; o < m * n; ++o) {
      ASSERT_EQ(std::bit_cast<uint32_t>(y[o]), std::bit_cast<uint32_t>(ref[o])) << o;
    }
  }
}

TEST(CpuGemmInt8, Extremes_Exact_M1_N3_K5000) { CheckInt8Extremes(1, 3, 5000); }
TEST(CpuGemmInt8, Extremes_Exact_M13_N20_K5001) { CheckInt8Extremes(13, 20, 5001); }
TEST(CpuGemmInt8, Extremes_Exact_M1_N2_K140000) { CheckInt8Extremes(1, 2, 140000); }
TEST(CpuGemmInt8, Extremes_Exact_M7_N2_K140000) { CheckInt8Extremes(7, 2, 140000); }

// ---- Batch invariance ----

// The activation side of a problem: rows picked from one or more problems (the weights stay those of the
// problem it is run against).
struct Activations {
  int64_t m = 0;
  std::vector<float> xf;
  std::vector<uint16_t> xb;
  std::vector<uint8_t> xq;
  std::vector<int8_t> xi;
  std::vector<float> x_scale;
};

struct RowRef {
  const Problem* from;
  int64_t row;
};

Activations PickRows(const std::vector<RowRef>& rows) {
  Activations a;
  a.m = static_cast<int64_t>(rows.size());
  for (const RowRef& r : rows) {
    const int64_t k = r.from->shape.k, b = r.row * k;
    a.xf.insert(a.xf.end(), r.from->xf.begin() + b, r.from->xf.begin() + b + k);
    a.xb.insert(a.xb.end(), r.from->xb.begin() + b, r.from->xb.begin() + b + k);
    a.xq.insert(a.xq.end(), r.from->xq.begin() + b, r.from->xq.begin() + b + k);
    a.xi.insert(a.xi.end(), r.from->xi.begin() + b, r.from->xi.begin() + b + k);
    a.x_scale.push_back(r.from->x_scale[r.row]);
  }
  return a;
}

// Runs the activations `a` against the weights of `p` into a NaN-filled output.
std::vector<float> RunActivations(Scheme scheme, const Problem& p, const Activations& a, bool with_bias,
                                  const GemmKernelOptions& options) {
  const int64_t m = a.m, n = p.shape.n, k = p.shape.k;
  std::vector<float> y(m * n, std::nanf(""));
  const float* bias = with_bias ? p.bias.data() : nullptr;
  switch (scheme) {
    case Scheme::kF32:
      EXPECT_TRUE(GemmF32(a.xf.data(), m, p.wf.data(), n, k, bias, y.data(), options).ok());
      break;
    case Scheme::kBf16:
      EXPECT_TRUE(GemmBf16(a.xb.data(), m, p.wb.data(), n, k, bias, y.data(), options).ok());
      break;
    case Scheme::kFp8:
      EXPECT_TRUE(
          GemmFp8(a.xq.data(), a.x_scale.data(), m, p.wq.data(), p.w_scale.data(), n, k, bias, y.data(), options).ok());
      break;
    case Scheme::kInt8:
      EXPECT_TRUE(
          GemmInt8(a.xi.data(), a.x_scale.data(), m, p.wi.data(), p.w_scale.data(), n, k, bias, y.data(), options)
              .ok());
      break;
  }
  return y;
}

// The canonical order of cpu_gemm.h written out directly: operands decoded exactly (value_x / value_w hold
// the decoded values), zero padded to a multiple of 8; eight lanes, lane l = p mod 8, one FMA per product
// in increasing p; the fixed tree; the epilogue. Int8 sums exactly (in double: |sum| < 2^53) and rounds once.
std::vector<float> CanonicalOrder(Scheme scheme, const Problem& p, bool with_bias) {
  const auto [m, n, k] = p.shape;
  std::vector<float> y(m * n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float sum;
      if (scheme == Scheme::kInt8) {
        double exact = 0.0;
        for (int64_t c = 0; c < k; ++c) exact += p.value_x[i * k + c] * p.value_w[j * k + c];
        sum = static_cast<float>(exact);
      } else {
        float lane[8] = {};
        for (int64_t c = 0; c < (k + 7) / 8 * 8; ++c) {
          const float a = c < k ? static_cast<float>(p.value_x[i * k + c]) : 0.0f;
          const float b = c < k ? static_cast<float>(p.value_w[j * k + c]) : 0.0f;
          lane[c % 8] = std::fma(a, b, lane[c % 8]);
        }
        sum = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
      }
      float out;
      if (Scaled(scheme)) {
        const float s = p.x_scale[i] * p.w_scale[j];
        out = with_bias ? std::fma(sum, s, p.bias[j]) : sum * s;
      } else {
        out = with_bias ? sum + p.bias[j] : sum;
      }
      y[i * n + j] = out;
    }
  }
  return y;
}

// Compares row `row_a` of `a` with row `row_b` of `b` (n floats each) bit for bit; reports the first
// differing element.
void ExpectSameRow(const std::vector<float>& a, int64_t row_a, const std::vector<float>& b, int64_t row_b,
                   int64_t n, const std::string& what, int64_t& failures) {
  const float* ra = a.data() + row_a * n;
  const float* rb = b.data() + row_b * n;
  if (std::memcmp(ra, rb, n * sizeof(float)) == 0) return;
  if (++failures > 5) return;
  for (int64_t j = 0; j < n; ++j) {
    if (std::bit_cast<uint32_t>(ra[j]) != std::bit_cast<uint32_t>(rb[j])) {
      ADD_FAILURE() << what << ": row " << row_a << " column " << j << ": " << ra[j] << " (0x" << std::hex
                    << std::bit_cast<uint32_t>(ra[j]) << ") vs " << rb[j] << " (0x"
                    << std::bit_cast<uint32_t>(rb[j]) << std::dec << ")";
      return;
    }
  }
}

struct InvarianceConfig {
  Scheme scheme;
  int64_t m, n, k;
  int threads;
};

void CheckBatchInvariance(const InvarianceConfig& config) {
  const Scheme scheme = config.scheme;
  const Shape shape{config.m, config.n, config.k};
  const auto [m, n, k] = shape;
  const uint32_t seed = static_cast<uint32_t>(7919 * m + 104729 * n + 31 * k + static_cast<int>(scheme));
  const Problem p = MakeProblem(scheme, Inputs::kRandom, shape, seed);
  // Activation rows that appear in no batch of p: the "other users" of a recomposed batch.
  const Problem others = MakeProblem(scheme, Inputs::kRandom, {m + 3, n, k}, seed ^ 0x5bd1e995u);
  const bool with_bias = n % 2 == 1;  // both epilogues: n = 64 without bias, the other widths with

  std::vector<RowRef> all;
  for (int64_t i = 0; i < m; ++i) all.push_back({&p, i});
  // A recomposed batch: the even rows of p among rows of `others`, three rows more than p, shuffled.
  std::vector<RowRef> mixed;
  for (int64_t i = 0; i < m; i += 2) mixed.push_back({&p, i});
  for (int64_t o = 0; static_cast<int64_t>(mixed.size()) < m + 3; ++o) mixed.push_back({&others, o});
  std::mt19937 rng(seed);
  std::shuffle(mixed.begin(), mixed.end(), rng);
  const Activations batch = PickRows(all), recomposed = PickRows(mixed);

  const std::vector<float> canonical = CanonicalOrder(scheme, p, with_bias);
  const std::vector<Family> kernel_families = KernelFamilies();
  std::vector<std::vector<float>> batched_by_family;
  for (Family family : kernel_families) {
    SCOPED_TRACE(FamilyName(family));
    const GemmKernelOptions options = FamilyOptions(family, &Pool(config.threads));
    const GemmKernelOptions alone_options = FamilyOptions(family, nullptr);
    const std::vector<float> batched = RunActivations(scheme, p, batch, with_bias, options);
    int64_t failures = 0, nonzero = 0;
    for (float v : batched) nonzero += v != 0.0f;
    EXPECT_GT(nonzero, 0) << "the output is all zero";
    for (int64_t i = 0; i < m; ++i) {
      const std::vector<float> alone =
          RunActivations(scheme, p, PickRows({{&p, i}}), with_bias, alone_options);
      ExpectSameRow(batched, i, alone, 0, n, "batched vs alone (m = 1, no pool)", failures);
    }
    const std::vector<float> mixed_y = RunActivations(scheme, p, recomposed, with_bias, options);
    for (int64_t q = 0; q < recomposed.m; ++q) {
      if (mixed[q].from == &p)
        ExpectSameRow(batched, mixed[q].row, mixed_y, q, n, "batched vs recomposed batch", failures);
    }
    for (int64_t i = 0; i < m; ++i)
      ExpectSameRow(batched, i, canonical, i, n, "batched vs canonical order", failures);
    EXPECT_EQ(failures, 0);
    batched_by_family.push_back(batched);
  }
  for (size_t f = 1; f < batched_by_family.size(); ++f) {
    int64_t failures = 0;
    const std::string what = absl::StrCat("portable vs ", FamilyName(kernel_families[f]));
    for (int64_t i = 0; i < m; ++i) {
      ExpectSameRow(batched_by_family[0], i, batched_by_family[f], i, n, what, failures);
    }
    EXPECT_EQ(failures, 0);
  }
}

class CpuGemmBatchInvariance : public ::testing::Test {
 public:
  explicit CpuGemmBatchInvariance(InvarianceConfig config) : config_(config) {}
  void TestBody() override { CheckBatchInvariance(config_); }

 private:
  InvarianceConfig config_;
};

const char* SchemeName(Scheme scheme) {
  switch (scheme) {
    case Scheme::kF32:
      return "F32";
    case Scheme::kBf16:
      return "Bf16";
    case Scheme::kFp8:
      return "Fp8";
    case Scheme::kInt8:
      return "Int8";
  }
  return "";
}

// One test per configuration, named by it (TEST cannot generate names, TEST_P would put the configuration
// after a slash): the grid of the brief, every m (decode, small batches, every dot/blocked switch, several
// register tiles and row chunks) x n (narrower than a tile, a panel, a panel plus one) x k (shorter than a
// lane group, one, odd tails, several k-blocks), plus shapes whose single rows are split over two threads.
[[maybe_unused]] const bool kBatchInvarianceRegistered = [] {
  std::vector<std::tuple<int64_t, int64_t, int64_t>> shapes;
  for (int64_t m : {1, 2, 3, 4, 5, 8, 17, 33, 64, 130}) {
    for (int64_t n : {1, 7, 64, 257}) {
      for (int64_t k : {1, 7, 8, 9, 33, 256, 1000}) shapes.emplace_back(m, n, k);
    }
  }
  for (int64_t m : {1, 4, 17}) shapes.emplace_back(m, 1100, 520);  // m = 1 alone is split over two threads
  shapes.emplace_back(300, 40, 700);  // rows split over two threads, more than one row chunk
  for (Scheme scheme : {Scheme::kF32, Scheme::kBf16, Scheme::kFp8, Scheme::kInt8}) {
    for (const auto& [m, n, k] : shapes) {
      for (int threads : {1, 2}) {
        const InvarianceConfig config{scheme, m, n, k, threads};
        const std::string name =
            absl::StrFormat("%s_M%d_N%d_K%d_Threads%d", SchemeName(scheme), m, n, k, threads);
        ::testing::RegisterTest(
            "CpuGemmBatchInvariance", name.c_str(), nullptr, nullptr, __FILE__, __LINE__,
            [config]() -> CpuGemmBatchInvariance* { return new CpuGemmBatchInvariance(config); });
      }
    }
  }
  return true;
}();

// A worker thread whose packing buffers cannot be allocated makes the GEMM RESOURCE_EXHAUSTED instead of
// aborting the process. Run in a child process whose address space is capped just above what it already
// maps; k is large enough that no earlier test of this binary grew the calling thread's scratch that far.
TEST(CpuGemmDeathTest, ScratchAllocationFailure_IsResourceExhausted_NotAbort) {
#if defined(QRAG_SANITIZED_BUILD)
  GTEST_SKIP() << "an address-space cap cannot be combined with a sanitizer's shadow memory";
#endif
  if (!CpuHasAvx2()) GTEST_SKIP() << "the portable kernels use no scratch";
  const int64_t m = 160, n = 16, k = 1 << 16;
  const std::vector<float> x(m * k, 1.0f), w(n * k, 1.0f);
  std::vector<float> y(m * n);
  auto child = [&] {
    long pages = 0;
    FILE* statm = std::fopen("/proc/self/statm", "r");
    if (statm == nullptr || std::fscanf(statm, "%ld", &pages) != 1) std::_Exit(3);
    std::fclose(statm);
    const rlim_t cap = static_cast<rlim_t>(pages) * sysconf(_SC_PAGESIZE) + (rlim_t{4} << 20);
    const rlimit limit{cap, cap};
    if (setrlimit(RLIMIT_AS, &limit) != 0) std::_Exit(4);
    const absl::Status s = GemmF32(x.data(), m, w.data(), n, k, nullptr, y.data(), GemmKernelOptions{});
    std::_Exit(s.code() == absl::StatusCode::kResourceExhausted ? 0 : 1);
  };
  EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace qrag::backend::cpu
