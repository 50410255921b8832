#include "client/rag_cli.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/ingest_files.h"
#include "client/rag_client.h"
#include "nlohmann/json.hpp"
#include "server/common/cli.h"

namespace qrag::client {
namespace {

namespace fs = std::filesystem;

int Error(const absl::Status& status) {
  std::fprintf(stderr, "qrag: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

int FileError(const std::string& msg) {
  std::fprintf(stderr, "qrag: %s\n", msg.c_str());
  return 1;
}

// The filter of --filter / --rag-filter KEY=VALUE flags (checked by AddFilterFlag's validator).
google::protobuf::Map<std::string, std::string> FilterOf(const std::vector<std::string>& flags) {
  google::protobuf::Map<std::string, std::string> filter;
  for (const std::string& f : flags) {
    const size_t eq = f.find('=');
    filter[f.substr(0, eq)] = f.substr(eq + 1);
  }
  return filter;
}

void AddModeFlag(CLI::App& app, const std::string& name, std::string* mode) {
  app.add_option(name, *mode,
                 "how passages are ranked: hybrid (BM25 and embeddings fused; the default), dense (embeddings) or "
                 "bm25 (words)")
      ->check(CLI::IsMember({"dense", "bm25", "hybrid"}))
      ->type_name("MODE");
}

qrag::v1::SearchMode SearchModeOf(const std::string& mode) {
  if (mode == "dense") return qrag::v1::SEARCH_MODE_DENSE;
  if (mode == "bm25") return qrag::v1::SEARCH_MODE_BM25;
  if (mode == "hybrid") return qrag::v1::SEARCH_MODE_HYBRID;
  return qrag::v1::SEARCH_MODE_UNSPECIFIED;
}

CLI::Option* AddFilterFlag(CLI::App& command, const std::string& name, std::vector<std::string>* filter,
                           const std::string& description) {
  return cli::AddRepeated(command, name, filter, description)
      ->type_name("KEY=VALUE")
      ->check(CLI::Validator(
          [](std::string& value) -> std::string {
            const size_t eq = value.find('=');
            return eq == std::string::npos || eq == 0 ? absl::StrCat("'", value, "' is not KEY=VALUE") : "";
          },
          ""));
}

// One id per file however its path was typed ("a.txt", "./a.txt", "d/../a.txt", "/home/u/a.txt", a symlink):
// the canonical path, relative to the working directory when the file is below it, else absolute.
std::string FileDocumentId(const fs::path& path) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(path, ec);
  if (ec) canonical = fs::absolute(path, ec).lexically_normal();
  const fs::path cwd = fs::current_path(ec);
  if (!ec) {
    const fs::path rel = canonical.lexically_relative(cwd);
    if (!rel.empty() && *rel.begin() != "..") return rel.generic_string();
  }
  return canonical.generic_string();
}

// Documents of one file: .txt/.md whole (id = FileDocumentId), .jsonl one per line.
absl::Status ReadDocuments(const fs::path& path, const std::string& id_prefix, std::vector<qrag::v1::Document>* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  const std::string ext = path.extension().string();
  if (ext == ".txt" || ext == ".md") {
    std::stringstream ss;
    ss << in.rdbuf();
    qrag::v1::Document d;
    const std::string id = FileDocumentId(path);
    d.set_id(id_prefix + id);
    d.set_text(ss.str());
    (*d.mutable_metadata())["source"] = id;
    out->push_back(std::move(d));
    return absl::OkStatus();
  }
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    absl::StatusOr<std::optional<qrag::v1::Document>> doc =
        ParseJsonlDocumentLine(line, absl::StrCat(path.string(), ":", line_no), id_prefix, path.string());
    if (!doc.ok()) return doc.status();
    if (doc->has_value()) out->push_back(std::move(**doc));
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
  std::printf("%s\tdocuments=%lld\tchunks=%lld\tchunk_tokens=%d\toverlap=%d\tembedder=%s\t%s\tindex=%s\t[%s]",
              c.name().c_str(), static_cast<long long>(c.documents()), static_cast<long long>(c.chunks()),
              c.chunk_tokens(), c.chunk_overlap_tokens(), c.embedder().c_str(), c.precision().c_str(),
              IndexText(c.index()).c_str(), c.index_status().c_str());
  // A replica of a shared (PostgreSQL) store: how far behind its index may be.
  if (c.index_lag_seconds() > 0) std::printf("\tlag<=%.2fs", c.index_lag_seconds());
  std::printf("\n");
}

}  // namespace

bool IsRagCommand(const std::string& command) {
  return command == "collection" || command == "ingest" || command == "delete" || command == "retrieve";
}

std::vector<CLI::App*> AddRagCommands(CLI::App& app, RagArgs* a) {
  CLI::App* collection = app.add_subcommand("collection", "RAG collections: create NAME, list, drop NAME");
  cli::AddPositionals(*collection, "ACTION", &a->positional, "create NAME | list | drop NAME");
  cli::AddNumber(*collection, "--chunk-tokens", &a->chunk_tokens, "create: tokens per chunk (0: the server's)");
  cli::AddNumber(*collection, "--chunk-overlap", &a->chunk_overlap, "create: tokens chunks overlap by");
  collection->add_option("--embedder", a->embedder, "create: the embedder (default: the server's)")
      ->type_name("ID");
  cli::AddChoice<qrag::v1::IndexKind>(*collection, "--index", &a->index,
                                      {{"exact", qrag::v1::INDEX_KIND_EXACT},
                                       {"hnsw", qrag::v1::INDEX_KIND_HNSW},
                                       {"ivf", qrag::v1::INDEX_KIND_IVF},
                                       {"auto", qrag::v1::INDEX_KIND_AUTO}},
                                      "create: the vector index (default exact; auto: exact below "
                                      "--auto-threshold chunks, hnsw above)");
  cli::AddNumber(*collection, "--hnsw-m", &a->hnsw_m, "create: HNSW graph degree");
  cli::AddNumber(*collection, "--hnsw-ef-construction", &a->hnsw_ef_construction, "create: HNSW build beam");
  cli::AddNumber(*collection, "--hnsw-ef-search", &a->hnsw_ef_search, "create: HNSW search beam");
  cli::AddNumber(*collection, "--ivf-nlist", &a->ivf_nlist, "create: IVF lists");
  cli::AddNumber(*collection, "--ivf-nprobe", &a->ivf_nprobe, "create: IVF lists searched per query");
  cli::AddNumber(*collection, "--auto-threshold", &a->auto_threshold, "create: chunks from which auto uses hnsw");
  collection->footer("Index parameters left at 0 take the server's defaults (collection list shows them).");

  CLI::App* ingest = app.add_subcommand(
      "ingest", "upsert documents by id: files or directories (recursively) of .txt / .md (one document each, id = "
                "the path) and .jsonl (one document per line: {\"id\" or \"_id\", \"text\", optional \"title\", "
                "optional \"metadata\"}); a progress bar on stderr");
  cli::AddPositionals(*ingest, "PATH", &a->positional, "files or directories");
  ingest->add_option("--collection", a->collection, "the collection (required)")->type_name("C");
  cli::AddNumber(*ingest, "--batch", &a->batch, "documents per Ingest message, each stored durably, 1..10000");
  ingest->add_option("--id-prefix", a->id_prefix, "prefix of every document id")->type_name("P");
  ingest->add_flag("--no-progress", a->no_progress, "no progress bar");

  CLI::App* del = app.add_subcommand("delete", "delete documents by id");
  cli::AddPositionals(*del, "ID", &a->positional, "document ids");
  del->add_option("--collection", a->collection, "the collection (required)")->type_name("C");

  CLI::App* retrieve = app.add_subcommand("retrieve", "print the passages of a collection closest to a query");
  cli::AddPositionals(*retrieve, "ARG", &a->positional, "none: the query goes in --query");
  retrieve->add_option("--collection", a->collection, "the collection (required)")->type_name("C");
  retrieve->add_option("--query", a->query, "the query (required)");
  cli::AddNumber(*retrieve, "--top-k", &a->top_k, "passages (0: the server's default)");
  cli::AddNumber(*retrieve, "--min-score", &a->min_score, "drop passages scoring below S (default: none)");
  AddFilterFlag(*retrieve, "--filter", &a->filter, "only documents whose metadata KEY is VALUE (repeatable)");
  AddModeFlag(*retrieve, "--mode", &a->mode);
  retrieve->add_flag("--group-by-document", a->group_by_document,
                     "at most one passage (its best chunk) per document; --top-k counts documents");
  retrieve->add_flag("--json", a->json, "print the passages as JSON");
  return {collection, ingest, del, retrieve};
}

void AddGenerateRagFlags(CLI::App& generate, RagArgs* a) {
  generate.add_option("--rag", a->collection,
                      "retrieve from this collection first; the passages used are printed to stderr")
      ->type_name("C");
  cli::AddNumber(generate, "--rag-top-k", &a->top_k, "passages to retrieve (0: the server's default)");
  cli::AddNumber(generate, "--rag-min-score", &a->min_score, "drop passages scoring below S (default 0)");
  generate.add_option("--rag-template", a->rag_template, "the prompt template (default: the server's)")
      ->type_name("T");
  AddFilterFlag(generate, "--rag-filter", &a->filter, "only documents whose metadata KEY is VALUE (repeatable)");
  generate
      .add_option("--rag-order", a->rag_order,
                  "the passages' order in the prompt: canonical (by document and chunk, so repeated contexts hit "
                  "the prefix cache; the default) or rank (best first)")
      ->check(CLI::IsMember({"canonical", "rank"}))
      ->type_name("ORDER");
  AddModeFlag(generate, "--rag-mode", &a->mode);
}

absl::Status ValidateRagArgs(const std::string& command, const RagArgs& a) {
  auto usage = [](absl::string_view message) { return absl::InvalidArgumentError(message); };
  const auto& p = a.positional;
  if (command == "collection") {
    if (p.empty()) return usage("collection needs create NAME, list or drop NAME");
    if (p[0] == "list") {
      if (p.size() != 1) return usage("collection list takes no more arguments");
    } else if (p[0] == "create" || p[0] == "drop") {
      if (p.size() != 2) return usage(absl::StrCat("collection ", p[0], " needs exactly one NAME"));
    } else {
      return usage(absl::StrCat("unknown collection subcommand '", p[0], "' (create, list, drop)"));
    }
  } else if (command == "ingest") {
    if (p.empty()) return usage("ingest needs at least one PATH");
    if (a.collection.empty()) return usage("ingest needs --collection C");
    if (a.batch < 1 || a.batch > 10000) return usage("--batch must be in [1, 10000]");
  } else if (command == "delete") {
    if (p.empty()) return usage("delete needs at least one document ID");
    if (a.collection.empty()) return usage("delete needs --collection C");
  } else if (command == "retrieve") {
    if (!p.empty()) return usage(absl::StrCat("unexpected argument '", p[0], "' (the query goes in --query)"));
    if (a.collection.empty() || a.query.empty()) return usage("retrieve needs --collection C and --query TEXT");
  }
  return absl::OkStatus();
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
    index->set_kind(a.index);
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
      if (!a.no_progress) {
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
    if (!a.no_progress) std::fprintf(stderr, "\n");
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
  request.set_min_score(static_cast<float>(a.min_score.value_or(-1.0)));
  *request.mutable_filter() = FilterOf(a.filter);
  request.set_mode(SearchModeOf(a.mode));
  request.set_group_by_document(a.group_by_document);
  auto response = rag.Retrieve(request, call);
  if (!response.ok()) return Error(response.status());
  if (a.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& ps : response->passages()) {
      nlohmann::json m = nlohmann::json::object();
      for (const auto& [k, v] : ps.metadata()) m[k] = v;
      out.push_back({{"document_id", ps.document_id()}, {"chunk_index", ps.chunk_index()}, {"score", ps.score()},
                     {"bm25_score", ps.bm25_score()}, {"fused_score", ps.fused_score()}, {"text", ps.text()},
                     {"metadata", m}});
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

std::optional<qrag::v1::RagOptions> RagOptionsOf(const RagArgs& a) {
  if (a.collection.empty()) return std::nullopt;
  qrag::v1::RagOptions r;
  r.set_collection(a.collection);
  r.set_top_k(a.top_k);
  r.set_min_score(static_cast<float>(a.min_score.value_or(0.0)));
  r.set_prompt_template(a.rag_template);
  if (a.rag_order == "canonical") r.set_passage_order(qrag::v1::PASSAGE_ORDER_CANONICAL);
  if (a.rag_order == "rank") r.set_passage_order(qrag::v1::PASSAGE_ORDER_RANK);
  r.set_mode(SearchModeOf(a.mode));
  *r.mutable_filter() = FilterOf(a.filter);
  return r;
}

void ApplyRagToGenerate(const RagArgs& a, qrag::v1::GenerateRequest* request) {
  if (std::optional<qrag::v1::RagOptions> r = RagOptionsOf(a)) *request->mutable_rag() = *std::move(r);
}

void PrintPassages(const google::protobuf::RepeatedPtrField<qrag::v1::RetrievedPassage>& passages,
                   const qrag::v1::Timings& t) {
  for (int i = 0; i < passages.size(); ++i) {  // best first; [n] is the passage's number in the prompt
    const int citation = passages[i].citation() > 0 ? passages[i].citation() : i + 1;
    std::fprintf(stderr, "qrag: passage [%d] %.4f %s#%d\n", citation, passages[i].score(),
                 passages[i].document_id().c_str(), passages[i].chunk_index());
  }
  if (t.embed_seconds() > 0 || t.search_seconds() > 0 || t.generate_seconds() > 0) {
    std::fprintf(stderr, "qrag: rag embed=%.3fs search=%.3fs generate=%.3fs\n", t.embed_seconds(), t.search_seconds(),
                 t.generate_seconds());
  }
}

}  // namespace qrag::client
