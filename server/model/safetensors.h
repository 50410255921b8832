// Reading and writing the safetensors format (https://github.com/huggingface/safetensors, "Format"):
//
//   [8 bytes: N, little-endian u64][N bytes: JSON header][data area]
//
// The header is a JSON object mapping each tensor name to {"dtype": "F32", "shape": [..],
// "data_offsets": [begin, end]} (offsets relative to the start of the data area), plus an optional
// "__metadata__" object of string -> string. Sharded checkpoints add `model.safetensors.index.json`:
// {"metadata": {...}, "weight_map": {tensor name: shard file name}}.
//
// Everything a file can get wrong is an absl::Status naming the file and the problem; nothing in a file
// can make the reader crash or read outside the mapping.
#ifndef QRAG_SERVER_MODEL_SAFETENSORS_H_
#define QRAG_SERVER_MODEL_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/common/mapped_file.h"
#include "server/model/host_tensor.h"

namespace qrag::model {

// The reference implementation's limit on the JSON header (safetensors MAX_HEADER_SIZE).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// Bits per element of a safetensors dtype string ("F32" -> 32, "F8_E4M3" -> 8, "F4" -> 4), or 0 for a
// dtype this code does not know.
int SafetensorsDTypeBits(absl::string_view dtype);

// The safetensors dtype string of a HostDType: "F32", "F16", "BF16".
const char* SafetensorsDTypeName(HostDType dtype);

// One tensor of a safetensors file, as its header describes it.
struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype;            // as written in the file: "F32", "BF16", "I64", "F8_E4M3", ...
  std::vector<int64_t> shape;   // every dim >= 0; {} is a scalar
  uint64_t begin = 0;           // data_offsets, relative to the data area
  uint64_t end = 0;
  // The tensor's bytes inside the mapping (little-endian, row-major). No alignment is guaranteed: read
  // elements with memcpy. Valid while the SafetensorsFile (or any copy of it) is alive.
  absl::Span<const uint8_t> bytes;

  int64_t numel() const;
};

// A memory-mapped, fully validated safetensors file. Copies share the mapping; immutable and thread-safe
// after Open. Gaps between tensors and bytes after the last one are allowed (only overlaps are errors).
class SafetensorsFile {
 public:
  // Maps and validates `path`. Errors (each naming the file and the problem):
  //  - NOT_FOUND / FAILED_PRECONDITION / INTERNAL when the file cannot be opened or mapped;
  //  - INVALID_ARGUMENT for: a file shorter than 8 bytes; a header length beyond the file or above
  //    kSafetensorsMaxHeaderBytes; a header that is not JSON or not an object; an entry that is not an
  //    object or lacks dtype / shape / data_offsets, or has them with the wrong JSON type; negative,
  //    non-integer or overflowing dims; data_offsets that are not two integers with begin <= end <= the
  //    data-area size; a byte size that is not numel x the dtype's size (known dtypes); two tensors whose
  //    bytes overlap; a "__metadata__" that is not an object of strings.
  // Dtypes this code does not know are listed (their byte size is then not checked); dtypes HostTensor
  // cannot hold (I64, F8_E4M3, ...) are listed and rejected only when converted (ToHostTensor).
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);

  const std::string& path() const { return path_; }
  // All tensors, sorted by name.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  // The "__metadata__" map (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The tensor `name`, or nullptr.
  const SafetensorsTensorInfo* Find(absl::string_view name) const;

  // A zero-copy HostTensor view of `info` (which must come from this file) for F32 / F16 / BF16; its
  // `owner` keeps the mapping alive and its `file` is path(). UNIMPLEMENTED naming the tensor, the file
  // and the dtype otherwise.
  absl::StatusOr<HostTensor> ToHostTensor(const SafetensorsTensorInfo& info) const;
  // ToHostTensor of the tensor `name`; NOT_FOUND naming the file when absent.
  absl::StatusOr<HostTensor> GetHostTensor(absl::string_view name) const;

 private:
  SafetensorsFile() = default;

  std::string path_;
  std::shared_ptr<const MappedFile> file_;
  std::vector<SafetensorsTensorInfo> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// The tensors of a checkpoint stored as one safetensors file or as the shards of an index, seen as one
