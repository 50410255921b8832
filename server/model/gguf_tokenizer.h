// The tokenizer stored in a GGUF file's metadata (`tokenizer.ggml.*`), built on the project's tokenizers:
//
//  - `tokenizer.ggml.model` = "gpt2": byte-level BPE (tokens + merges) through HfBpeTokenizer, with the
//    pre-tokenizer llama.cpp (src/llama-vocab.cpp) uses for `tokenizer.ggml.pre`: default (or absent),
//    gpt2 / gpt-2, llama3 / llama-v3 / llama-bpe (whole words in the vocab are not merged: ignore_merges),
//    qwen2, smollm (every digit alone). Each is a list of regexes applied one after the other, each
//    isolating its matches (HfBpeTokenizer's Split steps), then ByteLevel without a prefix space.
//  - "llama": SentencePiece-style BPE over `tokens` with `scores` (SpmTokenizer: the pair whose merge has the
//    highest score first, byte fallback to `<0xXX>` pieces, a "▁" prefix when add_space_prefix).
//
// Token types (`tokenizer.ggml.token_type`, llama.cpp's llama_token_type): 1 normal, 2 unknown, 3 control,
// 4 user-defined, 5 unused, 6 byte. As in llama.cpp, the text of control and unknown tokens is matched as
// that token only with EncodeOptions::parse_special (a chat template's `<|im_start|>`), never in user
// text; user-defined tokens are always matched. Decode drops control tokens and prints user-defined ones.
// Special ids: bos/eos/eot/eom/pad/unk from tokenizer.ggml.*_token_id; eos_ids() = eos, eot, eom.
// add_bos from tokenizer.ggml.add_bos_token (default: true for llama3 and llama, else false);
// add_eos_token = true is honoured by the llama model and UNIMPLEMENTED for gpt2.
//
// Errors name the file and the key: INVALID_ARGUMENT for missing or malformed keys (tokens, merges, scores
// of another length, ids out of range; for "llama", a token that is not UTF-8 or appears twice),
// UNIMPLEMENTED for another tokenizer model or pre-tokenizer. Encode with a "llama" vocabulary that
// libsentencepiece accepted but cannot encode with (its internal checks fail) is INVALID_ARGUMENT.
#ifndef QRAG_SERVER_MODEL_GGUF_TOKENIZER_H_
#define QRAG_SERVER_MODEL_GGUF_TOKENIZER_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/model/gguf.h"
#include "server/model/tokenizer.h"

namespace qrag::model {

// llama.cpp's token types.
enum class GgufTokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// The special ids a GGUF names (nullopt when absent).
struct GgufSpecialTokens {
  std::optional<int32_t> bos, eos, eot, eom, pad, unk;
  bool add_bos = false;
  bool add_eos = false;
};

// The special ids and add_bos/add_eos of `file` (defaults as above). INVALID_ARGUMENT naming the key for an id
// outside [0, vocab_size).
absl::StatusOr<GgufSpecialTokens> ReadGgufSpecialTokens(const GgufFile& file, int32_t vocab_size);

// The tokenizer of `file`.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const GgufFile& file);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_GGUF_TOKENIZER_H_
