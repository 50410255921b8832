// The CUDA backend's entry points for the backend registry (server/backend/registry.cc), in plain C++
// types: the registry and everything above it never include a CUDA header.
#ifndef QRAG_SERVER_BACKEND_CUDA_CUDA_DEVICE_H_
#define QRAG_SERVER_BACKEND_CUDA_CUDA_DEVICE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/backend/backend.h"

namespace qrag::backend {

struct CudaBackendOptions {
  int device = 0;        // CUDA device ordinal
  bool autotune = true;  // time cuBLASLt's top candidates once per GEMM shape and keep the fastest
};

// Number of usable CUDA devices; 0 when there is no GPU or no driver, with the runtime's reason in
// *why (when not null).
int CudaDeviceCount(std::string* why);

// A CudaBackend on options.device. FAILED_PRECONDITION saying why when no GPU is usable; INVALID_ARGUMENT
// for a device ordinal out of range.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options);

}  // namespace qrag::backend

#endif  // QRAG_SERVER_BACKEND_CUDA_CUDA_DEVICE_H_
