// Shared set-up for tests on the real stories260K checkpoint and its gold files.
#ifndef QRAG_TESTS_MODEL_STORIES_FIXTURE_H_
#define QRAG_TESTS_MODEL_STORIES_FIXTURE_H_

#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "server/backend/cpu/cpu_backend.h"
#include "server/engine/generator.h"
#include "server/engine/scoring.h"
#include "server/model/host_tensor.h"
#include "server/model/tokenizer.h"
#include "server/model/transformer.h"
#include "tests/test_util.h"

namespace qrag::testing {

inline std::vector<float> ReadFloats(const std::string& path) {
  const std::string bytes = ReadFile(path);
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

// Space-separated ids after an optional "label:" prefix on the given line (0-based).
inline std::vector<int32_t> ReadIds(const std::string& path, int line_index) {
  std::istringstream in(ReadFile(path));
  std::string line;
  for (int i = 0; i <= line_index; ++i) std::getline(in, line);
  if (auto colon = line.find(':'); colon != std::string::npos) line = line.substr(colon + 1);
  std::istringstream ids(line);
  std::vector<int32_t> out;
  for (int32_t id; ids >> id;) out.push_back(id);
  return out;
}

// The stories260K checkpoint and tokenizer at the given paths; a failed load fails the calling test.
inline void LoadStories260K(const std::string& model_path, const std::string& tok_path,
                            std::unique_ptr<model::LoadedModel>* model, std::unique_ptr<model::Tokenizer>* tok) {
  auto m = model::LoadCheckpoint(model_path);
  ASSERT_TRUE(m.ok()) << m.status();
  *model = std::make_unique<model::LoadedModel>(std::move(*m));
  auto t = model::LoadTokenizer(tok_path, 512);
  ASSERT_TRUE(t.ok()) << t.status();
  *tok = std::move(*t);
}

// Logits of every position of `tokens` (engine::ScoreSequence, blocks laid out non-contiguously).
inline absl::StatusOr<std::vector<float>> TeacherForcedLogits(model::Transformer& t,
                                                              const std::vector<int32_t>& tokens, int chunk,
                                                              int block_size = 16) {
  return engine::ScoreSequence(t, tokens, engine::ScoreOptions{.chunk = chunk, .block_size = block_size});
}

// Largest |a - b| over a row divided by the largest |b| of that row, maximized over rows.
inline double MaxRowRelativeError(const std::vector<float>& a, const std::vector<float>& b, int row) {
  auto c = engine::CompareLogits(b, a, row);
  return c.ok() ? c->max_row_relative_error : INFINITY;
}

}  // namespace qrag::testing

#endif  // QRAG_TESTS_MODEL_STORIES_FIXTURE_H_
