// The CPU backend: the reference implementation every other backend is checked against, and a usable
// server backend on machines without a GPU.
//
// Two modes behind one switch. Reference: plain loops, wide (double) accumulation, single thread. Fast
// (default): AVX2 GEMM kernels and a thread pool; results agree with the reference to fp32 rounding (int8
// GEMMs bit-identically). Both quantize GEMM operands with exactly the rounding of the formats they emulate
// (quant/row_quant.h), so the CPU backend is the oracle for GPU kernels in every precision.
#ifndef QRAG_SERVER_BACKEND_CPU_CPU_BACKEND_H_
#define QRAG_SERVER_BACKEND_CPU_CPU_BACKEND_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include <vector>

#include "server/backend/backend.h"
#include "server/common/thread_pool.h"
#include "server/quant/w4.h"

namespace qrag::backend {

struct CpuBackendOptions {
  bool reference = false;  // plain-loop oracle instead of the fast kernels
  int num_threads = 0;     // fast mode only; 0 = all hardware threads
  quant::W4Options w4 = {};  // how UploadWeight quantizes --quant w4 (asymmetric grid by default)
  // Vendor libraries instead of the canonical-order kernels: fp32 GEMMs (and the encoder attention's
  // products) through OpenBLAS, int8 GEMMs through oneDNN's VNNI kernels (where the CPU has VNNI), each
  // single-threaded on this backend's threads. 3-5x faster on encoder shapes, but NOT batch-invariant (a row's
  // result may depend on the batch it is computed in, in the last bits of fp32). For the RAG embedder and exact
  // index only, never the generator.
  bool blas = false;
};

// Debian's OpenBLAS (DYNAMIC_ARCH) picks its kernels from the CPU model when it loads — before main, since
// FAISS's BLAS loads it — and falls back to generic SSE3 kernels ("Prescott") on a model it does not know, the
// rule in VMs whose CPUID model is generic: 20 GFLOP/s instead of 119 on an encoder GEMM of this project's
// AVX-512 machine. It reads OPENBLAS_CORETYPE only then. Called first thing in main by the programs that embed
// (qrag-server, rag_bench): when the variable is unset and the CPU's own feature flags support better kernels
// than the ones chosen, sets OPENBLAS_CORETYPE (SkylakeX for AVX-512, Haswell for AVX2+FMA) and re-executes
// the program with the same arguments (same pid). Returns when there is nothing to do, or when exec fails
// (after a note on stderr). Set OPENBLAS_CORETYPE yourself to choose, or to skip this.
void RestartForOpenBlasKernels(char** argv);

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options);
  ~CpuBackend() override;

  std::string_view name() const override { return options_.reference ? "cpu-reference" : "cpu"; }
  // "OpenBLAS 0.3.21 (SkylakeX kernels)": what CpuBackendOptions::blas runs (for logs).
  static std::string BlasDescription();
  const CpuBackendOptions& options() const { return options_; }

  absl::StatusOr<DeviceBuffer> Allocate(size_t bytes) override;
  absl::Status CopyToDevice(const void* host_src, size_t bytes, void* device_dst) override;
  absl::Status CopyToHost(const void* device_src, size_t bytes, void* host_dst) override;
  absl::StatusOr<Weight> UploadWeight(const float* host, int64_t n, int64_t k, Precision precision,
                                      const float* host_bias) override;
  absl::StatusOr<Weight> UploadW4Weight(const quant::W4Matrix& weight, const float* host_bias) override;

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
  void LayerNorm(const float* x, const float* weight, const float* bias, int rows, int dim, float eps,
                 float* out) override;
  void AddLayerNorm(float* x, const float* y, const float* weight, const float* bias, int rows, int dim, float eps,
                    float* out) override;
  void Gelu(const float* x, int64_t n, float* out) override;
  int64_t EncoderAttention(const float* q, const float* k, const float* v, absl::Span<const int32_t> seq_offsets,
                           const AttentionShape& shape, float* out) override;
  // The first failure of a void op since construction (a GEMM whose packing buffers could not be
  // allocated: RESOURCE_EXHAUSTED), OK otherwise. Sticky, as the CUDA backend's errors are.
  absl::Status Synchronize() override;

 protected:
  void Free(void* data, size_t bytes) override;

 private:
  // Records `status` as the sticky error when it is the first failure. Thread-safe (the encoder attention
  // calls it from the pool's workers).
  void RecordError(const absl::Status& status);
  // blas mode's int8 GEMM: x quantized per token (into act_codes_/act_scales_), oneDNN's s8s8s32, then
  // y = acc * (s_x * s_w) + bias; rows split across the pool.
  static bool VnniForInt8();
  absl::Status Int8GemmDnnl(const float* x, int m, const Weight& w, float* y);

  CpuBackendOptions options_;
  std::unique_ptr<ThreadPool> pool_;
  absl::Mutex error_mu_;
  absl::Status error_ ABSL_GUARDED_BY(error_mu_);
  // Per-token quantized activations, reused across GEMMs.
  std::vector<uint8_t> act_codes_;
  std::vector<float> act_scales_;
};

}  // namespace qrag::backend

#endif  // QRAG_SERVER_BACKEND_CPU_CPU_BACKEND_H_
