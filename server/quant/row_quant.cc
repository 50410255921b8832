#include "server/quant/row_quant.h"

#include <cmath>
#include <cstdint>

#include "server/quant/bf16.h"
#include "server/quant/fp8.h"

namespace qrag::quant {
namespace {

// The per-row scale of row_quant.h: amax / qmax, or 1 when the row is all zeros or holds a NaN or an
// infinity (those elements are then handled by the format's saturation / NaN rules). A scale that
// underflows to 0 (amax a tiny subnormal) is also replaced by 1: dividing by it would turn zeros into NaN.
float RowScale(const float* row, int64_t cols, float qmax) {
  float amax = 0.0f;
  bool finite = true;
  for (int64_t c = 0; c < cols; ++c) {
    const float a = std::fabs(row[c]);
    if (!std::isfinite(a)) finite = false;
    if (a > amax) amax = a;
  }
  if (!finite || amax == 0.0f) return 1.0f;
  const float scale = amax / qmax;
  return scale > 0.0f ? scale : 1.0f;
}

// Round to nearest, ties to even, then clamp to [-127, 127]. Clamping first is equivalent because the
// bounds are integers and rounding is monotonic; it keeps the value in int range. The truncation and the
// exact fraction make this independent of the floating-point rounding mode. NaN maps to 0 (int8 has no
// NaN).
int8_t RoundToInt8(float v) {
  if (std::isnan(v)) return 0;
  if (v > 127.0f) v = 127.0f;
  if (v < -127.0f) v = -127.0f;
  int r = static_cast<int>(v);  // truncates toward zero
  const float frac = v - static_cast<float>(r);
  if (frac > 0.5f || (frac == 0.5f && (r & 1) != 0)) ++r;
  if (frac < -0.5f || (frac == -0.5f && (r & 1) != 0)) --r;
  return static_cast<int8_t>(r);
}

}  // namespace

void QuantizeRowsE4M3(const float* x, int64_t rows, int64_t cols, uint8_t* q, float* scales) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    const float scale = RowScale(row, cols, kE4M3Max);
    scales[r] = scale;
    uint8_t* out = q + r * cols;
    for (int64_t c = 0; c < cols; ++c) out[c] = FloatToE4M3(row[c] / scale);
  }
}

void QuantizeRowsInt8(const float* x, int64_t rows, int64_t cols, int8_t* q, float* scales) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    const float scale = RowScale(row, cols, 127.0f);
    scales[r] = scale;
    int8_t* out = q + r * cols;
    for (int64_t c = 0; c < cols; ++c) out[c] = RoundToInt8(row[c] / scale);
  }
}

void RoundToBf16(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = FloatToBf16(x[i]);
}

}  // namespace qrag::quant
