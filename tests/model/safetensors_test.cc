#include "server/model/safetensors.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/common/mapped_file.h"
#include "server/model/host_tensor.h"
#include "server/quant/bf16.h"
#include "tests/test_util.h"

namespace qrag::model {
namespace {

using ::qrag::testing::TempDir;
using ::qrag::testing::WriteFile;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string U64Le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a header text (not padded) and the data area.
std::string RawFile(const std::string& header, const std::string& data) {
  return U64Le(header.size()) + header + data;
}

// Random values, encoded as `dtype` bytes; `expected` gets the values the bytes decode to exactly.
std::string RandomBytes(HostDType dtype, size_t n, uint32_t seed, std::vector<float>* expected) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::string bytes;
  expected->clear();
  for (size_t i = 0; i < n; ++i) {
    float x = dist(rng);
    switch (dtype) {
      case HostDType::kF32: {
        char b[4];
        std::memcpy(b, &x, 4);
        bytes.append(b, 4);
        expected->push_back(x);
        break;
      }
      case HostDType::kF16:
      case HostDType::kBF16: {
        uint16_t h = dtype == HostDType::kF16 ? quant::FloatToHalf(x) : quant::FloatToBf16(x);
        bytes.push_back(static_cast<char>(h & 0xff));
        bytes.push_back(static_cast<char>(h >> 8));
        expected->push_back(dtype == HostDType::kF16 ? quant::HalfToFloat(h) : quant::Bf16ToFloat(h));
        break;
      }
    }
  }
  return bytes;
}

std::string F32Bytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

// A small valid file with two F32 tensors; returns its path.
std::string WriteSmallFile(const TempDir& dir, const std::string& name = "small.safetensors") {
  SafetensorsWriter w;
  EXPECT_TRUE(w.Add("a", "F32", {2, 3}, F32Bytes({1, 2, 3, 4, 5, 6})).ok());
  EXPECT_TRUE(w.Add("b", "F32", {2}, F32Bytes({7, 8})).ok());
  const std::string path = dir.Join(name);
  EXPECT_TRUE(w.Write(path).ok());
  return path;
}

// Writes `header` + `data` to a file and opens it.
absl::StatusOr<SafetensorsFile> OpenRaw(const TempDir& dir, const std::string& header,
                                        const std::string& data, std::string* path) {
  *path = dir.Join("raw.safetensors");
  WriteFile(*path, RawFile(header, data));
  return SafetensorsFile::Open(*path);
}

// ------------------------------------------------------------------------------------------------
// Round trips

TEST(SafetensorsRoundTrip, F32_F16_BF16_ValuesExact) {
  TempDir dir;
  struct Case {
    const char* name;
    HostDType dtype;
    std::vector<int64_t> shape;
  };
  const std::vector<Case> cases = {{"w.f32", HostDType::kF32, {7, 5}},
                                   {"w.f16", HostDType::kF16, {3, 11}},
                                   {"w.bf16", HostDType::kBF16, {13}}};
  std::vector<std::vector<float>> expected(cases.size());
  std::vector<std::string> raw(cases.size());
  SafetensorsWriter w;
  for (size_t i = 0; i < cases.size(); ++i) {
    int64_t n = 1;
    for (int64_t d : cases[i].shape) n *= d;
    raw[i] = RandomBytes(cases[i].dtype, n, 100 + i, &expected[i]);
    ASSERT_TRUE(w.Add(cases[i].name, SafetensorsDTypeName(cases[i].dtype), cases[i].shape, raw[i]).ok());
  }
  const std::string path = dir.Join("rt.safetensors");
  ASSERT_TRUE(w.Write(path).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->tensors().size(), 3u);
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    const SafetensorsTensorInfo* info = f->Find(cases[i].name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->dtype, SafetensorsDTypeName(cases[i].dtype));
    EXPECT_EQ(info->shape, cases[i].shape);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(info->bytes.data()), info->bytes.size()), raw[i]);
    auto t = f->GetHostTensor(cases[i].name);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->dtype, cases[i].dtype);
    EXPECT_EQ(t->shape, cases[i].shape);
    EXPECT_EQ(t->file, path);
    EXPECT_EQ(t->nbytes(), raw[i].size());
    std::vector<float> got = t->ToFloatVector();
    ASSERT_EQ(got.size(), expected[i].size());
    for (size_t k = 0; k < got.size(); ++k) {
      EXPECT_EQ(got[k], expected[i][k]) << k;  // exact
    }
    EXPECT_NE(got[0], 0.0f);
  }
  // Serialize() and Write() produce the same bytes.
  EXPECT_EQ(w.Serialize(), qrag::testing::ReadFile(path));
}

