// The GGUF reader (server/model/gguf.h) and everything that reads a parsed file: the metadata getters, the
// dequantization of every tensor (quant/gguf_blocks.h), the model loader (gguf_loader.h) and the tokenizer
// (gguf_tokenizer.h). The bytes are parsed straight from the fuzzer's buffer (GgufFile::Parse), no file.
// Every error must be an input error (fuzz::CheckInputError); every tensor the reader accepts must be readable
// in full (ASan checks its bytes stay in the buffer). Seeds: corpus/fuzz_gguf/ (tests/fuzz/make_gguf_seeds.py).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "server/model/gguf.h"
#include "server/model/gguf_loader.h"
#include "server/model/gguf_tokenizer.h"
#include "tests/fuzz/fuzz_tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrag;
  absl::StatusOr<model::GgufFile> file = model::GgufFile::Parse(nullptr, data, size, "fuzz.gguf");
  if (!file.ok()) {
    fuzz::CheckInputError(file.status(), "GgufFile::Parse");
    return 0;
  }

  // Every metadata value through the typed getters (a type mismatch is a Status, not a crash).
  for (const auto& [key, value] : file->metadata()) {
    fuzz::CheckInputError(file->GetString(key).status(), "GetString");
    fuzz::CheckInputError(file->GetUint(key).status(), "GetUint");
    fuzz::CheckInputError(file->GetInt(key).status(), "GetInt");
    fuzz::CheckInputError(file->GetFloat(key).status(), "GetFloat");
    fuzz::CheckInputError(file->GetBool(key).status(), "GetBool");
    fuzz::CheckInputError(file->GetStringArray(key).status(), "GetStringArray");
    fuzz::CheckInputError(file->GetIntArray(key).status(), "GetIntArray");
    fuzz::CheckInputError(file->GetFloatArray(key).status(), "GetFloatArray");
  }

  // Every tensor dequantizes (or is refused with UNIMPLEMENTED); its size is bounded by the input's.
  std::vector<float> out;
  for (const model::GgufTensorInfo& t : file->tensors()) {
    if (!t.type->dequantizable) {
      fuzz::CheckInputError(file->Dequantize(t).status(), "Dequantize");
      continue;
    }
    out.resize(static_cast<size_t>(t.numel));
    fuzz::CheckInputError(file->DequantizeInto(t, out.data()), "DequantizeInto");
  }

  // The loader and the tokenizer on whatever the metadata claims.
  fuzz::CheckInputError(model::LoadGgufModel(*file).status(), "LoadGgufModel");
  absl::StatusOr<std::unique_ptr<model::Tokenizer>> tok = model::LoadGgufTokenizer(*file);
  if (!tok.ok()) {
    fuzz::CheckInputError(tok.status(), "LoadGgufTokenizer");
    return 0;
  }
  fuzz::CheckEncodeDecode(**tok, "Hello, world! 123 <|im_start|> \xe4\xb8\x96", {.add_bos = true, .parse_special = true});
  fuzz::CheckEncodeDecode(**tok, "  \n\t<s></s>\xf0\x9f\x98\x80 ab");
  return 0;
}
