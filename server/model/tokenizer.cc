#include "server/model/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status.h"
#include "server/model/bpe_tokenizer.h"
#include "server/model/gguf.h"
#include "server/model/gguf_tokenizer.h"
#include "server/model/llama2c_tokenizer.h"
#include "server/model/sentencepiece_tokenizer.h"
#include "server/model/utf8.h"

namespace qrag::model {

bool SpecialTokenAllowed(const EncodeOptions& options, size_t begin, size_t end) {
  if (!options.parse_special) return false;
  if (options.special_ranges == nullptr) return true;
  const std::vector<TextRange>& r = *options.special_ranges;
  // The last range that starts at or before `begin` is the only one that can hold [begin, end).
  auto it = std::upper_bound(r.begin(), r.end(), begin, [](size_t b, const TextRange& t) { return b < t.begin; });
  if (it == r.begin()) return false;
  --it;
  return it->begin <= begin && end <= it->end;
}

namespace {

namespace fs = std::filesystem;

enum class Format { kHfJson, kSentencePiece, kLlama2c, kGguf, kUnknown };

// The first bytes of `path` (for content sniffing); empty when unreadable.
std::string Head(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string buf(n, '\0');
  in.read(buf.data(), static_cast<std::streamsize>(n));
  buf.resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  return buf;
}

// JSON text starts with '{' after optional whitespace; a llama2.c file could start with the byte '{'
// (max_token_length 123) but is then followed by NUL bytes.
bool LooksLikeJson(std::string_view head) {
  const size_t p = head.find_first_not_of(" \t\r\n");
  return p != std::string_view::npos && head[p] == '{' && head.find('\0') == std::string_view::npos;
}

Format DetectFormat(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  const std::string head = Head(path, 64);
  if (LooksLikeGguf(path)) return Format::kGguf;
  if (LooksLikeJson(head) || absl::EndsWith(name, ".json")) return Format::kHfJson;
  if (absl::EndsWith(name, ".model")) return Format::kSentencePiece;
  if (absl::EndsWith(name, ".bin")) return Format::kLlama2c;
  return Format::kUnknown;
}

absl::Status CheckAgainstModel(const Tokenizer& tok, const std::string& path, int vocab_size_hint) {
  if (vocab_size_hint > 0 && tok.vocab_size() > vocab_size_hint) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the tokenizer has ", tok.vocab_size(),
                                                   " ids but the model's vocab size is ", vocab_size_hint));
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<std::unique_ptr<Tokenizer>> Upcast(absl::StatusOr<std::unique_ptr<T>> t) {
  if (!t.ok()) return t.status();
  return std::unique_ptr<Tokenizer>(*std::move(t));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path, int vocab_size_hint) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) return absl::NotFoundError(absl::StrCat(path, ": tokenizer file not found"));
  std::string file = path;
  if (fs::is_directory(st)) {
    // A checkpoint directory: its tokenizer.json, else tokenizer.model.
    file.clear();
    for (const char* name : {"tokenizer.json", "tokenizer.model"}) {
      const std::string candidate = (fs::path(path) / name).string();
      if (fs::is_regular_file(candidate, ec)) {
        file = candidate;
        break;
      }
    }
    if (file.empty()) {
      return absl::NotFoundError(absl::StrCat(path, ": directory has no tokenizer.json or tokenizer.model"));
    }
  }

  absl::StatusOr<std::unique_ptr<Tokenizer>> tok;
  switch (DetectFormat(file)) {
    case Format::kHfJson:
      tok = Upcast(HfBpeTokenizer::Load(file));
      break;
    case Format::kSentencePiece:
      tok = Upcast(SentencePieceTokenizer::Load(file));
      break;
    case Format::kGguf: {
      QRAG_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::Open(file));
      tok = LoadGgufTokenizer(gguf);
      break;
    }
    case Format::kLlama2c:
      if (vocab_size_hint <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            file, ": a llama2.c tokenizer needs the model's vocab size (the file does not record it)"));
      }
      tok = Upcast(Llama2cTokenizer::Load(file, vocab_size_hint));
      break;
    case Format::kUnknown: {
      // No telling name: try SentencePiece (a protobuf), then llama2.c when the size is known.
      auto sp = SentencePieceTokenizer::Load(file);
      if (sp.ok()) {
        tok = Upcast(std::move(sp));
        break;
      }
      if (vocab_size_hint > 0) {
        auto l2 = Llama2cTokenizer::Load(file, vocab_size_hint);
        if (l2.ok()) {
          tok = Upcast(std::move(l2));
          break;
        }
        return absl::InvalidArgumentError(absl::StrCat(
            file, ": not a recognized tokenizer (", sp.status().message(), "; ", l2.status().message(), ")"));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          file,
          ": not a recognized tokenizer (expected tokenizer.json, a SentencePiece .model or a llama2.c "
          ".bin): ",
          sp.status().message()));
    }
  }
  if (!tok.ok()) return tok.status();
  QRAG_RETURN_IF_ERROR(CheckAgainstModel(**tok, file, vocab_size_hint));
  return tok;
}

