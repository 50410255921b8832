#include "kernels/rms_norm.cuh"

#include "kernels/device_util.cuh"

namespace qrag::kernels {
namespace {

// 1 / sqrt(mean(x^2) + eps) of one row, as the CPU backend computes it (fp32 sum, IEEE division and sqrt;
// only the order of the sum differs).
__device__ float InverseRms(const float* row, int dim, float eps, float* scratch) {
  float ss = 0.0f;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) ss = __fmaf_rn(row[c], row[c], ss);
  ss = BlockSum(ss, scratch);
  return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, static_cast<float>(dim)), eps)));
}

__global__ void RmsNormKernel(const float* x, const float* __restrict__ weight, int dim, float eps, float* out) {
  __shared__ float scratch[32];
  const float* row = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* o = out + static_cast<int64_t>(blockIdx.x) * dim;
  const float inv = InverseRms(row, dim, eps, scratch);
  for (int c = threadIdx.x; c < dim; c += blockDim.x) o[c] = __fmul_rn(weight[c], __fmul_rn(inv, row[c]));
}

template <QuantFormat F>
__global__ void RmsNormQuantizeKernel(const float* __restrict__ x, const float* __restrict__ weight, int dim,
                                      float eps, int ld, void* __restrict__ codes, float* __restrict__ scales) {
  __shared__ float scratch[32];
  const float* row = x + static_cast<int64_t>(blockIdx.x) * dim;
  const float inv = InverseRms(row, dim, eps, scratch);
  char* o = static_cast<char*>(codes) + static_cast<int64_t>(blockIdx.x) * ld * QuantBytes(F);
  QuantizeRow<F>(
      dim, ld, [=](int c) { return __fmul_rn(weight[c], __fmul_rn(inv, row[c])); }, o,
      scales != nullptr ? scales + blockIdx.x : nullptr, scratch);
}

}  // namespace

cudaError_t LaunchRmsNorm(const float* x, const float* weight, int64_t rows, int dim, float eps, float* out,
                          cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  RmsNormKernel<<<rows, kRowThreads, 0, stream>>>(x, weight, dim, eps, out);
  return cudaGetLastError();
}

cudaError_t LaunchRmsNormQuantize(const float* x, const float* weight, int64_t rows, int dim, float eps,
                                  QuantFormat format, int ld, void* codes, float* scales, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  switch (format) {
    case QuantFormat::kE4M3:
      RmsNormQuantizeKernel<QuantFormat::kE4M3><<<rows, kRowThreads, 0, stream>>>(x, weight, dim, eps, ld, codes,
                                                                                  scales);
      break;
    case QuantFormat::kInt8:
      RmsNormQuantizeKernel<QuantFormat::kInt8><<<rows, kRowThreads, 0, stream>>>(x, weight, dim, eps, ld, codes,
                                                                                  scales);
      break;
    case QuantFormat::kBF16:
      RmsNormQuantizeKernel<QuantFormat::kBF16><<<rows, kRowThreads, 0, stream>>>(x, weight, dim, eps, ld, codes,
                                                                                  nullptr);
      break;
  }
  return cudaGetLastError();
}

}  // namespace qrag::kernels
