#include "server/model/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <queue>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "server/common/mapped_file.h"
#include "server/common/status.h"
#include "server/model/json_util.h"
#include "server/model/utf8.h"

namespace qrag::model {
namespace {

using nlohmann::json;

// GPT-2's pre-tokenization pattern, as compiled into the `tokenizers` ByteLevel pre-tokenizer.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ---------------------------------------------------------------------------------------------------
// PCRE2 regex (RAII). Compiled once with UTF + UCP so \p{L}, \s, \w and (?i:...) behave as Oniguruma's
// Unicode mode in `tokenizers`; JIT-compiled when available. Matching allocates its own match data, so
// one Regex serves many threads.
class Regex {
 public:
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern, const std::string& what) {
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &error, &error_offset, nullptr);
    if (code == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": regex does not compile at offset ", error_offset, ": ", ErrorMessage(error)));
    }
    // JIT is an optimization only: when it is unavailable pcre2_match interprets the pattern.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    return std::unique_ptr<Regex>(new Regex(code));
  }

  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [begin, end) byte ranges of the successive non-overlapping, non-empty matches in `text`
  // (well-formed UTF-8). An empty match moves the search on by one character, as Oniguruma's find_iter.
  absl::Status FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    if (md == nullptr) return absl::ResourceExhaustedError("regex: out of memory");
    absl::Status status;
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t offset = 0;
    while (offset <= text.size()) {
      int rc = pcre2_match(code_, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        rc = pcre2_match(code_, subject, text.size(), offset, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
      }
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        status = absl::InvalidArgumentError(
            absl::StrCat("regex matching failed at byte ", offset, ": ", ErrorMessage(rc)));
        break;
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t begin = ov[0], end = ov[1];
      if (end > begin) {
        out->emplace_back(begin, end);
        offset = end;
      } else {
        if (begin >= text.size()) break;
        offset = begin + std::max(1, Utf8SequenceLength(static_cast<uint8_t>(text[begin])));
      }
    }
    pcre2_match_data_free(md);
    return status;
  }

 private:
  explicit Regex(pcre2_code* code) : code_(code) {}

  static std::string ErrorMessage(int error) {
    PCRE2_UCHAR buf[256];
    if (pcre2_get_error_message(error, buf, sizeof(buf)) < 0) return absl::StrCat("error ", error);
    return std::string(reinterpret_cast<const char*>(buf));
  }

  pcre2_code* code_;
};

// Splits `text` into the gaps between matches and the matches themselves (SplitDelimiterBehavior::
// Isolated), dropping empty pieces.
absl::Status SplitIsolated(const Regex& re, std::string_view text, std::vector<std::string>* out) {
  std::vector<std::pair<size_t, size_t>> matches;
  QRAG_RETURN_IF_ERROR(re.FindAll(text, &matches));
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (b > prev) out->emplace_back(text.substr(prev, b - prev));
    out->emplace_back(text.substr(b, e - b));
    prev = e;
  }
  if (prev < text.size()) out->emplace_back(text.substr(prev));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------
// GPT-2's reversible bytes <-> unicode table (openai/gpt-2 encoder.py bytes_to_unicode): printable
// Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in byte order.
struct ByteTable {
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, 324> char_to_byte;  // code points 0..323, -1 when not in the table

  ByteTable() {
    char_to_byte.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
      AppendUtf8(cp, &byte_to_utf8[b]);
      char_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteTable& Bytes() {
  static const ByteTable* table = new ByteTable();
  return *table;
}

// The ByteLevel decoder for one token: its bytes when every character is in the table, else its text.
std::string ByteLevelDecodeToken(std::string_view token) {
  const ByteTable& t = Bytes();
  std::string bytes;
  size_t pos = 0;
  while (pos < token.size()) {
    const char32_t cp = DecodeUtf8At(token, &pos);
    if (cp >= t.char_to_byte.size() || t.char_to_byte[cp] < 0) return std::string(token);
    bytes.push_back(static_cast<char>(t.char_to_byte[cp]));
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------------
// Unicode classes used by added-token matching, as Rust's `regex` crate defines \w and \s there.
bool IsWordChar(char32_t c) {
  const UChar32 u = static_cast<UChar32>(c);
  return u_isUAlphabetic(u) || (U_GET_GC_MASK(u) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0 ||
         u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL);
}
bool IsSpaceChar(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)); }

// The start of the code point that ends right before byte `end` of well-formed `s` (end > 0).
size_t PrevCharStart(std::string_view s, size_t end) {
  size_t p = end - 1;
  while (p > 0 && (static_cast<uint8_t>(s[p]) & 0xC0) == 0x80) --p;
  return p;
}

bool EndsWithWord(std::string_view s) {
  if (s.empty()) return false;
  size_t p = PrevCharStart(s, s.size());
  return IsWordChar(DecodeUtf8At(s, &p));
}
bool StartsWithWord(std::string_view s) {
  if (s.empty()) return false;
  size_t p = 0;
  return IsWordChar(DecodeUtf8At(s, &p));
}
// Bytes of whitespace at the end / start of `s`.
size_t TrailingSpaceBytes(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t p = PrevCharStart(s, end), q = p;
    if (!IsSpaceChar(DecodeUtf8At(s, &q))) break;
    end = p;
  }
  return s.size() - end;
}
size_t LeadingSpaceBytes(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t q = pos;
    if (!IsSpaceChar(DecodeUtf8At(s, &q))) break;
    pos = q;
  }
  return pos;
}

