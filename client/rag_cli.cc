#include "client/rag_cli.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/rag_client.h"
#include "nlohmann/json.hpp"
#include "server/common/cli.h"

namespace qrag::client {
namespace {

namespace fs = std::filesystem;

constexpr char kProgram[] = "qrag";

[[noreturn]] void UsageError(const std::string& msg) { cli::UsageError(kProgram, msg); }

int Error(const absl::Status& status) {
  std::fprintf(stderr, "qrag: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

int FileError(const std::string& msg) {
  std::fprintf(stderr, "qrag: %s\n", msg.c_str());
  return 1;
}

void ParseFilter(const std::string& value, std::map<std::string, std::string>* filter) {
  const size_t eq = value.find('=');
  if (eq == std::string::npos || eq == 0) UsageError(absl::StrCat("filter '", value, "' is not KEY=VALUE"));
  (*filter)[value.substr(0, eq)] = value.substr(eq + 1);
}

// Documents of one file: .txt/.md whole (id = path), .jsonl one per line.
absl::Status ReadDocuments(const fs::path& path, const std::string& id_prefix, std::vector<qrag::v1::Document>* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  const std::string ext = path.extension().string();
  if (ext == ".txt" || ext == ".md") {
    std::stringstream ss;
    ss << in.rdbuf();
    qrag::v1::Document d;
    d.set_id(id_prefix + path.string());
    d.set_text(ss.str());
    (*d.mutable_metadata())["source"] = path.string();
    out->push_back(std::move(d));
    return absl::OkStatus();
  }
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = absl::StrCat(path.string(), ":", line_no);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
    qrag::v1::Document d;
    const char* id_key = j.contains("id") ? "id" : "_id";
    if (!j.contains(id_key) || !(j[id_key].is_string() || j[id_key].is_number_integer())) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": needs a string \"id\" (or \"_id\")"));
    }
    d.set_id(id_prefix + (j[id_key].is_string() ? j[id_key].get<std::string>() : std::to_string(j[id_key].get<int64_t>())));
    if (!j.contains("text") || !j["text"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": needs a string \"text\""));
    }
    std::string text = j["text"].get<std::string>();
    if (j.contains("title") && j["title"].is_string() && !j["title"].get<std::string>().empty()) {
      text = j["title"].get<std::string>() + " " + text;
    }
    d.set_text(std::move(text));
    if (j.contains("metadata") && j["metadata"].is_object()) {
      for (const auto& [k, v] : j["metadata"].items()) (*d.mutable_metadata())[k] = v.is_string() ? v.get<std::string>() : v.dump();
    }
    (*d.mutable_metadata())["source"] = path.string();
    out->push_back(std::move(d));
  }
  return absl::OkStatus();
}

absl::Status CollectDocuments(const std::vector<std::string>& paths, const std::string& id_prefix,
                              std::vector<qrag::v1::Document>* out) {
  auto wanted = [](const fs::path& p) {
    const std::string e = p.extension().string();
    return e == ".txt" || e == ".md" || e == ".jsonl";
  };
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> files;
      for (const auto& entry : fs::recursive_directory_iterator(p, ec)) {
        if (entry.is_regular_file() && wanted(entry.path())) files.push_back(entry.path());
      }
      if (ec) return absl::NotFoundError(absl::StrCat("cannot list ", p, ": ", ec.message()));
      std::sort(files.begin(), files.end());
      for (const fs::path& f : files) {
        absl::Status s = ReadDocuments(f, id_prefix, out);
        if (!s.ok()) return s;
      }
    } else if (fs::is_regular_file(p, ec)) {
      if (!wanted(p)) return absl::InvalidArgumentError(absl::StrCat(p, ": not a .txt, .md or .jsonl file"));
      absl::Status s = ReadDocuments(p, id_prefix, out);
      if (!s.ok()) return s;
    } else {
      return absl::NotFoundError(absl::StrCat(p, ": no such file or directory"));
    }
  }
  return absl::OkStatus();
}

