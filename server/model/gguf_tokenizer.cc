#include "server/model/gguf_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/common/status.h"
#include "server/model/bpe_tokenizer.h"
#include "server/model/sentencepiece_tokenizer.h"
#include "server/model/utf8.h"

namespace qrag::model {
namespace {

using nlohmann::json;

// llama.cpp's regexes (llm_tokenizer_bpe in src/llama-vocab.cpp, its "adapted" forms).
constexpr char kGpt2Regex[] = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
constexpr char kLlama3Regex[] =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kQwen2Regex[] =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct PreTokenizer {
  std::vector<std::string> regexes;
  bool ignore_merges = false;
  bool add_bos = false;  // llama.cpp's default when the file does not say
};

absl::StatusOr<PreTokenizer> FindPreTokenizer(const GgufFile& f, const std::string& pre) {
  if (pre == "default") {
    return PreTokenizer{{R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Regex, R"(\p{N}+)", "[0-9][0-9][0-9]"}};
  }
  if (pre == "gpt2" || pre == "gpt-2") return PreTokenizer{{kGpt2Regex}};
  if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe") {
    return PreTokenizer{{kLlama3Regex}, /*ignore_merges=*/true, /*add_bos=*/true};
  }
  if (pre == "qwen2") return PreTokenizer{{kQwen2Regex}};
  if (pre == "smollm") return PreTokenizer{{R"(\p{N})", kGpt2Regex}};
  return absl::UnimplementedError(absl::StrCat(
      f.source(), ": key 'tokenizer.ggml.pre' = '", pre,
      "' is not supported (supported: default, gpt2, gpt-2, llama3, llama-v3, llama-bpe, qwen2, smollm)"));
}

absl::StatusOr<std::optional<int32_t>> OptionalId(const GgufFile& f, const std::string& key, int32_t vocab) {
  if (!f.Has(key)) return std::optional<int32_t>();
  QRAG_ASSIGN_OR_RETURN(int64_t id, f.GetInt(key));
  // llama.cpp writes -1 (as uint32 0xFFFFFFFF in some files) for "none".
  if (id == -1 || id == 0xFFFFFFFFll) return std::optional<int32_t>();
  if (id < 0 || id >= vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat(f.source(), ": key '", key, "' = ", id, " is not an id of the ", vocab, "-token vocabulary"));
  }
  return std::optional<int32_t>(static_cast<int32_t>(id));
}

absl::StatusOr<std::vector<GgufTokenType>> TokenTypes(const GgufFile& f, size_t n) {
  std::vector<GgufTokenType> types(n, GgufTokenType::kNormal);
  if (!f.Has("tokenizer.ggml.token_type")) return types;
  QRAG_ASSIGN_OR_RETURN(std::vector<int64_t> raw, f.GetIntArray("tokenizer.ggml.token_type"));
  if (raw.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(f.source(), ": key 'tokenizer.ggml.token_type' has ", raw.size(),
                                                   " entries for ", n, " tokens"));
  }
  for (size_t i = 0; i < n; ++i) {
    if (raw[i] < 0 || raw[i] > 6) {
      return absl::InvalidArgumentError(absl::StrCat(f.source(), ": key 'tokenizer.ggml.token_type': token ", i,
                                                     " has unknown type ", raw[i]));
    }
    types[i] = static_cast<GgufTokenType>(raw[i]);
  }
  return types;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGpt2(const GgufFile& f, const std::vector<absl::string_view>& tokens,
                                                    const std::vector<GgufTokenType>& types) {
  const int32_t n = static_cast<int32_t>(tokens.size());
  std::string pre_name = "default";
  if (f.Has("tokenizer.ggml.pre")) {
    QRAG_ASSIGN_OR_RETURN(pre_name, f.GetString("tokenizer.ggml.pre"));
  }
  QRAG_ASSIGN_OR_RETURN(PreTokenizer pre, FindPreTokenizer(f, pre_name));
  QRAG_ASSIGN_OR_RETURN(const std::vector<absl::string_view>* merges, f.GetStringArray("tokenizer.ggml.merges"));
  QRAG_ASSIGN_OR_RETURN(GgufSpecialTokens special, ReadGgufSpecialTokens(f, n));
  if (!f.Has("tokenizer.ggml.add_bos_token")) special.add_bos = pre.add_bos;
  if (special.add_eos) {
    return absl::UnimplementedError(
        absl::StrCat(f.source(), ": key 'tokenizer.ggml.add_eos_token' = true with a gpt2 tokenizer"));
  }

  json root = json::object();
  json vocab = json::object();
  for (int32_t i = 0; i < n; ++i) vocab[std::string(tokens[i])] = i;
  json merge_list = json::array();
  for (absl::string_view m : *merges) merge_list.push_back(std::string(m));
  root["model"] = {{"type", "BPE"}, {"vocab", std::move(vocab)}, {"merges", std::move(merge_list)},
                   {"ignore_merges", pre.ignore_merges}};
  root["normalizer"] = nullptr;
  json steps = json::array();
  for (const std::string& re : pre.regexes) {
    steps.push_back({{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}});
  }
  steps.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}});
  root["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", std::move(steps)}};
  root["decoder"] = {{"type", "ByteLevel"}};
  json added = json::array();
  for (int32_t i = 0; i < n; ++i) {
    const GgufTokenType t = types[i];
    if (t != GgufTokenType::kControl && t != GgufTokenType::kUnknown && t != GgufTokenType::kUserDefined) continue;
    if (tokens[i].empty()) continue;
    added.push_back({{"id", i},
                     {"content", std::string(tokens[i])},
                     {"special", t != GgufTokenType::kUserDefined},
                     {"normalized", false}});
  }
  root["added_tokens"] = std::move(added);
  if (special.add_bos && special.bos.has_value()) {
    root["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<bos>"}}}}, {{"Sequence", {{"id", "A"}}}}})},
        {"special_tokens", {{"<bos>", {{"ids", json::array({*special.bos})}}}}}};
  } else {
    root["post_processor"] = nullptr;
  }
  json eos = json::array();
  for (const std::optional<int32_t>& id : {special.eos, special.eot, special.eom}) {
    if (id.has_value()) eos.push_back(*id);
  }
  const json generation = {{"eos_token_id", std::move(eos)}};
  auto tok = HfBpeTokenizer::FromJsonValues(root, nullptr, "", &generation, f.source(), f.source());
  if (!tok.ok()) return tok.status();
  return std::unique_ptr<Tokenizer>(*std::move(tok));
}

