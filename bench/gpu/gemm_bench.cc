// cuBLASLt GEMM throughput of qrag's plans (kernels/gemm_plan.h) on the GPU, in one run:
//  - FP8 (E4M3 -> bf16), int8 (-> int32) and bf16 (-> bf16) TFLOP/s for 8192^3 and the Llama-3-8B
//    projection shapes (N, K) in {(6144,4096), (4096,4096), (28672,4096), (4096,14336), (128256,4096)} at
//    M in {1, 16, 64, 256, 2048};
//  - decode shapes (M <= 64) also as effective weight bandwidth (weight bytes / time) over the measured
//    device-to-device copy bandwidth (bytes read + written / time);
//  - for FP8 8192^3: every cuBLASLt candidate (up to 32) timed, the best against the one our autotuned plan
//    chose and against the heuristic's first; the per-tensor and outer-vector scaling modes and fast
//    accumulation, for comparison;
//  - the whole backend GEMM (per-token quantization + GEMM + epilogue) of CudaBackend for a few decode shapes.
// Timing: CUDA events around `--iters` runs after 3 warm-ups, median of 5 such batches; operands random
// (never zeros), weights rotated over enough copies to exceed the L2 cache.
//
//   gemm_bench [--json PATH] [--iters N] [--quick]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/gpu/fill.cuh"
#include "kernels/cuda_check.h"
#include "kernels/gemm_plan.h"
#include "server/backend/cuda/cuda_backend.h"
#include "server/common/status.h"

namespace qrag::bench {
namespace {

using kernels::GemmDesc;
using kernels::GemmInput;
using kernels::GemmOutput;
using kernels::GemmScaling;

constexpr size_t kWorkspace = size_t{32} << 20;
constexpr size_t kRotateBytes = size_t{512} << 20;  // weights rotated over >= this many bytes (L2: 60 MB)

struct Options {
  std::string json;
  int iters = 20;
  bool quick = false;
};

class DeviceMem {
 public:
  DeviceMem() = default;
  ~DeviceMem() {
    if (p_ != nullptr) cudaFree(p_);
  }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
  absl::Status Alloc(size_t bytes) {
    QRAG_CUDA_RETURN_IF_ERROR(cudaMalloc(&p_, (bytes + 255) / 256 * 256));
    bytes_ = bytes;
    return absl::OkStatus();
  }
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

struct Timer {
  cudaEvent_t start = nullptr, stop = nullptr;
  ~Timer() {
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
  }
};

// Median over 5 batches of the mean time (ms) of one call of `fn(i)` over `iters` calls.
template <typename Fn>
absl::StatusOr<double> TimeMs(cudaStream_t stream, int iters, Fn fn) {
  Timer t;
  QRAG_CUDA_RETURN_IF_ERROR(cudaEventCreate(&t.start));
  QRAG_CUDA_RETURN_IF_ERROR(cudaEventCreate(&t.stop));
  for (int i = 0; i < 3; ++i) QRAG_RETURN_IF_ERROR(fn(i));
  std::vector<double> batches;
  int call = 0;
  for (int b = 0; b < 5; ++b) {
    QRAG_CUDA_RETURN_IF_ERROR(cudaEventRecord(t.start, stream));
    for (int i = 0; i < iters; ++i) QRAG_RETURN_IF_ERROR(fn(call++));
    QRAG_CUDA_RETURN_IF_ERROR(cudaEventRecord(t.stop, stream));
    QRAG_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(t.stop));
    float ms = 0;
    QRAG_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, t.start, t.stop));
    batches.push_back(ms / iters);
  }
  std::sort(batches.begin(), batches.end());
  return batches[2];
}

size_t InBytes(GemmInput in) { return in == GemmInput::kBF16 ? 2 : in == GemmInput::kF32 ? 4 : 1; }
size_t OutBytes(GemmOutput out) { return out == GemmOutput::kBF16 ? 2 : 4; }
FillKind FillOf(GemmInput in) {
  return in == GemmInput::kFP8 ? FillKind::kE4M3 : in == GemmInput::kInt8 ? FillKind::kInt8 : FillKind::kBf16;
}

struct Result {
  std::string name;
  GemmDesc desc;
  double ms = 0;
  double tflops = 0;
  double weight_gbps = 0;
  double copy_ratio = 0;
  int candidates = 0;
  int chosen = 0;
  double heuristic_first_ms = -1;
  std::string note;
};

