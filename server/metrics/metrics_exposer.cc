#include "server/metrics/metrics_exposer.h"

#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "prometheus/text_serializer.h"

namespace qrag::metrics {
namespace {

constexpr size_t kMaxRequestBytes = 16 * 1024;
constexpr int kIoTimeoutSeconds = 5;   // for a whole exchange, from accept to the last byte sent
constexpr size_t kMaxConnections = 256;

std::string Response(int code, const char* reason, const std::string& content_type, const std::string& body,
                     bool head, const char* extra_header = "") {
  return absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\n", extra_header, "Connection: close\r\n\r\n",
                      head ? "" : body);
}

}  // namespace

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
  std::string host = a.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", a, ": ", gai_strerror(rc)));
  }
  int fd = -1;
  std::string error = "no address";
  for (addrinfo* ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      error = absl::StrCat("socket: ", std::strerror(errno));
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));  // restart after TIME_WAIT; not a shared port
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 256) != 0) {
      error = std::strerror(errno);
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", a, ": ", error));
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  const int wake = eventfd(0, EFD_CLOEXEC);
  if (wake < 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot serve metrics: eventfd: ", std::strerror(errno)));
  }
  return std::unique_ptr<MetricsExposer>(
      new MetricsExposer(fd, wake, std::move(registry), absl::StrCat(a.substr(0, colon), ":", bound_port)));
}

MetricsExposer::MetricsExposer(int listen_fd, int wake_fd, std::shared_ptr<prometheus::Registry> registry,
                               std::string address)
    : listen_fd_(listen_fd), wake_fd_(wake_fd), registry_(std::move(registry)), address_(std::move(address)) {
  thread_ = std::thread([this] { Loop(); });
}

MetricsExposer::~MetricsExposer() {
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  close(wake_fd_);
}

namespace {

// One client connection of the exposer's event loop: the request read so far, then the response being sent.
struct Connection {
  int fd = -1;
  std::string in;
  std::string out;    // the whole response, once the request is complete
  size_t sent = 0;
  bool responding = false;
  std::chrono::steady_clock::time_point deadline;  // whole exchange, from accept: not reset by a byte
};

}  // namespace

void MetricsExposer::Loop() {
  using Clock = std::chrono::steady_clock;
  std::vector<Connection> conns;
  std::vector<pollfd> fds;
  char buf[4096];
  auto drop = [](Connection& c) {
    close(c.fd);
    c.fd = -1;
  };
  while (true) {
    const Clock::time_point now = Clock::now();
    // Expire slow or stalled clients: each gets kIoTimeoutSeconds for the whole exchange.
    for (Connection& c : conns) {
      if (c.deadline <= now) drop(c);
    }
    conns.erase(std::remove_if(conns.begin(), conns.end(), [](const Connection& c) { return c.fd < 0; }),
                conns.end());
    int timeout_ms = -1;
    for (const Connection& c : conns) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c.deadline - now).count() + 1;
      timeout_ms = timeout_ms < 0 ? static_cast<int>(left) : std::min(timeout_ms, static_cast<int>(left));
    }
    fds.clear();
    fds.push_back({listen_fd_, POLLIN, 0});
    fds.push_back({wake_fd_, POLLIN, 0});
    for (const Connection& c : conns) fds.push_back({c.fd, static_cast<short>(c.responding ? POLLOUT : POLLIN), 0});
    if (poll(fds.data(), fds.size(), timeout_ms) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) break;
    for (size_t i = 0; i < conns.size(); ++i) {
      Connection& c = conns[i];
      const short ev = fds[i + 2].revents;
      if (ev == 0) continue;
      if (!c.responding) {
        bool closed = false;
        while (true) {
          const ssize_t n = recv(c.fd, buf, sizeof(buf), 0);
          if (n > 0) {
            c.in.append(buf, static_cast<size_t>(n));
            if (c.in.size() > kMaxRequestBytes) break;
            continue;
          }
          if (n < 0 && errno == EINTR) continue;
          closed = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
          break;
        }
        if (c.in.size() > kMaxRequestBytes) {
          c.out = Response(431, "Request Header Fields Too Large", "text/plain", "request too large\n", false);
          c.responding = true;
        } else if (c.in.find("\r\n\r\n") != std::string::npos) {
          c.out = Answer(c.in);
          c.responding = true;
        } else if (closed) {
          drop(c);  // closed before a whole request: nothing to answer
          continue;
        }
      }
      if (c.responding) {
        while (c.sent < c.out.size()) {
          const ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) break;
          c.sent += static_cast<size_t>(n);
        }
        const bool blocked = c.sent < c.out.size() && (errno == EAGAIN || errno == EWOULDBLOCK);
        if (!blocked) drop(c);  // all sent ("Connection: close"), or the client is gone
      }
    }
    if ((fds[0].revents & POLLIN) != 0) {
      // Accept everything pending; beyond kMaxConnections the newest is closed at once, so a flood of idle
      // connections costs descriptors only briefly and never delays the ones being served.
      while (true) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;  // EAGAIN: none left (or a transient error: the next poll retries)
        if (conns.size() >= kMaxConnections) {
          close(fd);
          continue;
        }
        Connection c;
        c.fd = fd;
        c.deadline = Clock::now() + std::chrono::seconds(kIoTimeoutSeconds);
        conns.push_back(std::move(c));
      }
    }
  }
  for (Connection& c : conns) drop(c);
}

std::string MetricsExposer::Answer(const std::string& request) const {
  const std::string line = request.substr(0, request.find("\r\n"));
  const std::vector<std::string> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3 || parts[2].rfind("HTTP/1.", 0) != 0 || parts[1].empty() || parts[1][0] != '/') {
    return Response(400, "Bad Request", "text/plain", "malformed HTTP request line\n", false);
  }
  const std::string& method = parts[0];
  const bool head = method == "HEAD";
  if (method != "GET" && !head) {
    return Response(405, "Method Not Allowed", "text/plain", "use GET /metrics\n", false, "Allow: GET, HEAD\r\n");
  }
  const std::string path = parts[1].substr(0, parts[1].find('?'));
  if (path != "/metrics") {
    return Response(404, "Not Found", "text/plain", "not found: the metrics are at /metrics\n", head);
  }
  prometheus::TextSerializer text;
  return Response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", text.Serialize(registry_->Collect()), head);
}

}  // namespace qrag::metrics
