// The GGUF reader (server/model/gguf.h): the gold file written by gguf-py (tests/model/make_gguf_gold.py) read
// back — metadata of every value type, alignment, every tensor type dequantized bit-exactly as gguf-py does —
// and hostile files built byte by byte: every failure is a Status naming the key or tensor, never a crash
// or an allocation of a size the file chose.
#include "server/model/gguf.h"

#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/model/gguf_builder.h"
#include "tests/test_util.h"

namespace qrag::model {
namespace {

using ::qrag::testing::TempDir;
using ::qrag::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::qrag::testing::Builder;
using ::qrag::testing::Str;
using ::qrag::testing::U32;
using ::qrag::testing::U64;

const std::string kGold = std::string(QRAG_SOURCE_DIR) + "/tests/data/gguf/gold.gguf";

absl::StatusOr<GgufFile> ParseBytes(const std::string& bytes) {
  auto owner = std::make_shared<std::string>(bytes);
  const uint8_t* p = reinterpret_cast<const uint8_t*>(owner->data());
  const size_t n = owner->size();
  return GgufFile::Parse(std::move(owner), p, n, "test.gguf");
}

absl::Status ParseStatus(const std::string& bytes) { return ParseBytes(bytes).status(); }

// ---- the gold file -------------------------------------------------------------------------------------

TEST(GgufGold, MetadataOfEveryValueType) {
  auto f = GgufFile::Open(kGold);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  EXPECT_EQ(*f->GetString("general.architecture"), "llama");
  EXPECT_EQ(*f->GetString("general.name"), "qrag-gguf-gold");
  EXPECT_EQ(f->Find("test.u8")->type, GgufValueType::kUint8);
  EXPECT_EQ(*f->GetUint("test.u8"), 200u);
  EXPECT_EQ(*f->GetInt("test.i8"), -100);
  EXPECT_EQ(*f->GetUint("test.u16"), 60000u);
  EXPECT_EQ(*f->GetInt("test.i16"), -30000);
  EXPECT_EQ(*f->GetUint("test.u32"), 4000000000u);
  EXPECT_EQ(*f->GetInt("test.i32"), -2000000000);
  EXPECT_EQ(*f->GetFloat("test.f32"), 0.15625);
  EXPECT_EQ(*f->GetUint("test.u64"), 18000000000000000000ull);
  EXPECT_EQ(*f->GetInt("test.i64"), -9000000000000000000ll);
  EXPECT_EQ(*f->GetFloat("test.f64"), -2.718281828459045);
  EXPECT_EQ(*f->GetBool("test.bool"), true);
  EXPECT_EQ(*f->GetString("test.string"), "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80");
  EXPECT_THAT(*f->GetIntArray("test.arr_i32"), ElementsAre(1, -2, 3));
  EXPECT_THAT(*f->GetIntArray("test.arr_u8"), ElementsAre(0, 255, 7));
  EXPECT_THAT(*f->GetFloatArray("test.arr_f32"), ElementsAre(0.5f, -1.25f));
  const GgufValue* b = f->Find("test.arr_bool");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->elem_type, GgufValueType::kBool);
  EXPECT_EQ(b->IntAt(0) + 2 * b->IntAt(1) + 4 * b->IntAt(2), 5);
  auto strs = f->GetStringArray("test.arr_str");
  ASSERT_TRUE(strs.ok());
  EXPECT_THAT(**strs, ElementsAre("a", "", "\xc3\xbcml"));
  const GgufValue* nested = f->Find("test.arr_nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->elem_type, GgufValueType::kArray);
  ASSERT_EQ(nested->arrays.size(), 3u);
  EXPECT_EQ(nested->arrays[0].elem_type, GgufValueType::kInt32);
  EXPECT_EQ(nested->arrays[0].IntAt(1), 2);
  EXPECT_EQ(nested->arrays[1].count, 1u);
  EXPECT_EQ(nested->arrays[2].IntAt(2), 6);
  // Keys in file order.
  EXPECT_EQ(f->metadata()[0].first, "general.architecture");
}

TEST(GgufGold, EveryTypeDequantizesBitExactlyAsGgufPy) {
  auto f = GgufFile::Open(kGold);
  ASSERT_TRUE(f.ok()) << f.status();
  const char* kTypes[] = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16", "F32"};
  EXPECT_EQ(f->tensors().size(), 2 * std::size(kTypes));
  for (const char* name : kTypes) {
    SCOPED_TRACE(name);
    const GgufTensorInfo* t = f->FindTensor(name);
    const GgufTensorInfo* want = f->FindTensor(absl::StrCat(name, ".expected"));
    ASSERT_NE(t, nullptr);
    ASSERT_NE(want, nullptr);
    EXPECT_STREQ(t->type->name, name);
    EXPECT_THAT(t->dims, ElementsAre(256, 2));
    EXPECT_THAT(t->shape(), ElementsAre(2, 256));
    EXPECT_EQ(t->numel, 512);
    EXPECT_EQ(t->offset % 64, 0u);
    ASSERT_EQ(want->type->type, quant::GgmlType::kF32);
    auto got = f->Dequantize(*t);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), 512u);
    ASSERT_EQ(want->nbytes, 512u * 4);
    int nonzero = 0;
    for (int i = 0; i < 512; ++i) {
      float w;
      std::memcpy(&w, want->bytes.data() + 4 * i, 4);
      uint32_t gb, wb;
      std::memcpy(&gb, &(*got)[i], 4);
      std::memcpy(&wb, &w, 4);
      ASSERT_EQ(gb, wb) << "element " << i << ": qrag " << (*got)[i] << ", gguf-py " << w;
      nonzero += w != 0.0f;
    }
    EXPECT_GT(nonzero, 400);
  }
}

