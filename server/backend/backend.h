// The op-level seam between the model (written once) and the machines that run it.
//
// A Backend owns device memory and runs ops on it. Pointers passed to ops are device pointers into
// buffers this backend allocated; host-side metadata (token ids, positions, block tables) is passed as
// host spans and moved by the backend as it needs. Ops are issued in order on the backend's one stream;
// Synchronize() waits for them. Activations between ops are fp32; only GEMM operands are quantized
// (see precision.h), so every format is emulated exactly by the CPU reference backend.
//
// Thread safety: a Backend is used from one thread at a time (the engine thread).
#ifndef QRAG_SERVER_BACKEND_BACKEND_H_
#define QRAG_SERVER_BACKEND_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "server/backend/precision.h"
#include "server/quant/w4.h"

namespace qrag::backend {

class Backend;

// Device memory owned by a backend; freed when the buffer goes out of scope.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Backend* owner, void* data, size_t bytes) : owner_(owner), data_(data), bytes_(bytes) {}
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { Reset(); }

  void Reset();
  void* data() const { return data_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }
  size_t bytes() const { return bytes_; }
  bool empty() const { return data_ == nullptr; }

 private:
  Backend* owner_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// A linear layer y = x W^T (+ b) in device memory. W is [n, k] (out, in), stored per `precision`:
// fp32 floats, bf16 uint16, fp8 E4M3 bytes, int8, or w4 packed 4-bit codes (quant/w4.h layout). fp8/int8
// carry one fp32 scale per output row, w4 one per vector of `vector_size` elements of a row (and one
// minimum per vector on w4's asymmetric grid).
struct Weight {
  Precision precision = Precision::kF32;
  int64_t n = 0;
  int64_t k = 0;
  int vector_size = 0;  // w4 only
  DeviceBuffer data;
  DeviceBuffer scales;  // [n] fp32 for fp8/int8, [n, ceil(k / vector_size)] for w4, empty otherwise
  DeviceBuffer mins;    // w4 on the asymmetric grid: [n, ceil(k / vector_size)] fp32; empty otherwise
  DeviceBuffer bias;    // [n] fp32 or empty
};

// Exact work of a GEMM, for the ops-per-watt metrics: 2*M*N*K multiply-adds counted as two ops.
struct GemmStats {
  Precision precision = Precision::kF32;
  int64_t ops = 0;
};

// Which of a head's dimensions RoPE rotates together (see model_config.h).
enum class RopePairing { kInterleaved, kRotateHalf };

// One layer's paged KV cache: `num_slots` = blocks x block_size rows of n_kv_heads*head_dim floats each,
// for keys and for values. A token at position p of a sequence lives in row
// block_table[p / block_size] * block_size + p % block_size.
struct KvLayer {
  float* k = nullptr;
  float* v = nullptr;
  int64_t num_slots = 0;
};

// A flattened batch of tokens from one or more sequences (prefill chunks and decode steps alike).
struct AttentionBatch {
  struct Sequence {
    absl::Span<const int32_t> block_table;  // physical block ids, in position order
  };
  absl::Span<const int32_t> positions;  // [tokens] position of each token in its sequence
  absl::Span<const int32_t> token_seq;  // [tokens] index into `sequences`
  absl::Span<const Sequence> sequences;
  int block_size = 16;
  int sliding_window = 0;  // 0: full causal attention
};

struct AttentionShape {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view name() const = 0;

  // Memory. Allocate returns zeroed memory; RESOURCE_EXHAUSTED when it does not fit.
  virtual absl::StatusOr<DeviceBuffer> Allocate(size_t bytes) = 0;
  virtual absl::Status CopyToDevice(const void* host_src, size_t bytes, void* device_dst) = 0;
  virtual absl::Status CopyToHost(const void* device_src, size_t bytes, void* host_dst) = 0;

  // Converts a host fp32 matrix [n, k] (+ optional bias [n]) into a Weight of `precision`, quantizing
  // per output channel for fp8/int8 (scale = row amax / qmax, amax 0 -> scale 1) and by quant::QuantizeW4
  // (32-element vectors, the backend's grid: CpuBackendOptions::w4) for w4.
  virtual absl::StatusOr<Weight> UploadWeight(const float* host, int64_t n, int64_t k, Precision precision,
                                              const float* host_bias) = 0;
  // Uploads an already quantized w4 weight (e.g. from a quantized checkpoint) as is. UNIMPLEMENTED on
  // backends without w4 GEMMs.
  virtual absl::StatusOr<Weight> UploadW4Weight(const quant::W4Matrix& weight, const float* host_bias) {
    return absl::UnimplementedError(absl::StrCat("backend ", std::string(name()), " has no w4 GEMM"));
  }

