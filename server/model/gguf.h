// Reading GGUF files (ggml's model format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md),
// versions 2 and 3. Everything is little-endian:
//
//   u32 magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//   kv_count x  { string key | u32 value_type | value }
//   tensor_count x { string name | u32 n_dims | u64 dims[n_dims] | u32 ggml_type | u64 offset }
//   padding to `general.alignment` (u32, default 32) | data section (tensor offsets are relative to it)
//
// where string = u64 length + bytes (no terminator) and an array value = u32 element type + u64 count +
// elements (arrays may nest). dims[0] is the contiguous dimension (ggml's ne[0]): a weight of shape
// [rows, cols] in row-major terms is stored with dims {cols, rows}.
//
// Nothing in a file can make the reader crash, read outside the buffer, or allocate more than a small
// multiple of the file's size: every count is checked against the bytes that remain before anything is
// reserved. Strings and numeric arrays are views into the buffer (no copies).
//
// Thread safety: a GgufFile is immutable after Parse/Open; copies share the buffer.
#ifndef QRAG_SERVER_MODEL_GGUF_H_
#define QRAG_SERVER_MODEL_GGUF_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "server/quant/gguf_blocks.h"

namespace qrag::model {

inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr uint32_t kGgufDefaultAlignment = 32;
// Arrays nested deeper than this are rejected (the parser recurses once per level).
inline constexpr int kGgufMaxArrayDepth = 8;
// ggml tensors have at most 4 dimensions (GGML_MAX_DIMS).
inline constexpr uint32_t kGgufMaxDims = 4;

enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// "uint32", "string", "array", ...; "type <n>" for an unknown value.
std::string GgufValueTypeName(GgufValueType type);

// One metadata value. Scalars: `type` and one of the fields below. Arrays: `type` = kArray, `elem_type`, `count`
// and, by element type, `raw` (numbers and bools: count elements of their size, little-endian, unaligned),
// `strings`, or `arrays` (nested arrays).
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  uint64_t u = 0;        // kUint8/16/32/64 and kBool (0 or 1)
  int64_t i = 0;         // kInt8/16/32/64
  double f = 0;          // kFloat32 (exactly widened) / kFloat64
  absl::string_view str; // kString: a view into the file

  GgufValueType elem_type = GgufValueType::kUint8;
  uint64_t count = 0;
  absl::Span<const uint8_t> raw;
  std::vector<absl::string_view> strings;
  std::vector<GgufValue> arrays;

  bool is_array() const { return type == GgufValueType::kArray; }
  // For a numeric array: element `index` (< count) as an integer (integers and bools) or a double (any
  // number). No bounds check beyond a QRAG_CHECK.
  int64_t IntAt(uint64_t index) const;
  double FloatAt(uint64_t index) const;
};

// One tensor as its info record describes it, with its bytes located in the data section.
struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;   // ggml order: dims[0] is contiguous; every dim >= 0
  uint32_t raw_type = 0;       // as stored
  const quant::GgmlTypeTraits* type = nullptr;  // never null after Parse
  uint64_t offset = 0;         // relative to the data section
  uint64_t nbytes = 0;
  int64_t numel = 0;
  absl::Span<const uint8_t> bytes;  // the tensor's data (valid while the GgufFile or a copy lives)

  // The shape in row-major order (dims reversed): {rows, cols} for a matrix.
  std::vector<int64_t> shape() const { return std::vector<int64_t>(dims.rbegin(), dims.rend()); }
};

class GgufFile {
 public:
  // Maps and parses `path` (MappedFile). Errors: MappedFile::Open's, and Parse's.
  static absl::StatusOr<GgufFile> Open(const std::string& path);

  // Parses `size` bytes at `data`, kept alive by `owner` (may be null when the caller keeps them alive for
  // as long as the result is used). `source` names the buffer in messages (a path). Errors, each naming the
  // source and the key / tensor / field at fault:
  //  - DATA_LOSS: the buffer ends inside the header, a key, a value, a tensor info or a tensor's data
  //    (including counts, string lengths and array lengths that need more bytes than remain);
  //  - INVALID_ARGUMENT: wrong magic; an unknown value type; a bool that is not 0/1; an array nested deeper
  //    than kGgufMaxArrayDepth; a duplicate key or tensor name; general.alignment that is not a u32 power of
  //    two; more than kGgufMaxDims dims, a dim above INT64_MAX, a dims product that overflows, a row length
  //    that is not a whole number of blocks; an offset that is not a multiple of the alignment; tensors whose
  //    data overlap;
  //  - UNIMPLEMENTED: version other than 2 or 3 (a big-endian file is named as such); a ggml type id that
  //    ggml does not define.
  static absl::StatusOr<GgufFile> Parse(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                                        std::string source);

  const std::string& source() const { return source_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the data section in the file

  // Metadata in file order; lookup by key.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return *metadata_; }
  const GgufValue* Find(absl::string_view key) const;
  bool Has(absl::string_view key) const { return Find(key) != nullptr; }

  // Typed getters. INVALID_ARGUMENT naming the key when it is missing, has another type, or (GetUint/GetInt)
  // holds a value the result cannot represent. GetUint/GetInt accept any integer type, GetFloat any number.
  absl::StatusOr<std::string> GetString(absl::string_view key) const;
  absl::StatusOr<uint64_t> GetUint(absl::string_view key) const;
  absl::StatusOr<int64_t> GetInt(absl::string_view key) const;
  absl::StatusOr<double> GetFloat(absl::string_view key) const;
  absl::StatusOr<bool> GetBool(absl::string_view key) const;
  // Arrays: of strings; of any integer type; of any number type.
  absl::StatusOr<const std::vector<absl::string_view>*> GetStringArray(absl::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(absl::string_view key) const;
  absl::StatusOr<std::vector<float>> GetFloatArray(absl::string_view key) const;

  // Tensors in file order; lookup by name (nullptr when absent).
  const std::vector<GgufTensorInfo>& tensors() const { return *tensors_; }
  const GgufTensorInfo* FindTensor(absl::string_view name) const;

  // The tensor's elements as fp32 (quant::DequantizeGgml). UNIMPLEMENTED naming the tensor and its type
  // for a type that cannot be dequantized.
  absl::StatusOr<std::vector<float>> Dequantize(const GgufTensorInfo& info) const;
  // Into dst[0, info.numel).
  absl::Status DequantizeInto(const GgufTensorInfo& info, float* dst) const;

  // The owner of the buffer (for views that outlive this object).
  const std::shared_ptr<const void>& owner() const { return owner_; }

 private:
  GgufFile() = default;

  std::string source_;
  std::shared_ptr<const void> owner_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  // Behind shared_ptrs: GgufValue holds views into the buffer, and copies of a GgufFile share everything.
  std::shared_ptr<std::vector<std::pair<std::string, GgufValue>>> metadata_;
  std::shared_ptr<absl::flat_hash_map<std::string, size_t>> metadata_index_;
  std::shared_ptr<std::vector<GgufTensorInfo>> tensors_;
  std::shared_ptr<absl::flat_hash_map<std::string, size_t>> tensor_index_;
};

// True when the file at `path` starts with the GGUF magic (false when it cannot be read).
bool LooksLikeGguf(const std::string& path);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_GGUF_H_
