#include "server/backend/registry.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/common/status.h"

#if QRAG_HAVE_CUDA_BACKEND
#include "server/backend/cuda/cuda_device.h"
#endif

namespace qrag::backend {

const char* DeviceName(Device d) {
  switch (d) {
    case Device::kAuto: return "auto";
    case Device::kCpu: return "cpu";
    case Device::kCuda: return "cuda";
  }
  return "?";
}

absl::StatusOr<Device> ParseDevice(std::string_view name) {
  const std::string n = absl::AsciiStrToLower(std::string(name));
  if (n == "auto") return Device::kAuto;
  if (n == "cpu") return Device::kCpu;
  if (n == "cuda" || n == "gpu") return Device::kCuda;
  return absl::InvalidArgumentError(absl::StrCat("unknown device '", std::string(name), "' (use cuda, cpu or auto)"));
}

bool CudaBackendBuilt() { return QRAG_HAVE_CUDA_BACKEND != 0; }

int CudaGpuCount(std::string* why) {
#if QRAG_HAVE_CUDA_BACKEND
  return CudaDeviceCount(why);
#else
  if (why != nullptr) *why = "this qrag was built without the CUDA backend (QRAG_ENABLE_CUDA=OFF or no CUDA toolkit)";
  return 0;
#endif
}

Device ResolveDevice(Device d) {
  if (d != Device::kAuto) return d;
  return CudaGpuCount(nullptr) > 0 ? Device::kCuda : Device::kCpu;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options) {
  switch (ResolveDevice(options.device)) {
    case Device::kCuda: {
      std::string why;
      if (CudaGpuCount(&why) == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("--device cuda: no usable CUDA GPU (", why, "); use --device cpu or auto"));
      }
#if QRAG_HAVE_CUDA_BACKEND
      CudaBackendOptions co;
      co.device = options.cuda_device;
      co.autotune = options.cuda_autotune;
      return CreateCudaBackend(co);
#else
      break;
#endif
    }
    case Device::kCpu:
    case Device::kAuto:
      break;
  }
  return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(options.cpu));
}

}  // namespace qrag::backend
