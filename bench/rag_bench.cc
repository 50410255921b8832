// BEIR SciFact retrieval with the real all-MiniLM-L6-v2 encoder: nDCG@10 and recall@100 (pytrec_eval's
// definitions: gain = relevance, log2 discount, ideal DCG over the judged documents), encode docs/s, and
// retrieve QPS of the exact index (fp32 and int8 GEMM). Documents are title + " " + text, truncated to the
// encoder's 256 tokens, as MTEB/BEIR evaluate the model.
//
//   rag_bench --model DIR [--shared DIR] [--quant fp32|fp8|int8|w4] [--weight-scheme log4.3|2:4]
//             [--threads N] [--docs N] [--json FILE]
//             [--save-embeddings FILE | --load-embeddings FILE] [--encode-range B:E]
//   rag_bench --random-corpus N [--threads N]     (retrieve QPS of the exact index only)
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
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "server/backend/cpu/cpu_backend.h"
#include "server/model/bert_encoder.h"
#include "server/quant/emulated_scheme.h"
#include "server/rag/exact_index.h"

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

// Retrieve QPS of the exact index (fp32 and int8) on `n` random unit vectors of MiniLM's 384 dimensions and
// 300 random queries: the search cost depends on the shapes only, not on the values.
int RandomCorpusQps(int n, int threads) {
  constexpr int kDim = 384, kQueries = 300;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  auto unit_rows = [&](int rows) {
    std::vector<float> v(static_cast<size_t>(rows) * kDim);
    for (int r = 0; r < rows; ++r) {
      double ss = 0;
      for (int j = 0; j < kDim; ++j) ss += std::pow(v[r * kDim + j] = normal(rng), 2);
      for (int j = 0; j < kDim; ++j) v[r * kDim + j] /= static_cast<float>(std::sqrt(ss));
    }
    return v;
  };
  const std::vector<float> corpus = unit_rows(n), queries = unit_rows(kQueries);
  for (qrag::backend::Precision ip : {qrag::backend::Precision::kF32, qrag::backend::Precision::kInt8}) {
    qrag::backend::CpuBackend cpu(qrag::backend::CpuBackendOptions{.num_threads = threads});
    auto index = qrag::rag::ExactIndex::Create(kDim, ip, &cpu);
    if (!index.ok()) return Fail(index.status());
    for (int i = 0; i < n; ++i) {
      if (auto s = (*index)->Upsert(i, absl::MakeConstSpan(corpus).subspan(static_cast<size_t>(i) * kDim, kDim)); !s.ok()) {
        return Fail(s);
      }
    }
    if (auto w = (*index)->Search(queries.data(), 1, 10); !w.ok()) return Fail(w.status());  // builds the weight
    auto t0 = Clock::now();
    auto hits = (*index)->Search(queries.data(), kQueries, 100);
    if (!hits.ok()) return Fail(hits.status());
    const double batch_s = Seconds(t0, Clock::now());
    t0 = Clock::now();
    for (int q = 0; q < kQueries; ++q) {
      if (auto one = (*index)->Search(queries.data() + q * kDim, 1, 10); !one.ok()) return Fail(one.status());
    }
    const double single_s = Seconds(t0, Clock::now());
    std::printf("retrieve %s exact, %d random unit vectors x %d dims: batched %.0f queries/s (%d queries, top-100), "
                "one at a time %.0f queries/s (top-10), %d threads\n",
                qrag::backend::PrecisionName(ip), n, kDim, kQueries / batch_s, kQueries, kQueries / single_s,
                cpu.options().num_threads);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, shared = "../shared", quant = "fp32", save, load, weight_scheme, json_out;
  int threads = 0, max_docs = 0;
  size_t range_begin = 0, range_end = 0;  // --encode-range B:E: encode docs [B, E) only, save, exit
  int random_corpus = 0;  // --random-corpus N: retrieve QPS only, on N random unit vectors (no model)
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
    else if (a == "--save-embeddings") save = next();
    else if (a == "--load-embeddings") load = next();
    else if (a == "--random-corpus") random_corpus = std::stoi(next());
    else if (a == "--weight-scheme") weight_scheme = next();
    else if (a == "--json") json_out = next();
    else if (a == "--encode-range") {
      const std::string r = next();
      range_begin = std::stoul(r.substr(0, r.find(':')));
      range_end = std::stoul(r.substr(r.find(':') + 1));
    }
    else {
      std::fprintf(stderr, "usage: rag_bench --model DIR [--shared DIR] [--quant fp32|fp8|int8] [--threads N] "
                           "[--docs N] [--weight-scheme log4.3|2:4] [--json FILE]\n"
                           "                 [--save-embeddings FILE | --load-embeddings FILE] [--encode-range B:E]\n");
      return 2;
    }
  }
  if (random_corpus > 0) return RandomCorpusQps(random_corpus, threads);
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

  qrag::backend::CpuBackend cpu(qrag::backend::CpuBackendOptions{.num_threads = threads});
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
    std::printf("encode: %zu docs, %zu tokens in %.1f s: %.2f docs/s, %.0f tokens/s (%s, %d threads)\n",
                doc_texts.size(), tokens, encode_s, doc_texts.size() / encode_s, tokens / encode_s, quant.c_str(),
                cpu.options().num_threads);
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

  nlohmann::json results = {{"encoder", quant}, {"queries", query_ids.size()}, {"docs", doc_ids.size()},
                             {"corpus_embeddings", load.empty() ? "encoded in this run" : load}};
  for (qrag::backend::Precision ip : {qrag::backend::Precision::kF32, qrag::backend::Precision::kInt8}) {
    qrag::backend::CpuBackend index_cpu(qrag::backend::CpuBackendOptions{.num_threads = threads});
    auto index = qrag::rag::ExactIndex::Create(dim, ip, &index_cpu);
    if (!index.ok()) return Fail(index.status());
    for (size_t i = 0; i < doc_ids.size(); ++i) {
      auto s = (*index)->Upsert(static_cast<int64_t>(i), absl::MakeConstSpan(doc_emb).subspan(i * dim, dim));
      if (!s.ok()) return Fail(s);
    }
    // Warm-up search builds the backend weight; then time batched and one-at-a-time retrieval.
    auto hits = (*index)->Search(query_emb->data(), static_cast<int>(query_ids.size()), 100);
    if (!hits.ok()) return Fail(hits.status());
    t0 = Clock::now();
    hits = (*index)->Search(query_emb->data(), static_cast<int>(query_ids.size()), 100);
    const double batch_s = Seconds(t0, Clock::now());
    t0 = Clock::now();
    for (size_t q = 0; q < query_ids.size(); ++q) {
      auto one = (*index)->Search(query_emb->data() + q * dim, 1, 10);
      if (!one.ok()) return Fail(one.status());
    }
    const double single_s = Seconds(t0, Clock::now());
    double ndcg = 0, recall = 0;
    for (size_t q = 0; q < query_ids.size(); ++q) {
      const auto& rel = qrels[query_ids[q]];
      double dcg = 0, idcg = 0;
      int found = 0;
      for (size_t r = 0; r < (*hits)[q].size(); ++r) {
        const bool is_rel = rel.count(doc_ids[(*hits)[q][r].id]) > 0;
        if (is_rel && r < 10) dcg += 1.0 / std::log2(r + 2.0);
        found += is_rel;
      }
      for (size_t r = 0; r < std::min<size_t>(rel.size(), 10); ++r) idcg += 1.0 / std::log2(r + 2.0);
      ndcg += dcg / idcg;
      recall += static_cast<double>(found) / rel.size();
    }
    const std::string encoder = load.empty() ? quant : quant + " queries, corpus embeddings from " + load;
    std::printf("encoder %s, exact index %s: nDCG@10 %.5f  recall@100 %.5f  (%zu queries, %zu docs)\n", encoder.c_str(),
                qrag::backend::PrecisionName(ip), ndcg / query_ids.size(), recall / query_ids.size(), query_ids.size(),
                doc_ids.size());
    std::printf("retrieve %s exact: batched %.0f queries/s (300 x %zu GEMM + top-100), one at a time %.0f queries/s\n",
                qrag::backend::PrecisionName(ip), query_ids.size() / batch_s, doc_ids.size(),
                query_ids.size() / single_s);
    results["index"][qrag::backend::PrecisionName(ip)] = {{"ndcg_at_10", ndcg / query_ids.size()},
                                                          {"recall_at_100", recall / query_ids.size()}};
  }
  if (!json_out.empty()) {
    std::ofstream out(json_out);
    out << results.dump(2) << "\n";
    if (!out) return Fail(absl::InternalError("cannot write " + json_out));
  }
  return 0;
}
