#include "server/model/quantized_checkpoint.h"

#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/common/status.h"
#include "server/model/checkpoint_writer.h"
#include "server/model/hf_loader.h"

namespace qrag::model {
namespace {

constexpr char kCodesSuffix[] = ".w4_codes";
constexpr char kScalesSuffix[] = ".w4_scales";
constexpr char kMinsSuffix[] = ".w4_mins";

std::string Bytes(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

// The tensor of `weights` called `name` with `dtype` and `shape`, or INVALID_ARGUMENT naming the file.
absl::StatusOr<model::SafetensorsCheckpoint::Entry> Expect(const model::SafetensorsCheckpoint& weights,
                                                           const std::string& source, const std::string& name,
                                                           const char* dtype, const std::vector<int64_t>& shape) {
  model::SafetensorsCheckpoint::Entry e = weights.Find(name);
  if (e.info == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": quantized tensor '", name, "' is missing"));
  }
  if (e.info->dtype != dtype || e.info->shape != shape) {
    std::string want, got;
    for (int64_t d : shape) absl::StrAppend(&want, want.empty() ? "" : ", ", d);
    for (int64_t d : e.info->shape) absl::StrAppend(&got, got.empty() ? "" : ", ", d);
    return absl::InvalidArgumentError(absl::StrCat(e.file->path(), ": tensor '", name, "' is ", e.info->dtype,
                                                   " [", got, "], expected ", dtype, " [", want, "]"));
  }
  return e;
}

}  // namespace

bool IsQuantizedLinearName(const std::string& name) {
  if (!absl::StartsWith(name, "model.layers.")) return false;
  for (const char* s : {".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight",
                        ".self_attn.o_proj.weight", ".mlp.gate_proj.weight", ".mlp.up_proj.weight",
                        ".mlp.down_proj.weight"}) {
    if (absl::EndsWith(name, s)) return true;
  }
  return false;
}

absl::Status WriteQuantizedCheckpoint(const model::LoadedModel& model, const std::string& dir,
                                      const QuantizedCheckpointOptions& options) {
  // The HF writer normalizes any source (llama2.c RoPE layout included) to HF names and layout; its fp32
  // file is then reread and rewritten with the linear weights quantized.
  QRAG_RETURN_IF_ERROR(model::WriteHfCheckpoint(model, dir, model::HfWriteOptions{}));
  const std::string path = dir + "/model.safetensors";
  QRAG_ASSIGN_OR_RETURN(model::SafetensorsCheckpoint hf, model::SafetensorsCheckpoint::OpenFile(path));
  model::SafetensorsWriter writer;
  nlohmann::ordered_json meta;
  meta["version"] = 1;
  meta["scheme"] = "w4";
  meta["format"] = "int4";
  meta["vector_size"] = options.w4.vector_size;
  meta["grid"] = quant::W4GridName(options.w4.grid);
  if (options.w4.grid == quant::W4Grid::kSymmetric) meta["clip"] = ClipMethodName(options.w4.clip);
  meta["tensors"] = nlohmann::ordered_json::object();
  for (const std::string& name : hf.Names()) {
    QRAG_ASSIGN_OR_RETURN(model::HostTensor t, hf.GetHostTensor(name));
    if (!IsQuantizedLinearName(name) || t.shape.size() != 2) {
      QRAG_RETURN_IF_ERROR(writer.AddHostTensor(name, t));
      continue;
    }
    const std::vector<float> w = t.ToFloatVector();
    QRAG_ASSIGN_OR_RETURN(quant::W4Matrix q, quant::QuantizeW4(w.data(), t.shape[0], t.shape[1], options.w4));
    QRAG_RETURN_IF_ERROR(writer.Add(name + kCodesSuffix, "U8", {q.n, q.row_bytes()},
                                    Bytes(q.codes.data(), q.codes.size())));
    QRAG_RETURN_IF_ERROR(writer.Add(name + kScalesSuffix, "F32", {q.n, q.vectors_per_row()},
                                    Bytes(q.scales.data(), q.scales.size() * sizeof(float))));
    if (!q.mins.empty()) {
      QRAG_RETURN_IF_ERROR(writer.Add(name + kMinsSuffix, "F32", {q.n, q.vectors_per_row()},
                                      Bytes(q.mins.data(), q.mins.size() * sizeof(float))));
    }
    meta["tensors"][name] = {q.n, q.k};
  }
  writer.SetMetadata("format", "pt");
  writer.SetMetadata(kQuantizationMetadataKey, meta.dump());
  // Write renames a temporary file over `path`; the mapping of the old file read above stays valid.
  return writer.Write(path);
}