// "hnsw m=32 ef_construction=128 ef_search=128" (the parameters of the index's kind).
std::string IndexText(const qrag::v1::IndexSpec& i) {
  switch (i.kind()) {
    case qrag::v1::INDEX_KIND_HNSW:
      return absl::StrCat("hnsw m=", i.hnsw_m(), " ef_construction=", i.hnsw_ef_construction(),
                          " ef_search=", i.hnsw_ef_search());
    case qrag::v1::INDEX_KIND_IVF:
      return absl::StrCat("ivf nlist=", i.ivf_nlist(), " nprobe=", i.ivf_nprobe());
    case qrag::v1::INDEX_KIND_AUTO:
      return absl::StrCat("auto threshold=", i.auto_threshold(), " hnsw m=", i.hnsw_m(), " ef_construction=",
                          i.hnsw_ef_construction(), " ef_search=", i.hnsw_ef_search());
    default:
      return "exact";
  }
}

void PrintInfo(const qrag::v1::CollectionInfo& c) {
  std::printf("%s\tdocuments=%lld\tchunks=%lld\tchunk_tokens=%d\toverlap=%d\tembedder=%s\t%s\tindex=%s\t[%s]\n",
              c.name().c_str(), static_cast<long long>(c.documents()), static_cast<long long>(c.chunks()),
              c.chunk_tokens(), c.chunk_overlap_tokens(), c.embedder().c_str(), c.precision().c_str(),
              IndexText(c.index()).c_str(), c.index_status().c_str());
}

qrag::v1::IndexKind IndexKindFlag(const std::string& value) {
  if (value == "exact") return qrag::v1::INDEX_KIND_EXACT;
  if (value == "hnsw") return qrag::v1::INDEX_KIND_HNSW;
  if (value == "ivf") return qrag::v1::INDEX_KIND_IVF;
  if (value == "auto") return qrag::v1::INDEX_KIND_AUTO;
  UsageError(absl::StrCat("--index '", value, "' is not one of exact, hnsw, ivf, auto"));
}

}  // namespace

bool IsRagCommand(const std::string& command) {
  return command == "collection" || command == "ingest" || command == "delete" || command == "retrieve";
}

bool RagFlagAllowed(const std::string& command, const std::string& flag) {
  if (command == "generate") {
    return flag == "--rag" || flag == "--rag-top-k" || flag == "--rag-min-score" || flag == "--rag-template" ||
           flag == "--rag-filter";
  }
  if (command == "collection") {
    return flag == "--chunk-tokens" || flag == "--chunk-overlap" || flag == "--embedder" || flag == "--index" ||
           flag == "--hnsw-m" || flag == "--hnsw-ef-construction" || flag == "--hnsw-ef-search" ||
           flag == "--ivf-nlist" || flag == "--ivf-nprobe" || flag == "--auto-threshold";
  }
  if (command == "ingest") {
    return flag == "--collection" || flag == "--batch" || flag == "--id-prefix" || flag == "--no-progress";
  }
  if (command == "delete") return flag == "--collection";
  if (command == "retrieve") {
    return flag == "--collection" || flag == "--query" || flag == "--top-k" || flag == "--min-score" ||
           flag == "--filter" || flag == "--json";
  }
  return false;
}

bool RagFlagIsSwitch(const std::string& flag) { return flag == "--no-progress" || flag == "--json"; }

bool ParseRagFlag(const std::string& flag, const std::string& value, RagArgs* a) {
  auto number = [&](auto* out) { *out = cli::ParseNumber<std::decay_t<decltype(*out)>>(kProgram, flag, value); };
  if (flag == "--collection" || flag == "--rag") a->collection = value;
  else if (flag == "--query") a->query = value;
  else if (flag == "--top-k" || flag == "--rag-top-k") number(&a->top_k);
  else if (flag == "--min-score" || flag == "--rag-min-score") {
    double v = cli::ParseNumber<double>(kProgram, flag, value);
    a->min_score = static_cast<float>(v);
    a->min_score_set = true;
  } else if (flag == "--chunk-tokens") number(&a->chunk_tokens);
  else if (flag == "--chunk-overlap") number(&a->chunk_overlap);
  else if (flag == "--embedder") a->embedder = value;
  else if (flag == "--index") {
    IndexKindFlag(value);  // a usage error now rather than after connecting
    a->index = value;
  } else if (flag == "--hnsw-m") number(&a->hnsw_m);
  else if (flag == "--hnsw-ef-construction") number(&a->hnsw_ef_construction);
  else if (flag == "--hnsw-ef-search") number(&a->hnsw_ef_search);
  else if (flag == "--ivf-nlist") number(&a->ivf_nlist);
  else if (flag == "--ivf-nprobe") number(&a->ivf_nprobe);
  else if (flag == "--auto-threshold") number(&a->auto_threshold);
  else if (flag == "--batch") number(&a->batch);
  else if (flag == "--id-prefix") a->id_prefix = value;
  else if (flag == "--rag-template") a->rag_template = value;
  else if (flag == "--filter" || flag == "--rag-filter") ParseFilter(value, &a->filter);
  else if (flag == "--no-progress") a->progress = false;
  else if (flag == "--json") a->json = true;
  else return false;
  return true;
}

