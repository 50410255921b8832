// Read-only memory mapping of a whole file (RAII). Model weights are mapped, not read, so a 5 GB checkpoint
// costs no copy until a tensor is converted.
//
// Thread safety: immutable after Open; safe to share between threads through std::shared_ptr.
#ifndef QRAG_SERVER_COMMON_MAPPED_FILE_H_
#define QRAG_SERVER_COMMON_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace qrag {

class MappedFile {
 public:
  // Maps `path`. Errors: NOT_FOUND (no such file), FAILED_PRECONDITION (a directory, unreadable),
  // INTERNAL (mmap failure). An empty file maps to size 0 with a null data pointer.
  static absl::StatusOr<std::shared_ptr<const MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

// Reads a whole (small) file into a string: configs, JSON indexes, tokenizer files.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace qrag

#endif  // QRAG_SERVER_COMMON_MAPPED_FILE_H_
