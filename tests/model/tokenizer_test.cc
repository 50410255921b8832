// Tokenizers against real files: the Llama 2 tokenizer (llama2.c tokenizer.bin and SentencePiece
// tokenizer.model) with karpathy/llama2.c's and llama.cpp's gold encodings, the stories260K tokenizer
// with run.c's gold token stream, the loader, IncrementalDecoder, UTF-8 helpers and error handling.
#include "server/model/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>

#include "nlohmann/json.hpp"
#include "server/model/llama2c_tokenizer.h"
#include "server/model/sentencepiece_tokenizer.h"
#include "server/model/utf8.h"
#include "tests/model/llama_cpp_vocab_test.h"
#include "tests/test_util.h"

namespace qrag::model {
namespace {

using ::qrag::testing::ReadFile;
using ::qrag::testing::TempDir;
using ::qrag::testing::WriteFile;
using ::qrag::testing::ParseIds;
using ::qrag::testing::ReadVocabTest;
using ::qrag::testing::VocabCase;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kLlama2Bin[] = "models/llama2-tokenizer/tokenizer.bin";
constexpr char kLlama2Model[] = "models/llama2-tokenizer/tokenizer.model";
constexpr char kLlama2Expected[] = "models/llama2-tokenizer/expected_encodings.json";
constexpr char kVocabTestInp[] = "models/llama2-tokenizer/llama.cpp-vocab-test/ggml-vocab-llama-spm.gguf.inp";
constexpr char kVocabTestOut[] = "models/llama2-tokenizer/llama.cpp-vocab-test/ggml-vocab-llama-spm.gguf.out";
constexpr char kStoriesBin[] = "models/stories260K/tok512.bin";
constexpr char kStoriesModel[] = "models/stories260K/tok512.model";
constexpr char kStoriesGoldTokens[] = "models/stories260K/expected/greedy_t0.0_n200.tokens.txt";
constexpr char kStoriesGoldText[] = "models/stories260K/expected/greedy_t0.0_n200.txt";
constexpr int kLlama2Vocab = 32000;
constexpr int kStoriesVocab = 512;

std::unique_ptr<Tokenizer> MustLoad(const std::string& path, int vocab) {
  auto tok = LoadTokenizer(path, vocab);
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

std::vector<int32_t> MustEncode(const Tokenizer& tok, std::string_view text, EncodeOptions options) {
  auto ids = tok.Encode(text, options);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

std::string MustDecode(const Tokenizer& tok, absl::Span<const int32_t> ids) {
  auto text = tok.Decode(ids);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : std::string();
}

// ------------------------------------------------------------------------------------------------
// Llama 2 vocabulary: the same gold data through both implementations.

void CheckExpectedEncodings(const Tokenizer& tok, const std::string& json_path) {
  const nlohmann::json doc = nlohmann::json::parse(ReadFile(json_path));
  ASSERT_EQ(doc["cases"].size(), 5u);
  for (const auto& c : doc["cases"]) {
    const std::string prompt = c["prompt"].get<std::string>();
    const auto expected = c["expected_ids"].get<std::vector<int32_t>>();
    EXPECT_THAT(MustEncode(tok, prompt, {.add_bos = true}), ElementsAreArray(expected))
        << tok.kind() << ": '" << prompt << "'";
    EXPECT_EQ(MustDecode(tok, expected), prompt) << tok.kind();
  }
}

TEST(Llama2cTokenizer, Llama2_ExpectedEncodings_5Cases) {
  QRAG_REQUIRE_SHARED_PATH(bin, kLlama2Bin);
  QRAG_REQUIRE_SHARED_PATH(expected, kLlama2Expected);
  auto tok = MustLoad(bin, kLlama2Vocab);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->kind(), "llama2c");
  CheckExpectedEncodings(*tok, expected);
}

TEST(SentencePieceTokenizer, Llama2_ExpectedEncodings_5Cases) {
  QRAG_REQUIRE_SHARED_PATH(model, kLlama2Model);
  QRAG_REQUIRE_SHARED_PATH(expected, kLlama2Expected);
  auto tok = MustLoad(model, kLlama2Vocab);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->kind(), "sentencepiece");
  CheckExpectedEncodings(*tok, expected);
}

void CheckLlamaCppVocabTest(const Tokenizer& tok, const std::string& inp, const std::string& out) {
  const std::vector<VocabCase> cases = ReadVocabTest(inp, out);
  ASSERT_EQ(cases.size(), 47u);
  EXPECT_EQ(cases[0].text, "ied 4 \u00bd months");
  EXPECT_EQ(cases[2].text, "");    // the empty string is a case of its own
  EXPECT_EQ(cases[46].text, "");   // ...and so is the piece after the last separator
  EXPECT_EQ(cases[7].text, "\n");  // newlines inside a case are kept
  EXPECT_EQ(cases[8].text, "\n\n");
  for (const VocabCase& c : cases) {
    EXPECT_THAT(MustEncode(tok, c.text, {.add_bos = false}), ElementsAreArray(c.ids))
        << tok.kind() << ": '" << c.text << "'";
    // With BOS: the same ids behind it.
    std::vector<int32_t> with_bos{1};
    with_bos.insert(with_bos.end(), c.ids.begin(), c.ids.end());
    EXPECT_THAT(MustEncode(tok, c.text, {.add_bos = true}), ElementsAreArray(with_bos));
    // SentencePiece-style decoding drops the dummy-prefix space again.
    EXPECT_EQ(MustDecode(tok, c.ids), c.text) << tok.kind();
  }
}

TEST(Llama2cTokenizer, LlamaCppVocabTest_47Cases) {
  QRAG_REQUIRE_SHARED_PATH(bin, kLlama2Bin);
  QRAG_REQUIRE_SHARED_PATH(inp, kVocabTestInp);
  QRAG_REQUIRE_SHARED_PATH(out, kVocabTestOut);
  auto tok = MustLoad(bin, kLlama2Vocab);
  ASSERT_NE(tok, nullptr);
  CheckLlamaCppVocabTest(*tok, inp, out);
}

TEST(SentencePieceTokenizer, LlamaCppVocabTest_47Cases) {
  QRAG_REQUIRE_SHARED_PATH(model, kLlama2Model);
  QRAG_REQUIRE_SHARED_PATH(inp, kVocabTestInp);
  QRAG_REQUIRE_SHARED_PATH(out, kVocabTestOut);
  auto tok = MustLoad(model, kLlama2Vocab);
  ASSERT_NE(tok, nullptr);
  CheckLlamaCppVocabTest(*tok, inp, out);
}

TEST(SentencePieceTokenizer, Llama2_DecodeMatchesLibraryDecode) {
  QRAG_REQUIRE_SHARED_PATH(model, kLlama2Model);
  QRAG_REQUIRE_SHARED_PATH(inp, kVocabTestInp);
  QRAG_REQUIRE_SHARED_PATH(out, kVocabTestOut);
  auto tok = SentencePieceTokenizer::Load(model);
  ASSERT_TRUE(tok.ok()) << tok.status();
  for (const VocabCase& c : ReadVocabTest(inp, out)) {
    for (bool bos : {false, true}) {
      const std::vector<int32_t> ids = MustEncode(**tok, c.text, {.add_bos = bos});
      auto library = (*tok)->LibraryDecode(ids);
      ASSERT_TRUE(library.ok()) << library.status();
      EXPECT_EQ(MustDecode(**tok, ids), *library) << "'" << c.text << "'";
    }
  }
}

// Random strings over a mixed alphabet: run.c's algorithm and libsentencepiece agree on them.
TEST(Llama2cTokenizer, Llama2_AgreesWithSentencePiece_RandomStrings_Seed42) {
  QRAG_REQUIRE_SHARED_PATH(bin, kLlama2Bin);
  QRAG_REQUIRE_SHARED_PATH(model, kLlama2Model);
  auto l2 = MustLoad(bin, kLlama2Vocab);
  auto sp = MustLoad(model, kLlama2Vocab);
  ASSERT_NE(l2, nullptr);
  ASSERT_NE(sp, nullptr);
  const std::vector<std::string> alphabet = {
      "a",   "e", "t", "s",  "th", "ing", " ", " ",  "  ",  "\n",  "\t",    ".",     ",",     "'",
      "!",   "0", "7", "42", "é",  "ü",   "ß", "ж",  "λ",   "日",  "本",    "語",    "😀",     "👍🏽",
      "‍", "Ω", "A", "Z",  "-",  "(",   ")", "\"", "the", "The", "hello", "Hello", "world", "token"};
  std::mt19937 rng(42);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const int n = 1 + static_cast<int>(rng() % 20);
    for (int k = 0; k < n; ++k) text += alphabet[rng() % alphabet.size()];
    const std::vector<int32_t> a = MustEncode(*l2, text, {.add_bos = true});
    const std::vector<int32_t> b = MustEncode(*sp, text, {.add_bos = true});
    ASSERT_THAT(a, ElementsAreArray(b)) << "'" << text << "'";
    EXPECT_EQ(MustDecode(*l2, a), text);
    EXPECT_EQ(MustDecode(*sp, b), text);
  }
}

// ------------------------------------------------------------------------------------------------
// stories260K (tok512): both files, run.c's prompt encoding and gold token stream.

constexpr char kStoriesPrompt[] = "Lily and Ben went to the park. They saw a big red ball.";
constexpr int32_t kStoriesPromptIds[] = {1,   317, 269, 368, 302, 263, 377, 267, 265, 282, 295,
                                         433, 426, 342, 394, 261, 370, 352, 266, 268, 388, 426};

TEST(Llama2cTokenizer, Stories260K_PromptEncoding) {
  QRAG_REQUIRE_SHARED_PATH(bin, kStoriesBin);
  auto tok = MustLoad(bin, kStoriesVocab);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_THAT(tok->eos_ids(), ElementsAreArray({2}));
  EXPECT_THAT(MustEncode(*tok, kStoriesPrompt, {}), ElementsAreArray(kStoriesPromptIds));
  EXPECT_EQ(MustDecode(*tok, kStoriesPromptIds), kStoriesPrompt);
}

TEST(SentencePieceTokenizer, Stories260K_PromptEncoding) {
  QRAG_REQUIRE_SHARED_PATH(model, kStoriesModel);
  auto tok = MustLoad(model, kStoriesVocab);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_THAT(tok->eos_ids(), ElementsAreArray({2}));
  EXPECT_THAT(MustEncode(*tok, kStoriesPrompt, {}), ElementsAreArray(kStoriesPromptIds));
  EXPECT_EQ(MustDecode(*tok, kStoriesPromptIds), kStoriesPrompt);
}

// tok512.model's normalizer removes extra whitespace (leading, trailing and repeated spaces), which run.c
// does not do with tok512.bin; on text without such spaces the two agree id for id.
bool HasExtraWhitespace(const std::string& text) {
  return text.empty() || text[0] == ' ' || text.back() == ' ' || text.find("  ") != std::string::npos;
}

TEST(Llama2cTokenizer, Stories260K_BinAndModelAgree) {
  QRAG_REQUIRE_SHARED_PATH(bin, kStoriesBin);
  QRAG_REQUIRE_SHARED_PATH(model, kStoriesModel);
  QRAG_REQUIRE_SHARED_PATH(gold_text, kStoriesGoldText);
  QRAG_REQUIRE_SHARED_PATH(inp, kVocabTestInp);
  QRAG_REQUIRE_SHARED_PATH(out, kVocabTestOut);
  auto l2 = MustLoad(bin, kStoriesVocab);
  auto sp = MustLoad(model, kStoriesVocab);
  ASSERT_NE(l2, nullptr);
  ASSERT_NE(sp, nullptr);
  std::vector<std::string> texts = {kStoriesPrompt, ReadFile(gold_text), "Hello world", "héllo wörld 日本 😀",
                                    "two spaces\n\nand lines\t"};
  for (const VocabCase& c : ReadVocabTest(inp, out)) texts.push_back(c.text);
  int compared = 0;
  for (const std::string& text : texts) {
    if (HasExtraWhitespace(text)) continue;
    ++compared;
    const std::vector<int32_t> a = MustEncode(*l2, text, {.add_bos = true});
    EXPECT_THAT(a, ElementsAreArray(MustEncode(*sp, text, {.add_bos = true}))) << "'" << text << "'";
    EXPECT_EQ(MustDecode(*l2, a), text);
    EXPECT_EQ(MustDecode(*sp, a), text);
  }
  EXPECT_GE(compared, 30);
  // Piece by piece: same text for every id (the .bin spells ▁ as a space).
  for (int32_t id = 3; id < kStoriesVocab; ++id) {
    const int32_t ids[] = {5, id};  // after a byte piece, so no dummy-prefix stripping applies
    EXPECT_EQ(MustDecode(*l2, ids), MustDecode(*sp, ids)) << "id " << id;
  }
}

TEST(SentencePieceTokenizer, Stories260K_ModelNormalizerRemovesExtraWhitespace) {
  QRAG_REQUIRE_SHARED_PATH(bin, kStoriesBin);
  QRAG_REQUIRE_SHARED_PATH(model, kStoriesModel);
  auto l2 = MustLoad(bin, kStoriesVocab);
  auto sp = MustLoad(model, kStoriesVocab);
  ASSERT_NE(l2, nullptr);
  ASSERT_NE(sp, nullptr);
  const std::vector<int32_t> plain = MustEncode(*sp, "Lily ran home", {});
  EXPECT_THAT(MustEncode(*sp, "  Lily   ran home ", {}), ElementsAreArray(plain));
  EXPECT_THAT(MustEncode(*sp, " ", {}), ElementsAreArray({1}));
  // run.c keeps every space.
  EXPECT_THAT(MustEncode(*l2, "Lily ran home", {}), ElementsAreArray(plain));
  EXPECT_EQ(MustDecode(*l2, MustEncode(*l2, "  Lily   ran home ", {})), "  Lily   ran home ");
}

void CheckGoldDecode(const Tokenizer& tok, const std::string& tokens_path, const std::string& text_path) {
  const std::vector<int32_t> ids = ParseIds(ReadFile(tokens_path));
  ASSERT_EQ(ids.size(), 201u);
  const std::string gold = ReadFile(text_path);
  ASSERT_EQ(gold.size(), 464u);
  EXPECT_EQ(MustDecode(tok, ids), gold) << tok.kind();

  // The same text one id at a time.
  IncrementalDecoder stream(&tok, {});
  std::string streamed;
  for (int32_t id : ids) {
    auto piece = stream.Push(id);
    ASSERT_TRUE(piece.ok()) << piece.status();
    streamed += *piece;
  }
  streamed += stream.Flush();
  EXPECT_EQ(streamed, gold) << tok.kind();

  // With the first 20 ids as context (a prompt): only the continuation comes out.
  IncrementalDecoder continued(&tok, absl::MakeConstSpan(ids).subspan(0, 20));
  std::string rest;
  for (size_t i = 20; i < ids.size(); ++i) {
    auto piece = continued.Push(ids[i]);
    ASSERT_TRUE(piece.ok()) << piece.status();
    rest += *piece;
  }
  const std::string head = MustDecode(tok, absl::MakeConstSpan(ids).subspan(0, 20));
  EXPECT_EQ(head + rest, gold) << tok.kind();
}

TEST(Llama2cTokenizer, Stories260K_GoldTokensDecodeToGoldText) {
  QRAG_REQUIRE_SHARED_PATH(bin, kStoriesBin);
  QRAG_REQUIRE_SHARED_PATH(tokens, kStoriesGoldTokens);
  QRAG_REQUIRE_SHARED_PATH(text, kStoriesGoldText);
  auto tok = MustLoad(bin, kStoriesVocab);
  ASSERT_NE(tok, nullptr);
  CheckGoldDecode(*tok, tokens, text);
}

TEST(SentencePieceTokenizer, Stories260K_GoldTokensDecodeToGoldText) {
  QRAG_REQUIRE_SHARED_PATH(model, kStoriesModel);
  QRAG_REQUIRE_SHARED_PATH(tokens, kStoriesGoldTokens);
  QRAG_REQUIRE_SHARED_PATH(text, kStoriesGoldText);
  auto tok = MustLoad(model, kStoriesVocab);
  ASSERT_NE(tok, nullptr);
  CheckGoldDecode(*tok, tokens, text);
}

// ------------------------------------------------------------------------------------------------
// IncrementalDecoder details.

void CheckHoldsBackSplitCharacter(const Tokenizer& tok) {
  const std::string text = "Hi 😀 there, 日本";
  const std::vector<int32_t> ids = MustEncode(tok, text, {.add_bos = true});
  // The emoji is not a piece: it comes as 4 byte-fallback ids <0xF0> <0x9F> <0x98> <0x80>.
  const int32_t f0 = 0xF0 + 3;
  auto it = std::find(ids.begin(), ids.end(), f0);
  ASSERT_NE(it, ids.end()) << tok.kind();
  const size_t first = it - ids.begin();
  ASSERT_LE(first + 4, ids.size());

  IncrementalDecoder stream(&tok, {});
  std::string streamed;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto piece = stream.Push(ids[i]);
    ASSERT_TRUE(piece.ok()) << piece.status();
    if (i >= first && i < first + 3) EXPECT_THAT(*piece, IsEmpty()) << "byte " << i - first;
    if (i == first + 3) EXPECT_EQ(*piece, "😀");
    EXPECT_EQ(FindInvalidUtf8(*piece), std::string_view::npos);
    streamed += *piece;
  }
  EXPECT_EQ(streamed + stream.Flush(), text);

