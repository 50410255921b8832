// GPU tests of kernels/ used directly (ctest label `gpu`; skipped without a GPU): cuBLASLt GEMM plans on
// exactly representable inputs (exact), the scaling modes, autotuning and the plan cache, run-time argument
// errors, and the per-token quantization kernels against server/quant/row_quant (identical codes).
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/gemm_plan.h"
#include "kernels/quantize.cuh"
#include "kernels/rms_norm.cuh"
#include "kernels/sample.cuh"
#include "kernels/silu_mul.cuh"
#include "server/quant/bf16.h"
#include "server/quant/fp8.h"
#include "server/quant/row_quant.h"
#include "tests/backend/gpu_test_util.h"
#include "tests/kernels/device_array.h"
#include "tests/test_util.h"

namespace qrag::kernels {
namespace {

using ::qrag::testing::DeviceArray;

constexpr size_t kWorkspace = size_t{32} << 20;

// Integer values in [-2, 2]: exact in every format, and their sums are exact in fp32/int32.
std::vector<int> IntegerMatrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-2, 2);
  std::vector<int> v(rows * cols);
  for (int& x : v) x = d(rng);
  return v;
}

// sum_p x[i, p] * w[j, p] as D[i, j] (row-major [m, n]).
std::vector<double> ExactProduct(const std::vector<int>& x, const std::vector<int>& w, int64_t m, int64_t n,
                                 int64_t k) {
  std::vector<double> d(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int64_t s = 0;
      for (int64_t p = 0; p < k; ++p) s += int64_t{x[i * k + p]} * w[j * k + p];
      d[i * n + j] = static_cast<double>(s);
    }
  return d;
}

template <typename T, typename Fn>
std::vector<T> Encode(const std::vector<int>& v, Fn fn) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = fn(static_cast<float>(v[i]));
  return out;
}

class CudaGemmPlan : public ::testing::Test {
 protected:
  void SetUp() override {
    QRAG_REQUIRE_GPU();
    auto h = CublasLt::Create();
    ASSERT_TRUE(h.ok()) << h.status();
    lt_ = std::move(*h);
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
    workspace_ = std::make_unique<DeviceArray<uint8_t>>(kWorkspace);
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  GemmArgs Args(const void* w, const void* x, void* d) const {
    GemmArgs a;
    a.w = w;
    a.x = x;
    a.d = d;
    a.workspace = workspace_->get();
    a.workspace_bytes = kWorkspace;
    return a;
  }

  // Runs `desc` on integer inputs in the given format and compares D with the exact product.
  void CheckExact(GemmInput input, GemmOutput output, int64_t m, int64_t n, int64_t k) {
    const std::vector<int> x = IntegerMatrix(m, k, 1 + m), w = IntegerMatrix(n, k, 2 + n);
    const std::vector<double> ref = ExactProduct(x, w, m, n, k);
    GemmDesc desc;
    desc.input = input;
    desc.output = output;
    desc.m = m;
    desc.n = n;
    desc.k = k;
    auto plan = PlanGemm(lt_->get(), desc, 4, kWorkspace);
    ASSERT_TRUE(plan.ok()) << plan.status();
    std::vector<double> got(m * n);
    auto run = [&](const void* wd, const void* xd) {
      if (output == GemmOutput::kInt32) {
        DeviceArray<int32_t> d(m * n);
        ASSERT_TRUE(RunGemm(lt_->get(), **plan, Args(wd, xd, d.get()), stream_).ok());
        const auto h = d.Download();
        for (size_t i = 0; i < h.size(); ++i) got[i] = h[i];
      } else if (output == GemmOutput::kBF16) {
        DeviceArray<uint16_t> d(m * n);
        ASSERT_TRUE(RunGemm(lt_->get(), **plan, Args(wd, xd, d.get()), stream_).ok());
        const auto h = d.Download();
        for (size_t i = 0; i < h.size(); ++i) got[i] = quant::Bf16ToFloat(h[i]);
      } else {
        DeviceArray<float> d(m * n);
        ASSERT_TRUE(RunGemm(lt_->get(), **plan, Args(wd, xd, d.get()), stream_).ok());
        const auto h = d.Download();
        for (size_t i = 0; i < h.size(); ++i) got[i] = h[i];
      }
    };
    switch (input) {
      case GemmInput::kF32: {
        DeviceArray<float> wd(Encode<float>(w, [](float v) { return v; }));
        DeviceArray<float> xd(Encode<float>(x, [](float v) { return v; }));
        run(wd.get(), xd.get());
        break;
      }
      case GemmInput::kBF16: {
        DeviceArray<uint16_t> wd(Encode<uint16_t>(w, quant::FloatToBf16));
        DeviceArray<uint16_t> xd(Encode<uint16_t>(x, quant::FloatToBf16));
        run(wd.get(), xd.get());
        break;
      }
      case GemmInput::kFP8: {
        DeviceArray<uint8_t> wd(Encode<uint8_t>(w, quant::FloatToE4M3));
        DeviceArray<uint8_t> xd(Encode<uint8_t>(x, quant::FloatToE4M3));
        run(wd.get(), xd.get());
        break;
      }
      case GemmInput::kInt8: {
        DeviceArray<int8_t> wd(Encode<int8_t>(w, [](float v) { return static_cast<int8_t>(v); }));
        DeviceArray<int8_t> xd(Encode<int8_t>(x, [](float v) { return static_cast<int8_t>(v); }));
        run(wd.get(), xd.get());
        break;
      }
    }
    double nonzero = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      // bf16 output rounds the exact sum once (|sum| <= 4k needs more than bf16's 8 bits for large k).
      const double want = output == GemmOutput::kBF16 ? quant::Bf16ToFloat(quant::FloatToBf16(ref[i])) : ref[i];
      ASSERT_EQ(got[i], want) << GemmDescString(desc) << " at " << i;
      nonzero += got[i] != 0;
    }
    EXPECT_GT(nonzero, 0.5 * ref.size());
  }

