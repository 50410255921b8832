// The w4 quantized checkpoint: write -> load round trip, serving it (`--quant w4` uses the stored codes and
// gives the same logits as quantizing at load time), and every way a file can be wrong.
#include "server/model/quantized_checkpoint.h"

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/backend/cpu/cpu_backend.h"
#include "server/engine/scoring.h"
#include "server/model/checkpoint_writer.h"
#include "server/model/random_model.h"
#include "server/model/safetensors.h"
#include "server/model/transformer.h"
#include "tests/test_util.h"

namespace qrag::model {
namespace {

using ::qrag::testing::TempDir;
using ::testing::HasSubstr;

class QuantizedCheckpoint : public ::testing::TestWithParam<std::string> {};

absl::StatusOr<std::vector<float>> W4Logits(const model::LoadedModel& m) {
  backend::CpuBackend cpu(backend::CpuBackendOptions{.reference = false, .num_threads = 1});
  auto t = model::Transformer::Create(m, &cpu, model::TransformerOptions{.precision = backend::Precision::kW4});
  if (!t.ok()) return t.status();
  const std::vector<int32_t> tokens = {1, 5, 9, 200, 17, 3, 42, 7};
  return engine::ScoreSequence(**t, tokens, {});
}

TEST_P(QuantizedCheckpoint, RoundTripAndServedW4EqualsLoadTimeW4) {
  auto config = model::NamedModelShape(GetParam());
  ASSERT_TRUE(config.ok());
  auto src = model::MakeRandomModel(*config, 3);
  ASSERT_TRUE(src.ok());
  TempDir q_dir, f_dir;
  ASSERT_TRUE(WriteQuantizedCheckpoint(*src, q_dir.path(), {}).ok());
  ASSERT_TRUE(model::WriteHfCheckpoint(*src, f_dir.path(), {}).ok());
  auto q = model::LoadCheckpoint(q_dir.path());
  auto f = model::LoadCheckpoint(f_dir.path());
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_TRUE(f.ok()) << f.status();

  // Every linear weight is stored quantized, with exactly the codes quant::QuantizeW4 gives the fp32 weight.
  const int expected = 7 * config->n_layers;  // the classifier (lm_head) stays fp32
  EXPECT_EQ(q->w4_weights.size(), static_cast<size_t>(expected));
  for (const auto& [name, w4] : q->w4_weights) {
    const model::HostTensor& t = f->tensors.at(name);
    const std::vector<float> w = t.ToFloatVector();
    auto expect = quant::QuantizeW4(w.data(), t.shape[0], t.shape[1], quant::W4Options{});
    EXPECT_EQ(w4.codes, expect->codes) << name;
    EXPECT_EQ(w4.scales, expect->scales) << name;
    EXPECT_EQ(w4.mins, expect->mins) << name;
    EXPECT_EQ(w4.grid(), quant::W4Grid::kAsymmetric) << name;
    // The fp32 view under the original name is the dequantized weight.
    std::vector<float> deq(w.size());
    quant::DequantizeW4Rows(w4.view(), 0, w4.n, deq.data());
    EXPECT_EQ(q->tensors.at(name).ToFloatVector(), deq) << name;
  }
  // Served from the file's codes == quantized at load time from the fp32 checkpoint, bit for bit.
  auto lq = W4Logits(*q), lf = W4Logits(*f);
  ASSERT_TRUE(lq.ok() && lf.ok());
  EXPECT_EQ(*lq, *lf);
  double sum = 0;
  for (float v : *lq) sum += std::fabs(v);
  EXPECT_GT(sum, 0);
}

INSTANTIATE_TEST_SUITE_P(Shapes, QuantizedCheckpoint, ::testing::Values("tiny-gqa", "stories260K"),
                         [](const auto& info) { return info.param == "tiny-gqa" ? "TinyGqa_Untied" : "Stories260K_Tied_K172"; });

// Rewrites dir/model.safetensors: `edit` may change each tensor (return false to drop it); `meta` replaces the
// quantization metadata when not empty.
void Rewrite(const std::string& dir,
             const std::function<bool(const std::string&, std::string*, std::vector<int64_t>*, std::string*)>& edit,
             const std::string& meta) {
  const std::string path = dir + "/model.safetensors";
  auto file = model::SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  model::SafetensorsWriter w;
  for (const auto& info : file->tensors()) {
    std::string dtype = info.dtype, bytes(info.bytes.begin(), info.bytes.end());
    std::vector<int64_t> shape = info.shape;
    if (!edit(info.name, &dtype, &shape, &bytes)) continue;
    ASSERT_TRUE(w.Add(info.name, dtype, shape, bytes).ok()) << info.name;
  }
  for (const auto& [k, v] : file->metadata()) w.SetMetadata(k, k == kQuantizationMetadataKey && !meta.empty() ? meta : v);
  ASSERT_TRUE(w.Write(path).ok());
}

class QuantizedCheckpointErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    auto src = model::MakeRandomModel(*model::NamedModelShape("tiny-gqa"), 4);
    ASSERT_TRUE(WriteQuantizedCheckpoint(*src, dir_.path(), {}).ok());
    file_ = dir_.path() + "/model.safetensors";
  }
  absl::Status Load() { return model::LoadCheckpoint(dir_.path()).status(); }
  TempDir dir_;
  std::string file_;
};

