// Shared by the CUDA-vs-CPU parity tests (cuda_backend_test.cc, cuda_encoder_ops_test.cc): a CPU reference
// backend beside a CUDA backend, upload/poison/download helpers, seeded inputs and the comparisons.
// Every output buffer is poisoned (NaN) before the op and checked fully written and not all zero.
#ifndef QRAG_TESTS_BACKEND_CUDA_PARITY_UTIL_H_
#define QRAG_TESTS_BACKEND_CUDA_PARITY_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "server/backend/cpu/cpu_backend.h"
#include "server/backend/cuda/cuda_backend.h"
#include "tests/backend/gpu_test_util.h"
#include "tests/test_util.h"

namespace qrag::backend {

struct Pair {
  std::unique_ptr<Backend> cpu = std::make_unique<CpuBackend>(CpuBackendOptions{.reference = true});
  std::unique_ptr<CudaBackend> gpu;
};

class CudaParity : public ::testing::Test {
 protected:
  void SetUp() override {
    QRAG_REQUIRE_GPU();
    auto g = CudaBackend::Create(CudaBackendOptions{});
    ASSERT_TRUE(g.ok()) << g.status();
    b_.gpu = std::move(*g);
  }

  // A device copy of `host` on backend `be`.
  DeviceBuffer Upload(Backend& be, const std::vector<float>& host) {
    auto buf = be.Allocate(std::max<size_t>(host.size(), 1) * sizeof(float));
    EXPECT_TRUE(buf.ok());
    EXPECT_TRUE(be.CopyToDevice(host.data(), host.size() * sizeof(float), buf->data()).ok());
    return std::move(*buf);
  }
  // An output buffer of n floats filled with NaN.
  DeviceBuffer Poisoned(Backend& be, size_t n) { return Upload(be, std::vector<float>(n, NAN)); }
  std::vector<float> Download(Backend& be, const DeviceBuffer& buf, size_t n) {
    std::vector<float> h(n);
    EXPECT_TRUE(be.Synchronize().ok());
    EXPECT_TRUE(be.CopyToHost(buf.data(), n * sizeof(float), h.data()).ok());
    return h;
  }

  Pair b_;
};

inline std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

inline std::vector<float> Integers(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-2, 2);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(d(rng));
  return v;
}

// Fully written (no NaN left from the poison) and not all zero.
inline void ExpectWrittenNonZero(const std::vector<float>& v, const char* what) {
  size_t nonzero = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    ASSERT_FALSE(std::isnan(v[i])) << what << ": element " << i << " not written";
    nonzero += v[i] != 0.0f;
  }
  EXPECT_GT(nonzero, 0u) << what << ": all zero";
}

// max |got - want| / max |want|.
inline double MaxRelDiff(const std::vector<float>& got, const std::vector<float>& want) {
  double maxref = 0, maxdiff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    maxref = std::max(maxref, std::fabs(double{want[i]}));
    maxdiff = std::max(maxdiff, std::fabs(double{got[i]} - want[i]));
  }
  return maxref == 0 ? maxdiff : maxdiff / maxref;
}

}  // namespace qrag::backend

#endif  // QRAG_TESTS_BACKEND_CUDA_PARITY_UTIL_H_
