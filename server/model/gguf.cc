#include "server/model/gguf.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/mapped_file.h"
#include "server/common/status.h"

namespace qrag::model {
namespace {

using quant::GgmlTypeTraits;

// Bytes of one element of a numeric / bool value type, 0 for string/array/unknown.
size_t ScalarSize(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

bool KnownValueType(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::kFloat64); }

// The fewest bytes one array element of type `t` can take in the file: a string is at least its u64
// length, an array at least its u32 type + u64 count.
uint64_t MinElementBytes(GgufValueType t) {
  if (t == GgufValueType::kString) return 8;
  if (t == GgufValueType::kArray) return 12;
  return ScalarSize(t);
}

bool IsInteger(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
      return true;
    default:
      return false;
  }
}

bool IsSigned(GgufValueType t) {
  return t == GgufValueType::kInt8 || t == GgufValueType::kInt16 || t == GgufValueType::kInt32 ||
         t == GgufValueType::kInt64;
}

template <typename T>
T LoadLe(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // the host is little-endian (x86-64, aarch64 Linux)
  return v;
}

// A cursor over the buffer; every read is bounds-checked and reports DATA_LOSS with `what` when the buffer
// ends first.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& source)
      : data_(data), size_(size), source_(source) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  absl::Status Need(uint64_t n, absl::string_view what) const {
    if (n > remaining()) {
      return absl::DataLossError(absl::StrCat(source_, ": truncated: ", what, " needs ", n, " bytes at offset ",
                                              pos_, " but the file has ", remaining(), " left"));
    }
    return absl::OkStatus();
  }
  template <typename T>
  absl::StatusOr<T> Read(absl::string_view what) {
    QRAG_RETURN_IF_ERROR(Need(sizeof(T), what));
    T v = LoadLe<T>(data_ + pos_);
    pos_ += sizeof(T);
    return v;
  }
  absl::StatusOr<absl::string_view> ReadString(absl::string_view what) {
    QRAG_ASSIGN_OR_RETURN(uint64_t len, Read<uint64_t>(what));
    QRAG_RETURN_IF_ERROR(Need(len, what));
    absl::string_view s(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return s;
  }
  absl::StatusOr<absl::Span<const uint8_t>> ReadBytes(uint64_t n, absl::string_view what) {
    QRAG_RETURN_IF_ERROR(Need(n, what));
    absl::Span<const uint8_t> s(data_ + pos_, n);
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& source_;
};

absl::Status ReadValue(Cursor& c, GgufValueType type, int depth, const std::string& source,
                       const std::string& key, GgufValue* out);

absl::Status ReadScalar(Cursor& c, GgufValueType type, const std::string& source, const std::string& key,
                        GgufValue* out) {
  const std::string what = absl::StrCat("the value of key '", key, "'");
  out->type = type;
  switch (type) {
    case GgufValueType::kUint8: {
      QRAG_ASSIGN_OR_RETURN(out->u, c.Read<uint8_t>(what));
      break;
    }
    case GgufValueType::kInt8: {
      QRAG_ASSIGN_OR_RETURN(out->i, c.Read<int8_t>(what));
      break;
    }
    case GgufValueType::kUint16: {
      QRAG_ASSIGN_OR_RETURN(out->u, c.Read<uint16_t>(what));
      break;
    }
    case GgufValueType::kInt16: {
      QRAG_ASSIGN_OR_RETURN(out->i, c.Read<int16_t>(what));
      break;
    }
    case GgufValueType::kUint32: {
      QRAG_ASSIGN_OR_RETURN(out->u, c.Read<uint32_t>(what));
      break;
    }
    case GgufValueType::kInt32: {
      QRAG_ASSIGN_OR_RETURN(out->i, c.Read<int32_t>(what));
      break;
    }
    case GgufValueType::kUint64: {
      QRAG_ASSIGN_OR_RETURN(out->u, c.Read<uint64_t>(what));
      break;
    }
    case GgufValueType::kInt64: {
      QRAG_ASSIGN_OR_RETURN(out->i, c.Read<int64_t>(what));
      break;
    }
    case GgufValueType::kFloat32: {
      QRAG_ASSIGN_OR_RETURN(float f, c.Read<float>(what));
      out->f = f;
      break;
    }
    case GgufValueType::kFloat64: {
      QRAG_ASSIGN_OR_RETURN(out->f, c.Read<double>(what));
      break;
    }
    case GgufValueType::kBool: {
      QRAG_ASSIGN_OR_RETURN(uint8_t b, c.Read<uint8_t>(what));
      if (b > 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": key '", key, "': bool value ", b, " is neither 0 nor 1"));
      }
      out->u = b;
      break;
    }
    case GgufValueType::kString: {
      QRAG_ASSIGN_OR_RETURN(out->str, c.ReadString(what));
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(source, ": key '", key, "': unknown value type ",
                                                     static_cast<uint32_t>(type)));
  }
  return absl::OkStatus();
}

