#include "kernels/quantize.cuh"

#include "kernels/device_util.cuh"

namespace qrag::kernels {
namespace {

template <QuantFormat F>
__global__ void QuantizeRowsKernel(const float* __restrict__ x, int cols, int ld, void* __restrict__ out,
                                   float* __restrict__ scales) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const float* row = x + r * cols;
  char* o = static_cast<char*>(out) + r * ld * QuantBytes(F);
  QuantizeRow<F>(cols, ld, [row](int c) { return row[c]; }, o, scales != nullptr ? scales + r : nullptr, scratch);
}

template <QuantFormat F>
__global__ void DequantizeRowsKernel(const void* __restrict__ q, const float* __restrict__ scales, int cols,
                                     int ld, float* __restrict__ out) {
  const int64_t r = blockIdx.x;
  float* o = out + r * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    if constexpr (F == QuantFormat::kBF16) {
      o[c] = __bfloat162float(__ushort_as_bfloat16(static_cast<const uint16_t*>(q)[r * ld + c]));
    } else if constexpr (F == QuantFormat::kE4M3) {
      const __nv_fp8_e4m3 v = *reinterpret_cast<const __nv_fp8_e4m3*>(static_cast<const uint8_t*>(q) + r * ld + c);
      o[c] = __fmul_rn(static_cast<float>(v), scales[r]);
    } else {
      o[c] = __fmul_rn(static_cast<float>(static_cast<const int8_t*>(q)[r * ld + c]), scales[r]);
    }
  }
}

}  // namespace

cudaError_t LaunchQuantizeRows(const float* x, int64_t rows, int cols, int ld, QuantFormat format, void* out,
                               float* scales, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  switch (format) {
    case QuantFormat::kE4M3:
      QuantizeRowsKernel<QuantFormat::kE4M3><<<rows, kRowThreads, 0, stream>>>(x, cols, ld, out, scales);
      break;
    case QuantFormat::kInt8:
      QuantizeRowsKernel<QuantFormat::kInt8><<<rows, kRowThreads, 0, stream>>>(x, cols, ld, out, scales);
      break;
    case QuantFormat::kBF16:
      QuantizeRowsKernel<QuantFormat::kBF16><<<rows, kRowThreads, 0, stream>>>(x, cols, ld, out, nullptr);
      break;
  }
  return cudaGetLastError();
}

cudaError_t LaunchDequantizeRows(const void* q, const float* scales, int64_t rows, int cols, int ld,
                                 QuantFormat format, float* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  switch (format) {
    case QuantFormat::kE4M3:
      DequantizeRowsKernel<QuantFormat::kE4M3><<<rows, kRowThreads, 0, stream>>>(q, scales, cols, ld, out);
      break;
    case QuantFormat::kInt8:
      DequantizeRowsKernel<QuantFormat::kInt8><<<rows, kRowThreads, 0, stream>>>(q, scales, cols, ld, out);
      break;
    case QuantFormat::kBF16:
      DequantizeRowsKernel<QuantFormat::kBF16><<<rows, kRowThreads, 0, stream>>>(q, scales, cols, ld, out);
      break;
  }
  return cudaGetLastError();
}

}  // namespace qrag::kernels
