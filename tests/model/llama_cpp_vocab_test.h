// llama.cpp's tokenizer test files (ggml-vocab-*.gguf.inp / .out, written by convert_hf_to_gguf_update.py),
// read as llama.cpp's tests/test-tokenizer-0.cpp reads them.
#ifndef QRAG_TESTS_MODEL_LLAMA_CPP_VOCAB_TEST_H_
#define QRAG_TESTS_MODEL_LLAMA_CPP_VOCAB_TEST_H_

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace qrag::testing {

// Space-separated ids.
inline std::vector<int32_t> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  std::istringstream in(text);
  for (int32_t id; in >> id;) ids.push_back(id);
  return ids;
}

// llama.cpp's vocab test files, read as llama.cpp's tests/test-tokenizer-0.cpp reads them: the .inp is
// split at "\n__ggml_vocab_test__\n" and the .out at "\n", keeping the (empty) piece after the last
// separator. convert_hf_to_gguf_update.py writes every string followed by that separator, so 46 strings
// give 47 cases, the last one the empty string with no ids.
struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};
inline std::vector<std::string> SplitLikeLlamaCpp(const std::string& s, const std::string& delimiter) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t end = s.find(delimiter); end != std::string::npos; end = s.find(delimiter, start)) {
    parts.push_back(s.substr(start, end - start));
    start = end + delimiter.size();
  }
  parts.push_back(s.substr(start));
  return parts;
}
inline std::vector<VocabCase> ReadVocabTest(const std::string& inp_path, const std::string& out_path) {
  const std::vector<std::string> texts = SplitLikeLlamaCpp(ReadFile(inp_path), "\n__ggml_vocab_test__\n");
  const std::vector<std::string> lines = SplitLikeLlamaCpp(ReadFile(out_path), "\n");
  EXPECT_EQ(texts.size(), lines.size()) << inp_path;
  std::vector<VocabCase> cases;
  for (size_t i = 0; i < texts.size() && i < lines.size(); ++i)
    cases.push_back({texts[i], ParseIds(lines[i])});
  return cases;
}

}  // namespace qrag::testing

#endif  // QRAG_TESTS_MODEL_LLAMA_CPP_VOCAB_TEST_H_