TEST(GgufGold, EveryPrefixOfTheFileIsDataLoss) {
  const std::string bytes = ::qrag::testing::ReadFile(kGold);
  ASSERT_TRUE(ParseBytes(bytes).ok());
  auto full = ParseBytes(bytes);
  const size_t header_end = full->data_offset();
  for (size_t n = 0; n < bytes.size(); n += (n < header_end + 64 ? 1 : 61)) {
    absl::Status s = ParseStatus(bytes.substr(0, n));
    ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << "prefix of " << n << " bytes: " << s;
  }
  EXPECT_THAT(ParseStatus(bytes.substr(0, bytes.size() - 1)),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("tensor 'F32.expected'")));
}

TEST(GgufFile, Version2AndEmptyFile) {
  Builder b;
  b.version = 2;
  b.Kv("general.architecture", 8, Str("llama"));
  auto f = ParseBytes(b.Build());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->version(), 2u);
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_THAT(ParseStatus(""), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("magic")));
}

TEST(GgufFile, OpenErrorsAndMagicSniffing) {
  EXPECT_THAT(GgufFile::Open("/nonexistent/model.gguf").status(), StatusIsCode(absl::StatusCode::kNotFound));
  TempDir dir;
  WriteFile(dir.Join("a.gguf"), Builder().Build());
  WriteFile(dir.Join("b.bin"), "GGML....");
  EXPECT_TRUE(LooksLikeGguf(dir.Join("a.gguf")));
  EXPECT_TRUE(LooksLikeGguf(kGold));
  EXPECT_FALSE(LooksLikeGguf(dir.Join("b.bin")));
  EXPECT_FALSE(LooksLikeGguf(dir.Join("missing")));
  EXPECT_TRUE(GgufFile::Open(dir.Join("a.gguf")).ok());
}

// ---- header ------------------------------------------------------------------------------------------------

TEST(GgufHostile, WrongMagicAndVersions) {
  Builder b;
  b.magic = 0x4C4D4747;  // "GGML"
  EXPECT_THAT(ParseStatus(b.Build()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a GGUF file")));
  for (uint32_t v : {0u, 1u, 4u, 0xFFFFFFFFu}) {
    Builder bv;
    bv.version = v;
    EXPECT_THAT(ParseStatus(bv.Build()),
                StatusIs(absl::StatusCode::kUnimplemented, HasSubstr(absl::StrCat("GGUF version ", v))));
  }
  Builder be;
  be.version = 0x03000000;  // version 3 written big-endian
  EXPECT_THAT(ParseStatus(be.Build()), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("big-endian")));
}

TEST(GgufHostile, CountsBeyondTheFileAreRefusedBeforeAllocating) {
  Builder kv;
  kv.kv_count_override = std::numeric_limits<uint64_t>::max();
  EXPECT_THAT(ParseStatus(kv.Build()), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("metadata entries")));
  Builder t;
  t.tensor_count_override = uint64_t{1} << 60;
  EXPECT_THAT(ParseStatus(t.Build()), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("tensors declared")));
}

// ---- metadata ----------------------------------------------------------------------------------------------