absl::StatusOr<std::string> FindTokenizerFor(const std::string& model_path, int vocab_size) {
  std::error_code ec;
  std::vector<std::string> candidates;
  const fs::path p(model_path);
  // A GGUF file carries its own tokenizer.
  if (fs::is_regular_file(p, ec) && LooksLikeGguf(model_path)) return model_path;
  if (fs::is_directory(p, ec)) {
    candidates = {(p / "tokenizer.json").string(), (p / "tokenizer.model").string()};
  } else {
    const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
    // The size-specific llama2.c names first: a directory can hold several llama2.c models, and
    // tokenizer.bin is then the default (32000) tokenizer of the larger ones.
    if (vocab_size > 0) {
      candidates.push_back((dir / absl::StrCat("tok", vocab_size, ".bin")).string());
      candidates.push_back((dir / absl::StrCat("tok", vocab_size, ".model")).string());
    }
    for (const char* name : {"tokenizer.bin", "tokenizer.model", "tokenizer.json"}) {
      candidates.push_back((dir / name).string());
    }
  }
  for (const std::string& c : candidates) {
    if (fs::is_regular_file(c, ec)) return c;
  }
  return absl::NotFoundError(
      absl::StrCat("no tokenizer found for ", model_path, "; looked for ", absl::StrJoin(candidates, ", ")));
}

// ---------------------------------------------------------------------------------------------------
// IncrementalDecoder: the prefix/read offset scheme of Hugging Face text-generation-inference. The text
// of ids_[prefix_offset_, read_offset_) has been returned already; each Push decodes the window from
// prefix_offset_ with and without the unreturned ids and returns the difference once it ends on a
// complete character.

namespace {
constexpr size_t kContextWindow = 6;  // context ids decoded in front of the new ones
constexpr size_t kMaxBackoff = 16;    // how far back to look for a visible piece (see Push)
}  // namespace

IncrementalDecoder::IncrementalDecoder(const Tokenizer* tokenizer, absl::Span<const int32_t> context)
    : tokenizer_(tokenizer), ids_(context.begin(), context.end()) {
  read_offset_ = ids_.size();
  prefix_offset_ = read_offset_ > kContextWindow ? read_offset_ - kContextWindow : 0;
}

absl::StatusOr<std::string> IncrementalDecoder::Push(int32_t id) {
  ids_.push_back(id);
  auto decode = [&](size_t from, size_t to) {
    return tokenizer_->Decode(absl::MakeConstSpan(ids_.data() + from, to - from));
  };
  absl::StatusOr<std::string> prefix = decode(prefix_offset_, read_offset_);
  // A window whose already-returned part shows nothing (e.g. only BOS/EOS, or a lone space the window
  // start strips) would make the new piece the first visible one, and SentencePiece-style decoders drop
  // a leading space there. Widen the window until the returned part is visible, as in the full decode.
  for (size_t k = 0; prefix.ok() && prefix->empty() && prefix_offset_ > 0 && k < kMaxBackoff; ++k) {
    --prefix_offset_;
    prefix = decode(prefix_offset_, read_offset_);
  }
  absl::StatusOr<std::string> full =
      prefix.ok() ? decode(prefix_offset_, ids_.size()) : absl::StatusOr<std::string>(prefix.status());
  if (!full.ok()) {
    ids_.pop_back();  // e.g. an id out of range: leave the stream as it was
    return full.status();
  }
  if (full->size() < prefix->size() || full->compare(0, prefix->size(), *prefix) != 0) {
    ids_.pop_back();
    return absl::InternalError(absl::StrCat(std::string(tokenizer_->kind()),
                                            " tokenizer: decoding is not prefix-stable at id ", id));
  }
  std::string_view added = std::string_view(*full).substr(prefix->size());
  if (added.empty() || IncompleteUtf8Suffix(added) > 0) return std::string();  // wait for more ids
  std::string text = ReplaceInvalidUtf8(added);
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return text;
}

std::string IncrementalDecoder::Flush() {
  auto prefix =
      tokenizer_->Decode(absl::MakeConstSpan(ids_.data() + prefix_offset_, read_offset_ - prefix_offset_));
  auto full =
      tokenizer_->Decode(absl::MakeConstSpan(ids_.data() + prefix_offset_, ids_.size() - prefix_offset_));
  prefix_offset_ = read_offset_ = ids_.size();
  if (!prefix.ok() || !full.ok() || full->size() < prefix->size()) return std::string();
  return ReplaceInvalidUtf8(std::string_view(*full).substr(prefix->size()));
}

}  // namespace qrag::model