  // Ending inside the character: Flush gives what is held back, repaired.
  IncrementalDecoder cut(&tok, {});
  std::string partial;
  for (size_t i = 0; i < first + 2; ++i) partial += *cut.Push(ids[i]);
  EXPECT_EQ(partial, "Hi ");
  EXPECT_EQ(cut.Flush(), "\xEF\xBF\xBD");
  // ...while Decode itself keeps the raw bytes.
  EXPECT_EQ(MustDecode(tok, absl::MakeConstSpan(ids).subspan(0, first + 2)), "Hi \xF0\x9F");
}

TEST(IncrementalDecoder, HoldsBackSplitUtf8_Llama2c) {
  QRAG_REQUIRE_SHARED_PATH(bin, kLlama2Bin);
  auto tok = MustLoad(bin, kLlama2Vocab);
  ASSERT_NE(tok, nullptr);
  CheckHoldsBackSplitCharacter(*tok);
}

TEST(IncrementalDecoder, HoldsBackSplitUtf8_SentencePiece) {
  QRAG_REQUIRE_SHARED_PATH(model, kLlama2Model);
  auto tok = MustLoad(model, kLlama2Vocab);
  ASSERT_NE(tok, nullptr);
  CheckHoldsBackSplitCharacter(*tok);
}

TEST(IncrementalDecoder, SpacesAfterInvisibleIdsMatchFullDecode) {
  QRAG_REQUIRE_SHARED_PATH(bin, kStoriesBin);
  QRAG_REQUIRE_SHARED_PATH(model, kStoriesModel);
  for (const std::string& path : {bin, model}) {
    auto tok = MustLoad(path, kStoriesVocab);
    ASSERT_NE(tok, nullptr);
    std::vector<int32_t> ids = MustEncode(*tok, "Once upon a time", {.add_bos = true});
    // EOS in the middle, then more text, then a byte piece and a lone space piece.
    ids.push_back(2);
    for (int32_t id : MustEncode(*tok, "there was", {.add_bos = false})) ids.push_back(id);
    ids.push_back('!' + 3);
    for (int32_t id : MustEncode(*tok, " ", {.add_bos = false})) ids.push_back(id);
    for (int32_t id : MustEncode(*tok, "a girl", {.add_bos = false})) ids.push_back(id);
    IncrementalDecoder stream(tok.get(), {});
    std::string streamed;
    for (int32_t id : ids) streamed += *stream.Push(id);
    EXPECT_EQ(streamed + stream.Flush(), MustDecode(*tok, ids)) << tok->kind();
  }
}

