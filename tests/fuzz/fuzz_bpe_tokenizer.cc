// A Hugging Face tokenizer.json (byte-level BPE): input = [tokenizer.json NUL tokenizer_config.json NUL text];
// an accepted tokenizer encodes the text (with and without special-token parsing) and decodes it back.
#include <cstdint>

#include "server/model/bpe_tokenizer.h"
#include "tests/fuzz/fuzz_tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrag;
  const auto parts = fuzz::SplitParts(fuzz::AsText(data, size), 3);
  auto tok = model::HfBpeTokenizer::FromJson(parts[0], parts[1], "", "fuzz/tokenizer.json");
  if (!tok.ok()) {
    fuzz::CheckInputError(tok.status(), "HfBpeTokenizer::FromJson");
    return 0;
  }
  for (const bool special : {false, true}) {
    model::EncodeOptions options;
    options.parse_special = special;
    fuzz::CheckEncodeDecode(**tok, parts[2], options);
  }
  return 0;
}
