// Compiled with -ffp-contract=off (server/quant/CMakeLists.txt): see gguf_blocks.h.
#include "server/quant/gguf_blocks.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/quant/bf16.h"

namespace qrag::quant {
namespace {

constexpr int64_t kQK = 32;     // QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0
constexpr int64_t kQK_K = 256;  // QK_K

// Sizes from ggml-common.h (the same table as gguf-py's GGML_QUANT_SIZES).
constexpr GgmlTypeTraits kTypes[] = {
    {GgmlType::kF32, "F32", 1, 4, true},
    {GgmlType::kF16, "F16", 1, 2, true},
    {GgmlType::kQ4_0, "Q4_0", kQK, 2 + 16, true},
    {GgmlType::kQ4_1, "Q4_1", kQK, 2 + 2 + 16, true},
    {GgmlType::kQ5_0, "Q5_0", kQK, 2 + 4 + 16, true},
    {GgmlType::kQ5_1, "Q5_1", kQK, 2 + 2 + 4 + 16, true},
    {GgmlType::kQ8_0, "Q8_0", kQK, 2 + 32, true},
    {GgmlType::kQ8_1, "Q8_1", kQK, 4 + 4 + 32, false},
    {GgmlType::kQ2_K, "Q2_K", kQK_K, 2 + 2 + kQK_K / 16 + kQK_K / 4, false},
    {GgmlType::kQ3_K, "Q3_K", kQK_K, 2 + kQK_K / 4 + kQK_K / 8 + 12, false},
    {GgmlType::kQ4_K, "Q4_K", kQK_K, 2 + 2 + kQK_K / 2 + 12, true},
    {GgmlType::kQ5_K, "Q5_K", kQK_K, 2 + 2 + kQK_K / 2 + kQK_K / 8 + 12, true},
    {GgmlType::kQ6_K, "Q6_K", kQK_K, 2 + kQK_K / 2 + kQK_K / 4 + kQK_K / 16, true},
    {GgmlType::kQ8_K, "Q8_K", kQK_K, 4 + kQK_K + kQK_K / 8, false},
    {GgmlType::kIQ2_XXS, "IQ2_XXS", kQK_K, 2 + kQK_K / 4, false},
    {GgmlType::kIQ2_XS, "IQ2_XS", kQK_K, 2 + kQK_K / 4 + kQK_K / 32, false},
    {GgmlType::kIQ3_XXS, "IQ3_XXS", kQK_K, 2 + kQK_K / 4 + kQK_K / 8, false},
    {GgmlType::kIQ1_S, "IQ1_S", kQK_K, 2 + kQK_K / 8 + kQK_K / 16, false},
    {GgmlType::kIQ4_NL, "IQ4_NL", kQK, 2 + 16, false},
    {GgmlType::kIQ3_S, "IQ3_S", kQK_K, 2 + kQK_K / 4 + kQK_K / 8 + kQK_K / 32 + 4, false},
    {GgmlType::kIQ2_S, "IQ2_S", kQK_K, 2 + kQK_K / 4 + kQK_K / 16, false},
    {GgmlType::kIQ4_XS, "IQ4_XS", kQK_K, 2 + 2 + kQK_K / 2 + kQK_K / 64, false},
    {GgmlType::kI8, "I8", 1, 1, false},
    {GgmlType::kI16, "I16", 1, 2, false},
    {GgmlType::kI32, "I32", 1, 4, false},
    {GgmlType::kI64, "I64", 1, 8, false},
    {GgmlType::kF64, "F64", 1, 8, false},
    {GgmlType::kIQ1_M, "IQ1_M", kQK_K, kQK_K / 8 + kQK_K / 16 + kQK_K / 32, false},
    {GgmlType::kBF16, "BF16", 1, 2, true},
    {GgmlType::kTQ1_0, "TQ1_0", kQK_K, 2 + 4 * 13, false},
    {GgmlType::kTQ2_0, "TQ2_0", kQK_K, 2 + 64, false},
    {GgmlType::kMXFP4, "MXFP4", kQK, 1 + 16, false},
};

float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return HalfToFloat(h);
}

// Q4_K / Q5_K: the 6-bit scale and minimum of sub-block j from the 12 packed bytes (ggml get_scale_min_k4).
void ScaleMinK4(int j, const uint8_t* q, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
    *mn = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

}  // namespace

const GgmlTypeTraits* FindGgmlType(uint32_t raw) {
  for (const GgmlTypeTraits& t : kTypes) {
    if (static_cast<uint32_t>(t.type) == raw) return &t;
  }
  return nullptr;
}

const GgmlTypeTraits& GgmlTypeInfo(GgmlType type) {
  const GgmlTypeTraits* t = FindGgmlType(static_cast<uint32_t>(type));
  if (t == nullptr) __builtin_trap();  // every enumerator is in kTypes
  return *t;
}

std::string GgmlTypeName(uint32_t raw) {
  const GgmlTypeTraits* t = FindGgmlType(raw);
  return t != nullptr ? std::string(t->name) : absl::StrCat("type ", raw);
}

void DequantizeQ8_0Block(const uint8_t* block, float* out) {
  const float d = Half(block);
  for (int e = 0; e < 32; ++e) out[e] = static_cast<float>(static_cast<int8_t>(block[2 + e])) * d;
}

void DequantizeQ4_0Block(const uint8_t* block, float* out) {
  const float d = Half(block);
  const uint8_t* qs = block + 2;
  for (int l = 0; l < 16; ++l) {
    out[l] = d * static_cast<float>((qs[l] & 0x0F) - 8);
    out[l + 16] = d * static_cast<float>((qs[l] >> 4) - 8);
  }
}

void DequantizeQ4_1Block(const uint8_t* block, float* out) {
  const float d = Half(block);
  const float m = Half(block + 2);
  const uint8_t* qs = block + 4;
  for (int l = 0; l < 16; ++l) {
    out[l] = d * static_cast<float>(qs[l] & 0x0F) + m;
    out[l + 16] = d * static_cast<float>(qs[l] >> 4) + m;
  }
}

void DequantizeQ5_0Block(const uint8_t* block, float* out) {
  const float d = Half(block);
  uint32_t qh;
  std::memcpy(&qh, block + 2, 4);
  const uint8_t* qs = block + 6;
  for (int l = 0; l < 16; ++l) {
    const int lo = (qs[l] & 0x0F) | static_cast<int>(((qh >> l) & 1u) << 4);
    const int hi = (qs[l] >> 4) | static_cast<int>(((qh >> (l + 16)) & 1u) << 4);
    out[l] = d * static_cast<float>(lo - 16);
    out[l + 16] = d * static_cast<float>(hi - 16);
  }
}

void DequantizeQ5_1Block(const uint8_t* block, float* out) {
  const float d = Half(block);
  const float m = Half(block + 2);
  uint32_t qh;
  std::memcpy(&qh, block + 4, 4);
  const uint8_t* qs = block + 8;
  for (int l = 0; l < 16; ++l) {
    const int lo = (qs[l] & 0x0F) | static_cast<int>(((qh >> l) & 1u) << 4);
    const int hi = (qs[l] >> 4) | static_cast<int>(((qh >> (l + 16)) & 1u) << 4);
    out[l] = d * static_cast<float>(lo) + m;
    out[l + 16] = d * static_cast<float>(hi) + m;
  }
}

namespace {

// Q4_K and Q5_K: d, dmin (fp16), scales[12], then (Q5_K only) qh[32], then qs[128]. Sub-block j (32
// elements) takes the low nibbles of qs[32 (j / 2) ...] for even j and the high nibbles for odd j; Q5_K's
// fifth bit of element l of sub-block j is bit j of qh[l] (`qh` is null for Q4_K).
void DequantizeK4Block(const uint8_t* block, const uint8_t* qh, const uint8_t* qs, float* out) {
  const float d = Half(block);
  const float dmin = Half(block + 2);
  const uint8_t* scales = block + 4;
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    ScaleMinK4(j, scales, &sc, &mn);
    const float dl = d * static_cast<float>(sc);
    const float ml = dmin * static_cast<float>(mn);
    const uint8_t* q = qs + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int l = 0; l < 32; ++l) {
      int v = (q[l] >> shift) & 0x0F;
      if (qh != nullptr) v |= ((qh[l] >> j) & 1) << 4;
      out[32 * j + l] = dl * static_cast<float>(v) - ml;
    }
  }
}

}  // namespace

