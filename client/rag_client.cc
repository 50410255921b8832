#include "client/rag_client.h"

#include <chrono>

namespace qrag::client {

RagClient::RagClient(const Client& client)
    : options_(client.options()), stub_(qrag::v1::Retrieval::NewStub(client.channel())) {}

void RagClient::Prepare(const CallOptions& call, grpc::ClientContext* context) const {
  if (call.timeout != absl::InfiniteDuration()) {
    context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(call.timeout));
  }
  context->set_wait_for_ready(call.wait_for_ready);
  for (const auto& [key, value] : options_.metadata) context->AddMetadata(key, value);
}

absl::StatusOr<qrag::v1::EmbedResponse> RagClient::Embed(const std::vector<std::string>& texts,
                                                        const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(call, &context);
  qrag::v1::EmbedRequest request;
  for (const std::string& t : texts) request.add_texts(t);
  qrag::v1::EmbedResponse response;
  grpc::Status s = stub_->Embed(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<qrag::v1::CollectionInfo> RagClient::CreateCollection(const qrag::v1::CreateCollectionRequest& request,
                                                                    const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(call, &context);
  qrag::v1::CollectionInfo response;
  grpc::Status s = stub_->CreateCollection(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<std::vector<qrag::v1::CollectionInfo>> RagClient::ListCollections(const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(call, &context);
  qrag::v1::ListCollectionsResponse response;
  grpc::Status s = stub_->ListCollections(&context, qrag::v1::ListCollectionsRequest(), &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return std::vector<qrag::v1::CollectionInfo>(response.collections().begin(), response.collections().end());
}

absl::Status RagClient::DropCollection(const std::string& name, const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(call, &context);
  qrag::v1::DropCollectionRequest request;
  request.set_name(name);
  qrag::v1::DropCollectionResponse response;
  return FromGrpcStatus(stub_->DropCollection(&context, request, &response));
}

absl::StatusOr<qrag::v1::IngestProgress> RagClient::Ingest(const std::string& collection,
                                                           const std::vector<std::vector<qrag::v1::Document>>& batches,
                                                           const IngestProgressCallback& on_progress,
                                                           const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(call, &context);
  auto stream = stub_->Ingest(&context);
  qrag::v1::IngestProgress progress;
  for (size_t b = 0; b < batches.size(); ++b) {
    qrag::v1::IngestRequest request;
    if (b == 0) request.set_collection(collection);
    for (const qrag::v1::Document& d : batches[b]) *request.add_documents() = d;
    if (!stream->Write(request)) break;  // the server ended the call: Finish says why
    if (!stream->Read(&progress)) break;
    if (on_progress && !on_progress(progress)) break;
  }
  stream->WritesDone();
  qrag::v1::IngestProgress extra;
  while (stream->Read(&extra)) progress = extra;
  grpc::Status s = stream->Finish();
  if (!s.ok()) return FromGrpcStatus(s);
  return progress;
}

absl::StatusOr<int64_t> RagClient::DeleteDocuments(const std::string& collection, const std::vector<std::string>& ids,
                                                   const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(call, &context);
  qrag::v1::DeleteDocumentsRequest request;
  request.set_collection(collection);
  for (const std::string& id : ids) request.add_ids(id);
  qrag::v1::DeleteDocumentsResponse response;
  grpc::Status s = stub_->DeleteDocuments(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response.deleted();
}

absl::StatusOr<qrag::v1::RetrieveResponse> RagClient::Retrieve(const qrag::v1::RetrieveRequest& request,
                                                               const CallOptions& call) {
  grpc::ClientContext context;
  Prepare(call, &context);
  qrag::v1::RetrieveResponse response;
  grpc::Status s = stub_->Retrieve(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

}  // namespace qrag::client
