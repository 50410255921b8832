#include "server/api/retrieval_service.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/unknown_field_set.h"
#include "server/api/status_mapping.h"
#include "server/common/echo.h"
#include "server/common/status.h"
#include "server/api/wire.h"
#include "server/model/utf8.h"

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
  out->set_index_lag_seconds(i.index_lag_seconds);
}

// Why bytes that should be an IngestRequest did not parse: a string field that is not UTF-8, named by
// document and field ("documents[3].text: invalid UTF-8 at byte 17"), or a generic message.
absl::Status DiagnoseIngestRequest(const std::string& wire) {
  google::protobuf::UnknownFieldSet fields;
  if (wire.size() <= static_cast<size_t>(INT32_MAX) && fields.ParseFromString(wire)) {
    int doc = 0;
    for (int i = 0; i < fields.field_count(); ++i) {
      const google::protobuf::UnknownField& f = fields.field(i);
      if (f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) continue;
      if (f.number() == 1) QRAG_RETURN_IF_ERROR(model::CheckUtf8(f.length_delimited(), "collection"));
      if (f.number() != 2) continue;
      google::protobuf::UnknownFieldSet d;
      const std::string name = absl::StrCat("documents[", doc++, "]");
      if (!d.ParseFromString(f.length_delimited())) continue;
      for (int j = 0; j < d.field_count(); ++j) {
        const google::protobuf::UnknownField& g = d.field(j);
        if (g.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) continue;
        if (g.number() == 1) QRAG_RETURN_IF_ERROR(model::CheckUtf8(g.length_delimited(), absl::StrCat(name, ".id")));
        if (g.number() == 2) {
          QRAG_RETURN_IF_ERROR(model::CheckUtf8(g.length_delimited(), absl::StrCat(name, ".text")));
        }
      }
    }
  }
  return absl::InvalidArgumentError(
      "the message is not a valid serialized qrag.v1.IngestRequest (a field has the wrong wire type, or a string "
      "field is not UTF-8)");
}

// CANCELLED, or DEADLINE_EXCEEDED when the call's deadline has passed.
absl::Status CallEnded(const grpc::CallbackServerContext& context) {
  const std::chrono::system_clock::time_point d = context.deadline();
  if (d != std::chrono::system_clock::time_point::max() && absl::FromChrono(d) <= absl::Now()) {
    return absl::DeadlineExceededError("deadline exceeded before the call's work started");
  }
  return absl::CancelledError("call cancelled before its work started");
}

// One Ingest call: read a message, store it (on the work queue), acknowledge the running progress, read the
// next. Exactly one operation is in flight at any time, so the reactor needs no lock: each step is started
// by the completion of the one before. Deletes itself in OnDone.
class IngestCall final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  IngestCall(rag::Collections* rag, WorkQueue* work, grpc::CallbackServerContext* context)
      : rag_(rag), work_(work), context_(context) {
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed the stream, or the call ended
      if (context_->IsCancelled()) return Finish(ToGrpcStatus(CallEnded(*context_)));
      if (!any_) {
        return Fail(absl::InvalidArgumentError(collection_.empty() ? "collection: required in the first IngestRequest"
                                                                   : "documents: the Ingest call carried no documents"));
      }
      return Finish(grpc::Status::OK);
    }
    ++messages_;
    absl::StatusOr<std::string> wire = FlattenBytes(in_);
    in_.Clear();
    auto request = std::make_shared<qrag::v1::IngestRequest>();
    if (!wire.ok()) return Fail(wire.status());
    if (!ParseMessage(*wire, request.get()).ok()) return Fail(DiagnoseIngestRequest(*wire));
    if (!request->collection().empty()) {
      if (!collection_.empty() && request->collection() != collection_) {
        return Fail(absl::InvalidArgumentError(absl::StrCat("collection: one Ingest call writes one collection (",
                                                            Echo(collection_), "), got ",
                                                            Echo(request->collection()))));
      }
      collection_ = request->collection();
    }
    if (collection_.empty()) return Fail(absl::InvalidArgumentError("collection: required in the first IngestRequest"));
    if (request->documents_size() == 0) return StartRead(&in_);
    any_ = true;
    const absl::Status queued = work_->Submit([this, request] { Store(*request); });
    if (!queued.ok()) Fail(queued);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    StartRead(&in_);
  }

  void OnDone() override { delete this; }

 private:
  // On the work queue: one batch stored in one transaction, then acknowledged.
  void Store(qrag::v1::IngestRequest& request) {
    if (context_->IsCancelled()) return Finish(ToGrpcStatus(CallEnded(*context_)));
    std::vector<rag::DocumentInput> docs;
    docs.reserve(request.documents_size());
    for (qrag::v1::Document& d : *request.mutable_documents()) {
      docs.push_back({std::move(*d.mutable_id()), std::move(*d.mutable_text()), ToMetadata(d.metadata())});
    }
    absl::StatusOr<rag::IngestResult> r = rag_->Ingest(collection_, docs);
    if (!r.ok()) return Fail(r.status());
    progress_.set_documents(progress_.documents() + r->documents);
    progress_.set_chunks(progress_.chunks() + r->chunks);
    progress_.set_tokens(progress_.tokens() + r->tokens);
    progress_.set_replaced(progress_.replaced() + r->replaced);
    if (absl::Status s = SerializeMessage(progress_, &out_); !s.ok()) return Fail(s);
    StartWrite(&out_);
  }

  // Ends the call with `status`, saying which message failed and what of the call is stored.
  void Fail(const absl::Status& status) {
    Finish(ToGrpcStatus(absl::Status(
        status.code(), absl::StrCat("IngestRequest ", messages_, " of this call: ", status.message(), " (",
                                    progress_.documents(), " documents of earlier messages of this call are stored)"))));
  }

  rag::Collections* const rag_;
  WorkQueue* const work_;
  grpc::CallbackServerContext* const context_;
  grpc::ByteBuffer in_;
  grpc::ByteBuffer out_;
  std::string collection_;
  qrag::v1::IngestProgress progress_;
  bool any_ = false;
  int64_t messages_ = 0;  // read so far, 1-based in messages
};

