// Parity of the CUDA backend's encoder ops (server/backend/cuda/cuda_encoder_ops.cc) with the CPU reference
// backend (ctest label `gpu`; skipped without a GPU): LayerNorm, exact GELU and bidirectional packed
// attention over MiniLM's shapes (dim 384, 12 heads x 32) and ragged packed batches, every output poisoned
// and checked fully written and non-zero; attention's op counts equal; bad batches are sticky
// INVALID_ARGUMENTs, not crashes.
//
// Both sides do the same arithmetic in the same precision (double sums, double erf and exp; see the kernel
// headers); only the order of LayerNorm's double sums and the last bits of CUDA's erf/exp differ, so the
// results agree to about one float rounding. Tolerances: max |gpu - cpu| / max |cpu| over the output.
#include <cstdint>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/encoder_attention.cuh"
#include "tests/backend/cuda_parity_util.h"

namespace qrag::backend {
namespace {

constexpr double kLayerNormTol = 1e-6;
constexpr double kGeluTol = 1e-6;
constexpr double kEncoderAttentionTol = 1e-6;

class CudaEncoderParity : public CudaParity {
 protected:
  // `host` on `be` after `pad` leading floats, so that data() + pad is not 16-byte aligned for pad 1..3
  // (the kernels' scalar paths).
  DeviceBuffer UploadPadded(Backend& be, const std::vector<float>& host, int pad) {
    std::vector<float> h(pad, 0.0f);
    h.insert(h.end(), host.begin(), host.end());
    return Upload(be, h);
  }
  DeviceBuffer PoisonedPadded(Backend& be, size_t n, int pad) { return Poisoned(be, n + pad); }
  std::vector<float> DownloadPadded(Backend& be, const DeviceBuffer& buf, size_t n, int pad) {
    std::vector<float> h = Download(be, buf, n + pad);
    return std::vector<float>(h.begin() + pad, h.end());
  }
};

// ---- LayerNorm ----

struct LayerNormCase {
  int rows, dim, pad;
  float mean;  // added to every input: the variance must not cancel
};

void PrintTo(const LayerNormCase& c, std::ostream* os) {
  *os << "rows " << c.rows << " dim " << c.dim << " pad " << c.pad << " mean " << c.mean;
}

class CudaLayerNormParity : public CudaEncoderParity, public ::testing::WithParamInterface<LayerNormCase> {};

TEST_P(CudaLayerNormParity, MatchesCpuReferenceAndInPlace) {
  const LayerNormCase c = GetParam();
  const size_t n = size_t{1} * c.rows * c.dim;
  std::vector<float> x = Random(n, 100 + c.dim, 2.0f);
  for (float& v : x) v += c.mean;
  const std::vector<float> w = Random(c.dim, 101), b = Random(c.dim, 102, 0.1f);
  const float eps = 1e-12f;  // MiniLM's layer_norm_eps
  std::vector<float> out[2], in_place[2];
  Backend* bes[2] = {b_.cpu.get(), b_.gpu.get()};
  for (int i = 0; i < 2; ++i) {
    DeviceBuffer xd = UploadPadded(*bes[i], x, c.pad), wd = UploadPadded(*bes[i], w, c.pad),
                 bd = UploadPadded(*bes[i], b, c.pad), od = PoisonedPadded(*bes[i], n, c.pad);
    bes[i]->LayerNorm(xd.as<float>() + c.pad, wd.as<float>() + c.pad, bd.as<float>() + c.pad, c.rows, c.dim, eps,
                      od.as<float>() + c.pad);
    ASSERT_TRUE(bes[i]->Synchronize().ok()) << bes[i]->Synchronize();
    out[i] = DownloadPadded(*bes[i], od, n, c.pad);
    bes[i]->LayerNorm(xd.as<float>() + c.pad, wd.as<float>() + c.pad, bd.as<float>() + c.pad, c.rows, c.dim, eps,
                      xd.as<float>() + c.pad);
    in_place[i] = DownloadPadded(*bes[i], xd, n, c.pad);
  }
  ExpectWrittenNonZero(out[1], "layer_norm");
  EXPECT_LE(MaxRelDiff(out[1], out[0]), kLayerNormTol);
  EXPECT_EQ(in_place[1], out[1]) << "in place differs from out of place";
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaLayerNormParity,
                         ::testing::Values(LayerNormCase{1, 384, 0, 0.0f}, LayerNormCase{37, 384, 0, 0.0f},
                                           LayerNormCase{5, 384, 0, 1000.0f}, LayerNormCase{3, 384, 1, 0.0f},
                                           LayerNormCase{4, 7, 0, 0.0f}, LayerNormCase{2, 1, 0, 3.0f},
                                           LayerNormCase{3, 1536, 0, -5.0f}, LayerNormCase{2, 4099, 2, 0.0f}),
                         [](const auto& info) {
                           const LayerNormCase& c = info.param;
                           return absl::StrCat("Rows", c.rows, "_Dim", c.dim, c.pad ? "_Unaligned" : "",
                                               c.mean != 0.0f ? "_Offset" : "");
                         });

// ---- GELU ----

TEST_F(CudaEncoderParity, Gelu_Erf_SizesAndAlignments) {
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1536}, int64_t{100003}}) {
    for (int pad : {0, 1}) {
      std::vector<float> x = Random(n, 200 + n, 3.0f);
      // The far tails (GELU -> 0 and -> x) and the values around 0.
      const float specials[] = {-40.0f, -6.0f, -1.0f, -1e-20f, 0.0f, 1e-20f, 1.0f, 6.0f, 40.0f};
      if (x.size() > 3 * std::size(specials)) {
        for (size_t i = 0; i < std::size(specials); ++i) x[i * 3] = specials[i];
      }
      std::vector<float> out[2], in_place[2];
      Backend* bes[2] = {b_.cpu.get(), b_.gpu.get()};
      for (int i = 0; i < 2; ++i) {
        DeviceBuffer xd = UploadPadded(*bes[i], x, pad), od = PoisonedPadded(*bes[i], n, pad);
        bes[i]->Gelu(xd.as<float>() + pad, n, od.as<float>() + pad);
        out[i] = DownloadPadded(*bes[i], od, n, pad);
        bes[i]->Gelu(xd.as<float>() + pad, n, xd.as<float>() + pad);
        in_place[i] = DownloadPadded(*bes[i], xd, n, pad);
      }
      const std::string what = absl::StrCat("gelu n ", n, " pad ", pad);
      ExpectWrittenNonZero(out[1], what.c_str());
      EXPECT_LE(MaxRelDiff(out[1], out[0]), kGeluTol) << what;
      EXPECT_EQ(in_place[1], out[1]) << what;
    }
  }
}

