#include "server/model/wordpiece_tokenizer.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/ustring.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/model/json_util.h"
#include "server/model/utf8.h"

namespace qrag::model {
namespace {

// A code point of the normalized text with the byte range of the original code point it came from.
struct NormChar {
  char32_t cp;
  uint32_t begin;
  uint32_t end;
};

bool IsBertWhitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || u_isUWhiteSpace(static_cast<UChar32>(c));
}

bool IsBertControl(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  const int8_t t = u_charType(static_cast<UChar32>(c));
  return t == U_CONTROL_CHAR || t == U_FORMAT_CHAR || t == U_SURROGATE || t == U_PRIVATE_USE_CHAR ||
         t == U_UNASSIGNED;
}

bool IsBertPunctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  const int8_t t = u_charType(static_cast<UChar32>(c));
  return t == U_CONNECTOR_PUNCTUATION || t == U_DASH_PUNCTUATION || t == U_START_PUNCTUATION ||
         t == U_END_PUNCTUATION || t == U_INITIAL_PUNCTUATION || t == U_FINAL_PUNCTUATION ||
         t == U_OTHER_PUNCTUATION;
}

// The CJK Unified Ideograph blocks of BERT's _is_chinese_char.
bool IsCjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Appends the code points of `src` (UTF-16) to `out`, each carrying [begin, end).
void AppendUtf16(const UChar* src, int32_t len, uint32_t begin, uint32_t end, std::vector<NormChar>* out) {
  for (int32_t i = 0; i < len;) {
    UChar32 c;
    U16_NEXT(src, i, len, c);
    out->push_back({static_cast<char32_t>(c), begin, end});
  }
}

// The full lower-case mapping of one code point (as Rust's char::to_lowercase, no context).
void AppendLower(char32_t c, uint32_t begin, uint32_t end, std::vector<NormChar>* out) {
  if (c < 0x80) {
    out->push_back({c >= 'A' && c <= 'Z' ? c + 32 : c, begin, end});
    return;
  }
  UChar src[2];
  int32_t src_len = 0;
  U16_APPEND_UNSAFE(src, src_len, static_cast<UChar32>(c));
  UChar dst[8];
  UErrorCode err = U_ZERO_ERROR;
  const int32_t n = u_strToLower(dst, 8, src, src_len, "", &err);
  if (U_FAILURE(err) || n > 8) {
    out->push_back({c, begin, end});
    return;
  }
  AppendUtf16(dst, n, begin, end, out);
}

}  // namespace

absl::Status WordPieceTokenizer::Init(std::vector<std::string> tokens, const WordPieceOptions& options,
                                      const std::string& source) {
  options_ = options;
  tokens_ = std::move(tokens);
  ids_.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (!ids_.emplace(tokens_[i], static_cast<int32_t>(i)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": duplicate token '", tokens_[i], "' at id ", i, " (first at ", ids_[tokens_[i]], ")"));
    }
  }
  auto special = [&](const char* name, int32_t* id) -> absl::Status {
    auto it = ids_.find(name);
    if (it == ids_.end()) return absl::InvalidArgumentError(absl::StrCat(source, ": vocabulary lacks ", name));
    *id = it->second;
    return absl::OkStatus();
  };
  QRAG_RETURN_IF_ERROR(special("[UNK]", &unk_id_));
  QRAG_RETURN_IF_ERROR(special("[CLS]", &cls_id_));
  QRAG_RETURN_IF_ERROR(special("[SEP]", &sep_id_));
  QRAG_RETURN_IF_ERROR(special("[PAD]", &pad_id_));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> WordPieceTokenizer::FromVocabFile(const std::string& path,
                                                                                     const WordPieceOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read WordPiece vocabulary ", path));
  std::vector<std::string> tokens;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    tokens.push_back(line);
  }
  if (tokens.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": empty vocabulary"));
  std::unique_ptr<WordPieceTokenizer> t(new WordPieceTokenizer());
  QRAG_RETURN_IF_ERROR(t->Init(std::move(tokens), options, path));
  return t;
}

absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> WordPieceTokenizer::FromTokenizerJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  QRAG_ASSIGN_OR_RETURN(nlohmann::json j, ParseJson(ss.str(), path));
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object() ||
      j["model"].value("type", std::string()) != "WordPiece") {
    return absl::UnimplementedError(absl::StrCat(path, ": model type is not WordPiece"));
  }
  const nlohmann::json& model = j["model"];
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": model.vocab missing or not an object"));
  }
  std::vector<std::string> tokens(model["vocab"].size());
  for (const auto& [tok, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= static_cast<int64_t>(tokens.size())) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": vocab id of '", tok, "' out of range"));
    }
    tokens[id.get<int64_t>()] = tok;
  }
  WordPieceOptions options;
  if (model.contains("max_input_chars_per_word") && model["max_input_chars_per_word"].is_number_integer()) {
    options.max_input_chars_per_word = model["max_input_chars_per_word"].get<int>();
  }
  if (j.contains("normalizer") && j["normalizer"].is_object()) {
    const nlohmann::json& n = j["normalizer"];
    if (n.value("type", std::string()) != "BertNormalizer") {
      return absl::UnimplementedError(absl::StrCat(path, ": normalizer ", n.value("type", std::string("?")),
                                                   " is not supported (BertNormalizer only)"));
    }
    options.lowercase = n.value("lowercase", true);
    options.clean_text = n.value("clean_text", true);
    options.handle_chinese_chars = n.value("handle_chinese_chars", true);
    options.strip_accents = n.contains("strip_accents") && n["strip_accents"].is_boolean()
                                ? n["strip_accents"].get<bool>()
                                : options.lowercase;
  }
  std::unique_ptr<WordPieceTokenizer> t(new WordPieceTokenizer());
  QRAG_RETURN_IF_ERROR(t->Init(std::move(tokens), options, path));
  return t;
}

absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> WordPieceTokenizer::FromDirectory(const std::string& dir) {
  namespace fs = std::filesystem;
  if (fs::exists(fs::path(dir) / "tokenizer.json")) return FromTokenizerJson((fs::path(dir) / "tokenizer.json").string());
  const std::string vocab = (fs::path(dir) / "vocab.txt").string();
  if (!fs::exists(vocab)) {
    return absl::NotFoundError(absl::StrCat(dir, ": no tokenizer.json or vocab.txt for the WordPiece tokenizer"));
  }
  WordPieceOptions options;
  const fs::path config = fs::path(dir) / "tokenizer_config.json";
  if (fs::exists(config)) {
    std::ifstream in(config);
    std::stringstream ss;
    ss << in.rdbuf();
    QRAG_ASSIGN_OR_RETURN(nlohmann::json j, ParseJson(ss.str(), config.string()));
    if (j.is_object()) {
      options.lowercase = j.value("do_lower_case", true);
      options.strip_accents =
          j.contains("strip_accents") && j["strip_accents"].is_boolean() ? j["strip_accents"].get<bool>() : options.lowercase;
    }
  }
  return FromVocabFile(vocab, options);
}

void WordPieceTokenizer::WordToPieces(std::string_view word, int num_chars, uint32_t begin, uint32_t end,
                                      std::vector<WordPieceToken>* out) const {
  if (num_chars > options_.max_input_chars_per_word) {
    out->push_back({unk_id_, begin, end});
    return;
  }
  const size_t first = out->size();
  size_t start = 0;
  std::string candidate;
  while (start < word.size()) {
    size_t stop = word.size();
    int32_t found = -1;
    while (stop > start) {
      candidate.clear();
      if (start > 0) candidate = "##";
      candidate.append(word.substr(start, stop - start));
      auto it = ids_.find(candidate);
      if (it != ids_.end()) {
        found = it->second;
        break;
      }
      // Step back one code point.
      do {
        --stop;
      } while (stop > start && (static_cast<uint8_t>(word[stop]) & 0xC0) == 0x80);
    }
    if (found < 0) {
      out->resize(first);
      out->push_back({unk_id_, begin, end});
      return;
    }
    out->push_back({found, begin, end});
    start = stop;
  }
}

