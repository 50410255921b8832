// Loader for llama2.c checkpoints (karpathy/llama2.c): the legacy header-less export ("version 0") and the
// versioned exports of export.py (magic "ak42": version 1 = fp32, version 2 = Q8_0 group-quantized int8).
//
// File layouts (all little-endian):
//  - legacy: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative
//    vocab_size means an unshared classifier), then fp32 token_embedding, rms_att, wq, wk, wv, wo, rms_ffn,
//    w1, w2, w3, rms_final, the two legacy RoPE tables (seq_len x head_size/2 each, ignored), and wcls when
//    unshared.
//  - v1: uint32 magic 0x616b3432, int32 version, the 7 int32 params, uint8 shared_classifier, zero padding
//    to 256 bytes; fp32 norms (attention for all layers, ffn for all layers, final), token embedding, wq,
//    wk, wv, wo, w1, w2, w3 for all layers, and the classifier when unshared.
//  - v2: as v1 plus int32 group_size after the flag; fp32 norms, then for each matrix (token embedding,
//    wq.., w3.., classifier) int8 codes followed by one fp32 scale per group of group_size values.
// Every size is checked against the header; the file must be exactly as long as the header implies.
// llama2.c weights use interleaved RoPE pairs; w1/w3/w2 are the gate/up/down projections.
#ifndef QRAG_SERVER_MODEL_LLAMA2C_LOADER_H_
#define QRAG_SERVER_MODEL_LLAMA2C_LOADER_H_

#include <string>

#include "absl/status/statusor.h"
#include "server/model/host_tensor.h"

namespace qrag::model {

// Maps `path` and exposes its tensors under HF Llama names (host_tensor.h). fp32 tensors are zero-copy
// views of the mapping; v2 matrices are dequantized once into owned buffers.
absl::StatusOr<LoadedModel> LoadLlama2cCheckpoint(const std::string& path);

// True when the file starts like a llama2.c versioned export ("ak42" magic); legacy files have no magic.
bool HasLlama2cMagic(const std::string& path);

}  // namespace qrag::model

#endif  // QRAG_SERVER_MODEL_LLAMA2C_LOADER_H_
