// Locating the real all-MiniLM-L6-v2 directory fetched by tests/fetch_minilm.sh (the ctest fixture
// `minilm`): $QRAG_MINILM_DIR, else ${QRAG_CACHE_DIR:-~/.cache/qrag}/all-MiniLM-L6-v2.
#ifndef QRAG_TESTS_MODEL_MINILM_FIXTURE_H_
#define QRAG_TESTS_MODEL_MINILM_FIXTURE_H_

#include <optional>
#include <string>

#include "tests/test_util.h"

namespace qrag::testing {

inline std::optional<std::string> MiniLmDir() {
  return CachedModelPath("QRAG_MINILM_DIR", "all-MiniLM-L6-v2", "model.safetensors");
}

}  // namespace qrag::testing

// Skips (or fails under QRAG_REQUIRE_SHARED=1) when the MiniLM weights are not available.
#define QRAG_REQUIRE_MINILM(var)                                                                   \
  std::string var;                                                                                 \
  do {                                                                                             \
    auto qrag_m_ = ::qrag::testing::MiniLmDir();                                                   \
    if (!qrag_m_.has_value()) {                                                                    \
      if (::qrag::testing::RequireShared()) FAIL() << "all-MiniLM-L6-v2 weights missing "          \
                                                      "(tests/fetch_minilm.sh; QRAG_REQUIRE_SHARED=1)"; \
      GTEST_SKIP() << "all-MiniLM-L6-v2 weights missing: run tests/fetch_minilm.sh or set "       \
                      "QRAG_MINILM_DIR";                                                           \
    }                                                                                              \
    var = *qrag_m_;                                                                                \
  } while (0)

#endif  // QRAG_TESTS_MODEL_MINILM_FIXTURE_H_