  std::unique_ptr<CublasLt> lt_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<DeviceArray<uint8_t>> workspace_;
};

TEST_F(CudaGemmPlan, F32_M1_N64_K48_Exact) { CheckExact(GemmInput::kF32, GemmOutput::kF32, 1, 64, 48); }
TEST_F(CudaGemmPlan, F32_M7_N172_K36_Exact) { CheckExact(GemmInput::kF32, GemmOutput::kF32, 7, 172, 36); }
TEST_F(CudaGemmPlan, BF16_M3_N128_K256_F32Out_Exact) { CheckExact(GemmInput::kBF16, GemmOutput::kF32, 3, 128, 256); }
TEST_F(CudaGemmPlan, BF16_M64_N256_K512_BF16Out) { CheckExact(GemmInput::kBF16, GemmOutput::kBF16, 64, 256, 512); }
TEST_F(CudaGemmPlan, FP8_E4M3_M1_N4096_K4096_F32Out_Exact) {
  CheckExact(GemmInput::kFP8, GemmOutput::kF32, 1, 4096, 4096);
}
TEST_F(CudaGemmPlan, FP8_E4M3_M33_N176_K64_F32Out_Exact) { CheckExact(GemmInput::kFP8, GemmOutput::kF32, 33, 176, 64); }
TEST_F(CudaGemmPlan, FP8_E4M3_M256_N512_K1024_BF16Out) {
  CheckExact(GemmInput::kFP8, GemmOutput::kBF16, 256, 512, 1024);
}
TEST_F(CudaGemmPlan, Int8_M1_N4096_K4096_I32Out_Exact) {
  CheckExact(GemmInput::kInt8, GemmOutput::kInt32, 1, 4096, 4096);
}
TEST_F(CudaGemmPlan, Int8_M17_N64_K176_I32Out_Exact) { CheckExact(GemmInput::kInt8, GemmOutput::kInt32, 17, 64, 176); }

