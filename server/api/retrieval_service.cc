#include "server/api/retrieval_service.h"

#include "absl/strings/str_cat.h"
#include "server/api/status_mapping.h"
#include "server/common/echo.h"
#include "server/common/status.h"

namespace qrag::api {
namespace {

rag::Metadata ToMetadata(const google::protobuf::Map<std::string, std::string>& m) {
  return rag::Metadata(m.begin(), m.end());
}

absl::StatusOr<rag::IndexKind> FromProto(qrag::v1::IndexKind kind) {
  switch (kind) {
    case qrag::v1::INDEX_KIND_UNSPECIFIED:
    case qrag::v1::INDEX_KIND_EXACT: return rag::IndexKind::kExact;
    case qrag::v1::INDEX_KIND_HNSW: return rag::IndexKind::kHnsw;
    case qrag::v1::INDEX_KIND_IVF: return rag::IndexKind::kIvf;
    case qrag::v1::INDEX_KIND_AUTO: return rag::IndexKind::kAuto;
    default:
      return absl::InvalidArgumentError(absl::StrCat("index.kind ", static_cast<int>(kind),
                                                     " is not one of EXACT, HNSW, IVF, AUTO (1..4)"));
  }
}

qrag::v1::IndexKind ToProto(rag::IndexKind kind) {
  switch (kind) {
    case rag::IndexKind::kExact: return qrag::v1::INDEX_KIND_EXACT;
    case rag::IndexKind::kHnsw: return qrag::v1::INDEX_KIND_HNSW;
    case rag::IndexKind::kIvf: return qrag::v1::INDEX_KIND_IVF;
    case rag::IndexKind::kAuto: return qrag::v1::INDEX_KIND_AUTO;
  }
  return qrag::v1::INDEX_KIND_UNSPECIFIED;
}

absl::StatusOr<rag::IndexSpec> FromProto(const qrag::v1::IndexSpec& in) {
  rag::IndexSpec s;
  QRAG_ASSIGN_OR_RETURN(s.kind, FromProto(in.kind()));
  s.hnsw_m = in.hnsw_m();
  s.hnsw_ef_construction = in.hnsw_ef_construction();
  s.hnsw_ef_search = in.hnsw_ef_search();
  s.ivf_nlist = in.ivf_nlist();
  s.ivf_nprobe = in.ivf_nprobe();
  s.auto_threshold = in.auto_threshold();
  return s;
}

void FillInfo(const rag::CollectionInfo& i, qrag::v1::CollectionInfo* out) {
  out->set_name(i.name);
  out->set_embedder(i.embedder);
  out->set_precision(i.precision);
  out->set_dim(i.dim);
  out->set_chunk_tokens(i.chunk_tokens);
  out->set_chunk_overlap_tokens(i.chunk_overlap);
  out->set_documents(i.documents);
  out->set_chunks(i.chunks);
  qrag::v1::IndexSpec* index = out->mutable_index();
  index->set_kind(ToProto(i.index.kind));
  index->set_hnsw_m(i.index.hnsw_m);
  index->set_hnsw_ef_construction(i.index.hnsw_ef_construction);
  index->set_hnsw_ef_search(i.index.hnsw_ef_search);
  index->set_ivf_nlist(i.index.ivf_nlist);
  index->set_ivf_nprobe(i.index.ivf_nprobe);
  index->set_auto_threshold(i.index.auto_threshold);
  out->set_index_status(i.index_status);
}

}  // namespace

void FillPassage(const rag::RetrievedChunk& hit, qrag::v1::RetrievedPassage* out) {
  out->set_document_id(hit.chunk.document_id);
  out->set_chunk_index(hit.chunk.seq);
  out->set_text(hit.chunk.text);
  out->set_score(hit.score);
  for (const auto& [k, v] : hit.chunk.metadata) (*out->mutable_metadata())[k] = v;
}

absl::StatusOr<rag::Collections*> RetrievalService::Begin(const grpc::ServerContext& context) const {
  if (authenticator_ != nullptr) QRAG_RETURN_IF_ERROR(authenticator_->Check(context.client_metadata()));
  if (state_->phase() == ServingPhase::kDraining) return absl::UnavailableError("server is shutting down");
  rag::Collections* rag = state_->rag();
  if (rag == nullptr) {
    return absl::FailedPreconditionError(
        "retrieval is off: start qrag-server with --embedder DIR (a sentence-transformers BERT directory) "
        "and --data-dir DIR");
  }
  return rag;
}

grpc::Status RetrievalService::Embed(grpc::ServerContext* context, const qrag::v1::EmbedRequest* request,
                                     qrag::v1::EmbedResponse* response) {
  absl::StatusOr<rag::Collections*> rag = Begin(*context);
  if (!rag.ok()) return ToGrpcStatus(rag.status());
  if (request->texts_size() > kMaxEmbedTexts) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("texts: ", request->texts_size(), " texts, at most ", kMaxEmbedTexts, " per call")));
  }
  const std::vector<std::string> texts(request->texts().begin(), request->texts().end());
  absl::StatusOr<std::vector<float>> emb = (*rag)->Embed(texts);
  if (!emb.ok()) return ToGrpcStatus(emb.status());
  const int dim = (*rag)->encoder().dim();
  response->set_embedder((*rag)->encoder().model_id());
  response->set_dim(dim);
  for (size_t i = 0; i < texts.size(); ++i) {
    response->add_embeddings()->mutable_values()->Add(emb->begin() + i * dim, emb->begin() + (i + 1) * dim);
  }
  return grpc::Status::OK;
}

