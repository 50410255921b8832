// Random-weight models with real shapes: for tests (every loader format is written from one of these) and
// for benchmarks of models whose real weights are not at hand (stories110M, Llama-3.2-1B shapes).
#ifndef QRAG_SERVER_MODEL_RANDOM_MODEL_H_
#define QRAG_SERVER_MODEL_RANDOM_MODEL_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "server/model/host_tensor.h"

namespace qrag::model {

// A LoadedModel with every tensor `config` requires, filled from a seeded generator: linear weights
// uniform in +-sqrt(3 / in_features) (unit-variance outputs), norm weights in [0.8, 1.2], biases small.
// Never zeros. Deterministic for a given seed on a given standard library.
absl::StatusOr<LoadedModel> MakeRandomModel(const ModelConfig& config, uint64_t seed);

// Named shapes: "stories260K", "stories15M", "stories110M", "llama-3.2-1b", "llama-3-8b", "qwen2-0.5b",
// "tiny-gqa" (a few layers, for tests). NOT_FOUND lists the names.
absl::StatusOr<ModelConfig> NamedModelShape(const std::string& name);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_RANDOM_MODEL_H_
