#include "server/model/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status.h"
#include "server/model/json_util.h"

namespace qrag::model {
namespace {

using nlohmann::json;

struct DTypeBits {
  const char* name;
  int bits;
};

// Every dtype of the safetensors spec (Dtype enum of the reference implementation).
constexpr DTypeBits kDTypes[] = {
    {"BOOL", 8},     {"U8", 8},       {"I8", 8},       {"F8_E5M2", 8},  {"F8_E4M3", 8},
    {"F8_E8M0", 8},  {"I16", 16},     {"U16", 16},     {"F16", 16},     {"BF16", 16},
    {"I32", 32},     {"U32", 32},     {"F32", 32},     {"F64", 64},     {"I64", 64},
    {"U64", 64},     {"C64", 64},     {"F4", 4},       {"F6_E2M3", 6},  {"F6_E3M2", 6},
};

bool ParseHostDType(absl::string_view dtype, HostDType* out) {
  if (dtype == "F32") {
    *out = HostDType::kF32;
  } else if (dtype == "F16") {
    *out = HostDType::kF16;
  } else if (dtype == "BF16") {
    *out = HostDType::kBF16;
  } else {
    return false;
  }
  return true;
}

// A dtype string as the format writes them: non-empty, upper-case letters, digits and '_'.
bool IsDTypeIdentifier(absl::string_view s) {
  if (s.empty() || s.size() > 32) return false;
  for (char c : s) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// numel of `shape`, or false when the product does not fit an int64.
bool CheckedNumel(const std::vector<int64_t>& shape, int64_t* numel) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return false;
  }
  *numel = n;
  return true;
}

// The exact byte size of `numel` elements of `bits` each; false on overflow or a partial byte.
bool CheckedByteSize(int64_t numel, int bits, uint64_t* bytes) {
  uint64_t total_bits;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(bits), &total_bits)) {
    return false;
  }
  if (total_bits % 8 != 0) return false;
  *bytes = total_bits / 8;
  return true;
}

// A non-negative JSON integer as u64; false for anything else (negative, float, non-number).
bool AsU64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

std::string JsonValueForMessage(const json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 40) + "...";
  return s;
}

class HeaderErrors {
 public:
  explicit HeaderErrors(const std::string& path) : path_(path) {}
  absl::Status File(absl::string_view problem) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": invalid safetensors file: ", problem));
  }
  absl::Status Tensor(absl::string_view name, absl::string_view problem) const {
    return File(absl::StrCat("tensor '", name, "': ", problem));
  }

 private:
  const std::string& path_;
};

