// GGUF block formats (server/quant/gguf_blocks.h) on blocks built by hand, byte by byte, from the layouts of
// ggml-common.h; every expected value is exact in fp32. The bit-exact comparison against gguf-py's
// dequantization of random blocks is in tests/model/gguf_test.cc (tests/data/gguf/gold.gguf).
#include "server/quant/gguf_blocks.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/quant/bf16.h"
#include "tests/test_util.h"

namespace qrag::quant {
namespace {

using ::testing::HasSubstr;

void PutHalf(std::vector<uint8_t>& b, size_t at, float v) {
  const uint16_t h = FloatToHalf(v);
  ASSERT_EQ(HalfToFloat(h), v) << "test values must be exact in fp16";
  std::memcpy(b.data() + at, &h, 2);
}

std::vector<float> DequantizeAll(GgmlType type, const std::vector<uint8_t>& bytes) {
  const GgmlTypeTraits& t = GgmlTypeInfo(type);
  const int64_t n = static_cast<int64_t>(bytes.size()) / t.type_size * t.block_size;
  std::vector<float> out(n, std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(DequantizeGgml(type, bytes.data(), bytes.size(), n, out.data()).ok());
  return out;
}

TEST(GgmlTypes, SizesMatchGgml) {
  struct Want {
    uint32_t id;
    const char* name;
    int64_t block, bytes;
    bool deq;
  };
  const Want wants[] = {{0, "F32", 1, 4, true},      {1, "F16", 1, 2, true},      {2, "Q4_0", 32, 18, true},
                        {3, "Q4_1", 32, 20, true},   {6, "Q5_0", 32, 22, true},   {7, "Q5_1", 32, 24, true},
                        {8, "Q8_0", 32, 34, true},   {12, "Q4_K", 256, 144, true}, {13, "Q5_K", 256, 176, true},
                        {14, "Q6_K", 256, 210, true}, {30, "BF16", 1, 2, true},   {10, "Q2_K", 256, 84, false},
                        {11, "Q3_K", 256, 110, false}, {23, "IQ4_XS", 256, 136, false}};
  for (const Want& w : wants) {
    const GgmlTypeTraits* t = FindGgmlType(w.id);
    ASSERT_NE(t, nullptr) << w.name;
    EXPECT_STREQ(t->name, w.name);
    EXPECT_EQ(t->block_size, w.block) << w.name;
    EXPECT_EQ(t->type_size, w.bytes) << w.name;
    EXPECT_EQ(t->dequantizable, w.deq) << w.name;
  }
  EXPECT_EQ(FindGgmlType(4), nullptr);  // Q4_2, removed from ggml
  EXPECT_EQ(FindGgmlType(99), nullptr);
  EXPECT_EQ(GgmlTypeName(99), "type 99");
  EXPECT_EQ(GgmlTypeName(14), "Q6_K");
}

TEST(GgufBlocks, F32_F16_BF16_Exact) {
  std::vector<uint8_t> f32(8);
  const float a[2] = {1.5f, -0.0f};
  std::memcpy(f32.data(), a, 8);
  std::vector<float> out = DequantizeAll(GgmlType::kF32, f32);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_TRUE(std::signbit(out[1]));

  const uint16_t h[5] = {0x3C00, 0xC000, 0x0001, 0x7C00, 0x8000};
  std::vector<uint8_t> f16(10);
  std::memcpy(f16.data(), h, 10);
  out = DequantizeAll(GgmlType::kF16, f16);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(out[2], std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(out[3], std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::signbit(out[4]) && out[4] == 0.0f);

  const uint16_t bf[3] = {0x3F80, 0xC040, 0x0001};
  std::vector<uint8_t> b16(6);
  std::memcpy(b16.data(), bf, 6);
  out = DequantizeAll(GgmlType::kBF16, b16);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -3.0f);
  EXPECT_EQ(out[2], std::ldexp(1.0f, -133));
}

TEST(GgufBlocks, Q8_0) {
  std::vector<uint8_t> b(34);
  PutHalf(b, 0, 0.5f);
  for (int e = 0; e < 32; ++e) b[2 + e] = static_cast<uint8_t>(static_cast<int8_t>(e * 8 - 128));
  b[2 + 31] = 127;
  const std::vector<float> out = DequantizeAll(GgmlType::kQ8_0, b);
  for (int e = 0; e < 31; ++e) EXPECT_EQ(out[e], 0.5f * (e * 8 - 128)) << e;
  EXPECT_EQ(out[31], 63.5f);
}

TEST(GgufBlocks, Q4_0_LowNibblesFirstHalf) {
  std::vector<uint8_t> b(18);
  PutHalf(b, 0, 2.0f);
  for (int l = 0; l < 16; ++l) b[2 + l] = static_cast<uint8_t>(l | ((15 - l) << 4));
  const std::vector<float> out = DequantizeAll(GgmlType::kQ4_0, b);
  for (int l = 0; l < 16; ++l) {
    EXPECT_EQ(out[l], 2.0f * (l - 8)) << l;
    EXPECT_EQ(out[l + 16], 2.0f * (15 - l - 8)) << l;
  }
}

TEST(GgufBlocks, Q4_1_ScaleAndMinimum) {
  std::vector<uint8_t> b(20);
  PutHalf(b, 0, 0.5f);
  PutHalf(b, 2, -1.0f);
  for (int l = 0; l < 16; ++l) b[4 + l] = static_cast<uint8_t>(l | ((15 - l) << 4));
  const std::vector<float> out = DequantizeAll(GgmlType::kQ4_1, b);
  for (int l = 0; l < 16; ++l) {
    EXPECT_EQ(out[l], 0.5f * l - 1.0f) << l;
    EXPECT_EQ(out[l + 16], 0.5f * (15 - l) - 1.0f) << l;
  }
}

// Q5_0 / Q5_1: the fifth bit of element e is bit e of the little-endian u32 qh.
TEST(GgufBlocks, Q5_0_HighBitsFromQh) {
  std::vector<uint8_t> b(22);
  PutHalf(b, 0, 1.0f);
  const uint32_t qh = 0xA5C3F00Fu;
  std::memcpy(b.data() + 2, &qh, 4);
  for (int l = 0; l < 16; ++l) b[6 + l] = static_cast<uint8_t>(l | ((l * 7 % 16) << 4));
  const std::vector<float> out = DequantizeAll(GgmlType::kQ5_0, b);
  for (int l = 0; l < 16; ++l) {
    const int lo = l | static_cast<int>(((qh >> l) & 1) << 4);
    const int hi = (l * 7 % 16) | static_cast<int>(((qh >> (l + 16)) & 1) << 4);
    EXPECT_EQ(out[l], static_cast<float>(lo - 16)) << l;
    EXPECT_EQ(out[l + 16], static_cast<float>(hi - 16)) << l;
  }
}

TEST(GgufBlocks, Q5_1_HighBitsFromQh) {
  std::vector<uint8_t> b(24);
  PutHalf(b, 0, 0.25f);
  PutHalf(b, 2, 1.0f);
  const uint32_t qh = 0x0FF0A55Au;
  std::memcpy(b.data() + 4, &qh, 4);
  for (int l = 0; l < 16; ++l) b[8 + l] = static_cast<uint8_t>((15 - l) | (l << 4));
  const std::vector<float> out = DequantizeAll(GgmlType::kQ5_1, b);
  for (int l = 0; l < 16; ++l) {
    const int lo = (15 - l) | static_cast<int>(((qh >> l) & 1) << 4);
    const int hi = l | static_cast<int>(((qh >> (l + 16)) & 1) << 4);
    EXPECT_EQ(out[l], 0.25f * lo + 1.0f) << l;
    EXPECT_EQ(out[l + 16], 0.25f * hi + 1.0f) << l;
  }
}

// Packs 8 six-bit scales and minimums as ggml's Q4_K/Q5_K do (the inverse of get_scale_min_k4): bytes 0-3 and
// 4-7 hold the low 6 bits of sc[0..3] / mn[0..3] and, in their top 2 bits, the high 2 bits of sc[4..7] /
// mn[4..7]; bytes 8-11 hold the low nibbles of sc[4..7] (low) and mn[4..7] (high).
void PackScalesK4(const int sc[8], const int mn[8], uint8_t* q) {
  for (int j = 0; j < 4; ++j) {
    q[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    q[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    q[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
}

constexpr int kSc[8] = {1, 2, 63, 17, 33, 48, 5, 63};
constexpr int kMn[8] = {0, 63, 9, 16, 47, 1, 32, 20};

TEST(GgufBlocks, Q4_K_SixBitScalesAndNibbleOrder) {
  std::vector<uint8_t> b(144);
  PutHalf(b, 0, 0.5f);
  PutHalf(b, 2, 0.25f);
  PackScalesK4(kSc, kMn, b.data() + 4);
  // Sub-block j, element l has code (j + l) % 16: even j in the low nibbles of qs[32 (j/2) + l], odd j high.
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      b[16 + 32 * c + l] = static_cast<uint8_t>(((2 * c + l) % 16) | (((2 * c + 1 + l) % 16) << 4));
    }
  }
  const std::vector<float> out = DequantizeAll(GgmlType::kQ4_K, b);
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 32; ++l) {
      EXPECT_EQ(out[32 * j + l], 0.5f * kSc[j] * ((j + l) % 16) - 0.25f * kMn[j]) << j << "," << l;
    }
  }
}

TEST(GgufBlocks, Q5_K_FifthBitIsBitJOfQh) {
  std::vector<uint8_t> b(176);
  PutHalf(b, 0, 0.125f);
  PutHalf(b, 2, 1.0f);
  PackScalesK4(kSc, kMn, b.data() + 4);
  for (int l = 0; l < 32; ++l) b[16 + l] = static_cast<uint8_t>(l * 37 + 11);
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      b[48 + 32 * c + l] = static_cast<uint8_t>(((5 * c + l) % 16) | (((3 * c + 2 * l) % 16) << 4));
    }
  }
  const std::vector<float> out = DequantizeAll(GgmlType::kQ5_K, b);
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 32; ++l) {
      const int c = j / 2;
      const int nibble = j % 2 == 0 ? (5 * c + l) % 16 : (3 * c + 2 * l) % 16;
      const int q = nibble | ((((l * 37 + 11) & 0xFF) >> j & 1) << 4);
      EXPECT_EQ(out[32 * j + l], 0.125f * kSc[j] * q - 1.0f * kMn[j]) << j << "," << l;
    }
  }
}

