#include "server/backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/add.cuh"
#include "kernels/argmax.cuh"
#include "kernels/attention.cuh"
#include "kernels/cuda_check.h"
#include "kernels/embed.cuh"
#include "kernels/gemm_epilogue.cuh"
#include "kernels/kv_write.cuh"
#include "kernels/quantize.cuh"
#include "kernels/rms_norm.cuh"
#include "kernels/rope.cuh"
#include "kernels/silu_mul.cuh"
#include "server/common/status.h"
#include "server/quant/row_quant.h"

namespace qrag::backend {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

int64_t RoundUp16(int64_t v) { return (v + 15) / 16 * 16; }

// Rows and row length of a weight as stored here (cuda_backend.h "Weight layout").
int64_t StoredN(const Weight& w) { return w.precision == Precision::kF32 ? w.n : RoundUp16(w.n); }
int64_t StoredK(int64_t k, Precision p) { return p == Precision::kF32 ? k : RoundUp16(k); }

kernels::GemmInput GemmInputOf(Precision p) {
  switch (p) {
    case Precision::kF32: return kernels::GemmInput::kF32;
    case Precision::kBF16: return kernels::GemmInput::kBF16;
    case Precision::kFP8: return kernels::GemmInput::kFP8;
    case Precision::kInt8: return kernels::GemmInput::kInt8;
    case Precision::kW4: break;  // never uploaded here (UploadWeight refuses it)
  }
  return kernels::GemmInput::kF32;
}

kernels::QuantFormat QuantFormatOf(Precision p) {
  switch (p) {
    case Precision::kFP8: return kernels::QuantFormat::kE4M3;
    case Precision::kInt8: return kernels::QuantFormat::kInt8;
    default: return kernels::QuantFormat::kBF16;
  }
}

// Copies rows of `k` elements of `bytes_per` bytes into rows of `kp` (zero padded), `np` rows in all.
std::vector<uint8_t> PadRows(const void* src, int64_t n, int64_t k, int64_t np, int64_t kp, size_t bytes_per) {
  std::vector<uint8_t> out(static_cast<size_t>(np * kp) * bytes_per, 0);
  for (int64_t r = 0; r < n; ++r) {
    std::memcpy(out.data() + static_cast<size_t>(r * kp) * bytes_per,
                static_cast<const uint8_t*>(src) + static_cast<size_t>(r * k) * bytes_per,
                static_cast<size_t>(k) * bytes_per);
  }
  return out;
}

}  // namespace

int CudaDeviceCount(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why != nullptr) *why = absl::StrCat(cudaGetErrorName(err), ": ", cudaGetErrorString(err));
    cudaGetLastError();  // clear the non-sticky error
    return 0;
  }
  if (count == 0 && why != nullptr) *why = "the CUDA runtime reports 0 devices";
  return count;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options) {
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> b, CudaBackend::Create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

CudaBackend::CudaBackend(const CudaBackendOptions& options, std::string name)
    : options_(options), name_(std::move(name)) {}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const CudaBackendOptions& options) {
  std::string why;
  const int count = CudaDeviceCount(&why);
  if (count == 0) {
    return absl::FailedPreconditionError(absl::StrCat("no CUDA GPU is available (", why, ")"));
  }
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", options.device, " does not exist (", count, " device(s): 0..", count - 1, ")"));
  }
  QRAG_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  cudaDeviceProp prop{};
  QRAG_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, options.device));
  std::unique_ptr<CudaBackend> b(new CudaBackend(
      options, absl::StrCat("cuda:", options.device, " (", prop.name, ", sm_", prop.major, prop.minor, ")")));
  QRAG_ASSIGN_OR_RETURN(b->stream_, kernels::CreateCudaStream(cudaStreamNonBlocking));
  QRAG_ASSIGN_OR_RETURN(b->cublas_, kernels::CublasLt::Create());
  kernels::GemmPlanCacheOptions po;
  po.autotune = options.autotune;
  po.max_workspace_bytes = kWorkspaceBytes;
  b->plans_ = std::make_unique<kernels::GemmPlanCache>(b->cublas_->get(), po);
  QRAG_RETURN_IF_ERROR(b->workspace_.Reserve(kWorkspaceBytes, b->stream()));
  return b;
}