TEST(GgufHostile, StringLengthsBeyondTheFile) {
  Builder key;
  key.kv = U64(std::numeric_limits<uint64_t>::max()) + "abc";
  key.n_kv = 1;
  EXPECT_THAT(ParseStatus(key.Build()), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("metadata key #0")));
  Builder val;
  val.Kv("general.name", 8, U64(uint64_t{1} << 40) + "short");
  EXPECT_THAT(ParseStatus(val.Build()), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("key 'general.name'")));
}

TEST(GgufHostile, ArrayLengthsBeyondTheFile) {
  // 2^61 u64 elements: count * 8 would wrap a u64; the check divides instead.
  Builder a;
  a.Kv("big.u64", 9, U32(10) + U64(uint64_t{1} << 61) + U64(1));
  EXPECT_THAT(ParseStatus(a.Build()), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("key 'big.u64' declares")));
  Builder s;
  s.Kv("tokenizer.ggml.tokens", 9, U32(8) + U64(1'000'000) + Str("a") + Str("b"));
  EXPECT_THAT(ParseStatus(s.Build()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("key 'tokenizer.ggml.tokens' declares 1000000 string")));
  Builder n;
  n.Kv("nested", 9, U32(9) + U64(uint64_t{1} << 50));
  EXPECT_THAT(ParseStatus(n.Build()), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("key 'nested'")));
  // An element whose own length runs past the end.
  Builder e;
  e.Kv("strs", 9, U32(8) + U64(2) + Str("ok") + U64(100) + "x");
  EXPECT_THAT(ParseStatus(e.Build()), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("key 'strs'")));
}

