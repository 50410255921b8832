// Embedding gather: out[t, :] = table[tokens[t], :] (backend.h); also the row gather the transformer uses
// to pick the rows that need logits.
#ifndef QRAG_KERNELS_EMBED_CUH_
#define QRAG_KERNELS_EMBED_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace qrag::kernels {

// tokens: device int32 [n_tokens], each < the table's rows (checked by the caller). out must not overlap table.
cudaError_t LaunchEmbed(const float* table, int dim, const int32_t* tokens, int64_t n_tokens, float* out,
                        cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_EMBED_CUH_
