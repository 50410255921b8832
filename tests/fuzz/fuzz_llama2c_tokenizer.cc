// llama2.c's tokenizer.bin: input = [vocab size: 2 bytes LE][file bytes NUL text]; an accepted tokenizer
// encodes the text and decodes the ids back.
#include <cstdint>
#include <string>

#include "server/model/llama2c_tokenizer.h"
#include "tests/fuzz/fuzz_tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrag;
  if (size < 2) return 0;
  const int vocab = data[0] | (data[1] << 8);
  const auto parts = fuzz::SplitParts(fuzz::AsText(data + 2, size - 2), 2);
  auto tok = model::Llama2cTokenizer::FromBytes(parts[0], vocab, "fuzz");
  if (!tok.ok()) {
    fuzz::CheckInputError(tok.status(), "Llama2cTokenizer::FromBytes");
    return 0;
  }
  fuzz::CheckEncodeDecode(**tok, parts[1]);
  return 0;
}