TEST(SafetensorsRoundTrip, MetadataAndSpacePaddedHeader) {
  TempDir dir;
  SafetensorsWriter w;
  w.SetMetadata("format", "pt");
  w.SetMetadata("qrag.note", "x\"y");
  ASSERT_TRUE(w.Add("t", "F32", {1}, F32Bytes({3.5f})).ok());
  const std::string bytes = w.Serialize();
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 4);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  const size_t last = header.find_last_not_of(' ');
  EXPECT_EQ(header[last], '}');
  EXPECT_LT(header.size() - last - 1, 8u);  // at most 7 padding spaces

  const std::string path = dir.Join("m.safetensors");
  WriteFile(path, bytes);
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->metadata().size(), 2u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("qrag.note"), "x\"y");
  EXPECT_EQ(f->GetHostTensor("t")->ToFloatVector(), std::vector<float>{3.5f});
}

TEST(SafetensorsRoundTrip, ScalarAndEmptyTensors) {
  TempDir dir;
  SafetensorsWriter w;
  ASSERT_TRUE(w.Add("scalar", "F32", {}, F32Bytes({-2.25f})).ok());
  ASSERT_TRUE(w.Add("empty", "BF16", {0, 4}, "").ok());
  ASSERT_TRUE(w.Add("after", "F16", {1}, std::string("\x00\x3c", 2)).ok());  // 1.0
  const std::string path = dir.Join("s.safetensors");
  ASSERT_TRUE(w.Write(path).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  auto scalar = f->GetHostTensor("scalar");
  ASSERT_TRUE(scalar.ok());
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->numel(), 1);
  EXPECT_EQ(scalar->ToFloatVector(), std::vector<float>{-2.25f});
  auto empty = f->GetHostTensor("empty");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->numel(), 0);
  EXPECT_TRUE(empty->ToFloatVector().empty());
  EXPECT_EQ(f->GetHostTensor("after")->ToFloatVector(), std::vector<float>{1.0f});
}

TEST(SafetensorsRoundTrip, WriterOrdersLargestElementsFirstSoTensorsAreAligned) {
  SafetensorsWriter w;
  ASSERT_TRUE(w.Add("u8", "U8", {3}, "abc").ok());
  ASSERT_TRUE(w.Add("half", "F16", {3}, std::string(6, '\0')).ok());
  ASSERT_TRUE(w.Add("float", "F32", {3}, std::string(12, '\0')).ok());
  ASSERT_TRUE(w.Add("long", "I64", {1}, std::string(8, '\0')).ok());
  TempDir dir;
  const std::string path = dir.Join("a.safetensors");
  ASSERT_TRUE(w.Write(path).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->Find("long")->begin, 0u);
  EXPECT_EQ(f->Find("float")->begin, 8u);
  EXPECT_EQ(f->Find("half")->begin, 20u);
  EXPECT_EQ(f->Find("u8")->begin, 26u);
  for (const auto& t : f->tensors()) {
    const size_t elem = SafetensorsDTypeBits(t.dtype) / 8;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.bytes.data()) % elem, 0u) << t.name;
  }
}

