// The hook the RAG stage (server/rag/) reports its timings through: ServingMetrics implements it and turns
// the calls into qrag_rag_embed_seconds and qrag_rag_search_seconds. It lives in rag/ (the layer that reports
// through it), as the engine keeps EngineObserver; metrics/ implements it from above.
//
// Usage (in the retriever, per request): time the query embedding and the index search, then
//   observer->OnEmbed(absl::ToDoubleSeconds(embed_time));
//   observer->OnSearch(absl::ToDoubleSeconds(search_time));
// Thread-safe, never blocks (atomic updates): call it from any thread; a null observer means no metrics.
#ifndef QRAG_SERVER_RAG_RAG_OBSERVER_H_
#define QRAG_SERVER_RAG_RAG_OBSERVER_H_

namespace qrag::rag {

class RagObserver {
 public:
  virtual ~RagObserver() = default;
  // One embedding of a request's query (the encoder forward, tokenization included), in seconds.
  virtual void OnEmbed(double seconds) = 0;
  // One vector-index search (top-k over a collection), in seconds.
  virtual void OnSearch(double seconds) = 0;
  // A shared store (several replicas): at every poll of its change log, the bound on how far this replica's
  // indexes are behind (Collections::index_lag_seconds).
  virtual void OnIndexLag(double seconds) {}
  // A change another replica committed, applied to this replica's indexes: seconds from commit to applied.
  virtual void OnChangeApplied(double seconds) {}
};

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_RAG_OBSERVER_H_
