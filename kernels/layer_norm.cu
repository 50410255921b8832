#include "kernels/layer_norm.cuh"

#include "kernels/device_util.cuh"

namespace qrag::kernels {
namespace {

// One block of kRowThreads per row. `vector`: dim % 4 == 0 and every pointer 16-byte aligned, so the row is
// read and written as float4. x and out are not __restrict__: they may be the same row.
__global__ void LayerNormKernel(const float* x, const float* __restrict__ weight, const float* __restrict__ bias,
                                int dim, float eps, float* out, bool vector) {
  __shared__ double scratch[32];
  const float* row = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* o = out + static_cast<int64_t>(blockIdx.x) * dim;
  const int dim4 = vector ? dim / 4 : 0;
  const float4* row4 = reinterpret_cast<const float4*>(row);

  double s = 0.0;
  for (int c = threadIdx.x; c < dim4; c += blockDim.x) {
    const float4 v = row4[c];
    s += static_cast<double>(v.x) + static_cast<double>(v.y) + static_cast<double>(v.z) + static_cast<double>(v.w);
  }
  for (int c = dim4 * 4 + threadIdx.x; c < dim; c += blockDim.x) s += row[c];
  const double m = BlockSumDouble(s, scratch) / dim;

  double ss = 0.0;
  for (int c = threadIdx.x; c < dim4; c += blockDim.x) {
    const float4 v = row4[c];
    const double a = v.x - m, b = v.y - m, d = v.z - m, e = v.w - m;
    ss += a * a + b * b + d * d + e * e;
  }
  for (int c = dim4 * 4 + threadIdx.x; c < dim; c += blockDim.x) ss += (row[c] - m) * (row[c] - m);
  ss = BlockSumDouble(ss, scratch);  // every thread has read its elements of the row: in place is safe below

  const float mean = static_cast<float>(m);
  const float inv = static_cast<float>(1.0 / sqrt(ss / dim + eps));
  auto norm = [=](float v, int c) {
    return __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(v, mean), inv), weight[c]), bias[c]);
  };
  for (int c = threadIdx.x; c < dim4; c += blockDim.x) {
    const float4 v = row4[c];
    reinterpret_cast<float4*>(o)[c] =
        make_float4(norm(v.x, 4 * c), norm(v.y, 4 * c + 1), norm(v.z, 4 * c + 2), norm(v.w, 4 * c + 3));
  }
  for (int c = dim4 * 4 + threadIdx.x; c < dim; c += blockDim.x) o[c] = norm(row[c], c);
}

}  // namespace

cudaError_t LaunchLayerNorm(const float* x, const float* weight, const float* bias, int64_t rows, int dim,
                            float eps, float* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (dim < 1 || rows < 0 || rows > 0x7fffffff) return cudaErrorInvalidValue;
  const bool vector = dim % 4 == 0 && (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(weight) |
                                       reinterpret_cast<uintptr_t>(bias) | reinterpret_cast<uintptr_t>(out)) %
                                              16 ==
                                          0;
  LayerNormKernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(x, weight, bias, dim, eps, out, vector);
  return cudaGetLastError();
}

}  // namespace qrag::kernels
