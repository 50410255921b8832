// Parity of the CUDA backend with the CPU reference backend, op x dtype x shape (ctest label `gpu`;
// skipped without a GPU). GEMMs on integer-valued inputs in [-2, 2] must agree bit for bit in every
// precision (the operands are exact in every format and the epilogue rounds like the CPU's); other ops
// agree within the tolerance table below. Every output buffer is poisoned (NaN) before the op and checked
// fully written and not all zero (tests/backend/cuda_parity_util.h). The encoder ops: cuda_encoder_ops_test.cc.
#include "server/backend/cuda/cuda_backend.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "absl/algorithm/container.h"

#include "tests/backend/cuda_parity_util.h"

namespace qrag::backend {
namespace {

// Tolerances: max |gpu - cpu| / max(|cpu|) over the output (the ops that are not exact).
constexpr double kRmsNormTol = 1e-6;   // fp32, sum order differs
constexpr double kRopeTol = 1e-6;      // cosf/sinf vs glibc: a few ulp
constexpr double kSiluTol = 1e-6;      // expf vs glibc
constexpr double kAttentionTol = 1e-5; // sum order, online softmax
// GEMMs on random inputs (codes identical to the CPU's; only the accumulation differs): fp32/bf16 sum in
// fp32 in another order; FP8 tensor cores accumulate with fewer bits between cuBLASLt's fp32 promotions
// (DeepSeek-V3 report, section 3.3.2: about 14 bits); int8 sums are exact integers, so int8 is bit-exact.
double RandomGemmTol(Precision p) {
  switch (p) {
    case Precision::kF32:
    case Precision::kBF16: return 1e-5;
    case Precision::kFP8: return 2e-3;
    case Precision::kInt8: return 0.0;
    case Precision::kW4: break;  // not served by the CUDA backend (kCudaPrecisions)
  }
  ADD_FAILURE() << "no GEMM tolerance for " << PrecisionName(p);
  return 0.0;
}

// ---- GEMM: exact on integer inputs, every precision, with and without bias, padded and aligned shapes ----

struct GemmCase {
  Precision precision;
  int m, n, k;
  bool bias;
};

class CudaGemmParity : public CudaParity, public ::testing::WithParamInterface<GemmCase> {};

TEST_P(CudaGemmParity, IntegerInputsBitExact) {
  const GemmCase c = GetParam();
  const std::vector<float> w = Integers(size_t{1} * c.n * c.k, 11 + c.n), x = Integers(size_t{1} * c.m * c.k, 7 + c.m);
  // Bias values that are not exact multiples of anything: the fma rounding shows if it differs.
  std::vector<float> bias = Random(c.n, 5);
  std::vector<float> out[2];
  GemmStats stats[2];
  Backend* bes[2] = {b_.cpu.get(), b_.gpu.get()};
  for (int i = 0; i < 2; ++i) {
    auto wt = bes[i]->UploadWeight(w.data(), c.n, c.k, c.precision, c.bias ? bias.data() : nullptr);
    ASSERT_TRUE(wt.ok()) << wt.status();
    DeviceBuffer xd = Upload(*bes[i], x), yd = Poisoned(*bes[i], size_t{1} * c.m * c.n);
    stats[i] = bes[i]->Gemm(xd.as<float>(), c.m, *wt, yd.as<float>());
    ASSERT_TRUE(bes[i]->Synchronize().ok()) << bes[i]->Synchronize();
    out[i] = Download(*bes[i], yd, size_t{1} * c.m * c.n);
  }
  ExpectWrittenNonZero(out[1], "gemm");
  EXPECT_EQ(stats[1].ops, 2LL * c.m * c.n * c.k);
  EXPECT_EQ(stats[1].precision, c.precision);
  EXPECT_EQ(stats[0].ops, stats[1].ops);
  for (size_t i = 0; i < out[0].size(); ++i) {
    uint32_t a, b;
    std::memcpy(&a, &out[0][i], 4);
    std::memcpy(&b, &out[1][i], 4);
    ASSERT_EQ(a, b) << "element " << i << " (row " << i / c.n << ", col " << i % c.n << "): cpu " << out[0][i]
                    << " gpu " << out[1][i];
  }
}

std::vector<GemmCase> GemmCases() {
  std::vector<GemmCase> cases;
  for (Precision p : kCudaPrecisions) {
    for (auto [m, n, k] : {std::tuple{1, 64, 64}, {7, 172, 64}, {5, 64, 172}, {33, 100, 48}, {1, 512, 512},
                           {64, 256, 1024}, {3, 4096, 4096}}) {
      cases.push_back({p, m, n, k, false});
    }
    cases.push_back({p, 9, 172, 64, true});
    cases.push_back({p, 1, 4096, 256, true});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaGemmParity, ::testing::ValuesIn(GemmCases()), [](const auto& info) {
  const GemmCase& c = info.param;
  return absl::StrCat(PrecisionName(c.precision), "_M", c.m, "_N", c.n, "_K", c.k, c.bias ? "_Bias" : "");
});

// Random inputs: the quantized codes are identical, only the fp32 summation order differs.
TEST_F(CudaParity, GemmRandomInputsWithinTolerance) {
  for (Precision p : kCudaPrecisions) {
    const int m = 13, n = 300, k = 520;
    const std::vector<float> w = Random(size_t{1} * n * k, 1), x = Random(size_t{1} * m * k, 2, 3.0f);
    std::vector<float> out[2];
    Backend* bes[2] = {b_.cpu.get(), b_.gpu.get()};
    for (int i = 0; i < 2; ++i) {
      auto wt = bes[i]->UploadWeight(w.data(), n, k, p, nullptr);
      ASSERT_TRUE(wt.ok());
      DeviceBuffer xd = Upload(*bes[i], x), yd = Poisoned(*bes[i], size_t{1} * m * n);
      bes[i]->Gemm(xd.as<float>(), m, *wt, yd.as<float>());
      out[i] = Download(*bes[i], yd, size_t{1} * m * n);
    }
    ExpectWrittenNonZero(out[1], PrecisionName(p));
    EXPECT_LE(MaxRelDiff(out[1], out[0]), RandomGemmTol(p)) << PrecisionName(p);
  }
}

// Every precision either is served (kCudaPrecisions) or is refused with UNIMPLEMENTED naming the way out.
TEST_F(CudaParity, UnservedPrecisionsAreUnimplemented) {
  const std::vector<float> w = Integers(64 * 64, 3);
  for (Precision p : kAllPrecisions) {
    auto wt = b_.gpu->UploadWeight(w.data(), 64, 64, p, nullptr);
    if (absl::c_linear_search(kCudaPrecisions, p)) {
      EXPECT_TRUE(wt.ok()) << PrecisionName(p) << ": " << wt.status();
    } else {
      EXPECT_EQ(wt.status().code(), absl::StatusCode::kUnimplemented) << PrecisionName(p);
      EXPECT_THAT(std::string(wt.status().message()), ::testing::HasSubstr("--device cpu")) << PrecisionName(p);
    }
  }
  EXPECT_TRUE(b_.gpu->Synchronize().ok());
}

// ---- elementwise ops ----

TEST_F(CudaParity, EmbedGathersExactly) {
  const int vocab = 50, dim = 66;
  const std::vector<float> table = Random(size_t{1} * vocab * dim, 3);
  const std::vector<int32_t> tokens = {0, 49, 7, 7, 13};
  std::vector<float> out[2];
  Backend* bes[2] = {b_.cpu.get(), b_.gpu.get()};
  for (int i = 0; i < 2; ++i) {
    DeviceBuffer t = Upload(*bes[i], table), o = Poisoned(*bes[i], tokens.size() * dim);
    bes[i]->Embed(t.as<float>(), dim, tokens, o.as<float>());
    out[i] = Download(*bes[i], o, tokens.size() * dim);
  }
  ExpectWrittenNonZero(out[1], "embed");
  EXPECT_EQ(out[0], out[1]);
}

TEST_F(CudaParity, RmsNormWithinTolerance) {
  for (int dim : {64, 288, 4096}) {
    const int rows = 5;
    const std::vector<float> x = Random(size_t{1} * rows * dim, 4, 2.0f), w = Random(dim, 5);
    std::vector<float> out[2];
    Backend* bes[2] = {b_.cpu.get(), b_.gpu.get()};
    for (int i = 0; i < 2; ++i) {
      DeviceBuffer xd = Upload(*bes[i], x), wd = Upload(*bes[i], w), o = Poisoned(*bes[i], x.size());
      bes[i]->RmsNorm(xd.as<float>(), wd.as<float>(), rows, dim, 1e-5f, o.as<float>());
      out[i] = Download(*bes[i], o, x.size());
    }
    ExpectWrittenNonZero(out[1], "rmsnorm");
    EXPECT_LE(MaxRelDiff(out[1], out[0]), kRmsNormTol) << "dim " << dim;
  }
}

TEST_F(CudaParity, RopeBothPairingsGqaWithinTolerance) {
  const AttentionShape shape{8, 2, 64};
  const std::vector<int32_t> positions = {0, 1, 17, 255, 1000, 4095};
  std::vector<float> inv(shape.head_dim / 2);
  for (int i = 0; i < shape.head_dim / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / shape.head_dim);
  for (RopePairing pairing : {RopePairing::kInterleaved, RopePairing::kRotateHalf}) {
    const size_t nq = positions.size() * shape.n_heads * shape.head_dim;
    const size_t nk = positions.size() * shape.n_kv_heads * shape.head_dim;
    const std::vector<float> q = Random(nq, 6), k = Random(nk, 7);
    std::vector<float> oq[2], ok[2];
    Backend* bes[2] = {b_.cpu.get(), b_.gpu.get()};
    for (int i = 0; i < 2; ++i) {
      DeviceBuffer qd = Upload(*bes[i], q), kd = Upload(*bes[i], k), fd = Upload(*bes[i], inv);
      bes[i]->Rope(qd.as<float>(), kd.as<float>(), positions, shape, fd.as<float>(), pairing);
      oq[i] = Download(*bes[i], qd, nq);
      ok[i] = Download(*bes[i], kd, nk);
    }
    ExpectWrittenNonZero(oq[1], "rope q");
    EXPECT_LE(MaxRelDiff(oq[1], oq[0]), kRopeTol);
    EXPECT_LE(MaxRelDiff(ok[1], ok[0]), kRopeTol);
    EXPECT_NE(oq[1], q);  // it rotated
  }
}

TEST_F(CudaParity, SiluMulAndAdd) {
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{4096}, int64_t{100003}}) {
    const std::vector<float> g = Random(n, 8, 4.0f), u = Random(n, 9);
    std::vector<float> silu[2], sum[2];
    Backend* bes[2] = {b_.cpu.get(), b_.gpu.get()};
    for (int i = 0; i < 2; ++i) {
      DeviceBuffer gd = Upload(*bes[i], g), ud = Upload(*bes[i], u), o = Poisoned(*bes[i], n);
      bes[i]->SiluMul(gd.as<float>(), ud.as<float>(), n, o.as<float>());
      silu[i] = Download(*bes[i], o, n);
      bes[i]->Add(gd.as<float>(), ud.as<float>(), n);
      sum[i] = Download(*bes[i], gd, n);
    }
    ExpectWrittenNonZero(silu[1], "silu_mul");
    EXPECT_LE(MaxRelDiff(silu[1], silu[0]), kSiluTol) << n;
    EXPECT_EQ(sum[1], sum[0]) << n;  // one IEEE addition each: exact
  }
}

// ---- paged KV cache and attention: prefill chunks and decode steps, GQA, sliding window ----

struct AttnCase {
  int n_heads, n_kv_heads, head_dim, window;
};

class CudaAttentionParity : public CudaParity, public ::testing::WithParamInterface<AttnCase> {};

TEST_P(CudaAttentionParity, PrefillAndDecodeOverScatteredBlocks) {
  const AttnCase ac = GetParam();
  const AttentionShape shape{ac.n_heads, ac.n_kv_heads, ac.head_dim};
  const int block_size = 4, num_blocks = 64;
  const int64_t row = int64_t{ac.n_kv_heads} * ac.head_dim;
  // Three sequences with scattered, non-increasing physical blocks.
  const std::vector<std::vector<int32_t>> tables = {{5, 3, 60, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                                     23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38,
                                                     39, 40, 41, 42, 43, 44},
                                                    {0, 1},
                                                    {63, 2, 4, 6}};
  const std::vector<int> lengths = {150, 6, 13};  // tokens already in each sequence after this step
  std::vector<AttentionBatch::Sequence> seqs;
  for (const auto& t : tables) seqs.push_back({absl::MakeConstSpan(t)});
  // Step 1 (prefill): every position of every sequence. Step 2 (decode): the last position of each.
  for (int step = 0; step < 2; ++step) {
    std::vector<int32_t> positions, token_seq;
    for (int s = 0; s < 3; ++s) {
      for (int p = step == 0 ? 0 : lengths[s] - 1; p < lengths[s]; ++p) {
        positions.push_back(p);
        token_seq.push_back(s);
      }
    }
    AttentionBatch batch;
    batch.positions = positions;
    batch.token_seq = token_seq;
    batch.sequences = seqs;
    batch.block_size = block_size;
    batch.sliding_window = ac.window;
    const size_t tokens = positions.size();
    const std::vector<float> k = Random(tokens * row, 20 + step), v = Random(tokens * row, 30 + step),
                             q = Random(tokens * ac.n_heads * ac.head_dim, 40 + step);
    std::vector<float> out[2], kc[2];
    int64_t ops[2];
    Backend* bes[2] = {b_.cpu.get(), b_.gpu.get()};
    for (int i = 0; i < 2; ++i) {
      const size_t slots = size_t{1} * num_blocks * block_size;
      DeviceBuffer kcache = Upload(*bes[i], std::vector<float>(slots * row, 0.0f));
      DeviceBuffer vcache = Upload(*bes[i], std::vector<float>(slots * row, 0.0f));
      KvLayer cache{kcache.as<float>(), vcache.as<float>(), static_cast<int64_t>(slots)};
      DeviceBuffer kd = Upload(*bes[i], k), vd = Upload(*bes[i], v), qd = Upload(*bes[i], q);
      DeviceBuffer od = Poisoned(*bes[i], q.size());
      if (step == 1) {
        // The decode step needs the earlier positions: write random keys and values for them first.
        std::vector<int32_t> pp, ps;
        for (int s = 0; s < 3; ++s)
          for (int p = 0; p < lengths[s] - 1; ++p) {
            pp.push_back(p);
            ps.push_back(s);
          }
        AttentionBatch prior = batch;
        prior.positions = pp;
        prior.token_seq = ps;
        const std::vector<float> pk = Random(pp.size() * row, 50), pv = Random(pp.size() * row, 51);
        DeviceBuffer pkd = Upload(*bes[i], pk), pvd = Upload(*bes[i], pv);
        bes[i]->KvWrite(pkd.as<float>(), pvd.as<float>(), prior, shape, cache);
      }
      bes[i]->KvWrite(kd.as<float>(), vd.as<float>(), batch, shape, cache);
      ops[i] = bes[i]->Attention(qd.as<float>(), cache, batch, shape, od.as<float>());
      ASSERT_TRUE(bes[i]->Synchronize().ok()) << bes[i]->Synchronize();
      out[i] = Download(*bes[i], od, q.size());
      kc[i] = Download(*bes[i], kcache, slots * row);
    }
    ExpectWrittenNonZero(out[1], "attention");
    EXPECT_EQ(kc[0], kc[1]) << "kv cache contents differ";
    EXPECT_EQ(ops[0], ops[1]);
    EXPECT_LE(MaxRelDiff(out[1], out[0]), kAttentionTol) << (step == 0 ? "prefill" : "decode");
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttentionParity,
                         ::testing::Values(AttnCase{8, 4, 8, 0}, AttnCase{8, 2, 64, 0}, AttnCase{4, 4, 128, 0},
                                           AttnCase{8, 2, 64, 5}, AttnCase{32, 8, 128, 0}, AttnCase{2, 1, 256, 37}),
                         [](const auto& info) {
                           const AttnCase& c = info.param;
                           return absl::StrCat("H", c.n_heads, "_KV", c.n_kv_heads, "_D", c.head_dim,
                                               c.window ? absl::StrCat("_Window", c.window) : "");
                         });

// ---- argmax and failure cases ----

TEST_F(CudaParity, ArgmaxIsTheFirstMaximum) {
  const int rows = 4, vocab = 32000;
  std::vector<float> logits = Random(size_t{1} * rows * vocab, 60);
  logits[0 * vocab + 17] = 100.0f;
  logits[0 * vocab + 31000] = 100.0f;  // tie: the first wins
  logits[1 * vocab + 31999] = 50.0f;
  logits[2 * vocab + 0] = 50.0f;
  logits[3 * vocab + 5] = NAN;  // NaN is never the maximum
  logits[3 * vocab + 6] = 70.0f;
  DeviceBuffer d = Upload(*b_.gpu, logits);
  auto ids = b_.gpu->Argmax(d.as<float>(), rows, vocab);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<int32_t>{17, 31999, 0, 6}));
}

