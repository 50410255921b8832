#include "server/api/openai_api.h"

#include <optional>
#include <type_traits>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "server/api/generation.h"
#include "server/api/openai_json.h"
#include "server/api/retrieval_service.h"
#include "server/common/echo.h"
#include "server/common/status.h"
#include "server/rag/collections.h"

namespace qrag::api {
namespace {

using nlohmann::json;

http::Response JsonResponse(int status, const json& body) {
  http::Response r;
  r.status = status;
  r.body = openai::Dump(body);
  r.body += '\n';
  return r;
}

http::Response ErrorResponse(const absl::Status& status, bool chat = true) {
  return JsonResponse(openai::HttpStatusOf(status.code()), openai::ErrorObject(status, openai::ParamOf(status, chat)));
}

std::string RandomId(std::string_view prefix) {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen;
  absl::MutexLock lock(&mu);
  return absl::StrFormat("%s%016x%08x", prefix, absl::Uniform<uint64_t>(*gen), absl::Uniform<uint32_t>(*gen));
}

// The embedder's name as /v1/models lists it: its model_id up to '@' (model_id adds a weights digest).
std::string EmbedderName(const std::string& model_id) { return model_id.substr(0, model_id.find('@')); }

json PassagesJson(const google::protobuf::RepeatedPtrField<qrag::v1::RetrievedPassage>& passages) {
  json out = json::array();
  for (const qrag::v1::RetrievedPassage& p : passages) {
    json metadata = json::object();
    for (const auto& [k, v] : p.metadata()) metadata[k] = v;
    out.push_back({{"document_id", p.document_id()},
                   {"chunk_index", p.chunk_index()},
                   {"text", p.text()},
                   {"score", p.score()},
                   {"metadata", std::move(metadata)},
                   {"truncated", p.truncated()},
                   {"citation", p.citation()}});
  }
  return out;
}

json TimingsJson(const engine::Timings& t, const std::optional<rag::RetrieveTimings>& rag) {
  qrag::v1::Timings proto;
  proto.set_queue_seconds(t.queue_seconds);
  proto.set_time_to_first_token_seconds(t.time_to_first_token_seconds);
  proto.set_total_seconds(t.total_seconds);
  FillRagTimings(rag, t, &proto);
  json out = {{"queue_seconds", proto.queue_seconds()},
              {"time_to_first_token_seconds", proto.time_to_first_token_seconds()},
              {"total_seconds", proto.total_seconds()}};
  if (rag.has_value()) {
    out["embed_seconds"] = proto.embed_seconds();
    out["search_seconds"] = proto.search_seconds();
    out["generate_seconds"] = proto.generate_seconds();
  }
  return out;
}

// One generation over HTTP: the engine's observer, answering through the exchange. Shared by the engine (as its
// observer), the start hooks and (weakly) the exchange's client-gone callback.
class HttpGeneration final : public engine::RequestObserver,
                             public std::enable_shared_from_this<HttpGeneration> {
 public:
  HttpGeneration(std::shared_ptr<http::Exchange> exchange, bool chat, openai::AnswerOptions answer,
                 const model::Tokenizer* tokenizer, ServingState* state)
      : exchange_(std::move(exchange)), chat_(chat), answer_(answer), tokenizer_(tokenizer), state_(state) {
    result_.id = RandomId(chat ? "chatcmpl-" : "cmpl-");
    result_.created = absl::ToUnixSeconds(absl::Now());
    state_->CallStarted();
  }
  ~HttpGeneration() override { state_->CallEnded(); }

  void Start(WorkQueue* work, absl::StatusOr<Admission> admission) {
    std::weak_ptr<HttpGeneration> weak = weak_from_this();
    exchange_->OnClientGone([weak] {
      if (std::shared_ptr<HttpGeneration> self = weak.lock()) self->link_.Cancel();
    });
    std::shared_ptr<HttpGeneration> self = shared_from_this();
    StartHooks hooks;
    hooks.record = [self](Prelude prelude) {
      absl::MutexLock lock(&self->mu_);
      self->result_.model = std::move(prelude.model);
      self->passages_ = PassagesJson(prelude.rag.passages);
      self->has_rag_ = prelude.rag.timings.has_value();
      self->rag_timings_ = prelude.rag.timings;
    };
    hooks.fail = [self](const absl::Status& s) { self->exchange_->Respond(ErrorResponse(s, self->chat_)); };
    hooks.observer = self;
    hooks.link = &link_;
    CallState call;
    call.deadline = admission.ok() ? admission->request.deadline : absl::InfiniteFuture();
    call.is_cancelled = [self] { return self->link_.cancelled(); };
    StartAdmitted(state_, work, std::move(admission), std::move(call), std::move(hooks));
  }

  void OnText(std::string_view text, absl::Span<const engine::TokenLogprob> tokens) override {
    std::optional<std::string> event;
    {
      absl::MutexLock lock(&mu_);
      pending_.append(text);
      for (const engine::TokenLogprob& t : tokens) pending_logprobs_.push_back(Info(t));
      if (!answer_.stream) return;
      has_pending_ = true;
      event = NextEventLocked();
    }
    Send(std::move(event));
  }

  void OnFinish(const absl::Status& status, engine::FinishReason reason, const engine::Usage& usage,
                const engine::Timings& timings) override {
    std::optional<std::string> event;
    std::optional<http::Response> response;
    {
      absl::MutexLock lock(&mu_);
      result_.usage = usage;
      timings_ = timings;
      if (!answer_.stream) {
        if (!status.ok()) {
          response = ErrorResponse(status, chat_);
        } else {
          result_.text = std::move(pending_);
          result_.logprobs = std::move(pending_logprobs_);
          result_.finish_reason = engine::FinishReasonName(reason);
          result_.qrag = QragLocked(/*with_passages=*/true);
          response = JsonResponse(200, chat_ ? openai::ChatCompletionObject(result_, answer_)
                                             : openai::CompletionObject(result_, answer_));
        }
      } else if (!stream_started_ && !status.ok()) {
        response = ErrorResponse(status, chat_);  // nothing sent yet: a plain HTTP error
      } else {
        final_status_ = status;
        finish_reason_ = engine::FinishReasonName(reason);
        finished_ = true;
        has_pending_ = true;
        event = NextEventLocked();
      }
    }
    if (response.has_value()) {
      exchange_->Respond(*std::move(response));
      return;
    }
    Send(std::move(event));
  }

 private:
  openai::TokenInfo Info(const engine::TokenLogprob& t) const {
    openai::TokenInfo info;
    info.token = t.text;
    info.logprob = t.logprob;
    for (const auto& [id, logprob] : t.top) {
      const int32_t ids[] = {id};
      absl::StatusOr<std::string> piece = tokenizer_->Decode(ids);
      info.top.emplace_back(piece.ok() ? *piece : std::string(), logprob);
    }
    return info;
  }

  json QragLocked(bool with_passages) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    json q = {{"timings", TimingsJson(timings_, rag_timings_)}};
    if (with_passages && has_rag_) q["passages"] = passages_;
    return q;
  }