absl::Status ReadArray(Cursor& c, int depth, const std::string& source, const std::string& key,
                       GgufValue* out) {
  const std::string what = absl::StrCat("the array of key '", key, "'");
  if (depth >= kGgufMaxArrayDepth) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": key '", key, "': arrays nested deeper than ",
                                                   kGgufMaxArrayDepth, " levels"));
  }
  QRAG_ASSIGN_OR_RETURN(uint32_t elem, c.Read<uint32_t>(what));
  if (!KnownValueType(elem)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": key '", key, "': unknown array element type ", elem));
  }
  QRAG_ASSIGN_OR_RETURN(uint64_t count, c.Read<uint64_t>(what));
  out->type = GgufValueType::kArray;
  out->elem_type = static_cast<GgufValueType>(elem);
  out->count = count;
  // Never reserve for more elements than the remaining bytes can hold.
  const uint64_t min_bytes = MinElementBytes(out->elem_type);
  if (count > c.remaining() / min_bytes) {
    return absl::DataLossError(absl::StrCat(source, ": truncated: key '", key, "' declares ", count, " ",
                                            GgufValueTypeName(out->elem_type), " elements (at least ",
                                            min_bytes, " bytes each) but the file has ", c.remaining(),
                                            " bytes left"));
  }
  if (out->elem_type == GgufValueType::kString) {
    out->strings.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      QRAG_ASSIGN_OR_RETURN(absl::string_view s, c.ReadString(what));
      out->strings.push_back(s);
    }
  } else if (out->elem_type == GgufValueType::kArray) {
    out->arrays.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      out->arrays.emplace_back();
      QRAG_RETURN_IF_ERROR(ReadArray(c, depth + 1, source, key, &out->arrays.back()));
    }
  } else {
    QRAG_ASSIGN_OR_RETURN(out->raw, c.ReadBytes(count * min_bytes, what));
    if (out->elem_type == GgufValueType::kBool) {
      for (uint8_t b : out->raw) {
        if (b > 1) {
          return absl::InvalidArgumentError(
              absl::StrCat(source, ": key '", key, "': bool array element ", b, " is neither 0 nor 1"));
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ReadValue(Cursor& c, GgufValueType type, int depth, const std::string& source,
                       const std::string& key, GgufValue* out) {
  if (type == GgufValueType::kArray) return ReadArray(c, depth, source, key, out);
  return ReadScalar(c, type, source, key, out);
}

absl::Status WrongType(const std::string& source, absl::string_view key, const GgufValue& v,
                       absl::string_view expected) {
  std::string have = GgufValueTypeName(v.type);
  if (v.is_array()) have = absl::StrCat("array of ", GgufValueTypeName(v.elem_type));
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": key '", key, "' is ", have, ", expected ", expected));
}

}  // namespace

std::string GgufValueTypeName(GgufValueType type) {
  static constexpr const char* kNames[] = {"uint8", "int8",   "uint16", "int16", "uint32", "int32", "float32",
                                           "bool",  "string", "array",  "uint64", "int64", "float64"};
  const uint32_t t = static_cast<uint32_t>(type);
  if (t < sizeof(kNames) / sizeof(kNames[0])) return kNames[t];
  return absl::StrCat("type ", t);
}

int64_t GgufValue::IntAt(uint64_t index) const {
  QRAG_CHECK(is_array() && index < count && ScalarSize(elem_type) != 0);
  const uint8_t* p = raw.data() + index * ScalarSize(elem_type);
  switch (elem_type) {
    case GgufValueType::kUint8:
    case GgufValueType::kBool:
      return *p;
    case GgufValueType::kInt8:
      return static_cast<int8_t>(*p);
    case GgufValueType::kUint16:
      return LoadLe<uint16_t>(p);
    case GgufValueType::kInt16:
      return LoadLe<int16_t>(p);
    case GgufValueType::kUint32:
      return LoadLe<uint32_t>(p);
    case GgufValueType::kInt32:
      return LoadLe<int32_t>(p);
    case GgufValueType::kUint64:
      return static_cast<int64_t>(LoadLe<uint64_t>(p));
    case GgufValueType::kInt64:
      return LoadLe<int64_t>(p);
    case GgufValueType::kFloat32:
      return static_cast<int64_t>(LoadLe<float>(p));
    case GgufValueType::kFloat64:
      return static_cast<int64_t>(LoadLe<double>(p));
    default:
      return 0;
  }
}

double GgufValue::FloatAt(uint64_t index) const {
  QRAG_CHECK(is_array() && index < count && ScalarSize(elem_type) != 0);
  const uint8_t* p = raw.data() + index * ScalarSize(elem_type);
  if (elem_type == GgufValueType::kFloat32) return LoadLe<float>(p);
  if (elem_type == GgufValueType::kFloat64) return LoadLe<double>(p);
  if (elem_type == GgufValueType::kUint64) return static_cast<double>(LoadLe<uint64_t>(p));
  return static_cast<double>(IntAt(index));
}

absl::StatusOr<GgufFile> GgufFile::Open(const std::string& path) {
  QRAG_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> file, MappedFile::Open(path));
  const uint8_t* data = file->data();
  const size_t size = file->size();
  return Parse(std::move(file), data, size, path);
}