absl::StatusOr<std::string> NfcNormalize(std::string_view text) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<uint8_t>(c) < 0x80; })) {
    return std::string(text);  // ASCII is always in NFC
  }
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(err);
  if (U_FAILURE(err)) return absl::InternalError(absl::StrCat("ICU NFC unavailable: ", u_errorName(err)));
  const icu::UnicodeString src =
      icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  const icu::UnicodeString dst = nfc->normalize(src, err);
  if (U_FAILURE(err)) return absl::InternalError(absl::StrCat("ICU NFC failed: ", u_errorName(err)));
  std::string out;
  dst.toUTF8String(out);
  return out;
}

// A PCRE2 pattern matching `literal` exactly (Split with a String pattern).
std::string QuoteRegex(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    const auto u = static_cast<uint8_t>(c);
    if (u < 0x80 && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
      if (u < 0x20 || u == 0x7F) {
        absl::StrAppend(&out, "\\x{", absl::Hex(u), "}");
        continue;
      }
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

// Debian's Abseil has its own string_view class: std::string_view must be converted explicitly.
absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
struct HfBpeTokenizer::Impl {
  struct AddedToken {
    std::string content;  // as matched: NFC-normalized for `normalized` tokens when the normalizer is NFC
    int32_t id = 0;
    bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = true;
  };
  // Added tokens that match on raw (or on normalized) text, indexed by first byte, longest first, so a
  // scan finds the leftmost-longest match like the aho-corasick automaton of `tokenizers`.
  struct AddedMatcher {
    std::array<std::vector<int>, 256> by_first_byte;  // indices into `added`
  };
  struct Segment {
    std::string text;
    int32_t id = -1;    // an added token, or -1 for text still to tokenize
    size_t begin = 0;   // where it starts in the encoded text
  };
  enum class StepKind { kSplit, kByteLevel };
  struct PreStep {
    StepKind kind;
    std::unique_ptr<Regex> regex;  // kSplit, and kByteLevel with use_regex
    bool add_prefix_space = false;
  };
  struct Merge {
    int32_t rank, new_id;
  };

  bool nfc = false;
  std::vector<PreStep> steps;
  absl::flat_hash_map<std::string, int32_t> vocab;
  absl::flat_hash_map<uint64_t, Merge> merges;
  bool ignore_merges = false;
  bool byte_fallback = false;
  bool fuse_unk = false;
  std::optional<int32_t> unk_id;
  std::vector<AddedToken> added;
  absl::flat_hash_map<std::string, int32_t> added_by_content;  // original content -> id
  AddedMatcher raw_matcher, normalized_matcher;
  int32_t vocab_size = 0;
  std::vector<std::string> decoded;  // per id: what the ByteLevel decoder produces
  std::vector<uint8_t> is_special;   // per id
  std::optional<int32_t> bos;
  std::vector<int32_t> eos;

  // Splits `text` at the added tokens of `matcher` (tokenizers' AddedVocabulary::find_matches). `text` came
  // from bytes `origin` of the text being encoded; when `exact`, it is those very bytes (offsets map one to
  // one), otherwise normalization changed them and a special token may match in it only when all of `origin`
  // may hold one (SpecialTokenAllowed). Segments record where they start in the encoded text.
  void SplitAdded(std::string_view text, TextRange origin, bool exact, const AddedMatcher& matcher,
                  const EncodeOptions& options, std::vector<Segment>* out) const;
  absl::Status PreTokenize(std::string_view text, std::vector<std::string>* words) const;
  // BPE of one pre-tokenized word, already mapped through the byte table (tokenizers' BPE::tokenize).
  void EncodeWord(std::string_view word, std::vector<int32_t>* ids) const;
};

void HfBpeTokenizer::Impl::SplitAdded(std::string_view text, TextRange origin, bool exact,
                                      const AddedMatcher& matcher, const EncodeOptions& options,
                                      std::vector<Segment>* out) const {
  const bool whole_allowed = SpecialTokenAllowed(options, origin.begin, origin.end);
  auto at = [&](size_t offset) { return exact ? origin.begin + offset : origin.begin; };
  size_t start_offset = 0, pos = 0;
  while (pos < text.size()) {
    const AddedToken* tok = nullptr;
    for (int index : matcher.by_first_byte[static_cast<uint8_t>(text[pos])]) {
      const AddedToken& t = added[index];
      if (t.special && !(exact ? SpecialTokenAllowed(options, at(pos), at(pos + t.content.size()))
                               : whole_allowed)) {
        continue;
      }
      if (text.compare(pos, t.content.size(), t.content) == 0) {
        tok = &t;
        break;
      }
    }
    if (tok == nullptr) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + tok->content.size();
    pos = stop;  // the automaton resumes after the match even when the match is discarded
    if (tok->single_word) {
      const bool start_space = start == 0 || !EndsWithWord(text.substr(0, start));
      const bool stop_space = stop == text.size() || !StartsWithWord(text.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (tok->lstrip) start = std::max(start - TrailingSpaceBytes(text.substr(0, start)), start_offset);
    if (tok->rstrip) stop += LeadingSpaceBytes(text.substr(stop));
    if (start_offset < start) {
      out->push_back({std::string(text.substr(start_offset, start - start_offset)), -1, at(start_offset)});
    }
    out->push_back({std::string(text.substr(start, stop - start)), tok->id, at(start)});
    start_offset = stop;
    pos = std::max(pos, stop);
  }
  if (start_offset < text.size()) out->push_back({std::string(text.substr(start_offset)), -1, at(start_offset)});
}

absl::Status HfBpeTokenizer::Impl::PreTokenize(std::string_view text, std::vector<std::string>* words) const {
  std::vector<std::string> pieces{std::string(text)}, next;
  for (const PreStep& step : steps) {
    next.clear();
    for (std::string& piece : pieces) {
      if (step.kind == StepKind::kByteLevel && step.add_prefix_space && !piece.empty() && piece[0] != ' ') {
        piece.insert(piece.begin(), ' ');
      }
      if (step.regex == nullptr) {
        next.push_back(std::move(piece));
      } else {
        QRAG_RETURN_IF_ERROR(SplitIsolated(*step.regex, piece, &next));
      }
    }
    pieces.swap(next);
  }
  // The last step is ByteLevel: map every byte to its stand-in character.
  const ByteTable& table = Bytes();
  for (const std::string& piece : pieces) {
    std::string mapped;
    mapped.reserve(piece.size() * 2);
    for (char c : piece) mapped.append(table.byte_to_utf8[static_cast<uint8_t>(c)]);
    words->push_back(std::move(mapped));
  }
  return absl::OkStatus();
}

void HfBpeTokenizer::Impl::EncodeWord(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (ignore_merges) {
    if (auto it = vocab.find(AsAbsl(word)); it != vocab.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  // Initial symbols: one per character (tokenizers' BPE::merge_word), with its unk/byte-fallback rules.
  std::vector<int32_t> syms;
  bool pending_unk = false;
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t len = static_cast<size_t>(Utf8SequenceLength(static_cast<uint8_t>(word[pos])));
    const std::string_view ch = word.substr(pos, len);
    pos += len;
    if (auto it = vocab.find(AsAbsl(ch)); it != vocab.end()) {
      if (pending_unk) syms.push_back(*unk_id);
      pending_unk = false;
      syms.push_back(it->second);
      continue;
    }
    if (byte_fallback) {
      std::vector<int32_t> byte_ids;
      for (char b : ch) {
        auto it = vocab.find(absl::StrCat("<0x", absl::Hex(static_cast<uint8_t>(b), absl::kZeroPad2), ">"));
        if (it == vocab.end()) break;
        byte_ids.push_back(it->second);
      }
      if (byte_ids.size() == ch.size()) {
        if (pending_unk) syms.push_back(*unk_id);
        pending_unk = false;
        syms.insert(syms.end(), byte_ids.begin(), byte_ids.end());
        continue;
      }
    }
    if (!unk_id.has_value()) continue;  // tokenizers drops characters it cannot represent
    if (pending_unk && !fuse_unk) syms.push_back(*unk_id);
    pending_unk = true;
  }
  if (pending_unk) syms.push_back(*unk_id);

  // tokenizers' Word::merge_all: a min-heap on (rank, position); an entry is applied when the pair now at
  // its position still merges into the same new id.
  struct Symbol {
    int32_t id;
    int prev, next;
    bool alive;
  };
  struct Candidate {
    int32_t rank;
    int pos;
    int32_t new_id;
  };
  auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  const int n = static_cast<int>(syms.size());
  std::vector<Symbol> s(n);
  for (int i = 0; i < n; ++i) s[i] = {syms[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> heap(later);
  auto find_merge = [&](int left, int right) -> const Merge* {
    auto it = merges.find(PairKey(s[left].id, s[right].id));
    return it == merges.end() ? nullptr : &it->second;
  };
  for (int i = 0; i + 1 < n; ++i) {
    if (const Merge* m = find_merge(i, i + 1)) heap.push({m->rank, i, m->new_id});
  }
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    Symbol& cur = s[top.pos];
    if (!cur.alive || cur.next < 0) continue;
    const int right = cur.next;
    const Merge* m = find_merge(top.pos, right);
    if (m == nullptr || m->new_id != top.new_id) continue;
    cur.id = top.new_id;
    cur.next = s[right].next;
    s[right].alive = false;
    if (cur.next >= 0) s[cur.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const Merge* pm = find_merge(cur.prev, top.pos)) heap.push({pm->rank, cur.prev, pm->new_id});
    }
    if (cur.next >= 0) {
      if (const Merge* nm = find_merge(top.pos, cur.next)) heap.push({nm->rank, top.pos, nm->new_id});
    }
  }
  for (int i = 0; i < n; ++i) {
    if (s[i].alive) ids->push_back(s[i].id);
  }
}

// ---------------------------------------------------------------------------------------------------
// tokenizer.json parsing.
namespace {

class JsonReader {
 public:
  explicit JsonReader(const std::string& source) : source_(source) {}

  absl::Status Bad(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": invalid tokenizer.json: ", what));
  }
  absl::Status Unsupported(absl::string_view what) const {
    return absl::UnimplementedError(absl::StrCat(source_, ": unsupported tokenizer.json feature: ", what));
  }

  // `obj[key]`, or nullptr when absent or null.
  static const json* Find(const json& obj, absl::string_view key) {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(std::string(key));
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  absl::StatusOr<bool> Bool(const json& obj, absl::string_view key, bool def, absl::string_view where) const {
    const json* v = Find(obj, key);
    if (v == nullptr) return def;
    if (!v->is_boolean())
      return Bad(absl::StrCat(where, ".", key, " is ", JsonTypeName(*v), ", not a boolean"));
    return v->get<bool>();
  }
  absl::StatusOr<std::optional<std::string>> String(const json& obj, absl::string_view key,
                                                    absl::string_view where) const {
    const json* v = Find(obj, key);
    if (v == nullptr) return std::optional<std::string>();
    if (!v->is_string())
      return Bad(absl::StrCat(where, ".", key, " is ", JsonTypeName(*v), ", not a string"));
    return std::optional<std::string>(v->get<std::string>());
  }
  absl::StatusOr<std::string> Type(const json& obj, absl::string_view where) const {
    if (!obj.is_object()) return Bad(absl::StrCat(where, " is ", JsonTypeName(obj), ", not an object"));
    QRAG_ASSIGN_OR_RETURN(std::optional<std::string> type, String(obj, "type", where));
    if (!type.has_value()) return Bad(absl::StrCat(where, " has no \"type\""));
    return *type;
  }
  absl::StatusOr<int32_t> Id(const json& v, absl::string_view where) const {
    constexpr int64_t kMaxId = (1 << 26) - 1;  // far above any real vocabulary
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxId) {
      return Bad(absl::StrCat(where, " must be an id in [0, ", kMaxId, "], got ", v.dump()));
    }
    return static_cast<int32_t>(v.get<int64_t>());
  }
  const std::string& source() const { return source_; }

 private:
  const std::string& source_;
};

using Impl = HfBpeTokenizer::Impl;

absl::Status ParseNormalizer(const JsonReader& r, const json* n, Impl* impl) {
  if (n == nullptr) return absl::OkStatus();
  QRAG_ASSIGN_OR_RETURN(std::string type, r.Type(*n, "normalizer"));
  if (type == "NFC") {
    impl->nfc = true;
    return absl::OkStatus();
  }
  if (type == "Sequence") {
    const json* list = JsonReader::Find(*n, "normalizers");
    if (list == nullptr || !list->is_array()) return r.Bad("normalizer Sequence without a normalizers array");
    for (const json& item : *list) QRAG_RETURN_IF_ERROR(ParseNormalizer(r, &item, impl));
    return absl::OkStatus();
  }
  return r.Unsupported(absl::StrCat("normalizer '", type, "' (supported: NFC, Sequence of NFC)"));
}

absl::Status ParsePreTokenizer(const JsonReader& r, const json& p, Impl* impl) {
  QRAG_ASSIGN_OR_RETURN(std::string type, r.Type(p, "pre_tokenizer"));
  Impl::PreStep step;
  if (type == "Sequence") {
    const json* list = JsonReader::Find(p, "pretokenizers");
    if (list == nullptr || !list->is_array())
      return r.Bad("pre_tokenizer Sequence without a pretokenizers array");
    for (const json& item : *list) QRAG_RETURN_IF_ERROR(ParsePreTokenizer(r, item, impl));
    return absl::OkStatus();
  }
  if (!impl->steps.empty() && impl->steps.back().kind == Impl::StepKind::kByteLevel) {
    return r.Unsupported(absl::StrCat("pre_tokenizer '", type, "' after ByteLevel (ByteLevel must be last)"));
  }
  if (type == "ByteLevel") {
    step.kind = Impl::StepKind::kByteLevel;
    QRAG_ASSIGN_OR_RETURN(step.add_prefix_space, r.Bool(p, "add_prefix_space", true, "pre_tokenizer"));
    QRAG_ASSIGN_OR_RETURN(bool use_regex, r.Bool(p, "use_regex", true, "pre_tokenizer"));
    if (use_regex) {
      QRAG_ASSIGN_OR_RETURN(step.regex, Regex::Compile(kGpt2Pattern, "ByteLevel pre_tokenizer"));
    }
  } else if (type == "Split") {
    step.kind = Impl::StepKind::kSplit;
    QRAG_ASSIGN_OR_RETURN(std::optional<std::string> behavior, r.String(p, "behavior", "Split"));
    if (behavior.value_or("") != "Isolated") {
      return r.Unsupported(
          absl::StrCat("Split behavior '", behavior.value_or("(none)"), "' (supported: Isolated)"));
    }
    QRAG_ASSIGN_OR_RETURN(bool invert, r.Bool(p, "invert", false, "Split"));
    if (invert) return r.Unsupported("Split with invert = true");
    const json* pattern = JsonReader::Find(p, "pattern");
    std::string regex;
    if (const json* re = pattern ? JsonReader::Find(*pattern, "Regex") : nullptr; re && re->is_string()) {
      regex = re->get<std::string>();
    } else if (const json* lit = pattern ? JsonReader::Find(*pattern, "String") : nullptr;
               lit && lit->is_string()) {
      regex = QuoteRegex(lit->get<std::string>());
    } else {
      return r.Bad("Split pattern must be {\"Regex\": ...} or {\"String\": ...}");
    }
    auto compiled = Regex::Compile(regex, absl::StrCat(r.source(), ": Split pattern"));
    if (!compiled.ok()) return compiled.status();
    step.regex = *std::move(compiled);
  } else if (type == "Digits") {
    // tokenizers splits on char::is_numeric (\p{N}): each digit alone, or runs of digits together.
    step.kind = Impl::StepKind::kSplit;
    QRAG_ASSIGN_OR_RETURN(bool individual, r.Bool(p, "individual_digits", false, "Digits"));
    QRAG_ASSIGN_OR_RETURN(step.regex, Regex::Compile(individual ? R"(\p{N})" : R"(\p{N}+)", "Digits"));
  } else {
    return r.Unsupported(
        absl::StrCat("pre_tokenizer '", type, "' (supported: ByteLevel, Split, Digits, Sequence)"));
  }
  impl->steps.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status ParseModel(const JsonReader& r, const json* m, Impl* impl) {
  if (m == nullptr) return r.Bad("no \"model\"");
  if (!m->is_object()) return r.Bad(absl::StrCat("model is ", JsonTypeName(*m), ", not an object"));
  QRAG_ASSIGN_OR_RETURN(std::optional<std::string> type, r.String(*m, "type", "model"));
  if (type.value_or("BPE") != "BPE") {
    return r.Unsupported(absl::StrCat("model type '", *type, "' (only BPE is supported)"));
  }
  if (const json* d = JsonReader::Find(*m, "dropout"); d && !(d->is_number() && d->get<double>() == 0.0)) {
    return r.Unsupported("BPE dropout");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    QRAG_ASSIGN_OR_RETURN(std::optional<std::string> v, r.String(*m, key, "model"));
    if (v.has_value() && !v->empty()) return r.Unsupported(absl::StrCat("BPE ", key));
  }
  QRAG_ASSIGN_OR_RETURN(impl->ignore_merges, r.Bool(*m, "ignore_merges", false, "model"));
  QRAG_ASSIGN_OR_RETURN(impl->byte_fallback, r.Bool(*m, "byte_fallback", false, "model"));
  QRAG_ASSIGN_OR_RETURN(impl->fuse_unk, r.Bool(*m, "fuse_unk", false, "model"));

  const json* vocab = JsonReader::Find(*m, "vocab");
  if (vocab == nullptr || !vocab->is_object()) return r.Bad("model.vocab must be an object");
  impl->vocab.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    QRAG_ASSIGN_OR_RETURN(int32_t id, r.Id(it.value(), absl::StrCat("model.vocab[\"", it.key(), "\"]")));
    impl->vocab[it.key()] = id;
    impl->vocab_size = std::max(impl->vocab_size, id + 1);
  }
  if (impl->vocab.empty()) return r.Bad("model.vocab is empty");

  const json* merges = JsonReader::Find(*m, "merges");
  if (merges != nullptr && !merges->is_array()) return r.Bad("model.merges must be an array");
  if (merges != nullptr) {
    impl->merges.reserve(merges->size());
    int32_t rank = 0;
    std::string a, b;
    for (const json& item : *merges) {
      if (item.is_string()) {
        const std::string& line = item.get_ref<const std::string&>();
        const size_t space = line.find(' ');
        if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
          return r.Bad(
              absl::StrCat("merge ", rank, " \"", line, "\" is not two tokens separated by a space"));
        }
        a = line.substr(0, space);
        b = line.substr(space + 1);
      } else if (item.is_array() && item.size() == 2 && item[0].is_string() && item[1].is_string()) {
        a = item[0].get<std::string>();
        b = item[1].get<std::string>();
      } else {
        return r.Bad(absl::StrCat("merge ", rank, " is ", item.dump(), ", not \"a b\" or [a, b]"));
      }
      auto ia = impl->vocab.find(a), ib = impl->vocab.find(b), iab = impl->vocab.find(a + b);
      if (ia == impl->vocab.end() || ib == impl->vocab.end() || iab == impl->vocab.end()) {
        return r.Bad(
            absl::StrCat("merge ", rank, " (\"", a, "\", \"", b, "\") uses a token not in the vocab"));
      }
      impl->merges[PairKey(ia->second, ib->second)] = {rank, iab->second};  // later duplicates win
      ++rank;
    }
  }
  QRAG_ASSIGN_OR_RETURN(std::optional<std::string> unk, r.String(*m, "unk_token", "model"));
  if (unk.has_value()) {
    auto it = impl->vocab.find(*unk);
    if (it == impl->vocab.end())
      return r.Bad(absl::StrCat("model.unk_token \"", *unk, "\" is not in the vocab"));
    impl->unk_id = it->second;
  }
  return absl::OkStatus();
}

absl::Status ParseAddedTokens(const JsonReader& r, const json* list, Impl* impl) {
  if (list == nullptr) return absl::OkStatus();
  if (!list->is_array()) return r.Bad("added_tokens must be an array");
  for (const json& item : *list) {
    Impl::AddedToken t;
    const json* id = JsonReader::Find(item, "id");
    if (id == nullptr) return r.Bad(absl::StrCat("added token ", item.dump(), " has no id"));
    QRAG_ASSIGN_OR_RETURN(t.id, r.Id(*id, "added_tokens[].id"));
    QRAG_ASSIGN_OR_RETURN(std::optional<std::string> content, r.String(item, "content", "added_tokens[]"));
    if (!content.has_value() || content->empty()) continue;  // tokenizers ignores empty tokens
    QRAG_RETURN_IF_ERROR(CheckUtf8(*content, absl::StrCat(r.source(), ": added token")));
    t.content = *content;
    QRAG_ASSIGN_OR_RETURN(t.special, r.Bool(item, "special", false, "added_tokens[]"));
    QRAG_ASSIGN_OR_RETURN(t.single_word, r.Bool(item, "single_word", false, "added_tokens[]"));
    QRAG_ASSIGN_OR_RETURN(t.lstrip, r.Bool(item, "lstrip", false, "added_tokens[]"));
    QRAG_ASSIGN_OR_RETURN(t.rstrip, r.Bool(item, "rstrip", false, "added_tokens[]"));
    QRAG_ASSIGN_OR_RETURN(t.normalized, r.Bool(item, "normalized", !t.special, "added_tokens[]"));
    impl->added_by_content[t.content] = t.id;
    impl->vocab_size = std::max(impl->vocab_size, t.id + 1);
    impl->added.push_back(std::move(t));
  }
  return absl::OkStatus();
}

// The ids a TemplateProcessing `single` template puts before `$A`; UNIMPLEMENTED for anything after it.
absl::Status ParseTemplate(const JsonReader& r, const json& p, std::vector<int32_t>* prefix) {
  const json* single = JsonReader::Find(p, "single");
  const json* specials = JsonReader::Find(p, "special_tokens");
  if (single == nullptr || !single->is_array()) return r.Bad("TemplateProcessing without a single template");
  bool seen_sequence = false;
  for (const json& piece : *single) {
    if (JsonReader::Find(piece, "Sequence") != nullptr) {
      seen_sequence = true;
      continue;
    }
    const json* special = JsonReader::Find(piece, "SpecialToken");
    const json* name = special ? JsonReader::Find(*special, "id") : nullptr;
    if (name == nullptr || !name->is_string()) return r.Bad(absl::StrCat("template piece ", piece.dump()));
    if (seen_sequence) {
      return r.Unsupported(absl::StrCat("TemplateProcessing adding '", name->get<std::string>(),
                                        "' after the text (only a leading BOS is supported)"));
    }
    const json* entry = specials ? JsonReader::Find(*specials, name->get<std::string>()) : nullptr;
    const json* ids = entry ? JsonReader::Find(*entry, "ids") : nullptr;
    if (ids == nullptr || !ids->is_array()) {
      return r.Bad(absl::StrCat("template special token '", name->get<std::string>(), "' has no ids"));
    }
    for (const json& id : *ids) {
      QRAG_ASSIGN_OR_RETURN(int32_t v, r.Id(id, "TemplateProcessing special token id"));
      prefix->push_back(v);
    }
  }
  return absl::OkStatus();
}

absl::Status ParsePostProcessor(const JsonReader& r, const json* p, std::vector<int32_t>* prefix) {
  if (p == nullptr) return absl::OkStatus();
  QRAG_ASSIGN_OR_RETURN(std::string type, r.Type(*p, "post_processor"));
  if (type == "ByteLevel") return absl::OkStatus();  // only adjusts offsets
  if (type == "TemplateProcessing") return ParseTemplate(r, *p, prefix);
  if (type == "Sequence") {
    const json* list = JsonReader::Find(*p, "processors");
    if (list == nullptr || !list->is_array()) return r.Bad("post_processor Sequence without processors");
    for (const json& item : *list) QRAG_RETURN_IF_ERROR(ParsePostProcessor(r, &item, prefix));
    return absl::OkStatus();
  }
  return r.Unsupported(
      absl::StrCat("post_processor '", type, "' (supported: ByteLevel, TemplateProcessing, Sequence)"));
}

absl::Status ParseDecoder(const JsonReader& r, const json* d) {
  if (d == nullptr) return r.Unsupported("decoder null (byte-level BPE needs the ByteLevel decoder)");
  QRAG_ASSIGN_OR_RETURN(std::string type, r.Type(*d, "decoder"));
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "Sequence") {
    const json* list = JsonReader::Find(*d, "decoders");
    if (list == nullptr || !list->is_array() || list->size() != 1) {
      return r.Unsupported(absl::StrCat("decoder ", d->dump().substr(0, 200), " (supported: ByteLevel)"));
    }
    return ParseDecoder(r, &(*list)[0]);
  }
  return r.Unsupported(absl::StrCat("decoder '", type, "' (supported: ByteLevel)"));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
HfBpeTokenizer::HfBpeTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HfBpeTokenizer::~HfBpeTokenizer() = default;

absl::StatusOr<std::unique_ptr<HfBpeTokenizer>> HfBpeTokenizer::Load(const std::string& path) {
  QRAG_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  auto read_optional = [&](const char* name, std::string* out) -> absl::Status {
    const std::string p = (dir / name).string();
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) return absl::OkStatus();
    QRAG_ASSIGN_OR_RETURN(*out, ReadFileToString(p));
    return absl::OkStatus();
  };
  std::string tokenizer_config, generation_config;
  QRAG_RETURN_IF_ERROR(read_optional("tokenizer_config.json", &tokenizer_config));
  QRAG_RETURN_IF_ERROR(read_optional("generation_config.json", &generation_config));
  return FromJson(text, tokenizer_config, generation_config, path);
}

absl::StatusOr<std::unique_ptr<HfBpeTokenizer>> HfBpeTokenizer::FromJson(
    std::string_view tokenizer_json, std::string_view tokenizer_config_json,
    std::string_view generation_config_json, const std::string& source) {
  QRAG_ASSIGN_OR_RETURN(json root, ParseJson(AsAbsl(tokenizer_json), source));
  const std::string dir = std::filesystem::path(source).parent_path().string();
  std::optional<json> cfg, gen;
  std::string cfg_source, gen_source;
  if (!tokenizer_config_json.empty()) {
    cfg_source = absl::StrCat(dir.empty() ? "" : dir + "/", "tokenizer_config.json");
    QRAG_ASSIGN_OR_RETURN(cfg, ParseJson(AsAbsl(tokenizer_config_json), cfg_source));
  }
  if (!generation_config_json.empty()) {
    gen_source = absl::StrCat(dir.empty() ? "" : dir + "/", "generation_config.json");
    QRAG_ASSIGN_OR_RETURN(gen, ParseJson(AsAbsl(generation_config_json), gen_source));
  }
  return FromJsonValues(root, cfg ? &*cfg : nullptr, cfg_source, gen ? &*gen : nullptr, gen_source, source);
}

absl::StatusOr<std::unique_ptr<HfBpeTokenizer>> HfBpeTokenizer::FromJsonValues(
    const nlohmann::json& root, const nlohmann::json* tokenizer_config, const std::string& cfg_source,
    const nlohmann::json* generation_config, const std::string& gen_source, const std::string& source) {
  JsonReader r(source);
  if (!root.is_object()) return r.Bad(absl::StrCat("top level is ", JsonTypeName(root), ", not an object"));
  auto impl = std::make_unique<Impl>();

  QRAG_RETURN_IF_ERROR(ParseModel(r, JsonReader::Find(root, "model"), impl.get()));
  QRAG_RETURN_IF_ERROR(ParseNormalizer(r, JsonReader::Find(root, "normalizer"), impl.get()));
  const json* pre = JsonReader::Find(root, "pre_tokenizer");
  if (pre != nullptr) QRAG_RETURN_IF_ERROR(ParsePreTokenizer(r, *pre, impl.get()));
  if (impl->steps.empty() || impl->steps.back().kind != Impl::StepKind::kByteLevel) {
    return r.Unsupported("pre_tokenizer without a final ByteLevel step (only byte-level BPE is supported)");
  }
  QRAG_RETURN_IF_ERROR(ParseDecoder(r, JsonReader::Find(root, "decoder")));
  QRAG_RETURN_IF_ERROR(ParseAddedTokens(r, JsonReader::Find(root, "added_tokens"), impl.get()));
  std::vector<int32_t> prefix;
  QRAG_RETURN_IF_ERROR(ParsePostProcessor(r, JsonReader::Find(root, "post_processor"), &prefix));
  if (prefix.size() > 1) {
    return r.Unsupported(absl::StrCat("TemplateProcessing adding ", prefix.size(),
                                      " leading tokens (only a single BOS is supported)"));
  }
  if (!prefix.empty()) impl->bos = prefix[0];

  // Added-token matchers. Normalized tokens are matched against normalized text, so normalize them too.
  for (size_t i = 0; i < impl->added.size(); ++i) {
    Impl::AddedToken& t = impl->added[i];
    if (t.normalized && impl->nfc) {
      QRAG_ASSIGN_OR_RETURN(t.content, NfcNormalize(t.content));
      if (t.content.empty()) continue;
    }
    Impl::AddedMatcher& m = t.normalized ? impl->normalized_matcher : impl->raw_matcher;
    m.by_first_byte[static_cast<uint8_t>(t.content[0])].push_back(static_cast<int>(i));
  }
  for (Impl::AddedMatcher* m : {&impl->raw_matcher, &impl->normalized_matcher}) {
    for (auto& bucket : m->by_first_byte) {
      std::stable_sort(bucket.begin(), bucket.end(), [&](int a, int b) {
        return impl->added[a].content.size() > impl->added[b].content.size();
      });
    }
  }

  // Per-id decoding (added tokens shadow the vocab, as tokenizers' id_to_token does).
  const int32_t n = impl->vocab_size;
  impl->decoded.assign(n, std::string());
  impl->is_special.assign(n, 0);
  for (const auto& [token, id] : impl->vocab) impl->decoded[id] = ByteLevelDecodeToken(token);
  for (const auto& [content, id] : impl->added_by_content) impl->decoded[id] = ByteLevelDecodeToken(content);
  for (const Impl::AddedToken& t : impl->added) {
    if (t.special) impl->is_special[t.id] = 1;
  }
  auto tok = std::unique_ptr<HfBpeTokenizer>(new HfBpeTokenizer(std::move(impl)));
  Impl& im = *tok->impl_;
  if (im.bos.has_value() && *im.bos >= n) {
    return r.Bad(absl::StrCat("BOS id ", *im.bos, " is outside the vocab (", n, ")"));
  }

  // EOS ids: tokenizer_config.json's eos_token, generation_config.json's eos_token_id.
  auto add_eos = [&](int32_t id) {
    if (std::find(im.eos.begin(), im.eos.end(), id) == im.eos.end()) im.eos.push_back(id);
  };
  if (tokenizer_config != nullptr) {
    const json& cfg = *tokenizer_config;
    const json* eos = JsonReader::Find(cfg, "eos_token");
    if (eos != nullptr && eos->is_object()) eos = JsonReader::Find(*eos, "content");
    if (eos != nullptr) {
      if (!eos->is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(cfg_source, ": eos_token is ", JsonTypeName(*eos)));
      }
      std::optional<int32_t> id = tok->TokenToId(eos->get<std::string>());
      if (!id.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat(cfg_source, ": eos_token \"", eos->get<std::string>(),
                                                       "\" is not a token of ", source));
      }
      add_eos(*id);
    }
  }
  if (generation_config != nullptr) {
    const json& gen = *generation_config;
    const json* ids = JsonReader::Find(gen, "eos_token_id");
    if (ids != nullptr) {
      const std::vector<json> list =
          ids->is_array() ? ids->get<std::vector<json>>() : std::vector<json>{*ids};
      for (const json& v : list) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= n) {
          return absl::InvalidArgumentError(
              absl::StrCat(gen_source, ": eos_token_id ", v.dump(), " is not an id of ", source));
        }
        add_eos(static_cast<int32_t>(v.get<int64_t>()));
      }
    }
  }
  if (im.eos.empty()) {
    for (const char* name : {"<|endoftext|>", "<|end_of_text|>", "</s>"}) {
      auto it = im.added_by_content.find(name);
      if (it != im.added_by_content.end() && im.is_special[it->second]) add_eos(it->second);
    }
  }
  return tok;
}