void ValidateRagArgs(const std::string& command, const RagArgs& a) {
  const auto& p = a.positional;
  if (command == "collection") {
    if (p.empty()) UsageError("collection needs create NAME, list or drop NAME");
    if (p[0] == "list") {
      if (p.size() != 1) UsageError("collection list takes no more arguments");
    } else if (p[0] == "create" || p[0] == "drop") {
      if (p.size() != 2) UsageError(absl::StrCat("collection ", p[0], " needs exactly one NAME"));
    } else {
      UsageError(absl::StrCat("unknown collection subcommand '", p[0], "' (create, list, drop)"));
    }
  } else if (command == "ingest") {
    if (p.empty()) UsageError("ingest needs at least one PATH");
    if (a.collection.empty()) UsageError("ingest needs --collection C");
    if (a.batch < 1 || a.batch > 10000) UsageError("--batch must be in [1, 10000]");
  } else if (command == "delete") {
    if (p.empty()) UsageError("delete needs at least one document ID");
    if (a.collection.empty()) UsageError("delete needs --collection C");
  } else if (command == "retrieve") {
    if (!p.empty()) UsageError(absl::StrCat("unexpected argument '", p[0], "' (the query goes in --query)"));
    if (a.collection.empty() || a.query.empty()) UsageError("retrieve needs --collection C and --query TEXT");
  }
}