// Scales that are powers of two keep products exact, so the scaled result is checked exactly too.
TEST_F(CudaGemmPlan, FP8_ScalingModes_M16_N64_K128_Exact) {
  const int64_t m = 16, n = 64, k = 128;
  const std::vector<int> x = IntegerMatrix(m, k, 5), w = IntegerMatrix(n, k, 6);
  const std::vector<double> ref = ExactProduct(x, w, m, n, k);
  DeviceArray<uint8_t> wd(Encode<uint8_t>(w, quant::FloatToE4M3));
  DeviceArray<uint8_t> xd(Encode<uint8_t>(x, quant::FloatToE4M3));
  std::vector<float> a_scale(n), b_scale(m);
  for (int64_t j = 0; j < n; ++j) a_scale[j] = std::ldexp(1.0f, static_cast<int>(j % 5) - 2);
  for (int64_t i = 0; i < m; ++i) b_scale[i] = std::ldexp(1.0f, static_cast<int>(i % 3) - 1);
  for (GemmScaling scaling : {GemmScaling::kPerTensor, GemmScaling::kOuterVector}) {
    SCOPED_TRACE(GemmScalingName(scaling));
    GemmDesc desc;
    desc.input = GemmInput::kFP8;
    desc.output = GemmOutput::kF32;
    desc.scaling = scaling;
    desc.m = m;
    desc.n = n;
    desc.k = k;
    auto plan = PlanGemm(lt_->get(), desc, 4, kWorkspace);
    if (scaling == GemmScaling::kOuterVector && !plan.ok() && plan.status().code() == absl::StatusCode::kUnimplemented) {
      // The finding that matters for the design: then the epilogue kernel is the only per-channel path.
      RecordProperty("outer_vector", "unsupported: " + std::string(plan.status().message()));
      std::printf("NOTE: cuBLASLt outer-vector fp8 scaling unsupported here: %s\n",
                  std::string(plan.status().message()).c_str());
      continue;
    }
    ASSERT_TRUE(plan.ok()) << plan.status();
    const std::vector<float> as = scaling == GemmScaling::kPerTensor ? std::vector<float>{0.5f} : a_scale;
    const std::vector<float> bs = scaling == GemmScaling::kPerTensor ? std::vector<float>{4.0f} : b_scale;
    DeviceArray<float> ad(as), bd(bs), d(m * n);
    GemmArgs args = Args(wd.get(), xd.get(), d.get());
    // Missing scale pointers are the caller's error, reported before cuBLASLt runs.
    absl::Status missing = RunGemm(lt_->get(), **plan, args, stream_);
    EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
    args.a_scale = ad.get();
    args.b_scale = bd.get();
    ASSERT_TRUE(RunGemm(lt_->get(), **plan, args, stream_).ok());
    const auto h = d.Download();
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const double s = scaling == GemmScaling::kPerTensor ? 2.0 : double{a_scale[j]} * b_scale[i];
        ASSERT_EQ(h[i * n + j], ref[i * n + j] * s) << i << "," << j;
      }
  }
}

