#include "server/chat/chat_format.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "server/common/json_parse.h"
#include "server/common/mapped_file.h"
#include "server/common/status.h"
#include "server/model/gguf.h"
#include "server/model/utf8.h"

namespace qrag::chat {
namespace {

namespace fs = std::filesystem;

constexpr char kProbeQuestion[] = "qrag probe question";
constexpr char kProbeAnswer[] = "qrag probe answer";
constexpr char kProbeSystem[] = "qrag probe system";

// The first four bytes of `path` are "GGUF".
bool HasGgufMagic(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  char magic[4] = {};
  const size_t n = std::fread(magic, 1, 4, f);
  std::fclose(f);
  return n == 4 && std::string_view(magic, 4) == "GGUF";
}

// A token text named by a GGUF id key, when the key and the token exist.
std::optional<std::string> GgufTokenText(const model::GgufFile& file, absl::string_view key) {
  absl::StatusOr<uint64_t> id = file.GetUint(key);
  if (!id.ok()) return std::nullopt;
  absl::StatusOr<const std::vector<absl::string_view>*> tokens = file.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok() || *id >= (*tokens)->size()) return std::nullopt;
  return std::string((**tokens)[*id]);
}

absl::StatusOr<std::optional<TemplateSource>> FromGguf(const std::string& path) {
  QRAG_ASSIGN_OR_RETURN(const model::GgufFile file, model::GgufFile::Open(path));
  if (!file.Has("tokenizer.chat_template")) return std::nullopt;
  TemplateSource source;
  QRAG_ASSIGN_OR_RETURN(source.text, file.GetString("tokenizer.chat_template"));
  source.origin = absl::StrCat(path, ": tokenizer.chat_template");
  source.bos_token = GgufTokenText(file, "tokenizer.ggml.bos_token_id");
  source.eos_token = GgufTokenText(file, "tokenizer.ggml.eos_token_id");
  return source;
}

// tokenizer_config.json's bos_token / eos_token: a string or {"content": string}.
absl::StatusOr<std::optional<std::string>> TokenField(const nlohmann::json& config, const char* key,
                                                      const std::string& file) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": `", key, "` must be a string or an object with a string `content`"));
}

absl::StatusOr<std::optional<TemplateSource>> FromHfDirectory(const std::string& dir) {
  const fs::path config_path = fs::path(dir) / "tokenizer_config.json";
  const fs::path jinja_path = fs::path(dir) / "chat_template.jinja";
  std::error_code ec;
  TemplateSource source;
  bool found = false;
  if (fs::is_regular_file(jinja_path, ec)) {
    QRAG_ASSIGN_OR_RETURN(source.text, ReadFileToString(jinja_path.string()));
    source.origin = jinja_path.string();
    found = true;
  }
  if (fs::is_regular_file(config_path, ec)) {
    const std::string file = config_path.string();
    QRAG_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(file));
    QRAG_ASSIGN_OR_RETURN(const nlohmann::json config, ParseJsonBounded(text, file));
    if (!config.is_object()) return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
    QRAG_ASSIGN_OR_RETURN(source.bos_token, TokenField(config, "bos_token", file));
    QRAG_ASSIGN_OR_RETURN(source.eos_token, TokenField(config, "eos_token", file));
    auto it = config.find("chat_template");
    if (!found && it != config.end() && !it->is_null()) {
      if (it->is_string()) {
        source.text = it->get<std::string>();
        source.origin = absl::StrCat(file, ": chat_template");
      } else if (it->is_array()) {
        // A list of named templates: "default", else the first.
        const nlohmann::json* pick = nullptr;
        for (const nlohmann::json& entry : *it) {
          if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") ||
              !entry["name"].is_string() || !entry["template"].is_string()) {
            return absl::InvalidArgumentError(absl::StrCat(
                file, ": chat_template: every entry of the list must be {\"name\": string, \"template\": string}"));
          }
          if (pick == nullptr || entry["name"] == "default") pick = &entry;
          if (entry["name"] == "default") break;
        }
        if (pick == nullptr) return absl::InvalidArgumentError(absl::StrCat(file, ": chat_template is an empty list"));
        source.text = (*pick)["template"].get<std::string>();
        source.origin = absl::StrCat(file, ": chat_template \"", (*pick)["name"].get<std::string>(), "\"");
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(file, ": chat_template must be a string or a list of {name, template}"));
      }
      found = true;
    }
  }
  if (!found) return std::nullopt;
  return source;
}

