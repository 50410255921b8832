// The CUDA backend: the Backend interface (server/backend/backend.h) on one NVIDIA GPU, one stream.
//
// Semantics are the CPU reference's (server/backend/cpu/): GEMM operands are quantized per token with the
// formulas of server/quant/row_quant.h, weights per output channel at upload, and the epilogue is
// y = fma(acc, s_x * s_w, bias) (kernels/gemm_epilogue.cuh), so GEMMs on exactly representable inputs
// are bit-identical to the CPU's. GEMMs run through cuBLASLt plans (kernels/gemm_plan.h), cached per shape
// and autotuned once per shape.
//
// Weight layout (private to this backend): fp32 weights are [n, k]; bf16/fp8/int8 weights are stored
// [round_up(n, 16), round_up(k, 16)] with zero padding, because cuBLASLt's tensor-core kernels need k and n
// multiples of 16 (zeros leave every sum unchanged). Scales and bias stay [n].
//
// Errors: ops that return void record the first failure (a CUDA error, an invalid block table); it is
// returned by Synchronize() from then on (a sticky error: the backend is unusable afterwards, as the CUDA
// context is after most device faults). Thread safety: one thread at a time (backend.h).
#ifndef QRAG_SERVER_BACKEND_CUDA_CUDA_BACKEND_H_
#define QRAG_SERVER_BACKEND_CUDA_CUDA_BACKEND_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda_handles.h"
#include "kernels/gemm_plan.h"
#include "kernels/paged_batch.h"
#include "server/backend/backend.h"
#include "server/backend/cuda/cuda_device.h"

namespace qrag::backend {

// The precisions CudaBackend::UploadWeight serves; the others (w4) are UNIMPLEMENTED naming --device cpu.
inline constexpr Precision kCudaPrecisions[] = {Precision::kF32, Precision::kBF16, Precision::kFP8,
                                                Precision::kInt8};

class CudaBackend final : public Backend {
 public:
  // Selects the device, creates the stream, the cuBLASLt handle and the GEMM workspace.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::string_view name() const override { return name_; }

  absl::StatusOr<DeviceBuffer> Allocate(size_t bytes) override;
  absl::Status CopyToDevice(const void* host_src, size_t bytes, void* device_dst) override;
  absl::Status CopyToHost(const void* device_src, size_t bytes, void* host_dst) override;
  absl::StatusOr<Weight> UploadWeight(const float* host, int64_t n, int64_t k, Precision precision,
                                      const float* host_bias) override;

  void Embed(const float* table, int dim, absl::Span<const int32_t> tokens, float* out) override;
  void RmsNorm(const float* x, const float* weight, int rows, int dim, float eps, float* out) override;
  GemmStats Gemm(const float* x, int m, const Weight& w, float* y) override;
  void Rope(float* q, float* k, absl::Span<const int32_t> positions, const AttentionShape& shape,
            const float* inv_freq, RopePairing pairing) override;
  void KvWrite(const float* k, const float* v, const AttentionBatch& batch, const AttentionShape& shape,
               const KvLayer& cache) override;
  int64_t Attention(const float* q, const KvLayer& cache, const AttentionBatch& batch,
                    const AttentionShape& shape, float* out) override;
  void SiluMul(const float* gate, const float* up, int64_t n, float* out) override;
  void Add(float* x, const float* y, int64_t n) override;
  // Encoder ops (cuda_encoder_ops.cc).
  void LayerNorm(const float* x, const float* weight, const float* bias, int rows, int dim, float eps,
                 float* out) override;
  void Gelu(const float* x, int64_t n, float* out) override;
  // Records INVALID_ARGUMENT (sticky, as a bad block table) for n_kv_heads != n_heads, decreasing or negative
  // offsets, head_dim outside [1, 512] or a sequence longer than 4096 tokens (kernels/encoder_attention.cuh).
  int64_t EncoderAttention(const float* q, const float* k, const float* v, absl::Span<const int32_t> seq_offsets,
                           const AttentionShape& shape, float* out) override;
  absl::Status Synchronize() override;

  // Greedy token ids of `rows` logits rows [rows, vocab] already on the device (kernels/argmax.cuh).
  absl::StatusOr<std::vector<int32_t>> Argmax(const float* logits, int rows, int vocab);

  cudaStream_t stream() const { return stream_.get(); }
  const kernels::GemmPlanCache& gemm_plans() const { return *plans_; }

 protected:
  void Free(void* data, size_t bytes) override;

 private:
  CudaBackend(const CudaBackendOptions& options, std::string name);
  void Record(absl::Status s);
  // Uploads host ints into meta_ (stream-ordered) and returns the device copy.
  absl::StatusOr<const int32_t*> UploadInts(const std::vector<int32_t>& host);
  // Checks `batch` against `cache` on the host and uploads it as a kernels::PagedBatchView.
  absl::StatusOr<kernels::PagedBatchView> UploadBatch(const AttentionBatch& batch, const KvLayer& cache);
  absl::Status GemmImpl(const float* x, int m, const Weight& w, float* y);

  CudaBackendOptions options_;
  std::string name_;
  kernels::CudaStream stream_;
  std::unique_ptr<kernels::CublasLt> cublas_;
  std::unique_ptr<kernels::GemmPlanCache> plans_;
  // Device memory that grows on demand and is reused across ops (ops run in stream order).
  kernels::DeviceScratch workspace_, act_codes_, act_scales_, acc_, meta_;
  std::vector<int32_t> host_meta_;
  absl::Status error_;
};

}  // namespace qrag::backend

#endif  // QRAG_SERVER_BACKEND_CUDA_CUDA_BACKEND_H_
