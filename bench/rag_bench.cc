// BEIR SciFact retrieval with the real all-MiniLM-L6-v2 encoder: nDCG@10 and recall@100 (pytrec_eval's
// definitions: gain = relevance, log2 discount, ideal DCG over the judged documents), encode docs/s, and
// retrieve QPS of the exact index (fp32 and int8 GEMM) and of the FAISS indexes (HNSW, IVF-flat) with their
// recall@10 / recall@100 against the exact fp32 top-k. Documents are title + " " + text, truncated to the
// encoder's 256 tokens, as MTEB/BEIR evaluate the model.
//
//   rag_bench --model DIR [--shared DIR] [--quant fp32|fp8|int8|w4] [--weight-scheme log4.3|2:4]
//             [--threads N] [--docs N] [--json FILE]
//             [--save-embeddings FILE | --load-embeddings FILE] [--encode-range B:E] [FAISS flags]
//   rag_bench --random-corpus N [--clusters C] [--threads N] [FAISS flags]   (retrieve QPS and recall only)
//   FAISS flags: --hnsw-m N --hnsw-ef-construction N --hnsw-ef-search N --ivf-nlist N --ivf-nprobe N
//             (0 or absent: the collection defaults); FAISS's OpenMP threads: OMP_NUM_THREADS.
//
// --encode-range B:E encodes documents [B, E) of the corpus only, writes them to --save-embeddings and exits:
// shards run as parallel processes, then `cat` the files in order and evaluate with --load-embeddings.
// --weight-scheme runs an emulated scheme (quant/emulated_scheme.h: the encoder's linear weights transformed,
// then served in --quant). --json FILE also writes the nDCG@10 / recall@100 figures (read by qrag-quant
// report). Prints one line per figure; "--docs N" limits the corpus (for a quick look; the figures then are not
// SciFact's).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "server/backend/cpu/cpu_backend.h"
#include "server/common/status.h"
#include "server/model/bert_encoder.h"
#include "server/quant/emulated_scheme.h"
#include "server/rag/exact_index.h"
#include "server/rag/faiss_index.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::vector<nlohmann::json> ReadJsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "rag_bench: cannot read %s\n", path.c_str());
    std::exit(1);
  }
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "rag_bench: %s\n", std::string(s.message()).c_str());
  return 1;
}

using Hits = std::vector<std::vector<qrag::rag::SearchHit>>;

// One index's speed on `num_queries` queries: batched top-100 (its hits are returned), then one query at a
// time top-10, after a warm-up search that builds what the index builds lazily.
struct IndexRun {
  Hits top100;
  double batched_qps = 0, single_qps = 0, build_s = 0;
};

absl::StatusOr<IndexRun> RunIndex(qrag::rag::VectorIndex& index, const float* queries, int num_queries, int dim) {
  IndexRun run;
  auto t0 = Clock::now();
  if (auto s = index.Prepare(); !s.ok()) return s;
  run.build_s = Seconds(t0, Clock::now());
  if (auto w = index.Search(queries, 1, 10); !w.ok()) return w.status();
  t0 = Clock::now();
  auto hits = index.Search(queries, num_queries, 100);
  if (!hits.ok()) return hits.status();
  run.batched_qps = num_queries / Seconds(t0, Clock::now());
  run.top100 = std::move(*hits);
  t0 = Clock::now();
  for (int q = 0; q < num_queries; ++q) {
    if (auto one = index.Search(queries + static_cast<size_t>(q) * dim, 1, 10); !one.ok()) return one.status();
  }
  run.single_qps = num_queries / Seconds(t0, Clock::now());
  return run;
}

// Mean over queries of |hits top-k ∩ truth top-k| / k.
double RecallAt(const Hits& hits, const Hits& truth, size_t k) {
  double sum = 0;
  for (size_t q = 0; q < truth.size(); ++q) {
    std::set<int64_t> want;
    for (size_t i = 0; i < std::min(k, truth[q].size()); ++i) want.insert(truth[q][i].id);
    size_t found = 0;
    for (size_t i = 0; i < std::min(k, hits[q].size()); ++i) found += want.count(hits[q][i].id);
    sum += want.empty() ? 1.0 : static_cast<double>(found) / want.size();
  }
  return sum / truth.size();
}