// ---- "llama": SentencePiece BPE -------------------------------------------------------------------------

// Protocol-buffer wire format, just what a sentencepiece ModelProto needs (sentencepiece_model.proto:
// ModelProto.pieces = 1 {piece = 1, score = 2, type = 3}, trainer_spec = 2 {model_type = 3, byte_fallback = 35,
// unk_id = 40, bos_id = 41, eos_id = 42, pad_id = 43}, normalizer_spec = 3 {name = 1, add_dummy_prefix = 3,
// remove_extra_whitespaces = 4}).
void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void PutTag(std::string& out, int field, int wire) { PutVarint(out, static_cast<uint64_t>(field) << 3 | wire); }
void PutInt(std::string& out, int field, int64_t v) {
  PutTag(out, field, 0);
  PutVarint(out, static_cast<uint64_t>(v));
}
void PutBytes(std::string& out, int field, absl::string_view bytes) {
  PutTag(out, field, 2);
  PutVarint(out, bytes.size());
  out.append(bytes.data(), bytes.size());
}
void PutFloat(std::string& out, int field, float v) {
  PutTag(out, field, 5);
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}

// Splits `text` at the texts of `specials` (longest first at each position, as llama.cpp's
// tokenizer_st_partition finds them), leaving -1 ids for the text between.
struct Fragment {
  std::string_view text;
  int32_t id = -1;
};
// Only matches that `options` allows (SpecialTokenAllowed) split.
std::vector<Fragment> SplitAtSpecials(std::string_view text,
                                      const std::vector<std::pair<std::string, int32_t>>& specials,
                                      const EncodeOptions& options) {
  std::vector<Fragment> out;
  size_t start = 0, pos = 0;
  while (pos < text.size()) {
    const std::pair<std::string, int32_t>* hit = nullptr;
    for (const auto& s : specials) {  // sorted longest first
      if (text.compare(pos, s.first.size(), s.first) == 0 &&
          SpecialTokenAllowed(options, pos, pos + s.first.size())) {
        hit = &s;
        break;
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    if (start < pos) out.push_back({text.substr(start, pos - start)});
    out.push_back({text.substr(pos, hit->first.size()), hit->second});
    pos += hit->first.size();
    start = pos;
  }
  if (start < text.size()) out.push_back({text.substr(start)});
  return out;
}

// llama.cpp's SPM tokenizer over SentencePieceTokenizer (the library does the BPE merges by score, the
// dummy-prefix space and byte fallback); control and unknown token texts are matched first with
// parse_special (the library never matches them), and each text fragment, being at the start or after a
// special token, gets the dummy prefix as llama.cpp gives it.
class GgufSpmTokenizer final : public Tokenizer {
 public:
  GgufSpmTokenizer(std::unique_ptr<SentencePieceTokenizer> sp, GgufSpecialTokens special,
                   std::vector<std::pair<std::string, int32_t>> controls)
      : sp_(std::move(sp)), special_(std::move(special)), controls_(std::move(controls)) {}

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, const EncodeOptions& options) const override {
    std::vector<int32_t> ids;
    if (options.add_bos && special_.add_bos && special_.bos.has_value()) ids.push_back(*special_.bos);
    const std::vector<Fragment> parts =
        options.parse_special ? SplitAtSpecials(text, controls_, options) : std::vector<Fragment>{{text}};
    for (const Fragment& part : parts) {
      if (part.id >= 0) {
        ids.push_back(part.id);
        continue;
      }
      absl::StatusOr<std::vector<int32_t>> piece = sp_->Encode(part.text, {.add_bos = false});
      if (!piece.ok() && piece.status().code() == absl::StatusCode::kInternal) {
        // The library checks its own invariants while encoding; a vocabulary it accepted but cannot encode
        // with is a fault of the file, not of qrag.
        return absl::InvalidArgumentError(
            absl::StrCat("the SentencePiece vocabulary cannot encode this text: ", piece.status().message()));
      }
      if (!piece.ok()) return piece.status();
      ids.insert(ids.end(), piece->begin(), piece->end());
    }
    if (options.add_bos && special_.add_eos && special_.eos.has_value()) ids.push_back(*special_.eos);
    return ids;
  }
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override { return sp_->Decode(ids); }
  int32_t vocab_size() const override { return sp_->vocab_size(); }
  std::optional<int32_t> bos_id() const override {
    return special_.add_bos ? special_.bos : std::optional<int32_t>();
  }
  std::vector<int32_t> eos_ids() const override {
    std::vector<int32_t> out;
    for (const std::optional<int32_t>& id : {special_.eos, special_.eot, special_.eom}) {
      if (id.has_value() && std::find(out.begin(), out.end(), *id) == out.end()) out.push_back(*id);
    }
    return out;
  }
  std::string_view kind() const override { return "gguf-spm"; }

 private:
  std::unique_ptr<SentencePieceTokenizer> sp_;
  GgufSpecialTokens special_;
  std::vector<std::pair<std::string, int32_t>> controls_;  // control/unknown token texts, longest first
};

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSpm(const GgufFile& f, const std::vector<absl::string_view>& tokens,
                                                   const std::vector<GgufTokenType>& types) {
  const int32_t n = static_cast<int32_t>(tokens.size());
  QRAG_ASSIGN_OR_RETURN(std::vector<float> scores, f.GetFloatArray("tokenizer.ggml.scores"));
  if (scores.size() != tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat(f.source(), ": key 'tokenizer.ggml.scores' has ", scores.size(),
                                                   " entries for ", n, " tokens"));
  }
  QRAG_ASSIGN_OR_RETURN(GgufSpecialTokens special, ReadGgufSpecialTokens(f, n));
  if (!f.Has("tokenizer.ggml.add_bos_token")) special.add_bos = true;  // llama.cpp's default for SPM
  bool add_space_prefix = true;
  if (f.Has("tokenizer.ggml.add_space_prefix")) {
    QRAG_ASSIGN_OR_RETURN(add_space_prefix, f.GetBool("tokenizer.ggml.add_space_prefix"));
  }
  // SentencePiece holds each piece once (a duplicate leaves the library unable to encode some text).
  absl::flat_hash_map<absl::string_view, int32_t> seen;
  for (int32_t i = 0; i < n; ++i) {
    QRAG_RETURN_IF_ERROR(CheckUtf8(std::string_view(tokens[i].data(), tokens[i].size()),
                                   absl::StrCat(f.source(), ": key 'tokenizer.ggml.tokens': token ", i)));
    auto [it, inserted] = seen.emplace(tokens[i], i);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(f.source(), ": key 'tokenizer.ggml.tokens': tokens ", it->second,
                                                     " and ", i, " are both '", tokens[i],
                                                     "' (a SentencePiece vocabulary holds each piece once)"));
    }
  }
  std::string proto;
  std::vector<std::pair<std::string, int32_t>> controls;
  for (int32_t i = 0; i < n; ++i) {
    std::string piece;
    PutBytes(piece, 1, tokens[i]);
    PutFloat(piece, 2, scores[i]);
    const GgufTokenType t = types[i] == GgufTokenType::kUndefined ? GgufTokenType::kNormal : types[i];
    PutInt(piece, 3, static_cast<int64_t>(t));  // sentencepiece's Type numbers are llama.cpp's
    PutBytes(proto, 1, piece);
    if ((t == GgufTokenType::kControl || t == GgufTokenType::kUnknown) && !tokens[i].empty()) {
      controls.emplace_back(std::string(tokens[i]), i);
    }
  }
  std::stable_sort(controls.begin(), controls.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  auto control_or_none = [&](const std::optional<int32_t>& id) -> int64_t {
    return id.has_value() && types[*id] == GgufTokenType::kControl ? *id : -1;
  };
  // Byte fallback needs all 256 <0xXX> pieces (sentencepiece refuses the model otherwise); llama.cpp's vocabs
  // have them.
  const int64_t byte_pieces = std::count(types.begin(), types.end(), GgufTokenType::kByte);
  std::string trainer;
  PutInt(trainer, 3, 2);  // model_type = BPE
  PutInt(trainer, 35, byte_pieces == 256 ? 1 : 0);  // byte_fallback
  PutInt(trainer, 40, special.unk.value_or(0));
  PutInt(trainer, 41, control_or_none(special.bos));
  PutInt(trainer, 42, control_or_none(special.eos));
  PutInt(trainer, 43, control_or_none(special.pad));
  PutBytes(proto, 2, trainer);
  std::string normalizer;
  PutBytes(normalizer, 1, "identity");
  PutInt(normalizer, 3, add_space_prefix ? 1 : 0);
  PutInt(normalizer, 4, 0);  // keep whitespace runs
  PutBytes(proto, 3, normalizer);
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<SentencePieceTokenizer> sp, SentencePieceTokenizer::FromBytes(proto, f.source()));
  return std::unique_ptr<Tokenizer>(new GgufSpmTokenizer(std::move(sp), special, std::move(controls)));
}

}  // namespace

