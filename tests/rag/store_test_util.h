// What the document store tests share: a small collection's description.
#ifndef QRAG_TESTS_RAG_STORE_TEST_UTIL_H_
#define QRAG_TESTS_RAG_STORE_TEST_UTIL_H_

#include <string>

#include "server/rag/document_store.h"

namespace qrag::rag {

// A collection of 3-dimensional embeddings, 16-token chunks overlapping by 2.
inline CollectionInfo TestCollection(const std::string& name) {
  CollectionInfo i;
  i.name = name;
  i.embedder = "test@0";
  i.precision = "fp32";
  i.dim = 3;
  i.chunk_tokens = 16;
  i.chunk_overlap = 2;
  return i;
}

}  // namespace qrag::rag

#endif  // QRAG_TESTS_RAG_STORE_TEST_UTIL_H_