TEST(IncrementalDecoder, OutOfRangeIdIsAnErrorAndTheStreamGoesOn) {
  QRAG_REQUIRE_SHARED_PATH(bin, kStoriesBin);
  auto tok = MustLoad(bin, kStoriesVocab);
  ASSERT_NE(tok, nullptr);
  IncrementalDecoder stream(tok.get(), std::vector<int32_t>{1});
  EXPECT_THAT(stream.Push(512), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("512")));
  EXPECT_THAT(stream.Push(-1), StatusIsCode(absl::StatusCode::kInvalidArgument));
  std::string text;
  for (int32_t id : MustEncode(*tok, "Lily", {.add_bos = false})) text += *stream.Push(id);
  EXPECT_EQ(text, "Lily");
}

// ------------------------------------------------------------------------------------------------
// Loader, FindTokenizerFor.

TEST(LoadTokenizer, DetectsFormats) {
  QRAG_REQUIRE_SHARED_PATH(bin, kStoriesBin);
  QRAG_REQUIRE_SHARED_PATH(model, kStoriesModel);
  EXPECT_EQ(MustLoad(bin, kStoriesVocab)->kind(), "llama2c");
  EXPECT_EQ(MustLoad(model, kStoriesVocab)->kind(), "sentencepiece");
  EXPECT_EQ(MustLoad(model, 0)->kind(), "sentencepiece");  // the .model knows its size
  // Content decides when the name does not.
  TempDir dir;
  WriteFile(dir.Join("spm.vocabfile"), ReadFile(model));
  EXPECT_EQ(MustLoad(dir.Join("spm.vocabfile"), 0)->kind(), "sentencepiece");
  WriteFile(dir.Join("tok.raw"), ReadFile(bin));
  EXPECT_EQ(MustLoad(dir.Join("tok.raw"), kStoriesVocab)->kind(), "llama2c");
  // A checkpoint directory.
  WriteFile(dir.Join("tokenizer.model"), ReadFile(model));
  EXPECT_EQ(MustLoad(dir.path(), kStoriesVocab)->kind(), "sentencepiece");
}

