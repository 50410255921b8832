// The `qrag` CLI's RAG commands: collection create|list|drop, ingest, delete, retrieve, and the --rag options of
// generate. The flags every command takes (server, TLS, token, timeout) are qrag_cli.cc's.
#ifndef QRAG_CLIENT_RAG_CLI_H_
#define QRAG_CLIENT_RAG_CLI_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "client/client.h"
#include "qrag/v1/inference.pb.h"
#include "qrag/v1/retrieval.pb.h"

namespace qrag::client {

struct RagArgs {
  std::string collection;  // --collection, or --rag for generate
  std::string query;
  int top_k = 0;
  std::optional<double> min_score;  // unset: the server's default
  int chunk_tokens = 0;
  int chunk_overlap = 0;
  std::string embedder;
  qrag::v1::IndexKind index = qrag::v1::INDEX_KIND_UNSPECIFIED;  // the server's default, exact
  int hnsw_m = 0;
  int hnsw_ef_construction = 0;
  int hnsw_ef_search = 0;
  int ivf_nlist = 0;
  int ivf_nprobe = 0;
  int64_t auto_threshold = 0;
  int batch = 64;
  std::string id_prefix;
  bool no_progress = false;
  bool json = false;
  std::string rag_template;
  std::string rag_order;  // "canonical", "rank", or empty (the server's default, canonical)
  std::string mode;       // "dense", "bm25", "hybrid", or empty (the server's default, hybrid)
  bool group_by_document = false;
  std::vector<std::string> filter;  // KEY=VALUE, checked by the flag; a later value of a key wins
  std::vector<std::string> positional;
};

// Adds the RAG commands (collection, ingest, delete, retrieve) to `app`, their flags going into *args
// (server/common/cli.h); returns them.
std::vector<CLI::App*> AddRagCommands(CLI::App& app, RagArgs* args);
// generate's --rag, --rag-top-k, --rag-min-score, --rag-template and --rag-filter.
void AddGenerateRagFlags(CLI::App& generate, RagArgs* args);
// True for collection, ingest, delete, retrieve.
bool IsRagCommand(const std::string& command);
// INVALID_ARGUMENT (a usage error) for missing or extra arguments of `command`.
absl::Status ValidateRagArgs(const std::string& command, const RagArgs& args);

// Runs a RAG command; returns the process exit code (0 ok, 1 RPC or file error).
int RunRagCommand(const Client& client, const std::string& command, const RagArgs& args, const CallOptions& call);

// The RagOptions of generate's / chat's --rag flags; nullopt without --rag.
std::optional<qrag::v1::RagOptions> RagOptionsOf(const RagArgs& args);
// generate --rag: fills request->rag; PrintPassages writes what came back to stderr.
void ApplyRagToGenerate(const RagArgs& args, qrag::v1::GenerateRequest* request);
void PrintPassages(const google::protobuf::RepeatedPtrField<qrag::v1::RetrievedPassage>& passages,
                   const qrag::v1::Timings& timings);

}  // namespace qrag::client

#endif  // QRAG_CLIENT_RAG_CLI_H_
