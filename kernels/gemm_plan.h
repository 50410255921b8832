// cuBLASLt GEMM plans: validate -> plan -> run (STYLE.md, after CUTLASS).
//
// Every qrag GEMM is D[m, n] = X[m, k] * W[n, k]^T in row-major terms, W being a torch.nn.Linear weight
// (out, in). cuBLASLt sees column-major matrices, so the plan computes D^T (n x m, ld = ldd) =
// op(A) * op(B) with A = W (k x n col-major, ld = k, transposed: "T") and B = X (k x m col-major, ld = k,
// not transposed: "N"). This TN form is the one FP8 requires, and what int8 IMMA kernels prefer.
//
// Input formats and what D holds:
//  - kF32:  fp32 x fp32, CUBLAS_COMPUTE_32F (no TF32), D fp32.
//  - kBF16: bf16 x bf16, fp32 accumulation, D fp32 or bf16.
//  - kFP8:  E4M3 x E4M3, fp32 accumulation (fast accumulation off unless asked), D fp32 or bf16, scaled per
//           `scaling`: none; per tensor (one fp32 device scalar each for A and B); or per output channel x
//           per token (cuBLASLt's CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F: a_scale[n], b_scale[m]).
//  - kInt8: int8 x int8, CUBLAS_COMPUTE_32I on the integer tensor cores, D int32 (exact sums).
// Scales qrag's CPU reference applies as y = fma(acc, s_x[m] * s_w[n], bias[n]) are applied afterwards by
// the epilogue kernel (gemm_epilogue.cuh), so that the rounding is the reference's, bit for bit; the
// cuBLASLt scaling modes are offered for the benchmarks and for callers that do not need that.
//
// Shape rules (ValidateGemmDesc): m, n, k >= 1 and < 2^31; fp8/int8/bf16 need k and n multiples of 16
// (16-byte aligned rows for the tensor-core kernels; callers pad with zeros, which leave sums unchanged);
// all device pointers of GemmArgs must be 16-byte aligned.
//
// Plans are immutable after creation. A GemmPlanCache keeps one per GemmDesc; with autotuning on, the first
// Get() of a shape times the heuristic's top candidates on the caller's buffers and keeps the fastest.
// Thread safety: RunGemm stores the scale pointers of a scaled fp8 plan in the plan's cuBLASLt descriptor,
// so a plan, like its GemmPlanCache, is used by one thread at a time (the backend's engine thread).
#ifndef QRAG_KERNELS_GEMM_PLAN_H_
#define QRAG_KERNELS_GEMM_PLAN_H_

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qrag::kernels {

enum class GemmInput { kF32, kBF16, kFP8, kInt8 };
enum class GemmOutput { kF32, kBF16, kInt32 };
enum class GemmScaling { kNone, kPerTensor, kOuterVector };

const char* GemmInputName(GemmInput t);
const char* GemmOutputName(GemmOutput t);
const char* GemmScalingName(GemmScaling s);

struct GemmDesc {
  GemmInput input = GemmInput::kF32;
  GemmOutput output = GemmOutput::kF32;
  GemmScaling scaling = GemmScaling::kNone;
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  bool fast_accumulation = false;  // fp8 only: Hopper's faster, less precise accumulation

  friend bool operator==(const GemmDesc&, const GemmDesc&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const GemmDesc& d) {
    return H::combine(std::move(h), d.input, d.output, d.scaling, d.m, d.n, d.k, d.fast_accumulation);
  }
};

// "fp8xfp8->f32 outer_vector m=1 n=4096 k=4096" (logs, benchmark names, error messages).
std::string GemmDescString(const GemmDesc& desc);

// Checks the format combination and the shape rules above; INVALID_ARGUMENT saying what to change
// (UNIMPLEMENTED for combinations cuBLASLt does not offer). Needs no GPU.
absl::Status ValidateGemmDesc(const GemmDesc& desc);

// Device buffers of one GEMM. w: [n, k] (cuBLASLt's A), x: [m, k] (B), d: [m, n] in the output format.
// a_scale / b_scale: device fp32, one value (per tensor) or n / m values (outer vector), else null.
struct GemmArgs {
  const void* w = nullptr;
  const void* x = nullptr;
  void* d = nullptr;
  const float* a_scale = nullptr;
  const float* b_scale = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// One heuristic candidate, with its measured time once autotuned.
struct GemmAlgoCandidate {
  cublasLtMatmulAlgo_t algo;
  size_t workspace_bytes = 0;
  float waves = 0;            // cuBLASLt's estimate of waves over the SMs
  float measured_ms = -1.0f;  // median of the autotune timings, -1 when not timed
};

// RAII owner of the cuBLASLt descriptors of one plan.
class GemmPlan {
 public:
  ~GemmPlan();
  GemmPlan(const GemmPlan&) = delete;
  GemmPlan& operator=(const GemmPlan&) = delete;

  const GemmDesc& desc() const { return desc_; }
  // Exact ops of one run: 2 * m * n * k.
  int64_t ops() const { return 2 * desc_.m * desc_.n * desc_.k; }
  // The heuristic's candidates in its order; chosen() indexes the one Run uses (0 = heuristic's first).
  const std::vector<GemmAlgoCandidate>& candidates() const { return candidates_; }
  int chosen() const { return chosen_; }
  size_t workspace_bytes() const { return candidates_[chosen_].workspace_bytes; }

 private:
  friend absl::StatusOr<std::unique_ptr<GemmPlan>> CreateGemmDescriptors(const GemmDesc&);
  friend absl::StatusOr<std::unique_ptr<GemmPlan>> PlanGemm(cublasLtHandle_t, const GemmDesc&, int,
                                                            size_t);
  friend absl::StatusOr<std::unique_ptr<GemmPlan>> AutotuneGemm(cublasLtHandle_t, const GemmPlan&,
                                                                const GemmArgs&, int, cudaStream_t);
  friend absl::Status RunGemm(cublasLtHandle_t, const GemmPlan&, const GemmArgs&, cudaStream_t);
  friend absl::Status RunGemmCandidate(cublasLtHandle_t, const GemmPlan&, int, const GemmArgs&,
                                       cudaStream_t);
  GemmPlan() = default;

  GemmDesc desc_;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, d_ = nullptr;
  std::vector<GemmAlgoCandidate> candidates_;
  int chosen_ = 0;
};

// Validates `desc` and builds its cuBLASLt descriptors, with no candidate yet (PlanGemm's first step).
absl::StatusOr<std::unique_ptr<GemmPlan>> CreateGemmDescriptors(const GemmDesc& desc);

// Validates `desc`, builds its descriptors and asks cuBLASLt's heuristic for up to `max_candidates`
// algorithms that need at most `max_workspace_bytes`. UNIMPLEMENTED when the heuristic offers none (an
// unsupported combination on this GPU).
absl::StatusOr<std::unique_ptr<GemmPlan>> PlanGemm(cublasLtHandle_t handle, const GemmDesc& desc,
                                                   int max_candidates, size_t max_workspace_bytes);

// Runs the plan's chosen algorithm on `stream`. The buffers must match the plan's desc; a scale pointer
// must be set exactly when the plan's scaling needs it (INVALID_ARGUMENT otherwise).
absl::Status RunGemm(cublasLtHandle_t handle, const GemmPlan& plan, const GemmArgs& args, cudaStream_t stream);
// Runs candidate `index` instead of the chosen one (autotuning, benchmarks).
absl::Status RunGemmCandidate(cublasLtHandle_t handle, const GemmPlan& plan, int index, const GemmArgs& args,
                              cudaStream_t stream);

// Times every candidate of `plan` (`iterations` runs each after one warm-up, median, CUDA events on
// `stream`) on `args` (whose output is overwritten) and returns a plan that runs the fastest one. Candidates
// that fail to run are skipped; INTERNAL when none runs.
absl::StatusOr<std::unique_ptr<GemmPlan>> AutotuneGemm(cublasLtHandle_t handle, const GemmPlan& plan,
                                                       const GemmArgs& args, int iterations, cudaStream_t stream);

struct GemmPlanCacheOptions {
  int max_candidates = 8;
  size_t max_workspace_bytes = size_t{32} << 20;
  bool autotune = true;
  int autotune_iterations = 5;
};

// One immutable plan per GemmDesc, created on first use. Holds no cuBLASLt handle of its own.
class GemmPlanCache {
 public:
  GemmPlanCache(cublasLtHandle_t handle, const GemmPlanCacheOptions& options) : handle_(handle), options_(options) {}

  // The cached plan of `desc`, planning (and, with autotune, timing the candidates on `args`) on first use.
  absl::StatusOr<const GemmPlan*> Get(const GemmDesc& desc, const GemmArgs& args, cudaStream_t stream);
  size_t size() const { return plans_.size(); }
  const GemmPlanCacheOptions& options() const { return options_; }

 private:
  cublasLtHandle_t handle_;
  GemmPlanCacheOptions options_;
  absl::flat_hash_map<GemmDesc, std::unique_ptr<GemmPlan>> plans_;
};

// RAII cuBLASLt handle.
class CublasLt {
 public:
  static absl::StatusOr<std::unique_ptr<CublasLt>> Create();
  ~CublasLt();
  CublasLt(const CublasLt&) = delete;
  CublasLt& operator=(const CublasLt&) = delete;
  cublasLtHandle_t get() const { return handle_; }

 private:
  explicit CublasLt(cublasLtHandle_t h) : handle_(h) {}
  cublasLtHandle_t handle_;
};

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_GEMM_PLAN_H_
