// The tensor element types of ggml / GGUF files and their dequantization to fp32.
//
// Layouts and formulas follow ggml (ggml-common.h block structs, ggml-quants.c dequantize_row_*) and, for the
// exact order of fp32 operations, gguf-py's quants.py (`dequantize_blocks`), which the gold test data comes
// from. Every block stores its scales as IEEE binary16 (fp16) and its codes as little-endian bit fields:
//
//   type  elems/block bytes/block  value of element e
//   F32   1           4            the float
//   F16   1           2            fp16 -> fp32 (exact)
//   BF16  1           2            bf16 -> fp32 (exact)
//   Q8_0  32          34           d * q[e]                       d fp16, q int8
//   Q4_0  32          18           d * (q - 8)                    q: e < 16 low nibble of qs[e], else high of qs[e-16]
//   Q4_1  32          20           d * q + m                      same codes, m fp16
//   Q5_0  32          22           d * (q - 16)                   q = nibble | bit e of qh (u32) << 4
//   Q5_1  32          24           d * q + m
//   Q4_K  256         144          (d * sc[j]) * q - (dmin * mn[j])   8 sub-blocks of 32, 6-bit sc/mn packed in 12 bytes
//   Q5_K  256         176          as Q4_K with a fifth bit from qh
//   Q6_K  256         210          (d * sc[j]) * (q - 32)         16 sub-blocks of 16, sc int8
//
// Every product and sum is one fp32 rounding, in the order written above (the file that implements this is
// compiled with -ffp-contract=off, so no fused multiply-add changes a bit), which makes the results equal to
// gguf-py's numpy dequantization bit for bit.
//
// Thread safety: pure functions.
#ifndef QRAG_SERVER_QUANT_GGUF_BLOCKS_H_
#define QRAG_SERVER_QUANT_GGUF_BLOCKS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace qrag::quant {

// ggml_type values (ggml.h), as stored in a GGUF tensor info.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
};

// The storage of one ggml type: `block_size` elements take `type_size` bytes.
struct GgmlTypeTraits {
  GgmlType type;
  const char* name;     // "Q4_K", as ggml names it
  int64_t block_size;   // elements per block
  int64_t type_size;    // bytes per block
  bool dequantizable;   // DequantizeGgml supports it
};

// The traits of the ggml type with id `raw` (GGUF tensor info), or nullptr for an id ggml does not define
// (types ggml defines but this code cannot dequantize are listed with dequantizable = false).
const GgmlTypeTraits* FindGgmlType(uint32_t raw);

// The traits of a known type (never null).
const GgmlTypeTraits& GgmlTypeInfo(GgmlType type);

// The ggml name of `raw` ("Q4_K"), or "type <raw>" for an unknown id.
std::string GgmlTypeName(uint32_t raw);

// Dequantizes `n` elements of `type` stored in `src` (exactly n / block_size * type_size bytes: `src_bytes`)
// into dst[0, n). Errors: UNIMPLEMENTED naming the type when it is not dequantizable; INVALID_ARGUMENT when
// n is negative or not a multiple of the block size, or src_bytes is not the size n elements take.
absl::Status DequantizeGgml(GgmlType type, const uint8_t* src, size_t src_bytes, int64_t n, float* dst);

// One block of each format to fp32 (`out` holds the block's element count). No checks: `block` holds the
// type's type_size bytes.
void DequantizeQ8_0Block(const uint8_t* block, float* out);
void DequantizeQ4_0Block(const uint8_t* block, float* out);
void DequantizeQ4_1Block(const uint8_t* block, float* out);
void DequantizeQ5_0Block(const uint8_t* block, float* out);
void DequantizeQ5_1Block(const uint8_t* block, float* out);
void DequantizeQ4_KBlock(const uint8_t* block, float* out);
void DequantizeQ5_KBlock(const uint8_t* block, float* out);
void DequantizeQ6_KBlock(const uint8_t* block, float* out);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_GGUF_BLOCKS_H_
