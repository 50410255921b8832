#include "server/model/wordpiece_tokenizer.h"

#include <sstream>

#include "absl/strings/str_split.h"
#include "tests/test_util.h"

namespace qrag::model {
namespace {

using ::qrag::testing::ReadFile;
using ::qrag::testing::TempDir;
using ::qrag::testing::WriteFile;

constexpr char kVocabDir[] = "models/all-MiniLM-L6-v2";

// llama.cpp's tokenizer test cases for BERT (generated with Hugging Face tokenizers): inputs separated by
// "\n__ggml_vocab_test__\n", one line of expected ids (without [CLS]/[SEP]) per input.
TEST(WordPieceTokenizer, LlamaCppVocabTest_AllMiniLmL6V2_46Cases) {
  QRAG_REQUIRE_SHARED_PATH(dir, kVocabDir);
  const std::string inp = ReadFile(dir + "/llama.cpp-vocab-test/ggml-vocab-bert-bge.gguf.inp");
  const std::string out = ReadFile(dir + "/llama.cpp-vocab-test/ggml-vocab-bert-bge.gguf.out");
  std::vector<std::string> inputs = absl::StrSplit(inp, "\n__ggml_vocab_test__\n");
  if (!inputs.empty() && inputs.back().empty()) inputs.pop_back();
  std::vector<std::string> lines = absl::StrSplit(out, '\n');
  ASSERT_EQ(inputs.size(), 46u);  // the file holds 46 cases (46 separators)
  ASSERT_GE(lines.size(), inputs.size());
  for (const char* source : {"tokenizer.json", "vocab.txt"}) {
    absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> tok =
        std::string(source) == "tokenizer.json"
            ? WordPieceTokenizer::FromTokenizerJson(dir + "/tokenizer.json")
            : WordPieceTokenizer::FromVocabFile(dir + "/vocab.txt", WordPieceOptions{});
    ASSERT_TRUE(tok.ok()) << tok.status();
    int nonempty = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      std::vector<int32_t> want;
      std::istringstream ids(lines[i]);
      for (int32_t id; ids >> id;) want.push_back(id);
      nonempty += !want.empty();
      auto got = (*tok)->Encode(inputs[i]);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, want) << source << " case " << i << ": '" << inputs[i] << "'";
    }
    EXPECT_GE(nonempty, 35);
  }
}

TEST(WordPieceTokenizer, Offsets_PointAtTheOriginalWords) {
  TempDir tmp;
  WriteFile(tmp.Join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\n##s\n!\nfuhrer\n");
  auto tok = WordPieceTokenizer::FromVocabFile(tmp.Join("vocab.txt"), WordPieceOptions{});
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::string text = "  Hello, Worlds! F\xc3\xbchrer";
  auto t = (*tok)->Tokenize(text);
  ASSERT_TRUE(t.ok()) << t.status();
  // hello , world ##s ! fuhrer  ("," is not in the vocabulary: [UNK])
  ASSERT_EQ(t->size(), 6u);
  EXPECT_EQ((*t)[0].id, 4);
  EXPECT_EQ(text.substr((*t)[0].begin, (*t)[0].end - (*t)[0].begin), "Hello");
  EXPECT_EQ((*t)[1].id, 1);
  EXPECT_EQ((*t)[2].id, 5);
  EXPECT_EQ((*t)[3].id, 6);
  EXPECT_EQ(text.substr((*t)[3].begin, (*t)[3].end - (*t)[3].begin), "Worlds");
  EXPECT_EQ((*t)[5].id, 8);
  EXPECT_EQ(text.substr((*t)[5].begin), "F\xc3\xbchrer");
}

TEST(WordPieceTokenizer, WordOver100Chars_IsUnk) {
  TempDir tmp;
  WriteFile(tmp.Join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\na\n##a\n");
  auto tok = WordPieceTokenizer::FromVocabFile(tmp.Join("vocab.txt"), WordPieceOptions{});
  ASSERT_TRUE(tok.ok());
  std::vector<int32_t> want(100, 5);  // a ##a ##a ...
  want[0] = 4;
  EXPECT_EQ(*(*tok)->Encode(std::string(100, 'a')), want);
  EXPECT_EQ(*(*tok)->Encode(std::string(101, 'a')), std::vector<int32_t>{1});
}

TEST(WordPieceTokenizer, BadInput_Errors) {
  TempDir tmp;
  WriteFile(tmp.Join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\na\n");
  auto tok = WordPieceTokenizer::FromVocabFile(tmp.Join("vocab.txt"), WordPieceOptions{});
  ASSERT_TRUE(tok.ok());
  EXPECT_THAT((*tok)->Encode("a\xff"), StatusIsCode(absl::StatusCode::kInvalidArgument));
  WriteFile(tmp.Join("novocab.txt"), "[PAD]\n[CLS]\n[SEP]\na\n");
  EXPECT_THAT(WordPieceTokenizer::FromVocabFile(tmp.Join("novocab.txt"), WordPieceOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("[UNK]")));
  EXPECT_THAT(WordPieceTokenizer::FromVocabFile(tmp.Join("missing.txt"), WordPieceOptions{}),
              StatusIsCode(absl::StatusCode::kNotFound));
  WriteFile(tmp.Join("dup.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\na\na\n");
  EXPECT_THAT(WordPieceTokenizer::FromVocabFile(tmp.Join("dup.txt"), WordPieceOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("duplicate")));
}

}  // namespace
}  // namespace qrag::model