absl::Status AttachQuantizedTensors(const model::SafetensorsCheckpoint& weights, model::LoadedModel* model) {
  for (const model::SafetensorsFile& file : weights.files()) {
    auto it = file.metadata().find(kQuantizationMetadataKey);
    if (it == file.metadata().end()) continue;
    const std::string& source = file.path();
    auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": metadata '", kQuantizationMetadataKey, "': ", what));
    };
    nlohmann::json meta = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
    if (meta.is_discarded() || !meta.is_object()) return bad("not a JSON object");
    if (!meta.contains("version") || !meta["version"].is_number_integer() || meta["version"] != 1) {
      return bad("'version' must be the integer 1");
    }
    if (!meta.contains("scheme") || meta["scheme"] != "w4") return bad("'scheme' must be \"w4\" (the only one)");
    if (!meta.contains("vector_size") || !meta["vector_size"].is_number_integer() || meta["vector_size"] < 1 ||
        meta["vector_size"] > 4096) {
      return bad("'vector_size' must be an integer in 1..4096");
    }
    if (!meta.contains("tensors") || !meta["tensors"].is_object()) return bad("'tensors' must be an object");
    // Files written before the asymmetric grid have no "grid": they are symmetric.
    quant::W4Grid grid = quant::W4Grid::kSymmetric;
    if (meta.contains("grid")) {
      absl::StatusOr<quant::W4Grid> g =
          meta["grid"].is_string() ? quant::ParseW4Grid(meta["grid"].get<std::string>())
                                   : absl::InvalidArgumentError("not a string");
      if (!g.ok()) return bad("'grid' must be \"asymmetric\" or \"symmetric\"");
      grid = *g;
    }
    const int vector_size = meta["vector_size"];
    for (const auto& [name, shape] : meta["tensors"].items()) {
      if (!shape.is_array() || shape.size() != 2 || !shape[0].is_number_integer() ||
          !shape[1].is_number_integer() || shape[0] < 1 || shape[1] < 1) {
        return bad(absl::StrCat("tensor '", name, "': shape must be [n, k] with positive integers"));
      }
      if (weights.Find(name).info != nullptr) {
        return bad(absl::StrCat("tensor '", name, "' is listed as quantized but is also stored unquantized"));
      }
      quant::W4Matrix q;
      q.n = shape[0];
      q.k = shape[1];
      q.vector_size = vector_size;
      QRAG_ASSIGN_OR_RETURN(auto codes, Expect(weights, source, name + kCodesSuffix, "U8", {q.n, q.row_bytes()}));
      QRAG_ASSIGN_OR_RETURN(auto scales,
                            Expect(weights, source, name + kScalesSuffix, "F32", {q.n, q.vectors_per_row()}));
      q.codes.assign(codes.info->bytes.begin(), codes.info->bytes.end());
      q.scales.resize(static_cast<size_t>(q.n * q.vectors_per_row()));
      std::memcpy(q.scales.data(), scales.info->bytes.data(), q.scales.size() * sizeof(float));
      if (grid == quant::W4Grid::kAsymmetric) {
        QRAG_ASSIGN_OR_RETURN(auto mins, Expect(weights, source, name + kMinsSuffix, "F32", {q.n, q.vectors_per_row()}));
        q.mins.resize(q.scales.size());
        std::memcpy(q.mins.data(), mins.info->bytes.data(), q.mins.size() * sizeof(float));
      }
      QRAG_RETURN_IF_ERROR(quant::ValidateW4(q, absl::StrCat(source, ": tensor '", name, "'")));
      // The fp32 view of the stored weights, for every other precision.
      auto values = std::make_shared<std::vector<float>>(static_cast<size_t>(q.n * q.k));
      quant::DequantizeW4Rows(q.view(), 0, q.n, values->data());
      model::HostTensor t;
      t.dtype = model::HostDType::kF32;
      t.shape = {q.n, q.k};
      t.data = reinterpret_cast<const uint8_t*>(values->data());
      t.owner = values;
      t.file = source;
      model->tensors.insert_or_assign(name, std::move(t));
      model->w4_weights.insert_or_assign(name, std::move(q));
    }
  }
  return absl::OkStatus();
}

}  // namespace qrag::model