nlohmann::json MessagesJson(absl::Span<const Message> messages) {
  nlohmann::json list = nlohmann::json::array();
  for (const Message& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  return list;
}

}  // namespace

bool IsKnownRole(std::string_view role) {
  return role == "system" || role == "user" || role == "assistant" || role == "tool";
}

absl::StatusOr<std::optional<TemplateSource>> FindChatTemplate(const std::string& model_path,
                                                               const std::string& override_path) {
  if (!override_path.empty()) {
    std::error_code ec;
    if (!fs::is_regular_file(override_path, ec)) {
      return absl::NotFoundError(absl::StrCat("--chat-template ", override_path, ": no such file"));
    }
    TemplateSource source;
    QRAG_ASSIGN_OR_RETURN(source.text, ReadFileToString(override_path));
    source.origin = override_path;
    // The token texts still come from the model, when it names them.
    absl::StatusOr<std::optional<TemplateSource>> own = FindChatTemplate(model_path, "");
    if (own.ok() && own->has_value()) {
      source.bos_token = (*own)->bos_token;
      source.eos_token = (*own)->eos_token;
    }
    return source;
  }
  std::error_code ec;
  if (fs::is_directory(model_path, ec)) return FromHfDirectory(model_path);
  if (HasGgufMagic(model_path)) return FromGguf(model_path);
  return std::nullopt;
}

absl::StatusOr<std::unique_ptr<ChatFormat>> ChatFormat::Create(TemplateSource source,
                                                               const model::Tokenizer* tokenizer) {
  absl::StatusOr<jinja::Template> parsed = jinja::Template::Parse(source.text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("chat template ", source.origin, ": ", parsed.status().message()));
  }
  std::unique_ptr<ChatFormat> format(new ChatFormat(std::move(source), *std::move(parsed), tokenizer));
  format->Probe();
  return format;
}

absl::StatusOr<jinja::RenderedText> ChatFormat::Render(absl::Span<const Message> messages,
                                                       bool add_generation_prompt) const {
  std::vector<std::pair<std::string, jinja::Value>> vars;
  QRAG_ASSIGN_OR_RETURN(jinja::Value list, jinja::Value::FromJson(MessagesJson(messages), jinja::Trust::kUntrusted));
  vars.emplace_back("messages", std::move(list));
  vars.emplace_back("add_generation_prompt", jinja::Value::Bool(add_generation_prompt));
  if (source_.bos_token.has_value()) vars.emplace_back("bos_token", jinja::Value::String(*source_.bos_token));
  if (source_.eos_token.has_value()) vars.emplace_back("eos_token", jinja::Value::String(*source_.eos_token));
  QRAG_ASSIGN_OR_RETURN(jinja::Value context, jinja::Value::Dict(std::move(vars)));
  jinja::RenderOptions options;
  options.now = absl::ToCivilSecond(absl::Now(), absl::LocalTimeZone());
  absl::StatusOr<jinja::RenderedText> out = template_.Render(context, options);
  if (!out.ok() && jinja::IsRaiseException(out.status())) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model's chat template rejected the conversation: ", out.status().message()));
  }
  return out;
}