// Fills `index` with the rows of `corpus` ([n, dim]) as ids 0..n-1.
absl::Status Fill(qrag::rag::VectorIndex& index, const std::vector<float>& corpus, int dim) {
  const size_t n = corpus.size() / dim;
  for (size_t i = 0; i < n; ++i) {
    QRAG_RETURN_IF_ERROR(index.Upsert(static_cast<int64_t>(i), absl::MakeConstSpan(corpus).subspan(i * dim, dim)));
  }
  return absl::OkStatus();
}

// The exact fp32 and int8 indexes and the FAISS HNSW and IVF indexes (`hnsw` / `ivf`: their parameters) on
// one corpus and query set, printed side by side; recall is against the exact fp32 top-10 / top-100.
// `on_exact` hears each exact index's top-100 (the SciFact path scores nDCG on it), `on_faiss` each FAISS one.
int CompareIndexes(const std::vector<float>& corpus, const std::vector<float>& queries, int dim, int threads,
                   qrag::rag::IndexSpec hnsw, qrag::rag::IndexSpec ivf, const std::string& what,
                   const std::function<void(const std::string&, const Hits&)>& on_hits) {
  const int num_queries = static_cast<int>(queries.size() / dim);
  const size_t n = corpus.size() / dim;
  Hits truth;
  for (qrag::backend::Precision ip : {qrag::backend::Precision::kF32, qrag::backend::Precision::kInt8}) {
    qrag::backend::CpuBackend cpu(qrag::backend::CpuBackendOptions{.num_threads = threads});
    auto index = qrag::rag::ExactIndex::Create(dim, ip, &cpu);
    if (!index.ok()) return Fail(index.status());
    if (auto s = Fill(**index, corpus, dim); !s.ok()) return Fail(s);
    auto run = RunIndex(**index, queries.data(), num_queries, dim);
    if (!run.ok()) return Fail(run.status());
    if (ip == qrag::backend::Precision::kF32) truth = run->top100;
    const std::string name = absl::StrCat("exact ", qrag::backend::PrecisionName(ip));
    std::printf("retrieve %-28s %s: batched %7.0f queries/s (%d queries, top-100), one at a time %7.0f queries/s "
                "(top-10), recall@10 %.4f recall@100 %.4f, %d threads\n",
                name.c_str(), what.c_str(), run->batched_qps, num_queries, run->single_qps,
                RecallAt(run->top100, truth, 10), RecallAt(run->top100, truth, 100), cpu.options().num_threads);
    if (on_hits) on_hits(name, run->top100);
  }
  hnsw.kind = qrag::rag::IndexKind::kHnsw;
  ivf.kind = qrag::rag::IndexKind::kIvf;
  for (const qrag::rag::IndexSpec& raw : {hnsw, ivf}) {
    auto spec = qrag::rag::ResolveIndexSpec(raw);
    if (!spec.ok()) return Fail(spec.status());
    auto index = qrag::rag::FaissIndex::Create(dim, *spec);
    if (!index.ok()) return Fail(index.status());
    if (auto s = Fill(**index, corpus, dim); !s.ok()) return Fail(s);
    auto run = RunIndex(**index, queries.data(), num_queries, dim);
    if (!run.ok()) return Fail(run.status());
    const std::string name = qrag::rag::IndexSpecToString(*spec);
    std::printf("retrieve %-28s %s: batched %7.0f queries/s (%d queries, top-100), one at a time %7.0f queries/s "
                "(top-10), recall@10 %.4f recall@100 %.4f, build %.1f s for %zu vectors\n",
                name.c_str(), what.c_str(), run->batched_qps, num_queries, run->single_qps,
                RecallAt(run->top100, truth, 10), RecallAt(run->top100, truth, 100), run->build_s, n);
    if (on_hits) on_hits(name, run->top100);
  }
  return 0;
}