class Bench {
 public:
  explicit Bench(const Options& o) : o_(o) {}

  absl::Status Init() {
    QRAG_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    QRAG_ASSIGN_OR_RETURN(lt_, kernels::CublasLt::Create());
    QRAG_RETURN_IF_ERROR(workspace_.Alloc(kWorkspace));
    kernels::GemmPlanCacheOptions po;
    po.max_candidates = 8;
    po.autotune = true;
    cache_ = std::make_unique<kernels::GemmPlanCache>(lt_->get(), po);
    cudaDeviceProp prop{};
    QRAG_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, 0));
    device_ = absl::StrCat(prop.name, ", ", prop.multiProcessorCount, " SMs, ", prop.l2CacheSize >> 20, " MB L2");
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    device_ = absl::StrCat(device_, ", driver ", driver, ", runtime ", runtime, ", cuBLASLt ", cublasLtGetVersion());
    return absl::OkStatus();
  }

  // Device-to-device copy of 2 GiB: (bytes read + bytes written) / time.
  absl::Status MeasureCopy() {
    const size_t bytes = size_t{2} << 30;
    DeviceMem a, b;
    QRAG_RETURN_IF_ERROR(a.Alloc(bytes));
    QRAG_RETURN_IF_ERROR(b.Alloc(bytes));
    QRAG_CUDA_RETURN_IF_ERROR(LaunchRandomFill(a.get(), bytes, FillKind::kInt8, 1, stream_));
    QRAG_ASSIGN_OR_RETURN(double ms, TimeMs(stream_, 5, [&](int) -> absl::Status {
                            QRAG_CUDA_RETURN_IF_ERROR(
                                cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, stream_));
                            return absl::OkStatus();
                          }));
    copy_gbps_ = 2.0 * bytes / (ms * 1e-3) / 1e9;
    std::printf("device: %s\ncopy bandwidth (read + write): %.0f GB/s\n", device_.c_str(), copy_gbps_);
    return absl::OkStatus();
  }

  // Times the autotuned plan of `desc` (and its heuristic-first candidate) on random operands.
  absl::StatusOr<Result> RunPlan(const std::string& name, const GemmDesc& desc) {
    const size_t wbytes = desc.n * desc.k * InBytes(desc.input);
    const int copies = static_cast<int>(std::clamp<size_t>(kRotateBytes / std::max<size_t>(wbytes, 1), 1, 16));
    std::vector<std::unique_ptr<DeviceMem>> w(copies);
    for (int c = 0; c < copies; ++c) {
      w[c] = std::make_unique<DeviceMem>();
      QRAG_RETURN_IF_ERROR(w[c]->Alloc(wbytes));
      QRAG_CUDA_RETURN_IF_ERROR(LaunchRandomFill(w[c]->get(), wbytes, FillOf(desc.input), 10 + c, stream_));
    }
    DeviceMem x, d, as, bs;
    QRAG_RETURN_IF_ERROR(x.Alloc(desc.m * desc.k * InBytes(desc.input)));
    QRAG_CUDA_RETURN_IF_ERROR(LaunchRandomFill(x.get(), x.bytes(), FillOf(desc.input), 7, stream_));
    QRAG_RETURN_IF_ERROR(d.Alloc(desc.m * desc.n * OutBytes(desc.output)));
    kernels::GemmArgs args;
    args.x = x.get();
    args.d = d.get();
    args.workspace = workspace_.get();
    args.workspace_bytes = kWorkspace;
    if (desc.scaling != GemmScaling::kNone) {
      const size_t na = desc.scaling == GemmScaling::kOuterVector ? desc.n : 1;
      const size_t nb = desc.scaling == GemmScaling::kOuterVector ? desc.m : 1;
      QRAG_RETURN_IF_ERROR(as.Alloc(na * 4));
      QRAG_RETURN_IF_ERROR(bs.Alloc(nb * 4));
      std::vector<float> ones(std::max(na, nb), 1.0f);
      QRAG_CUDA_RETURN_IF_ERROR(cudaMemcpy(as.get(), ones.data(), na * 4, cudaMemcpyHostToDevice));
      QRAG_CUDA_RETURN_IF_ERROR(cudaMemcpy(bs.get(), ones.data(), nb * 4, cudaMemcpyHostToDevice));
      args.a_scale = static_cast<const float*>(as.get());
      args.b_scale = static_cast<const float*>(bs.get());
    }
    args.w = w[0]->get();
    QRAG_ASSIGN_OR_RETURN(const kernels::GemmPlan* plan, cache_->Get(desc, args, stream_));
    auto run_candidate = [&](int index) {
      return [&, index](int call) -> absl::Status {
        kernels::GemmArgs a = args;
        a.w = w[call % copies]->get();
        return kernels::RunGemmCandidate(lt_->get(), *plan, index, a, stream_);
      };
    };
    Result r;
    r.name = name;
    r.desc = desc;
    QRAG_ASSIGN_OR_RETURN(r.ms, TimeMs(stream_, o_.iters, run_candidate(plan->chosen())));
    r.candidates = static_cast<int>(plan->candidates().size());
    r.chosen = plan->chosen();
    if (plan->chosen() != 0) {
      QRAG_ASSIGN_OR_RETURN(r.heuristic_first_ms, TimeMs(stream_, o_.iters, run_candidate(0)));
    } else {
      r.heuristic_first_ms = r.ms;
    }
    Finish(r, wbytes);
    return r;
  }

  // Every candidate of a fresh 32-candidate plan of `desc`, timed: the best cuBLASLt algorithm.
  absl::Status AllCandidates(const GemmDesc& desc, const Result& ours) {
    const size_t wbytes = desc.n * desc.k * InBytes(desc.input);
    DeviceMem w, x, d;
    QRAG_RETURN_IF_ERROR(w.Alloc(wbytes));
    QRAG_RETURN_IF_ERROR(x.Alloc(desc.m * desc.k * InBytes(desc.input)));
    QRAG_RETURN_IF_ERROR(d.Alloc(desc.m * desc.n * OutBytes(desc.output)));
    QRAG_CUDA_RETURN_IF_ERROR(LaunchRandomFill(w.get(), wbytes, FillOf(desc.input), 3, stream_));
    QRAG_CUDA_RETURN_IF_ERROR(LaunchRandomFill(x.get(), x.bytes(), FillOf(desc.input), 4, stream_));
    QRAG_ASSIGN_OR_RETURN(std::unique_ptr<kernels::GemmPlan> plan, kernels::PlanGemm(lt_->get(), desc, 32, kWorkspace));
    kernels::GemmArgs args;
    args.w = w.get();
    args.x = x.get();
    args.d = d.get();
    args.workspace = workspace_.get();
    args.workspace_bytes = kWorkspace;
    double best = 1e30;
    int best_i = -1;
    std::printf("\nall cuBLASLt candidates for %s:\n", kernels::GemmDescString(desc).c_str());
    for (int i = 0; i < static_cast<int>(plan->candidates().size()); ++i) {
      auto ms = TimeMs(stream_, o_.iters,
                       [&](int) { return kernels::RunGemmCandidate(lt_->get(), *plan, i, args, stream_); });
      if (!ms.ok()) {
        std::printf("  candidate %2d: failed: %s\n", i, std::string(ms.status().message()).c_str());
        continue;
      }
      const double tf = 2.0 * desc.m * desc.n * desc.k / (*ms * 1e-3) / 1e12;
      std::printf("  candidate %2d: %.4f ms  %.1f TFLOP/s  workspace %zu\n", i, *ms, tf,
                  plan->candidates()[i].workspace_bytes);
      if (*ms < best) {
        best = *ms;
        best_i = i;
      }
    }
    best_all_ms_ = best;
    std::printf("best of %zu: candidate %d, %.4f ms; ours (autotuned over the top 8, rotated weights): %.4f ms = "
                "%.1f%% of the best\n",
                plan->candidates().size(), best_i, best, ours.ms, 100.0 * best / ours.ms);
    return absl::OkStatus();
  }

  // CudaBackend::Gemm end to end: fp32 activations in, per-token quantization, GEMM, epilogue, fp32 out.
  absl::StatusOr<Result> RunBackend(backend::CudaBackend& be, backend::Precision p, int m, int n, int k) {
    std::vector<float> host(static_cast<size_t>(n) * k);
    uint32_t s = 12345;
    for (float& v : host) {
      s = s * 1664525u + 1013904223u;
      v = static_cast<float>(static_cast<int32_t>(s >> 8) % 2001) / 1000.0f;
    }
    QRAG_ASSIGN_OR_RETURN(backend::Weight w, be.UploadWeight(host.data(), n, k, p, nullptr));
    host.resize(static_cast<size_t>(m) * k);
    QRAG_ASSIGN_OR_RETURN(backend::DeviceBuffer x, be.Allocate(host.size() * 4));
    QRAG_RETURN_IF_ERROR(be.CopyToDevice(host.data(), host.size() * 4, x.data()));
    QRAG_ASSIGN_OR_RETURN(backend::DeviceBuffer y, be.Allocate(static_cast<size_t>(m) * n * 4));
    Result r;
    r.name = absl::StrCat("backend_", backend::PrecisionName(p));
    r.desc.input = p == backend::Precision::kFP8 ? GemmInput::kFP8 : GemmInput::kInt8;
    r.desc.m = m;
    r.desc.n = n;
    r.desc.k = k;
    QRAG_ASSIGN_OR_RETURN(r.ms, TimeMs(be.stream(), o_.iters, [&](int) -> absl::Status {
                            be.Gemm(x.as<float>(), m, w, y.as<float>());
                            return absl::OkStatus();
                          }));
    QRAG_RETURN_IF_ERROR(be.Synchronize());
    r.note = "quantize + GEMM + epilogue; weights not rotated";
    Finish(r, static_cast<size_t>(n) * k);
    return r;
  }

  void Finish(Result& r, size_t wbytes) {
    r.tflops = 2.0 * r.desc.m * r.desc.n * r.desc.k / (r.ms * 1e-3) / 1e12;
    r.weight_gbps = wbytes / (r.ms * 1e-3) / 1e9;
    r.copy_ratio = copy_gbps_ > 0 ? r.weight_gbps / copy_gbps_ : 0;
    std::printf("%-22s %-40s %9.4f ms %8.1f TFLOP/s %7.0f GB/s weights (%.2f x copy) cand %d chosen %d "
                "heuristic-first %.4f ms\n",
                r.name.c_str(), kernels::GemmDescString(r.desc).c_str(), r.ms, r.tflops, r.weight_gbps,
                r.copy_ratio, r.candidates, r.chosen, r.heuristic_first_ms);
    std::fflush(stdout);
    results_.push_back(r);
  }

  absl::Status WriteJson() const {
    if (o_.json.empty()) return absl::OkStatus();
    FILE* f = std::fopen(o_.json.c_str(), "w");
    if (f == nullptr) return absl::InternalError(absl::StrCat("cannot write ", o_.json));
    std::fprintf(f, "{\n  \"device\": \"%s\",\n  \"copy_gbps\": %.1f,\n  \"fp8_8192_best_candidate_ms\": %.5f,\n"
                 "  \"results\": [\n", device_.c_str(), copy_gbps_, best_all_ms_);
    for (size_t i = 0; i < results_.size(); ++i) {
      const Result& r = results_[i];
      std::fprintf(f,
                   "    {\"name\": \"%s\", \"desc\": \"%s\", \"m\": %lld, \"n\": %lld, \"k\": %lld, \"ms\": %.5f, "
                   "\"tflops\": %.2f, \"weight_gbps\": %.1f, \"copy_ratio\": %.3f, \"candidates\": %d, "
                   "\"chosen\": %d, \"heuristic_first_ms\": %.5f, \"note\": \"%s\"}%s\n",
                   r.name.c_str(), kernels::GemmDescString(r.desc).c_str(), static_cast<long long>(r.desc.m),
                   static_cast<long long>(r.desc.n), static_cast<long long>(r.desc.k), r.ms, r.tflops,
                   r.weight_gbps, r.copy_ratio, r.candidates, r.chosen, r.heuristic_first_ms, r.note.c_str(),
                   i + 1 < results_.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    return absl::OkStatus();
  }

  cudaStream_t stream() const { return stream_; }

 private:
  Options o_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<kernels::CublasLt> lt_;
  std::unique_ptr<kernels::GemmPlanCache> cache_;
  DeviceMem workspace_;
  std::string device_;
  double copy_gbps_ = 0;
  double best_all_ms_ = -1;
  std::vector<Result> results_;
};

GemmDesc Desc(GemmInput in, int64_t m, int64_t n, int64_t k) {
  GemmDesc d;
  d.input = in;
  d.output = in == GemmInput::kInt8 ? GemmOutput::kInt32 : GemmOutput::kBF16;
  d.m = m;
  d.n = n;
  d.k = k;
  return d;
}

absl::Status Main(const Options& o) {
  Bench b(o);
  QRAG_RETURN_IF_ERROR(b.Init());
  QRAG_RETURN_IF_ERROR(b.MeasureCopy());
  const GemmInput inputs[] = {GemmInput::kFP8, GemmInput::kInt8, GemmInput::kBF16};
  // 8192^3 first: the headline figures.
  Result fp8_big;
  for (GemmInput in : inputs) {
    QRAG_ASSIGN_OR_RETURN(Result r, b.RunPlan(absl::StrCat(kernels::GemmInputName(in), "_8192"),
                                              Desc(in, 8192, 8192, 8192)));
    if (in == GemmInput::kFP8) fp8_big = r;
  }
  QRAG_RETURN_IF_ERROR(b.AllCandidates(Desc(GemmInput::kFP8, 8192, 8192, 8192), fp8_big));
  // FP8 variants: cuBLASLt's scaling modes and fast accumulation (reported, not served).
  for (GemmScaling s : {GemmScaling::kPerTensor, GemmScaling::kOuterVector}) {
    for (int64_t m : {int64_t{8192}, int64_t{16}}) {
      GemmDesc d = Desc(GemmInput::kFP8, m, m == 8192 ? 8192 : 4096, m == 8192 ? 8192 : 4096);
      d.scaling = s;
      auto r = b.RunPlan(absl::StrCat("fp8_scale_", kernels::GemmScalingName(s)), d);
      if (!r.ok()) std::printf("fp8 %s m=%lld: %s\n", kernels::GemmScalingName(s), static_cast<long long>(m),
                               r.status().ToString().c_str());
    }
  }
  {
    GemmDesc d = Desc(GemmInput::kFP8, 8192, 8192, 8192);
    d.fast_accumulation = true;
    auto r = b.RunPlan("fp8_fast_accum", d);
    if (!r.ok()) std::printf("fp8 fast accumulation: %s\n", r.status().ToString().c_str());
  }
  // Llama-3-8B projections.
  const std::pair<int64_t, int64_t> shapes[] = {{6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336},
                                                {128256, 4096}};
  const int64_t ms_all[] = {1, 16, 64, 256, 2048};
  for (GemmInput in : inputs) {
    for (auto [n, k] : shapes) {
      for (int64_t m : ms_all) {
        if (o.quick && m != 1 && m != 2048) continue;
        QRAG_RETURN_IF_ERROR(
            b.RunPlan(absl::StrCat(kernels::GemmInputName(in), "_llama3_", n, "x", k), Desc(in, m, n, k)).status());
      }
    }
  }
  // The backend's whole GEMM (what the model runs) for decode shapes.
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<backend::CudaBackend> be, backend::CudaBackend::Create({}));
  for (backend::Precision p : {backend::Precision::kFP8, backend::Precision::kInt8}) {
    for (auto [n, k] : {std::pair<int, int>{4096, 4096}, {4096, 14336}}) {
      for (int m : {1, 16, 64}) QRAG_RETURN_IF_ERROR(b.RunBackend(*be, p, m, n, k).status());
    }
  }
  return b.WriteJson();
}

}  // namespace
}  // namespace qrag::bench

int main(int argc, char** argv) {
  qrag::bench::Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) {
      o.json = argv[++i];
    } else if (a == "--iters" && i + 1 < argc) {
      if (!absl::SimpleAtoi(argv[++i], &o.iters) || o.iters < 1) {
        std::fprintf(stderr, "gemm_bench: --iters needs a positive integer\n");
        return 2;
      }
    } else if (a == "--quick") {
      o.quick = true;
    } else {
      std::fprintf(stderr, "usage: gemm_bench [--json PATH] [--iters N] [--quick]\n");
      return 2;
    }
  }
  std::string why;
  if (qrag::backend::CudaDeviceCount(&why) == 0) {
    std::fprintf(stderr, "gemm_bench: no CUDA GPU (%s); this benchmark needs one\n", why.c_str());
    return 1;
  }
  absl::Status s = qrag::bench::Main(o);
  if (!s.ok()) {
    std::fprintf(stderr, "gemm_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
