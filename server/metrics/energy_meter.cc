#include "server/metrics/energy_meter.h"

#include <string_view>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/metrics/nvml_meter.h"
#include "server/metrics/rapl_meter.h"

namespace qrag::metrics {

const char* EnergyDomainName(EnergyDomain d) { return d == EnergyDomain::kGpu ? "gpu" : "cpu"; }

absl::StatusOr<EnergyMeterKind> ParseEnergyMeterKind(std::string_view name) {
  if (name == "auto") return EnergyMeterKind::kAuto;
  if (name == "nvml") return EnergyMeterKind::kNvml;
  if (name == "rapl") return EnergyMeterKind::kRapl;
  if (name == "none") return EnergyMeterKind::kNone;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown energy meter '", std::string(name), "': use auto, nvml, rapl or none"));
}

namespace {

absl::StatusOr<std::unique_ptr<EnergyMeter>> OpenNvml(const EnergyMeterOptions& o) {
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<NvmlEnergyMeter> m,
                        NvmlEnergyMeter::Open({.library = o.nvml_library, .device_index = o.nvml_device_index}));
  return std::unique_ptr<EnergyMeter>(std::move(m));
}

absl::StatusOr<std::unique_ptr<EnergyMeter>> OpenRapl(const EnergyMeterOptions& o) {
  QRAG_ASSIGN_OR_RETURN(std::unique_ptr<RaplEnergyMeter> m, RaplEnergyMeter::Open({.root = o.powercap_root}));
  return std::unique_ptr<EnergyMeter>(std::move(m));
}

}  // namespace

absl::StatusOr<EnergyMeterChoice> OpenEnergyMeter(const EnergyMeterOptions& options) {
  EnergyMeterChoice choice;
  switch (options.kind) {
    case EnergyMeterKind::kNone:
      choice.reason = "energy meter disabled (--energy-meter none)";
      return choice;
    case EnergyMeterKind::kNvml: {
      QRAG_ASSIGN_OR_RETURN(choice.meter, OpenNvml(options));
      return choice;
    }
    case EnergyMeterKind::kRapl: {
      QRAG_ASSIGN_OR_RETURN(choice.meter, OpenRapl(options));
      return choice;
    }
    case EnergyMeterKind::kAuto:
      break;
  }
  absl::StatusOr<std::unique_ptr<EnergyMeter>> nvml = OpenNvml(options);
  if (nvml.ok()) {
    choice.meter = *std::move(nvml);
    return choice;
  }
  absl::StatusOr<std::unique_ptr<EnergyMeter>> rapl = OpenRapl(options);
  if (rapl.ok()) {
    choice.meter = *std::move(rapl);
    return choice;
  }
  choice.reason = absl::StrCat("no energy meter: NVML: ", nvml.status().message(), "; RAPL: ",
                               rapl.status().message());
  return choice;
}

}  // namespace qrag::metrics