absl::Status ParseEntry(const HeaderErrors& err, const std::string& name, const json& v,
                        uint64_t data_size, SafetensorsTensorInfo* out) {
  if (!v.is_object()) {
    return err.Tensor(name, absl::StrCat("entry is ", JsonTypeName(v), ", expected an object"));
  }
  out->name = name;

  auto dtype_it = v.find("dtype");
  if (dtype_it == v.end()) return err.Tensor(name, "missing \"dtype\"");
  if (!dtype_it->is_string()) {
    return err.Tensor(name, absl::StrCat("\"dtype\" is ", JsonTypeName(*dtype_it), ", expected a string"));
  }
  out->dtype = dtype_it->get<std::string>();
  if (!IsDTypeIdentifier(out->dtype)) {
    return err.Tensor(name, absl::StrCat("malformed dtype \"", out->dtype.substr(0, 40), "\""));
  }

  auto shape_it = v.find("shape");
  if (shape_it == v.end()) return err.Tensor(name, "missing \"shape\"");
  if (!shape_it->is_array()) {
    return err.Tensor(name, absl::StrCat("\"shape\" is ", JsonTypeName(*shape_it), ", expected an array"));
  }
  out->shape.clear();
  for (const json& d : *shape_it) {
    uint64_t dim;
    if (!AsU64(d, &dim) || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return err.Tensor(name, absl::StrCat("shape dim ", JsonValueForMessage(d),
                                           " is not a non-negative integer"));
    }
    out->shape.push_back(static_cast<int64_t>(dim));
  }
  int64_t numel;
  if (!CheckedNumel(out->shape, &numel)) {
    return err.Tensor(name, absl::StrCat("shape ", ShapeString(out->shape), " overflows int64"));
  }

  auto off_it = v.find("data_offsets");
  if (off_it == v.end()) return err.Tensor(name, "missing \"data_offsets\"");
  if (!off_it->is_array() || off_it->size() != 2 || !AsU64((*off_it)[0], &out->begin) ||
      !AsU64((*off_it)[1], &out->end)) {
    return err.Tensor(name, absl::StrCat("\"data_offsets\" is ", JsonValueForMessage(*off_it),
                                         ", expected [begin, end] of non-negative integers"));
  }
  if (out->end < out->begin) {
    return err.Tensor(name, absl::StrCat("data_offsets end ", out->end, " < begin ", out->begin));
  }
  if (out->end > data_size) {
    return err.Tensor(name, absl::StrCat("data_offsets [", out->begin, ", ", out->end,
                                         ") out of the data area (", data_size, " bytes)"));
  }

  const int bits = SafetensorsDTypeBits(out->dtype);
  if (bits > 0) {
    uint64_t expected;
    if (!CheckedByteSize(numel, bits, &expected)) {
      return err.Tensor(name, absl::StrCat("shape ", ShapeString(out->shape), " of ", out->dtype,
                                           " is not a whole number of bytes"));
    }
    if (expected != out->end - out->begin) {
      return err.Tensor(name, absl::StrCat("byte size ", out->end - out->begin, " != numel ", numel,
                                           " x ", out->dtype, " size (", bits, " bits) = ", expected));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseMetadata(const HeaderErrors& err, const json& v,
                           std::map<std::string, std::string>* out) {
  if (v.is_null()) return absl::OkStatus();
  if (!v.is_object()) {
    return err.File(absl::StrCat("\"__metadata__\" is ", JsonTypeName(v), ", expected an object"));
  }
  for (const auto& [key, value] : v.items()) {
    if (!value.is_string()) {
      return err.File(absl::StrCat("\"__metadata__\" entry '", key.substr(0, 40), "' is ",
                                   JsonTypeName(value), ", expected a string"));
    }
    (*out)[key] = value.get<std::string>();
  }
  return absl::OkStatus();
}

// Shard names are plain relative paths inside the checkpoint directory.
bool IsSafeRelativePath(const std::string& name) {
  if (name.empty()) return false;
  std::filesystem::path p(name);
  if (p.is_absolute()) return false;
  for (const auto& part : p) {
    if (part == "..") return false;
  }
  return true;
}

}  // namespace

int SafetensorsDTypeBits(absl::string_view dtype) {
  for (const DTypeBits& d : kDTypes) {
    if (dtype == d.name) return d.bits;
  }
  return 0;
}

const char* SafetensorsDTypeName(HostDType dtype) {
  switch (dtype) {
    case HostDType::kF32: return "F32";
    case HostDType::kF16: return "F16";
    case HostDType::kBF16: return "BF16";
  }
  return "?";
}

int64_t SafetensorsTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ------------------------------------------------------------------------------------------------
// SafetensorsFile

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  HeaderErrors err(path);
  QRAG_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> mapped, MappedFile::Open(path));
  const uint64_t file_size = mapped->size();
  if (file_size < 8) {
    return err.File(absl::StrCat("file is ", file_size,
                                 " bytes, shorter than the 8-byte header length field (truncated?)"));
  }
  const uint8_t* base = mapped->data();
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len > kSafetensorsMaxHeaderBytes) {
    return err.File(absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                 kSafetensorsMaxHeaderBytes, " bytes (not a safetensors file?)"));
  }
  if (header_len > file_size - 8) {
    return err.File(absl::StrCat("header length ", header_len, " is larger than the ", file_size - 8,
                                 " bytes after the length field (truncated?)"));
  }
  if (header_len < 2) {
    return err.File(absl::StrCat("header length ", header_len, " is too small for a JSON object"));
  }
  const absl::string_view header_text(reinterpret_cast<const char*>(base + 8), header_len);
  absl::StatusOr<json> header = ParseJson(header_text, "header");
  if (!header.ok()) return err.File(header.status().message());
  if (!header->is_object()) {
    return err.File(absl::StrCat("header is ", JsonTypeName(*header), ", expected a JSON object"));
  }

  SafetensorsFile f;
  f.path_ = path;
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;
  for (const auto& [key, value] : header->items()) {
    if (key == "__metadata__") {
      QRAG_RETURN_IF_ERROR(ParseMetadata(err, value, &f.metadata_));
      continue;
    }
    SafetensorsTensorInfo info;
    QRAG_RETURN_IF_ERROR(ParseEntry(err, key, value, data_size, &info));
    info.bytes = absl::MakeConstSpan(base + data_start + info.begin, info.end - info.begin);
    f.tensors_.push_back(std::move(info));
  }

  // Overlap: sort the byte ranges; a non-empty range must start at or after the end of every earlier one.
  std::vector<const SafetensorsTensorInfo*> by_offset;
  by_offset.reserve(f.tensors_.size());
  for (const auto& t : f.tensors_) {
    if (t.end > t.begin) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  const SafetensorsTensorInfo* furthest = nullptr;
  for (const auto* t : by_offset) {
    if (furthest != nullptr && t->begin < furthest->end) {
      return err.File(absl::StrCat("tensors '", furthest->name, "' [", furthest->begin, ", ",
                                   furthest->end, ") and '", t->name, "' [", t->begin, ", ", t->end,
                                   ") overlap"));
    }
    if (furthest == nullptr || t->end > furthest->end) furthest = t;
  }

  std::sort(f.tensors_.begin(), f.tensors_.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_[f.tensors_[i].name] = i;
  f.file_ = std::move(mapped);
  return f;
}

const SafetensorsTensorInfo* SafetensorsFile::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<HostTensor> SafetensorsFile::ToHostTensor(const SafetensorsTensorInfo& info) const {
  HostDType dtype;
  if (!ParseHostDType(info.dtype, &dtype)) {
    return absl::UnimplementedError(absl::StrCat(path_, ": tensor '", info.name, "' has dtype ", info.dtype,
                                                 ", which is not supported (supported: F32, F16, BF16)"));
  }
  HostTensor t;
  t.dtype = dtype;
  t.shape = info.shape;
  t.data = info.bytes.data();
  t.owner = file_;
  t.file = path_;
  return t;
}

absl::StatusOr<HostTensor> SafetensorsFile::GetHostTensor(absl::string_view name) const {
  const SafetensorsTensorInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor named '", name, "' (file has ",
                                            tensors_.size(), " tensors)"));
  }
  return ToHostTensor(*info);
}