TEST(SafetensorsRoundTrip, AddHostTensorCopiesNothingAndKeepsTheSourceAlive) {
  TempDir dir;
  const std::string src = WriteSmallFile(dir);
  SafetensorsWriter w;
  {
    auto f = SafetensorsFile::Open(src);
    ASSERT_TRUE(f.ok());
    auto a = f->GetHostTensor("a");
    ASSERT_TRUE(a.ok());
    ASSERT_TRUE(w.AddHostTensor("copy_of_a", *a).ok());
  }  // the file object is gone; the writer still holds the mapping through HostTensor::owner
  const std::string dst = dir.Join("dst.safetensors");
  ASSERT_TRUE(w.Write(dst).ok());
  auto g = SafetensorsFile::Open(dst);
  ASSERT_TRUE(g.ok()) << g.status();
  auto t = g->GetHostTensor("copy_of_a");
  ASSERT_TRUE(t.ok());
  EXPECT_THAT(t->shape, ElementsAre(2, 3));
  EXPECT_EQ(t->ToFloatVector(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(SafetensorsRoundTrip, HostTensorOutlivesTheFileObject) {
  TempDir dir;
  const std::string path = WriteSmallFile(dir);
  HostTensor t;
  {
    auto f = SafetensorsFile::Open(path);
    ASSERT_TRUE(f.ok());
    t = *f->GetHostTensor("b");
  }
  EXPECT_EQ(t.ToFloatVector(), (std::vector<float>{7, 8}));
}

TEST(SafetensorsFile, UnalignedF32AndF16ReadCorrectly) {
  // A U8 tensor of one byte pushes the F32 and F16 data to odd addresses (legal in the format).
  TempDir dir;
  const std::string header =
      R"({"pad":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
      R"("f":{"dtype":"F32","shape":[2],"data_offsets":[1,9]},)"
      R"("h":{"dtype":"F16","shape":[1],"data_offsets":[9,11]}})";
  std::string data = "\x7f" + F32Bytes({1.5f, -3.0f}) + std::string("\x00\xc0", 2);  // f16 -2.0
  std::string path;
  auto f = OpenRaw(dir, header, data, &path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->GetHostTensor("f")->ToFloatVector(), (std::vector<float>{1.5f, -3.0f}));
  EXPECT_EQ(f->GetHostTensor("h")->ToFloatVector(), std::vector<float>{-2.0f});
}

TEST(SafetensorsFile, UnsupportedDTypesAreListedButConvertingIsUnimplemented) {
  TempDir dir;
  SafetensorsWriter w;
  ASSERT_TRUE(w.Add("ids", "I64", {2}, std::string(16, '\0')).ok());
  ASSERT_TRUE(w.Add("fp8", "F8_E4M3", {4}, std::string(4, '\0')).ok());
  ASSERT_TRUE(w.Add("ok", "F32", {1}, F32Bytes({1})).ok());
  const std::string path = dir.Join("u.safetensors");
  ASSERT_TRUE(w.Write(path).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->tensors().size(), 3u);
  ASSERT_NE(f->Find("ids"), nullptr);
  EXPECT_EQ(f->Find("ids")->dtype, "I64");
  EXPECT_EQ(f->Find("fp8")->dtype, "F8_E4M3");
  EXPECT_THAT(f->GetHostTensor("ids"),
              StatusIs(absl::StatusCode::kUnimplemented, AllOf(HasSubstr(path), HasSubstr("'ids'"),
                                                               HasSubstr("I64"))));
  EXPECT_THAT(f->ToHostTensor(*f->Find("fp8")),
              StatusIs(absl::StatusCode::kUnimplemented, AllOf(HasSubstr(path), HasSubstr("F8_E4M3"))));
  EXPECT_TRUE(f->GetHostTensor("ok").ok());
}

TEST(SafetensorsFile, UnknownDTypeIsListedWithoutASizeCheck) {
  TempDir dir;
  std::string path;
  auto f = OpenRaw(dir, R"({"q":{"dtype":"Q4_K","shape":[256],"data_offsets":[0,144]}})",
                   std::string(144, '\0'), &path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->Find("q")->dtype, "Q4_K");
  EXPECT_THAT(f->GetHostTensor("q"), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("Q4_K")));
}

TEST(SafetensorsFile, MissingTensorIsNotFound) {
  TempDir dir;
  const std::string path = WriteSmallFile(dir);
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->Find("nope"), nullptr);
  EXPECT_THAT(f->GetHostTensor("nope"),
              StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr(path), HasSubstr("'nope'"))));
}