TEST(GgufHostile, BadValueTypesBoolsAndNesting) {
  Builder t;
  t.Kv("weird", 13, U32(0));
  EXPECT_THAT(ParseStatus(t.Build()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key 'weird': unknown value type 13")));
  Builder at;
  at.Kv("weird.arr", 9, U32(77) + U64(1) + "x");
  EXPECT_THAT(ParseStatus(at.Build()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key 'weird.arr': unknown array element type 77")));
  Builder bo;
  bo.Kv("flag", 7, std::string(1, '\x02'));
  EXPECT_THAT(ParseStatus(bo.Build()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key 'flag'")));
  Builder ba;
  ba.Kv("flags", 9, U32(7) + U64(2) + std::string("\x01\x05", 2));
  EXPECT_THAT(ParseStatus(ba.Build()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key 'flags'")));
  // kGgufMaxArrayDepth levels parse; one more does not.
  auto nested = [](int levels) {
    std::string v = U32(4) + U64(1) + U32(7);  // innermost: one uint32
    for (int i = 1; i < levels; ++i) v = U32(9) + U64(1) + v;
    return v;
  };
  Builder ok;
  ok.Kv("deep", 9, nested(kGgufMaxArrayDepth));
  EXPECT_TRUE(ParseBytes(ok.Build()).ok());
  Builder deep;
  deep.Kv("deep", 9, nested(kGgufMaxArrayDepth + 1));
  EXPECT_THAT(ParseStatus(deep.Build()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key 'deep': arrays nested")));
}

TEST(GgufHostile, DuplicateKeysAndBadAlignment) {
  Builder d;
  d.Kv("a", 4, U32(1)).Kv("a", 4, U32(2));
  EXPECT_THAT(ParseStatus(d.Build()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate metadata key 'a'")));
  for (uint32_t a : {0u, 3u, 48u}) {
    Builder b;
    b.Kv("general.alignment", 4, U32(a));
    EXPECT_THAT(ParseStatus(b.Build()),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'general.alignment' must be a uint32 power of two")));
  }
  Builder s;
  s.Kv("general.alignment", 8, Str("32"));
  EXPECT_THAT(ParseStatus(s.Build()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("general.alignment")));
}

TEST(GgufFile, TypedGettersNameTheKey) {
  Builder b;
  b.Kv("s", 8, Str("x")).Kv("neg", 5, U32(static_cast<uint32_t>(-5))).Kv("huge", 10, U64(~uint64_t{0}));
  b.Kv("f", 6, U32(0x3F800000)).Kv("arr", 9, U32(8) + U64(1) + Str("t"));
  auto f = ParseBytes(b.Build());
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT(f->GetString("missing").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing metadata key 'missing'")));
  EXPECT_THAT(f->GetUint("s").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key 's' is string, expected an integer")));
  EXPECT_THAT(f->GetUint("neg").status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'neg' is negative")));
  EXPECT_EQ(*f->GetInt("neg"), -5);
  EXPECT_THAT(f->GetInt("huge").status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'huge' is too large")));
  EXPECT_EQ(*f->GetFloat("f"), 1.0);
  EXPECT_EQ(*f->GetFloat("neg"), -5.0);
  EXPECT_THAT(f->GetBool("f").status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'f' is float32")));
  EXPECT_THAT(f->GetIntArray("arr").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'arr' is array of string")));
  EXPECT_THAT(f->GetFloatArray("s").status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'s'")));
  EXPECT_THAT(f->GetStringArray("f").status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'f'")));
}

// ---- tensors -----------------------------------------------------------------------------------------------

TEST(GgufHostile, TensorShapes) {
  Builder nd;
  nd.Tensor("t", {1, 1, 1, 1, 1}, 0, 0);
  EXPECT_THAT(ParseStatus(nd.Build()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tensor 't' has 5 dimensions")));
  Builder ov;
  ov.Tensor("blk.0.attn_q.weight", {uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0);
  EXPECT_THAT(ParseStatus(ov.Build()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tensor 'blk.0.attn_q.weight': the product")));
  Builder big;
  big.Tensor("t", {uint64_t{1} << 63}, 0, 0);
  EXPECT_THAT(ParseStatus(big.Build()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
  Builder bytes;
  bytes.Tensor("t", {uint64_t{1} << 62}, 0, 0);  // 2^62 F32 elements: 2^64 bytes
  EXPECT_THAT(ParseStatus(bytes.Build()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("byte size overflows")));
  Builder row;
  row.Tensor("t", {33, 2}, 8, 0);
  EXPECT_THAT(ParseStatus(row.Build()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("row length 33")));
  Builder type;
  type.Tensor("token_embd.weight", {4}, 99, 0);
  EXPECT_THAT(ParseStatus(type.Build()),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("tensor 'token_embd.weight' has unknown ggml type 99")));
  Builder dup;
  dup.data = std::string(64, '\0');
  dup.Tensor("t", {4}, 0, 0).Tensor("t", {4}, 0, 32);
  EXPECT_THAT(ParseStatus(dup.Build()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate tensor name 't'")));
}

TEST(GgufHostile, TensorOffsets) {
  Builder align;
  align.data = std::string(64, '\0');
  align.Tensor("t", {4}, 0, 4);
  EXPECT_THAT(ParseStatus(align.Build()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("offset 4 is not a multiple of the alignment 32")));
  Builder past;
  past.data = std::string(64, '\0');
  past.Tensor("t", {4}, 0, 64);
  EXPECT_THAT(ParseStatus(past.Build()), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("tensor 't': data")));
  Builder size;
  size.data = std::string(64, '\0');
  size.Tensor("t", {17}, 0, 0);  // 68 bytes
  EXPECT_THAT(ParseStatus(size.Build()), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("past the end")));
  Builder wrap;  // offset + size wraps around 2^64
  wrap.data = std::string(64, '\0');
  wrap.Tensor("t", {16}, 0, ~uint64_t{31});
  EXPECT_THAT(ParseStatus(wrap.Build()), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("tensor 't'")));
  Builder overlap;
  overlap.data = std::string(128, '\0');
  overlap.Tensor("a", {16}, 0, 0).Tensor("b", {8}, 0, 32);
  EXPECT_THAT(ParseStatus(overlap.Build()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tensors 'a' and 'b' overlap")));
  Builder trunc;  // the tensor infos themselves end early
  trunc.infos = Str("t") + U32(2) + U64(4);
  trunc.n_tensors = 1;
  EXPECT_THAT(ParseStatus(trunc.Build()), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("tensor 't'")));
}

TEST(GgufFile, TensorDataAndUnsupportedTypes) {
  Builder b;
  b.data = std::string(128, '\0');
  const float v[4] = {1.0f, -2.0f, 0.5f, 8.0f};
  std::memcpy(b.data.data(), v, 16);
  b.Tensor("x", {2, 2}, 0, 0).Tensor("empty", {0, 3}, 0, 32).Tensor("q2k", {256}, 10, 32);
  auto f = ParseBytes(b.Build());
  ASSERT_TRUE(f.ok()) << f.status();
  auto x = f->Dequantize(*f->FindTensor("x"));
  ASSERT_TRUE(x.ok());
  EXPECT_THAT(*x, ElementsAre(1.0f, -2.0f, 0.5f, 8.0f));
  EXPECT_TRUE(f->Dequantize(*f->FindTensor("empty"))->empty());
  EXPECT_EQ(f->FindTensor("nope"), nullptr);
  EXPECT_THAT(f->Dequantize(*f->FindTensor("q2k")).status(),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("tensor 'q2k' has type Q2_K")));
}

}  // namespace
}  // namespace qrag::model
