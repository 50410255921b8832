// `qrag chat`: talk to a served instruct model with its own chat template (qrag.v1.Inference.ChatStream).
//
//   qrag chat [--message TEXT] [--system TEXT] [--rag COLLECTION ...] [--model NAME] [--max-tokens N]
//             [--temperature T] [--top-p P] [--seed S] [--show-prompt]
//
// With --message: one turn (system prompt optional), the answer streamed to stdout and a newline, usage to
// stderr; exit 0, or 1 with "qrag: CODE: message" on an RPC error. For scripts.
//
// Without it: an interactive session. Each line typed is a user message; the answer streams back and the
// conversation (history) is resent with every turn. Line editing and history through libedit when stdin is a
// terminal; otherwise lines are read from stdin as they come (pipes, tests). Commands: /reset (forget the
// conversation), /system TEXT (set the system prompt; /system alone clears it), /rag COLLECTION (retrieve from
// it for every turn; /rag alone turns retrieval off), /help, /quit (or end of input). Ctrl-C while an answer
// streams cancels that answer (the server frees its work at once; the unanswered message is dropped from the
// history); Ctrl-C at the prompt does not end the session. An RPC error is printed and the session goes on.
#ifndef QRAG_CLIENT_CHAT_CLI_H_
#define QRAG_CLIENT_CHAT_CLI_H_

#include <cstdint>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "client/client.h"
#include "client/rag_cli.h"

namespace qrag::client {

struct ChatArgs {
  std::optional<std::string> message;  // one-shot
  std::string system;
  std::string model;
  std::optional<int32_t> max_tokens;  // unset: 512
  std::optional<double> temperature, top_p;
  int32_t top_k = 0;
  std::optional<uint64_t> seed;
  bool show_prompt = false;  // print each turn's rendered prompt to stderr (ApplyChatTemplate)
};

// Adds the chat command, its flags into *args and its --rag flags into *rag.
CLI::App* AddChatCommand(CLI::App& app, ChatArgs* args, RagArgs* rag);
absl::Status ValidateChatArgs(const ChatArgs& args);

// Runs it; returns the exit code.
int RunChat(Client& client, const ChatArgs& args, const RagArgs& rag, const CallOptions& call);

}  // namespace qrag::client

#endif  // QRAG_CLIENT_CHAT_CLI_H_
