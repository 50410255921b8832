// Tensors as checkpoint loaders hand them over: a typed view into a mapped file (or an owned buffer),
// before any backend sees them.
#ifndef QRAG_SERVER_MODEL_HOST_TENSOR_H_
#define QRAG_SERVER_MODEL_HOST_TENSOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "server/model/model_config.h"
#include "server/quant/w4.h"

namespace qrag::model {

enum class HostDType { kF32, kF16, kBF16 };

const char* HostDTypeName(HostDType dtype);
size_t HostDTypeSize(HostDType dtype);

struct HostTensor {
  HostDType dtype = HostDType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;       // little-endian elements, row-major
  std::shared_ptr<const void> owner;   // keeps `data` alive (a MappedFile or an owned buffer)
  std::string file;                    // where it came from, for error messages

  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * HostDTypeSize(dtype); }
  // Widens every element to fp32 into dst[0, numel()). Exact for all three dtypes.
  void ToFloat(float* dst) const;
  std::vector<float> ToFloatVector() const;
};

// What a checkpoint loader produces: the config and the tensors under their Hugging Face Llama names
// ("model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.weight", "lm_head.weight", ...), whatever
// the file format. Linear weights are [out_features, in_features], as torch.nn.Linear.
struct LoadedModel {
  ModelConfig config;
  std::string source;  // the checkpoint path given by the user
  absl::flat_hash_map<std::string, HostTensor> tensors;
  // Linear weights stored pre-quantized by a w4 checkpoint (quant/quantized_checkpoint.h), under the name
  // of the weight they encode; `tensors` holds their dequantized fp32 values too.
  absl::flat_hash_map<std::string, quant::W4Matrix> w4_weights;

  // The tensor `name` with exactly `shape`; NOT_FOUND / INVALID_ARGUMENT naming the file otherwise.
  absl::StatusOr<const HostTensor*> Get(const std::string& name, const std::vector<int64_t>& shape) const;
  // Like Get, but returns nullptr (not an error) when the tensor is absent.
  absl::StatusOr<const HostTensor*> GetOptional(const std::string& name,
                                                const std::vector<int64_t>& shape) const;
};

// Loads any supported checkpoint: a llama2.c `.bin` file, a GGUF file (by its `.gguf` suffix or its magic;
// gguf_loader.h), or a Hugging Face directory (config.json + safetensors). Errors name the file and the problem.
absl::StatusOr<LoadedModel> LoadCheckpoint(const std::string& path);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_HOST_TENSOR_H_