const char kQ[] = "model.layers.0.self_attn.q_proj.weight";

TEST_F(QuantizedCheckpointErrors, MetadataNotJson) {
  Rewrite(dir_.path(), [](auto&&...) { return true; }, "{not json");
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(file_ + ": metadata 'qrag.quantization': not a JSON")));
}

TEST_F(QuantizedCheckpointErrors, UnknownSchemeVersionAndVectorSize) {
  Rewrite(dir_.path(), [](auto&&...) { return true; }, R"({"version":1,"scheme":"w3","vector_size":32,"tensors":{}})");
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'scheme' must be \"w4\"")));
  Rewrite(dir_.path(), [](auto&&...) { return true; }, R"({"version":2,"scheme":"w4","vector_size":32,"tensors":{}})");
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'version'")));
  Rewrite(dir_.path(), [](auto&&...) { return true; }, R"({"version":1,"scheme":"w4","vector_size":0,"tensors":{}})");
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'vector_size'")));
  Rewrite(dir_.path(), [](auto&&...) { return true; },
          R"({"version":1,"scheme":"w4","vector_size":32,"tensors":{"x.weight":[4]}})");
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tensor 'x.weight': shape must be [n, k]")));
}

TEST_F(QuantizedCheckpointErrors, WrongCodesShapeNamesFileAndTensor) {
  Rewrite(
      dir_.path(),
      [](const std::string& name, std::string*, std::vector<int64_t>* shape, std::string* bytes) {
        if (name == std::string(kQ) + ".w4_codes") {
          (*shape)[1] -= 1;
          bytes->resize((*shape)[0] * (*shape)[1]);
        }
        return true;
      },
      "");
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr(file_), HasSubstr(std::string(kQ) + ".w4_codes"), HasSubstr("expected U8"))));
}

TEST_F(QuantizedCheckpointErrors, MissingScales) {
  Rewrite(dir_.path(), [](const std::string& name, auto*, auto*, auto*) { return name != std::string(kQ) + ".w4_scales"; }, "");
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("w4_scales' is missing")));
}

TEST_F(QuantizedCheckpointErrors, ScalesDtypeF16Rejected) {
  Rewrite(
      dir_.path(),
      [](const std::string& name, std::string* dtype, std::vector<int64_t>*, std::string* bytes) {
        if (name == std::string(kQ) + ".w4_scales") {
          *dtype = "F16";
          bytes->resize(bytes->size() / 2);
        }
        return true;
      },
      "");
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is F16")));
}

