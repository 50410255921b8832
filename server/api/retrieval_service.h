// qrag.v1.Retrieval: collections, ingest, retrieval and embeddings over rag::Collections.
//
// A synchronous gRPC service: each call runs on a gRPC server thread (encoding and searching included), never
// on the engine thread, so retrieval work cannot stall generation's scheduler. Without an embedder
// (ServingState::rag() null) every method is FAILED_PRECONDITION saying how to enable it.
#ifndef QRAG_SERVER_API_RETRIEVAL_SERVICE_H_
#define QRAG_SERVER_API_RETRIEVAL_SERVICE_H_

#include <memory>

#include "qrag/v1/retrieval.grpc.pb.h"
#include "server/api/security.h"
#include "server/api/serving_state.h"
#include "server/rag/collections.h"

namespace qrag::api {

// Limits of the Retrieval API (the rest come from CollectionsOptions).
inline constexpr int kMaxEmbedTexts = 256;
inline constexpr int kDefaultRetrieveTopK = 5;

class RetrievalService final : public qrag::v1::Retrieval::Service {
 public:
  RetrievalService(ServingState* state, std::shared_ptr<const TokenAuthenticator> authenticator)
      : state_(state), authenticator_(std::move(authenticator)) {}

  grpc::Status Embed(grpc::ServerContext* context, const qrag::v1::EmbedRequest* request,
                     qrag::v1::EmbedResponse* response) override;
  grpc::Status CreateCollection(grpc::ServerContext* context, const qrag::v1::CreateCollectionRequest* request,
                                qrag::v1::CollectionInfo* response) override;
  grpc::Status ListCollections(grpc::ServerContext* context, const qrag::v1::ListCollectionsRequest* request,
                               qrag::v1::ListCollectionsResponse* response) override;
  grpc::Status DropCollection(grpc::ServerContext* context, const qrag::v1::DropCollectionRequest* request,
                              qrag::v1::DropCollectionResponse* response) override;
  grpc::Status Ingest(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<qrag::v1::IngestProgress, qrag::v1::IngestRequest>* stream) override;
  grpc::Status DeleteDocuments(grpc::ServerContext* context, const qrag::v1::DeleteDocumentsRequest* request,
                               qrag::v1::DeleteDocumentsResponse* response) override;
  grpc::Status Retrieve(grpc::ServerContext* context, const qrag::v1::RetrieveRequest* request,
                        qrag::v1::RetrieveResponse* response) override;

 private:
  // Authentication, then the collections (FAILED_PRECONDITION without an embedder).
  absl::StatusOr<rag::Collections*> Begin(const grpc::ServerContext& context) const;

  ServingState* const state_;
  const std::shared_ptr<const TokenAuthenticator> authenticator_;
};

// Fills a RetrievedPassage from a retrieval hit (shared with Generate's rag option).
void FillPassage(const rag::RetrievedChunk& hit, qrag::v1::RetrievedPassage* out);

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_RETRIEVAL_SERVICE_H_
