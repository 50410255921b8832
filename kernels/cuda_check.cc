#include "kernels/cuda_check.h"

#include "absl/strings/str_cat.h"

namespace qrag::kernels {

absl::Status CudaStatus(cudaError_t err, const char* expr, const char* file, int line) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err),
                                          ") in ", expr, " at ", file, ":", line));
}

absl::Status CudaStatus(cublasStatus_t err, const char* expr, const char* file, int line) {
  if (err == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("cuBLAS error ", cublasLtGetStatusName(err), " (",
                                          cublasLtGetStatusString(err), ") in ", expr, " at ", file, ":", line));
}

}  // namespace qrag::kernels