// ------------------------------------------------------------------------------------------------
// SafetensorsCheckpoint

absl::StatusOr<SafetensorsCheckpoint> SafetensorsCheckpoint::OpenFile(const std::string& path) {
  QRAG_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path));
  SafetensorsCheckpoint c;
  c.source_ = path;
  c.files_ = std::make_shared<std::vector<SafetensorsFile>>();
  c.files_->push_back(std::move(file));
  QRAG_RETURN_IF_ERROR(c.BuildEntries(path));
  return c;
}

absl::StatusOr<SafetensorsCheckpoint> SafetensorsCheckpoint::OpenIndex(const std::string& index_path) {
  auto bad = [&](absl::string_view problem) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": invalid safetensors index: ", problem));
  };
  QRAG_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
  QRAG_ASSIGN_OR_RETURN(json index, ParseJson(text, index_path));
  if (!index.is_object()) return bad(absl::StrCat("top level is ", JsonTypeName(index), ", expected an object"));
  auto map_it = index.find("weight_map");
  if (map_it == index.end()) return bad("missing \"weight_map\"");
  if (!map_it->is_object()) {
    return bad(absl::StrCat("\"weight_map\" is ", JsonTypeName(*map_it), ", expected an object"));
  }

  // shard file name -> tensors weight_map assigns to it.
  std::map<std::string, std::vector<std::string>> shards;
  for (const auto& [tensor, shard] : map_it->items()) {
    if (!shard.is_string()) {
      return bad(absl::StrCat("\"weight_map\" entry '", tensor, "' is ", JsonTypeName(shard),
                              ", expected a shard file name"));
    }
    const std::string shard_name = shard.get<std::string>();
    if (!IsSafeRelativePath(shard_name)) {
      return bad(absl::StrCat("shard name '", shard_name, "' of tensor '", tensor,
                              "' must be a relative path without '..'"));
    }
    shards[shard_name].push_back(tensor);
  }
  if (shards.empty()) return bad("\"weight_map\" is empty");

  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
  SafetensorsCheckpoint c;
  c.source_ = index_path;
  c.files_ = std::make_shared<std::vector<SafetensorsFile>>();
  for (const auto& [shard_name, tensors] : shards) {
    const std::string shard_path = (dir / shard_name).string();
    std::error_code ec;
    if (!std::filesystem::exists(shard_path, ec)) {
      return absl::NotFoundError(absl::StrCat(index_path, ": shard '", shard_name, "' (", tensors.size(),
                                              " tensors, e.g. '", tensors.front(), "') not found at ",
                                              shard_path));
    }
    QRAG_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(shard_path));
    for (const std::string& tensor : tensors) {
      if (file.Find(tensor) == nullptr) {
        return absl::NotFoundError(absl::StrCat(index_path, ": tensor '", tensor, "' is mapped to shard '",
                                                shard_name, "', but ", shard_path, " has no such tensor"));
      }
    }
    c.files_->push_back(std::move(file));
  }
  QRAG_RETURN_IF_ERROR(c.BuildEntries(index_path));
  return c;
}