TEST_F(CudaGemmPlan, ArgumentErrorsAreInvalidArgument) {
  GemmDesc desc;
  desc.input = GemmInput::kFP8;
  desc.m = 4;
  desc.n = 32;
  desc.k = 32;
  auto plan = PlanGemm(lt_->get(), desc, 1, kWorkspace);
  ASSERT_TRUE(plan.ok()) << plan.status();
  DeviceArray<uint8_t> w(32 * 32 + 16), x(4 * 32 + 16);
  DeviceArray<float> d(4 * 32 + 4);
  EXPECT_EQ(RunGemm(lt_->get(), **plan, Args(nullptr, x.get(), d.get()), stream_).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RunGemm(lt_->get(), **plan, Args(w.get() + 1, x.get(), d.get()), stream_).code(),
            absl::StatusCode::kInvalidArgument);
  GemmArgs small = Args(w.get(), x.get(), d.get());
  small.workspace_bytes = 0;
  if ((*plan)->workspace_bytes() > 0) {
    EXPECT_EQ(RunGemm(lt_->get(), **plan, small, stream_).code(), absl::StatusCode::kInvalidArgument);
  }
  desc.k = 24;
  EXPECT_EQ(PlanGemm(lt_->get(), desc, 1, kWorkspace).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CudaGemmPlan, CacheAutotunesOncePerShapeAndKeepsTheFastest) {
  GemmPlanCacheOptions o;
  o.autotune = true;
  o.max_candidates = 8;
  o.autotune_iterations = 3;
  GemmPlanCache cache(lt_->get(), o);
  const int64_t m = 64, n = 1024, k = 1024;
  DeviceArray<uint8_t> w(Encode<uint8_t>(IntegerMatrix(n, k, 9), quant::FloatToE4M3));
  DeviceArray<uint8_t> x(Encode<uint8_t>(IntegerMatrix(m, k, 10), quant::FloatToE4M3));
  DeviceArray<float> d(m * n);
  GemmDesc desc;
  desc.input = GemmInput::kFP8;
  desc.m = m;
  desc.n = n;
  desc.k = k;
  auto p1 = cache.Get(desc, Args(w.get(), x.get(), d.get()), stream_);
  ASSERT_TRUE(p1.ok()) << p1.status();
  auto p2 = cache.Get(desc, Args(w.get(), x.get(), d.get()), stream_);
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(*p1, *p2);
  EXPECT_EQ(cache.size(), 1u);
  const GemmPlan& plan = **p1;
  EXPECT_EQ(plan.ops(), 2 * m * n * k);
  if (plan.candidates().size() > 1) {
    const float best = plan.candidates()[plan.chosen()].measured_ms;
    EXPECT_GT(best, 0.0f);
    for (const auto& c : plan.candidates()) {
      if (c.measured_ms >= 0) EXPECT_LE(best, c.measured_ms);
    }
  }
  std::printf("fp8 m=%lld n=%lld k=%lld: %zu candidates, chosen %d\n", static_cast<long long>(m),
              static_cast<long long>(n), static_cast<long long>(k), plan.candidates().size(), plan.chosen());
  desc.m = 65;
  ASSERT_TRUE(cache.Get(desc, Args(w.get(), x.get(), d.get()), stream_).ok());
  EXPECT_EQ(cache.size(), 2u);
}

// ---- quantization kernels: the codes and scales of server/quant/row_quant, bit for bit ----

std::vector<float> QuantInputs(int64_t rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float mag = std::ldexp(1.0f, static_cast<int>(r % 13) - 6);
    for (int c = 0; c < cols; ++c) x[r * cols + c] = nd(rng) * mag;
  }
  // Special rows: zeros, ties of the formats, a tiny subnormal amax, huge values, inf, NaN.
  if (rows >= 6) {
    std::fill(x.begin(), x.begin() + cols, 0.0f);
    for (int c = 0; c < cols; ++c) x[cols + c] = (c % 7 - 3) * 0.5f + (c % 2 ? 127.0f : -448.0f) * (c == 0);
    for (int c = 0; c < cols; ++c) x[2 * cols + c] = (c == 1 ? 1e-44f : 0.0f);
    for (int c = 0; c < cols; ++c) x[3 * cols + c] = (c % 3 - 1) * 3e38f;
    x[4 * cols + 2] = INFINITY;
    x[5 * cols + 3] = NAN;
  }
  return x;
}

class CudaQuantize : public ::testing::TestWithParam<QuantFormat> {
 protected:
  void SetUp() override { QRAG_REQUIRE_GPU(); }
};

void ExpectSameCodes(QuantFormat f, const std::vector<uint8_t>& want, const std::vector<uint8_t>& got) {
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (f == QuantFormat::kE4M3 && (want[i] & 0x7F) == 0x7F) {
      EXPECT_EQ(got[i] & 0x7F, 0x7F) << i;  // NaN: either sign
      continue;
    }
    ASSERT_EQ(static_cast<int>(want[i]), static_cast<int>(got[i])) << "element " << i;
  }
}