CudaBackend::~CudaBackend() {
  // Queued work may still use the scratch buffers; the members then release themselves in reverse order
  // (scratch, plans, the cuBLASLt handle, the stream last).
  if (stream_ != nullptr) cudaStreamSynchronize(stream_.get());
}

void CudaBackend::Record(absl::Status s) {
  if (error_.ok() && !s.ok()) error_ = std::move(s);
}

absl::StatusOr<DeviceBuffer> CudaBackend::Allocate(size_t bytes) {
  absl::StatusOr<kernels::DeviceMemory> memory = kernels::AllocateDeviceMemory(bytes);
  if (!memory.ok()) return absl::Status(memory.status().code(), absl::StrCat(name_, ": ", memory.status().message()));
  QRAG_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(memory->get(), 0, std::max<size_t>(bytes, 1), stream()));
  // The DeviceBuffer owns it from here (Free below).
  return DeviceBuffer(this, memory->release(), bytes);
}

void CudaBackend::Free(void* data, size_t /*bytes*/) {
  // cudaFree waits for the device; a failure here can only be a sticky error already recorded elsewhere.
  cudaFree(data);
}

absl::Status CudaBackend::CopyToDevice(const void* host_src, size_t bytes, void* device_dst) {
  QRAG_RETURN_IF_ERROR(error_);
  if (bytes == 0) return absl::OkStatus();
  QRAG_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, stream()));
  QRAG_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream()));  // the caller may free host_src on return
  return absl::OkStatus();
}

absl::Status CudaBackend::CopyToHost(const void* device_src, size_t bytes, void* host_dst) {
  QRAG_RETURN_IF_ERROR(error_);
  if (bytes == 0) return absl::OkStatus();
  QRAG_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, stream()));
  QRAG_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream()));
  return absl::OkStatus();
}

absl::StatusOr<Weight> CudaBackend::UploadWeight(const float* host, int64_t n, int64_t k, Precision precision,
                                                 const float* host_bias) {
  if (n < 1 || k < 1) return absl::InvalidArgumentError(absl::StrCat("weight [", n, ", ", k, "] is empty"));
  if (precision == Precision::kW4) {
    return absl::UnimplementedError(
        "--quant w4 runs on the CPU backend only so far (use --device cpu); the CUDA backend serves fp32, bf16, "
        "fp8 and int8");
  }
  Weight w;
  w.precision = precision;
  w.n = n;
  w.k = k;
  const int64_t np = StoredN(w), kp = StoredK(k, precision);
  // Quantization happens on the host with the CPU reference's own functions: identical codes and scales.
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  size_t elem = 1;
  switch (precision) {
    case Precision::kF32:
      elem = sizeof(float);
      codes.resize(static_cast<size_t>(n * k) * elem);
      std::memcpy(codes.data(), host, codes.size());
      break;
    case Precision::kBF16: {
      elem = sizeof(uint16_t);
      std::vector<uint16_t> b(static_cast<size_t>(n * k));
      quant::RoundToBf16(host, n * k, b.data());
      codes = PadRows(b.data(), n, k, np, kp, elem);
      break;
    }
    case Precision::kFP8: {
      std::vector<uint8_t> q(static_cast<size_t>(n * k));
      scales.resize(n);
      quant::QuantizeRowsE4M3(host, n, k, q.data(), scales.data());
      codes = PadRows(q.data(), n, k, np, kp, 1);
      break;
    }
    case Precision::kInt8: {
      std::vector<int8_t> q(static_cast<size_t>(n * k));
      scales.resize(n);
      quant::QuantizeRowsInt8(host, n, k, q.data(), scales.data());
      codes = PadRows(q.data(), n, k, np, kp, 1);
      break;
    }
    case Precision::kW4:
      break;  // refused above
  }
  QRAG_ASSIGN_OR_RETURN(w.data, Allocate(codes.size()));
  QRAG_RETURN_IF_ERROR(CopyToDevice(codes.data(), codes.size(), w.data.data()));
  if (!scales.empty()) {
    QRAG_ASSIGN_OR_RETURN(w.scales, Allocate(n * sizeof(float)));
    QRAG_RETURN_IF_ERROR(CopyToDevice(scales.data(), n * sizeof(float), w.scales.data()));
  }
  if (host_bias != nullptr) {
    QRAG_ASSIGN_OR_RETURN(w.bias, Allocate(n * sizeof(float)));
    QRAG_RETURN_IF_ERROR(CopyToDevice(host_bias, n * sizeof(float), w.bias.data()));
  }
  return w;
}

