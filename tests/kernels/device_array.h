// A typed cudaMalloc'd array for the kernel tests: filled from and read back to host vectors, poisoned
// (0xFF bytes: NaN floats, -1 ints) before a kernel writes it so that unwritten elements show.
#ifndef QRAG_TESTS_KERNELS_DEVICE_ARRAY_H_
#define QRAG_TESTS_KERNELS_DEVICE_ARRAY_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "gtest/gtest.h"

namespace qrag::testing {

template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(&p_, n_ * sizeof(T) + 16), cudaSuccess);
    Poison();
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { Upload(host); }
  ~DeviceArray() { cudaFree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return static_cast<T*>(p_); }
  size_t size() const { return n_; }
  void Upload(const std::vector<T>& host) {
    ASSERT_EQ(host.size(), n_);
    ASSERT_EQ(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  void Poison() { EXPECT_EQ(cudaMemset(p_, 0xFF, n_ * sizeof(T) + 16), cudaSuccess); }
  std::vector<T> Download() const {
    std::vector<T> h(n_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }

 private:
  void* p_ = nullptr;
  size_t n_;
};

}  // namespace qrag::testing

#endif  // QRAG_TESTS_KERNELS_DEVICE_ARRAY_H_
