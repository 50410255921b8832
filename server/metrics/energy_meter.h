// Energy meters: where qrag's joules come from. One interface over NVML (GPU, nvml_meter.h), Linux RAPL
// powercap (CPU packages, rapl_meter.h) and test fakes; "none" is the absence of a meter.
//
// A meter is read on the EnergySampler's background thread only (energy_sampler.h), never on the engine's.
#ifndef QRAG_SERVER_METRICS_ENERGY_METER_H_
#define QRAG_SERVER_METRICS_ENERGY_METER_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace qrag::metrics {

// Where the energy is spent: decides the metric names (qrag_gpu_* or qrag_cpu_*).
enum class EnergyDomain { kGpu, kCpu };

// "gpu" or "cpu".
const char* EnergyDomainName(EnergyDomain d);

// One reading. At least one of the two is set.
struct EnergyReading {
  // Joules since an arbitrary origin fixed when the meter opened, never decreasing (wraparounds of the
  // hardware counter already unwrapped). Unset when the device has no energy counter.
  std::optional<double> joules;
  // Instantaneous power, when the device reports it.
  std::optional<double> watts;
};

class EnergyMeter {
 public:
  virtual ~EnergyMeter() = default;
  // Reads the device now (may take a system call or a driver call). Not thread-safe: one reader.
  virtual absl::StatusOr<EnergyReading> Read() = 0;
  virtual EnergyDomain domain() const = 0;
  // What is measured, for the log: "nvml: NVIDIA H100 80GB HBM3 (GPU 0)", "rapl: package-0 + package-1".
  virtual std::string description() const = 0;
};

enum class EnergyMeterKind { kAuto, kNvml, kRapl, kNone };

// "auto", "nvml", "rapl", "none"; INVALID_ARGUMENT naming them otherwise.
absl::StatusOr<EnergyMeterKind> ParseEnergyMeterKind(std::string_view name);

struct EnergyMeterOptions {
  EnergyMeterKind kind = EnergyMeterKind::kAuto;
  std::string nvml_library = "libnvidia-ml.so.1";  // dlopen()ed by name or path
  int nvml_device_index = 0;
  std::string powercap_root = "/sys/class/powercap";
};

// The chosen meter, or none with the reason (every meter tried and why it could not be used).
struct EnergyMeterChoice {
  std::unique_ptr<EnergyMeter> meter;  // null: no meter, the energy metrics are absent
  std::string reason;                  // why there is no meter (empty when there is one)
};

// kAuto tries NVML, then RAPL, and settles for none; kNvml/kRapl open that meter or fail with its error
// (NOT_FOUND: library or files absent, PERMISSION_DENIED: not readable, FAILED_PRECONDITION: unusable);
// kNone gives none. The first successful read is part of opening.
absl::StatusOr<EnergyMeterChoice> OpenEnergyMeter(const EnergyMeterOptions& options);

}  // namespace qrag::metrics

#endif  // QRAG_SERVER_METRICS_ENERGY_METER_H_