// Retrieve QPS and recall of every index kind on `n` random unit vectors of MiniLM's 384 dimensions and 300
// random queries. Random directions are the hardest case for HNSW and IVF (no clusters to exploit): their
// recall here is a floor, not what text embeddings get (see the SciFact figures). With `clusters` > 0 the
// vectors (and queries) are drawn around that many random centres instead (centre + 0.6 x Gaussian noise per
// coordinate, normalized: members of a cluster have cosine ~0.7), a synthetic stand-in for the topical
// structure of text embeddings at corpus sizes no real embedding file here has.
int RandomCorpus(int n, int clusters, int threads, const qrag::rag::IndexSpec& hnsw, const qrag::rag::IndexSpec& ivf) {
  constexpr int kDim = 384, kQueries = 300;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> centres(static_cast<size_t>(std::max(clusters, 1)) * kDim);
  for (float& c : centres) c = normal(rng);
  auto unit_rows = [&](int rows) {
    std::vector<float> v(static_cast<size_t>(rows) * kDim);
    for (int r = 0; r < rows; ++r) {
      const float* centre = centres.data() + static_cast<size_t>(clusters > 0 ? rng() % clusters : 0) * kDim;
      float* row = v.data() + static_cast<size_t>(r) * kDim;
      double ss = 0;
      for (int j = 0; j < kDim; ++j) {
        row[j] = clusters > 0 ? centre[j] + 0.6f * normal(rng) : normal(rng);
        ss += static_cast<double>(row[j]) * row[j];
      }
      for (int j = 0; j < kDim; ++j) row[j] /= static_cast<float>(std::sqrt(ss));
    }
    return v;
  };
  const std::vector<float> corpus = unit_rows(n), queries = unit_rows(kQueries);
  const std::string what = clusters > 0 ? absl::StrCat(n, " unit vectors in ", clusters, " clusters x ", kDim, " dims")
                                        : absl::StrCat(n, " random unit vectors x ", kDim, " dims");
  return CompareIndexes(corpus, queries, kDim, threads, hnsw, ivf, what, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  qrag::backend::RestartForOpenBlasKernels(argv);  // as qrag-server does
  std::string model, shared = "../shared", quant = "fp32", save, load, weight_scheme, json_out;
  int threads = 0, max_docs = 0;
  bool blas = true;  // --gemm canonical: the batch-invariant kernels instead of OpenBLAS (as the server's RAG)
  size_t range_begin = 0, range_end = 0;  // --encode-range B:E: encode docs [B, E) only, save, exit
  int random_corpus = 0;  // --random-corpus N: retrieve QPS only, on N random unit vectors (no model)
  int clusters = 0;       // --clusters C: the random corpus drawn around C centres
  qrag::rag::IndexSpec hnsw, ivf;  // FAISS parameters (0: the collection defaults)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "rag_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") model = next();
    else if (a == "--shared") shared = next();
    else if (a == "--quant") quant = next();
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--docs") max_docs = std::stoi(next());
    else if (a == "--gemm") blas = next() != "canonical";
    else if (a == "--save-embeddings") save = next();
    else if (a == "--load-embeddings") load = next();
    else if (a == "--random-corpus") random_corpus = std::stoi(next());
    else if (a == "--weight-scheme") weight_scheme = next();
    else if (a == "--json") json_out = next();
    else if (a == "--clusters") clusters = std::stoi(next());
    else if (a == "--hnsw-m") hnsw.hnsw_m = std::stoi(next());
    else if (a == "--hnsw-ef-construction") hnsw.hnsw_ef_construction = std::stoi(next());
    else if (a == "--hnsw-ef-search") hnsw.hnsw_ef_search = std::stoi(next());
    else if (a == "--ivf-nlist") ivf.ivf_nlist = std::stoi(next());
    else if (a == "--ivf-nprobe") ivf.ivf_nprobe = std::stoi(next());
    else if (a == "--encode-range") {
      const std::string r = next();
      range_begin = std::stoul(r.substr(0, r.find(':')));
      range_end = std::stoul(r.substr(r.find(':') + 1));
    }
    else {
      std::fprintf(stderr, "usage: rag_bench --model DIR [--shared DIR] [--quant fp32|fp8|int8] [--threads N] "
                           "[--docs N] [--gemm blas|canonical] [--weight-scheme log4.3|2:4] [--json FILE]\n"
                           "                 [--save-embeddings FILE | --load-embeddings FILE] [--encode-range B:E]\n"
                           "       rag_bench --random-corpus N [--clusters C] [--threads N]\n"
                           "       FAISS: [--hnsw-m N] [--hnsw-ef-construction N] [--hnsw-ef-search N] "
                           "[--ivf-nlist N] [--ivf-nprobe N]\n");
      return 2;
    }
  }
  if (random_corpus > 0) return RandomCorpus(random_corpus, clusters, threads, hnsw, ivf);
  if (model.empty()) return Fail(absl::InvalidArgumentError("--model DIR is required"));
  auto precision = qrag::backend::ParsePrecision(quant);
  if (!precision.ok()) return Fail(precision.status());

  const std::string dir = shared + "/data/scifact";
  std::vector<nlohmann::json> corpus = ReadJsonl(dir + "/corpus.jsonl");
  if (max_docs > 0 && static_cast<size_t>(max_docs) < corpus.size()) corpus.resize(max_docs);
  std::vector<std::string> doc_ids, doc_texts;
  for (const auto& d : corpus) {
    doc_ids.push_back(d["_id"].get<std::string>());
    doc_texts.push_back(d["title"].get<std::string>() + " " + d["text"].get<std::string>());
  }
  // qrels/test.tsv: header, CRLF line endings.
  std::map<std::string, std::set<std::string>> qrels;
  {
    std::ifstream in(dir + "/qrels/test.tsv");
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::vector<std::string> f = absl::StrSplit(line, '\t');
      if (f.size() == 3 && std::stoi(f[2]) > 0) qrels[f[0]].insert(f[1]);
    }
  }
  std::vector<std::string> query_ids, query_texts;
  for (const auto& q : ReadJsonl(dir + "/queries.jsonl")) {
    if (qrels.count(q["_id"].get<std::string>())) {
      query_ids.push_back(q["_id"].get<std::string>());
      query_texts.push_back(q["text"].get<std::string>());
    }
  }

  qrag::backend::CpuBackend cpu(qrag::backend::CpuBackendOptions{.num_threads = threads, .blas = blas});
  qrag::model::BertEncoderOptions eo;
  eo.precision = *precision;
  if (!weight_scheme.empty()) {
    auto t = qrag::quant::EmulatedWeightScheme(weight_scheme);
    if (!t.ok()) return Fail(t.status());
    eo.weight_transform = *t;
    quant += "+" + weight_scheme;  // the label: e.g. fp32+log4.3 (fp32 GEMMs over Log 4.3 weights)
  }
  auto encoder = qrag::model::BertEncoder::Load(model, &cpu, eo);
  if (!encoder.ok()) return Fail(encoder.status());
  const int dim = (*encoder)->dim();

  std::vector<float> doc_emb;
  double encode_s = 0;
  if (!load.empty()) {
    std::ifstream in(load, std::ios::binary);
    doc_emb.resize(doc_texts.size() * dim);
    in.read(reinterpret_cast<char*>(doc_emb.data()), doc_emb.size() * sizeof(float));
    if (!in) return Fail(absl::InvalidArgumentError("embeddings file too short: " + load));
  } else {
    const auto t0 = Clock::now();
    size_t tokens = 0;
    if (range_end > 0) {  // one shard of the corpus (shards run as separate processes, then --load-embeddings)
      range_end = std::min(range_end, doc_texts.size());
      doc_texts = std::vector<std::string>(doc_texts.begin() + range_begin, doc_texts.begin() + range_end);
    }
    for (size_t begin = 0; begin < doc_texts.size(); begin += 256) {
      const size_t end = std::min(doc_texts.size(), begin + 256);
      auto e = (*encoder)->Embed(absl::MakeConstSpan(doc_texts).subspan(begin, end - begin));
      if (!e.ok()) return Fail(e.status());
      doc_emb.insert(doc_emb.end(), e->begin(), e->end());
      std::fprintf(stderr, "\rencoded %zu/%zu documents (%.0f s)", end, doc_texts.size(), Seconds(t0, Clock::now()));
    }
    encode_s = Seconds(t0, Clock::now());
    std::fprintf(stderr, "\n");
    for (const auto& t : doc_texts) tokens += std::min<size_t>((*encoder)->tokenizer().Encode(t)->size() + 2, 256);
    std::printf("encode: %zu docs, %zu tokens in %.1f s: %.2f docs/s, %.0f tokens/s (%s, %s GEMMs, %d threads)\n",
                doc_texts.size(), tokens, encode_s, doc_texts.size() / encode_s, tokens / encode_s, quant.c_str(),
                blas ? "vendor (OpenBLAS fp32, oneDNN int8)" : "canonical", cpu.options().num_threads);
    if (!save.empty()) {
      std::ofstream out(save, std::ios::binary);
      out.write(reinterpret_cast<const char*>(doc_emb.data()), doc_emb.size() * sizeof(float));
    }
    if (range_end > 0) return 0;
  }
  auto t0 = Clock::now();
  auto query_emb = (*encoder)->Embed(query_texts);
  if (!query_emb.ok()) return Fail(query_emb.status());
  std::printf("encode queries: %zu in %.2f s\n", query_texts.size(), Seconds(t0, Clock::now()));

  const std::string encoder_name = load.empty() ? quant : quant + " queries, corpus embeddings from " + load;
  // --json: {"encoder", "queries", "docs", "corpus_embeddings", "index": {"fp32"|"int8"|<FAISS spec>: {...}}}.
  nlohmann::json results = {{"encoder", quant}, {"queries", query_ids.size()}, {"docs", doc_ids.size()},
                            {"corpus_embeddings", load.empty() ? "encoded in this run" : load}};
  auto quality = [&](const std::string& index_name, const Hits& hits) {
    double ndcg = 0, recall = 0;
    for (size_t q = 0; q < query_ids.size(); ++q) {
      const auto& rel = qrels[query_ids[q]];
      double dcg = 0, idcg = 0;
      int found = 0;
      for (size_t r = 0; r < hits[q].size(); ++r) {
        const bool is_rel = rel.count(doc_ids[hits[q][r].id]) > 0;
        if (is_rel && r < 10) dcg += 1.0 / std::log2(r + 2.0);
        found += is_rel;
      }
      for (size_t r = 0; r < std::min<size_t>(rel.size(), 10); ++r) idcg += 1.0 / std::log2(r + 2.0);
      ndcg += dcg / idcg;
      recall += static_cast<double>(found) / rel.size();
    }
    std::printf("encoder %s, index %s: nDCG@10 %.5f  recall@100 %.5f  (%zu queries, %zu docs)\n",
                encoder_name.c_str(), index_name.c_str(), ndcg / query_ids.size(), recall / query_ids.size(),
                query_ids.size(), doc_ids.size());
    const std::string key = absl::StartsWith(index_name, "exact ") ? index_name.substr(6) : index_name;
    results["index"][key] = {{"ndcg_at_10", ndcg / query_ids.size()}, {"recall_at_100", recall / query_ids.size()}};
  };
  const int rc = CompareIndexes(doc_emb, *query_emb, dim, threads, hnsw, ivf,
                                absl::StrCat("SciFact ", doc_ids.size(), " docs"), quality);
  if (rc != 0 || json_out.empty()) return rc;
  std::ofstream out(json_out);
  out << results.dump(2) << "\n";
  if (!out) return Fail(absl::InternalError("cannot write " + json_out));
  return 0;
}
