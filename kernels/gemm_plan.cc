#include "kernels/gemm_plan.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_handles.h"
#include "server/common/status.h"

namespace qrag::kernels {
namespace {

constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;

cudaDataType_t InputType(GemmInput t) {
  switch (t) {
    case GemmInput::kF32: return CUDA_R_32F;
    case GemmInput::kBF16: return CUDA_R_16BF;
    case GemmInput::kFP8: return CUDA_R_8F_E4M3;
    case GemmInput::kInt8: return CUDA_R_8I;
  }
  return CUDA_R_32F;
}

cudaDataType_t OutputType(GemmOutput t) {
  switch (t) {
    case GemmOutput::kF32: return CUDA_R_32F;
    case GemmOutput::kBF16: return CUDA_R_16BF;
    case GemmOutput::kInt32: return CUDA_R_32I;
  }
  return CUDA_R_32F;
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T>
absl::Status SetAttr(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value) {
  QRAG_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)));
  return absl::OkStatus();
}

}  // namespace

const char* GemmInputName(GemmInput t) {
  switch (t) {
    case GemmInput::kF32: return "fp32";
    case GemmInput::kBF16: return "bf16";
    case GemmInput::kFP8: return "fp8";
    case GemmInput::kInt8: return "int8";
  }
  return "?";
}

const char* GemmOutputName(GemmOutput t) {
  switch (t) {
    case GemmOutput::kF32: return "f32";
    case GemmOutput::kBF16: return "bf16";
    case GemmOutput::kInt32: return "i32";
  }
  return "?";
}

const char* GemmScalingName(GemmScaling s) {
  switch (s) {
    case GemmScaling::kNone: return "none";
    case GemmScaling::kPerTensor: return "per_tensor";
    case GemmScaling::kOuterVector: return "outer_vector";
  }
  return "?";
}

std::string GemmDescString(const GemmDesc& d) {
  return absl::StrCat(GemmInputName(d.input), "x", GemmInputName(d.input), "->", GemmOutputName(d.output), " ",
                      GemmScalingName(d.scaling), d.fast_accumulation ? " fast_accum" : "", " m=", d.m,
                      " n=", d.n, " k=", d.k);
}

absl::Status ValidateGemmDesc(const GemmDesc& d) {
  const std::string what = GemmDescString(d);
  if (d.m < 1 || d.n < 1 || d.k < 1 || d.m > kMaxDim || d.n > kMaxDim || d.k > kMaxDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("gemm ", what, ": m, n and k must each be in [1, 2^31 - 1]"));
  }
  switch (d.input) {
    case GemmInput::kF32:
      if (d.output != GemmOutput::kF32) {
        return absl::InvalidArgumentError(absl::StrCat("gemm ", what, ": fp32 inputs produce f32 output only"));
      }
      break;
    case GemmInput::kBF16:
    case GemmInput::kFP8:
      if (d.output == GemmOutput::kInt32) {
        return absl::InvalidArgumentError(
            absl::StrCat("gemm ", what, ": ", GemmInputName(d.input), " inputs produce f32 or bf16 output"));
      }
      break;
    case GemmInput::kInt8:
      if (d.output != GemmOutput::kInt32) {
        return absl::InvalidArgumentError(absl::StrCat(
            "gemm ", what, ": int8 inputs produce exact i32 sums; apply the scales in the epilogue kernel"));
      }
      break;
  }
  if (d.scaling != GemmScaling::kNone && d.input != GemmInput::kFP8) {
    return absl::UnimplementedError(
        absl::StrCat("gemm ", what, ": cuBLASLt scaling modes are used for fp8 inputs only"));
  }
  if (d.fast_accumulation && d.input != GemmInput::kFP8) {
    return absl::InvalidArgumentError(absl::StrCat("gemm ", what, ": fast accumulation exists for fp8 only"));
  }
  if (d.input != GemmInput::kF32 && (d.k % 16 != 0 || d.n % 16 != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gemm ", what, ": ", GemmInputName(d.input),
        " tensor-core GEMMs need k and n to be multiples of 16 (pad the weight and activation rows with zeros)"));
  }
  return absl::OkStatus();
}

GemmPlan::~GemmPlan() {
  if (d_ != nullptr) cublasLtMatrixLayoutDestroy(d_);
  if (b_ != nullptr) cublasLtMatrixLayoutDestroy(b_);
  if (a_ != nullptr) cublasLtMatrixLayoutDestroy(a_);
  if (op_ != nullptr) cublasLtMatmulDescDestroy(op_);
}

