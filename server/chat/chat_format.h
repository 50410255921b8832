// Chat: a model's own chat template (Jinja, server/jinja) applied to a conversation, and the rendered prompt
// tokenized the way the model expects it.
//
// Template sources (FindChatTemplate), first found wins:
//   1. an explicit file (qrag-server / qrag-run --chat-template FILE);
//   2. a GGUF file's `tokenizer.chat_template` (bos/eos token texts from tokenizer.ggml.tokens);
//   3. a Hugging Face directory's `chat_template.jinja`, else tokenizer_config.json's `chat_template` (a string,
//      or a list of {name, template}: the one named "default", else the first); bos_token/eos_token from
//      tokenizer_config.json (a string or an {"content": ...} object).
// A model without any: no ChatFormat; Chat requests are FAILED_PRECONDITION naming --chat-template.
//
// Rendering: the template sees `messages` (a list of {role, content}, UNTRUSTED), `add_generation_prompt`,
// and `bos_token` / `eos_token` when the model has them (trusted), plus raise_exception and strftime_now
// (local time), as transformers' apply_chat_template gives them.
//
// Tokenizing (the guarantee against prompt injection): special-token text (`<|im_end|>`, `<|eot_id|>`, ...) is
// parsed as the special token only where the TEMPLATE wrote it: the Jinja engine tracks, byte by byte, which
// output came from message contents, and the tokenizer matches special tokens only inside the trusted spans
// (model::EncodeOptions::special_ranges). The text is still tokenized as one piece, so the ids equal
// llama.cpp's / transformers' tokenization of the rendered prompt whenever the messages hold no special-token
// text. BOS: when the tokenizer adds one and the rendered text does not already start with it.
//
// End of turn: generation stops at the tokenizer's EOS ids and at the template's turn terminator, found by
// rendering a probe conversation and taking the first special token the template writes after an assistant
// message's content (<|im_end|>, <|eot_id|>, <end_of_turn>, <|end|>, </s>...).
//
// Immutable after Create; Apply may run concurrently from many threads.
#ifndef QRAG_SERVER_CHAT_CHAT_FORMAT_H_
#define QRAG_SERVER_CHAT_CHAT_FORMAT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/jinja/template.h"
#include "server/model/tokenizer.h"

namespace qrag::chat {

struct Message {
  std::string role;  // "system", "user", "assistant", "tool"
  std::string content;
};

// Roles a request may use (others are INVALID_ARGUMENT before rendering).
bool IsKnownRole(std::string_view role);

struct TemplateSource {
  std::string text;    // the Jinja source
  std::string origin;  // where it came from, for messages ("--chat-template FILE", "FILE: tokenizer.chat_template")
  std::optional<std::string> bos_token;  // the token texts the template may print
  std::optional<std::string> eos_token;
};

// The template for `model_path` (a .gguf file, an HF directory or a llama2.c file), or `override_path` when
// non-empty. nullopt: the model has none. Errors: an unreadable override (NOT_FOUND / INVALID_ARGUMENT naming
// it), a malformed tokenizer_config.json or chat_template entry (INVALID_ARGUMENT naming file and key).
absl::StatusOr<std::optional<TemplateSource>> FindChatTemplate(const std::string& model_path,
                                                               const std::string& override_path);

struct ChatPrompt {
  std::string text;                          // the rendered template
  std::vector<model::TextRange> trusted;     // byte ranges the template wrote (special tokens parse there)
  std::vector<int32_t> token_ids;            // what the model sees
};

class ChatFormat {
 public:
  // Parses the template: INVALID_ARGUMENT "chat template ORIGIN: template syntax error at line L, column C: ...".
  // `tokenizer` is not owned and must outlive the ChatFormat.
  static absl::StatusOr<std::unique_ptr<ChatFormat>> Create(TemplateSource source, const model::Tokenizer* tokenizer);

  // Renders and tokenizes. INVALID_ARGUMENT: an empty conversation, an unknown role, content that is not
  // UTF-8, or the template rejecting the conversation (its raise_exception message, prefixed "chat template: ");
  // RESOURCE_EXHAUSTED from the sandbox limits.
  absl::StatusOr<ChatPrompt> Apply(absl::Span<const Message> messages, bool add_generation_prompt) const;

  // Tokens that end an assistant turn besides the tokenizer's EOS ids (may be empty).
  const std::vector<int32_t>& end_of_turn_ids() const { return end_of_turn_ids_; }
  // Whether the template renders a system message (some, e.g. Gemma 2, raise on one).
  bool accepts_system() const { return accepts_system_; }
  const std::string& origin() const { return source_.origin; }

 private:
  ChatFormat(TemplateSource source, jinja::Template tmpl, const model::Tokenizer* tokenizer)
      : source_(std::move(source)), template_(std::move(tmpl)), tokenizer_(tokenizer) {}
  absl::StatusOr<jinja::RenderedText> Render(absl::Span<const Message> messages, bool add_generation_prompt) const;
  void Probe();

  TemplateSource source_;
  jinja::Template template_;
  const model::Tokenizer* tokenizer_;
  std::vector<int32_t> end_of_turn_ids_;
  bool accepts_system_ = true;
};

// Passages for a retrieval-augmented chat, put into the conversation (the documented default): a system
// message "Answer using the following passages...\n\n[1] ...\n[2] ..." placed first, merged before the text
// of an existing first system message; when the template does not accept system messages, the same block is
// put before the content of the last user message. Returns the new conversation.
std::vector<Message> WithPassages(absl::Span<const Message> messages, const std::vector<std::string>& passages,
                                  bool accepts_system);

}  // namespace qrag::chat

#endif  // QRAG_SERVER_CHAT_CHAT_FORMAT_H_
