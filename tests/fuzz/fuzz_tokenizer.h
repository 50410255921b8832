// The check every tokenizer fuzz target runs on an accepted tokenizer: encoding `text` succeeds or fails with
// an input error, every id is inside the vocabulary, and the ids decode (or fail with an input error).
#ifndef QRAG_TESTS_FUZZ_FUZZ_TOKENIZER_H_
#define QRAG_TESTS_FUZZ_FUZZ_TOKENIZER_H_

#include <cstdint>
#include <string_view>

#include "server/model/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace qrag::fuzz {

inline void CheckEncodeDecode(const model::Tokenizer& tok, std::string_view text,
                              const model::EncodeOptions& options = {}) {
  auto ids = tok.Encode(text, options);
  if (!ids.ok()) {
    CheckInputError(ids.status(), "Encode");
    return;
  }
  for (int32_t id : *ids) {
    if (id < 0 || id >= tok.vocab_size()) Fail("Encode returned an id outside the vocabulary");
  }
  auto decoded = tok.Decode(*ids);
  if (!decoded.ok()) CheckInputError(decoded.status(), "Decode");
}

}  // namespace qrag::fuzz

#endif  // QRAG_TESTS_FUZZ_FUZZ_TOKENIZER_H_
