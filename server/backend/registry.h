// Choosing and creating the backend a model runs on (`--device cpu|cuda|auto`). The one place above
// server/backend/cuda/ that knows a CUDA backend may exist; it never includes a CUDA header.
#ifndef QRAG_SERVER_BACKEND_REGISTRY_H_
#define QRAG_SERVER_BACKEND_REGISTRY_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/backend/backend.h"
#include "server/backend/cpu/cpu_backend.h"

namespace qrag::backend {

// kAuto: cuda when this build has the CUDA backend and a GPU is present, else cpu.
enum class Device { kAuto, kCpu, kCuda };

// "auto", "cpu", "cuda".
const char* DeviceName(Device d);
// Accepts the names above (also "gpu" for cuda); INVALID_ARGUMENT listing them otherwise.
absl::StatusOr<Device> ParseDevice(std::string_view name);

// True when this binary was built with the CUDA backend (QRAG_ENABLE_CUDA and the toolkit found).
bool CudaBackendBuilt();
// Number of CUDA GPUs usable by this binary (0 without the CUDA backend), with the reason for 0 in *why.
int CudaGpuCount(std::string* why);

// What kAuto resolves to on this machine (kCpu or kCuda); other values are returned unchanged.
Device ResolveDevice(Device d);

struct BackendOptions {
  Device device = Device::kAuto;
  CpuBackendOptions cpu;
  int cuda_device = 0;        // CUDA device ordinal
  bool cuda_autotune = true;  // time cuBLASLt's top GEMM candidates once per shape
};

// The backend for options.device. For kCuda: FAILED_PRECONDITION naming the cause when the binary has no
// CUDA backend or the machine no usable GPU ("use --device cpu").
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options);

}  // namespace qrag::backend

#endif  // QRAG_SERVER_BACKEND_REGISTRY_H_
