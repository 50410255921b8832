// A SentencePiece `.model` tokenizer through Debian's libsentencepiece.
//
// Encode is the library's (its normalizer, dummy prefix, model and byte fallback), with BOS prepended on
// request. SentencePiece never matches control symbols written in the text, so
// EncodeOptions::parse_special has no effect here (user-defined symbols always match, as in the library).
//
// Decode follows the library's detokenizer piece by piece: `▁` becomes a space, control pieces (BOS,
// EOS) produce nothing, `<unk>` produces the model's unknown surface (" ⁇ " by default), the first
// visible piece loses its dummy-prefix space when the model adds one, and byte pieces produce their raw
// byte. Unlike the library, byte sequences are not repaired: ids that end inside a UTF-8 character give
// text that ends inside it (IncrementalDecoder relies on that); for complete text the two agree.
//
// Immutable after loading; thread-safe.
#ifndef QRAG_SERVER_MODEL_SENTENCEPIECE_TOKENIZER_H_
#define QRAG_SERVER_MODEL_SENTENCEPIECE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/model/tokenizer.h"

namespace qrag::model {

namespace internal {
class SentencePieceShim;
}  // namespace internal

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // NOT_FOUND when `path` is missing; INVALID_ARGUMENT naming the file when it is not a ModelProto the
  // library accepts.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(const std::string& path);
  // The same from a serialized ModelProto; `source` names it in messages.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> FromBytes(std::string_view bytes,
                                                                           const std::string& source);
  ~SentencePieceTokenizer() override;

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              const EncodeOptions& options) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(kinds_.size()); }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  std::string_view kind() const override { return "sentencepiece"; }

  // The library's own Decode (invalid or unfinished byte sequences become U+FFFD), for cross-checks.
  absl::StatusOr<std::string> LibraryDecode(absl::Span<const int32_t> ids) const;

 private:
  enum class PieceKind : uint8_t { kNormal, kControl, kUnknown, kByte };

  SentencePieceTokenizer();

  std::string source_;
  std::unique_ptr<internal::SentencePieceShim> sp_;
  std::vector<PieceKind> kinds_;
  std::vector<std::string> surfaces_;  // kNormal: the piece with `▁` as ' '; kByte: the one raw byte
  std::string unk_surface_;
  bool strip_dummy_prefix_ = true;  // whether the first visible piece loses a leading space
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
};

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_SENTENCEPIECE_TOKENIZER_H_
