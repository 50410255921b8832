// The BERT WordPiece tokenizer, as Hugging Face `tokenizers` runs it for BERT checkpoints
// (BertNormalizer → BertPreTokenizer → WordPiece; the same rules as transformers' BertTokenizer):
//
//  1. normalize (per code point): clean_text drops U+0000, U+FFFD and control characters (Cc/Cf other than
//     \t \n \r) and turns whitespace into a space; handle_chinese_chars surrounds each CJK ideograph with
//     spaces; strip_accents (default: = lowercase) decomposes to NFD and drops non-spacing marks (Mn);
//     lowercase applies the full Unicode lower-case mapping of each code point;
//  2. pre-tokenize: split on whitespace (White_Space: space, \t \n \r, Zs) and isolate every punctuation
//     character (ASCII punctuation or a Unicode P* category) as its own word;
//  3. WordPiece: a word longer than max_input_chars_per_word (100) code points is [UNK]; otherwise greedy
//     longest-match-first over the vocabulary, continuation pieces prefixed "##"; a word that cannot be
//     covered completely is one [UNK].
//
// Every token remembers the byte range of the word it came from in the original text, so that a chunker
// can cut the original text at token boundaries. Immutable after loading; thread-safe.
#ifndef QRAG_SERVER_MODEL_WORDPIECE_TOKENIZER_H_
#define QRAG_SERVER_MODEL_WORDPIECE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace qrag::model {

struct WordPieceOptions {
  bool lowercase = true;
  bool strip_accents = true;  // BertNormalizer's strip_accents=None follows lowercase
  bool handle_chinese_chars = true;
  bool clean_text = true;
  int max_input_chars_per_word = 100;
};

// One token with the byte range [begin, end) in the original text of the word it is part of.
struct WordPieceToken {
  int32_t id = 0;
  uint32_t begin = 0;
  uint32_t end = 0;
};

class WordPieceTokenizer {
 public:
  // From a vocab.txt (one token per line, id = line number). INVALID_ARGUMENT when it lacks [UNK], [CLS],
  // [SEP] or [PAD], or has a duplicate token; NOT_FOUND when it cannot be read.
  static absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> FromVocabFile(const std::string& path,
                                                                          const WordPieceOptions& options);
  // From a Hugging Face tokenizer.json whose model is WordPiece (normalizer flags read from its
  // BertNormalizer). UNIMPLEMENTED for other models.
  static absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> FromTokenizerJson(const std::string& path);
  // A checkpoint directory: tokenizer.json when present, else vocab.txt (+ tokenizer_config.json's
  // do_lower_case).
  static absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> FromDirectory(const std::string& dir);

  // The tokens of `text`, without [CLS]/[SEP]. INVALID_ARGUMENT for invalid UTF-8.
  absl::StatusOr<std::vector<WordPieceToken>> Tokenize(std::string_view text) const;
  // Ids only, without [CLS]/[SEP].
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const;

  int32_t vocab_size() const { return static_cast<int32_t>(tokens_.size()); }
  int32_t cls_id() const { return cls_id_; }
  int32_t sep_id() const { return sep_id_; }
  int32_t pad_id() const { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  const std::string& token(int32_t id) const { return tokens_[id]; }

 private:
  WordPieceTokenizer() = default;
  absl::Status Init(std::vector<std::string> tokens, const WordPieceOptions& options, const std::string& source);
  void WordToPieces(std::string_view word, int num_chars, uint32_t begin, uint32_t end,
                    std::vector<WordPieceToken>* out) const;

  WordPieceOptions options_;
  std::vector<std::string> tokens_;
  absl::flat_hash_map<std::string, int32_t> ids_;
  int32_t cls_id_ = -1, sep_id_ = -1, pad_id_ = -1, unk_id_ = -1;
};

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_WORDPIECE_TOKENIZER_H_
