// qrag.v1.Retrieval: collections, ingest, retrieval and embeddings over rag::Collections.
//
// Over the gRPC callback API with raw request bytes (wire.h: unparsable bytes are INVALID_ARGUMENT, never
// INTERNAL). The work of every call (encoding, searching, SQLite) runs on the server's work queue, never on
// gRPC's callback threads, which stay free for health checks and cheap calls, and never on the engine
// thread; a full queue is RESOURCE_EXHAUSTED. An idle Ingest stream holds no thread. Without an embedder
// (ServingState::rag() null) every method is FAILED_PRECONDITION saying how to enable it.
//
// Ingest is a bidirectional stream: each IngestRequest is parsed, stored durably as one batch, and
// acknowledged with the running IngestProgress before the next is read. Any failing message (bytes that are
// not an IngestRequest, a string field that is not UTF-8, a document the store refuses) ends the stream with
// its error, saying how many documents of earlier batches of the call are stored; nothing after it is read.
#ifndef QRAG_SERVER_API_RETRIEVAL_SERVICE_H_
#define QRAG_SERVER_API_RETRIEVAL_SERVICE_H_

#include <memory>
#include <string_view>

#include "qrag/v1/retrieval.grpc.pb.h"
#include "server/api/security.h"
#include "server/api/serving_state.h"
#include "server/common/work_queue.h"
#include "server/rag/collections.h"

namespace qrag::api {

// Limits of the Retrieval API (the rest come from CollectionsOptions).
inline constexpr int kMaxEmbedTexts = 256;

class RetrievalService final
    : public qrag::v1::Retrieval::WithRawCallbackMethod_Embed<
          qrag::v1::Retrieval::WithRawCallbackMethod_CreateCollection<
              qrag::v1::Retrieval::WithRawCallbackMethod_ListCollections<
                  qrag::v1::Retrieval::WithRawCallbackMethod_DropCollection<
                      qrag::v1::Retrieval::WithRawCallbackMethod_Ingest<
                          qrag::v1::Retrieval::WithRawCallbackMethod_DeleteDocuments<
                              qrag::v1::Retrieval::WithRawCallbackMethod_Retrieve<
                                  qrag::v1::Retrieval::Service>>>>>>> {
 public:
  // `work` runs the calls' work; `state` and `work` must outlive the service.
  RetrievalService(ServingState* state, WorkQueue* work, std::shared_ptr<const TokenAuthenticator> authenticator)
      : state_(state), work_(work), authenticator_(std::move(authenticator)) {}

  using Unary = grpc::ServerUnaryReactor;
  Unary* Embed(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
               grpc::ByteBuffer* response) override;
  Unary* CreateCollection(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                          grpc::ByteBuffer* response) override;
  Unary* ListCollections(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                         grpc::ByteBuffer* response) override;
  Unary* DropCollection(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                        grpc::ByteBuffer* response) override;
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Ingest(grpc::CallbackServerContext* context) override;
  Unary* DeleteDocuments(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                         grpc::ByteBuffer* response) override;
  Unary* Retrieve(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                  grpc::ByteBuffer* response) override;

 private:
  // Authentication and the serving phase, then the collections (FAILED_PRECONDITION without an embedder).
  absl::StatusOr<rag::Collections*> Begin(const grpc::CallbackServerContext& context) const;
  // A unary method: Begin and the parse on the gRPC thread, then body(collections, request, &response) on the
  // work queue, the response serialized into `wire_response`.
  template <typename Request, typename Response, typename Body>
  Unary* RunUnary(grpc::CallbackServerContext* context, const grpc::ByteBuffer* wire_request,
                  grpc::ByteBuffer* wire_response, Body body);

  ServingState* const state_;
  WorkQueue* const work_;
  const std::shared_ptr<const TokenAuthenticator> authenticator_;
};

// RetrieveRequest.mode / RagOptions.mode (+ group_by_document) as the collections' options; unset is hybrid.
// INVALID_ARGUMENT naming field_prefix + "mode" for a value outside the enum.
absl::StatusOr<rag::RetrieveOptions> RetrieveOptionsOf(int mode, bool group_by_document,
                                                       std::string_view field_prefix);
// Fills a RetrievedPassage from a retrieval hit (shared with Generate's rag option).
void FillPassage(const rag::RetrievedChunk& hit, qrag::v1::RetrievedPassage* out);

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_RETRIEVAL_SERVICE_H_
