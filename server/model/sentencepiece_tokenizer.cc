#include "server/model/sentencepiece_tokenizer.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "server/common/mapped_file.h"
#include "server/common/status.h"
#include "server/model/sentencepiece_shim.h"
#include "server/model/utf8.h"

namespace qrag::model {
namespace {

constexpr absl::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 "▁"

absl::Status ToStatus(const internal::SpStatus& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.code), absl::StrCat(context, ": ", s.message));
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer() = default;
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Load(
    const std::string& path) {
  QRAG_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  return FromBytes(bytes, path);
}

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::FromBytes(
    std::string_view bytes, const std::string& source) {
  auto tok = std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer());
  tok->source_ = source;
  tok->sp_ = std::make_unique<internal::SentencePieceShim>();
  const internal::SpStatus loaded = tok->sp_->LoadFromSerializedProto(bytes);
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a valid SentencePiece model: ", loaded.message));
  }
  const internal::SentencePieceShim& sp = *tok->sp_;
  const int n = sp.PieceSize();
  if (n <= 0) return absl::InvalidArgumentError(absl::StrCat(source, ": SentencePiece model has no pieces"));
  tok->kinds_.resize(n, PieceKind::kNormal);
  tok->surfaces_.resize(n);
  int first_spaced_piece = -1;
  for (int id = 0; id < n; ++id) {
    const std::string piece = sp.IdToPiece(id);
    if (sp.IsControl(id)) {
      tok->kinds_[id] = PieceKind::kControl;
    } else if (sp.IsUnknown(id)) {
      tok->kinds_[id] = PieceKind::kUnknown;
    } else if (sp.IsByte(id)) {
      // Byte pieces are spelled <0xXX> (SentencePiece's ByteToPiece).
      const int hi = piece.size() == 6 ? HexDigit(piece[3]) : -1;
      const int lo = piece.size() == 6 ? HexDigit(piece[4]) : -1;
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": byte piece ", id, " is spelled '", piece, "', not <0xXX>"));
      }
      tok->kinds_[id] = PieceKind::kByte;
      tok->surfaces_[id] = std::string(1, static_cast<char>(hi * 16 + lo));
    } else {
      // A piece like "▁the" (not "▁▁", whose decoding keeps a space either way).
      if (first_spaced_piece < 0 && piece.size() > kSpaceSymbol.size() &&
          absl::StartsWith(piece, kSpaceSymbol) &&
          !absl::StartsWith(absl::string_view(piece).substr(kSpaceSymbol.size()), kSpaceSymbol)) {
        first_spaced_piece = id;
      }
      tok->surfaces_[id] = absl::StrReplaceAll(piece, {{kSpaceSymbol, " "}});
    }
  }
  // Whether the library drops the dummy-prefix space depends on the model's normalizer spec, which the
  // public API does not expose: ask the library how it decodes one such piece.
  if (first_spaced_piece >= 0) {
    std::string text;
    QRAG_RETURN_IF_ERROR(ToStatus(sp.Decode({first_spaced_piece}, &text), source));
    tok->strip_dummy_prefix_ = text.empty() || text[0] != ' ';
  }
  if (sp.unk_id() >= 0) {
    QRAG_RETURN_IF_ERROR(ToStatus(sp.Decode({sp.unk_id()}, &tok->unk_surface_), source));
  }
  if (sp.bos_id() >= 0) tok->bos_id_ = sp.bos_id();
  if (sp.eos_id() >= 0) tok->eos_ids_.push_back(sp.eos_id());
  return tok;
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(std::string_view text,
                                                                    const EncodeOptions& options) const {
  QRAG_RETURN_IF_ERROR(CheckUtf8(text, "sentencepiece tokenizer: Encode"));
  std::vector<int> ids;
  QRAG_RETURN_IF_ERROR(ToStatus(sp_->Encode(text, &ids), absl::StrCat(source_, ": Encode")));
  std::vector<int32_t> out;
  out.reserve(ids.size() + 1);
  if (options.add_bos && bos_id_.has_value()) out.push_back(*bos_id_);
  out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

absl::StatusOr<std::string> SentencePieceTokenizer::Decode(absl::Span<const int32_t> ids) const {
  const int32_t n = vocab_size();
  std::string out;
  // The library's rule (sentencepiece_processor.cc, Decode): the dummy-prefix space is dropped from the
  // first non-byte piece as long as nothing visible has been produced before it.
  bool expect_dummy_prefix = strip_dummy_prefix_;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= n) {
      return absl::InvalidArgumentError(absl::StrCat("sentencepiece tokenizer: Decode: id ", id,
                                                     " at position ", i, " is outside [0, ", n, ")"));
    }
    switch (kinds_[id]) {
      case PieceKind::kByte:
        out.append(surfaces_[id]);
        break;
      case PieceKind::kControl:
        if (!out.empty()) expect_dummy_prefix = false;
        break;
      case PieceKind::kUnknown:
        out.append(unk_surface_);
        expect_dummy_prefix = false;
        break;
      case PieceKind::kNormal: {
        if (!out.empty()) expect_dummy_prefix = false;
        std::string_view s = surfaces_[id];
        if (expect_dummy_prefix && !s.empty() && s[0] == ' ') s.remove_prefix(1);
        if (expect_dummy_prefix && (!s.empty() || surfaces_[id].size() != s.size())) {
          expect_dummy_prefix = false;  // a space was consumed or text was produced
        }
        out.append(s);
        break;
      }
    }
  }
  return out;
}

absl::StatusOr<std::string> SentencePieceTokenizer::LibraryDecode(absl::Span<const int32_t> ids) const {
  std::string text;
  QRAG_RETURN_IF_ERROR(ToStatus(sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &text),
                                absl::StrCat(source_, ": Decode")));
  return text;
}

}  // namespace qrag::model