// An Ingest call refused at its start: finishes at once, deletes itself.
class RefusedIngest final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit RefusedIngest(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

absl::StatusOr<rag::RetrieveOptions> RetrieveOptionsOf(int mode, bool group_by_document,
                                                       std::string_view field_prefix) {
  rag::RetrieveOptions how;
  how.group_by_document = group_by_document;
  switch (mode) {
    case qrag::v1::SEARCH_MODE_UNSPECIFIED:
    case qrag::v1::SEARCH_MODE_HYBRID:
      how.mode = rag::SearchMode::kHybrid;
      break;
    case qrag::v1::SEARCH_MODE_DENSE:
      how.mode = rag::SearchMode::kDense;
      break;
    case qrag::v1::SEARCH_MODE_BM25:
      how.mode = rag::SearchMode::kBm25;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(std::string(field_prefix), "mode ", mode,
                                                     " is not a SearchMode (DENSE = 1, BM25 = 2, HYBRID = 3)"));
  }
  return how;
}

void FillPassage(const rag::RetrievedChunk& hit, qrag::v1::RetrievedPassage* out) {
  out->set_document_id(hit.chunk.document_id);
  out->set_chunk_index(hit.chunk.seq);
  out->set_text(hit.chunk.text);
  out->set_score(hit.score);
  out->set_bm25_score(hit.bm25);
  out->set_fused_score(hit.fused);
  for (const auto& [k, v] : hit.chunk.metadata) (*out->mutable_metadata())[k] = v;
}