// ---- EncoderAttention ----

struct EncoderAttnCase {
  int n_heads, head_dim;
  std::vector<int32_t> lengths;  // tokens of each packed sequence, in order
};

void PrintTo(const EncoderAttnCase& c, std::ostream* os) {
  *os << "heads " << c.n_heads << " head_dim " << c.head_dim << " lengths {" << absl::StrJoin(c.lengths, ", ") << "}";
}

std::vector<int32_t> Offsets(const std::vector<int32_t>& lengths) {
  std::vector<int32_t> offsets = {0};
  for (int32_t len : lengths) offsets.push_back(offsets.back() + len);
  return offsets;
}

class CudaEncoderAttentionParity : public CudaEncoderParity,
                                   public ::testing::WithParamInterface<EncoderAttnCase> {};

TEST_P(CudaEncoderAttentionParity, RaggedPackedBatch) {
  const EncoderAttnCase& c = GetParam();
  const AttentionShape shape{c.n_heads, c.n_heads, c.head_dim};
  const std::vector<int32_t> offsets = Offsets(c.lengths);
  const int64_t stride = int64_t{c.n_heads} * c.head_dim;
  const size_t n = static_cast<size_t>(offsets.back() * stride);
  const std::vector<float> q = Random(n, 300, 1.5f), k = Random(n, 301, 1.5f), v = Random(n, 302);
  std::vector<float> out[2];
  int64_t ops[2];
  Backend* bes[2] = {b_.cpu.get(), b_.gpu.get()};
  for (int i = 0; i < 2; ++i) {
    DeviceBuffer qd = Upload(*bes[i], q), kd = Upload(*bes[i], k), vd = Upload(*bes[i], v),
                 od = Poisoned(*bes[i], n);
    ops[i] = bes[i]->EncoderAttention(qd.as<float>(), kd.as<float>(), vd.as<float>(), offsets, shape,
                                      od.as<float>());
    ASSERT_TRUE(bes[i]->Synchronize().ok()) << bes[i]->Synchronize();
    out[i] = Download(*bes[i], od, n);
  }
  ExpectWrittenNonZero(out[1], "encoder_attention");
  EXPECT_EQ(ops[1], ops[0]);
  int64_t want_ops = 0;
  for (int32_t len : c.lengths) want_ops += 4LL * len * len * c.head_dim * c.n_heads;
  EXPECT_EQ(ops[1], want_ops);
  EXPECT_LE(MaxRelDiff(out[1], out[0]), kEncoderAttentionTol);
  // A 1-token sequence attends only to itself with probability exactly 1: its output is its v row.
  for (size_t s = 0; s < c.lengths.size(); ++s) {
    if (c.lengths[s] != 1) continue;
    for (int64_t j = 0; j < stride; ++j) {
      ASSERT_EQ(out[1][offsets[s] * stride + j], v[offsets[s] * stride + j]) << "sequence " << s << " elem " << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaEncoderAttentionParity,
    ::testing::Values(EncoderAttnCase{12, 32, {1, 256, 7, 33}},   // MiniLM, ragged, 1- and 256-token sequences
                      EncoderAttnCase{12, 32, {512}},             // MiniLM at BERT's longest input
                      EncoderAttnCase{12, 32, {130, 0, 1, 129}},  // an empty sequence in the middle
                      EncoderAttnCase{4, 128, {3, 200, 1}},       // head_dim 128
                      EncoderAttnCase{2, 6, {5, 17}},             // head_dim not a multiple of 4 (scalar loads)
                      EncoderAttnCase{1, 64, {1}}),
    [](const auto& info) {
      const EncoderAttnCase& c = info.param;
      return absl::StrCat("H", c.n_heads, "_D", c.head_dim, "_Lens", absl::StrJoin(c.lengths, "_"));
    });

// Bad batches: a sticky INVALID_ARGUMENT naming the problem; the op count is still returned.
TEST_F(CudaEncoderParity, EncoderAttentionDecreasingOffsetsIsAStickyInvalidArgument) {
  DeviceBuffer x = Upload(*b_.gpu, Random(8 * 64, 1)), o = Poisoned(*b_.gpu, 8 * 64);
  const std::vector<int32_t> offsets = {0, 5, 3, 8};
  b_.gpu->EncoderAttention(x.as<float>(), x.as<float>(), x.as<float>(), offsets, AttentionShape{2, 2, 32},
                           o.as<float>());
  EXPECT_THAT(b_.gpu->Synchronize(), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("decrease")));
  EXPECT_THAT(b_.gpu->Synchronize(), StatusIsCode(absl::StatusCode::kInvalidArgument));  // sticky
}

TEST_F(CudaEncoderParity, EncoderAttentionGroupedHeadsIsInvalidArgument) {
  DeviceBuffer x = Upload(*b_.gpu, Random(4 * 64, 1)), o = Poisoned(*b_.gpu, 4 * 64);
  const std::vector<int32_t> offsets = {0, 4};
  b_.gpu->EncoderAttention(x.as<float>(), x.as<float>(), x.as<float>(), offsets, AttentionShape{2, 1, 32},
                           o.as<float>());
  EXPECT_THAT(b_.gpu->Synchronize(), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("n_kv_heads")));
}

