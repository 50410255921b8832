// Token-based chunking with overlap: a document is cut into pieces of at most `chunk_tokens` WordPiece
// tokens, consecutive pieces sharing `overlap_tokens` tokens, so that each piece fits the encoder whole and
// a sentence cut at a boundary is seen complete by one of its neighbours.
//
// Pieces start and end on whole-word boundaries of the original text (every token remembers the byte
// range of its word): a chunk's text is the original text from its first token's word to its last token's
// word, so nothing is lowercased or stripped in what the user gets back. When one word is longer than a
// chunk (a very long token sequence without spaces), it is cut between its pieces, the text of both chunks
// then being the whole word. The chunk's token ids (what the encoder embeds) are exact.
#ifndef QRAG_SERVER_RAG_CHUNKER_H_
#define QRAG_SERVER_RAG_CHUNKER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/model/wordpiece_tokenizer.h"

namespace qrag::rag {

struct ChunkingOptions {
  int chunk_tokens = 128;   // >= 8
  int overlap_tokens = 16;  // 0 <= overlap < chunk_tokens / 2
};

struct Chunk {
  std::string text;
  std::vector<int32_t> tokens;  // without [CLS]/[SEP]
};

// INVALID_ARGUMENT with the field name when the options are out of range.
absl::Status ValidateChunkingOptions(const ChunkingOptions& options, int max_chunk_tokens);

// The chunks of `text` in order; none for a text without tokens. INVALID_ARGUMENT for invalid UTF-8.
absl::StatusOr<std::vector<Chunk>> ChunkText(std::string_view text, const model::WordPieceTokenizer& tokenizer,
                                             const ChunkingOptions& options);

}  // namespace qrag::rag

#endif  // QRAG_SERVER_RAG_CHUNKER_H_