TEST_F(QuantizedCheckpointErrors, InvalidSymmetricCode) {
  auto src = model::MakeRandomModel(*model::NamedModelShape("tiny-gqa"), 4);
  ASSERT_TRUE(WriteQuantizedCheckpoint(*src, dir_.path(), {.w4 = {.grid = quant::W4Grid::kSymmetric}}).ok());
  Rewrite(
      dir_.path(),
      [](const std::string& name, std::string*, std::vector<int64_t>*, std::string* bytes) {
        if (name == std::string(kQ) + ".w4_codes") (*bytes)[5] = static_cast<char>(0x80);  // high nibble -8
        return true;
      },
      "");
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr(file_), HasSubstr("code -8"))));
}

TEST_F(QuantizedCheckpointErrors, MissingMinsOnAsymmetricGrid) {
  Rewrite(dir_.path(), [](const std::string& name, auto*, auto*, auto*) { return name != std::string(kQ) + ".w4_mins"; }, "");
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("w4_mins' is missing")));
}

TEST_F(QuantizedCheckpointErrors, UnknownGrid) {
  Rewrite(dir_.path(), [](auto&&...) { return true; },
          R"({"version":1,"scheme":"w4","vector_size":32,"grid":"skewed","tensors":{}})");
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'grid' must be \"asymmetric\" or")));
}

// A checkpoint written before the asymmetric grid existed has no "grid" and no mins: it is symmetric.
TEST(QuantizedCheckpointGrid, NoGridMeansSymmetric) {
  auto src = model::MakeRandomModel(*model::NamedModelShape("tiny-gqa"), 4);
  TempDir dir;
  ASSERT_TRUE(WriteQuantizedCheckpoint(*src, dir.path(), {.w4 = {.grid = quant::W4Grid::kSymmetric}}).ok());
  auto file = model::SafetensorsFile::Open(dir.path() + "/model.safetensors");
  ASSERT_TRUE(file.ok());
  nlohmann::json meta = nlohmann::json::parse(file->metadata().at(kQuantizationMetadataKey));
  EXPECT_EQ(meta["grid"], "symmetric");
  EXPECT_EQ(meta["clip"], "octav");
  meta.erase("grid");
  Rewrite(dir.path(), [](auto&&...) { return true; }, meta.dump());
  auto loaded = model::LoadCheckpoint(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const quant::W4Matrix& q = loaded->w4_weights.at(kQ);
  EXPECT_EQ(q.grid(), quant::W4Grid::kSymmetric);
  EXPECT_EQ(q.scales.size(), static_cast<size_t>(q.n * q.vectors_per_row()));
}

TEST_F(QuantizedCheckpointErrors, ListedTensorAlsoStoredUnquantized) {
  auto file = model::SafetensorsFile::Open(file_);
  const std::string meta = file->metadata().at(kQuantizationMetadataKey);
  // Add an fp32 copy of the quantized weight next to its codes.
  const std::string path = file_;
  model::SafetensorsWriter w;
  for (const auto& info : file->tensors()) {
    ASSERT_TRUE(w.Add(info.name, info.dtype, info.shape, std::string(info.bytes.begin(), info.bytes.end())).ok());
  }
  ASSERT_TRUE(w.Add(kQ, "F32", {48, 48}, std::string(48 * 48 * 4, '\0')).ok());
  w.SetMetadata(kQuantizationMetadataKey, meta);
  ASSERT_TRUE(w.Write(path).ok());
  EXPECT_THAT(Load(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("also stored unquantized")));
}

TEST(QuantizedCheckpointNames, LinearWeightsOnly) {
  EXPECT_TRUE(IsQuantizedLinearName("model.layers.3.mlp.down_proj.weight"));
  EXPECT_FALSE(IsQuantizedLinearName("lm_head.weight"));  // quantized when loaded (DefaultClassifierPrecision)
  EXPECT_FALSE(IsQuantizedLinearName("model.embed_tokens.weight"));
  EXPECT_FALSE(IsQuantizedLinearName("model.layers.3.input_layernorm.weight"));
  EXPECT_FALSE(IsQuantizedLinearName("model.layers.3.self_attn.q_proj.bias"));
}

}  // namespace
}  // namespace qrag::model