absl::StatusOr<std::vector<WordPieceToken>> WordPieceTokenizer::Tokenize(std::string_view text) const {
  QRAG_RETURN_IF_ERROR(CheckUtf8(text, "text"));
  const icu::Normalizer2* nfd = nullptr;
  if (options_.strip_accents) {
    UErrorCode err = U_ZERO_ERROR;
    nfd = icu::Normalizer2::getNFDInstance(err);
    if (U_FAILURE(err)) return absl::InternalError("ICU NFD normalizer unavailable");
  }
  // 1. Normalize, keeping each code point's origin.
  std::vector<NormChar> norm;
  norm.reserve(text.size());
  std::vector<NormChar> stage;
  for (size_t pos = 0; pos < text.size();) {
    const uint32_t begin = static_cast<uint32_t>(pos);
    const char32_t c = DecodeUtf8At(text, &pos);
    const uint32_t end = static_cast<uint32_t>(pos);
    if (options_.clean_text) {
      if (c == 0 || c == 0xFFFD || IsBertControl(c)) continue;
      if (IsBertWhitespace(c)) {
        norm.push_back({' ', begin, end});
        continue;
      }
    }
    if (options_.handle_chinese_chars && IsCjk(c)) {
      norm.push_back({' ', begin, begin});
      norm.push_back({c, begin, end});
      norm.push_back({' ', end, end});
      continue;
    }
    stage.clear();
    if (nfd != nullptr && c >= 0x80) {
      UErrorCode err = U_ZERO_ERROR;
      const icu::UnicodeString d = nfd->normalize(icu::UnicodeString(static_cast<UChar32>(c)), err);
      if (U_FAILURE(err)) return absl::InternalError("ICU NFD normalization failed");
      for (int32_t i = 0; i < d.length();) {
        const UChar32 dc = d.char32At(i);
        i += U16_LENGTH(dc);
        if (u_charType(dc) == U_NON_SPACING_MARK) continue;
        stage.push_back({static_cast<char32_t>(dc), begin, end});
      }
    } else {
      stage.push_back({c, begin, end});
    }
    for (const NormChar& s : stage) {
      if (options_.lowercase) {
        AppendLower(s.cp, s.begin, s.end, &norm);
      } else {
        norm.push_back(s);
      }
    }
  }
  // 2. Pre-tokenize into words; 3. WordPiece each word.
  std::vector<WordPieceToken> out;
  std::string word;
  int word_chars = 0;
  uint32_t word_begin = 0, word_end = 0;
  auto flush = [&]() {
    if (word_chars > 0) WordToPieces(word, word_chars, word_begin, word_end, &out);
    word.clear();
    word_chars = 0;
  };
  for (const NormChar& n : norm) {
    if (IsBertWhitespace(n.cp)) {
      flush();
      continue;
    }
    if (IsBertPunctuation(n.cp)) {
      flush();
      std::string p;
      AppendUtf8(n.cp, &p);
      WordToPieces(p, 1, n.begin, n.end, &out);
      continue;
    }
    if (word_chars == 0) word_begin = n.begin;
    word_end = n.end;
    AppendUtf8(n.cp, &word);
    ++word_chars;
  }
  flush();
  return out;
}

absl::StatusOr<std::vector<int32_t>> WordPieceTokenizer::Encode(std::string_view text) const {
  QRAG_ASSIGN_OR_RETURN(std::vector<WordPieceToken> tokens, Tokenize(text));
  std::vector<int32_t> ids;
  ids.reserve(tokens.size());
  for (const WordPieceToken& t : tokens) ids.push_back(t.id);
  return ids;
}

}  // namespace qrag::model