TEST(SafetensorsFile, MissingFileAndDirectory) {
  TempDir dir;
  EXPECT_THAT(SafetensorsFile::Open(dir.Join("absent.safetensors")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent.safetensors")));
  EXPECT_THAT(SafetensorsFile::Open(dir.path()), StatusIsCode(absl::StatusCode::kFailedPrecondition));
}

// ------------------------------------------------------------------------------------------------
// Malformed files: each is INVALID_ARGUMENT naming the file and the problem.

struct BadFileCase {
  const char* test_name;
  std::string header;
  std::string data;
  const char* problem;  // a substring of the message
};

// gtest would otherwise print the struct's raw bytes (padding included).
void PrintTo(const BadFileCase& c, std::ostream* os) { *os << c.test_name; }

class SafetensorsBadHeader : public ::testing::TestWithParam<BadFileCase> {};

TEST_P(SafetensorsBadHeader, IsInvalidArgumentNamingFileAndProblem) {
  TempDir dir;
  std::string path;
  auto f = OpenRaw(dir, GetParam().header, GetParam().data, &path);
  EXPECT_THAT(f, StatusIs(absl::StatusCode::kInvalidArgument,
                          AllOf(HasSubstr(path), HasSubstr(GetParam().problem))));
}

const std::string k8Zeros(8, '\0');

INSTANTIATE_TEST_SUITE_P(
    Cases, SafetensorsBadHeader,
    ::testing::Values(
        BadFileCase{"NotJson", "{\"a\": nope}", "", "invalid JSON"},
        BadFileCase{"TrailingGarbage", "{} x", "", "invalid JSON"},
        BadFileCase{"NotAnObject", "[1, 2, 3]", "", "header is an array, expected a JSON object"},
        BadFileCase{"NestedTooDeep", std::string(100, '[') + std::string(100, ']'), "", "nested deeper"},
        BadFileCase{"InvalidUtf8", "{\"\xff\xfe\":1}", "", "invalid JSON"},
        BadFileCase{"EntryNotObject", R"({"t": 5})", "", "tensor 't': entry is an integer"},
        BadFileCase{"MissingDtype", R"({"t":{"shape":[2],"data_offsets":[0,8]}})", k8Zeros,
                    "tensor 't': missing \"dtype\""},
        BadFileCase{"DtypeNotString", R"({"t":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", k8Zeros,
                    "\"dtype\" is an integer, expected a string"},
        BadFileCase{"MalformedDtype", R"({"t":{"dtype":"f32 ","shape":[2],"data_offsets":[0,8]}})",
                    k8Zeros, "malformed dtype"},
        BadFileCase{"MissingShape", R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", k8Zeros,
                    "tensor 't': missing \"shape\""},
        BadFileCase{"ShapeNotArray", R"({"t":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", k8Zeros,
                    "\"shape\" is an integer, expected an array"},
        BadFileCase{"MissingDataOffsets", R"({"t":{"dtype":"F32","shape":[2]}})", k8Zeros,
                    "tensor 't': missing \"data_offsets\""},
        BadFileCase{"NegativeDim", R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", k8Zeros,
                    "shape dim -2 is not a non-negative integer"},
        BadFileCase{"NonIntegerDim", R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}})",
                    k8Zeros, "shape dim 1.5 is not a non-negative integer"},
        BadFileCase{"StringDim", R"({"t":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", k8Zeros,
                    "is not a non-negative integer"},
        BadFileCase{"NumelOverflow",
                    R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                    k8Zeros, "overflows int64"},
        BadFileCase{"OffsetsOutOfRange", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                    std::string(4, '\0'), "out of the data area (4 bytes)"},
        BadFileCase{"OffsetsHuge",
                    R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]}})",
                    k8Zeros, "out of the data area"},
        BadFileCase{"OffsetsEndBeforeBegin", R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})",
                    k8Zeros, "end 0 < begin 8"},
        BadFileCase{"OffsetsNegative", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})",
                    k8Zeros, "expected [begin, end] of non-negative integers"},
        BadFileCase{"OffsetsWrongArity", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})",
                    k8Zeros, "expected [begin, end]"},
        BadFileCase{"ByteSizeMismatch", R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                    k8Zeros, "byte size 8 != numel 3 x F32 size (32 bits) = 12"},
        BadFileCase{"SubByteSizeMismatch", R"({"t":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})",
                    k8Zeros, "not a whole number of bytes"},
        BadFileCase{"Overlap",
                    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                    k8Zeros, "tensors 'a' [0, 8) and 'b' [4, 8) overlap"},
        BadFileCase{"OverlapContained",
                    R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
                    R"("c":{"dtype":"U8","shape":[2],"data_offsets":[5,7]}})",
                    k8Zeros, "overlap"},
        BadFileCase{"MetadataNotObject", R"({"__metadata__": [1]})", "",
                    "\"__metadata__\" is an array, expected an object"},
        BadFileCase{"MetadataNotStrings", R"({"__metadata__": {"total_size": 5}})", "",
                    "\"__metadata__\" entry 'total_size' is an integer, expected a string"}),
    [](const ::testing::TestParamInfo<BadFileCase>& info) { return std::string(info.param.test_name); });

TEST(SafetensorsFile, EmptyFileIsInvalid) {
  TempDir dir;
  const std::string path = dir.Join("empty.safetensors");
  WriteFile(path, "");
  EXPECT_THAT(SafetensorsFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("file is 0 bytes, shorter than the 8-byte"))));
}

TEST(SafetensorsFile, FileShorterThan8BytesIsInvalid) {
  TempDir dir;
  const std::string path = dir.Join("short.safetensors");
  WriteFile(path, std::string("\x10\x00\x00", 3));
  EXPECT_THAT(SafetensorsFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("file is 3 bytes"), HasSubstr("truncated"))));
}

TEST(SafetensorsFile, HeaderLengthLargerThanFileIsInvalid) {
  TempDir dir;
  const std::string path = dir.Join("cut.safetensors");
  WriteFile(path, U64Le(1000) + "{}");
  EXPECT_THAT(SafetensorsFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("header length 1000 is larger than the 2 bytes"))));
}

