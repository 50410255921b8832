// The HTTP endpoint Prometheus scrapes: GET /metrics on HOST:PORT, serving an injected prometheus-cpp
// registry in the text exposition format (version 0.0.4, prometheus-cpp's TextSerializer).
//
// A small HTTP/1.1 server of its own rather than prometheus-cpp's civetweb Exposer: civetweb starts its
// threads with ~100 KiB stacks, which cannot hold the static TLS of the CUDA libraries qrag-server links
// (libcublasLt alone has 92 KiB), so pthread_create fails with EINVAL and the exposer cannot start in a
// CUDA build. One thread (normal stack) runs a poll loop over non-blocking sockets: it serves up to 256
// connections at once, each with 5 s for the whole exchange (a deadline from accept, not reset by each byte,
// so a client trickling bytes is dropped on time) and "Connection: close"; past 256 open connections a new
// one is closed at once. A slow or stalled client therefore never delays another scrape. A scrape only reads
// the registry's atomics.
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
  // The HTTP response to one complete request head.
  std::string Answer(const std::string& request) const;

  const int listen_fd_;
  const int wake_fd_;  // eventfd: written by the destructor to end Loop
  std::shared_ptr<prometheus::Registry> registry_;
  const std::string address_;
  std::thread thread_;
};

}  // namespace qrag::metrics

#endif  // QRAG_SERVER_METRICS_METRICS_EXPOSER_H_