absl::StatusOr<GgufFile> GgufFile::Parse(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                                         std::string source) {
  GgufFile f;
  f.source_ = std::move(source);
  f.owner_ = std::move(owner);
  f.metadata_ = std::make_shared<std::vector<std::pair<std::string, GgufValue>>>();
  f.metadata_index_ = std::make_shared<absl::flat_hash_map<std::string, size_t>>();
  f.tensors_ = std::make_shared<std::vector<GgufTensorInfo>>();
  f.tensor_index_ = std::make_shared<absl::flat_hash_map<std::string, size_t>>();
  const std::string& src = f.source_;
  Cursor c(data, size, src);

  QRAG_ASSIGN_OR_RETURN(uint32_t magic, c.Read<uint32_t>("the magic"));
  if (magic != kGgufMagic) {
    return absl::InvalidArgumentError(absl::StrCat(src, ": not a GGUF file (magic 0x", absl::Hex(magic, absl::kZeroPad8),
                                                   ", expected 0x46554747 \"GGUF\")"));
  }
  QRAG_ASSIGN_OR_RETURN(f.version_, c.Read<uint32_t>("the version"));
  if (f.version_ != 2 && f.version_ != 3) {
    if ((f.version_ & 0xFFFF) == 0 && (f.version_ >> 16) != 0) {
      return absl::UnimplementedError(
          absl::StrCat(src, ": a big-endian GGUF file (version field 0x", absl::Hex(f.version_),
                       "); only little-endian files are supported"));
    }
    return absl::UnimplementedError(
        absl::StrCat(src, ": GGUF version ", f.version_, " is not supported (versions 2 and 3 are)"));
  }
  QRAG_ASSIGN_OR_RETURN(uint64_t tensor_count, c.Read<uint64_t>("the tensor count"));
  QRAG_ASSIGN_OR_RETURN(uint64_t kv_count, c.Read<uint64_t>("the metadata count"));

  // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes.
  if (kv_count > c.remaining() / 13) {
    return absl::DataLossError(absl::StrCat(src, ": truncated: ", kv_count, " metadata entries declared but the file has ",
                                            c.remaining(), " bytes left"));
  }
  f.metadata_->reserve(kv_count);
  for (uint64_t k = 0; k < kv_count; ++k) {
    QRAG_ASSIGN_OR_RETURN(absl::string_view key_view, c.ReadString(absl::StrCat("metadata key #", k)));
    std::string key(key_view);
    QRAG_ASSIGN_OR_RETURN(uint32_t type, c.Read<uint32_t>(absl::StrCat("the type of key '", key, "'")));
    if (!KnownValueType(type)) {
      return absl::InvalidArgumentError(absl::StrCat(src, ": key '", key, "': unknown value type ", type));
    }
    GgufValue value;
    QRAG_RETURN_IF_ERROR(ReadValue(c, static_cast<GgufValueType>(type), 0, src, key, &value));
    if (!f.metadata_index_->emplace(key, f.metadata_->size()).second) {
      return absl::InvalidArgumentError(absl::StrCat(src, ": duplicate metadata key '", key, "'"));
    }
    f.metadata_->emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* a = f.Find("general.alignment")) {
    if (a->type != GgufValueType::kUint32 || a->u == 0 || (a->u & (a->u - 1)) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          src, ": key 'general.alignment' must be a uint32 power of two, got ",
          a->type == GgufValueType::kUint32 ? absl::StrCat(a->u) : GgufValueTypeName(a->type)));
    }
    f.alignment_ = static_cast<uint32_t>(a->u);
  }

  // A tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
  if (tensor_count > c.remaining() / 24) {
    return absl::DataLossError(absl::StrCat(src, ": truncated: ", tensor_count, " tensors declared but the file has ",
                                            c.remaining(), " bytes left"));
  }
  f.tensors_->reserve(tensor_count);
  for (uint64_t t = 0; t < tensor_count; ++t) {
    GgufTensorInfo info;
    QRAG_ASSIGN_OR_RETURN(absl::string_view name, c.ReadString(absl::StrCat("the name of tensor #", t)));
    info.name = std::string(name);
    const std::string what = absl::StrCat("the info of tensor '", info.name, "'");
    QRAG_ASSIGN_OR_RETURN(uint32_t n_dims, c.Read<uint32_t>(what));
    if (n_dims > kGgufMaxDims) {
      return absl::InvalidArgumentError(absl::StrCat(src, ": tensor '", info.name, "' has ", n_dims,
                                                     " dimensions (at most ", kGgufMaxDims, ")"));
    }
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      QRAG_ASSIGN_OR_RETURN(uint64_t dim, c.Read<uint64_t>(what));
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::InvalidArgumentError(
            absl::StrCat(src, ": tensor '", info.name, "': dimension ", d, " = ", dim, " is too large"));
      }
      info.dims.push_back(static_cast<int64_t>(dim));
      if (__builtin_mul_overflow(numel, static_cast<int64_t>(dim), &numel)) {
        return absl::InvalidArgumentError(
            absl::StrCat(src, ": tensor '", info.name, "': the product of its dimensions overflows"));
      }
    }
    info.numel = numel;
    QRAG_ASSIGN_OR_RETURN(info.raw_type, c.Read<uint32_t>(what));
    QRAG_ASSIGN_OR_RETURN(info.offset, c.Read<uint64_t>(what));
    info.type = quant::FindGgmlType(info.raw_type);
    if (info.type == nullptr) {
      return absl::UnimplementedError(
          absl::StrCat(src, ": tensor '", info.name, "' has unknown ggml type ", info.raw_type));
    }
    const int64_t row = info.dims.empty() ? 1 : info.dims[0];
    if (row % info.type->block_size != 0) {
      return absl::InvalidArgumentError(absl::StrCat(src, ": tensor '", info.name, "': row length ", row,
                                                     " is not a multiple of the ", info.type->name,
                                                     " block size ", info.type->block_size));
    }
    const uint64_t blocks = static_cast<uint64_t>(numel / info.type->block_size);
    if (__builtin_mul_overflow(blocks, static_cast<uint64_t>(info.type->type_size), &info.nbytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat(src, ": tensor '", info.name, "': its byte size overflows"));
    }
    if (info.offset % f.alignment_ != 0) {
      return absl::InvalidArgumentError(absl::StrCat(src, ": tensor '", info.name, "': offset ", info.offset,
                                                     " is not a multiple of the alignment ", f.alignment_));
    }
    if (!f.tensor_index_->emplace(info.name, f.tensors_->size()).second) {
      return absl::InvalidArgumentError(absl::StrCat(src, ": duplicate tensor name '", info.name, "'"));
    }
    f.tensors_->push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t end_of_infos = c.pos();
  const uint64_t pad = (f.alignment_ - end_of_infos % f.alignment_) % f.alignment_;
  f.data_offset_ = end_of_infos + pad;
  const uint64_t data_size = f.data_offset_ <= size ? size - f.data_offset_ : 0;
  for (GgufTensorInfo& info : *f.tensors_) {
    if (info.offset > data_size || info.nbytes > data_size - info.offset) {
      return absl::DataLossError(absl::StrCat(src, ": tensor '", info.name, "': data [", info.offset, ", +",
                                              info.nbytes, ") runs past the end of the file (data section of ",
                                              data_size, " bytes at offset ", f.data_offset_, ")"));
    }
    info.bytes = absl::Span<const uint8_t>(data + f.data_offset_ + info.offset, info.nbytes);
  }
  // No two tensors share bytes.
  std::vector<const GgufTensorInfo*> by_offset;
  by_offset.reserve(f.tensors_->size());
  for (const GgufTensorInfo& info : *f.tensors_) {
    if (info.nbytes > 0) by_offset.push_back(&info);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i - 1]->offset + by_offset[i - 1]->nbytes > by_offset[i]->offset) {
      return absl::InvalidArgumentError(absl::StrCat(src, ": the data of tensors '", by_offset[i - 1]->name,
                                                     "' and '", by_offset[i]->name, "' overlap"));
    }
  }
  return f;
}

