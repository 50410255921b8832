// The HTTP endpoint Prometheus scrapes: GET /metrics on HOST:PORT (prometheus-cpp's civetweb exposer),
// serving an injected registry in the text exposition format. Scrapes run on the exposer's own threads and
// only read the registry's atomics.
#ifndef QRAG_SERVER_METRICS_METRICS_EXPOSER_H_
#define QRAG_SERVER_METRICS_METRICS_EXPOSER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}

namespace qrag::metrics {

struct MetricsExposerOptions {
  std::string listen_address;  // "HOST:PORT"; port 0 picks a free one (see address())
  int num_threads = 2;         // HTTP worker threads
};

class MetricsExposer {
 public:
  // INVALID_ARGUMENT: not HOST:PORT; UNAVAILABLE: the address cannot be bound (in use, not local).
  static absl::StatusOr<std::unique_ptr<MetricsExposer>> Start(const MetricsExposerOptions& options,
                                                               std::shared_ptr<prometheus::Registry> registry);
  ~MetricsExposer();  // stops serving

  // "HOST:PORT" with the bound port.
  const std::string& address() const { return address_; }

 private:
  MetricsExposer(std::unique_ptr<prometheus::Exposer> exposer, std::string address);
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;
};

}  // namespace qrag::metrics

#endif  // QRAG_SERVER_METRICS_METRICS_EXPOSER_H_