TEST(GgufBlocks, Q6_K_SixBitCodesSignedScales) {
  std::vector<uint8_t> b(210, 0);
  // Code of element e: (e * 7) % 64. Within half h = e / 128 (r = e % 128): the low 4 bits go to nibble
  // r / 64 of ql[64 h + r % 64], the high 2 bits to bits 2 (r / 32) of qh[32 h + r % 32].
  for (int e = 0; e < 256; ++e) {
    const int q = (e * 7) % 64;
    const int h = e / 128, r = e % 128;
    b[64 * h + r % 64] |= static_cast<uint8_t>((q & 0xF) << (4 * (r / 64)));
    b[128 + 32 * h + r % 32] |= static_cast<uint8_t>((q >> 4) << (2 * (r / 32)));
  }
  for (int i = 0; i < 16; ++i) b[192 + i] = static_cast<uint8_t>(static_cast<int8_t>(i * 9 - 70));
  PutHalf(b, 208, 0.25f);
  const std::vector<float> out = DequantizeAll(GgmlType::kQ6_K, b);
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(out[e], 0.25f * ((e / 16) * 9 - 70) * ((e * 7) % 64 - 32)) << e;
  }
}

TEST(GgufBlocks, SeveralBlocksAreIndependent) {
  std::vector<uint8_t> b(2 * 34);
  PutHalf(b, 0, 1.0f);
  PutHalf(b, 34, -2.0f);
  for (int e = 0; e < 32; ++e) b[2 + e] = b[36 + e] = static_cast<uint8_t>(e);
  const std::vector<float> out = DequantizeAll(GgmlType::kQ8_0, b);
  for (int e = 0; e < 32; ++e) {
    EXPECT_EQ(out[e], e);
    EXPECT_EQ(out[32 + e], -2.0f * e);
  }
}

TEST(GgufBlocks, Errors) {
  std::vector<uint8_t> b(84 * 2);
  std::vector<float> out(512);
  EXPECT_THAT(DequantizeGgml(GgmlType::kQ2_K, b.data(), 84, 256, out.data()),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("Q2_K")));
  EXPECT_THAT(DequantizeGgml(GgmlType::kQ8_0, b.data(), 34, 31, out.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("whole blocks")));
  EXPECT_THAT(DequantizeGgml(GgmlType::kQ8_0, b.data(), 33, 32, out.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("take 34 bytes, not 33")));
  EXPECT_THAT(DequantizeGgml(GgmlType::kQ8_0, b.data(), 68, 32, out.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("take 34 bytes, not 68")));
  EXPECT_THAT(DequantizeGgml(GgmlType::kF16, b.data(), 2, -1, out.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("whole blocks")));
  EXPECT_TRUE(DequantizeGgml(GgmlType::kQ6_K, b.data(), 0, 0, out.data()).ok());
}

}  // namespace
}  // namespace qrag::quant
