// A thin wrapper over Debian's libsentencepiece that keeps its header out of every other translation unit.
//
// Why: sentencepiece_processor.h declares `namespace absl { using std::string_view; }`, which collides
// with Debian's Abseil (whose absl::string_view is its own class), so no file may include both. This
// header uses only the standard library; sentencepiece_shim.cc is the one file that includes
// sentencepiece_processor.h, and it includes no Abseil header.
//
// Errors are returned as (code, message) with absl::StatusCode numbering, which SentencePiece shares.
// Immutable after loading; the const methods are safe to call from several threads.
#ifndef QRAG_SERVER_MODEL_SENTENCEPIECE_SHIM_H_
#define QRAG_SERVER_MODEL_SENTENCEPIECE_SHIM_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}  // namespace sentencepiece

namespace qrag::model::internal {

struct SpStatus {
  int code = 0;  // 0 = OK; otherwise an absl::StatusCode value
  std::string message;
  bool ok() const { return code == 0; }
};

class SentencePieceShim {
 public:
  SentencePieceShim();
  ~SentencePieceShim();
  SentencePieceShim(const SentencePieceShim&) = delete;
  SentencePieceShim& operator=(const SentencePieceShim&) = delete;

  // Parses a serialized ModelProto (the content of a `.model` file).
  SpStatus LoadFromSerializedProto(std::string_view bytes);

  // The library's own encoding (normalization, dummy prefix, BPE/unigram, byte fallback); no BOS/EOS.
  SpStatus Encode(std::string_view text, std::vector<int>* ids) const;
  // The library's own detokenization (invalid byte sequences become U+FFFD).
  SpStatus Decode(const std::vector<int>& ids, std::string* text) const;

  int PieceSize() const;
  std::string IdToPiece(int id) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  bool IsByte(int id) const;
  int bos_id() const;  // -1 when the model has none
  int eos_id() const;
  int unk_id() const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace qrag::model::internal

#endif  // QRAG_SERVER_MODEL_SENTENCEPIECE_SHIM_H_