int RunRagCommand(const Client& client, const std::string& command, const RagArgs& a, const CallOptions& call) {
  RagClient rag(client);
  const auto& p = a.positional;
  if (command == "collection") {
    if (p[0] == "list") {
      auto list = rag.ListCollections(call);
      if (!list.ok()) return Error(list.status());
      for (const auto& c : *list) PrintInfo(c);
      return 0;
    }
    if (p[0] == "drop") {
      absl::Status s = rag.DropCollection(p[1], call);
      if (!s.ok()) return Error(s);
      std::fprintf(stderr, "qrag: dropped collection %s\n", p[1].c_str());
      return 0;
    }
    qrag::v1::CreateCollectionRequest request;
    request.set_name(p[1]);
    request.set_chunk_tokens(a.chunk_tokens);
    request.set_chunk_overlap_tokens(a.chunk_overlap);
    request.set_embedder(a.embedder);
    // Parameters go to the server as given: it checks them against the kind (INVALID_ARGUMENT saying what to fix).
    qrag::v1::IndexSpec* index = request.mutable_index();
    if (!a.index.empty()) index->set_kind(IndexKindFlag(a.index));
    index->set_hnsw_m(a.hnsw_m);
    index->set_hnsw_ef_construction(a.hnsw_ef_construction);
    index->set_hnsw_ef_search(a.hnsw_ef_search);
    index->set_ivf_nlist(a.ivf_nlist);
    index->set_ivf_nprobe(a.ivf_nprobe);
    index->set_auto_threshold(a.auto_threshold);
    auto info = rag.CreateCollection(request, call);
    if (!info.ok()) return Error(info.status());
    PrintInfo(*info);
    return 0;
  }
  if (command == "ingest") {
    std::vector<qrag::v1::Document> docs;
    absl::Status s = CollectDocuments(p, a.id_prefix, &docs);
    if (!s.ok()) return FileError(std::string(s.message()));
    if (docs.empty()) return FileError("no .txt, .md or .jsonl documents found");
    std::vector<std::vector<qrag::v1::Document>> batches;
    for (size_t i = 0; i < docs.size(); i += a.batch) {
      batches.emplace_back(docs.begin() + i, docs.begin() + std::min(docs.size(), i + a.batch));
    }
    const size_t total = docs.size();
    auto on_progress = [&](const qrag::v1::IngestProgress& pr) {
      if (a.progress) {
        const int width = 40;
        const int filled = static_cast<int>(width * pr.documents() / std::max<size_t>(total, 1));
        std::fprintf(stderr, "\r[%s%s] %lld/%zu documents, %lld chunks", std::string(filled, '#').c_str(),
                     std::string(width - filled, '.').c_str(), static_cast<long long>(pr.documents()), total,
                     static_cast<long long>(pr.chunks()));
        std::fflush(stderr);
      }
      return true;
    };
    auto result = rag.Ingest(a.collection, batches, on_progress, call);
    if (a.progress) std::fprintf(stderr, "\n");
    if (!result.ok()) return Error(result.status());
    std::printf("ingested %lld documents (%lld replaced), %lld chunks into %s\n",
                static_cast<long long>(result->documents()), static_cast<long long>(result->replaced()),
                static_cast<long long>(result->chunks()), a.collection.c_str());
    return 0;
  }
  if (command == "delete") {
    auto deleted = rag.DeleteDocuments(a.collection, p, call);
    if (!deleted.ok()) return Error(deleted.status());
    std::printf("deleted %lld of %zu documents\n", static_cast<long long>(*deleted), p.size());
    return 0;
  }
  // retrieve
  qrag::v1::RetrieveRequest request;
  request.set_collection(a.collection);
  request.set_query(a.query);
  request.set_top_k(a.top_k);
  request.set_min_score(a.min_score_set ? a.min_score : -1.0f);
  for (const auto& [k, v] : a.filter) (*request.mutable_filter())[k] = v;
  auto response = rag.Retrieve(request, call);
  if (!response.ok()) return Error(response.status());
  if (a.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& ps : response->passages()) {
      nlohmann::json m = nlohmann::json::object();
      for (const auto& [k, v] : ps.metadata()) m[k] = v;
      out.push_back({{"document_id", ps.document_id()}, {"chunk_index", ps.chunk_index()}, {"score", ps.score()},
                     {"text", ps.text()}, {"metadata", m}});
    }
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    for (int i = 0; i < response->passages_size(); ++i) {
      const auto& ps = response->passages(i);
      std::printf("[%d] %.4f %s#%d\n%s\n\n", i + 1, ps.score(), ps.document_id().c_str(), ps.chunk_index(),
                  ps.text().c_str());
    }
  }
  std::fprintf(stderr, "qrag: %d passages, embed=%.3fs search=%.3fs\n", response->passages_size(),
               response->embed_seconds(), response->search_seconds());
  return 0;
}

void ApplyRagToGenerate(const RagArgs& a, qrag::v1::GenerateRequest* request) {
  if (a.collection.empty()) return;
  qrag::v1::RagOptions* r = request->mutable_rag();
  r->set_collection(a.collection);
  r->set_top_k(a.top_k);
  r->set_min_score(a.min_score_set ? a.min_score : 0.0f);
  r->set_prompt_template(a.rag_template);
  for (const auto& [k, v] : a.filter) (*r->mutable_filter())[k] = v;
}

void PrintPassages(const google::protobuf::RepeatedPtrField<qrag::v1::RetrievedPassage>& passages,
                   const qrag::v1::Timings& t) {
  for (int i = 0; i < passages.size(); ++i) {
    std::fprintf(stderr, "qrag: passage [%d] %.4f %s#%d\n", i + 1, passages[i].score(),
                 passages[i].document_id().c_str(), passages[i].chunk_index());
  }
  if (t.embed_seconds() > 0 || t.search_seconds() > 0 || t.generate_seconds() > 0) {
    std::fprintf(stderr, "qrag: rag embed=%.3fs search=%.3fs generate=%.3fs\n", t.embed_seconds(), t.search_seconds(),
                 t.generate_seconds());
  }
}

}  // namespace qrag::client
