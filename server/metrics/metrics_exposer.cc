#include "server/metrics/metrics_exposer.h"

#include <exception>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "prometheus/exposer.h"

namespace qrag::metrics {

absl::StatusOr<std::unique_ptr<MetricsExposer>> MetricsExposer::Start(const MetricsExposerOptions& options,
                                                                      std::shared_ptr<prometheus::Registry> registry) {
  const std::string& a = options.listen_address;
  const size_t colon = a.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(a.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", a, "' is not HOST:PORT (e.g. 127.0.0.1:9400, port 0 = any free port)"));
  }
  const std::string host = a.substr(0, colon);
  if (options.num_threads <= 0) return absl::InvalidArgumentError("metrics exposer needs at least one thread");
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // civetweb wants "[::1]:port" for IPv6 and "host:port" otherwise; it throws when it cannot bind.
    exposer = std::make_unique<prometheus::Exposer>(a, static_cast<size_t>(options.num_threads));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", a, ": ", e.what()));
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", a, ": no port bound"));
  exposer->RegisterCollectable(registry);
  return std::unique_ptr<MetricsExposer>(new MetricsExposer(std::move(exposer), absl::StrCat(host, ":", ports[0])));
}

MetricsExposer::MetricsExposer(std::unique_ptr<prometheus::Exposer> exposer, std::string address)
    : exposer_(std::move(exposer)), address_(std::move(address)) {}

MetricsExposer::~MetricsExposer() = default;

}  // namespace qrag::metrics
