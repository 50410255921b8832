// The HTTP endpoint Prometheus scrapes: GET /metrics on HOST:PORT, serving an injected prometheus-cpp
// registry in the text exposition format (version 0.0.4, prometheus-cpp's TextSerializer).
//
// On qrag's own HTTP server (server/http/http_server.h) rather than prometheus-cpp's civetweb Exposer: civetweb
// starts its threads with ~100 KiB stacks, which cannot hold the static TLS of the CUDA libraries qrag-server
// links (libcublasLt alone has 92 KiB), so pthread_create fails with EINVAL and the exposer cannot start in a
// CUDA build. One I/O thread (normal stack) serves up to 256 connections at once, event-driven: each request
// has 5 s from its first byte (a deadline not reset by each byte, so a client trickling bytes is dropped on
// time), a connection idle for 5 s (before its first request or between keep-alive scrapes) is closed, and
// past 256 open connections a new one is closed at once. A slow or stalled client therefore never delays
// another scrape. A scrape only reads the registry's atomics, on the I/O thread.
// GET/HEAD /metrics -> 200; another path -> 404; another method -> 405; a malformed request -> 400.
#ifndef QRAG_SERVER_METRICS_METRICS_EXPOSER_H_
#define QRAG_SERVER_METRICS_METRICS_EXPOSER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"
#include "server/http/http_server.h"

namespace qrag::metrics {

struct MetricsExposerOptions {
  std::string listen_address;  // "HOST:PORT" or "[IPv6]:PORT"; port 0 picks a free one (see address())
};

class MetricsExposer {
 public:
  // INVALID_ARGUMENT: not HOST:PORT; UNAVAILABLE: the address cannot be resolved or bound (in use, not local).
  static absl::StatusOr<std::unique_ptr<MetricsExposer>> Start(const MetricsExposerOptions& options,
                                                               std::shared_ptr<prometheus::Registry> registry);
  ~MetricsExposer();  // stops accepting, lets a scrape being sent finish (1 s at most), closes the connections

  // "HOST:PORT" with the bound port.
  const std::string& address() const { return server_->address(); }

 private:
  MetricsExposer() = default;

  std::unique_ptr<http::Server> server_;
};

}  // namespace qrag::metrics

#endif  // QRAG_SERVER_METRICS_METRICS_EXPOSER_H_