absl::StatusOr<const int32_t*> CudaBackend::UploadInts(const std::vector<int32_t>& host) {
  const size_t bytes = std::max<size_t>(host.size(), 1) * sizeof(int32_t);
  QRAG_RETURN_IF_ERROR(meta_.Reserve(bytes, stream()));
  // From pageable memory this returns once the data is staged, so `host` may change afterwards.
  if (!host.empty()) {
    QRAG_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(meta_.data(), host.data(), host.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream()));
  }
  return static_cast<const int32_t*>(meta_.data());
}

void CudaBackend::Embed(const float* table, int dim, absl::Span<const int32_t> tokens, float* out) {
  if (!error_.ok() || tokens.empty()) return;
  host_meta_.assign(tokens.begin(), tokens.end());
  absl::StatusOr<const int32_t*> ids = UploadInts(host_meta_);
  if (!ids.ok()) return Record(ids.status());
  Record(kernels::CudaStatus(kernels::LaunchEmbed(table, dim, *ids, tokens.size(), out, stream()), "LaunchEmbed",
                             __FILE__, __LINE__));
}

void CudaBackend::RmsNorm(const float* x, const float* weight, int rows, int dim, float eps, float* out) {
  if (!error_.ok()) return;
  Record(kernels::CudaStatus(kernels::LaunchRmsNorm(x, weight, rows, dim, eps, out, stream()), "LaunchRmsNorm",
                             __FILE__, __LINE__));
}

absl::Status CudaBackend::GemmImpl(const float* x, int m, const Weight& w, float* y) {
  const int64_t n = w.n, k = w.k, np = StoredN(w), kp = StoredK(k, w.precision);
  const bool quantized = w.precision == Precision::kFP8 || w.precision == Precision::kInt8;
  const float* bias = w.bias.empty() ? nullptr : w.bias.as<float>();

  kernels::GemmArgs args;
  args.w = w.data.data();
  args.workspace = workspace_.data();
  args.workspace_bytes = workspace_.bytes();
  if (w.precision == Precision::kF32) {
    args.x = x;
  } else {
    const size_t code_bytes = static_cast<size_t>(m) * kp * (w.precision == Precision::kBF16 ? 2 : 1);
    QRAG_RETURN_IF_ERROR(act_codes_.Reserve(code_bytes, stream()));
    QRAG_RETURN_IF_ERROR(act_scales_.Reserve(static_cast<size_t>(m) * sizeof(float), stream()));
    QRAG_CUDA_RETURN_IF_ERROR(kernels::LaunchQuantizeRows(x, m, static_cast<int>(k), static_cast<int>(kp),
                                                          QuantFormatOf(w.precision), act_codes_.data(),
                                                          static_cast<float*>(act_scales_.data()), stream()));
    args.x = act_codes_.data();
  }
  // The GEMM writes y itself when no epilogue is needed; else raw sums into acc_ for the epilogue kernel.
  const bool direct = !quantized && bias == nullptr && np == n;
  if (direct) {
    args.d = y;
  } else {
    QRAG_RETURN_IF_ERROR(acc_.Reserve(static_cast<size_t>(m) * np * 4, stream()));
    args.d = acc_.data();
  }
  kernels::GemmDesc desc;
  desc.input = GemmInputOf(w.precision);
  desc.output = w.precision == Precision::kInt8 ? kernels::GemmOutput::kInt32 : kernels::GemmOutput::kF32;
  desc.m = m;
  desc.n = np;
  desc.k = kp;
  QRAG_ASSIGN_OR_RETURN(const kernels::GemmPlan* plan, plans_->Get(desc, args, stream()));
  QRAG_RETURN_IF_ERROR(kernels::RunGemm(cublas_->get(), *plan, args, stream()));
  if (direct) return absl::OkStatus();
  kernels::GemmEpilogueArgs e;
  e.acc = acc_.data();
  e.acc_is_int32 = w.precision == Precision::kInt8;
  e.m = m;
  e.n = n;
  e.ld = np;
  if (quantized) {
    e.x_scale = static_cast<const float*>(act_scales_.data());
    e.w_scale = w.scales.as<float>();
  }
  e.bias = bias;
  e.y = y;
  QRAG_CUDA_RETURN_IF_ERROR(kernels::LaunchGemmEpilogue(e, stream()));
  return absl::OkStatus();
}