TEST_P(CudaQuantize, RowsMatchRowQuantBitForBit) {
  const QuantFormat f = GetParam();
  for (int cols : {1, 64, 172, 4096}) {
    const int64_t rows = 19;
    const int ld = (cols + 15) / 16 * 16;
    const std::vector<float> x = QuantInputs(rows, cols, cols);
    std::vector<uint8_t> want(rows * cols);
    std::vector<float> want_scales(rows);
    if (f == QuantFormat::kE4M3) {
      quant::QuantizeRowsE4M3(x.data(), rows, cols, want.data(), want_scales.data());
    } else {
      quant::QuantizeRowsInt8(x.data(), rows, cols, reinterpret_cast<int8_t*>(want.data()), want_scales.data());
    }
    DeviceArray<float> xd(x), scales(rows);
    DeviceArray<uint8_t> codes(rows * ld);
    ASSERT_EQ(LaunchQuantizeRows(xd.get(), rows, cols, ld, f, codes.get(), scales.get(), nullptr), cudaSuccess);
    const auto got = codes.Download();
    const auto got_scales = scales.Download();
    std::vector<uint8_t> got_unpadded(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
      ASSERT_EQ(std::memcmp(&want_scales[r], &got_scales[r], 4), 0) << "scale of row " << r << " cols " << cols;
      for (int c = 0; c < cols; ++c) got_unpadded[r * cols + c] = got[r * ld + c];
      for (int c = cols; c < ld; ++c) ASSERT_EQ(got[r * ld + c], 0) << "padding must be zero codes";
    }
    ExpectSameCodes(f, want, got_unpadded);
  }
}

TEST_P(CudaQuantize, FusedRmsNormAndSiluMulEqualUnfused) {
  const QuantFormat f = GetParam();
  const int64_t rows = 9;
  const int cols = 172, ld = 176;
  const std::vector<float> x = QuantInputs(rows + 6, cols, 3);
  std::vector<float> a(x.begin() + 6 * cols, x.end()), b(a.rbegin(), a.rend()), wt(cols);
  for (int c = 0; c < cols; ++c) wt[c] = 0.5f + c * 0.01f;
  DeviceArray<float> ad(a), bd(b), wd(wt), tmp(rows * cols), s1(rows), s2(rows);
  DeviceArray<uint8_t> c1(rows * ld), c2(rows * ld);
  ASSERT_EQ(LaunchRmsNormQuantize(ad.get(), wd.get(), rows, cols, 1e-5f, f, ld, c1.get(), s1.get(), nullptr),
            cudaSuccess);
  ASSERT_EQ(LaunchRmsNorm(ad.get(), wd.get(), rows, cols, 1e-5f, tmp.get(), nullptr), cudaSuccess);
  ASSERT_EQ(LaunchQuantizeRows(tmp.get(), rows, cols, ld, f, c2.get(), s2.get(), nullptr), cudaSuccess);
  EXPECT_EQ(c1.Download(), c2.Download());
  EXPECT_EQ(s1.Download(), s2.Download());
  c1.Poison();
  c2.Poison();
  ASSERT_EQ(LaunchSiluMulQuantize(ad.get(), bd.get(), rows, cols, f, ld, c1.get(), s1.get(), nullptr), cudaSuccess);
  ASSERT_EQ(LaunchSiluMul(ad.get(), bd.get(), rows * cols, tmp.get(), nullptr), cudaSuccess);
  ASSERT_EQ(LaunchQuantizeRows(tmp.get(), rows, cols, ld, f, c2.get(), s2.get(), nullptr), cudaSuccess);
  const auto codes = c1.Download();
  EXPECT_EQ(codes, c2.Download());
  EXPECT_EQ(s1.Download(), s2.Download());
  EXPECT_TRUE(std::any_of(codes.begin(), codes.end(), [](uint8_t v) { return v != 0; }));
}

