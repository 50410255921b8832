// The only translation unit that includes sentencepiece_processor.h; it must not include any Abseil
// header (see sentencepiece_shim.h).
#include "server/model/sentencepiece_shim.h"

#include <sentencepiece_processor.h>

namespace qrag::model::internal {
namespace {

SpStatus FromSp(const sentencepiece::util::Status& s) {
  if (s.ok()) return {};
  return {static_cast<int>(s.code()), s.message() != nullptr ? s.message() : ""};
}

}  // namespace

SentencePieceShim::SentencePieceShim()
    : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}

SentencePieceShim::~SentencePieceShim() = default;

SpStatus SentencePieceShim::LoadFromSerializedProto(std::string_view bytes) {
  return FromSp(processor_->LoadFromSerializedProto(bytes));
}

SpStatus SentencePieceShim::Encode(std::string_view text, std::vector<int>* ids) const {
  return FromSp(processor_->Encode(text, ids));
}

SpStatus SentencePieceShim::Decode(const std::vector<int>& ids, std::string* text) const {
  return FromSp(processor_->Decode(ids, text));
}

int SentencePieceShim::PieceSize() const { return processor_->GetPieceSize(); }
std::string SentencePieceShim::IdToPiece(int id) const { return processor_->IdToPiece(id); }
bool SentencePieceShim::IsControl(int id) const { return processor_->IsControl(id); }
bool SentencePieceShim::IsUnknown(int id) const { return processor_->IsUnknown(id); }
bool SentencePieceShim::IsByte(int id) const { return processor_->IsByte(id); }
int SentencePieceShim::bos_id() const { return processor_->bos_id(); }
int SentencePieceShim::eos_id() const { return processor_->eos_id(); }
int SentencePieceShim::unk_id() const { return processor_->unk_id(); }

}  // namespace qrag::model::internal
