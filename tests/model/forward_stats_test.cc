// The exact op count of Transformer::Forward (model/forward_stats.h), checked against 2*M*N*K of every
// projection and attention's QK^T + PV worked out by hand from the model's shape.
#include "server/model/forward_stats.h"

#include "server/backend/cpu/cpu_backend.h"
#include "server/engine/model_runner.h"
#include "server/model/kv_cache.h"
#include "server/model/random_model.h"
#include "server/model/transformer.h"
#include "tests/test_util.h"

namespace qrag::model {
namespace {

using backend::CpuBackend;
using backend::CpuBackendOptions;
using backend::Precision;

// Ops of the linear layers for one token (every layer's q, k, v, o, gate, up, down), by hand.
int64_t LayerGemmOpsPerToken(const ModelConfig& c) {
  const int64_t dim = c.dim, q = c.q_dim(), kv = c.kv_dim(), hidden = c.hidden_dim;
  return c.n_layers * 2 * (dim * q + dim * kv + dim * kv + q * dim + dim * hidden + dim * hidden + hidden * dim);
}
// Attention ops of one token at `pos` attending to positions 0..pos (no window), all layers.
int64_t AttentionOps(const ModelConfig& c, int64_t pos) {
  return c.n_layers * 2 * 2 * (pos + 1) * c.head_dim * c.n_heads;
}
int64_t ClassifierOps(const ModelConfig& c) { return 2LL * c.dim * c.vocab_size; }

struct Case {
  const char* name;
  Precision precision;
};

class ForwardStatsTest : public ::testing::TestWithParam<Case> {};

TEST_P(ForwardStatsTest, TwoSequenceBatch_TotalsAndPerSequenceMatchHandCount) {
  const ModelConfig c = *NamedModelShape("tiny-gqa");
  auto model = MakeRandomModel(c, 3);
  ASSERT_TRUE(model.ok());
  CpuBackend cpu(CpuBackendOptions{});
  auto t = Transformer::Create(*model, &cpu, {.precision = GetParam().precision});
  ASSERT_TRUE(t.ok()) << t.status();
  auto cache = KvCache::Create(&cpu, c, {.num_blocks = 8, .block_size = 4});
  ASSERT_TRUE(cache.ok());

  // Sequence 0: a 5-token prefill chunk at positions 0..4 wanting logits of its last token. Sequence 1: a
  // 3-token chunk at positions 4..6 (its earlier positions cached by a previous step), logits of 2 rows.
  const std::vector<int32_t> table0 = {0, 1}, table1 = {2, 3};
  const backend::AttentionBatch::Sequence seqs[] = {{table0}, {table1}};
  const std::vector<int32_t> tokens = {1, 5, 9, 20, 31, 7, 77, 150};
  const std::vector<int32_t> pos = {0, 1, 2, 3, 4, 4, 5, 6};
  const std::vector<int32_t> which = {0, 0, 0, 0, 0, 1, 1, 1};
  const std::vector<int32_t> rows = {4, 6, 7};
  backend::AttentionBatch batch;
  batch.positions = pos;
  batch.token_seq = which;
  batch.sequences = seqs;
  batch.block_size = 4;
  std::vector<float> logits(rows.size() * c.vocab_size);
  ASSERT_TRUE((*t)->Forward(tokens, batch, rows, *cache, logits.data()).ok());

  const ForwardStats& s = (*t)->last_forward();
  int64_t attention0 = 0, attention1 = 0;
  for (int p = 0; p <= 4; ++p) attention0 += AttentionOps(c, p);
  for (int p = 4; p <= 6; ++p) attention1 += AttentionOps(c, p);
  const int64_t gemm0 = 5 * LayerGemmOpsPerToken(c) + 1 * ClassifierOps(c);
  const int64_t gemm1 = 3 * LayerGemmOpsPerToken(c) + 2 * ClassifierOps(c);
  ASSERT_EQ(s.ops_per_sequence.size(), 2u);
  EXPECT_EQ(s.ops_per_sequence[0], gemm0 + attention0);
  EXPECT_EQ(s.ops_per_sequence[1], gemm1 + attention1);
  EXPECT_EQ(s.ops_by_precision[static_cast<int>(Precision::kF32)] -
                (GetParam().precision == Precision::kF32 ? gemm0 + gemm1 : 0),
            attention0 + attention1);
  if (GetParam().precision != Precision::kF32) {
    EXPECT_EQ(s.ops_by_precision[static_cast<int>(GetParam().precision)], gemm0 + gemm1);
  }
  EXPECT_EQ(s.total(), gemm0 + gemm1 + attention0 + attention1);
  EXPECT_GT(s.total(), 0);
  // The cumulative counter moved by exactly the step's ops.
  EXPECT_EQ((*t)->ops().total(), s.total());
}

INSTANTIATE_TEST_SUITE_P(Precisions, ForwardStatsTest,
                         ::testing::Values(Case{"fp32", Precision::kF32}, Case{"bf16", Precision::kBF16},
                                           Case{"fp8", Precision::kFP8}, Case{"int8", Precision::kInt8}),
                         [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

TEST(ForwardStats, NoLogitsRows_GemmsAndAttentionOnly) {
  const ModelConfig c = *NamedModelShape("tiny-gqa");
  auto model = MakeRandomModel(c, 3);
  ASSERT_TRUE(model.ok());
  CpuBackend cpu(CpuBackendOptions{});
  auto t = Transformer::Create(*model, &cpu, {});
  ASSERT_TRUE(t.ok());
  auto cache = KvCache::Create(&cpu, c, {.num_blocks = 2, .block_size = 4});
  ASSERT_TRUE(cache.ok());
  const std::vector<int32_t> table = {1};
  const backend::AttentionBatch::Sequence seqs[] = {{table}};
  const std::vector<int32_t> tokens = {3, 4}, pos = {0, 1}, which = {0, 0};
  backend::AttentionBatch batch;
  batch.positions = pos;
  batch.token_seq = which;
  batch.sequences = seqs;
  batch.block_size = 4;
  ASSERT_TRUE((*t)->Forward(tokens, batch, {}, *cache, nullptr).ok());
  EXPECT_EQ((*t)->last_forward().total(), 2 * LayerGemmOpsPerToken(c) + AttentionOps(c, 0) + AttentionOps(c, 1));
}

// The serving engine builds batches without the model's sliding window; TransformerRunner applies it, so a
// windowed model attends (and counts ops) over its window only, as qrag-run's Generator does.
TEST(ForwardStats, TransformerRunner_SlidingWindowModel_AttentionOverTheWindowOnly) {
  ModelConfig c = *NamedModelShape("tiny-gqa");
  c.sliding_window = 2;
  auto model = MakeRandomModel(c, 3);
  ASSERT_TRUE(model.ok());
  CpuBackend cpu(CpuBackendOptions{});
  auto t = Transformer::Create(*model, &cpu, {});
  ASSERT_TRUE(t.ok());
  engine::TransformerRunner runner(t->get());
  ASSERT_TRUE(runner.AllocateCache(2, 4).ok());
  const std::vector<int32_t> table = {0, 1};
  const backend::AttentionBatch::Sequence seqs[] = {{table}};
  const std::vector<int32_t> tokens = {3, 4, 5, 6, 7}, pos = {0, 1, 2, 3, 4}, which = {0, 0, 0, 0, 0};
  backend::AttentionBatch batch;  // sliding_window left 0, as the engine leaves it
  batch.positions = pos;
  batch.token_seq = which;
  batch.sequences = seqs;
  batch.block_size = 4;
  ASSERT_TRUE(runner.Forward(tokens, batch, {}, nullptr).ok());
  ASSERT_NE(runner.last_forward(), nullptr);
  // Keys attended: 1, 2, 2, 2, 2 (window 2) instead of 1..5.
  const int64_t attention = c.n_layers * 2 * 2 * int64_t{1 + 2 + 2 + 2 + 2} * c.head_dim * c.n_heads;
  EXPECT_EQ(runner.last_forward()->total(), 5 * LayerGemmOpsPerToken(c) + attention);
}

TEST(AddProportionalShares, SharesSumExactly_RemainderToLast) {
  std::vector<int64_t> out = {0, 0, 0, 0};
  AddProportionalShares(100, std::vector<int64_t>{1, 1, 0, 1}, absl::MakeSpan(out));
  EXPECT_EQ(out, (std::vector<int64_t>{33, 33, 0, 34}));
  AddProportionalShares(7, std::vector<int64_t>{0, 0, 0, 0}, absl::MakeSpan(out));  // no weight: unchanged
  EXPECT_EQ(out, (std::vector<int64_t>{33, 33, 0, 34}));
  std::vector<int64_t> big = {0, 0};
  AddProportionalShares(int64_t{1} << 62, std::vector<int64_t>{int64_t{1} << 40, int64_t{3} << 40},
                        absl::MakeSpan(big));
  EXPECT_EQ(big[0], int64_t{1} << 60);
  EXPECT_EQ(big[0] + big[1], int64_t{1} << 62);
}

}  // namespace
}  // namespace qrag::model
