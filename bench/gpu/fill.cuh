// Device-side random fill for the GPU benchmarks: benchmarks never time zeros (docs/benchmarks.md), and
// generating gigabytes of operands on the host would dominate a device run.
#ifndef QRAG_BENCH_GPU_FILL_CUH_
#define QRAG_BENCH_GPU_FILL_CUH_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace qrag::bench {

enum class FillKind { kE4M3, kInt8, kBf16 };

// Fills `bytes` bytes with pseudo-random finite values of `kind` (E4M3: no NaN codes; bf16: +-[1, 2)).
cudaError_t LaunchRandomFill(void* data, size_t bytes, FillKind kind, uint32_t seed, cudaStream_t stream);

}  // namespace qrag::bench

#endif  // QRAG_BENCH_GPU_FILL_CUH_
