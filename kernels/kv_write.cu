#include "kernels/kv_write.cuh"

#include "kernels/paged_slot.cuh"

namespace qrag::kernels {
namespace {

__global__ void KvWriteKernel(const float* __restrict__ k, const float* __restrict__ v, PagedBatchView batch,
                              int row, PagedKvView cache) {
  const int t = blockIdx.x;
  const int64_t slot = PagedSlot(batch, batch.token_seq[t], batch.positions[t]);
  const float* ks = k + static_cast<int64_t>(t) * row;
  const float* vs = v + static_cast<int64_t>(t) * row;
  float* kd = cache.k + slot * row;
  float* vd = cache.v + slot * row;
  for (int c = threadIdx.x; c < row; c += blockDim.x) {
    kd[c] = ks[c];
    vd[c] = vs[c];
  }
}

}  // namespace

cudaError_t LaunchKvWrite(const float* k, const float* v, const PagedBatchView& batch, int row_floats,
                          const PagedKvView& cache, cudaStream_t stream) {
  if (batch.tokens == 0) return cudaSuccess;
  KvWriteKernel<<<batch.tokens, 128, 0, stream>>>(k, v, batch, row_floats, cache);
  return cudaGetLastError();
}

}  // namespace qrag::kernels
