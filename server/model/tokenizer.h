// The tokenizer interface and the loader that picks an implementation from the files present.
//
// Implementations: llama2.c `tokenizer.bin` (score-driven BPE merges, byte fallback), SentencePiece
// `.model` (Debian's libsentencepiece) and Hugging Face `tokenizer.json` byte-level BPE (GPT-2 / Llama-3 /
// Qwen2 / SmolLM style). All are immutable after loading and safe to use from several threads.
#ifndef QRAG_SERVER_MODEL_TOKENIZER_H_
#define QRAG_SERVER_MODEL_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace qrag::model {

// A half-open byte range [begin, end) of a text.
struct TextRange {
  size_t begin = 0;
  size_t end = 0;
};

struct EncodeOptions {
  bool add_bos = true;         // prepend the BOS id when the tokenizer has one
  bool parse_special = false;  // match special added tokens (e.g. "<|eot_id|>") written in the text;
                               // off for user text so a prompt cannot forge control tokens
  // With parse_special: when set, a special token's text is matched only where it lies wholly inside one of
  // these byte ranges (sorted, disjoint; e.g. the trusted spans of a rendered chat template); elsewhere it is
  // ordinary text. The text is still tokenized as one piece, so the ids equal those of a plain
  // parse_special encode whenever no special-token text occurs outside the ranges. Not owned.
  const std::vector<TextRange>* special_ranges = nullptr;
};

// Whether `options` lets a special token whose text is bytes [begin, end) of the encoded text match.
bool SpecialTokenAllowed(const EncodeOptions& options, size_t begin, size_t end);

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text` (UTF-8; invalid UTF-8 is INVALID_ARGUMENT). With add_bos, BOS comes first when
  // bos_id() is set. SentencePiece-style tokenizers add their dummy-prefix space themselves.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                                      const EncodeOptions& options) const = 0;

  // The bytes of `ids` joined, as the reference implementation detokenizes them: special/control tokens
  // (BOS, EOS) produce nothing; SentencePiece's leading dummy-prefix space of the first piece is dropped.
  // The result may end inside a UTF-8 sequence when the ids end inside one. Ids out of range are
  // INVALID_ARGUMENT.
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  // Ids that end generation (EOS, and e.g. <|eot_id|> for chat models).
  virtual std::vector<int32_t> eos_ids() const = 0;
  // "llama2c", "sentencepiece" or "hf-bpe".
  virtual std::string_view kind() const = 0;
};

// Loads a tokenizer file; the format is chosen by content and name: a GGUF file (its metadata,
// gguf_tokenizer.h), `tokenizer.json` (HF), a SentencePiece ModelProto (`*.model`), or a llama2.c tokenizer
// (`*.bin`). `vocab_size_hint` (> 0) is the model's vocab
// size: llama2.c tokenizer files do not record their own size.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path, int vocab_size_hint);

// Finds the tokenizer that belongs to a checkpoint: for a GGUF file, the file itself; for a Hugging Face
// directory, its tokenizer.json or
// tokenizer.model; for a llama2.c `.bin`, `tokenizer.bin`, `tok<vocab>.bin`, or a `tok<vocab>.model` /
// `tokenizer.model` next to it. NOT_FOUND lists what was looked for.
absl::StatusOr<std::string> FindTokenizerFor(const std::string& model_path, int vocab_size);

// Streams text out of a growing id sequence: Push returns the new complete UTF-8 text that the latest ids
// add, holding back an unfinished multi-byte character until it completes. Decoding is done on a short
// window of context ids so each call costs O(window), and space handling matches a full decode.
class IncrementalDecoder {
 public:
  // `context` are ids already emitted (e.g. the prompt); their text is not returned.
  IncrementalDecoder(const Tokenizer* tokenizer, absl::Span<const int32_t> context);
  absl::StatusOr<std::string> Push(int32_t id);
  // Text still held back (an incomplete UTF-8 sequence at the very end), with invalid bytes as U+FFFD.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // start of the context window in ids_
  size_t read_offset_ = 0;    // ids_[prefix_offset_, read_offset_) have been emitted
};

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_TOKENIZER_H_