absl::StatusOr<GgufSpecialTokens> ReadGgufSpecialTokens(const GgufFile& f, int32_t vocab_size) {
  GgufSpecialTokens s;
  QRAG_ASSIGN_OR_RETURN(s.bos, OptionalId(f, "tokenizer.ggml.bos_token_id", vocab_size));
  QRAG_ASSIGN_OR_RETURN(s.eos, OptionalId(f, "tokenizer.ggml.eos_token_id", vocab_size));
  QRAG_ASSIGN_OR_RETURN(s.eot, OptionalId(f, "tokenizer.ggml.eot_token_id", vocab_size));
  QRAG_ASSIGN_OR_RETURN(s.eom, OptionalId(f, "tokenizer.ggml.eom_token_id", vocab_size));
  QRAG_ASSIGN_OR_RETURN(s.pad, OptionalId(f, "tokenizer.ggml.padding_token_id", vocab_size));
  QRAG_ASSIGN_OR_RETURN(s.unk, OptionalId(f, "tokenizer.ggml.unknown_token_id", vocab_size));
  if (f.Has("tokenizer.ggml.add_bos_token")) {
    QRAG_ASSIGN_OR_RETURN(s.add_bos, f.GetBool("tokenizer.ggml.add_bos_token"));
  }
  if (f.Has("tokenizer.ggml.add_eos_token")) {
    QRAG_ASSIGN_OR_RETURN(s.add_eos, f.GetBool("tokenizer.ggml.add_eos_token"));
  }
  return s;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const GgufFile& f) {
  QRAG_ASSIGN_OR_RETURN(std::string model, f.GetString("tokenizer.ggml.model"));
  QRAG_ASSIGN_OR_RETURN(const std::vector<absl::string_view>* tokens, f.GetStringArray("tokenizer.ggml.tokens"));
  if (tokens->empty() || tokens->size() > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 2)) {
    return absl::InvalidArgumentError(
        absl::StrCat(f.source(), ": key 'tokenizer.ggml.tokens' has ", tokens->size(), " tokens"));
  }
  QRAG_ASSIGN_OR_RETURN(std::vector<GgufTokenType> types, TokenTypes(f, tokens->size()));
  if (model == "gpt2") return LoadGpt2(f, *tokens, types);
  if (model == "llama") return LoadSpm(f, *tokens, types);
  return absl::UnimplementedError(absl::StrCat(f.source(), ": key 'tokenizer.ggml.model' = '", model,
                                               "' is not supported (supported: gpt2, llama)"));
}

}  // namespace qrag::model
