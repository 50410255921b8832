// RAII owners of CUDA runtime and cuBLASLt handles (STYLE.md "Shape": RAII for every handle). Each is a
// move-only std::unique_ptr over the handle's pointer type with a deleter that releases it; Create*
// functions return them with the failure as a Status (QRAG_CUDA_RETURN_IF_ERROR's kInternal).
//
// Release never fails loudly: a destroy call can only fail on a context that is already broken (a sticky
// error that was reported where it happened), and a destructor has nobody to tell.
#ifndef QRAG_KERNELS_CUDA_HANDLES_H_
#define QRAG_KERNELS_CUDA_HANDLES_H_

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <type_traits>

#include "absl/status/statusor.h"

namespace qrag::kernels {

struct CudaStreamDeleter {
  void operator()(cudaStream_t s) const { cudaStreamDestroy(s); }
};
struct CudaEventDeleter {
  void operator()(cudaEvent_t e) const { cudaEventDestroy(e); }
};
struct DeviceMemoryDeleter {
  void operator()(void* p) const { cudaFree(p); }
};
struct MatmulPreferenceDeleter {
  void operator()(cublasLtMatmulPreference_t p) const { cublasLtMatmulPreferenceDestroy(p); }
};

using CudaStream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, CudaStreamDeleter>;
using CudaEvent = std::unique_ptr<std::remove_pointer_t<cudaEvent_t>, CudaEventDeleter>;
// Device memory from cudaMalloc (cudaFree waits for the device).
using DeviceMemory = std::unique_ptr<void, DeviceMemoryDeleter>;
using MatmulPreference = std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>, MatmulPreferenceDeleter>;

// cudaStreamCreateWithFlags on the current device.
absl::StatusOr<CudaStream> CreateCudaStream(unsigned int flags);
// cudaEventCreate (timing enabled).
absl::StatusOr<CudaEvent> CreateCudaEvent();
// cudaMalloc(bytes) on the current device; RESOURCE_EXHAUSTED when the device is out of memory.
absl::StatusOr<DeviceMemory> AllocateDeviceMemory(size_t bytes);
// cublasLtMatmulPreferenceCreate.
absl::StatusOr<MatmulPreference> CreateMatmulPreference();

// Device memory that grows on demand and is reused across ops issued in one stream's order.
class DeviceScratch {
 public:
  void* data() const { return memory_.get(); }
  size_t bytes() const { return bytes_; }
  // Ensures at least `bytes` (growing by at least half, to amortize); waits for `stream` before freeing the
  // old buffer, which queued work may still use.
  absl::Status Reserve(size_t bytes, cudaStream_t stream);

 private:
  DeviceMemory memory_;
  size_t bytes_ = 0;
};

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_CUDA_HANDLES_H_
