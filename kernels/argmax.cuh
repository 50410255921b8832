// Greedy sampling on the device: ids[r] = the first index of the maximum of logits[r, :] (the engine
// sampler's temperature-0 rule, server/engine/sampler.h). NaN logits are never chosen unless a row is all NaN
// (then 0).
#ifndef QRAG_KERNELS_ARGMAX_CUH_
#define QRAG_KERNELS_ARGMAX_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace qrag::kernels {

cudaError_t LaunchArgmax(const float* logits, int64_t rows, int vocab, int32_t* ids, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_ARGMAX_CUH_