TEST(FindTokenizerFor, Llama2cCheckpointFindsSizeSpecificFile) {
  QRAG_REQUIRE_SHARED_PATH(model_bin, "models/stories260K/stories260K.bin");
  auto found = FindTokenizerFor(model_bin, kStoriesVocab);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(*found, HasSubstr("tok512.bin"));
  EXPECT_EQ(MustLoad(*found, kStoriesVocab)->kind(), "llama2c");
}

TEST(FindTokenizerFor, LooksNextToTheModelAndInDirectories) {
  TempDir dir;
  WriteFile(dir.Join("model.bin"), "x");
  EXPECT_THAT(FindTokenizerFor(dir.Join("model.bin"), 512),
              StatusIs(absl::StatusCode::kNotFound,
                       ::testing::AllOf(HasSubstr("tok512.bin"), HasSubstr("tok512.model"),
                                        HasSubstr("tokenizer.bin"), HasSubstr("tokenizer.model"))));
  WriteFile(dir.Join("tokenizer.model"), "x");
  EXPECT_EQ(*FindTokenizerFor(dir.Join("model.bin"), 512), dir.Join("tokenizer.model"));
  WriteFile(dir.Join("tokenizer.bin"), "x");
  EXPECT_EQ(*FindTokenizerFor(dir.Join("model.bin"), 512), dir.Join("tokenizer.bin"));
  WriteFile(dir.Join("tok512.model"), "x");
  EXPECT_EQ(*FindTokenizerFor(dir.Join("model.bin"), 512), dir.Join("tok512.model"));
  // A Hugging Face directory: tokenizer.json before tokenizer.model.
  EXPECT_EQ(*FindTokenizerFor(dir.path(), 0), dir.Join("tokenizer.model"));
  WriteFile(dir.Join("tokenizer.json"), "{}");
  EXPECT_EQ(*FindTokenizerFor(dir.path(), 0), dir.Join("tokenizer.json"));
  TempDir empty;
  EXPECT_THAT(FindTokenizerFor(empty.path(), 0),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("tokenizer.json")));
}

