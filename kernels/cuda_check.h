// Checked CUDA and cuBLAS calls (STYLE.md "Errors"): every runtime and cuBLASLt call in kernels/ and
// server/backend/cuda/ goes through QRAG_CUDA_RETURN_IF_ERROR, which turns a failure into kInternal
// naming the expression, the file and the line. Kernel launches are followed by
// QRAG_CUDA_RETURN_IF_ERROR(cudaGetLastError()) so that a bad launch configuration is reported where it
// happened; errors during execution surface at the next synchronizing call.
#ifndef QRAG_KERNELS_CUDA_CHECK_H_
#define QRAG_KERNELS_CUDA_CHECK_H_

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "absl/status/status.h"

namespace qrag::kernels {

// OK for cudaSuccess; kInternal "CUDA error <name> (<text>) in <expr> at <file>:<line>" otherwise.
absl::Status CudaStatus(cudaError_t err, const char* expr, const char* file, int line);
// OK for CUBLAS_STATUS_SUCCESS; kInternal naming the cuBLAS status otherwise.
absl::Status CudaStatus(cublasStatus_t err, const char* expr, const char* file, int line);

}  // namespace qrag::kernels

#define QRAG_CUDA_RETURN_IF_ERROR(expr)                                                          \
  do {                                                                                           \
    ::absl::Status qrag_cuda_status_ = ::qrag::kernels::CudaStatus((expr), #expr, __FILE__, __LINE__); \
    if (!qrag_cuda_status_.ok()) return qrag_cuda_status_;                                       \
  } while (0)

#endif  // QRAG_KERNELS_CUDA_CHECK_H_
