// The `qrag` CLI's RAG commands: collection create|list|drop, ingest, retrieve, and the --rag options of
// generate. Option parsing of the common flags (server, TLS, token, timeout) stays in qrag_cli.cc.
#ifndef QRAG_CLIENT_RAG_CLI_H_
#define QRAG_CLIENT_RAG_CLI_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "client/client.h"
#include "qrag/v1/inference.pb.h"

namespace qrag::client {

inline constexpr char kRagUsage[] = R"(
RAG commands (server started with --embedder DIR --data-dir DIR):
  collection create NAME [--chunk-tokens N] [--chunk-overlap N] [--embedder ID]
             [--index exact|hnsw|ivf|auto] [--hnsw-m N] [--hnsw-ef-construction N] [--hnsw-ef-search N]
             [--ivf-nlist N] [--ivf-nprobe N] [--auto-threshold N]
             the vector index (default exact; auto: exact below --auto-threshold chunks, hnsw above);
             parameters left out take the server's defaults (collection list shows them)
  collection list
  collection drop NAME
  ingest PATH... --collection C [--batch N] [--id-prefix P] [--no-progress]
             files or directories (recursively) of .txt / .md (one document each, id = the path) and
             .jsonl (one document per line: {"id" or "_id", "text", optional "title", optional "metadata"});
             a progress bar on stderr; upsert by id
  delete ID... --collection C
  retrieve --collection C --query TEXT [--top-k N] [--min-score S] [--filter KEY=VALUE]... [--json]
  generate ... --rag C [--rag-top-k N] [--rag-min-score S] [--rag-template T] [--rag-filter KEY=VALUE]
             retrieve from C first; the passages used are printed to stderr
)";

struct RagArgs {
  std::string collection;  // --collection, or --rag for generate
  std::string query;
  int top_k = 0;
  float min_score = 0;
  bool min_score_set = false;
  int chunk_tokens = 0;
  int chunk_overlap = 0;
  std::string embedder;
  std::string index;  // --index: exact, hnsw, ivf, auto ("" = the server's default, exact)
  int hnsw_m = 0;
  int hnsw_ef_construction = 0;
  int hnsw_ef_search = 0;
  int ivf_nlist = 0;
  int ivf_nprobe = 0;
  int64_t auto_threshold = 0;
  int batch = 64;
  std::string id_prefix;
  bool progress = true;
  bool json = false;
  std::string rag_template;
  std::map<std::string, std::string> filter;
  std::vector<std::string> positional;
};

// True for collection, ingest, delete, retrieve.
bool IsRagCommand(const std::string& command);
// Whether `flag` belongs to `command`'s RAG options (generate: the --rag family).
bool RagFlagAllowed(const std::string& command, const std::string& flag);
// True when the flag takes no value.
bool RagFlagIsSwitch(const std::string& flag);
// Parses one RAG flag; false when `flag` is not one. Exits with a usage error for a bad value.
bool ParseRagFlag(const std::string& flag, const std::string& value, RagArgs* args);
// Usage errors (exit 2) for missing/extra arguments of `command`.
void ValidateRagArgs(const std::string& command, const RagArgs& args);

// Runs a RAG command; returns the process exit code (0 ok, 1 RPC or file error).
int RunRagCommand(const Client& client, const std::string& command, const RagArgs& args, const CallOptions& call);

// generate --rag: fills request->rag; PrintPassages writes what came back to stderr.
void ApplyRagToGenerate(const RagArgs& args, qrag::v1::GenerateRequest* request);
void PrintPassages(const google::protobuf::RepeatedPtrField<qrag::v1::RetrievedPassage>& passages,
                   const qrag::v1::Timings& timings);

}  // namespace qrag::client

#endif  // QRAG_CLIENT_RAG_CLI_H_
