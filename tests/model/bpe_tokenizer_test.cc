// Hugging Face byte-level BPE (tokenizer.json) against the `tokenizers` library: the fixtures in
// tests/data/bpe/<name>/ were written by tests/data/bpe/make_fixtures.py, which records the library's
// own ids and decodings for every test string. Plus unsupported features and malformed files.
#include "server/model/bpe_tokenizer.h"

#include <filesystem>
#include <functional>

#include "nlohmann/json.hpp"
#include "server/model/tokenizer.h"
#include "server/model/utf8.h"
#include "tests/test_util.h"

namespace qrag::model {
namespace {

using ::qrag::testing::ReadFile;
using ::qrag::testing::TempDir;
using ::qrag::testing::WriteFile;
using ::testing::AllOf;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string FixtureDir(const std::string& name) {
  return std::string(QRAG_SOURCE_DIR) + "/tests/data/bpe/" + name;
}

std::vector<int32_t> Ids(const nlohmann::json& v) { return v.get<std::vector<int32_t>>(); }

class BpeFixtureTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string dir = FixtureDir(GetParam());
    auto tok = LoadTokenizer(dir + "/tokenizer.json", 0);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = *std::move(tok);
    expected_ = nlohmann::json::parse(ReadFile(dir + "/expected.json"));
    ASSERT_GE(expected_["cases"].size(), 40u);
  }

  std::vector<int32_t> Encode(const std::string& text, EncodeOptions options) {
    auto ids = tok_->Encode(text, options);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }
  std::string Decode(absl::Span<const int32_t> ids) {
    auto text = tok_->Decode(ids);
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? *text : std::string();
  }

  std::unique_ptr<Tokenizer> tok_;
  nlohmann::json expected_;
};