TEST_P(CudaQuantize, DequantizeInvertsToCodeTimesScale) {
  const QuantFormat f = GetParam();
  const int64_t rows = 8;
  const int cols = 100, ld = 112;
  const std::vector<float> x = QuantInputs(rows + 6, cols, 4);
  const std::vector<float> body(x.begin() + 6 * cols, x.end());
  DeviceArray<float> xd(body), scales(rows), out(rows * cols);
  DeviceArray<uint8_t> codes(rows * ld);
  ASSERT_EQ(LaunchQuantizeRows(xd.get(), rows, cols, ld, f, codes.get(), scales.get(), nullptr), cudaSuccess);
  ASSERT_EQ(LaunchDequantizeRows(codes.get(), scales.get(), rows, cols, ld, f, out.get(), nullptr), cudaSuccess);
  const auto c = codes.Download();
  const auto s = scales.Download();
  const auto o = out.Download();
  for (int64_t r = 0; r < rows; ++r)
    for (int c0 = 0; c0 < cols; ++c0) {
      const uint8_t code = c[r * ld + c0];
      const float v = f == QuantFormat::kE4M3 ? quant::E4M3ToFloat(code) : static_cast<float>(static_cast<int8_t>(code));
      ASSERT_EQ(o[r * cols + c0], v * s[r]);
      // Round trip within half a step of the format (E4M3: 2^-4 relative; int8: scale / 2).
      const float tol = f == QuantFormat::kE4M3 ? std::fabs(body[r * cols + c0]) / 16 + s[r] * 1e-3f : s[r] * 0.5001f;
      ASSERT_LE(std::fabs(o[r * cols + c0] - body[r * cols + c0]), tol);
    }
}

INSTANTIATE_TEST_SUITE_P(Formats, CudaQuantize, ::testing::Values(QuantFormat::kE4M3, QuantFormat::kInt8),
                         [](const auto& info) { return info.param == QuantFormat::kE4M3 ? "E4M3" : "Int8"; });

// ---- sampling: the engine sampler's semantics (kernels/sample.cuh), against a host reference that sorts ----

int HostSample(const std::vector<float>& logits, const SampleParams& sp, float coin) {
  const int n = static_cast<int>(logits.size());
  std::vector<float> p(n);
  float m = -INFINITY;
  for (int i = 0; i < n; ++i) m = std::max(m, p[i] = logits[i] / sp.temperature);
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += (p[i] = std::exp(p[i] - m));
  for (float& v : p) v /= sum;
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
  if (sp.top_k > 0 && sp.top_k < n) {
    for (int i = sp.top_k; i < n; ++i) p[order[i]] = 0.0f;
    float kept = 0;
    for (float v : p) kept += v;
    for (float& v : p) v /= kept;
  }
  if (sp.top_p > 0.0f && sp.top_p < 1.0f) {
    const float cutoff = (1.0f - sp.top_p) / static_cast<float>(n - 1);
    std::vector<int> cand;
    for (int i : order) {
      if (p[i] >= cutoff && p[i] > 0) cand.push_back(i);
    }
    float cumulative = 0;
    int last = static_cast<int>(cand.size()) - 1;
    for (int i = 0; i < static_cast<int>(cand.size()); ++i) {
      cumulative += p[cand[i]];
      if (cumulative > sp.top_p) {
        last = i;
        break;
      }
    }
    const float r = coin * cumulative;
    float cdf = 0;
    for (int i = 0; i <= last; ++i) {
      cdf += p[cand[i]];
      if (r < cdf) return cand[i];
    }
    return cand[last];
  }
  float cdf = 0;
  for (int i = 0; i < n; ++i) {
    cdf += p[i];
    if (coin < cdf) return i;
  }
  for (int i = n - 1; i >= 0; --i) {
    if (p[i] > 0) return i;
  }
  return n - 1;
}

class CudaSample : public ::testing::Test {
 protected:
  void SetUp() override { QRAG_REQUIRE_GPU(); }
};