// ------------------------------------------------------------------------------------------------
// Failures: a status with the right code and a message naming the file and the problem, never a crash.

// A synthetic llama2.c tokenizer file: byte pieces at 3..258 as in real files.
std::string MakeLlama2cFile(int vocab, int32_t max_len = 8) {
  std::string out;
  auto put32 = [&](const void* p) { out.append(static_cast<const char*>(p), 4); };
  put32(&max_len);
  for (int id = 0; id < vocab; ++id) {
    std::string piece;
    if (id == 0)
      piece = "<unk>";
    else if (id == 1)
      piece = "\n<s>\n";
    else if (id == 2)
      piece = "\n</s>\n";
    else if (id < 259) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "<0x%02X>", id - 3);
      piece = buf;
    } else {
      piece = std::string(1, static_cast<char>('a' + (id - 259) % 26)) + std::to_string((id - 259) / 26);
    }
    const float score = -static_cast<float>(id);
    const int32_t len = static_cast<int32_t>(piece.size());
    put32(&score);
    put32(&len);
    out += piece;
  }
  return out;
}

TEST(TokenizerErrors, MissingFileIsNotFound) {
  TempDir dir;
  for (const char* name : {"tokenizer.bin", "tokenizer.model", "tokenizer.json", "nothing"}) {
    EXPECT_THAT(LoadTokenizer(dir.Join(name), 512),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir.Join(name))));
  }
  EXPECT_THAT(Llama2cTokenizer::Load(dir.Join("x.bin"), 512), StatusIsCode(absl::StatusCode::kNotFound));
  EXPECT_THAT(SentencePieceTokenizer::Load(dir.Join("x.model")), StatusIsCode(absl::StatusCode::kNotFound));
}

