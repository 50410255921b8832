// Quantized checkpoints: a Hugging Face directory (config.json + model.safetensors, as
// model/checkpoint_writer.h writes them) whose linear-layer weights are stored quantized, with the
// quantization described in the safetensors "__metadata__".
//
// Scheme w4 (w4.h). For each quantized weight W [n, k] named NAME (e.g. model.layers.0.self_attn.q_proj.weight):
//   NAME.w4_codes   dtype U8,  shape [n, ceil(k / 2)]   packed 4-bit codes (low nibble = even column)
//   NAME.w4_scales  dtype F32, shape [n, ceil(k / vector_size)]
//   NAME.w4_mins    dtype F32, shape [n, ceil(k / vector_size)]   (asymmetric grid only)
// and NAME itself is absent. Metadata key "qrag.quantization" holds a JSON object:
//   {"version": 1, "scheme": "w4", "format": "int4", "vector_size": 32, "grid": "asymmetric",
//    "tensors": {NAME: [n, k], ...}}
// with "clip": "octav" (or max, mse) on the symmetric grid. A file without "grid" (written before the
// asymmetric grid existed) is symmetric.
// Every other tensor (embeddings, norms, biases, the classifier lm_head) is stored in fp32. Quantized: the
// q/k/v/o projections and the gate/up/down projections. The classifier, tied or not, is quantized when
// loaded, to model::DefaultClassifierPrecision (int8 under --quant w4).
//
// Loading (model/hf_loader.cc calls AttachQuantizedTensors): each listed weight is validated, kept as a
// W4Matrix in LoadedModel::w4_weights (served as is by `--quant w4`), and also dequantized into an fp32
// tensor under NAME, so that every other precision runs on exactly the stored (dequantized) weights.
#ifndef QRAG_SERVER_MODEL_QUANTIZED_CHECKPOINT_H_
#define QRAG_SERVER_MODEL_QUANTIZED_CHECKPOINT_H_

#include <string>

#include "absl/status/status.h"
#include "server/model/host_tensor.h"
#include "server/model/safetensors.h"
#include "server/quant/w4.h"

namespace qrag::model {

inline constexpr char kQuantizationMetadataKey[] = "qrag.quantization";

struct QuantizedCheckpointOptions {
  quant::W4Options w4;
};

// True for the tensor names the writer quantizes.
bool IsQuantizedLinearName(const std::string& name);

// Writes `model` (any loaded checkpoint) as a w4 quantized checkpoint into the existing directory `dir`.
// Errors: those of the HF writer (INVALID_ARGUMENT for a model it cannot express), of QuantizeW4, and
// INTERNAL naming the file when writing fails.
absl::Status WriteQuantizedCheckpoint(const model::LoadedModel& model, const std::string& dir,
                                      const QuantizedCheckpointOptions& options);

// Reads the quantization metadata of `weights` (if any) into `model` as described above. Without the
// metadata key nothing happens. Errors, each INVALID_ARGUMENT naming the file: metadata that is not valid
// JSON or lacks / mistypes a field; an unknown scheme or version; a listed tensor whose codes or scales are
// missing, have the wrong dtype or a shape that does not match [n, k] and the vector size; invalid codes or
// scales (ValidateW4); a listed tensor that is also stored in fp32.
absl::Status AttachQuantizedTensors(const model::SafetensorsCheckpoint& weights, model::LoadedModel* model);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_QUANTIZED_CHECKPOINT_H_
