// Hugging Face `tokenizer.json` byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM style), matching the
// `tokenizers` library id for id.
//
// Supported (anything else is UNIMPLEMENTED naming the feature and the file):
//   normalizer     null, NFC (ICU), or a Sequence of those
//   pre_tokenizer  ByteLevel (use_regex with the GPT-2 pattern, add_prefix_space), or a Sequence of
//                  Split (Regex or String pattern, behavior Isolated, invert false) and Digits steps
//                  ending in ByteLevel; regexes run on PCRE2 with UTF and Unicode properties
//   model          BPE with vocab and merges ("a b" strings or [a, b] pairs), ignore_merges, unk_token
//   added_tokens   special and not, with single_word / lstrip / rstrip / normalized
//   post_processor null, ByteLevel, TemplateProcessing adding at most one leading special token (that
//                  token is bos_id()), or a Sequence of those
//   decoder        ByteLevel
// eos_ids() come from `eos_token` in tokenizer_config.json and `eos_token_id` in generation_config.json
// next to the file; when neither exists, from the special tokens <|endoftext|>, <|end_of_text|>, </s>.
//
// Encode: added tokens are split out first (special ones only with EncodeOptions::parse_special), the
// rest is normalized, pre-tokenized, mapped bytes->unicode (GPT-2 table) and merged by merge rank.
// Decode: special added tokens produce nothing; other tokens go through the ByteLevel decoder (a token
// whose characters all belong to the byte table gives those bytes, otherwise its UTF-8 text).
//
// Immutable after loading; thread-safe.
#ifndef QRAG_SERVER_MODEL_BPE_TOKENIZER_H_
#define QRAG_SERVER_MODEL_BPE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "nlohmann/json_fwd.hpp"
#include "server/model/tokenizer.h"

namespace qrag::model {

class HfBpeTokenizer final : public Tokenizer {
 public:
  // Reads `path` (a tokenizer.json) and, when present next to it, tokenizer_config.json and
  // generation_config.json. NOT_FOUND when `path` is missing; INVALID_ARGUMENT naming the file for bad
  // JSON or inconsistent content; UNIMPLEMENTED naming the feature for what is not supported.
  static absl::StatusOr<std::unique_ptr<HfBpeTokenizer>> Load(const std::string& path);

  // The same from file contents. `tokenizer_config_json` / `generation_config_json` may be empty (file
  // absent). `source` names the tokenizer.json in messages.
  static absl::StatusOr<std::unique_ptr<HfBpeTokenizer>> FromJson(std::string_view tokenizer_json,
                                                                  std::string_view tokenizer_config_json,
                                                                  std::string_view generation_config_json,
                                                                  const std::string& source);

  // The same from parsed JSON values (what FromJson parses; the GGUF tokenizer builds them from metadata).
  // `tokenizer_config` / `generation_config` may be null; `cfg_source` / `gen_source` name them in messages.
  static absl::StatusOr<std::unique_ptr<HfBpeTokenizer>> FromJsonValues(const nlohmann::json& tokenizer,
                                                                        const nlohmann::json* tokenizer_config,
                                                                        const std::string& cfg_source,
                                                                        const nlohmann::json* generation_config,
                                                                        const std::string& gen_source,
                                                                        const std::string& source);

  ~HfBpeTokenizer() override;

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              const EncodeOptions& options) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override;
  int32_t vocab_size() const override;
  std::optional<int32_t> bos_id() const override;
  std::vector<int32_t> eos_ids() const override;
  std::string_view kind() const override { return "hf-bpe"; }

  // The id of a token spelled `content` (added tokens first, then the BPE vocab), if any.
  std::optional<int32_t> TokenToId(std::string_view content) const;

  // The parsed tokenizer.json; defined in bpe_tokenizer.cc (public only so that file's parsing helpers
  // can name it).
  struct Impl;

 private:
  explicit HfBpeTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_BPE_TOKENIZER_H_
