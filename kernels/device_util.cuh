// Device helpers shared by the kernels of kernels/: block reductions and the per-row quantization of
// server/quant/row_quant.h, written with the same formulas so that both produce identical codes:
//   amax = max |v|; scale = amax / qmax (IEEE division), or 1 when amax is 0, not finite, or the quotient
//   underflows to 0; code = Encode(v / scale) with round-to-nearest-even and saturation (int8 clamps to
//   [-127, 127] and maps NaN to 0; E4M3 saturates to +-448 and keeps NaN a NaN).
// Included by .cu files only.
#ifndef QRAG_KERNELS_DEVICE_UTIL_CUH_
#define QRAG_KERNELS_DEVICE_UTIL_CUH_

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/quant_format.h"

namespace qrag::kernels {

constexpr int kRowThreads = 256;  // block size of the one-block-per-row kernels
constexpr int kElementwiseThreads = 256;  // block size of the grid-stride elementwise kernels

// Blocks of kElementwiseThreads for a grid-stride elementwise kernel over n floats that reads them 4 at a
// time: one float4 per thread, between 1 and 65535 blocks.
inline int ElementwiseBlocks(int64_t n) {
  const int64_t blocks = (n / 4 + kElementwiseThreads - 1) / kElementwiseThreads;
  return static_cast<int>(blocks < 1 ? 1 : (blocks > 65535 ? 65535 : blocks));
}

struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
  static constexpr float kIdentity = -INFINITY;
};
struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
  static constexpr float kIdentity = 0.0f;
};

template <typename T, typename Op>
__device__ __forceinline__ T WarpReduce(T v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide reduction of float or double for blockDim.x a multiple of 32 (<= 1024); every thread gets the
// result. `scratch` holds 32 T of shared memory; the call ends with a barrier so scratch can be reused.
template <typename T, typename Op>
__device__ __forceinline__ T BlockReduce(T v, T* scratch, Op op) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = WarpReduce(v, op);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const T r = WarpReduce(lane < warps ? scratch[lane] : static_cast<T>(Op::kIdentity), op);
  __syncthreads();
  return r;
}

__device__ __forceinline__ float BlockMax(float v, float* scratch) { return BlockReduce(v, scratch, MaxOp{}); }
__device__ __forceinline__ float BlockSum(float v, float* scratch) { return BlockReduce(v, scratch, SumOp{}); }
// For the ops whose CPU reference sums in double (layer_norm.cu).
__device__ __forceinline__ double BlockSumDouble(double v, double* scratch) {
  return BlockReduce(v, scratch, SumOp{});
}

__device__ __forceinline__ uint8_t EncodeE4M3(float v) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}

__device__ __forceinline__ int8_t EncodeInt8(float v) {
  if (isnan(v)) return 0;
  v = fminf(fmaxf(v, -127.0f), 127.0f);
  return static_cast<int8_t>(__float2int_rn(v));
}

__device__ __forceinline__ uint16_t EncodeBf16(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

// Quantizes one row of `cols` values value(c) into `out` (row of `ld` >= cols elements; columns
// [cols, ld) are written as zero codes) with the format's per-row scale, stored in *scale (kE4M3/kInt8).
// Called by all threads of a block of kRowThreads; `scratch` is 32 floats of shared memory.
template <QuantFormat F, typename ValueFn>
__device__ void QuantizeRow(int cols, int ld, ValueFn value, void* out, float* scale, float* scratch) {
  if constexpr (F == QuantFormat::kBF16) {
    uint16_t* o = static_cast<uint16_t*>(out);
    for (int c = threadIdx.x; c < ld; c += blockDim.x) o[c] = c < cols ? EncodeBf16(value(c)) : 0;
    return;
  } else {
    float amax = 0.0f, nonfinite = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      const float a = fabsf(value(c));
      if (!isfinite(a)) nonfinite = 1.0f;
      else amax = fmaxf(amax, a);
    }
    amax = BlockMax(amax, scratch);
    nonfinite = BlockMax(nonfinite, scratch);
    constexpr float kQmax = F == QuantFormat::kE4M3 ? 448.0f : 127.0f;
    float s = 1.0f;
    if (nonfinite == 0.0f && amax != 0.0f) {
      s = __fdiv_rn(amax, kQmax);
      if (!(s > 0.0f)) s = 1.0f;
    }
    if (threadIdx.x == 0) *scale = s;
    if constexpr (F == QuantFormat::kE4M3) {
      uint8_t* o = static_cast<uint8_t*>(out);
      for (int c = threadIdx.x; c < ld; c += blockDim.x) o[c] = c < cols ? EncodeE4M3(__fdiv_rn(value(c), s)) : 0;
    } else {
      int8_t* o = static_cast<int8_t*>(out);
      for (int c = threadIdx.x; c < ld; c += blockDim.x) o[c] = c < cols ? EncodeInt8(__fdiv_rn(value(c), s)) : 0;
    }
  }
}

// Bytes one element of format F occupies.
constexpr int QuantBytes(QuantFormat f) { return f == QuantFormat::kBF16 ? 2 : 1; }

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_DEVICE_UTIL_CUH_
