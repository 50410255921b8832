// Stores each token's k and v rows [tokens, n_kv_heads*head_dim] into its paged cache slot (backend.h KvWrite).
#ifndef QRAG_KERNELS_KV_WRITE_CUH_
#define QRAG_KERNELS_KV_WRITE_CUH_

#include <cuda_runtime.h>

#include "kernels/paged_batch.h"

namespace qrag::kernels {

// Slots must be in [0, cache.num_slots) (the backend checks the block tables on the host first).
cudaError_t LaunchKvWrite(const float* k, const float* v, const PagedBatchView& batch, int row_floats,
                          const PagedKvView& cache, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_KV_WRITE_CUH_