TEST(SafetensorsFile, AbsurdHeaderLengthIsInvalid) {
  TempDir dir;
  const std::string path = dir.Join("absurd.safetensors");
  WriteFile(path, U64Le(200'000'000) + "{}");
  EXPECT_THAT(SafetensorsFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("header length 200000000 exceeds the limit"))));
}

TEST(SafetensorsFile, BadMagicLikeAZipPyTorchFileIsInvalid) {
  // A PyTorch .bin (zip) file starts with "PK\3\4": read as a length it is absurd.
  TempDir dir;
  const std::string path = dir.Join("pytorch_model.safetensors");
  WriteFile(path, std::string("PK\x03\x04\x14\x00\x00\x00\x08\x00", 10) + std::string(100, 'z'));
  EXPECT_THAT(SafetensorsFile::Open(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("exceeds the limit"),
                             HasSubstr("not a safetensors file"))));
}

TEST(SafetensorsFile, TruncatedAtEveryLengthIsInvalidNeverACrash) {
  TempDir dir;
  const std::string full = qrag::testing::ReadFile(WriteSmallFile(dir));
  const std::string path = dir.Join("prefix.safetensors");
  for (size_t len = 0; len < full.size(); ++len) {
    WriteFile(path, full.substr(0, len));
    auto f = SafetensorsFile::Open(path);
    EXPECT_THAT(f, StatusIsCode(absl::StatusCode::kInvalidArgument)) << "length " << len;
  }
  WriteFile(path, full);
  EXPECT_TRUE(SafetensorsFile::Open(path).ok());
}

TEST(SafetensorsFile, RandomCorruptionNeverCrashes) {
  TempDir dir;
  SafetensorsWriter w;
  std::vector<float> unused;
  ASSERT_TRUE(w.Add("x", "F32", {4, 4}, RandomBytes(HostDType::kF32, 16, 1, &unused)).ok());
  ASSERT_TRUE(w.Add("y", "BF16", {8}, RandomBytes(HostDType::kBF16, 8, 2, &unused)).ok());
  ASSERT_TRUE(w.Add("z", "F16", {2, 3}, RandomBytes(HostDType::kF16, 6, 3, &unused)).ok());
  const std::string good = w.Serialize();
  const std::string path = dir.Join("fuzz.safetensors");
  std::mt19937 rng(12345);
  int opened = 0, rejected = 0;
  for (int iter = 0; iter < 1500; ++iter) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t pos = rng() % bytes.size();
      // Mostly header bytes, replaced by JSON-significant or random characters.
      static const char kChars[] = "{}[]\",:0123456789-.e ";
      bytes[pos] = (rng() % 2) ? kChars[rng() % (sizeof(kChars) - 1)] : static_cast<char>(rng());
    }
    if (rng() % 8 == 0) bytes.resize(rng() % bytes.size());
    WriteFile(path, bytes);
    auto f = SafetensorsFile::Open(path);
    if (!f.ok()) {
      EXPECT_THAT(f, StatusIsCode(absl::StatusCode::kInvalidArgument)) << f.status();
      ++rejected;
      continue;
    }
    ++opened;
    for (const SafetensorsTensorInfo& info : f->tensors()) {
      auto t = f->ToHostTensor(info);
      if (t.ok()) {
        std::vector<float> v = t->ToFloatVector();  // must stay inside the mapping (ASan/valgrind)
        EXPECT_EQ(v.size(), static_cast<size_t>(t->numel()));
      }
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(opened, 0);
}

// ------------------------------------------------------------------------------------------------
// Writer