absl::StatusOr<std::vector<int32_t>> HfBpeTokenizer::Encode(std::string_view text,
                                                            const EncodeOptions& options) const {
  const Impl& im = *impl_;
  QRAG_RETURN_IF_ERROR(CheckUtf8(text, "hf-bpe tokenizer: Encode"));
  std::vector<int32_t> ids;
  if (options.add_bos && im.bos.has_value()) ids.push_back(*im.bos);

  std::vector<Impl::Segment> raw, segments;
  im.SplitAdded(text, {0, text.size()}, /*exact=*/true, im.raw_matcher, options, &raw);
  for (Impl::Segment& seg : raw) {
    if (seg.id >= 0) {
      segments.push_back(std::move(seg));
      continue;
    }
    const TextRange origin{seg.begin, seg.begin + seg.text.size()};
    bool exact = true;
    if (im.nfc) {
      QRAG_ASSIGN_OR_RETURN(std::string normalized, NfcNormalize(seg.text));
      exact = normalized == seg.text;
      seg.text = std::move(normalized);
    }
    im.SplitAdded(seg.text, origin, exact, im.normalized_matcher, options, &segments);
  }
  std::vector<std::string> words;
  for (const Impl::Segment& seg : segments) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    words.clear();
    QRAG_RETURN_IF_ERROR(im.PreTokenize(seg.text, &words));
    for (const std::string& w : words) im.EncodeWord(w, &ids);
  }
  return ids;
}

absl::StatusOr<std::string> HfBpeTokenizer::Decode(absl::Span<const int32_t> ids) const {
  const Impl& im = *impl_;
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= im.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("hf-bpe tokenizer: Decode: id ", id, " at position ", i,
                                                     " is outside [0, ", im.vocab_size, ")"));
    }
    if (!im.is_special[id]) out.append(im.decoded[id]);
  }
  return out;
}

int32_t HfBpeTokenizer::vocab_size() const { return impl_->vocab_size; }
std::optional<int32_t> HfBpeTokenizer::bos_id() const { return impl_->bos; }
std::vector<int32_t> HfBpeTokenizer::eos_ids() const { return impl_->eos; }

std::optional<int32_t> HfBpeTokenizer::TokenToId(std::string_view content) const {
  if (auto it = impl_->added_by_content.find(AsAbsl(content)); it != impl_->added_by_content.end())
    return it->second;
  if (auto it = impl_->vocab.find(AsAbsl(content)); it != impl_->vocab.end()) return it->second;
  return std::nullopt;
}

}  // namespace qrag::model
