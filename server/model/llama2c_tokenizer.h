// The llama2.c `tokenizer.bin` tokenizer (karpathy/llama2.c run.c), bit-for-bit.
//
// File format (little-endian): int32 max_token_length, then for each of vocab_size ids: float32 score,
// int32 byte length, the piece bytes. The vocab size is not stored: it comes from the model header.
// Conventions of the files exported by llama2.c's tokenizer.py: id 0 `<unk>`, 1 BOS, 2 EOS, 3..258 the
// byte-fallback pieces `<0x00>`..`<0xFF>`, SentencePiece's `▁` stored as a plain space.
//
// Encode is run.c's `encode()`: a dummy-prefix space for non-empty text, one piece per UTF-8 code point
// (or its bytes as ids byte+3 when the code point is not a piece), then repeatedly the adjacent pair whose
// concatenation is a piece with the highest score is merged (the leftmost one on ties). Decode is run.c's
// `decode()`: the first piece of the sequence and a piece right after BOS lose a leading space, `<0xXX>`
// pieces are raw bytes, BOS and EOS produce nothing (other pieces, `<unk>` included, are their text).
//
// Immutable after loading; thread-safe.
#ifndef QRAG_SERVER_MODEL_LLAMA2C_TOKENIZER_H_
#define QRAG_SERVER_MODEL_LLAMA2C_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/model/tokenizer.h"

namespace qrag::model {

class Llama2cTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kBosId = 1;
  static constexpr int32_t kEosId = 2;
  static constexpr int32_t kByteFallbackOffset = 3;  // id of byte b is b + 3
  // The largest max_token_length accepted (real files: 7 for tok512, 27 for Llama 2).
  static constexpr int32_t kMaxTokenLengthLimit = 1 << 16;

  // Reads `path` as a tokenizer with exactly `vocab_size` pieces. NOT_FOUND when the file is missing;
  // INVALID_ARGUMENT naming the file, the byte offset and the id for a truncated file, a negative or
  // oversized length, a NaN score, trailing bytes (usually a wrong vocab size) or a vocab too small for
  // byte fallback (< 259).
  static absl::StatusOr<std::unique_ptr<Llama2cTokenizer>> Load(const std::string& path, int vocab_size);
  // The same from the file's bytes; `source` names them in messages.
  static absl::StatusOr<std::unique_ptr<Llama2cTokenizer>> FromBytes(std::string_view bytes, int vocab_size,
                                                                     const std::string& source);

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              const EncodeOptions& options) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  std::optional<int32_t> bos_id() const override { return kBosId; }
  std::vector<int32_t> eos_ids() const override { return {kEosId}; }
  std::string_view kind() const override { return "llama2c"; }

  // The stored piece and score of `id` (0 <= id < vocab_size()).
  const std::string& piece(int32_t id) const { return pieces_[id]; }
  float score(int32_t id) const { return scores_[id]; }
  int32_t max_token_length() const { return max_token_length_; }

 private:
  Llama2cTokenizer() = default;

  // The id of the piece spelled `text`, or -1 (run.c's str_lookup; the lowest id on duplicates).
  int32_t Lookup(std::string_view text) const;
  // run.c's merge loop over `tokens`, done with a heap so long inputs stay O(n log n).
  void MergePairs(std::vector<int32_t>* tokens) const;

  int32_t max_token_length_ = 0;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<int16_t> byte_value_;  // the byte of a `<0xXX>` piece, else -1
  absl::flat_hash_map<std::string, int32_t> piece_to_id_;
};

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_LLAMA2C_TOKENIZER_H_
