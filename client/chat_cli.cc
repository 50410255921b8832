#include "client/chat_cli.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/common/cli.h"

// libedit's readline-compatible API (BSD licence).
#include <editline/readline.h>

namespace qrag::client {
namespace {

constexpr int32_t kDefaultMaxTokens = 512;

std::atomic<bool> g_interrupted{false};

void OnInterrupt(int) { g_interrupted.store(true); }

// SIGINT sets g_interrupted instead of ending the process (SA_RESTART: reads at the prompt carry on).
void CatchInterrupts() {
  struct sigaction sa = {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
}

int Error(const absl::Status& status) {
  std::fprintf(stderr, "qrag: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

class ChatSession {
 public:
  ChatSession(Client& client, const ChatArgs& args, const RagArgs& rag, const CallOptions& call)
      : client_(client), args_(args), rag_(rag), call_(call), system_(args.system) {}

  // One user turn: streams the answer to stdout. OK, CANCELLED (Ctrl-C) or the RPC's error; the history
  // keeps the exchange only when it completed.
  absl::Status Turn(const std::string& text) {
    history_.push_back({"user", text});
    qrag::v1::ChatRequest request = Request();
    if (args_.show_prompt) {
      absl::StatusOr<qrag::v1::ApplyChatTemplateResponse> shown = client_.ApplyChatTemplate(request, call_);
      if (shown.ok()) {
        std::fprintf(stderr, "qrag: prompt (%d tokens):\n%s\n", shown->token_ids_size(), shown->prompt().c_str());
      }
    }
    std::string answer;
    g_interrupted.store(false);
    absl::StatusOr<qrag::v1::ChatStreamResponse> last = client_.ChatStream(
        request,
        [&answer](const qrag::v1::ChatStreamResponse& m) {
          if (!m.passages().empty()) PrintPassages(m.passages(), qrag::v1::Timings());
          std::fwrite(m.text().data(), 1, m.text().size(), stdout);
          std::fflush(stdout);
          answer += m.text();
          return !g_interrupted.load();
        },
        call_);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    if (!last.ok()) {
      history_.pop_back();
      return last.status();
    }
    history_.push_back({"assistant", answer});
    if (last->timings().embed_seconds() > 0) PrintPassages({}, last->timings());
    std::fprintf(stderr, "qrag: finish=%s prompt_tokens=%d completion_tokens=%d time_to_first_token=%.3fs total=%.3fs\n",
                 last->finish_reason().c_str(), last->usage().prompt_tokens(), last->usage().completion_tokens(),
                 last->timings().time_to_first_token_seconds(), last->timings().total_seconds());
    return absl::OkStatus();
  }

  // A line starting with '/': true when it was a command (handled), false for /quit.
  bool Command(const std::string& line) {
    auto arg = [&line](absl::string_view name) {
      return std::string(absl::StripAsciiWhitespace(absl::StripPrefix(absl::string_view(line), name)));
    };
    if (line == "/quit" || line == "/exit") return false;
    if (line == "/reset") {
      history_.clear();
      std::fprintf(stderr, "qrag: conversation cleared\n");
    } else if (line == "/system" || absl::StartsWith(line, "/system ")) {
      system_ = arg("/system");
      std::fprintf(stderr, "qrag: system prompt %s\n", system_.empty() ? "cleared" : "set");
    } else if (line == "/rag" || absl::StartsWith(line, "/rag ")) {
      rag_.collection = arg("/rag");
      if (rag_.collection.empty()) {
        std::fprintf(stderr, "qrag: retrieval off\n");
      } else {
        std::fprintf(stderr, "qrag: retrieving from collection '%s' for every turn\n", rag_.collection.c_str());
      }
    } else {
      std::fprintf(stderr,
                   "qrag: commands: /reset, /system [TEXT], /rag [COLLECTION], /quit (Ctrl-D); Ctrl-C cancels "
                   "an answer\n");
    }
    return true;
  }

 private:
  qrag::v1::ChatRequest Request() const {
    qrag::v1::ChatRequest r;
    r.set_model(args_.model);
    if (!system_.empty()) {
      qrag::v1::ChatMessage* m = r.add_messages();
      m->set_role("system");
      m->set_content(system_);
    }
    for (const auto& [role, content] : history_) {
      qrag::v1::ChatMessage* m = r.add_messages();
      m->set_role(role);
      m->set_content(content);
    }
    r.set_max_tokens(args_.max_tokens.value_or(kDefaultMaxTokens));
    if (args_.temperature.has_value()) r.set_temperature(static_cast<float>(*args_.temperature));
    if (args_.top_p.has_value()) r.set_top_p(static_cast<float>(*args_.top_p));
    r.set_top_k(args_.top_k);
    if (args_.seed.has_value()) r.set_seed(*args_.seed);
    if (std::optional<qrag::v1::RagOptions> rag = RagOptionsOf(rag_)) *r.mutable_rag() = *std::move(rag);
    return r;
  }

  Client& client_;
  const ChatArgs& args_;
  RagArgs rag_;
  const CallOptions call_;
  std::string system_;
  std::vector<std::pair<std::string, std::string>> history_;
};

// The next line of input, without its newline; nullopt at the end of input. libedit on a terminal.
std::optional<std::string> ReadLine(bool terminal) {
  if (terminal) {
    char* raw = readline("you> ");
    if (raw == nullptr) return std::nullopt;
    std::string line(raw);
    free(raw);
    if (!line.empty()) add_history(line.c_str());
    return line;
  }
  std::string line;
  if (!std::getline(std::cin, line)) return std::nullopt;
  return line;
}

}  // namespace

CLI::App* AddChatCommand(CLI::App& app, ChatArgs* a, RagArgs* rag) {
  CLI::App* chat = app.add_subcommand(
      "chat", "talk to the model with its chat template: interactive (history, /reset, /system, /rag; Ctrl-C "
              "cancels an answer), or one turn with --message");
  cli::AddOptionalText(*chat, "--message", &a->message, "one turn: send TEXT, print the answer, exit");
  chat->add_option("--system", a->system, "the system prompt")->type_name("TEXT");
  chat->add_option("--model", a->model, "the model (default: the server's default)")->type_name("NAME");
  cli::AddNumber(*chat, "--max-tokens", &a->max_tokens, "tokens per answer at most (default 512)");
  cli::AddNumber(*chat, "--temperature", &a->temperature, "0 = greedy (server default 1.0)");
  cli::AddNumber(*chat, "--top-p", &a->top_p, "nucleus sampling, (0, 1] (server default 1 = off)");
  cli::AddNumber(*chat, "--top-k", &a->top_k, "keep the K most likely tokens (0 = off)");
  cli::AddNumber(*chat, "--seed", &a->seed, "random seed (default: the server picks one)");
  chat->add_flag("--show-prompt", a->show_prompt, "print each turn's rendered prompt and its token count to stderr");
  AddGenerateRagFlags(*chat, rag);
  return chat;
}

absl::Status ValidateChatArgs(const ChatArgs& a) {
  if (a.message.has_value() && a.message->empty()) return absl::InvalidArgumentError("--message is empty");
  if (a.max_tokens.has_value() && *a.max_tokens <= 0) return absl::InvalidArgumentError("--max-tokens must be > 0");
  return absl::OkStatus();
}

int RunChat(Client& client, const ChatArgs& args, const RagArgs& rag, const CallOptions& call) {
  ChatSession session(client, args, rag, call);
  if (args.message.has_value()) {
    absl::Status s = session.Turn(*args.message);
    return s.ok() ? 0 : Error(s);
  }
  CatchInterrupts();
  const bool terminal = isatty(STDIN_FILENO) != 0;
  if (terminal) {
    std::fprintf(stderr, "qrag: chatting with %s (/help for commands; Ctrl-C cancels an answer, Ctrl-D ends)\n",
                 args.model.empty() ? "the server's default model" : args.model.c_str());
  }
  while (true) {
    g_interrupted.store(false);
    std::optional<std::string> line = ReadLine(terminal);
    if (!line.has_value()) break;
    const std::string text(absl::StripAsciiWhitespace(*line));
    if (text.empty()) continue;
    if (text[0] == '/') {
      if (!session.Command(text)) break;
      continue;
    }
    absl::Status s = session.Turn(text);
    if (absl::IsCancelled(s)) {
      std::fprintf(stderr, "qrag: answer cancelled\n");
    } else if (!s.ok()) {
      Error(s);
    }
  }
  return 0;
}

}  // namespace qrag::client
