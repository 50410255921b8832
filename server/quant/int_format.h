// Symmetric two's-complement integer formats (INT8, INT4, any width 2..16) as used by scaled quantization:
// a real value x is stored as the integer q = round(x / step) clamped to [-IntMax(bits), IntMax(bits)].
// The most negative code (-2^(bits-1)) is never produced, so the grid is symmetric around zero (as the
// int8 scheme of backend/precision.h and the usual symmetric weight quantizers do).
#ifndef QRAG_SERVER_QUANT_INT_FORMAT_H_
#define QRAG_SERVER_QUANT_INT_FORMAT_H_

#include <cstdint>

namespace qrag::quant {

// 2^(bits-1) - 1: 127 for INT8, 7 for INT4.
inline constexpr int IntMax(int bits) { return (1 << (bits - 1)) - 1; }

// `v` (already divided by the step) rounded to the nearest integer, ties to even, clamped to
// [-IntMax(bits), IntMax(bits)]. NaN becomes 0 (integers have no NaN; a NaN input is a caller bug that must
// not turn into a large value), +-inf saturates.
int32_t RoundToInt(double v, int bits);

// Nearest integer to v, ties to even, for |v| < 2^52.
double RoundHalfEvenDouble(double v);

// Packs signed 4-bit codes two per byte: element 2i in the low nibble, 2i+1 in the high nibble (as GPTQ /
// AWQ / llama.cpp pack nibbles). `n` may be odd (the last high nibble is 0). `out` has (n + 1) / 2 bytes.
void PackInt4(const int8_t* codes, int64_t n, uint8_t* out);
// Code `i` of a packed row, sign-extended to [-8, 7].
inline int8_t UnpackInt4(const uint8_t* packed, int64_t i) {
  const uint8_t byte = packed[i >> 1];
  const int nib = (i & 1) ? (byte >> 4) : (byte & 0xf);
  return static_cast<int8_t>(nib >= 8 ? nib - 16 : nib);
}
// Code `i` of a packed row read unsigned, in [0, 15] (the w4 asymmetric grid, quant/w4.h).
inline uint8_t UnpackUint4(const uint8_t* packed, int64_t i) {
  const uint8_t byte = packed[i >> 1];
  return static_cast<uint8_t>((i & 1) ? (byte >> 4) : (byte & 0xf));
}

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_INT_FORMAT_H_
