// Building GGUF files byte by byte in tests (gguf.h describes the layout), so that each test can break exactly
// one thing, or write a small model.
#ifndef QRAG_TESTS_MODEL_GGUF_BUILDER_H_
#define QRAG_TESTS_MODEL_GGUF_BUILDER_H_

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "server/model/gguf.h"

namespace qrag::testing {

inline std::string U32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
inline std::string U64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
inline std::string Str(const std::string& s) { return U64(s.size()) + s; }

// A GGUF file assembled from raw parts.
struct Builder {
  uint32_t magic = model::kGgufMagic;
  uint32_t version = 3;
  uint64_t n_kv = 0;
  uint64_t n_tensors = 0;
  std::string kv;
  std::string infos;
  std::string data;
  uint32_t alignment = 32;
  std::optional<uint64_t> kv_count_override;
  std::optional<uint64_t> tensor_count_override;

  Builder& Kv(const std::string& key, uint32_t type, const std::string& value) {
    kv += Str(key) + U32(type) + value;
    ++n_kv;
    return *this;
  }
  Builder& Tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    infos += Str(name) + U32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) infos += U64(d);
    infos += U32(type) + U64(offset);
    ++n_tensors;
    return *this;
  }
  std::string Build() const {
    std::string f = U32(magic) + U32(version) + U64(tensor_count_override.value_or(n_tensors)) +
                    U64(kv_count_override.value_or(n_kv)) + kv + infos;
    while (f.size() % alignment != 0) f.push_back('\0');
    return f + data;
  }

  // Typed metadata helpers.
  Builder& KvString(const std::string& key, const std::string& v) { return Kv(key, 8, Str(v)); }
  Builder& KvU32(const std::string& key, uint32_t v) { return Kv(key, 4, U32(v)); }
  Builder& KvF32(const std::string& key, float v) {
    std::string b(4, '\0');
    std::memcpy(b.data(), &v, 4);
    return Kv(key, 6, b);
  }
  Builder& KvBool(const std::string& key, bool v) { return Kv(key, 7, std::string(1, v ? '\1' : '\0')); }
  Builder& KvStrings(const std::string& key, const std::vector<std::string>& v) {
    std::string b = U32(8) + U64(v.size());
    for (const std::string& x : v) b += Str(x);
    return Kv(key, 9, b);
  }
  Builder& KvI32s(const std::string& key, const std::vector<int32_t>& v) {
    std::string b = U32(5) + U64(v.size());
    for (int32_t x : v) b += U32(static_cast<uint32_t>(x));
    return Kv(key, 9, b);
  }
  Builder& KvF32s(const std::string& key, const std::vector<float>& v) {
    std::string b = U32(6) + U64(v.size());
    for (float x : v) {
      uint32_t u;
      std::memcpy(&u, &x, 4);
      b += U32(u);
    }
    return Kv(key, 9, b);
  }
  // Appends an F32 tensor with `values` (row-major; dims innermost first) at the next aligned offset.
  Builder& TensorF32(const std::string& name, std::vector<uint64_t> dims, const std::vector<float>& values) {
    while (data.size() % alignment != 0) data.push_back('\0');
    const uint64_t offset = data.size();
    data.append(reinterpret_cast<const char*>(values.data()), values.size() * 4);
    return Tensor(name, std::move(dims), 0, offset);
  }
};

}  // namespace qrag::testing

#endif  // QRAG_TESTS_MODEL_GGUF_BUILDER_H_
