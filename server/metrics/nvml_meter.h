// GPU energy from NVIDIA's management library, loaded at run time with dlopen so that qrag neither links
// nor needs the driver: no library -> OpenEnergyMeter falls back to RAPL or none.
//
// Reads nvmlDeviceGetTotalEnergyConsumption (millijoules since the driver loaded; Volta and newer) and
// nvmlDeviceGetPowerUsage (milliwatts, averaged by the driver over about a second). A GPU without the energy
// counter yields power only (the sampler integrates it). Symbols as in nvml.h of the CUDA toolkit (the
// _v2 entry points, stable since NVML 5.319).
#ifndef QRAG_SERVER_METRICS_NVML_METER_H_
#define QRAG_SERVER_METRICS_NVML_METER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/metrics/energy_meter.h"

namespace qrag::metrics {

struct NvmlOptions {
  std::string library = "libnvidia-ml.so.1";  // dlopen() name or path
  int device_index = 0;                       // NVML index (nvidia-smi's order)
};

class NvmlEnergyMeter final : public EnergyMeter {
 public:
  // NOT_FOUND: the library cannot be loaded (no driver); FAILED_PRECONDITION: a symbol is missing, nvmlInit
  // fails, no such device, or it reports neither energy nor power. The message names the call and NVML's
  // error string.
  static absl::StatusOr<std::unique_ptr<NvmlEnergyMeter>> Open(const NvmlOptions& options);
  ~NvmlEnergyMeter() override;  // nvmlShutdown, dlclose

  absl::StatusOr<EnergyReading> Read() override;
  EnergyDomain domain() const override { return EnergyDomain::kGpu; }
  std::string description() const override { return description_; }

 private:
  struct Api;
  NvmlEnergyMeter(std::unique_ptr<Api> api, std::string description);

  std::unique_ptr<Api> api_;
  std::string description_;
  bool has_energy_ = true;  // false after the counter answered NOT_SUPPORTED
  bool has_power_ = true;
  bool have_first_ = false;
  unsigned long long first_mj_ = 0;  // the counter at the first read: joules are counted from there
};

}  // namespace qrag::metrics

#endif  // QRAG_SERVER_METRICS_NVML_METER_H_
