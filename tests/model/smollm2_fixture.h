// Locating the real SmolLM2-135M-Instruct GGUF fetched by tests/fetch_smollm2.sh (the ctest fixture
// `smollm2`): $QRAG_SMOLLM2_GGUF, else ${QRAG_CACHE_DIR:-~/.cache/qrag}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf.
#ifndef QRAG_TESTS_MODEL_SMOLLM2_FIXTURE_H_
#define QRAG_TESTS_MODEL_SMOLLM2_FIXTURE_H_

#include <optional>
#include <string>

#include "tests/test_util.h"

namespace qrag::testing {

inline std::optional<std::string> SmolLm2Gguf() {
  return CachedModelPath("QRAG_SMOLLM2_GGUF", "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
}

}  // namespace qrag::testing

// Skips (or fails under QRAG_REQUIRE_SHARED=1) when the SmolLM2 GGUF is not available.
#define QRAG_REQUIRE_SMOLLM2(var)                                                                    \
  std::string var;                                                                                   \
  do {                                                                                               \
    auto qrag_s_ = ::qrag::testing::SmolLm2Gguf();                                                   \
    if (!qrag_s_.has_value()) {                                                                      \
      if (::qrag::testing::RequireShared()) FAIL() << "SmolLM2-135M-Instruct.Q4_1.gguf missing "     \
                                                      "(tests/fetch_smollm2.sh; QRAG_REQUIRE_SHARED=1)"; \
      GTEST_SKIP() << "SmolLM2-135M-Instruct.Q4_1.gguf missing: run tests/fetch_smollm2.sh or set "  \
                      "QRAG_SMOLLM2_GGUF";                                                           \
    }                                                                                                \
    var = *qrag_s_;                                                                                  \
  } while (0)

#endif  // QRAG_TESTS_MODEL_SMOLLM2_FIXTURE_H_