TEST(TokenizerErrors, Llama2cTruncatedFile) {
  QRAG_REQUIRE_SHARED_PATH(bin, kStoriesBin);
  TempDir dir;
  const std::string bytes = ReadFile(bin);
  for (size_t keep : {size_t{0}, size_t{2}, size_t{4}, size_t{9}, bytes.size() / 2, bytes.size() - 1}) {
    const std::string path = dir.Join("tokenizer.bin");
    WriteFile(path, bytes.substr(0, keep));
    auto tok = LoadTokenizer(path, kStoriesVocab);
    EXPECT_THAT(tok,
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::AllOf(HasSubstr(path), ::testing::AnyOf(HasSubstr("truncated"),
                                                                            HasSubstr("max_token_length")))))
        << "kept " << keep << " bytes";
  }
  WriteFile(dir.Join("t.bin"), bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(
      LoadTokenizer(dir.Join("t.bin"), kStoriesVocab),
      StatusIs(absl::StatusCode::kInvalidArgument, ::testing::AllOf(HasSubstr("offset"), HasSubstr("id "))));
}

TEST(TokenizerErrors, Llama2cTrailingGarbageAndWrongVocabSize) {
  QRAG_REQUIRE_SHARED_PATH(bin, kStoriesBin);
  TempDir dir;
  const std::string path = dir.Join("tokenizer.bin");
  WriteFile(path, ReadFile(bin) + "garbage");
  EXPECT_THAT(
      LoadTokenizer(path, kStoriesVocab),
      StatusIs(absl::StatusCode::kInvalidArgument,
               ::testing::AllOf(HasSubstr(path), HasSubstr("7 trailing bytes"), HasSubstr("offset 6227"))));
  // Too small a vocab size leaves pieces over; too large runs off the end; absurd sizes fail fast.
  EXPECT_THAT(LoadTokenizer(bin, 511), StatusIs(absl::StatusCode::kInvalidArgument,
                                                ::testing::AllOf(HasSubstr("trailing"), HasSubstr("511"))));
  EXPECT_THAT(LoadTokenizer(bin, 513),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("truncated"), HasSubstr("id 512"))));
  EXPECT_THAT(LoadTokenizer(bin, 1 << 30), StatusIsCode(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(LoadTokenizer(bin, 0), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocab size")));
  EXPECT_THAT(LoadTokenizer(bin, 100), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too small")));
  // The right size for the wrong tokenizer: the Llama 2 .bin read as 512 pieces.
  QRAG_REQUIRE_SHARED_PATH(llama2, kLlama2Bin);
  EXPECT_THAT(LoadTokenizer(llama2, kStoriesVocab),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trailing")));
}

TEST(TokenizerErrors, Llama2cBadLengthsAndScores) {
  TempDir dir;
  const std::string good = MakeLlama2cFile(300);
  ASSERT_TRUE(Llama2cTokenizer::FromBytes(good, 300, "synthetic").ok());
  // Piece 5's length field sits after 4 + (8 + len) bytes per earlier piece.
  size_t offset = 4;
  for (int id = 0; id < 5; ++id) {
    int32_t len;
    std::memcpy(&len, good.data() + offset + 4, 4);
    offset += 8 + len;
  }
  for (int32_t bad_len : {-1, -2147483647 - 1, 9, 1 << 30}) {
    std::string bytes = good;
    std::memcpy(bytes.data() + offset + 4, &bad_len, 4);
    EXPECT_THAT(Llama2cTokenizer::FromBytes(bytes, 300, "synthetic.bin"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::AllOf(HasSubstr("synthetic.bin"), HasSubstr("id 5"),
                                          HasSubstr("offset " + std::to_string(offset + 4)))))
        << bad_len;
  }
  std::string nan_score = good;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(nan_score.data() + offset, &nan, 4);
  EXPECT_THAT(Llama2cTokenizer::FromBytes(nan_score, 300, "synthetic.bin"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NaN")));
  for (int32_t bad_max : {0, -5, 1 << 20}) {
    std::string bytes = good;
    std::memcpy(bytes.data(), &bad_max, 4);
    EXPECT_THAT(Llama2cTokenizer::FromBytes(bytes, 300, "synthetic.bin"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_token_length")));
  }
  // Random bytes never crash.
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::string bytes = good;
    for (int k = 0; k < 4; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    bytes.resize(rng() % (bytes.size() + 1));
    auto tok = Llama2cTokenizer::FromBytes(bytes, 300, "fuzz");
    if (tok.ok()) {
      auto ids = (*tok)->Encode("abc a0 z1 é", {});
      ASSERT_TRUE(ids.ok());
      ASSERT_TRUE((*tok)->Decode(*ids).ok());
    }
  }
}

TEST(TokenizerErrors, GarbageSentencePieceModel) {
  TempDir dir;
  const std::string path = dir.Join("tokenizer.model");
  for (const std::string& bytes :
       {std::string(), std::string("not a protobuf at all \xff\xfe"), std::string("\x0a\x05hello", 7)}) {
    WriteFile(path, bytes);
    EXPECT_THAT(LoadTokenizer(path, 0), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path)));
  }
  WriteFile(dir.Join("weird.dat"), "neither format");
  EXPECT_THAT(LoadTokenizer(dir.Join("weird.dat"), 512),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a recognized tokenizer")));
}

TEST(TokenizerErrors, ModelVocabSmallerThanTokenizer) {
  QRAG_REQUIRE_SHARED_PATH(model, kLlama2Model);
  EXPECT_THAT(LoadTokenizer(model, 512), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  ::testing::AllOf(HasSubstr("32000"), HasSubstr("512"))));
}

void CheckBadInputs(const Tokenizer& tok) {
  for (const std::string& bad :
       {std::string("abc\xff"), std::string("\xc3"), std::string("a\xc3\x28"), std::string("\xed\xa0\x80"),
        std::string("\xf4\x90\x80\x80"), std::string("\xc0\xaf")}) {
    EXPECT_THAT(tok.Encode(bad, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid UTF-8")))
        << tok.kind();
  }
  EXPECT_THAT(tok.Encode("ab\xff", {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("byte 2")));
  const int32_t n = tok.vocab_size();
  for (int32_t bad : {-1, n, n + 1000, std::numeric_limits<int32_t>::max()}) {
    const int32_t ids[] = {1, bad};
    EXPECT_THAT(tok.Decode(ids),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::AllOf(HasSubstr(std::to_string(bad)), HasSubstr("position 1"))))
        << tok.kind();
  }
  // Embedded NUL bytes are text like any other.
  const std::string with_nul("a\0b", 3);
  auto ids = tok.Encode(with_nul, {.add_bos = false});
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(MustDecode(tok, *ids), with_nul);
}

TEST(TokenizerErrors, InvalidUtf8AndOutOfRangeIds_Llama2c) {
  QRAG_REQUIRE_SHARED_PATH(bin, kStoriesBin);
  auto tok = MustLoad(bin, kStoriesVocab);
  ASSERT_NE(tok, nullptr);
  CheckBadInputs(*tok);
}

TEST(TokenizerErrors, InvalidUtf8AndOutOfRangeIds_SentencePiece) {
  QRAG_REQUIRE_SHARED_PATH(model, kStoriesModel);
  auto tok = MustLoad(model, kStoriesVocab);
  ASSERT_NE(tok, nullptr);
  CheckBadInputs(*tok);
}

// ------------------------------------------------------------------------------------------------
// UTF-8 helpers.

TEST(Utf8, ValidationAndRepair) {
  EXPECT_EQ(FindInvalidUtf8("plain ascii"), std::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("é日😀"), std::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("ab\x80"), 2u);
  EXPECT_EQ(FindInvalidUtf8("\xe0\x80\x80"), 0u);      // overlong
  EXPECT_EQ(FindInvalidUtf8("x\xed\xa0\x80"), 1u);     // surrogate
  EXPECT_EQ(FindInvalidUtf8("\xf4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("\xe6\x97"), 0u);          // truncated
  EXPECT_EQ(IncompleteUtf8Suffix("ab\xe6\x97"), 2u);
  EXPECT_EQ(IncompleteUtf8Suffix("ab\xf0\x9f\x98"), 3u);
  EXPECT_EQ(IncompleteUtf8Suffix("ab\xf0"), 1u);
  EXPECT_EQ(IncompleteUtf8Suffix("ab\xe6\x97\xa5"), 0u);
  EXPECT_EQ(IncompleteUtf8Suffix("ab\x80"), 0u);
  EXPECT_EQ(IncompleteUtf8Suffix("\xe0\x80"), 0u);  // can never complete
  EXPECT_EQ(IncompleteUtf8Suffix(""), 0u);
  EXPECT_EQ(ReplaceInvalidUtf8("a\xffz"), "a\xEF\xBF\xBDz");
  EXPECT_EQ(ReplaceInvalidUtf8("a\xf0\x9f\x98z"), "a\xEF\xBF\xBDz");  // one U+FFFD per maximal subpart
  EXPECT_EQ(ReplaceInvalidUtf8("日本"), "日本");
  std::string s;
  for (char32_t cp : {U'A', U'é', U'日', U'😀'}) AppendUtf8(cp, &s);
  EXPECT_EQ(s, "Aé日😀");
  size_t pos = 0;
  std::vector<char32_t> cps;
  while (pos < s.size()) cps.push_back(DecodeUtf8At(s, &pos));
  EXPECT_THAT(cps, ElementsAreArray({U'A', U'é', U'日', U'😀'}));
}

}  // namespace
}  // namespace qrag::model
