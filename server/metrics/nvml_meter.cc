#include "server/metrics/nvml_meter.h"

#include <dlfcn.h>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::metrics {
namespace {

// From nvml.h: nvmlReturn_t is an enum (0 = NVML_SUCCESS), nvmlDevice_t an opaque pointer.
using NvmlReturn = int;
using NvmlDevice = void*;
constexpr NvmlReturn kNvmlSuccess = 0;
constexpr NvmlReturn kNvmlErrorNotSupported = 3;

// dlopen handle, closed on destruction.
class DlHandle {
 public:
  explicit DlHandle(void* h) : h_(h) {}
  ~DlHandle() {
    if (h_ != nullptr) dlclose(h_);
  }
  DlHandle(const DlHandle&) = delete;
  DlHandle& operator=(const DlHandle&) = delete;
  void* get() const { return h_; }

 private:
  void* h_;
};

}  // namespace

struct NvmlEnergyMeter::Api {
  std::unique_ptr<DlHandle> lib;
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  const char* (*error_string)(NvmlReturn) = nullptr;
  NvmlReturn (*get_handle)(unsigned int, NvmlDevice*) = nullptr;
  NvmlReturn (*get_name)(NvmlDevice, char*, unsigned int) = nullptr;
  NvmlReturn (*get_power)(NvmlDevice, unsigned int*) = nullptr;
  NvmlReturn (*get_energy)(NvmlDevice, unsigned long long*) = nullptr;
  NvmlDevice device = nullptr;
  bool initialized = false;

  std::string Error(const char* call, NvmlReturn r) const {
    return absl::StrCat(call, " failed: ", error_string != nullptr ? error_string(r) : "?", " (", r, ")");
  }
};

absl::StatusOr<std::unique_ptr<NvmlEnergyMeter>> NvmlEnergyMeter::Open(const NvmlOptions& options) {
  if (options.device_index < 0) {
    return absl::InvalidArgumentError(absl::StrCat("NVML device index must be >= 0, got ", options.device_index));
  }
  auto api = std::make_unique<Api>();
  dlerror();
  void* handle = dlopen(options.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return absl::NotFoundError(absl::StrCat("cannot load ", options.library, " (no NVIDIA driver?): ",
                                            why != nullptr ? why : "dlopen failed"));
  }
  api->lib = std::make_unique<DlHandle>(handle);
  auto bind = [&](auto* fn, const char* name) -> absl::Status {
    void* sym = dlsym(handle, name);
    if (sym == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(options.library, " lacks ", name, ": not an NVML library"));
    }
    *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)>>(sym);
    return absl::OkStatus();
  };
  QRAG_RETURN_IF_ERROR(bind(&api->error_string, "nvmlErrorString"));
  QRAG_RETURN_IF_ERROR(bind(&api->init, "nvmlInit_v2"));
  QRAG_RETURN_IF_ERROR(bind(&api->shutdown, "nvmlShutdown"));
  QRAG_RETURN_IF_ERROR(bind(&api->get_handle, "nvmlDeviceGetHandleByIndex_v2"));
  QRAG_RETURN_IF_ERROR(bind(&api->get_name, "nvmlDeviceGetName"));
  QRAG_RETURN_IF_ERROR(bind(&api->get_power, "nvmlDeviceGetPowerUsage"));
  QRAG_RETURN_IF_ERROR(bind(&api->get_energy, "nvmlDeviceGetTotalEnergyConsumption"));
  if (NvmlReturn r = api->init(); r != kNvmlSuccess) {
    return absl::FailedPreconditionError(api->Error("nvmlInit_v2", r));
  }
  api->initialized = true;
  const unsigned int index = static_cast<unsigned int>(options.device_index);
  if (NvmlReturn r = api->get_handle(index, &api->device); r != kNvmlSuccess) {
    api->shutdown();
    return absl::FailedPreconditionError(
        absl::StrCat("GPU ", index, ": ", api->Error("nvmlDeviceGetHandleByIndex_v2", r)));
  }
  char name[96] = {0};
  if (api->get_name(api->device, name, sizeof(name) - 1) != kNvmlSuccess) name[0] = '\0';
  std::unique_ptr<NvmlEnergyMeter> meter(
      new NvmlEnergyMeter(std::move(api), absl::StrCat("nvml: ", name[0] ? name : "NVIDIA GPU", " (GPU ", index, ")")));
  QRAG_ASSIGN_OR_RETURN(EnergyReading first, meter->Read());
  (void)first;
  return meter;
}

NvmlEnergyMeter::NvmlEnergyMeter(std::unique_ptr<Api> api, std::string description)
    : api_(std::move(api)), description_(std::move(description)) {}

NvmlEnergyMeter::~NvmlEnergyMeter() {
  if (api_ != nullptr && api_->initialized) api_->shutdown();
}

absl::StatusOr<EnergyReading> NvmlEnergyMeter::Read() {
  EnergyReading reading;
  if (has_energy_) {
    unsigned long long mj = 0;
    const NvmlReturn r = api_->get_energy(api_->device, &mj);
    if (r == kNvmlErrorNotSupported) {
      has_energy_ = false;  // pre-Volta: power only
    } else if (r != kNvmlSuccess) {
      return absl::UnavailableError(api_->Error("nvmlDeviceGetTotalEnergyConsumption", r));
    } else {
      if (!have_first_) {
        first_mj_ = mj;
        have_first_ = true;
      }
      reading.joules = static_cast<double>(mj - first_mj_) / 1000.0;  // the counter never decreases
    }
  }
  if (has_power_) {
    unsigned int mw = 0;
    const NvmlReturn r = api_->get_power(api_->device, &mw);
    if (r == kNvmlErrorNotSupported) {
      has_power_ = false;
    } else if (r != kNvmlSuccess) {
      return absl::UnavailableError(api_->Error("nvmlDeviceGetPowerUsage", r));
    } else {
      reading.watts = static_cast<double>(mw) / 1000.0;
    }
  }
  if (!has_energy_ && !has_power_) {
    return absl::FailedPreconditionError(
        absl::StrCat(description_, " reports neither total energy nor power usage (NOT_SUPPORTED)"));
  }
  return reading;
}

}  // namespace qrag::metrics
