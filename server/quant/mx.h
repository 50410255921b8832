// OCP Microscaling Formats (MX) Specification v1.0 (2023): blocks of k = 32 elements sharing one E8M0 scale.
//
// E8M0 (section 5.4.1): an unsigned 8-bit exponent, bias 127, value 2^(e - 127) for e in [0, 254]
// (2^-127 ... 2^127); 0xFF is NaN; there is no zero, no sign and no infinity.
//
// Elements (section 5.3): MXFP8 (E4M3 or E5M2, as fp8.h), MXFP6 (E2M3 or E3M2), MXFP4 (E2M1) (minifloat.h),
// and MXINT8: an 8-bit two's-complement integer with an implicit scale of 2^-6 (values -2 ... 1.984375).
//
// Conversion of a block V (section 6.3, "the scale selection and clipping" of the spec):
//   shared_exp = floor(log2(max_i |V_i|)) - emax_elem        (emax_elem: the exponent of the element
//                                                            format's largest normal: E4M3 8, E5M2 15,
//                                                            E2M3 2, E3M2 4, E2M1 2, INT8 0)
//   X = 2^shared_exp, clamped to the E8M0 range [2^-127, 2^127]
//   P_i = element(V_i / X), where values beyond the element's max are clamped to its max (saturation);
//         elements round to nearest, ties to even. MXINT8 clamps to [-127, 127] (symmetric; 0x80 = -2 is
//         decoded but never produced).
// A block of zeros gets X = 2^-127 (the smallest scale) and zero elements. A block containing NaN or +-inf
// gets the NaN scale 0xFF; every element of a NaN-scaled block decodes to NaN (section 6.3). The last
// block of a row may be shorter than 32 elements.
#ifndef QRAG_SERVER_QUANT_MX_H_
#define QRAG_SERVER_QUANT_MX_H_

#include <cstdint>

namespace qrag::quant {

inline constexpr int kMxBlockSize = 32;
inline constexpr uint8_t kE8M0Nan = 0xFF;

// 2^(e - 127); NaN for 0xFF. Exact (2^-127 is an fp32 subnormal).
float E8M0ToFloat(uint8_t e);
// The E8M0 code of 2^exponent, clamped to [-127, 127].
uint8_t E8M0FromExponent(int exponent);

enum class MxElement { kE4M3, kE5M2, kE2M3, kE3M2, kE2M1, kInt8 };

const char* MxElementName(MxElement element);  // "MXFP8-E4M3", ..., "MXFP4", "MXINT8"
int MxElementBits(MxElement element);
int MxElementEmax(MxElement element);
float MxElementMax(MxElement element);
uint8_t MxEncodeElement(MxElement element, float v);  // v already divided by the block scale
float MxDecodeElement(MxElement element, uint8_t code);

// Quantizes x[0, n) in blocks of 32 (the last may be shorter): scales[ceil(n / 32)], codes[n] (one code
// per byte, in the element's low bits).
void MxQuantize(MxElement element, const float* x, int64_t n, uint8_t* scales, uint8_t* codes);
// out[i] = element(codes[i]) * scale of its block (NaN for a NaN scale).
void MxDequantize(MxElement element, const uint8_t* scales, const uint8_t* codes, int64_t n, float* out);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_MX_H_
