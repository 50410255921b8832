// Writers for the checkpoint formats qrag loads: llama2.c (legacy, v1 fp32, v2 Q8_0) and Hugging Face
// directories (config.json + safetensors, optionally sharded). They convert between the formats
// (e.g. llama2.c -> HF applies HF's RoPE row permutation) and make the test models of every format.
#ifndef QRAG_SERVER_MODEL_CHECKPOINT_WRITER_H_
#define QRAG_SERVER_MODEL_CHECKPOINT_WRITER_H_

#include <string>

#include "absl/status/status.h"
#include "server/model/host_tensor.h"

namespace qrag::model {

struct Llama2cWriteOptions {
  int version = 0;       // 0 = legacy header, 1 = "ak42" v1 fp32, 2 = "ak42" v2 Q8_0
  int group_size = 64;   // v2 only: values per int8 scale group
};

// Writes `model` (a Llama architecture with interleaved RoPE, as llama2.c expects; head_dim must equal
// dim / n_heads) to `path`. INVALID_ARGUMENT when the model cannot be expressed in the format.
absl::Status WriteLlama2cCheckpoint(const LoadedModel& model, const std::string& path,
                                    const Llama2cWriteOptions& options);

struct HfWriteOptions {
  HostDType dtype = HostDType::kF32;  // F32, F16 (round to nearest even) or BF16 (round to nearest even)
  int shards = 1;                     // > 1: model-0000i-of-0000n.safetensors + model.safetensors.index.json
};

// Writes config.json and the safetensors file(s) of `model` into the existing directory `dir`. A model
// with interleaved RoPE gets its q/k projection rows permuted into HF's rotate-half layout, exactly as
// transformers' convert_llama_weights_to_hf.py does. Tokenizer files are not written.
absl::Status WriteHfCheckpoint(const LoadedModel& model, const std::string& dir, const HfWriteOptions& options);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_CHECKPOINT_WRITER_H_
