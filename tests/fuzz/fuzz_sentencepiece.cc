// A SentencePiece ModelProto (tokenizer.model): input = [model bytes NUL text]; an accepted model encodes the
// text and decodes the ids back.
#include <cstdint>

#include "server/model/sentencepiece_tokenizer.h"
#include "tests/fuzz/fuzz_tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrag;
  const auto parts = fuzz::SplitParts(fuzz::AsText(data, size), 2);
  auto tok = model::SentencePieceTokenizer::FromBytes(parts[0], "fuzz");
  if (!tok.ok()) {
    fuzz::CheckInputError(tok.status(), "SentencePieceTokenizer::FromBytes");
    return 0;
  }
  fuzz::CheckEncodeDecode(**tok, parts[1]);
  return 0;
}