const GgufValue* GgufFile::Find(absl::string_view key) const {
  auto it = metadata_index_->find(key);
  return it == metadata_index_->end() ? nullptr : &(*metadata_)[it->second].second;
}

const GgufTensorInfo* GgufFile::FindTensor(absl::string_view name) const {
  auto it = tensor_index_->find(name);
  return it == tensor_index_->end() ? nullptr : &(*tensors_)[it->second];
}

namespace {
absl::Status Missing(const std::string& source, absl::string_view key) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": missing metadata key '", key, "'"));
}
}  // namespace

absl::StatusOr<std::string> GgufFile::GetString(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(source_, key);
  if (v->type != GgufValueType::kString) return WrongType(source_, key, *v, "string");
  return std::string(v->str);
}

absl::StatusOr<uint64_t> GgufFile::GetUint(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(source_, key);
  if (!IsInteger(v->type)) return WrongType(source_, key, *v, "an integer");
  if (IsSigned(v->type)) {
    if (v->i < 0) {
      return absl::InvalidArgumentError(absl::StrCat(source_, ": key '", key, "' is negative (", v->i, ")"));
    }
    return static_cast<uint64_t>(v->i);
  }
  return v->u;
}

absl::StatusOr<int64_t> GgufFile::GetInt(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(source_, key);
  if (!IsInteger(v->type)) return WrongType(source_, key, *v, "an integer");
  if (IsSigned(v->type)) return v->i;
  if (v->u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": key '", key, "' is too large (", v->u, ")"));
  }
  return static_cast<int64_t>(v->u);
}