TEST_P(BpeFixtureTest, EncodeMatchesReference) {
  EXPECT_EQ(tok_->kind(), "hf-bpe");
  EXPECT_EQ(tok_->vocab_size(), expected_["vocab_size"].get<int32_t>());
  for (const auto& c : expected_["cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_THAT(Encode(text, {.add_bos = true, .parse_special = true}), ElementsAreArray(Ids(c["ids"])))
        << GetParam() << ": '" << text << "'";
    EXPECT_THAT(Encode(text, {.add_bos = false, .parse_special = true}),
                ElementsAreArray(Ids(c["ids_no_bos"])))
        << GetParam() << ": '" << text << "'";
    EXPECT_THAT(Encode(text, {.add_bos = true, .parse_special = false}),
                ElementsAreArray(Ids(c["ids_literal"])))
        << GetParam() << ": '" << text << "'";
  }
}

TEST_P(BpeFixtureTest, DecodeMatchesReferenceAndRoundTrips) {
  int round_trips = 0;
  const bool adds_prefix_space = expected_["adds_prefix_space"].get<bool>();
  for (const auto& c : expected_["cases"]) {
    const std::string text = c["text"].get<std::string>();
    // ByteLevel(add_prefix_space) gives the first word a space, which decoding keeps.
    const std::string round_trip = adds_prefix_space && !text.empty() && text[0] != ' ' ? " " + text : text;
    // The library repairs invalid UTF-8 (from_utf8_lossy); Decode returns the raw bytes.
    const std::string decoded = Decode(Ids(c["ids"]));
    EXPECT_EQ(ReplaceInvalidUtf8(decoded), c["decoded"].get<std::string>())
        << GetParam() << ": '" << text << "'";
    const std::string literal = Decode(Ids(c["ids_literal"]));
    EXPECT_EQ(ReplaceInvalidUtf8(literal), c["decoded_literal"].get<std::string>()) << GetParam();
    // decode(encode(x)) == x whenever the reference round-trips (not across NFC or stripped spaces).
    if (c["decoded_literal"].get<std::string>() == round_trip) {
      EXPECT_EQ(literal, round_trip) << GetParam();
      ++round_trips;
    }
  }
  EXPECT_GE(round_trips, 35) << GetParam();
}

TEST_P(BpeFixtureTest, IncrementalDecodeEqualsFullDecode) {
  for (const auto& c : expected_["cases"]) {
    const std::vector<int32_t> ids = Ids(c["ids_literal"]);
    IncrementalDecoder stream(tok_.get(), {});
    std::string streamed;
    for (int32_t id : ids) {
      auto piece = stream.Push(id);
      ASSERT_TRUE(piece.ok()) << piece.status();
      EXPECT_EQ(FindInvalidUtf8(*piece), std::string_view::npos);
      streamed += *piece;
    }
    streamed += stream.Flush();
    EXPECT_EQ(streamed, ReplaceInvalidUtf8(Decode(ids))) << GetParam() << ": '" << c["text"] << "'";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BpeFixtureTest, ::testing::Values("llama3", "smollm", "gpt2nfc"),
                         [](const auto& info) { return info.param; });

// ------------------------------------------------------------------------------------------------
// Fixture-specific properties.

std::unique_ptr<Tokenizer> LoadFixture(const std::string& name) {
  auto tok = LoadTokenizer(FixtureDir(name) + "/tokenizer.json", 0);
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

TEST(HfBpeTokenizer, Llama3Style_BosEosAndSpecialTokens) {
  auto tok = LoadFixture("llama3");
  ASSERT_NE(tok, nullptr);
  auto* bpe = dynamic_cast<HfBpeTokenizer*>(tok.get());
  ASSERT_NE(bpe, nullptr);
  const int32_t bos = *bpe->TokenToId("<|begin_of_text|>");
  const int32_t eot = *bpe->TokenToId("<|eot_id|>");
  const int32_t eos = *bpe->TokenToId("<|end_of_text|>");
  EXPECT_EQ(tok->bos_id(), bos);
  // tokenizer_config.json's eos_token, then generation_config.json's list.
  EXPECT_THAT(tok->eos_ids(), ElementsAreArray({eos, eot}));
  // A user cannot forge control tokens unless special parsing is on.
  auto literal = tok->Encode("<|eot_id|>", {.add_bos = false});
  ASSERT_TRUE(literal.ok());
  EXPECT_GT(literal->size(), 1u);
  auto parsed = tok->Encode("<|eot_id|>", {.add_bos = false, .parse_special = true});
  ASSERT_TRUE(parsed.ok());
  EXPECT_THAT(*parsed, ElementsAreArray({eot}));
  // Special tokens decode to nothing.
  const int32_t ids[] = {bos, eot, eos};
  EXPECT_THAT(*tok->Decode(ids), IsEmpty());
  // ignore_merges: "Ġqrag" is in the vocab but no merge builds it.
  auto q = tok->Encode(" qrag", {.add_bos = false});
  ASSERT_TRUE(q.ok());
  EXPECT_THAT(*q, ElementsAreArray({*bpe->TokenToId("Ġqrag")}));
}

TEST(HfBpeTokenizer, SmolLmStyle_NoBosEosFromConfigObject) {
  auto tok = LoadFixture("smollm");
  ASSERT_NE(tok, nullptr);
  auto* bpe = dynamic_cast<HfBpeTokenizer*>(tok.get());
  ASSERT_NE(bpe, nullptr);
  EXPECT_EQ(tok->bos_id(), std::nullopt);
  EXPECT_THAT(tok->eos_ids(), ElementsAreArray({*bpe->TokenToId("<|im_end|>")}));
}

TEST(HfBpeTokenizer, Gpt2NfcStyle_FallbackEosAndNormalization) {
  auto tok = LoadFixture("gpt2nfc");
  ASSERT_NE(tok, nullptr);
  auto* bpe = dynamic_cast<HfBpeTokenizer*>(tok.get());
  ASSERT_NE(bpe, nullptr);
  EXPECT_EQ(tok->bos_id(), std::nullopt);
  EXPECT_THAT(tok->eos_ids(), ElementsAreArray({*bpe->TokenToId("<|endoftext|>")}));
  // NFD and NFC spellings tokenize the same.
  EXPECT_EQ(*tok->Encode("cafe\u0301", {}), *tok->Encode("caf\u00e9", {}));
}

TEST(HfBpeTokenizer, IncrementalDecoderHoldsBackSplitCharacter) {
  auto tok = LoadFixture("smollm");
  ASSERT_NE(tok, nullptr);
  // The small vocab spells most CJK characters as several byte tokens.
  const std::string text = "a 日本語 b";
  auto ids = tok->Encode(text, {});
  ASSERT_TRUE(ids.ok());
  ASSERT_GT(ids->size(), 5u);
  IncrementalDecoder stream(tok.get(), {});
  std::string streamed;
  int held = 0;
  for (int32_t id : *ids) {
    auto piece = stream.Push(id);
    ASSERT_TRUE(piece.ok());
    EXPECT_EQ(FindInvalidUtf8(*piece), std::string_view::npos);
    const int32_t one[] = {id};
    if (piece->empty() && !tok->Decode(one)->empty()) ++held;
    streamed += *piece;
  }
  EXPECT_GT(held, 0);
  EXPECT_EQ(streamed + stream.Flush(), text);
}

// ------------------------------------------------------------------------------------------------
// Malformed and unsupported files.

// The llama3 fixture's tokenizer.json with `edit` applied, written to a temp dir; returns the load result.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadEdited(const TempDir& dir,
                                                      const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(ReadFile(FixtureDir("llama3") + "/tokenizer.json"));
  edit(j);
  const std::string path = dir.Join("tokenizer.json");
  WriteFile(path, j.dump());
  return LoadTokenizer(path, 0);
}

TEST(HfBpeTokenizerErrors, BadJson) {
  TempDir dir;
  const std::string path = dir.Join("tokenizer.json");
  for (const char* text :
       {"{", "{\"model\": }", "[1, 2", "{\"model\": {\"type\": \"BPE\"} } trailing", "{}"}) {
    WriteFile(path, text);
    EXPECT_THAT(LoadTokenizer(path, 0), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path)))
        << text;
  }
  WriteFile(path, std::string(100000, '[') + std::string(100000, ']'));
  EXPECT_THAT(LoadTokenizer(path, 0), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nested")));
}

TEST(HfBpeTokenizerErrors, UnsupportedFeaturesAreUnimplemented) {
  TempDir dir;
  struct Case {
    const char* feature;
    std::function<void(nlohmann::json&)> edit;
  };
  const std::vector<Case> cases = {
      {"WordPiece", [](nlohmann::json& j) { j["model"]["type"] = "WordPiece"; }},
      {"Metaspace",
       [](nlohmann::json& j) {
         j["pre_tokenizer"] = {{"type", "Metaspace"}};
       }},
      {"NFKC",
       [](nlohmann::json& j) {
         j["normalizer"] = {{"type", "NFKC"}};
       }},
      {"Removed", [](nlohmann::json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; }},
      {"invert", [](nlohmann::json& j) { j["pre_tokenizer"]["pretokenizers"][0]["invert"] = true; }},
      {"ByteLevel", [](nlohmann::json& j) { j["pre_tokenizer"] = j["pre_tokenizer"]["pretokenizers"][0]; }},
      {"dropout", [](nlohmann::json& j) { j["model"]["dropout"] = 0.1; }},
      {"continuing_subword_prefix",
       [](nlohmann::json& j) { j["model"]["continuing_subword_prefix"] = "##"; }},
      {"WordPiece",
       [](nlohmann::json& j) {
         j["decoder"] = {{"type", "WordPiece"}};
       }},
      {"decoder null", [](nlohmann::json& j) { j["decoder"] = nullptr; }},
      {"RobertaProcessing",
       [](nlohmann::json& j) {
         j["post_processor"] = {{"type", "RobertaProcessing"}};
       }},
      {"after the text",
       [](nlohmann::json& j) {
         auto& tp = j["post_processor"]["processors"][1];
         tp["single"].push_back({{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}});
       }},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(LoadEdited(dir, c.edit), StatusIs(absl::StatusCode::kUnimplemented,
                                                  AllOf(HasSubstr(c.feature), HasSubstr("tokenizer.json"))))
        << c.feature;
  }
}

TEST(HfBpeTokenizerErrors, InconsistentContentIsInvalidArgument) {
  TempDir dir;
  struct Case {
    const char* problem;
    std::function<void(nlohmann::json&)> edit;
  };
  const std::vector<Case> cases = {
      {"not in the vocab",
       [](nlohmann::json& j) {
         j["model"]["merges"].push_back({"Ġ", "nosuchtoken"});
       }},
      {"not \"a b\"", [](nlohmann::json& j) { j["model"]["merges"].push_back(42); }},
      {"two tokens", [](nlohmann::json& j) { j["model"]["merges"].push_back("a b c"); }},
      {"does not compile",
       [](nlohmann::json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; }},
      {"model.vocab", [](nlohmann::json& j) { j["model"]["vocab"] = 5; }},
      {"must be an id", [](nlohmann::json& j) { j["model"]["vocab"]["x"] = -3; }},
      {"no \"model\"", [](nlohmann::json& j) { j.erase("model"); }},
      {"not a boolean", [](nlohmann::json& j) { j["model"]["ignore_merges"] = "yes"; }},
      {"unk_token", [](nlohmann::json& j) { j["model"]["unk_token"] = "<nope>"; }},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(LoadEdited(dir, c.edit), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  AllOf(HasSubstr(c.problem), HasSubstr("tokenizer.json"))))
        << c.problem;
  }
}