absl::Status SafetensorsCheckpoint::BuildEntries(const std::string& source) {
  for (const SafetensorsFile& file : *files_) {
    for (const SafetensorsTensorInfo& info : file.tensors()) {
      auto [it, inserted] = entries_.try_emplace(info.name, Entry{&file, &info});
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": tensor '", info.name, "' appears in both ",
                                                       it->second.file->path(), " and ", file.path()));
      }
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> SafetensorsCheckpoint::Names() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const auto& [name, unused] : entries_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

SafetensorsCheckpoint::Entry SafetensorsCheckpoint::Find(absl::string_view name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? Entry{nullptr, nullptr} : it->second;
}

absl::StatusOr<HostTensor> SafetensorsCheckpoint::GetHostTensor(absl::string_view name) const {
  Entry e = Find(name);
  if (e.file == nullptr) {
    return absl::NotFoundError(absl::StrCat(source_, ": no tensor named '", name, "' (checkpoint has ",
                                            entries_.size(), " tensors)"));
  }
  return e.file->ToHostTensor(*e.info);
}

// ------------------------------------------------------------------------------------------------
// SafetensorsWriter

absl::Status SafetensorsWriter::AddView(const std::string& name, const std::string& dtype,
                                        std::vector<int64_t> shape, const uint8_t* data, size_t size,
                                        std::shared_ptr<const void> owner) {
  auto bad = [&](absl::string_view problem) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors writer: tensor '", name, "': ", problem));
  };
  if (name.empty()) return bad("empty name");
  if (name == "__metadata__") return bad("the name is reserved for the metadata");
  if (!names_.insert(name).second) return bad("added twice");
  auto undo = [&](absl::Status s) {
    names_.erase(name);
    return s;
  };
  if (!IsDTypeIdentifier(dtype)) return undo(bad(absl::StrCat("malformed dtype \"", dtype, "\"")));
  int64_t numel;
  if (!CheckedNumel(shape, &numel)) return undo(bad(absl::StrCat("invalid shape ", ShapeString(shape))));
  if (int bits = SafetensorsDTypeBits(dtype); bits > 0) {
    uint64_t expected;
    if (!CheckedByteSize(numel, bits, &expected)) {
      return undo(bad(absl::StrCat("shape ", ShapeString(shape), " of ", dtype,
                                   " is not a whole number of bytes")));
    }
    if (expected != size) {
      return undo(bad(absl::StrCat(size, " bytes given, shape ", ShapeString(shape), " of ", dtype,
                                   " needs ", expected)));
    }
  }
  tensors_.push_back(Pending{name, dtype, std::move(shape), data, size, std::move(owner)});
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Add(const std::string& name, const std::string& dtype,
                                    std::vector<int64_t> shape, std::string bytes) {
  auto owned = std::make_shared<const std::string>(std::move(bytes));
  const uint8_t* data = reinterpret_cast<const uint8_t*>(owned->data());
  const size_t size = owned->size();
  return AddView(name, dtype, std::move(shape), data, size, std::move(owned));
}

