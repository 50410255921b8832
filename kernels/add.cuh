// Residual add: x[i] += y[i] (backend.h).
#ifndef QRAG_KERNELS_ADD_CUH_
#define QRAG_KERNELS_ADD_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace qrag::kernels {

// x and y must not overlap unless equal.
cudaError_t LaunchAdd(float* x, const float* y, int64_t n, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_ADD_CUH_