absl::StatusOr<std::unique_ptr<GemmPlan>> CreateGemmDescriptors(const GemmDesc& desc) {
  QRAG_RETURN_IF_ERROR(ValidateGemmDesc(desc));
  std::unique_ptr<GemmPlan> plan(new GemmPlan());
  plan->desc_ = desc;
  const bool integer = desc.input == GemmInput::kInt8;
  const cublasComputeType_t compute = integer ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F;
  const cudaDataType_t scale_type = integer ? CUDA_R_32I : CUDA_R_32F;
  QRAG_CUDA_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->op_, compute, scale_type));
  QRAG_RETURN_IF_ERROR(SetAttr(plan->op_, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T));
  QRAG_RETURN_IF_ERROR(SetAttr(plan->op_, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N));
  if (desc.input == GemmInput::kFP8) {
    QRAG_RETURN_IF_ERROR(SetAttr(plan->op_, CUBLASLT_MATMUL_DESC_FAST_ACCUM,
                                 static_cast<int8_t>(desc.fast_accumulation ? 1 : 0)));
  }
  if (desc.scaling == GemmScaling::kOuterVector) {
    const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    QRAG_RETURN_IF_ERROR(SetAttr(plan->op_, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, mode));
    QRAG_RETURN_IF_ERROR(SetAttr(plan->op_, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, mode));
  }
  const cudaDataType_t in = InputType(desc.input), out = OutputType(desc.output);
  QRAG_CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a_, in, desc.k, desc.n, desc.k));
  QRAG_CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b_, in, desc.k, desc.m, desc.k));
  QRAG_CUDA_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->d_, out, desc.n, desc.m, desc.n));
  return plan;
}

absl::StatusOr<std::unique_ptr<GemmPlan>> PlanGemm(cublasLtHandle_t handle, const GemmDesc& desc,
                                                   int max_candidates, size_t max_workspace_bytes) {
  if (max_candidates < 1) return absl::InvalidArgumentError("PlanGemm: max_candidates must be >= 1");
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<GemmPlan> plan, CreateGemmDescriptors(desc));
  QRAG_ASSIGN_OR_RETURN(MatmulPreference pref, CreateMatmulPreference());
  const uint64_t ws = max_workspace_bytes;
  cublasStatus_t st =
      cublasLtMatmulPreferenceSetAttribute(pref.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  std::vector<cublasLtMatmulHeuristicResult_t> results(max_candidates);
  int returned = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(handle, plan->op_, plan->a_, plan->b_, plan->d_, plan->d_, pref.get(),
                                        max_candidates, results.data(), &returned);
  }
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && returned == 0)) {
    return absl::UnimplementedError(
        absl::StrCat("gemm ", GemmDescString(desc), ": cuBLASLt has no algorithm for it on this GPU"));
  }
  QRAG_CUDA_RETURN_IF_ERROR(st);
  for (int i = 0; i < returned; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    GemmAlgoCandidate c;
    c.algo = results[i].algo;
    c.workspace_bytes = results[i].workspaceSize;
    c.waves = results[i].wavesCount;
    plan->candidates_.push_back(c);
  }
  if (plan->candidates_.empty()) {
    return absl::UnimplementedError(
        absl::StrCat("gemm ", GemmDescString(desc), ": cuBLASLt's heuristic returned no usable algorithm"));
  }
  return plan;
}

absl::Status RunGemmCandidate(cublasLtHandle_t handle, const GemmPlan& plan, int index, const GemmArgs& args,
                              cudaStream_t stream) {
  const GemmDesc& d = plan.desc_;
  if (index < 0 || index >= static_cast<int>(plan.candidates_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("gemm: candidate ", index, " out of range"));
  }
  if (args.w == nullptr || args.x == nullptr || args.d == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("gemm ", GemmDescString(d), ": w, x and d must be set"));
  }
  if (!Aligned16(args.w) || !Aligned16(args.x) || !Aligned16(args.d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gemm ", GemmDescString(d), ": w, x and d must be 16-byte aligned"));
  }
  const bool scaled = d.scaling != GemmScaling::kNone;
  if (scaled != (args.a_scale != nullptr) || scaled != (args.b_scale != nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat("gemm ", GemmDescString(d), ": a_scale and b_scale must ",
                                                   scaled ? "both be set" : "be null", " for this scaling"));
  }
  const GemmAlgoCandidate& c = plan.candidates_[index];
  if (args.workspace_bytes < c.workspace_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("gemm ", GemmDescString(d), ": algorithm needs ",
                                                   c.workspace_bytes, " bytes of workspace, got ",
                                                   args.workspace_bytes));
  }
  if (scaled) {
    QRAG_RETURN_IF_ERROR(SetAttr(plan.op_, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, args.a_scale));
    QRAG_RETURN_IF_ERROR(SetAttr(plan.op_, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, args.b_scale));
  }
  const float alpha_f = 1.0f, beta_f = 0.0f;
  const int32_t alpha_i = 1, beta_i = 0;
  const bool integer = d.input == GemmInput::kInt8;
  const void* alpha = integer ? static_cast<const void*>(&alpha_i) : &alpha_f;
  const void* beta = integer ? static_cast<const void*>(&beta_i) : &beta_f;
  QRAG_CUDA_RETURN_IF_ERROR(cublasLtMatmul(handle, plan.op_, alpha, args.w, plan.a_, args.x, plan.b_, beta,
                                           args.d, plan.d_, args.d, plan.d_, &c.algo, args.workspace,
                                           args.workspace_bytes, stream));
  return absl::OkStatus();
}