GemmStats CudaBackend::Gemm(const float* x, int m, const Weight& w, float* y) {
  const GemmStats stats{w.precision, 2 * static_cast<int64_t>(m) * w.n * w.k};
  if (error_.ok() && m > 0) Record(GemmImpl(x, m, w, y));
  return stats;
}

void CudaBackend::Rope(float* q, float* k, absl::Span<const int32_t> positions, const AttentionShape& shape,
                       const float* inv_freq, RopePairing pairing) {
  if (!error_.ok() || positions.empty()) return;
  host_meta_.assign(positions.begin(), positions.end());
  absl::StatusOr<const int32_t*> pos = UploadInts(host_meta_);
  if (!pos.ok()) return Record(pos.status());
  Record(kernels::CudaStatus(kernels::LaunchRope(q, k, *pos, positions.size(), shape.n_heads, shape.n_kv_heads,
                                                 shape.head_dim, inv_freq, pairing == RopePairing::kInterleaved,
                                                 stream()),
                             "LaunchRope", __FILE__, __LINE__));
}

absl::StatusOr<kernels::PagedBatchView> CudaBackend::UploadBatch(const AttentionBatch& batch,
                                                                 const KvLayer& cache) {
  const size_t tokens = batch.positions.size();
  if (batch.token_seq.size() != tokens) {
    return absl::InvalidArgumentError("attention batch: token_seq and positions differ in length");
  }
  if (batch.block_size < 1) return absl::InvalidArgumentError("attention batch: block_size must be >= 1");
  // Layout of host_meta_: positions, token_seq, table_offsets, tables (kernels/paged_batch.h).
  host_meta_.clear();
  host_meta_.insert(host_meta_.end(), batch.positions.begin(), batch.positions.end());
  host_meta_.insert(host_meta_.end(), batch.token_seq.begin(), batch.token_seq.end());
  const size_t offsets_at = host_meta_.size();
  int32_t offset = 0;
  for (const auto& s : batch.sequences) {
    host_meta_.push_back(offset);
    offset += static_cast<int32_t>(s.block_table.size());
  }
  host_meta_.push_back(offset);
  const size_t tables_at = host_meta_.size();
  for (const auto& s : batch.sequences) {
    for (int32_t b : s.block_table) {
      if (b < 0 || (static_cast<int64_t>(b) + 1) * batch.block_size > cache.num_slots) {
        return absl::InvalidArgumentError(absl::StrCat("attention batch: block ", b, " is outside the cache (",
                                                       cache.num_slots, " slots)"));
      }
    }
    host_meta_.insert(host_meta_.end(), s.block_table.begin(), s.block_table.end());
  }
  for (size_t t = 0; t < tokens; ++t) {
    const int32_t seq = batch.token_seq[t], pos = batch.positions[t];
    if (seq < 0 || static_cast<size_t>(seq) >= batch.sequences.size() || pos < 0 ||
        static_cast<size_t>(pos / batch.block_size) >= batch.sequences[seq].block_table.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention batch: token ", t, " (sequence ", seq, ", position ", pos,
                       ") has no block in its block table"));
    }
  }
  QRAG_ASSIGN_OR_RETURN(const int32_t* d, UploadInts(host_meta_));
  kernels::PagedBatchView v;
  v.positions = d;
  v.token_seq = d + tokens;
  v.table_offsets = d + offsets_at;
  v.tables = d + tables_at;
  v.tokens = static_cast<int64_t>(tokens);
  v.block_size = batch.block_size;
  v.sliding_window = batch.sliding_window;
  return v;
}

