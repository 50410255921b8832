// GPU tests (ctest label `gpu`): skip with a message on machines without a usable CUDA GPU, fail instead
// when QRAG_REQUIRE_GPU=1 (bench/gpu/device-check.sh sets it, so that a skip cannot pass for a run).
#ifndef QRAG_TESTS_BACKEND_GPU_TEST_UTIL_H_
#define QRAG_TESTS_BACKEND_GPU_TEST_UTIL_H_

#include <cstdlib>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "server/backend/registry.h"

namespace qrag::testing {

inline bool RequireGpu() {
  const char* v = std::getenv("QRAG_REQUIRE_GPU");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

}  // namespace qrag::testing

#define QRAG_REQUIRE_GPU()                                                                            \
  do {                                                                                                \
    std::string qrag_why_;                                                                            \
    if (::qrag::backend::CudaGpuCount(&qrag_why_) == 0) {                                             \
      if (::qrag::testing::RequireGpu()) FAIL() << "no CUDA GPU (" << qrag_why_ << "); QRAG_REQUIRE_GPU=1 is set"; \
      GTEST_SKIP() << "no CUDA GPU (" << qrag_why_ << "); GPU tests run on a GPU machine "            \
                   << "(bench/gpu/device-check.sh)";                                                  \
    }                                                                                                 \
  } while (0)

#endif  // QRAG_TESTS_BACKEND_GPU_TEST_UTIL_H_