TEST(HfBpeTokenizerErrors, BadConfigFilesNextToIt) {
  TempDir dir;
  const std::string json = ReadFile(FixtureDir("llama3") + "/tokenizer.json");
  WriteFile(dir.Join("tokenizer.json"), json);
  WriteFile(dir.Join("tokenizer_config.json"), R"({"eos_token": "<|no_such_token|>"})");
  EXPECT_THAT(LoadTokenizer(dir.Join("tokenizer.json"), 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("tokenizer_config.json"), HasSubstr("<|no_such_token|>"))));
  WriteFile(dir.Join("tokenizer_config.json"), "{not json");
  EXPECT_THAT(LoadTokenizer(dir.Join("tokenizer.json"), 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tokenizer_config.json")));
  WriteFile(dir.Join("tokenizer_config.json"), "{}");
  WriteFile(dir.Join("generation_config.json"), R"({"eos_token_id": [1, 99999]})");
  EXPECT_THAT(LoadTokenizer(dir.Join("tokenizer.json"), 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("generation_config.json"), HasSubstr("99999"))));
  WriteFile(dir.Join("generation_config.json"), R"({"eos_token_id": 7})");
  auto tok = LoadTokenizer(dir.Join("tokenizer.json"), 0);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_THAT((*tok)->eos_ids(), ElementsAreArray({7}));
  // The model's embedding must cover every tokenizer id.
  EXPECT_THAT(LoadTokenizer(dir.Join("tokenizer.json"), 100),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocab size is 100")));
}

TEST(HfBpeTokenizerErrors, RealWordPieceTokenizerIsUnimplemented) {
  QRAG_REQUIRE_SHARED_PATH(path, "models/all-MiniLM-L6-v2/tokenizer.json");
  EXPECT_THAT(LoadTokenizer(path, 0),
              StatusIs(absl::StatusCode::kUnimplemented, AllOf(HasSubstr("WordPiece"), HasSubstr(path))));
}

TEST(HfBpeTokenizerErrors, BadInputsAndIds) {
  auto tok = LoadFixture("llama3");
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(tok->Encode("ok\xc3(", {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("byte 2")));
  const int32_t n = tok->vocab_size();
  for (int32_t bad : {-1, n, 1 << 30}) {
    const int32_t ids[] = {bad};
    EXPECT_THAT(tok->Decode(ids),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(std::to_string(bad))));
  }
  // Long inputs: whitespace runs and one enormous word stay fast and exact.
  const std::string spaces(20000, ' ');
  auto ids = tok->Encode(spaces + "x" + std::string(20000, 'y'), {.add_bos = false});
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*tok->Decode(*ids), spaces + "x" + std::string(20000, 'y'));
}

}  // namespace
}  // namespace qrag::model
