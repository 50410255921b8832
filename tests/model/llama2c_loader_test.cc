#include "server/model/llama2c_loader.h"

#include <cstring>
#include <fstream>
#include <limits>
#include <random>

#include "server/model/checkpoint_writer.h"
#include "server/model/random_model.h"
#include "tests/test_util.h"

namespace qrag::model {
namespace {

using ::qrag::testing::ReadFile;
using ::qrag::testing::TempDir;
using ::qrag::testing::WriteFile;
using ::testing::HasSubstr;

ModelConfig SmallConfig(bool shared) {
  ModelConfig c = *NamedModelShape("stories260K");
  c.dim = 32;
  c.hidden_dim = 40;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 64;
  c.max_seq_len = 16;
  c.tie_embeddings = shared;
  return c;
}

void ExpectSameTensors(const LoadedModel& a, const LoadedModel& b, float tolerance) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, ta] : a.tensors) {
    auto it = b.tensors.find(name);
    ASSERT_NE(it, b.tensors.end()) << name;
    ASSERT_EQ(ta.shape, it->second.shape) << name;
    std::vector<float> va = ta.ToFloatVector(), vb = it->second.ToFloatVector();
    for (size_t i = 0; i < va.size(); ++i) {
      ASSERT_NEAR(va[i], vb[i], tolerance) << name << "[" << i << "]";
    }
  }
}

TEST(Llama2cLoader, Stories260K_HeaderAndTensors) {
  QRAG_REQUIRE_SHARED_PATH(path, "models/stories260K/stories260K.bin");
  auto m = LoadLlama2cCheckpoint(path);
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelConfig& c = m->config;
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.rope_style, RopeStyle::kInterleaved);
  // 1 embedding + 5 layers x 9 + final norm; classifier shared.
  EXPECT_EQ(m->tensors.size(), 1u + 5 * 9 + 1);
  auto wk = m->Get("model.layers.4.self_attn.k_proj.weight", {32, 64});
  ASSERT_TRUE(wk.ok()) << wk.status();
  // The first fp32 value of the file's token embedding (offset 28).
  const std::string bytes = ReadFile(path);
  float first;
  std::memcpy(&first, bytes.data() + 28, 4);
  EXPECT_EQ((*m->Get("model.embed_tokens.weight", {512, 64}))->ToFloatVector()[0], first);
}

class Llama2cRoundTrip : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(Llama2cRoundTrip, WriteThenLoad) {
  const auto [version, shared] = GetParam();
  auto model = MakeRandomModel(SmallConfig(shared), 7);
  ASSERT_TRUE(model.ok()) << model.status();
  TempDir dir;
  const std::string path = dir.Join("model.bin");
  Llama2cWriteOptions o;
  o.version = version;
  o.group_size = 8;
  ASSERT_TRUE(WriteLlama2cCheckpoint(*model, path, o).ok());
  EXPECT_EQ(HasLlama2cMagic(path), version > 0);
  auto loaded = LoadLlama2cCheckpoint(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.tie_embeddings, shared);
  EXPECT_EQ(loaded->config.n_kv_heads, 2);
  // Q8_0 error bound: half a step of max|w| / 127 per group; linear weights are within +-sqrt(3/32).
  ExpectSameTensors(*model, *loaded, version == 2 ? 1.0f / 127 : 0.0f);
}

INSTANTIATE_TEST_SUITE_P(AllFormats, Llama2cRoundTrip,
                         ::testing::Combine(::testing::Values(0, 1, 2), ::testing::Bool()),
                         [](const auto& info) {
                           return "V" + std::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_Shared" : "_Unshared");
                         });

