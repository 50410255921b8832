// Documents from files for `qrag ingest`: the parsing of one JSONL line, kept apart from the file walking so
// that it is unit-tested and fuzzed (tests/client/ingest_files_test.cc, tests/fuzz/fuzz_ingest_jsonl.cc).
#ifndef QRAG_CLIENT_INGEST_FILES_H_
#define QRAG_CLIENT_INGEST_FILES_H_

#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "qrag/v1/retrieval.pb.h"

namespace qrag::client {

// One line of a .jsonl document file: {"id" or "_id": string or integer, "text": string, optional "title"
// (a non-empty title is prepended to the text with a space), optional "metadata": object (string values kept,
// others stored as their JSON)}. The id gets `id_prefix`; metadata "source" is set to `source`.
// A blank line (spaces, tabs, CR only) gives nullopt. INVALID_ARGUMENT beginning with `where` (e.g.
// "docs.jsonl:7") when the line is not a JSON object, lacks a string/integer id or a string text.
absl::StatusOr<std::optional<qrag::v1::Document>> ParseJsonlDocumentLine(std::string_view line,
                                                                         std::string_view where,
                                                                         std::string_view id_prefix,
                                                                         std::string_view source);

}  // namespace qrag::client

#endif  // QRAG_CLIENT_INGEST_FILES_H_