absl::StatusOr<rag::Collections*> RetrievalService::Begin(const grpc::CallbackServerContext& context) const {
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

template <typename Request, typename Response, typename Body>
RetrievalService::Unary* RetrievalService::RunUnary(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* wire_request,
                                                    grpc::ByteBuffer* wire_response, Body body) {
  Unary* reactor = context->DefaultReactor();
  absl::StatusOr<rag::Collections*> rag = Begin(*context);
  if (!rag.ok()) {
    reactor->Finish(ToGrpcStatus(rag.status()));
    return reactor;
  }
  absl::StatusOr<Request> request = ParseRequest<Request>(*wire_request);
  if (!request.ok()) {
    reactor->Finish(ToGrpcStatus(request.status()));
    return reactor;
  }
  // The reactor, the context and the response buffer live until Finish; the task finishes the call.
  auto shared = std::make_shared<Request>(*std::move(request));
  const absl::Status queued =
      work_->Submit([reactor, context, wire_response, collections = *rag, shared, body] {
        if (context->IsCancelled()) return reactor->Finish(ToGrpcStatus(CallEnded(*context)));
        Response response;
        absl::Status s = body(collections, *shared, &response);
        if (s.ok()) s = SerializeMessage(response, wire_response);
        reactor->Finish(ToGrpcStatus(s));
      });
  if (!queued.ok()) reactor->Finish(ToGrpcStatus(queued));
  return reactor;
}

RetrievalService::Unary* RetrievalService::Embed(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                                 grpc::ByteBuffer* response) {
  return RunUnary<qrag::v1::EmbedRequest, qrag::v1::EmbedResponse>(
      context, request, response,
      [](rag::Collections* rag, const qrag::v1::EmbedRequest& req, qrag::v1::EmbedResponse* out) -> absl::Status {
        if (req.texts_size() > kMaxEmbedTexts) {
          return absl::InvalidArgumentError(
              absl::StrCat("texts: ", req.texts_size(), " texts, at most ", kMaxEmbedTexts, " per call"));
        }
        const std::vector<std::string> texts(req.texts().begin(), req.texts().end());
        int64_t tokens = 0;
        QRAG_ASSIGN_OR_RETURN(std::vector<float> emb, rag->Embed(texts, &tokens));
        const int dim = rag->encoder().dim();
        out->set_tokens(tokens);
        out->set_embedder(rag->encoder().model_id());
        out->set_dim(dim);
        for (size_t i = 0; i < texts.size(); ++i) {
          out->add_embeddings()->mutable_values()->Add(emb.begin() + i * dim, emb.begin() + (i + 1) * dim);
        }
        return absl::OkStatus();
      });
}

RetrievalService::Unary* RetrievalService::CreateCollection(grpc::CallbackServerContext* context,
                                                            const grpc::ByteBuffer* request,
                                                            grpc::ByteBuffer* response) {
  return RunUnary<qrag::v1::CreateCollectionRequest, qrag::v1::CollectionInfo>(
      context, request, response,
      [](rag::Collections* rag, const qrag::v1::CreateCollectionRequest& req,
         qrag::v1::CollectionInfo* out) -> absl::Status {
        rag::ChunkingOptions chunking;  // defaults when both are unset
        if (req.chunk_tokens() != 0 || req.chunk_overlap_tokens() != 0) {
          chunking.chunk_tokens = req.chunk_tokens() != 0 ? req.chunk_tokens() : chunking.chunk_tokens;
          chunking.overlap_tokens = req.chunk_overlap_tokens();
        }
        QRAG_ASSIGN_OR_RETURN(const rag::IndexSpec index, FromProto(req.index()));
        QRAG_ASSIGN_OR_RETURN(const rag::CollectionInfo info, rag->Create(req.name(), req.embedder(), chunking, index));
        FillInfo(info, out);
        return absl::OkStatus();
      });
}

RetrievalService::Unary* RetrievalService::ListCollections(grpc::CallbackServerContext* context,
                                                           const grpc::ByteBuffer* request,
                                                           grpc::ByteBuffer* response) {
  return RunUnary<qrag::v1::ListCollectionsRequest, qrag::v1::ListCollectionsResponse>(
      context, request, response,
      [](rag::Collections* rag, const qrag::v1::ListCollectionsRequest&,
         qrag::v1::ListCollectionsResponse* out) -> absl::Status {
        QRAG_ASSIGN_OR_RETURN(std::vector<rag::CollectionInfo> all, rag->List());
        for (const rag::CollectionInfo& i : all) FillInfo(i, out->add_collections());
        return absl::OkStatus();
      });
}

RetrievalService::Unary* RetrievalService::DropCollection(grpc::CallbackServerContext* context,
                                                          const grpc::ByteBuffer* request,
                                                          grpc::ByteBuffer* response) {
  return RunUnary<qrag::v1::DropCollectionRequest, qrag::v1::DropCollectionResponse>(
      context, request, response,
      [](rag::Collections* rag, const qrag::v1::DropCollectionRequest& req, qrag::v1::DropCollectionResponse*) {
        return rag->Drop(req.name());
      });
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* RetrievalService::Ingest(
    grpc::CallbackServerContext* context) {
  absl::StatusOr<rag::Collections*> rag = Begin(*context);
  if (!rag.ok()) return new RefusedIngest(ToGrpcStatus(rag.status()));
  return new IngestCall(*rag, work_, context);
}

RetrievalService::Unary* RetrievalService::DeleteDocuments(grpc::CallbackServerContext* context,
                                                           const grpc::ByteBuffer* request,
                                                           grpc::ByteBuffer* response) {
  return RunUnary<qrag::v1::DeleteDocumentsRequest, qrag::v1::DeleteDocumentsResponse>(
      context, request, response,
      [](rag::Collections* rag, const qrag::v1::DeleteDocumentsRequest& req,
         qrag::v1::DeleteDocumentsResponse* out) -> absl::Status {
        QRAG_ASSIGN_OR_RETURN(const int64_t deleted,
                              rag->Delete(req.collection(), std::vector<std::string>(req.ids().begin(), req.ids().end())));
        out->set_deleted(deleted);
        return absl::OkStatus();
      });
}

RetrievalService::Unary* RetrievalService::Retrieve(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
  return RunUnary<qrag::v1::RetrieveRequest, qrag::v1::RetrieveResponse>(
      context, request, response,
      [](rag::Collections* rag, const qrag::v1::RetrieveRequest& req, qrag::v1::RetrieveResponse* out) -> absl::Status {
        rag::RetrieveTimings t;
        QRAG_ASSIGN_OR_RETURN(const rag::RetrieveOptions how,
                              RetrieveOptionsOf(req.mode(), req.group_by_document(), ""));
        QRAG_ASSIGN_OR_RETURN(std::vector<rag::RetrievedChunk> hits,
                              rag->Retrieve(req.collection(), req.query(), req.top_k(), req.min_score(),
                                            ToMetadata(req.filter()), &t, how));
        for (const rag::RetrievedChunk& h : hits) FillPassage(h, out->add_passages());
        out->set_embed_seconds(t.embed_seconds);
        out->set_search_seconds(t.search_seconds);
        return absl::OkStatus();
      });
}

}  // namespace qrag::api
