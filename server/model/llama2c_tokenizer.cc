#include "server/model/llama2c_tokenizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <queue>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/mapped_file.h"
#include "server/common/status.h"
#include "server/model/utf8.h"

namespace qrag::model {
namespace {

// run.c starts its best-score search at -1e10: pairs scoring at or below it are never merged.
constexpr float kNoMergeScore = -1e10f;

template <typename T>
T ReadLittleEndian(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // x86/ARM hosts are little-endian like the files
  return v;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte a piece spelled `<0xXX>` stands for, or -1.
int16_t BytePieceValue(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = HexDigit(piece[3]), lo = HexDigit(piece[4]);
  if (hi < 0 || lo < 0) return -1;
  return static_cast<int16_t>(hi * 16 + lo);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Llama2cTokenizer>> Llama2cTokenizer::Load(const std::string& path,
                                                                         int vocab_size) {
  QRAG_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  return FromBytes(bytes, vocab_size, path);
}

absl::StatusOr<std::unique_ptr<Llama2cTokenizer>> Llama2cTokenizer::FromBytes(std::string_view bytes,
                                                                              int vocab_size,
                                                                              const std::string& source) {
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": invalid llama2.c tokenizer: ", parts...));
  };
  constexpr int kMinVocab = kByteFallbackOffset + 256;
  if (vocab_size < kMinVocab) {
    return bad("vocab size ", vocab_size, " is too small (byte fallback needs at least ", kMinVocab,
               " pieces; llama2.c tokenizer files do not store their size, it must come from the model)");
  }
  if (bytes.size() < 4) return bad("truncated: no max_token_length header");
  auto tok = std::unique_ptr<Llama2cTokenizer>(new Llama2cTokenizer());
  tok->max_token_length_ = ReadLittleEndian<int32_t>(bytes.data());
  if (tok->max_token_length_ <= 0 || tok->max_token_length_ > kMaxTokenLengthLimit) {
    return bad("max_token_length = ", tok->max_token_length_, " at offset 0 (expected 1..",
               kMaxTokenLengthLimit, ")");
  }
  // Each piece takes at least 8 bytes: a huge (wrong) vocab size must not allocate before it fails.
  const size_t expected = std::min<size_t>(vocab_size, bytes.size() / 8);
  tok->pieces_.reserve(expected);
  tok->scores_.reserve(expected);
  tok->byte_value_.reserve(expected);
  tok->piece_to_id_.reserve(expected);
  size_t offset = 4;
  for (int32_t id = 0; id < vocab_size; ++id) {
    if (bytes.size() - offset < 8) {
      return bad("truncated at offset ", offset, ": the score and length of id ", id, " (of ", vocab_size,
                 ") are missing (file of ", bytes.size(), " bytes; truncated file or wrong vocab size)");
    }
    const float score = ReadLittleEndian<float>(bytes.data() + offset);
    const int32_t len = ReadLittleEndian<int32_t>(bytes.data() + offset + 4);
    if (std::isnan(score)) return bad("score of id ", id, " at offset ", offset, " is NaN");
    if (len < 0 || len > tok->max_token_length_) {
      return bad("piece length ", len, " of id ", id, " at offset ", offset + 4,
                 " is outside [0, max_token_length = ", tok->max_token_length_, "]");
    }
    offset += 8;
    if (bytes.size() - offset < static_cast<size_t>(len)) {
      return bad("truncated at offset ", offset, ": id ", id, " needs ", len, " bytes, ",
                 bytes.size() - offset, " left");
    }
    std::string piece(bytes.substr(offset, len));
    offset += len;
    tok->byte_value_.push_back(BytePieceValue(piece));
    tok->piece_to_id_.try_emplace(piece, id);
    tok->pieces_.push_back(std::move(piece));
    tok->scores_.push_back(score);
  }
  if (offset != bytes.size()) {
    return bad(bytes.size() - offset, " trailing bytes after the last piece (id ", vocab_size - 1,
               ") at offset ", offset, ": the vocab size ", vocab_size,
               " does not match the file, or the file is not a llama2.c tokenizer");
  }
  return tok;
}

int32_t Llama2cTokenizer::Lookup(std::string_view text) const {
  auto it = piece_to_id_.find(absl::string_view(text.data(), text.size()));
  return it == piece_to_id_.end() ? -1 : it->second;
}

void Llama2cTokenizer::MergePairs(std::vector<int32_t>* tokens) const {
  // run.c rescans all adjacent pairs after every merge and takes the best score, the leftmost on ties.
  // A max-heap ordered by (score, -position) with stale entries skipped picks the same pair each step:
  // a merged symbol keeps the position of its left part, so positions keep the sequence order.
  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int prev, next;
  };
  struct Candidate {
    float score;
    int left, right;
    int32_t left_id, right_id, merged_id;
  };
  auto worse = [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  };
  const int n = static_cast<int>(tokens->size());
  if (n < 2) return;
  std::vector<Symbol> syms(n);
  for (int i = 0; i < n; ++i) syms[i] = {(*tokens)[i], i - 1, i + 1 < n ? i + 1 : -1};
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> heap(worse);
  std::string buf;
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    buf.assign(pieces_[syms[left].id]);
    buf.append(pieces_[syms[right].id]);
    const int32_t id = Lookup(buf);
    if (id < 0 || !(scores_[id] > kNoMergeScore)) return;
    heap.push({scores_[id], left, right, syms[left].id, syms[right].id, id});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& l = syms[c.left];
    Symbol& r = syms[c.right];
    if (l.id != c.left_id || r.id != c.right_id || l.next != c.right) continue;  // stale
    l.id = c.merged_id;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    r.id = -1;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }
  tokens->clear();
  for (int i = 0; i >= 0; i = syms[i].next) tokens->push_back(syms[i].id);
}

absl::StatusOr<std::vector<int32_t>> Llama2cTokenizer::Encode(std::string_view text,
                                                              const EncodeOptions& options) const {
  QRAG_RETURN_IF_ERROR(CheckUtf8(text, "llama2c tokenizer: Encode"));
  std::vector<int32_t> tokens;
  tokens.reserve(text.size() + 2);
  if (options.add_bos) tokens.push_back(kBosId);
  if (!text.empty()) {
    // SentencePiece's dummy prefix (run.c looks the space piece up; files without one fall back to
    // the byte id instead of run.c's -1).
    const int32_t space = Lookup(" ");
    tokens.push_back(space >= 0 ? space : ' ' + kByteFallbackOffset);
  }
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t len = static_cast<size_t>(Utf8SequenceLength(static_cast<uint8_t>(text[pos])));
    const std::string_view cp = text.substr(pos, len);
    const int32_t id = Lookup(cp);
    if (id >= 0) {
      tokens.push_back(id);
    } else {
      for (char b : cp) tokens.push_back(static_cast<uint8_t>(b) + kByteFallbackOffset);
    }
    pos += len;
  }
  MergePairs(&tokens);
  return tokens;
}

absl::StatusOr<std::string> Llama2cTokenizer::Decode(absl::Span<const int32_t> ids) const {
  const int32_t n = vocab_size();
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("llama2c tokenizer: Decode: id ", id, " at position ", i, " is outside [0, ", n, ")"));
    }
    if (id == kBosId || id == kEosId) continue;
    if (byte_value_[id] >= 0) {
      out.push_back(static_cast<char>(byte_value_[id]));
      continue;
    }
    std::string_view piece = pieces_[id];
    // run.c: "following BOS token, sentencepiece decoder strips any leading whitespace".
    if ((i == 0 || ids[i - 1] == kBosId) && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
    out.append(piece);
  }
  return out;
}

}  // namespace qrag::model