void CudaBackend::KvWrite(const float* k, const float* v, const AttentionBatch& batch, const AttentionShape& shape,
                          const KvLayer& cache) {
  if (!error_.ok() || batch.positions.empty()) return;
  absl::StatusOr<kernels::PagedBatchView> view = UploadBatch(batch, cache);
  if (!view.ok()) return Record(view.status());
  const kernels::PagedKvView kv{cache.k, cache.v, cache.num_slots};
  Record(kernels::CudaStatus(kernels::LaunchKvWrite(k, v, *view, shape.n_kv_heads * shape.head_dim, kv, stream()),
                             "LaunchKvWrite", __FILE__, __LINE__));
}

int64_t CudaBackend::Attention(const float* q, const KvLayer& cache, const AttentionBatch& batch,
                               const AttentionShape& shape, float* out) {
  int64_t ops = 0;
  for (int32_t pos : batch.positions) {
    const int32_t start = batch.sliding_window > 0 ? std::max(0, pos - batch.sliding_window + 1) : 0;
    ops += 2LL * 2 * (pos - start + 1) * shape.head_dim * shape.n_heads;  // QK^T and PV, as the CPU counts
  }
  if (!error_.ok() || batch.positions.empty()) return ops;
  absl::StatusOr<kernels::PagedBatchView> view = UploadBatch(batch, cache);
  if (!view.ok()) {
    Record(view.status());
    return ops;
  }
  const kernels::PagedKvView kv{cache.k, cache.v, cache.num_slots};
  Record(kernels::CudaStatus(
      kernels::LaunchAttention(q, kv, *view, shape.n_heads, shape.n_kv_heads, shape.head_dim, out, stream()),
      "LaunchAttention", __FILE__, __LINE__));
  return ops;
}

void CudaBackend::SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  if (!error_.ok()) return;
  Record(kernels::CudaStatus(kernels::LaunchSiluMul(gate, up, n, out, stream()), "LaunchSiluMul", __FILE__,
                             __LINE__));
}

void CudaBackend::Add(float* x, const float* y, int64_t n) {
  if (!error_.ok()) return;
  Record(kernels::CudaStatus(kernels::LaunchAdd(x, y, n, stream()), "LaunchAdd", __FILE__, __LINE__));
}

absl::StatusOr<std::vector<int32_t>> CudaBackend::Argmax(const float* logits, int rows, int vocab) {
  QRAG_RETURN_IF_ERROR(error_);
  QRAG_RETURN_IF_ERROR(meta_.Reserve(std::max(rows, 1) * sizeof(int32_t), stream()));
  int32_t* ids = static_cast<int32_t*>(meta_.data());
  QRAG_CUDA_RETURN_IF_ERROR(kernels::LaunchArgmax(logits, rows, vocab, ids, stream()));
  std::vector<int32_t> out(rows);
  QRAG_RETURN_IF_ERROR(CopyToHost(ids, rows * sizeof(int32_t), out.data()));
  return out;
}

absl::Status CudaBackend::Synchronize() {
  QRAG_RETURN_IF_ERROR(error_);
  const absl::Status s = kernels::CudaStatus(cudaStreamSynchronize(stream()), "cudaStreamSynchronize", __FILE__,
                                             __LINE__);
  Record(s);
  return s;
}

}  // namespace qrag::backend