  // The next server-sent events to write (one write in flight; what the engine produced meanwhile coalesced
  // into one chunk), or nullopt.
  std::optional<std::string> NextEventLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || ended_ || !has_pending_) return std::nullopt;
    std::string out;
    openai::Result chunk;
    chunk.id = result_.id;
    chunk.created = result_.created;
    chunk.model = result_.model;
    chunk.text = std::move(pending_);
    chunk.logprobs = std::move(pending_logprobs_);
    pending_.clear();
    pending_logprobs_.clear();
    has_pending_ = false;
    const bool first = !stream_started_;
    if (first && has_rag_) chunk.qrag = {{"passages", passages_}};  // the passages ride on the first event
    if (finished_ && final_status_.ok()) chunk.finish_reason = finish_reason_;
    if (!chunk.text.empty() || first || !chunk.finish_reason.empty()) {
      const json event = chat_ ? openai::ChatCompletionChunk(chunk, answer_, first) : openai::CompletionChunk(chunk, answer_);
      absl::StrAppend(&out, "data: ", openai::Dump(event), "\n\n");
    }
    if (finished_) {
      if (!final_status_.ok()) {
        // Mid-stream failure (deadline, cancellation): an error event, as vLLM sends, then the end.
        absl::StrAppend(&out, "data: ", openai::Dump(openai::ErrorObject(final_status_, "")), "\n\n");
      } else if (answer_.include_usage) {
        openai::Result usage = result_;
        usage.qrag = QragLocked(/*with_passages=*/false);
        absl::StrAppend(&out, "data: ", openai::Dump(openai::UsageChunk(usage, chat_)), "\n\n");
      }
      absl::StrAppend(&out, "data: [DONE]\n\n");
      ended_ = true;
    }
    writing_ = true;
    if (first) {
      stream_started_ = true;
      start_stream_ = true;
    }
    return out;
  }

  void Send(std::optional<std::string> event) {
    if (!event.has_value()) return;
    bool start;
    bool end;
    {
      absl::MutexLock lock(&mu_);
      start = std::exchange(start_stream_, false);
      end = ended_;
    }
    if (start) {
      exchange_->StartStream(200, "text/event-stream", {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}});
    }
    // A strong reference: the engine lets go of its observer at OnFinish, while the last events may still be
    // waiting for this write. The exchange runs (and drops) every done callback exactly once.
    exchange_->Write(*std::move(event), [self = shared_from_this()](bool ok) { self->OnWritten(ok); });
    if (end) exchange_->End();
  }

  void OnWritten(bool ok) {
    if (!ok) {
      link_.Cancel();  // the client is gone: free the request's KV now
      return;
    }
    std::optional<std::string> event;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      event = NextEventLocked();
    }
    Send(std::move(event));
  }

  const std::shared_ptr<http::Exchange> exchange_;
  const bool chat_;
  const openai::AnswerOptions answer_;
  const model::Tokenizer* const tokenizer_;
  ServingState* const state_;
  EngineLink link_;

  absl::Mutex mu_;
  openai::Result result_ ABSL_GUARDED_BY(mu_);
  std::string pending_ ABSL_GUARDED_BY(mu_);
  std::vector<openai::TokenInfo> pending_logprobs_ ABSL_GUARDED_BY(mu_);
  json passages_ ABSL_GUARDED_BY(mu_);
  bool has_rag_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<rag::RetrieveTimings> rag_timings_ ABSL_GUARDED_BY(mu_);
  engine::Timings timings_ ABSL_GUARDED_BY(mu_);
  bool has_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_started_ ABSL_GUARDED_BY(mu_) = false;
  bool start_stream_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  std::string finish_reason_ ABSL_GUARDED_BY(mu_);
};