absl::Status RunGemm(cublasLtHandle_t handle, const GemmPlan& plan, const GemmArgs& args, cudaStream_t stream) {
  return RunGemmCandidate(handle, plan, plan.chosen_, args, stream);
}

absl::StatusOr<std::unique_ptr<GemmPlan>> AutotuneGemm(cublasLtHandle_t handle, const GemmPlan& plan,
                                                       const GemmArgs& args, int iterations, cudaStream_t stream) {
  if (iterations < 1) return absl::InvalidArgumentError("AutotuneGemm: iterations must be >= 1");
  QRAG_ASSIGN_OR_RETURN(CudaEvent start_event, CreateCudaEvent());
  QRAG_ASSIGN_OR_RETURN(CudaEvent stop_event, CreateCudaEvent());
  cudaEvent_t start = start_event.get(), stop = stop_event.get();
  absl::Status s;
  std::vector<float> medians(plan.candidates_.size(), -1.0f);
  for (size_t i = 0; s.ok() && i < plan.candidates_.size(); ++i) {
    if (!RunGemmCandidate(handle, plan, static_cast<int>(i), args, stream).ok()) continue;  // warm-up
    std::vector<float> times;
    for (int it = 0; it < iterations; ++it) {
      s = CudaStatus(cudaEventRecord(start, stream), "cudaEventRecord(start)", __FILE__, __LINE__);
      if (!s.ok()) break;
      if (!RunGemmCandidate(handle, plan, static_cast<int>(i), args, stream).ok()) break;
      s = CudaStatus(cudaEventRecord(stop, stream), "cudaEventRecord(stop)", __FILE__, __LINE__);
      if (s.ok()) s = CudaStatus(cudaEventSynchronize(stop), "cudaEventSynchronize(stop)", __FILE__, __LINE__);
      float ms = 0;
      if (s.ok()) s = CudaStatus(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime", __FILE__, __LINE__);
      if (!s.ok()) break;
      times.push_back(ms);
    }
    if (static_cast<int>(times.size()) == iterations) {
      std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
      medians[i] = times[times.size() / 2];
    }
  }
  QRAG_RETURN_IF_ERROR(s);
  int best = -1;
  for (size_t i = 0; i < medians.size(); ++i) {
    if (medians[i] >= 0 && (best < 0 || medians[i] < medians[best])) best = static_cast<int>(i);
  }
  if (best < 0) {
    return absl::InternalError(absl::StrCat("gemm ", GemmDescString(plan.desc_), ": no candidate algorithm ran"));
  }
  // A new plan with its own descriptors and the same candidates (an algorithm is valid for any plan of the
  // same desc), the timings recorded and the fastest chosen.
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<GemmPlan> tuned, CreateGemmDescriptors(plan.desc_));
  tuned->candidates_ = plan.candidates_;
  for (size_t i = 0; i < medians.size(); ++i) tuned->candidates_[i].measured_ms = medians[i];
  tuned->chosen_ = best;
  return tuned;
}

absl::StatusOr<const GemmPlan*> GemmPlanCache::Get(const GemmDesc& desc, const GemmArgs& args,
                                                   cudaStream_t stream) {
  auto it = plans_.find(desc);
  if (it != plans_.end()) return it->second.get();
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<GemmPlan> plan,
                        PlanGemm(handle_, desc, options_.autotune ? options_.max_candidates : 1,
                                 std::min(options_.max_workspace_bytes, args.workspace_bytes)));
  if (options_.autotune && plan->candidates().size() > 1) {
    QRAG_ASSIGN_OR_RETURN(plan, AutotuneGemm(handle_, *plan, args, options_.autotune_iterations, stream));
  }
  const GemmPlan* p = plan.get();
  plans_.emplace(desc, std::move(plan));
  return p;
}

absl::StatusOr<std::unique_ptr<CublasLt>> CublasLt::Create() {
  cublasLtHandle_t h = nullptr;
  QRAG_CUDA_RETURN_IF_ERROR(cublasLtCreate(&h));
  return std::unique_ptr<CublasLt>(new CublasLt(h));
}

CublasLt::~CublasLt() { cublasLtDestroy(handle_); }

}  // namespace qrag::kernels
