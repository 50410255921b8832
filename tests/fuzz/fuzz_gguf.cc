// libFuzzer entry point for the GGUF reader (server/model/gguf.h) and everything that reads a parsed file:
// the metadata getters, the dequantization of every tensor (quant/gguf_blocks.h), the model loader
// (gguf_loader.h) and the tokenizer (gguf_tokenizer.h). The bytes are parsed straight from the fuzzer's
// buffer (GgufFile::Parse), no temporary file.
//
// Any input must give a Status or a result, never a crash, an out-of-bounds read (AddressSanitizer), UB
// (UndefinedBehaviorSanitizer) or an allocation far beyond the input's size. Seeds: corpus/fuzz_gguf/
// (written by make_gguf_seeds.py).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "server/model/gguf.h"
#include "server/model/gguf_loader.h"
#include "server/model/gguf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using qrag::model::GgufFile;
  absl::StatusOr<GgufFile> file = GgufFile::Parse(nullptr, data, size, "fuzz.gguf");
  if (!file.ok()) return 0;

  // Every metadata value through the typed getters (each type mismatch is a Status, not a crash).
  for (const auto& [key, value] : file->metadata()) {
    (void)file->GetString(key);
    (void)file->GetUint(key);
    (void)file->GetInt(key);
    (void)file->GetFloat(key);
    (void)file->GetBool(key);
    (void)file->GetStringArray(key);
    (void)file->GetIntArray(key);
    (void)file->GetFloatArray(key);
  }

  // Every tensor: its data lies inside the buffer and dequantizes (or is refused with UNIMPLEMENTED).
  std::vector<float> out;
  for (const qrag::model::GgufTensorInfo& t : file->tensors()) {
    if (!t.type->dequantizable) {
      (void)file->Dequantize(t);
      continue;
    }
    out.resize(static_cast<size_t>(t.numel));
    (void)file->DequantizeInto(t, out.data());
  }

  // The loader and the tokenizer on whatever the metadata claims.
  (void)qrag::model::LoadGgufModel(*file);
  absl::StatusOr<std::unique_ptr<qrag::model::Tokenizer>> tok = qrag::model::LoadGgufTokenizer(*file);
  if (tok.ok()) {
    absl::StatusOr<std::vector<int32_t>> ids =
        (*tok)->Encode("Hello, world! 123 <|im_start|>", {.add_bos = true, .parse_special = true});
    if (ids.ok()) (void)(*tok)->Decode(*ids);
  }
  return 0;
}
