// Exact GELU (backend.h Gelu): out[i] = x[i] * 0.5 * (1 + erf(x[i] / sqrt(2))), BERT's "gelu" activation,
// not the tanh approximation.
//
// Computed as the CPU reference backend does (server/backend/cpu/cpu_encoder_ops.cc): in double, with the
// double erf, (x * 0.5) * (1 + erf(x * 0.70710678118654752440)), rounded once to float. CUDA's erf(double)
// is within 2 ulp of double, glibc's within 1: the float results agree but for a rare last-bit tie.
#ifndef QRAG_KERNELS_GELU_CUH_
#define QRAG_KERNELS_GELU_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace qrag::kernels {

// n elements; in place (out == x) is allowed.
cudaError_t LaunchGelu(const float* x, int64_t n, float* out, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_GELU_CUH_
