// One line of a `qrag ingest` .jsonl file (client/ingest_files.h). An accepted document has the prefixed id,
// its text, and its source in the metadata.
#include <cstdint>

#include "client/ingest_files.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrag;
  auto doc = client::ParseJsonlDocumentLine(fuzz::AsText(data, size), "fuzz.jsonl:1", "p/", "fuzz.jsonl");
  if (!doc.ok()) {
    if (doc.status().code() != absl::StatusCode::kInvalidArgument) fuzz::Fail(doc.status().ToString());
    return 0;
  }
  if (!doc->has_value()) return 0;
  const qrag::v1::Document& d = **doc;
  if (d.id().rfind("p/", 0) != 0) fuzz::Fail("the id lost its prefix");
  const auto source = d.metadata().find("source");
  if (source == d.metadata().end() || source->second != "fuzz.jsonl") fuzz::Fail("the source is missing");
  // What the client sends must serialize (proto3 strings are UTF-8; the JSON parser checked it).
  std::string wire;
  if (!d.SerializeToString(&wire)) fuzz::Fail("the document does not serialize");
  return 0;
}