// name -> tensor table. Cheap to copy; immutable and thread-safe after opening.
class SafetensorsCheckpoint {
 public:
  struct Entry {
    const SafetensorsFile* file;
    const SafetensorsTensorInfo* info;
  };

  // One file: SafetensorsFile::Open(path).
  static absl::StatusOr<SafetensorsCheckpoint> OpenFile(const std::string& path);
  // `index_path` is a model.safetensors.index.json; shard names in its weight_map are resolved in the
  // index's directory. Errors: the index's own read/JSON errors; INVALID_ARGUMENT (naming the index) when
  // weight_map is missing or not an object of strings, or a shard name is absolute or contains "..";
  // NOT_FOUND naming the index and the shard when a shard file is missing; any shard's Open error;
  // NOT_FOUND naming the tensor, the shard and the index when a weight_map tensor is not in its shard;
  // INVALID_ARGUMENT when one tensor name appears in two shards. Tensors of a shard that weight_map does
  // not name are still included.
  static absl::StatusOr<SafetensorsCheckpoint> OpenIndex(const std::string& index_path);

  // The files, in the order opened (shards in sorted file-name order).
  const std::vector<SafetensorsFile>& files() const { return *files_; }
  // Every tensor name, sorted.
  std::vector<std::string> Names() const;
  size_t size() const { return entries_.size(); }
  // The tensor `name` and its file, or nullopt-like {nullptr, nullptr}.
  Entry Find(absl::string_view name) const;
  // SafetensorsFile::ToHostTensor of `name`; NOT_FOUND naming the checkpoint when absent.
  absl::StatusOr<HostTensor> GetHostTensor(absl::string_view name) const;

 private:
  SafetensorsCheckpoint() = default;
  absl::Status BuildEntries(const std::string& source);

  std::string source_;  // the file or index path, for messages
  // Behind a shared_ptr so that the Entry pointers into it survive copies and moves of the checkpoint.
  std::shared_ptr<std::vector<SafetensorsFile>> files_;
  absl::flat_hash_map<std::string, Entry> entries_;
};

// Builds a safetensors file. Tensors are laid out largest element size first, then by name (as the
// reference writer does), so that every tensor of a dtype with elements of 8 bytes or fewer is aligned to
// its element size. The header is padded with spaces to a multiple of 8 bytes.
//
// Not thread-safe. Bytes are not copied by AddHostTensor (the tensor's owner is kept alive instead).
class SafetensorsWriter {
 public:
  // Adds a tensor whose little-endian row-major bytes are `bytes` (moved in, not copied). INVALID_ARGUMENT
  // for an empty name, "__metadata__", a duplicate name, a negative dim, a dtype that is not an
  // upper-case identifier, or a byte size that is not numel x the dtype's size (for known dtypes).
  absl::Status Add(const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
                   std::string bytes);
  // Adds `tensor` under `name` without copying its bytes (kept alive through tensor.owner).
  absl::Status AddHostTensor(const std::string& name, const HostTensor& tensor);
  // Sets a "__metadata__" entry.
  void SetMetadata(const std::string& key, const std::string& value);

  // The whole file in memory.
  std::string Serialize() const;
  // Writes the file to `path` (via `path`.tmp and a rename, so readers never see half a file).
  // INTERNAL naming the path when writing fails.
  absl::Status Write(const std::string& path) const;

 private:
  absl::Status AddView(const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
                       const uint8_t* data, size_t size, std::shared_ptr<const void> owner);

  struct Pending {
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
    const uint8_t* data;
    size_t size;
    std::shared_ptr<const void> owner;
  };
  // The header JSON (padded) and the tensors in file order.
  std::string Header(std::vector<const Pending*>* order) const;

  std::vector<Pending> tensors_;
  absl::flat_hash_set<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_SAFETENSORS_H_