TEST(SafetensorsWriter, RejectsBadInput) {
  SafetensorsWriter w;
  ASSERT_TRUE(w.Add("t", "F32", {1}, F32Bytes({1})).ok());
  EXPECT_THAT(w.Add("t", "F32", {1}, F32Bytes({1})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'t': added twice")));
  EXPECT_THAT(w.Add("__metadata__", "F32", {1}, F32Bytes({1})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reserved")));
  EXPECT_THAT(w.Add("", "F32", {1}, F32Bytes({1})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty name")));
  EXPECT_THAT(w.Add("u", "f32", {1}, F32Bytes({1})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed dtype")));
  EXPECT_THAT(w.Add("u", "F32", {3}, F32Bytes({1, 2})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("8 bytes given, shape [3] of F32 needs 12")));
  EXPECT_THAT(w.Add("u", "F32", {-1}, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid shape [-1]")));
  // A rejected name can still be added correctly afterwards.
  EXPECT_TRUE(w.Add("u", "F32", {2}, F32Bytes({1, 2})).ok());
}

TEST(SafetensorsWriter, WriteIntoMissingDirectoryIsInternal) {
  TempDir dir;
  SafetensorsWriter w;
  ASSERT_TRUE(w.Add("t", "F32", {1}, F32Bytes({1})).ok());
  const std::string path = dir.Join("no/such/dir/x.safetensors");
  EXPECT_THAT(w.Write(path), StatusIs(absl::StatusCode::kInternal, HasSubstr(path)));
}

// ------------------------------------------------------------------------------------------------
// Sharded checkpoints

// Writes shard files shard-<i>-of-<n> with tensors "t<k>" (k % n == i) and an index mapping them.
std::map<std::string, std::vector<float>> WriteShards(const TempDir& dir, int n_shards, int n_tensors,
                                                      nlohmann::json* weight_map) {
  std::map<std::string, std::vector<float>> values;
  std::vector<SafetensorsWriter> writers(n_shards);
  for (int k = 0; k < n_tensors; ++k) {
    const std::string name = absl::StrCat("model.layers.", k, ".w");
    const HostDType dtype = k % 3 == 0 ? HostDType::kF32 : (k % 3 == 1 ? HostDType::kF16 : HostDType::kBF16);
    std::string bytes = RandomBytes(dtype, 6, 500 + k, &values[name]);
    EXPECT_TRUE(writers[k % n_shards].Add(name, SafetensorsDTypeName(dtype), {2, 3}, bytes).ok());
    (*weight_map)[name] = absl::StrCat("model-0000", k % n_shards + 1, "-of-0000", n_shards, ".safetensors");
  }
  for (int i = 0; i < n_shards; ++i) {
    EXPECT_TRUE(
        writers[i].Write(dir.Join(absl::StrCat("model-0000", i + 1, "-of-0000", n_shards, ".safetensors"))).ok());
  }
  return values;
}

std::string WriteIndex(const TempDir& dir, const nlohmann::json& weight_map) {
  nlohmann::json index = {{"metadata", {{"total_size", 1234}}}, {"weight_map", weight_map}};
  const std::string path = dir.Join("model.safetensors.index.json");
  WriteFile(path, index.dump(2));
  return path;
}

TEST(SafetensorsSharded, ThreeShardsAllTensorsFoundWithExactValues) {
  TempDir dir;
  nlohmann::json weight_map;
  auto values = WriteShards(dir, 3, 8, &weight_map);
  auto c = SafetensorsCheckpoint::OpenIndex(WriteIndex(dir, weight_map));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->files().size(), 3u);
  EXPECT_EQ(c->size(), 8u);
  ASSERT_EQ(c->Names().size(), 8u);
  for (const auto& [name, expected] : values) {
    auto t = c->GetHostTensor(name);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->ToFloatVector(), expected) << name;
    EXPECT_THAT(t->file, HasSubstr(weight_map[name].get<std::string>()));
  }
  EXPECT_THAT(c->GetHostTensor("absent"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'absent'")));
  // Copies of the checkpoint stay valid after the original is gone.
  SafetensorsCheckpoint copy = *c;
  c = absl::InternalError("gone");
  EXPECT_EQ(copy.GetHostTensor("model.layers.0.w")->ToFloatVector(), values["model.layers.0.w"]);
}

TEST(SafetensorsSharded, MissingShardIsNotFoundNamingIndexAndShard) {
  TempDir dir;
  nlohmann::json weight_map;
  WriteShards(dir, 2, 4, &weight_map);
  std::filesystem::remove(dir.Join("model-00002-of-00002.safetensors"));
  const std::string index = WriteIndex(dir, weight_map);
  EXPECT_THAT(SafetensorsCheckpoint::OpenIndex(index),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr(index), HasSubstr("shard 'model-00002-of-00002.safetensors'"),
                             HasSubstr("not found"))));
}

TEST(SafetensorsSharded, TensorMissingFromItsShardIsNotFound) {
  TempDir dir;
  nlohmann::json weight_map;
  WriteShards(dir, 2, 4, &weight_map);
  weight_map["lm_head.weight"] = "model-00001-of-00002.safetensors";
  const std::string index = WriteIndex(dir, weight_map);
  EXPECT_THAT(SafetensorsCheckpoint::OpenIndex(index),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr(index), HasSubstr("tensor 'lm_head.weight'"),
                             HasSubstr("model-00001-of-00002.safetensors"), HasSubstr("has no such tensor"))));
}

TEST(SafetensorsSharded, TensorInTwoShardsIsInvalid) {
  TempDir dir;
  nlohmann::json weight_map;
  WriteShards(dir, 2, 4, &weight_map);
  SafetensorsWriter extra;  // also holds a tensor that the index maps to the first shard
  ASSERT_TRUE(extra.Add("model.layers.0.w", "F32", {1}, F32Bytes({0})).ok());
  weight_map["other"] = "extra.safetensors";
  ASSERT_TRUE(extra.Add("other", "F32", {1}, F32Bytes({0})).ok());
  ASSERT_TRUE(extra.Write(dir.Join("extra.safetensors")).ok());
  EXPECT_THAT(SafetensorsCheckpoint::OpenIndex(WriteIndex(dir, weight_map)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'model.layers.0.w' appears in both"), HasSubstr("extra.safetensors"))));
}

TEST(SafetensorsSharded, CorruptShardErrorNamesTheShard) {
  TempDir dir;
  nlohmann::json weight_map;
  WriteShards(dir, 2, 4, &weight_map);
  const std::string shard = dir.Join("model-00002-of-00002.safetensors");
  const std::string bytes = qrag::testing::ReadFile(shard);
  WriteFile(shard, bytes.substr(0, bytes.size() - 3));
  EXPECT_THAT(SafetensorsCheckpoint::OpenIndex(WriteIndex(dir, weight_map)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(shard), HasSubstr("out of the data area"))));
}

TEST(SafetensorsSharded, MalformedIndexes) {
  TempDir dir;
  const std::string path = dir.Join("model.safetensors.index.json");
  WriteFile(path, "{\"weight_map\": ");
  EXPECT_THAT(SafetensorsCheckpoint::OpenIndex(path),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr(path), HasSubstr("invalid JSON"))));
  WriteFile(path, R"({"metadata": {}})");
  EXPECT_THAT(SafetensorsCheckpoint::OpenIndex(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("missing \"weight_map\""))));
  WriteFile(path, R"({"weight_map": {"a": 3}})");
  EXPECT_THAT(SafetensorsCheckpoint::OpenIndex(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("entry 'a' is an integer")));
  WriteFile(path, R"({"weight_map": {"a": "../../etc/passwd"}})");
  EXPECT_THAT(SafetensorsCheckpoint::OpenIndex(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("without '..'")));
  WriteFile(path, R"({"weight_map": {"a": "/abs.safetensors"}})");
  EXPECT_THAT(SafetensorsCheckpoint::OpenIndex(path), StatusIsCode(absl::StatusCode::kInvalidArgument));
  WriteFile(path, R"({"weight_map": {}})");
  EXPECT_THAT(SafetensorsCheckpoint::OpenIndex(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(SafetensorsCheckpoint::OpenIndex(dir.Join("absent.index.json")),
              StatusIsCode(absl::StatusCode::kNotFound));
}

// ------------------------------------------------------------------------------------------------
// HostTensor and LoadedModel

HostTensor OwnedTensor(HostDType dtype, std::vector<int64_t> shape, std::string bytes, std::string file) {
  auto owned = std::make_shared<const std::string>(std::move(bytes));
  HostTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = reinterpret_cast<const uint8_t*>(owned->data());
  t.owner = owned;
  t.file = std::move(file);
  return t;
}

TEST(HostTensor, ToFloatIsExactForSpecialHalfAndBf16Values) {
  // f16: 1.0, -2.0, smallest subnormal, 65504 (max), +inf.
  const uint16_t half[] = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00};
  std::string hb(reinterpret_cast<const char*>(half), sizeof(half));
  HostTensor h = OwnedTensor(HostDType::kF16, {5}, hb, "h");
  std::vector<float> hv = h.ToFloatVector();
  EXPECT_EQ(hv[0], 1.0f);
  EXPECT_EQ(hv[1], -2.0f);
  EXPECT_EQ(hv[2], std::ldexp(1.0f, -24));
  EXPECT_EQ(hv[3], 65504.0f);
  EXPECT_TRUE(std::isinf(hv[4]));
  // bf16: 1.0, -0.5, 3.0e38-ish, smallest subnormal.
  const uint16_t bf[] = {0x3f80, 0xbf00, 0x7f7f, 0x0001};
  std::string bb(reinterpret_cast<const char*>(bf), sizeof(bf));
  HostTensor b = OwnedTensor(HostDType::kBF16, {2, 2}, bb, "b");
  std::vector<float> bv = b.ToFloatVector();
  EXPECT_EQ(bv[0], 1.0f);
  EXPECT_EQ(bv[1], -0.5f);
  EXPECT_EQ(bv[2], quant::Bf16ToFloat(0x7f7f));
  EXPECT_EQ(bv[3], std::ldexp(1.0f, -133));
  EXPECT_EQ(b.numel(), 4);
  EXPECT_EQ(b.nbytes(), 8u);
  EXPECT_STREQ(HostDTypeName(HostDType::kBF16), "bf16");
  EXPECT_EQ(HostDTypeSize(HostDType::kF32), 4u);
  EXPECT_EQ(HostDTypeSize(HostDType::kF16), 2u);
}

TEST(LoadedModel, GetChecksTheShapeAndNamesTensorFileAndShapes) {
  LoadedModel m;
  m.source = "/models/tiny";
  m.tensors["model.norm.weight"] =
      OwnedTensor(HostDType::kF32, {4}, F32Bytes({1, 2, 3, 4}), "/models/tiny/model.safetensors");
  auto ok = m.Get("model.norm.weight", {4});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ((*ok)->ToFloatVector(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_THAT(m.Get("model.norm.weight", {2, 2}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'model.norm.weight'"), HasSubstr("/models/tiny/model.safetensors"),
                             HasSubstr("has shape [4], expected [2, 2]"))));
  EXPECT_THAT(m.GetOptional("model.norm.weight", {5}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected [5]")));
}

TEST(LoadedModel, MissingTensorIsNotFoundButOptionalIsNull) {
  LoadedModel m;
  m.source = "/models/tiny";
  EXPECT_THAT(m.Get("lm_head.weight", {10, 4}),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("/models/tiny"), HasSubstr("'lm_head.weight' not found"),
                             HasSubstr("[10, 4]"))));
  auto opt = m.GetOptional("lm_head.weight", {10, 4});
  ASSERT_TRUE(opt.ok());
  EXPECT_EQ(*opt, nullptr);
}

// ------------------------------------------------------------------------------------------------
// A real header: sentence-transformers/all-MiniLM-L6-v2 model.safetensors (weights not in the repo).

TEST(SafetensorsRealHeader, AllMiniLmL6V2ReconstructedWithZeroWeights) {
  QRAG_REQUIRE_SHARED_PATH(header_path, "models/all-MiniLM-L6-v2/model.safetensors.header.json");
  auto text = ReadFileToString(header_path);
  ASSERT_TRUE(text.ok()) << text.status();
  const nlohmann::json wrapper = nlohmann::json::parse(*text);
  const nlohmann::json& header = wrapper.at("header");
  const uint64_t header_len = wrapper.at("header_len").get<uint64_t>();
  // The reference writer emits compact JSON padded with spaces; our dump has the same length.
  std::string header_text = header.dump();
  ASSERT_LE(header_text.size(), header_len);
  header_text.resize(header_len, ' ');
  uint64_t data_size = 0;
  for (const auto& [name, entry] : header.items()) {
    if (name != "__metadata__") data_size = std::max<uint64_t>(data_size, entry.at("data_offsets")[1]);
  }
  ASSERT_EQ(data_size, 90'856'960u);                       // ~87 MiB of zeros (a sparse file)
  ASSERT_EQ(8 + header_len + data_size, 90'868'376u);      // the size of the real file

  TempDir dir;
  const std::string path = dir.Join("model.safetensors");
  WriteFile(path, U64Le(header_len) + header_text);
  std::filesystem::resize_file(path, 8 + header_len + data_size);

  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->tensors().size(), 104u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const SafetensorsTensorInfo* emb = f->Find("embeddings.word_embeddings.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dtype, "F32");
  EXPECT_THAT(emb->shape, ElementsAre(30522, 384));
  EXPECT_EQ(emb->bytes.size(), 30522u * 384 * 4);
  const SafetensorsTensorInfo* q = f->Find("encoder.layer.5.attention.self.query.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_THAT(q->shape, ElementsAre(384, 384));
  auto qt = f->ToHostTensor(*q);
  ASSERT_TRUE(qt.ok());
  std::vector<float> qv = qt->ToFloatVector();
  EXPECT_EQ(qv.size(), 384u * 384);
  EXPECT_EQ(qv.back(), 0.0f);
  const SafetensorsTensorInfo* ids = f->Find("embeddings.position_ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_EQ(ids->dtype, "I64");
  EXPECT_THAT(ids->shape, ElementsAre(1, 512));
  EXPECT_THAT(f->ToHostTensor(*ids),
              StatusIs(absl::StatusCode::kUnimplemented,
                       AllOf(HasSubstr("embeddings.position_ids"), HasSubstr("I64"), HasSubstr(path))));
}

}  // namespace
}  // namespace qrag::model