TEST_F(CudaEncoderParity, EncoderAttentionTooLongSequenceIsInvalidArgument) {
  const int len = kernels::kEncoderAttentionMaxSeqLen + 1;
  DeviceBuffer x = Upload(*b_.gpu, std::vector<float>(size_t{1} * len * 8, 0.5f)), o = Poisoned(*b_.gpu, 1);
  const std::vector<int32_t> offsets = {0, len};
  const int64_t ops = b_.gpu->EncoderAttention(x.as<float>(), x.as<float>(), x.as<float>(), offsets,
                                               AttentionShape{1, 1, 8}, o.as<float>());
  EXPECT_EQ(ops, 4LL * len * len * 8);
  EXPECT_THAT(b_.gpu->Synchronize(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("at most 4096")));
}

TEST_F(CudaEncoderParity, EncoderAttentionNoSequencesIsANoOp) {
  const std::vector<int32_t> offsets = {0};
  EXPECT_EQ(b_.gpu->EncoderAttention(nullptr, nullptr, nullptr, offsets, AttentionShape{12, 12, 32}, nullptr), 0);
  EXPECT_TRUE(b_.gpu->Synchronize().ok());
}

// After an error every later op is skipped and Synchronize keeps reporting the first error.
TEST_F(CudaEncoderParity, OpsAfterAStickyErrorDoNothing) {
  DeviceBuffer xd = Upload(*b_.gpu, Random(16, 3));
  const std::vector<int32_t> bad = {0, 2, 1};
  b_.gpu->EncoderAttention(nullptr, nullptr, nullptr, bad, AttentionShape{1, 1, 8}, nullptr);
  b_.gpu->Gelu(xd.as<float>(), 16, xd.as<float>());
  b_.gpu->LayerNorm(xd.as<float>(), xd.as<float>(), xd.as<float>(), 2, 8, 1e-5f, xd.as<float>());
  EXPECT_THAT(b_.gpu->Synchronize(), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("decrease")));
}

}  // namespace
}  // namespace qrag::backend
