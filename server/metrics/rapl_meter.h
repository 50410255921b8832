// CPU package energy from Linux's powercap interface to Intel/AMD RAPL:
// <root>/intel-rapl:N/energy_uj (microjoules, wraps at max_energy_range_uj), one directory per package.
// Only the top-level package zones are summed (their subzones, core and uncore, are part of them; DRAM is
// not counted). Since Linux 5.10 energy_uj is readable by root only (CVE-2020-8694): then Open fails with
// PERMISSION_DENIED and the log says so.
#ifndef QRAG_SERVER_METRICS_RAPL_METER_H_
#define QRAG_SERVER_METRICS_RAPL_METER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/metrics/energy_meter.h"

namespace qrag::metrics {

struct RaplOptions {
  std::string root = "/sys/class/powercap";
};

class RaplEnergyMeter final : public EnergyMeter {
 public:
  // NOT_FOUND: no powercap directory or no intel-rapl:N package zone; PERMISSION_DENIED: energy_uj not
  // readable; FAILED_PRECONDITION: a file that does not hold a number.
  static absl::StatusOr<std::unique_ptr<RaplEnergyMeter>> Open(const RaplOptions& options);

  // Joules since Open, summed over the packages; power is left to the sampler (RAPL has no power file).
  absl::StatusOr<EnergyReading> Read() override;
  EnergyDomain domain() const override { return EnergyDomain::kCpu; }
  std::string description() const override { return description_; }

 private:
  struct Zone {
    std::string energy_path;
    uint64_t max_range_uj = 0;  // the counter wraps to 0 after this value
    uint64_t last_uj = 0;
    uint64_t total_uj = 0;      // unwrapped, since Open
  };
  explicit RaplEnergyMeter(std::vector<Zone> zones, std::string description)
      : zones_(std::move(zones)), description_(std::move(description)) {}

  std::vector<Zone> zones_;
  std::string description_;
};

// The energy between two raw readings of a counter that wraps after max_range (exclusive of a full turn:
// between two reads at most one wrap is assumed, as the sampler reads far more often than the ~60 s a
// package takes to wrap at full power).
uint64_t RaplDelta(uint64_t previous, uint64_t current, uint64_t max_range);

}  // namespace qrag::metrics

#endif  // QRAG_SERVER_METRICS_RAPL_METER_H_
