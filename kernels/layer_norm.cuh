// LayerNorm (backend.h): out[r, :] = (x[r, :] - mean) / sqrt(var + eps) * weight + bias with the biased
// variance of the row (torch.nn.LayerNorm), one block per row.
//
// Precision is the CPU reference backend's (server/backend/cpu/cpu_encoder_ops.cc): mean and variance are
// summed in double (the variance around the double mean), then mean and 1/sqrt(var + eps) are rounded to
// float and the row is normalized in float, (x - mean) * inv * weight + bias in that order, unfused.
// Only the order of the double sums differs.
#ifndef QRAG_KERNELS_LAYER_NORM_CUH_
#define QRAG_KERNELS_LAYER_NORM_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace qrag::kernels {

// x, out: [rows, dim]; weight, bias: [dim]. In place (out == x) is allowed. dim >= 1.
cudaError_t LaunchLayerNorm(const float* x, const float* weight, const float* bias, int64_t rows, int dim,
                            float eps, float* out, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_LAYER_NORM_CUH_
