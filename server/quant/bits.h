// Bit-level views of fp32 values, for the number-format conversions.
#ifndef QRAG_SERVER_QUANT_BITS_H_
#define QRAG_SERVER_QUANT_BITS_H_

#include <cstdint>
#include <cstring>

namespace qrag::quant {

inline uint32_t FloatBits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float FloatFromBits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_BITS_H_
