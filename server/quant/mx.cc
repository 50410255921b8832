#include "server/quant/mx.h"

#include <algorithm>
#include <cmath>

#include "server/quant/fp8.h"
#include "server/quant/int_format.h"
#include "server/quant/minifloat.h"

namespace qrag::quant {

float E8M0ToFloat(uint8_t e) {
  if (e == kE8M0Nan) return std::nanf("");
  return std::ldexp(1.0f, static_cast<int>(e) - 127);
}

uint8_t E8M0FromExponent(int exponent) {
  return static_cast<uint8_t>(std::clamp(exponent, -127, 127) + 127);
}

const char* MxElementName(MxElement e) {
  switch (e) {
    case MxElement::kE4M3: return "MXFP8-E4M3";
    case MxElement::kE5M2: return "MXFP8-E5M2";
    case MxElement::kE2M3: return "MXFP6-E2M3";
    case MxElement::kE3M2: return "MXFP6-E3M2";
    case MxElement::kE2M1: return "MXFP4";
    case MxElement::kInt8: return "MXINT8";
  }
  return "?";
}

int MxElementBits(MxElement e) {
  switch (e) {
    case MxElement::kE4M3:
    case MxElement::kE5M2:
    case MxElement::kInt8: return 8;
    case MxElement::kE2M3:
    case MxElement::kE3M2: return 6;
    case MxElement::kE2M1: return 4;
  }
  return 8;
}

int MxElementEmax(MxElement e) {
  switch (e) {
    case MxElement::kE4M3: return 8;
    case MxElement::kE5M2: return 15;
    case MxElement::kE2M3: return 2;
    case MxElement::kE3M2: return 4;
    case MxElement::kE2M1: return 2;
    case MxElement::kInt8: return 0;
  }
  return 0;
}

float MxElementMax(MxElement e) {
  switch (e) {
    case MxElement::kE4M3: return kE4M3Max;
    case MxElement::kE5M2: return kE5M2Max;
    case MxElement::kE2M3: return MiniFloatMax(kE2M3);
    case MxElement::kE3M2: return MiniFloatMax(kE3M2);
    case MxElement::kE2M1: return MiniFloatMax(kE2M1);
    case MxElement::kInt8: return 127.0f / 64.0f;
  }
  return 0;
}

uint8_t MxEncodeElement(MxElement e, float v) {
  switch (e) {
    case MxElement::kE4M3: return FloatToE4M3(v);  // saturating, as the spec's clamping requires
    case MxElement::kE5M2: return FloatToE5M2(v);
    case MxElement::kE2M3: return FloatToMiniFloat(kE2M3, v);
    case MxElement::kE3M2: return FloatToMiniFloat(kE3M2, v);
    case MxElement::kE2M1: return FloatToMiniFloat(kE2M1, v);
    case MxElement::kInt8: return static_cast<uint8_t>(static_cast<int8_t>(RoundToInt(static_cast<double>(v) * 64, 8)));
  }
  return 0;
}

float MxDecodeElement(MxElement e, uint8_t code) {
  switch (e) {
    case MxElement::kE4M3: return E4M3ToFloat(code);
    case MxElement::kE5M2: return E5M2ToFloat(code);
    case MxElement::kE2M3: return MiniFloatToFloat(kE2M3, code);
    case MxElement::kE3M2: return MiniFloatToFloat(kE3M2, code);
    case MxElement::kE2M1: return MiniFloatToFloat(kE2M1, code);
    case MxElement::kInt8: return static_cast<float>(static_cast<int8_t>(code)) / 64.0f;
  }
  return 0;
}

void MxQuantize(MxElement element, const float* x, int64_t n, uint8_t* scales, uint8_t* codes) {
  for (int64_t b = 0; b * kMxBlockSize < n; ++b) {
    const int64_t begin = b * kMxBlockSize, end = std::min(n, begin + kMxBlockSize);
    float amax = 0;
    bool special = false;
    for (int64_t i = begin; i < end; ++i) {
      if (!std::isfinite(x[i])) special = true;
      amax = std::max(amax, std::fabs(x[i]));
    }
    if (special) {
      scales[b] = kE8M0Nan;
      for (int64_t i = begin; i < end; ++i) codes[i] = 0;
      continue;
    }
    // floor(log2(amax)) exactly: ilogb reads the exponent of the fp32 value (subnormals included).
    const int shared_exp = amax == 0 ? -127 : std::ilogb(amax) - MxElementEmax(element);
    scales[b] = E8M0FromExponent(shared_exp);
    const int exp = static_cast<int>(scales[b]) - 127;
    for (int64_t i = begin; i < end; ++i) {
      // Division by a power of two: exact unless the quotient is subnormal in fp32, which only happens
      // for values far below what any element format can represent after the division.
      const float v = static_cast<float>(std::ldexp(static_cast<double>(x[i]), -exp));
      codes[i] = MxEncodeElement(element, v);
    }
  }
}

void MxDequantize(MxElement element, const uint8_t* scales, const uint8_t* codes, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t s = scales[i / kMxBlockSize];
    if (s == kE8M0Nan) {
      out[i] = std::nanf("");
      continue;
    }
    out[i] = static_cast<float>(std::ldexp(static_cast<double>(MxDecodeElement(element, codes[i])), s - 127));
  }
}

}  // namespace qrag::quant