  // out[t, :] = table[tokens[t], :] for a fp32 table [vocab, dim]. Ids must be < vocab (checked by caller).
  virtual void Embed(const float* table, int dim, absl::Span<const int32_t> tokens, float* out) = 0;

  // out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight. In-place (out == x) is allowed.
  virtual void RmsNorm(const float* x, const float* weight, int rows, int dim, float eps, float* out) = 0;

  // y[m, n] = x[m, k] W^T (+ bias), with x quantized per token as W.precision requires.
  virtual GemmStats Gemm(const float* x, int m, const Weight& w, float* y) = 0;

  // Rotates q [tokens, n_heads*head_dim] and k [tokens, n_kv_heads*head_dim] in place by angle
  // positions[t] * inv_freq[i] for pair i (inv_freq: device, head_dim/2 floats).
  virtual void Rope(float* q, float* k, absl::Span<const int32_t> positions, const AttentionShape& shape,
                    const float* inv_freq, RopePairing pairing) = 0;

  // Stores each token's k and v rows [tokens, n_kv_heads*head_dim] into its cache slot.
  virtual void KvWrite(const float* k, const float* v, const AttentionBatch& batch,
                       const AttentionShape& shape, const KvLayer& cache) = 0;

  // Causal grouped-query attention of each token over its sequence's cached positions up to its own
  // (cache must already hold them, KvWrite first). q, out: [tokens, n_heads*head_dim].
  // Returns the tensor ops done (2 x multiply-adds of QK^T and PV).
  virtual int64_t Attention(const float* q, const KvLayer& cache, const AttentionBatch& batch,
                            const AttentionShape& shape, float* out) = 0;

  // out[i] = silu(gate[i]) * up[i] for i < n.
  virtual void SiluMul(const float* gate, const float* up, int64_t n, float* out) = 0;

  // x[i] += y[i] for i < n.
  virtual void Add(float* x, const float* y, int64_t n) = 0;

  // Encoder (BERT-style) ops.
  //
  // out[r, :] = (x[r, :] - mean) / sqrt(var + eps) * weight + bias, with the biased variance of the row
  // (torch.nn.LayerNorm). In-place (out == x) is allowed.
  virtual void LayerNorm(const float* x, const float* weight, const float* bias, int rows, int dim, float eps,
                         float* out) = 0;

  // The residual step x += y, then out = LayerNorm(x) as above (x keeps the sum; out may equal x). The
  // default runs Add then LayerNorm; a backend may fuse them into one pass over the rows.
  virtual void AddLayerNorm(float* x, const float* y, const float* weight, const float* bias, int rows, int dim,
                            float eps, float* out) {
    Add(x, y, static_cast<int64_t>(rows) * dim);
    LayerNorm(x, weight, bias, rows, dim, eps, out);
  }

  // out[i] = x[i] * 0.5 * (1 + erf(x[i] / sqrt(2))) for i < n: the exact GELU of BERT's "gelu" activation
  // (not the tanh approximation). In-place allowed.
  virtual void Gelu(const float* x, int64_t n, float* out) = 0;

  // Bidirectional (non-causal) multi-head attention within each sequence of a packed batch: sequence s
  // owns rows [seq_offsets[s], seq_offsets[s + 1]) of q, k, v and out (each [tokens, n_heads*head_dim],
  // n_kv_heads == n_heads); every token attends to every token of its own sequence and to no other, which
  // is what a padding mask does for a padded batch. softmax(q k^T / sqrt(head_dim)) v per head.
  // Returns the tensor ops done (2 x multiply-adds of QK^T and PV).
  virtual int64_t EncoderAttention(const float* q, const float* k, const float* v,
                                   absl::Span<const int32_t> seq_offsets, const AttentionShape& shape,
                                   float* out) = 0;

  // Waits for all issued ops; reports an asynchronous failure of any.
  virtual absl::Status Synchronize() = 0;

 protected:
  friend class DeviceBuffer;
  virtual void Free(void* data, size_t bytes) = 0;
};

}  // namespace qrag::backend

#endif  // QRAG_SERVER_BACKEND_BACKEND_H_
