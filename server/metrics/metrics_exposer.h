// The HTTP endpoint Prometheus scrapes: GET /metrics on HOST:PORT, serving an injected prometheus-cpp
// registry in the text exposition format (version 0.0.4, prometheus-cpp's TextSerializer).
//
// A small HTTP/1.1 server of its own rather than prometheus-cpp's civetweb Exposer: civetweb starts its
// threads with ~100 KiB stacks, which cannot hold the static TLS of the CUDA libraries qrag-server links
// (libcublasLt alone has 92 KiB), so pthread_create fails with EINVAL and the exposer cannot start in a
// CUDA build. One thread (normal stack) accepts and answers scrapes one at a time, each connection with a
// 5 s I/O timeout and "Connection: close"; a scrape only reads the registry's atomics.
// GET/HEAD /metrics -> 200; another path -> 404; another method -> 405; a malformed request -> 400.
#ifndef QRAG_SERVER_METRICS_METRICS_EXPOSER_H_
#define QRAG_SERVER_METRICS_METRICS_EXPOSER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"

namespace qrag::metrics {

struct MetricsExposerOptions {
  std::string listen_address;  // "HOST:PORT" or "[IPv6]:PORT"; port 0 picks a free one (see address())
};

class MetricsExposer {
 public:
  // INVALID_ARGUMENT: not HOST:PORT; UNAVAILABLE: the address cannot be resolved or bound (in use, not local).
  static absl::StatusOr<std::unique_ptr<MetricsExposer>> Start(const MetricsExposerOptions& options,
                                                               std::shared_ptr<prometheus::Registry> registry);
  ~MetricsExposer();  // stops accepting, finishes the scrape in progress, closes the socket

  // "HOST:PORT" with the bound port.
  const std::string& address() const { return address_; }

 private:
  MetricsExposer(int listen_fd, int wake_fd, std::shared_ptr<prometheus::Registry> registry, std::string address);
  void Loop();
  void Serve(int fd);

  const int listen_fd_;
  const int wake_fd_;  // eventfd: written by the destructor to end Loop
  std::shared_ptr<prometheus::Registry> registry_;
  const std::string address_;
  std::thread thread_;
};

}  // namespace qrag::metrics

#endif  // QRAG_SERVER_METRICS_METRICS_EXPOSER_H_