absl::StatusOr<double> GgufFile::GetFloat(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(source_, key);
  if (v->type == GgufValueType::kFloat32 || v->type == GgufValueType::kFloat64) return v->f;
  if (IsInteger(v->type)) return IsSigned(v->type) ? static_cast<double>(v->i) : static_cast<double>(v->u);
  return WrongType(source_, key, *v, "a number");
}

absl::StatusOr<bool> GgufFile::GetBool(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(source_, key);
  if (v->type != GgufValueType::kBool) return WrongType(source_, key, *v, "bool");
  return v->u != 0;
}

absl::StatusOr<const std::vector<absl::string_view>*> GgufFile::GetStringArray(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(source_, key);
  if (!v->is_array() || v->elem_type != GgufValueType::kString) {
    return WrongType(source_, key, *v, "array of string");
  }
  return &v->strings;
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(source_, key);
  if (!v->is_array() || !IsInteger(v->elem_type)) return WrongType(source_, key, *v, "array of integers");
  std::vector<int64_t> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) out[i] = v->IntAt(i);
  return out;
}

absl::StatusOr<std::vector<float>> GgufFile::GetFloatArray(absl::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(source_, key);
  if (!v->is_array() || ScalarSize(v->elem_type) == 0 || v->elem_type == GgufValueType::kBool) {
    return WrongType(source_, key, *v, "array of numbers");
  }
  std::vector<float> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) out[i] = static_cast<float>(v->FloatAt(i));
  return out;
}

absl::Status GgufFile::DequantizeInto(const GgufTensorInfo& info, float* dst) const {
  if (!info.type->dequantizable) {
    return absl::UnimplementedError(absl::StrCat(source_, ": tensor '", info.name, "' has type ",
                                                 info.type->name, ", which qrag cannot dequantize"));
  }
  absl::Status s = quant::DequantizeGgml(info.type->type, info.bytes.data(), info.bytes.size(), info.numel, dst);
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat(source_, ": tensor '", info.name, "': ", s.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> GgufFile::Dequantize(const GgufTensorInfo& info) const {
  if (!info.type->dequantizable) return DequantizeInto(info, nullptr);
  std::vector<float> out(static_cast<size_t>(info.numel));
  QRAG_RETURN_IF_ERROR(DequantizeInto(info, out.data()));
  return out;
}

bool LooksLikeGguf(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  uint8_t magic[4];
  const bool ok = std::fread(magic, 1, 4, f) == 4;
  std::fclose(f);
  return ok && LoadLe<uint32_t>(magic) == kGgufMagic;
}

}  // namespace qrag::model