absl::Status SafetensorsWriter::AddHostTensor(const std::string& name, const HostTensor& tensor) {
  int64_t numel;
  if (!CheckedNumel(tensor.shape, &numel)) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors writer: tensor '", name,
                                                   "': invalid shape ", ShapeString(tensor.shape)));
  }
  return AddView(name, SafetensorsDTypeName(tensor.dtype), tensor.shape, tensor.data,
                 static_cast<size_t>(numel) * HostDTypeSize(tensor.dtype), tensor.owner);
}

void SafetensorsWriter::SetMetadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

std::string SafetensorsWriter::Header(std::vector<const Pending*>* order) const {
  order->clear();
  for (const Pending& p : tensors_) order->push_back(&p);
  auto element_bits = [](const Pending* p) { return SafetensorsDTypeBits(p->dtype); };
  std::sort(order->begin(), order->end(), [&](const Pending* a, const Pending* b) {
    if (element_bits(a) != element_bits(b)) return element_bits(a) > element_bits(b);
    return a->name < b->name;
  });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const Pending* p : *order) {
    header[p->name] = {{"dtype", p->dtype},
                       {"shape", p->shape},
                       {"data_offsets", {offset, offset + p->size}}};
    offset += p->size;
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  return text;
}

std::string SafetensorsWriter::Serialize() const {
  std::vector<const Pending*> order;
  std::string header = Header(&order);
  std::string out;
  size_t total = 8 + header.size();
  for (const Pending* p : order) total += p->size;
  out.reserve(total);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += header;
  for (const Pending* p : order) out.append(reinterpret_cast<const char*>(p->data), p->size);
  return out;
}

absl::Status SafetensorsWriter::Write(const std::string& path) const {
  std::vector<const Pending*> order;
  const std::string header = Header(&order);
  const std::string tmp = path + ".tmp";
  auto io_error = [&](const char* what) {
    return absl::InternalError(
        absl::StrCat(path, ": cannot write safetensors file (", what, " ", tmp, "): ", std::strerror(errno)));
  };
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return io_error("open");
  bool ok = true;
  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((n >> (8 * i)) & 0xff);
  ok = ok && std::fwrite(len, 1, 8, f) == 8;
  ok = ok && std::fwrite(header.data(), 1, header.size(), f) == header.size();
  for (const Pending* p : order) {
    if (!ok) break;
    if (p->size > 0) ok = std::fwrite(p->data, 1, p->size, f) == p->size;
  }
  if (!ok) {
    absl::Status s = io_error("write");
    std::fclose(f);
    std::remove(tmp.c_str());
    return s;
  }
  if (std::fclose(f) != 0) {
    absl::Status s = io_error("close");
    std::remove(tmp.c_str());
    return s;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = io_error("rename");
    std::remove(tmp.c_str());
    return s;
  }
  return absl::OkStatus();
}

}  // namespace qrag::model