grpc::Status RetrievalService::CreateCollection(grpc::ServerContext* context,
                                                const qrag::v1::CreateCollectionRequest* request,
                                                qrag::v1::CollectionInfo* response) {
  absl::StatusOr<rag::Collections*> rag = Begin(*context);
  if (!rag.ok()) return ToGrpcStatus(rag.status());
  rag::ChunkingOptions chunking;  // defaults when both are unset
  if (request->chunk_tokens() != 0 || request->chunk_overlap_tokens() != 0) {
    chunking.chunk_tokens = request->chunk_tokens() != 0 ? request->chunk_tokens() : chunking.chunk_tokens;
    chunking.overlap_tokens = request->chunk_overlap_tokens();
  }
  absl::StatusOr<rag::IndexSpec> index = FromProto(request->index());
  if (!index.ok()) return ToGrpcStatus(index.status());
  absl::StatusOr<rag::CollectionInfo> info = (*rag)->Create(request->name(), request->embedder(), chunking, *index);
  if (!info.ok()) return ToGrpcStatus(info.status());
  FillInfo(*info, response);
  return grpc::Status::OK;
}

grpc::Status RetrievalService::ListCollections(grpc::ServerContext* context,
                                               const qrag::v1::ListCollectionsRequest* /*request*/,
                                               qrag::v1::ListCollectionsResponse* response) {
  absl::StatusOr<rag::Collections*> rag = Begin(*context);
  if (!rag.ok()) return ToGrpcStatus(rag.status());
  for (const rag::CollectionInfo& i : (*rag)->List()) FillInfo(i, response->add_collections());
  return grpc::Status::OK;
}

grpc::Status RetrievalService::DropCollection(grpc::ServerContext* context,
                                              const qrag::v1::DropCollectionRequest* request,
                                              qrag::v1::DropCollectionResponse* /*response*/) {
  absl::StatusOr<rag::Collections*> rag = Begin(*context);
  if (!rag.ok()) return ToGrpcStatus(rag.status());
  return ToGrpcStatus((*rag)->Drop(request->name()));
}

grpc::Status RetrievalService::Ingest(
    grpc::ServerContext* context, grpc::ServerReaderWriter<qrag::v1::IngestProgress, qrag::v1::IngestRequest>* stream) {
  absl::StatusOr<rag::Collections*> rag = Begin(*context);
  if (!rag.ok()) return ToGrpcStatus(rag.status());
  std::string collection;
  qrag::v1::IngestProgress progress;
  qrag::v1::IngestRequest request;
  bool any = false;
  while (stream->Read(&request)) {
    if (context->IsCancelled()) return grpc::Status::CANCELLED;
    if (!request.collection().empty()) {
      if (!collection.empty() && request.collection() != collection) {
        return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
            "collection: one Ingest call writes one collection (", Echo(collection), "), got ", Echo(request.collection()))));
      }
      collection = request.collection();
    }
    if (collection.empty()) {
      return ToGrpcStatus(absl::InvalidArgumentError("collection: required in the first IngestRequest"));
    }
    if (request.documents_size() == 0) continue;
    any = true;
    std::vector<rag::DocumentInput> docs;
    docs.reserve(request.documents_size());
    for (qrag::v1::Document& d : *request.mutable_documents()) {
      docs.push_back({std::move(*d.mutable_id()), std::move(*d.mutable_text()), ToMetadata(d.metadata())});
    }
    absl::StatusOr<rag::IngestResult> r = (*rag)->Ingest(collection, docs);
    if (!r.ok()) {
      return ToGrpcStatus(absl::Status(r.status().code(),
                                       absl::StrCat(r.status().message(), " (", progress.documents(),
                                                    " documents of earlier batches of this call are stored)")));
    }
    progress.set_documents(progress.documents() + r->documents);
    progress.set_chunks(progress.chunks() + r->chunks);
    progress.set_replaced(progress.replaced() + r->replaced);
    if (!stream->Write(progress)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  }
  if (!any) {
    if (collection.empty()) return ToGrpcStatus(absl::InvalidArgumentError("collection: required in the first IngestRequest"));
    return ToGrpcStatus(absl::InvalidArgumentError("documents: the Ingest call carried no documents"));
  }
  return grpc::Status::OK;
}

grpc::Status RetrievalService::DeleteDocuments(grpc::ServerContext* context,
                                               const qrag::v1::DeleteDocumentsRequest* request,
                                               qrag::v1::DeleteDocumentsResponse* response) {
  absl::StatusOr<rag::Collections*> rag = Begin(*context);
  if (!rag.ok()) return ToGrpcStatus(rag.status());
  absl::StatusOr<int64_t> deleted =
      (*rag)->Delete(request->collection(), std::vector<std::string>(request->ids().begin(), request->ids().end()));
  if (!deleted.ok()) return ToGrpcStatus(deleted.status());
  response->set_deleted(*deleted);
  return grpc::Status::OK;
}

grpc::Status RetrievalService::Retrieve(grpc::ServerContext* context, const qrag::v1::RetrieveRequest* request,
                                        qrag::v1::RetrieveResponse* response) {
  absl::StatusOr<rag::Collections*> rag = Begin(*context);
  if (!rag.ok()) return ToGrpcStatus(rag.status());
  rag::RetrieveTimings t;
  absl::StatusOr<std::vector<rag::RetrievedChunk>> hits =
      (*rag)->Retrieve(request->collection(), request->query(), request->top_k() == 0 ? kDefaultRetrieveTopK : request->top_k(),
                       request->min_score(), ToMetadata(request->filter()), &t);
  if (!hits.ok()) return ToGrpcStatus(hits.status());
  for (const rag::RetrievedChunk& h : *hits) FillPassage(h, response->add_passages());
  response->set_embed_seconds(t.embed_seconds);
  response->set_search_seconds(t.search_seconds);
  return grpc::Status::OK;
}

}  // namespace qrag::api
