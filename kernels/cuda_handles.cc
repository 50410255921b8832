#include "kernels/cuda_handles.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_check.h"

namespace qrag::kernels {

absl::StatusOr<CudaStream> CreateCudaStream(unsigned int flags) {
  cudaStream_t s = nullptr;
  QRAG_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s, flags));
  return CudaStream(s);
}

absl::StatusOr<CudaEvent> CreateCudaEvent() {
  cudaEvent_t e = nullptr;
  QRAG_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
  return CudaEvent(e);
}

absl::StatusOr<DeviceMemory> AllocateDeviceMemory(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, std::max<size_t>(bytes, 1));
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: clear it
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes of GPU memory"));
  }
  QRAG_CUDA_RETURN_IF_ERROR(err);
  return DeviceMemory(p);
}

absl::StatusOr<MatmulPreference> CreateMatmulPreference() {
  cublasLtMatmulPreference_t p = nullptr;
  QRAG_CUDA_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&p));
  return MatmulPreference(p);
}

absl::Status DeviceScratch::Reserve(size_t bytes, cudaStream_t stream) {
  if (bytes <= bytes_) return absl::OkStatus();
  const size_t want = std::max(bytes, bytes_ + bytes_ / 2);
  if (memory_ != nullptr) {
    QRAG_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // the old buffer may still be in use
    memory_.reset();
    bytes_ = 0;
  }
  absl::StatusOr<DeviceMemory> m = AllocateDeviceMemory(want);
  if (!m.ok()) return m.status();
  memory_ = *std::move(m);
  bytes_ = want;
  return absl::OkStatus();
}

}  // namespace qrag::kernels