TEST_F(CudaParity, BadBlockTableIsAStickyInvalidArgumentNotACrash) {
  const AttentionShape shape{2, 1, 8};
  auto kc = b_.gpu->Allocate(16 * 8 * sizeof(float));
  auto vc = b_.gpu->Allocate(16 * 8 * sizeof(float));
  ASSERT_TRUE(kc.ok() && vc.ok());
  KvLayer cache{kc->as<float>(), vc->as<float>(), 16};
  const std::vector<int32_t> table = {7};  // block 7 x 4 slots is past the 16-slot cache
  const std::vector<AttentionBatch::Sequence> seqs = {{absl::MakeConstSpan(table)}};
  const std::vector<int32_t> positions = {0}, token_seq = {0};
  AttentionBatch batch;
  batch.positions = positions;
  batch.token_seq = token_seq;
  batch.sequences = seqs;
  batch.block_size = 4;
  DeviceBuffer k = Upload(*b_.gpu, Random(8, 1)), v = Upload(*b_.gpu, Random(8, 2));
  b_.gpu->KvWrite(k.as<float>(), v.as<float>(), batch, shape, cache);
  absl::Status s = b_.gpu->Synchronize();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), ::testing::HasSubstr("outside the cache"));
  EXPECT_EQ(b_.gpu->Synchronize().code(), absl::StatusCode::kInvalidArgument);  // sticky
}

TEST_F(CudaParity, AllocateTooMuchIsResourceExhausted) {
  auto big = b_.gpu->Allocate(size_t{1} << 50);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(b_.gpu->Synchronize().ok());  // the failed allocation leaves the backend usable
}

}  // namespace
}  // namespace qrag::backend
