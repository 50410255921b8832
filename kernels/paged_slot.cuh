// The cache row of (sequence, position) in a PagedBatchView (paged_batch.h). Included by .cu files only.
#ifndef QRAG_KERNELS_PAGED_SLOT_CUH_
#define QRAG_KERNELS_PAGED_SLOT_CUH_

#include "kernels/paged_batch.h"

namespace qrag::kernels {

__device__ __forceinline__ int64_t PagedSlot(const PagedBatchView& b, int seq, int32_t pos) {
  return static_cast<int64_t>(b.tables[b.table_offsets[seq] + pos / b.block_size]) * b.block_size +
         pos % b.block_size;
}

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_PAGED_SLOT_CUH_
