// The OpenAI-compatible HTTP API (qrag-server --http-listen): the routes of docs/openai-api.md over the same
// admission, validation, chat rendering, RAG and engine as the gRPC services (generation.h), on the event-driven
// HTTP server of server/http.
//
//   GET  /health                 200 {"status": "serving"}; 503 while loading or draining (no token needed)
//   GET  /v1/models[/ID]         the served models (and the RAG embedder)
//   POST /v1/chat/completions    the conversation through the model's chat template; stream: server-sent events
//   POST /v1/completions         a raw prompt
//   POST /v1/embeddings          the RAG embedder (all-MiniLM-L6-v2, ...)
// Errors are OpenAI error objects with the HTTP status of the qrag status code (openai_json.h HttpStatusOf).
// With an authenticator every /v1 route needs "Authorization: Bearer <token>" (401 otherwise).
//
// A generation answers once the engine finished (or streams each piece as the engine produces it, one write in
// flight and the text produced meanwhile coalesced into the next event, so a slow reader costs memory bounded
// by the completion). A client that disconnects cancels its request at once (Engine::Cancel frees its KV
// blocks). Work that costs CPU beyond parsing (embedding, retrieval) runs on the work queue, never on the HTTP
// I/O threads.
//
// Thread-safe: Handle may run on any I/O thread.
#ifndef QRAG_SERVER_API_OPENAI_API_H_
#define QRAG_SERVER_API_OPENAI_API_H_

#include <memory>

#include "absl/time/time.h"
#include "server/api/security.h"
#include "server/api/serving_state.h"
#include "server/common/work_queue.h"
#include "server/http/http_server.h"

namespace qrag::api {

class OpenAiApi {
 public:
  // `state` and `work` must outlive every exchange; `authenticator` may be null (no token needed).
  OpenAiApi(ServingState* state, WorkQueue* work, std::shared_ptr<const TokenAuthenticator> authenticator);

  void Handle(std::shared_ptr<http::Exchange> exchange);

  // A handler for http::Server::Start that calls Handle on `api` (which must outlive the server).
  static http::Handler HandlerFor(OpenAiApi* api);

 private:
  ServingState* const state_;
  WorkQueue* const work_;
  const std::shared_ptr<const TokenAuthenticator> authenticator_;
  const int64_t started_ = 0;  // Unix seconds: "created" of /v1/models
};

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_OPENAI_API_H_
