#include "server/quant/nvfp4.h"

#include <algorithm>
#include <cmath>

#include "server/quant/fp8.h"
#include "server/quant/minifloat.h"

namespace qrag::quant {

float Nvfp4Quantize(const float* x, int64_t n, uint8_t* block_scales, uint8_t* codes) {
  const float e2m1_max = MiniFloatMax(kE2M1);
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float tensor_scale = amax > 0 ? amax / (e2m1_max * kE4M3Max) : 1.0f;
  for (int64_t b = 0; b * kNvfp4BlockSize < n; ++b) {
    const int64_t begin = b * kNvfp4BlockSize, end = std::min(n, begin + kNvfp4BlockSize);
    float bmax = 0;
    for (int64_t i = begin; i < end; ++i) bmax = std::max(bmax, std::fabs(x[i]));
    block_scales[b] = FloatToE4M3(bmax / e2m1_max / tensor_scale);
    const float scale = E4M3ToFloat(block_scales[b]) * tensor_scale;
    for (int64_t i = begin; i < end; ++i) codes[i] = scale > 0 ? FloatToMiniFloat(kE2M1, x[i] / scale) : 0;
  }
  return tensor_scale;
}

void Nvfp4Dequantize(float tensor_scale, const uint8_t* block_scales, const uint8_t* codes, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float scale = E4M3ToFloat(block_scales[i / kNvfp4BlockSize]) * tensor_scale;
    out[i] = MiniFloatToFloat(kE2M1, codes[i]) * scale;
  }
}

}  // namespace qrag::quant
