#include "server/metrics/metrics_exposer.h"

#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "prometheus/text_serializer.h"

namespace qrag::metrics {
namespace {

http::Response Text(int status, std::string body) {
  http::Response r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

// The answer to one request (HEAD gets the same headers without the body: the HTTP server's rule).
http::Response Answer(const http::Request& request, const prometheus::Registry& registry) {
  if (request.path.empty() || request.path.front() != '/') return Text(400, "malformed HTTP request target\n");
  if (request.method != "GET" && request.method != "HEAD") {
    http::Response r = Text(405, "use GET /metrics\n");
    r.headers.push_back({"Allow", "GET, HEAD"});
    return r;
  }
  if (request.path != "/metrics") return Text(404, "not found: the metrics are at /metrics\n");
  http::Response r = Text(200, prometheus::TextSerializer().Serialize(registry.Collect()));
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  return r;
}

// The HTTP server's address errors, worded for the metrics endpoint ("metrics address '...' is not HOST:PORT",
// "cannot serve metrics on ...": what --metrics-listen users and tests read).
absl::Status ForMetrics(const absl::Status& status) {
  absl::string_view message = status.message();
  if (absl::ConsumePrefix(&message, "cannot serve on ")) {
    return absl::Status(status.code(), absl::StrCat("cannot serve metrics on ", message));
  }
  return absl::Status(status.code(), absl::StrCat("metrics ", message));
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsExposer>> MetricsExposer::Start(const MetricsExposerOptions& options,
                                                                      std::shared_ptr<prometheus::Registry> registry) {
  http::ServerOptions http_options;
  http_options.listen_address = options.listen_address;
  http_options.threads = 1;  // a scrape is a few microseconds of serialization
  http_options.max_body_bytes = 64 * 1024;
  http_options.request_timeout = absl::Seconds(5);
  http_options.idle_timeout = absl::Seconds(5);
  http_options.write_timeout = absl::Seconds(5);
  http_options.max_connections = 256;
  auto server = http::Server::Start(std::move(http_options), [registry](std::shared_ptr<http::Exchange> exchange) {
    exchange->Respond(Answer(exchange->request(), *registry));
  });
  if (!server.ok()) return ForMetrics(server.status());
  std::unique_ptr<MetricsExposer> exposer(new MetricsExposer());
  exposer->server_ = *std::move(server);
  return exposer;
}

MetricsExposer::~MetricsExposer() { server_->Shutdown(absl::Seconds(1)); }

}  // namespace qrag::metrics