void DequantizeQ4_KBlock(const uint8_t* block, float* out) { DequantizeK4Block(block, nullptr, block + 16, out); }

void DequantizeQ5_KBlock(const uint8_t* block, float* out) { DequantizeK4Block(block, block + 16, block + 48, out); }

// block_q6_K: ql[128], qh[64], scales[16] (int8), d (fp16). Element e of half h = e / 128 (r = e % 128):
// low 4 bits from nibble r / 64 of ql[64 h + r % 64], high 2 bits from bits 2 (r / 32) of qh[32 h + r % 32];
// scale scales[e / 16].
void DequantizeQ6_KBlock(const uint8_t* block, float* out) {
  const uint8_t* ql = block;
  const uint8_t* qh = block + 128;
  const uint8_t* scales = block + 192;
  const float d = Half(block + 208);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128;
    const int r = e % 128;
    const int lo = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
    const int hi = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 0x03;
    const float dl = d * static_cast<float>(static_cast<int8_t>(scales[e / 16]));
    out[e] = dl * static_cast<float>((lo | (hi << 4)) - 32);
  }
}

absl::Status DequantizeGgml(GgmlType type, const uint8_t* src, size_t src_bytes, int64_t n, float* dst) {
  const GgmlTypeTraits& t = GgmlTypeInfo(type);
  if (!t.dequantizable) {
    return absl::UnimplementedError(absl::StrCat("dequantizing ggml type ", t.name, " is not supported"));
  }
  if (n < 0 || n % t.block_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(n, " elements of ", t.name, " are not whole blocks of ", t.block_size));
  }
  const uint64_t blocks = static_cast<uint64_t>(n / t.block_size);
  if (src_bytes / static_cast<uint64_t>(t.type_size) != blocks ||
      src_bytes % static_cast<uint64_t>(t.type_size) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(n, " elements of ", t.name, " take ",
                                                   blocks * t.type_size, " bytes, not ", src_bytes));
  }
  void (*block_fn)(const uint8_t*, float*) = nullptr;
  switch (type) {
    case GgmlType::kF32:
      if (n > 0) std::memcpy(dst, src, src_bytes);
      return absl::OkStatus();
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Half(src + 2 * i);
      return absl::OkStatus();
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, src + 2 * i, 2);
        dst[i] = Bf16ToFloat(v);
      }
      return absl::OkStatus();
    case GgmlType::kQ8_0: block_fn = DequantizeQ8_0Block; break;
    case GgmlType::kQ4_0: block_fn = DequantizeQ4_0Block; break;
    case GgmlType::kQ4_1: block_fn = DequantizeQ4_1Block; break;
    case GgmlType::kQ5_0: block_fn = DequantizeQ5_0Block; break;
    case GgmlType::kQ5_1: block_fn = DequantizeQ5_1Block; break;
    case GgmlType::kQ4_K: block_fn = DequantizeQ4_KBlock; break;
    case GgmlType::kQ5_K: block_fn = DequantizeQ5_KBlock; break;
    case GgmlType::kQ6_K: block_fn = DequantizeQ6_KBlock; break;
    default:
      return absl::UnimplementedError(absl::StrCat("dequantizing ggml type ", t.name, " is not supported"));
  }
  for (uint64_t b = 0; b < blocks; ++b) {
    block_fn(src + b * static_cast<uint64_t>(t.type_size), dst + b * static_cast<uint64_t>(t.block_size));
  }
  return absl::OkStatus();
}

}  // namespace qrag::quant