TEST_F(CudaSample, MatchesHostSamplerAwayFromBoundaries) {
  const int rows = 96, vocab = 3000;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  std::vector<float> logits(static_cast<size_t>(rows) * vocab), coins(rows);
  for (float& v : logits) v = nd(rng);
  for (float& c : coins) c = ud(rng);
  for (SampleParams sp : {SampleParams{1.0f, 0, 1.0f}, SampleParams{0.7f, 0, 0.9f}, SampleParams{1.0f, 40, 1.0f},
                          SampleParams{1.3f, 200, 0.5f}, SampleParams{0.5f, 0, 0.2f}}) {
    SCOPED_TRACE(::testing::Message() << "T=" << sp.temperature << " k=" << sp.top_k << " p=" << sp.top_p);
    DeviceArray<float> ld(logits), cd(coins), probs(logits.size());
    DeviceArray<int32_t> ids(rows);
    ASSERT_EQ(LaunchSample(ld.get(), rows, vocab, sp, cd.get(), probs.get(), ids.get(), nullptr), cudaSuccess);
    const auto got = ids.Download();
    int compared = 0;
    for (int r = 0; r < rows; ++r) {
      const std::vector<float> row(logits.begin() + static_cast<size_t>(r) * vocab,
                                   logits.begin() + static_cast<size_t>(r + 1) * vocab);
      const int want = HostSample(row, sp, coins[r]);
      // Skip draws within fp32 summation-order noise of a boundary (the coin's or top_p's).
      SampleParams lo = sp, hi = sp;
      if (sp.top_p < 1.0f) {
        lo.top_p -= 1e-4f;
        hi.top_p += 1e-4f;
      }
      if (HostSample(row, sp, std::max(0.0f, coins[r] - 1e-4f)) != want ||
          HostSample(row, sp, std::min(0.9999f, coins[r] + 1e-4f)) != want ||
          HostSample(row, lo, coins[r]) != want || HostSample(row, hi, coins[r]) != want) {
        continue;
      }
      ++compared;
      EXPECT_EQ(got[r], want) << "row " << r << " coin " << coins[r];
    }
    EXPECT_GT(compared, rows * 3 / 4);
  }
}

TEST_F(CudaSample, TopKOneIsArgmaxAndProbabilitiesAreRenormalized) {
  const int rows = 8, vocab = 50000, k = 5;
  std::vector<float> logits = [&] {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(rows) * vocab);
    for (float& x : v) x = nd(rng);
    return v;
  }();
  logits[2 * vocab + 100] = logits[2 * vocab + 200] = 50.0f;  // a tie: top-1 keeps the lower index
  const std::vector<float> coins = {0.0f, 0.5f, 0.99f, 0.3f, 0.1f, 0.7f, 0.9f, 0.25f};
  DeviceArray<float> ld(logits), cd(coins), probs(logits.size());
  DeviceArray<int32_t> ids(rows);
  ASSERT_EQ(LaunchSample(ld.get(), rows, vocab, SampleParams{1.0f, 1, 1.0f}, cd.get(), probs.get(), ids.get(),
                         nullptr),
            cudaSuccess);
  const auto got = ids.Download();
  for (int r = 0; r < rows; ++r) {
    const auto b = logits.begin() + static_cast<size_t>(r) * vocab;
    EXPECT_EQ(got[r], std::max_element(b, b + vocab) - b) << r;
  }
  ASSERT_EQ(LaunchSample(ld.get(), rows, vocab, SampleParams{1.0f, k, 1.0f}, cd.get(), probs.get(), ids.get(),
                         nullptr),
            cudaSuccess);
  const auto p = probs.Download();
  for (int r = 0; r < rows; ++r) {
    int nonzero = 0;
    double sum = 0;
    for (int i = 0; i < vocab; ++i) {
      ASSERT_FALSE(std::isnan(p[static_cast<size_t>(r) * vocab + i]));
      nonzero += p[static_cast<size_t>(r) * vocab + i] > 0;
      sum += p[static_cast<size_t>(r) * vocab + i];
    }
    EXPECT_EQ(nonzero, k) << r;
    EXPECT_NEAR(sum, 1.0, 1e-5) << r;
  }
  EXPECT_EQ(LaunchSample(ld.get(), rows, vocab, SampleParams{0.0f, 0, 1.0f}, cd.get(), probs.get(), ids.get(), nullptr),
            cudaErrorInvalidValue);
}

}  // namespace
}  // namespace qrag::kernels