// The qrag request of an OpenAI body, admitted by generation.h's rules; `answer` gets the answer's shape.
template <typename Parsed>
absl::StatusOr<Admission> Admit(const ServingState& state, absl::StatusOr<Parsed> parsed,
                                openai::AnswerOptions* answer) {
  QRAG_RETURN_IF_ERROR(parsed.status());
  *answer = parsed->answer;
  if constexpr (std::is_same_v<Parsed, openai::ChatCompletionRequest>) {
    return AdmitChatRequest(state, parsed->request, absl::InfiniteFuture());
  } else {
    return AdmitGenerateRequest(state, parsed->request, absl::InfiniteFuture());
  }
}

}  // namespace

OpenAiApi::OpenAiApi(ServingState* state, WorkQueue* work, std::shared_ptr<const TokenAuthenticator> authenticator)
    : state_(state),
      work_(work),
      authenticator_(std::move(authenticator)),
      started_(absl::ToUnixSeconds(absl::Now())) {}

http::Handler OpenAiApi::HandlerFor(OpenAiApi* api) {
  return [api](std::shared_ptr<http::Exchange> exchange) { api->Handle(std::move(exchange)); };
}

void OpenAiApi::Handle(std::shared_ptr<http::Exchange> exchange) {
  const http::Request& req = exchange->request();
  const std::string& path = req.path;
  const bool get = req.method == "GET" || req.method == "HEAD";
  const bool post = req.method == "POST";
  auto method_not_allowed = [&](const char* allow) {
    http::Response r = ErrorResponse(absl::InvalidArgumentError(
        absl::StrCat(req.method, " is not allowed on ", path, "; use ", allow)));
    r.status = 405;
    r.headers.push_back({"Allow", allow});
    exchange->Respond(std::move(r));
  };

  if (path == "/health") {
    if (!get) return method_not_allowed("GET");
    const ServingPhase phase = state_->phase();
    return exchange->Respond(JsonResponse(phase == ServingPhase::kServing ? 200 : 503,
                                          {{"status", ServingPhaseName(phase)}}));
  }

  if (authenticator_ != nullptr) {
    int count = 0;
    const absl::string_view* value = nullptr;
    absl::string_view first;
    for (const http::Header& h : req.headers) {
      if (h.name != "authorization") continue;
      if (++count == 1) {
        first = h.value;
        value = &first;
      }
    }
    absl::Status s = count > 1 ? absl::UnauthenticatedError("more than one Authorization header")
                               : authenticator_->CheckAuthorization(value);
    if (!s.ok()) {
      http::Response r = ErrorResponse(s);
      r.headers.push_back({"WWW-Authenticate", "Bearer"});
      return exchange->Respond(std::move(r));
    }
  }

  if (path == "/v1/models" || absl::StartsWith(path, "/v1/models/")) {
    if (!get) return method_not_allowed("GET");
    json data = json::array();
    auto model_object = [&](const std::string& id, json extra) {
      return json{{"id", id}, {"object", "model"}, {"created", started_}, {"owned_by", "qrag"}, {"qrag", extra}};
    };
    for (const ServedModel* m : state_->Models()) {
      const qrag::v1::ModelInfo& i = m->info;
      data.push_back(model_object(m->name, {{"kind", "generation"},
                                            {"architecture", i.architecture()},
                                            {"precision", i.precision()},
                                            {"context_length", i.context_length()},
                                            {"parameters", i.parameters()},
                                            {"max_logprobs", i.max_logprobs()},
                                            {"chat", m->chat != nullptr},
                                            {"default", i.is_default()}}));
    }
    if (rag::Collections* rag = state_->rag(); rag != nullptr) {
      data.push_back(model_object(EmbedderName(rag->encoder().model_id()),
                                  {{"kind", "embedding"}, {"dim", rag->encoder().dim()},
                                   {"max_seq_length", rag->encoder().max_seq_length()}}));
    }
    if (path == "/v1/models") return exchange->Respond(JsonResponse(200, {{"object", "list"}, {"data", data}}));
    const std::string id = path.substr(std::string_view("/v1/models/").size());
    for (const json& m : data) {
      if (m["id"] == id) return exchange->Respond(JsonResponse(200, m));
    }
    return exchange->Respond(JsonResponse(
        404, openai::ErrorObject(absl::NotFoundError(absl::StrCat("model ", Echo(id), " is not served here")), "model")));
  }

  const bool chat = path == "/v1/chat/completions";
  if (chat || path == "/v1/completions") {
    if (!post) return method_not_allowed("POST");
    if (absl::Status s = state_->CheckAccepting(); !s.ok()) {
      state_->ReportRejected(s);
      return exchange->Respond(ErrorResponse(s, chat));
    }
    // A body that does not parse is a refused admission like any other (StartAdmitted reports and answers it).
    openai::AnswerOptions answer;
    absl::StatusOr<Admission> admission =
        chat ? Admit(*state_, openai::ParseChatCompletionRequest(req.body), &answer)
             : Admit(*state_, openai::ParseCompletionRequest(req.body), &answer);
    // OpenAI's chat API without max_tokens: the answer may use what the context leaves.
    if (admission.ok() && chat && !answer.max_tokens_given) {
      admission->request.max_tokens = admission->model->engine->context_length();
      admission->request.max_tokens_fits_context = true;
    }
    const model::Tokenizer* tokenizer = admission.ok() ? admission->model->engine->tokenizer() : nullptr;
    auto generation = std::make_shared<HttpGeneration>(std::move(exchange), chat, answer, tokenizer, state_);
    generation->Start(work_, std::move(admission));
    return;
  }

  if (path == "/v1/embeddings") {
    if (!post) return method_not_allowed("POST");
    if (absl::Status s = state_->CheckAccepting(); !s.ok()) return exchange->Respond(ErrorResponse(s));
    absl::StatusOr<openai::EmbeddingsRequest> parsed = openai::ParseEmbeddingsRequest(req.body);
    if (!parsed.ok()) return exchange->Respond(ErrorResponse(parsed.status()));
    rag::Collections* rag = state_->rag();
    if (rag == nullptr) {
      return exchange->Respond(ErrorResponse(absl::FailedPreconditionError(
          "this server has no embedder; start qrag-server with --embedder DIR (e.g. all-MiniLM-L6-v2)")));
    }
    const std::string& id = rag->encoder().model_id();
    const std::string name = EmbedderName(id);
    if (!parsed->model.empty() && parsed->model != name && parsed->model != id) {
      return exchange->Respond(JsonResponse(
          404, openai::ErrorObject(absl::NotFoundError(absl::StrCat("model ", Echo(parsed->model),
                                                                    " is not an embedding model served here; use ",
                                                                    name)),
                                   "model")));
    }
    if (parsed->dimensions.has_value() && *parsed->dimensions != rag->encoder().dim()) {
      return exchange->Respond(ErrorResponse(openai::ParamError(
          "dimensions", absl::StrCat("dimensions ", *parsed->dimensions, ": ", name, " embeds in ",
                                     rag->encoder().dim(), " dimensions and cannot shorten them; omit dimensions"))));
    }
    if (parsed->inputs.size() > static_cast<size_t>(kMaxEmbedTexts)) {
      return exchange->Respond(ErrorResponse(openai::ParamError(
          "input", absl::StrCat("input holds ", parsed->inputs.size(), " strings; at most ", kMaxEmbedTexts,
                                " per request"))));
    }
    for (size_t i = 0; i < parsed->inputs.size(); ++i) {
      if (parsed->inputs[i].empty()) {
        return exchange->Respond(ErrorResponse(openai::ParamError(
            "input", absl::StrCat("input", parsed->inputs.size() > 1 ? absl::StrCat("[", i, "]") : "",
                                  " is empty; give text to embed"))));
      }
    }
    auto request = std::make_shared<openai::EmbeddingsRequest>(*std::move(parsed));
    std::shared_ptr<http::Exchange> shared = exchange;
    const absl::Status queued = work_->Submit([rag, request, shared, name] {
      int64_t tokens = 0;
      absl::StatusOr<std::vector<float>> values = rag->Embed(request->inputs, &tokens);
      if (!values.ok()) return shared->Respond(ErrorResponse(values.status()));
      shared->Respond(JsonResponse(
          200, openai::EmbeddingsObject(name, *values, rag->encoder().dim(), request->base64, tokens)));
    });
    if (!queued.ok()) exchange->Respond(ErrorResponse(queued));
    return;
  }

  exchange->Respond(JsonResponse(
      404, openai::ErrorObject(absl::NotFoundError(absl::StrCat(
                                   "no route ", Echo(path), "; this server serves /v1/chat/completions, "
                                   "/v1/completions, /v1/embeddings, /v1/models and /health")),
                               "")));
}

}  // namespace qrag::api
