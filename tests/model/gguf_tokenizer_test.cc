// The tokenizer of a GGUF file (server/model/gguf_tokenizer.h): tiny byte-level BPE vocabularies written by
// the test (pre-tokenizers, control / user-defined tokens, special ids, refusals), and llama.cpp's own vocab
// test for the SentencePiece model (ggml-vocab-llama-spm.gguf with its .inp/.out, in ../shared). The
// SmolLM2 GGUF against llama.cpp's ids is in gguf_smollm2_test.cc.
#include "server/model/gguf_tokenizer.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/model/gguf.h"
#include "tests/model/gguf_builder.h"
#include "tests/model/llama_cpp_vocab_test.h"
#include "tests/test_util.h"

namespace qrag::model {
namespace {

using ::qrag::testing::Builder;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

absl::StatusOr<GgufFile> Parse(const std::string& bytes) {
  auto owner = std::make_shared<std::string>(bytes);
  const uint8_t* p = reinterpret_cast<const uint8_t*>(owner->data());
  const size_t n = owner->size();
  return GgufFile::Parse(std::move(owner), p, n, "tok.gguf");
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const Builder& b) {
  auto f = Parse(b.Build());
  if (!f.ok()) return f.status();
  return LoadGgufTokenizer(*f);
}

// A byte-level vocabulary: ids 0-2 control, 3 user-defined, then letters, digits, 'Ġ' (space), merges.
// "Ġ" is U+0120, the GPT-2 byte table's space.
Builder Gpt2Vocab(const std::string& pre) {
  Builder b;
  b.KvString("tokenizer.ggml.model", "gpt2");
  if (!pre.empty()) b.KvString("tokenizer.ggml.pre", pre);
  const std::vector<std::string> tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<user>", "a", "b", "1", "2",
                                           "\xc4\xa0", "ab", "\xc4\xa0" "a", "12", "\xc4\xa0" "ab", "!"};
  b.KvStrings("tokenizer.ggml.tokens", tokens);
  b.KvI32s("tokenizer.ggml.token_type", {3, 3, 3, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
  b.KvStrings("tokenizer.ggml.merges", {"\xc4\xa0 a", "a b", "1 2", "\xc4\xa0" "a b"});
  b.KvU32("tokenizer.ggml.bos_token_id", 1);
  b.KvU32("tokenizer.ggml.eos_token_id", 0);
  b.KvU32("tokenizer.ggml.eot_token_id", 2);
  return b;
}

std::vector<int32_t> Ids(const Tokenizer& t, const std::string& text, EncodeOptions o = {.add_bos = false}) {
  auto ids = t.Encode(text, o);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

TEST(GgufTokenizerGpt2, MergesAndPreTokenizers) {
  // gpt2: " ab" is one pre-token ("Ġab"), "12" one ("12").
  auto gpt2 = Load(Gpt2Vocab("gpt2"));
  ASSERT_TRUE(gpt2.ok()) << gpt2.status();
  EXPECT_THAT(Ids(**gpt2, "ab ab12"), ElementsAre(9, 12, 11));
  // smollm: every digit alone, so "12" is never merged.
  auto smollm = Load(Gpt2Vocab("smollm"));
  ASSERT_TRUE(smollm.ok()) << smollm.status();
  EXPECT_THAT(Ids(**smollm, "ab ab12"), ElementsAre(9, 12, 6, 7));
  // qwen2: digits one by one too (\p{N}); llama3: up to three digits together.
  EXPECT_THAT(Ids(**Load(Gpt2Vocab("qwen2")), "12"), ElementsAre(6, 7));
  EXPECT_THAT(Ids(**Load(Gpt2Vocab("llama3")), "12"), ElementsAre(11));
  // default (no key): punctuation runs are split off first.
  EXPECT_THAT(Ids(**Load(Gpt2Vocab("")), "ab!"), ElementsAre(9, 13));
  EXPECT_EQ((*gpt2)->vocab_size(), 14);
  EXPECT_EQ(*(*gpt2)->Decode({9, 12, 11}), "ab ab12");
}

TEST(GgufTokenizerGpt2, ControlTokensOnlyWithParseSpecial_UserDefinedAlways) {
  auto t = Load(Gpt2Vocab("gpt2"));
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string text = "<|im_start|>ab<user>";
  EXPECT_THAT(Ids(**t, text, {.add_bos = false, .parse_special = true}), ElementsAre(1, 9, 3));
  // Without parse_special the control token's text is ordinary text: its characters are not in this tiny
  // vocab and are dropped, but the id 1 never appears; the user-defined token is still matched.
  const std::vector<int32_t> plain = Ids(**t, text);
  EXPECT_THAT(plain, ::testing::Not(::testing::Contains(1)));
  EXPECT_THAT(plain, ::testing::Contains(3));
  // Decode drops control tokens and prints user-defined ones.
  EXPECT_EQ(*(*t)->Decode({1, 9, 3, 2}), "ab<user>");
  EXPECT_THAT((*t)->eos_ids(), ElementsAre(0, 2));
  EXPECT_FALSE((*t)->bos_id().has_value());  // add_bos_token absent: gpt2 default false
}

TEST(GgufTokenizerGpt2, AddBosFromMetadataOrPreDefault) {
  Builder b = Gpt2Vocab("gpt2");
  b.KvBool("tokenizer.ggml.add_bos_token", true);
  auto t = Load(b);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->bos_id(), 1);
  EXPECT_THAT(Ids(**t, "ab", {.add_bos = true}), ElementsAre(1, 9));
  auto llama3 = Load(Gpt2Vocab("llama3"));  // llama.cpp adds BOS for llama3 unless the file says otherwise
  EXPECT_EQ((*llama3)->bos_id(), 1);
}

TEST(GgufTokenizer, Refusals) {
  EXPECT_THAT(Load(Gpt2Vocab("tekken")).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("'tokenizer.ggml.pre' = 'tekken'")));
  Builder t5;
  t5.KvString("tokenizer.ggml.model", "t5").KvStrings("tokenizer.ggml.tokens", {"a"});
  EXPECT_THAT(Load(t5).status(), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("'tokenizer.ggml.model' = 't5'")));
  Builder none;
  none.KvStrings("tokenizer.ggml.tokens", {"a"});
  EXPECT_THAT(Load(none).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing metadata key 'tokenizer.ggml.model'")));
  Builder no_merges;
  no_merges.KvString("tokenizer.ggml.model", "gpt2").KvStrings("tokenizer.ggml.tokens", {"a"});
  EXPECT_THAT(Load(no_merges).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'tokenizer.ggml.merges'")));
  Builder types;
  types.KvString("tokenizer.ggml.model", "gpt2").KvStrings("tokenizer.ggml.tokens", {"a", "b"});
  types.KvI32s("tokenizer.ggml.token_type", {1});
  EXPECT_THAT(Load(types).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 entries for 2 tokens")));
  Builder type7;
  type7.KvString("tokenizer.ggml.model", "gpt2").KvStrings("tokenizer.ggml.tokens", {"a"});
  type7.KvI32s("tokenizer.ggml.token_type", {7});
  EXPECT_THAT(Load(type7).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token 0 has unknown type 7")));
  Builder no_unk;  // sentencepiece needs an unknown piece
  no_unk.KvString("tokenizer.ggml.model", "llama").KvStrings("tokenizer.ggml.tokens", {"a", "b"});
  no_unk.KvF32s("tokenizer.ggml.scores", {0.0f, 0.0f});
  EXPECT_THAT(Load(no_unk).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tok.gguf")));
  Builder dup;  // found by fuzz_gguf: libsentencepiece cannot encode with a piece defined twice
  dup.KvString("tokenizer.ggml.model", "llama").KvStrings("tokenizer.ggml.tokens", {"<unk>", "\xe2\x96\x81", "a", "\xe2\x96\x81"});
  dup.KvF32s("tokenizer.ggml.scores", {0.0f, 0.0f, -1.0f, -2.0f});
  dup.KvI32s("tokenizer.ggml.token_type", {2, 3, 1, 1});
  EXPECT_THAT(Load(dup).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tokens 1 and 3 are both")));
  Builder utf8;
  utf8.KvString("tokenizer.ggml.model", "llama").KvStrings("tokenizer.ggml.tokens", {"<unk>", "\xe4"});
  utf8.KvF32s("tokenizer.ggml.scores", {0.0f, 0.0f});
  EXPECT_THAT(Load(utf8).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token 1")));
  Builder bos = Gpt2Vocab("gpt2");
  bos.KvU32("tokenizer.ggml.padding_token_id", 99);
  EXPECT_THAT(Load(bos).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'tokenizer.ggml.padding_token_id' = 99")));
  Builder eos = Gpt2Vocab("gpt2");
  eos.KvBool("tokenizer.ggml.add_eos_token", true);
  EXPECT_THAT(Load(eos).status(), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("add_eos_token")));
  Builder merge = Gpt2Vocab("gpt2");
  merge.kv.clear();
  merge.n_kv = 0;
  merge.KvString("tokenizer.ggml.model", "gpt2").KvStrings("tokenizer.ggml.tokens", {"a"});
  merge.KvStrings("tokenizer.ggml.merges", {"a z"});
  EXPECT_THAT(Load(merge).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not in the vocab")));
  Builder spm;
  spm.KvString("tokenizer.ggml.model", "llama").KvStrings("tokenizer.ggml.tokens", {"<unk>", "a"});
  spm.KvF32s("tokenizer.ggml.scores", {0.0f});
  EXPECT_THAT(Load(spm).status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 entries for 2 tokens")));
}

// A SentencePiece vocabulary: <unk>, <s>, </s> (control), byte pieces for 'x', then pieces with scores.
TEST(GgufTokenizerSpm, ScoresByteFallbackAndControlTokens) {
  Builder b;
  b.KvString("tokenizer.ggml.model", "llama");
  // ids 0-2, then the 256 byte pieces <0x00>..<0xFF> (ids 3-258), then the pieces from id 259.
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", byte);
    tokens.push_back(name);
    scores.push_back(0);
    types.push_back(6);
  }
  const std::vector<std::string> pieces = {"\xe2\x96\x81", "a", "b", "ab", "\xe2\x96\x81" "a", "\xe2\x96\x81" "ab"};
  for (size_t i = 0; i < pieces.size(); ++i) {
    tokens.push_back(pieces[i]);
    scores.push_back(-1.0f - static_cast<float>(i));
    types.push_back(1);
  }
  b.KvStrings("tokenizer.ggml.tokens", tokens);
  b.KvF32s("tokenizer.ggml.scores", scores);
  b.KvI32s("tokenizer.ggml.token_type", types);
  b.KvU32("tokenizer.ggml.bos_token_id", 1);
  b.KvU32("tokenizer.ggml.eos_token_id", 2);
  b.KvU32("tokenizer.ggml.unknown_token_id", 0);
  auto t = Load(b);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->kind(), "gguf-spm");
  EXPECT_EQ((*t)->bos_id(), 1);  // add_bos defaults to true for SPM
  // "ab" -> "▁ab" (264) merged by score; 'x' (0x78) only as its byte piece (3 + 0x78).
  const int32_t kAb = 264, kSpace = 259, kX = 3 + 0x78;
  EXPECT_THAT(Ids(**t, "ab x", {.add_bos = true}), ElementsAre(1, kAb, kSpace, kX));
  EXPECT_THAT(Ids(**t, "ab</s>ab", {.add_bos = false, .parse_special = true}), ElementsAre(kAb, 2, kAb));
  EXPECT_THAT(Ids(**t, "ab</s>ab"), ::testing::Not(::testing::Contains(2)));
  EXPECT_EQ(*(*t)->Decode({1, kAb, kSpace, kX, 2}), "ab x");
}

// llama.cpp's test-tokenizer-0 data for the Llama SPM vocabulary: every case equal (add_bos false).
TEST(GgufTokenizerSpm, LlamaCppVocabTest_LlamaSpm) {
  QRAG_REQUIRE_SHARED_PATH(gguf, "models/llama2-tokenizer/llama.cpp-vocab-test/ggml-vocab-llama-spm.gguf");
  QRAG_REQUIRE_SHARED_PATH(inp, "models/llama2-tokenizer/llama.cpp-vocab-test/ggml-vocab-llama-spm.gguf.inp");
  QRAG_REQUIRE_SHARED_PATH(out, "models/llama2-tokenizer/llama.cpp-vocab-test/ggml-vocab-llama-spm.gguf.out");
  auto t = LoadTokenizer(gguf, 0);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->kind(), "gguf-spm");
  const std::vector<::qrag::testing::VocabCase> cases = ::qrag::testing::ReadVocabTest(inp, out);
  ASSERT_GE(cases.size(), 40u);
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_THAT(Ids(**t, cases[i].text), ElementsAreArray(cases[i].ids)) << "case " << i << ": '" << cases[i].text << "'";
  }
}

}  // namespace
}  // namespace qrag::model
