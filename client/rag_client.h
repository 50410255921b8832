// C++ client of qrag.v1.Retrieval (collections, ingest, retrieval, embeddings), over the channel and call
// metadata of a qrag::client::Client. Thread-compatible like grpc stubs: one RagClient may serve many
// threads.
#ifndef QRAG_CLIENT_RAG_CLIENT_H_
#define QRAG_CLIENT_RAG_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "qrag/v1/retrieval.grpc.pb.h"

namespace qrag::client {

// Called after each acknowledged (durably stored) batch with the running totals; return false to stop
// sending further batches (what was acknowledged stays).
using IngestProgressCallback = std::function<bool(const qrag::v1::IngestProgress&)>;

class RagClient {
 public:
  explicit RagClient(const Client& client);

  absl::StatusOr<qrag::v1::EmbedResponse> Embed(const std::vector<std::string>& texts, const CallOptions& call = {});
  absl::StatusOr<qrag::v1::CollectionInfo> CreateCollection(const qrag::v1::CreateCollectionRequest& request,
                                                            const CallOptions& call = {});
  absl::StatusOr<std::vector<qrag::v1::CollectionInfo>> ListCollections(const CallOptions& call = {});
  absl::Status DropCollection(const std::string& name, const CallOptions& call = {});
  // Streams `batches` (each stored in one transaction) into `collection`; the final progress on success.
  // The next batch is sent only after the previous one was acknowledged, so on an error every document of
  // the batches before it is stored and none after.
  absl::StatusOr<qrag::v1::IngestProgress> Ingest(const std::string& collection,
                                                  const std::vector<std::vector<qrag::v1::Document>>& batches,
                                                  const IngestProgressCallback& on_progress = nullptr,
                                                  const CallOptions& call = {});
  absl::StatusOr<int64_t> DeleteDocuments(const std::string& collection, const std::vector<std::string>& ids,
                                          const CallOptions& call = {});
  absl::StatusOr<qrag::v1::RetrieveResponse> Retrieve(const qrag::v1::RetrieveRequest& request,
                                                      const CallOptions& call = {});

 private:
  void Prepare(const CallOptions& call, grpc::ClientContext* context) const;

  ClientOptions options_;
  std::unique_ptr<qrag::v1::Retrieval::Stub> stub_;
};

}  // namespace qrag::client

#endif  // QRAG_CLIENT_RAG_CLIENT_H_
