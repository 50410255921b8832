#include "server/rag/chunker.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::rag {

absl::Status ValidateChunkingOptions(const ChunkingOptions& options, int max_chunk_tokens) {
  if (options.chunk_tokens < 8 || options.chunk_tokens > max_chunk_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("chunk_tokens must be in [8, ", max_chunk_tokens,
                                                   "] (the encoder's limit), got ", options.chunk_tokens));
  }
  if (options.overlap_tokens < 0 || options.overlap_tokens >= options.chunk_tokens / 2) {
    return absl::InvalidArgumentError(absl::StrCat("chunk_overlap_tokens must be in [0, chunk_tokens/2 = ",
                                                   options.chunk_tokens / 2, "), got ", options.overlap_tokens));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Chunk>> ChunkText(std::string_view text, const model::WordPieceTokenizer& tokenizer,
                                             const ChunkingOptions& options) {
  QRAG_ASSIGN_OR_RETURN(std::vector<model::WordPieceToken> tokens, tokenizer.Tokenize(text));
  std::vector<Chunk> chunks;
  const size_t n = tokens.size();
  const size_t size = options.chunk_tokens, step = options.chunk_tokens - options.overlap_tokens;
  for (size_t start = 0; start < n;) {
    size_t end = std::min(n, start + size);
    // Prefer to end on a word boundary (the next token starts another word), unless that empties the chunk.
    if (end < n) {
      size_t e = end;
      while (e > start + 1 && tokens[e].begin == tokens[e - 1].begin) --e;
      if (e > start + 1 || tokens[e].begin != tokens[e - 1].begin) end = e;
    }
    Chunk c;
    c.tokens.reserve(end - start);
    for (size_t i = start; i < end; ++i) c.tokens.push_back(tokens[i].id);
    c.text = std::string(text.substr(tokens[start].begin, tokens[end - 1].end - tokens[start].begin));
    chunks.push_back(std::move(c));
    if (end == n) break;
    // Next start: `overlap` tokens back from the end, moved back to the start of its word, but always
    // forward of this chunk's start.
    const size_t overlap = static_cast<size_t>(options.overlap_tokens);  // validated >= 0
    size_t next = end > overlap ? end - overlap : 0;
    while (next > start + 1 && next < n && tokens[next].begin == tokens[next - 1].begin) --next;
    if (next <= start) next = std::min(end, start + step);
    start = next;
  }
  return chunks;
}

}  // namespace qrag::rag