class Llama2cCorrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = MakeRandomModel(SmallConfig(true), 3);
    ASSERT_TRUE(model.ok());
    ASSERT_TRUE(WriteLlama2cCheckpoint(*model, dir_.Join("ok.bin"), {}).ok());
    good_ = ReadFile(dir_.Join("ok.bin"));
  }
  absl::Status LoadBytes(const std::string& bytes) {
    WriteFile(dir_.Join("bad.bin"), bytes);
    return LoadLlama2cCheckpoint(dir_.Join("bad.bin")).status();
  }
  void SetHeaderInt(std::string& bytes, int index, int32_t value) { std::memcpy(&bytes[index * 4], &value, 4); }

  TempDir dir_;
  std::string good_;
};

TEST_F(Llama2cCorrupt, MissingFileIsNotFound) {
  EXPECT_THAT(LoadLlama2cCheckpoint(dir_.Join("nope.bin")).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope.bin")));
}

TEST_F(Llama2cCorrupt, EmptyAndTinyFiles) {
  EXPECT_THAT(LoadBytes(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shorter than")));
  EXPECT_THAT(LoadBytes(good_.substr(0, 20)), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad.bin")));
}

TEST_F(Llama2cCorrupt, TruncatedBodyNamesSizes) {
  EXPECT_THAT(LoadBytes(good_.substr(0, good_.size() - 4)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("implies")));
  EXPECT_THAT(LoadBytes(good_.substr(0, good_.size() / 2)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad.bin")));
}

TEST_F(Llama2cCorrupt, TrailingBytes) {
  EXPECT_THAT(LoadBytes(good_ + "xxxx"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("implies")));
}

TEST_F(Llama2cCorrupt, HeaderInconsistentWithSize) {
  std::string b = good_;
  SetHeaderInt(b, 1, 48);  // hidden_dim
  EXPECT_THAT(LoadBytes(b), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hidden_dim 48")));
}

TEST_F(Llama2cCorrupt, ImpossibleHeaderValues) {
  struct Case {
    int field;
    int32_t value;
    const char* message;
  } cases[] = {
      {0, 0, "dim"},       {0, -5, "dim"},         {2, 0, "n_layers"},     {3, 3, "multiple of n_heads"},
      {4, 3, "n_kv_heads"}, {4, 8, "n_kv_heads"},  {6, 0, "max_seq_len"},  {0, 1 << 30, "dim"},
      // Negative means a separate classifier; INT32_MIN cannot be negated (fuzz_llama2c_checkpoint, UBSan).
      {5, std::numeric_limits<int32_t>::min(), "vocab_size = -2147483648"},
  };
  for (const Case& c : cases) {
    std::string b = good_;
    SetHeaderInt(b, c.field, c.value);
    EXPECT_THAT(LoadBytes(b), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << "field " << c.field << " = " << c.value;
  }
}

TEST_F(Llama2cCorrupt, VersionedHeaderErrors) {
  auto model = MakeRandomModel(SmallConfig(true), 3);
  ASSERT_TRUE(model.ok());
  Llama2cWriteOptions o;
  o.version = 1;
  ASSERT_TRUE(WriteLlama2cCheckpoint(*model, dir_.Join("v1.bin"), o).ok());
  const std::string v1 = ReadFile(dir_.Join("v1.bin"));
  std::string b = v1;
  SetHeaderInt(b, 1, 7);  // version
  EXPECT_THAT(LoadBytes(b), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unsupported export version 7")));
  b = v1;
  b[36] = 5;  // shared_classifier flag
  EXPECT_THAT(LoadBytes(b), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shared_classifier")));
  EXPECT_THAT(LoadBytes(v1.substr(0, 100)), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("256 bytes")));
}

TEST_F(Llama2cCorrupt, RandomGarbageNeverCrashes) {
  std::mt19937 rng(1);
  for (int i = 0; i < 200; ++i) {
    std::string b = good_;
    // Flip a few bytes in the header or anywhere.
    for (int j = 0; j < 3; ++j) b[rng() % (i % 2 ? 28 : b.size())] = static_cast<char>(rng());
    absl::Status s = LoadBytes(b.substr(0, rng() % 2 ? b.size() : rng() % b.size()));
    if (!s.ok()) EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
}

}  // namespace
}  // namespace qrag::model
