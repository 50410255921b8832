#include "server/metrics/rapl_meter.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status.h"

namespace qrag::metrics {
namespace {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    const int err = errno;
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(absl::StrCat(
          path, " is not readable (", std::strerror(err),
          "): since Linux 5.10 RAPL energy is root-only; run as root or grant read access to use --energy-meter rapl"));
    }
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(err)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::PermissionDeniedError(absl::StrCat(path, " could not be read"));
  return ss.str();
}

absl::StatusOr<uint64_t> ReadCounter(const std::string& path) {
  QRAG_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  uint64_t v = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &v)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " holds '", absl::StripAsciiWhitespace(text),
                                                      "', not a non-negative integer"));
  }
  return v;
}

// "intel-rapl:0" (a package), not "intel-rapl:0:1" (a subzone) nor "intel-rapl" (the control type).
bool IsPackageZone(const std::string& name) {
  constexpr std::string_view kPrefix = "intel-rapl:";
  if (name.rfind(kPrefix, 0) != 0 || name.size() == kPrefix.size()) return false;
  return std::all_of(name.begin() + kPrefix.size(), name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

uint64_t RaplDelta(uint64_t previous, uint64_t current, uint64_t max_range) {
  if (current >= previous) return current - previous;
  return max_range - previous + current;  // wrapped once past max_range to 0
}

absl::StatusOr<std::unique_ptr<RaplEnergyMeter>> RaplEnergyMeter::Open(const RaplOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_directory(options.root, ec)) {
    return absl::NotFoundError(absl::StrCat(options.root, " does not exist (no powercap/RAPL in this kernel or VM)"));
  }
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(options.root, ec)) {
    const std::string name = entry.path().filename().string();
    if (IsPackageZone(name)) names.push_back(name);
  }
  if (ec) return absl::NotFoundError(absl::StrCat("cannot list ", options.root, ": ", ec.message()));
  if (names.empty()) return absl::NotFoundError(absl::StrCat(options.root, " has no intel-rapl:N package zone"));
  std::sort(names.begin(), names.end());
  std::vector<Zone> zones;
  std::vector<std::string> labels;
  for (const std::string& name : names) {
    const std::string dir = absl::StrCat(options.root, "/", name);
    Zone z;
    z.energy_path = dir + "/energy_uj";
    QRAG_ASSIGN_OR_RETURN(z.max_range_uj, ReadCounter(dir + "/max_energy_range_uj"));
    if (z.max_range_uj == 0) {
      return absl::FailedPreconditionError(absl::StrCat(dir, "/max_energy_range_uj is 0"));
    }
    QRAG_ASSIGN_OR_RETURN(z.last_uj, ReadCounter(z.energy_path));
    absl::StatusOr<std::string> label = ReadSmallFile(dir + "/name");
    labels.push_back(label.ok() ? std::string(absl::StripAsciiWhitespace(*label)) : name);
    zones.push_back(std::move(z));
  }
  return std::unique_ptr<RaplEnergyMeter>(
      new RaplEnergyMeter(std::move(zones), absl::StrCat("rapl: ", absl::StrJoin(labels, " + "))));
}

absl::StatusOr<EnergyReading> RaplEnergyMeter::Read() {
  uint64_t total = 0;
  for (Zone& z : zones_) {
    QRAG_ASSIGN_OR_RETURN(uint64_t now, ReadCounter(z.energy_path));
    z.total_uj += RaplDelta(z.last_uj, now, z.max_range_uj);
    z.last_uj = now;
    total += z.total_uj;
  }
  EnergyReading r;
  r.joules = static_cast<double>(total) * 1e-6;
  return r;
}

}  // namespace qrag::metrics