void ChatFormat::Probe() {
  // End of turn: the first special token the template writes after an assistant message's content.
  const std::vector<std::vector<Message>> conversations = {
      {{"user", kProbeQuestion}, {"assistant", kProbeAnswer}},
      {{"system", kProbeSystem}, {"user", kProbeQuestion}, {"assistant", kProbeAnswer}},
      {{"user", kProbeQuestion}, {"assistant", kProbeAnswer}, {"user", kProbeQuestion}}};
  const std::optional<int32_t> bos = tokenizer_->bos_id();
  for (const std::vector<Message>& conversation : conversations) {
    absl::StatusOr<jinja::RenderedText> r = Render(conversation, false);
    if (!r.ok()) continue;
    const size_t at = r->text.find(kProbeAnswer);
    if (at == std::string::npos) continue;
    const size_t begin = at + sizeof(kProbeAnswer) - 1;
    size_t end = r->text.size();
    for (const jinja::Span& u : r->untrusted) {
      if (u.begin >= begin) {
        end = u.begin;
        break;
      }
    }
    absl::StatusOr<std::vector<int32_t>> ids =
        tokenizer_->Encode(std::string_view(r->text).substr(begin, end - begin),
                           {.add_bos = false, .parse_special = true});
    if (!ids.ok()) continue;
    for (int32_t id : *ids) {
      if (bos.has_value() && id == *bos) continue;
      absl::StatusOr<std::string> text = tokenizer_->Decode(std::vector<int32_t>{id});
      if (text.ok() && text->empty()) {  // special tokens decode to nothing
        end_of_turn_ids_.push_back(id);
        break;
      }
    }
    break;
  }
  // System messages: refused (raise_exception) or silently dropped both count as not accepted.
  absl::StatusOr<jinja::RenderedText> s = Render({{"system", kProbeSystem}, {"user", kProbeQuestion}}, true);
  accepts_system_ = s.ok() && absl::StrContains(s->text, kProbeSystem);
}

absl::StatusOr<ChatPrompt> ChatFormat::Apply(absl::Span<const Message> messages, bool add_generation_prompt) const {
  if (messages.empty()) return absl::InvalidArgumentError("messages is empty: give at least one message");
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!IsKnownRole(messages[i].role)) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role \"", messages[i].role.substr(0, 64),
                                                     "\" is not one of system, user, assistant, tool"));
    }
    QRAG_RETURN_IF_ERROR(model::CheckUtf8(messages[i].content, absl::StrCat("messages[", i, "].content")));
  }
  QRAG_ASSIGN_OR_RETURN(jinja::RenderedText rendered, Render(messages, add_generation_prompt));
  ChatPrompt prompt;
  for (const jinja::Span& s : rendered.TrustedSpans()) prompt.trusted.push_back({s.begin, s.end});
  prompt.text = std::move(rendered.text);
  QRAG_ASSIGN_OR_RETURN(
      prompt.token_ids,
      tokenizer_->Encode(prompt.text, {.add_bos = false, .parse_special = true, .special_ranges = &prompt.trusted}));
  if (const std::optional<int32_t> bos = tokenizer_->bos_id();
      bos.has_value() && (prompt.token_ids.empty() || prompt.token_ids.front() != *bos)) {
    prompt.token_ids.insert(prompt.token_ids.begin(), *bos);
  }
  return prompt;
}

std::vector<Message> WithPassages(absl::Span<const Message> messages, const std::vector<std::string>& passages,
                                  bool accepts_system) {
  std::vector<Message> out(messages.begin(), messages.end());
  if (passages.empty()) return out;
  std::string block = "Answer using the following passages. Cite them by number, and say so when they do not "
                      "hold the answer.\n";
  for (size_t i = 0; i < passages.size(); ++i) absl::StrAppend(&block, "\n[", i + 1, "] ", passages[i]);
  if (accepts_system) {
    if (!out.empty() && out.front().role == "system") {
      out.front().content = absl::StrCat(block, "\n\n", out.front().content);
    } else {
      out.insert(out.begin(), Message{"system", std::move(block)});
    }
    return out;
  }
  for (auto it = out.rbegin(); it != out.rend(); ++it) {
    if (it->role == "user") {
      it->content = absl::StrCat(block, "\n\n", it->content);
      return out;
    }
  }
  out.push_back(Message{"user", std::move(block)});
  return out;
}

}  // namespace qrag::chat
