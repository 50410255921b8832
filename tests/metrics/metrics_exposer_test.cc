// The /metrics endpoint over real loopback sockets: scrapes, wrong paths and methods, malformed requests,
// an address in use, a malformed address.
#include "server/metrics/metrics_exposer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "prometheus/counter.h"
#include "tests/test_util.h"

namespace qrag::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// True when `reply` holds a response head and the Content-Length bytes of body after it (none for HEAD).
bool IsWholeResponse(const std::string& reply, bool head) {
  const size_t end = reply.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  if (head) return true;
  const size_t at = reply.find("Content-Length: ");
  size_t length = 0;
  if (at == std::string::npos || at > end ||
      !absl::SimpleAtoi(reply.substr(at + 16, reply.find("\r\n", at) - at - 16), &length)) {
    return false;
  }
  return reply.size() >= end + 4 + length;
}

// Sends `request` on the connected socket `fd` and returns the server's answer: one whole response (the server
// keeps the connection open for a next scrape), or everything it sent until it closed.
std::string Ask(int fd, const std::string& request) {
  (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string reply;
  char buf[4096];
  ssize_t n;
  while (!IsWholeResponse(reply, request.rfind("HEAD ", 0) == 0) && (n = recv(fd, buf, sizeof(buf), 0)) > 0) {
    reply.append(buf, static_cast<size_t>(n));
  }
  return reply;
}

// A connection to 127.0.0.1:port (receives time out after 10 s), or -1.
int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// `request` on a fresh connection.
std::string Exchange(int port, const std::string& request) {
  const int fd = Connect(port);
  if (fd < 0) return "connect failed";
  std::string reply = Ask(fd, request);
  close(fd);
  return reply;
}

int PortOf(const std::string& address) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port)) << address;
  return port;
}

class MetricsExposerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = std::make_shared<prometheus::Registry>();
    prometheus::BuildCounter().Name("qrag_test_total").Help("A test counter.").Register(*registry_).Add({}).Increment(7);
    auto e = MetricsExposer::Start({.listen_address = "127.0.0.1:0"}, registry_);
    ASSERT_TRUE(e.ok()) << e.status();
    exposer_ = *std::move(e);
    port_ = PortOf(exposer_->address());
    ASSERT_GT(port_, 0);
  }
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsExposer> exposer_;
  int port_ = 0;
};

TEST_F(MetricsExposerTest, GetMetrics_200_TextFormat_RepeatedScrapes) {
  for (int i = 0; i < 3; ++i) {
    const std::string reply = Exchange(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
    EXPECT_THAT(reply, StartsWith("HTTP/1.1 200 OK\r\n"));
    EXPECT_THAT(reply, HasSubstr("Content-Type: text/plain; version=0.0.4"));
    EXPECT_THAT(reply, HasSubstr("# TYPE qrag_test_total counter\nqrag_test_total 7\n"));
  }
  EXPECT_THAT(exposer_->address(), StartsWith("127.0.0.1:"));
}

TEST_F(MetricsExposerTest, TwoScrapesOnOneConnection_KeepAlive) {
  const int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 2; ++i) {
    EXPECT_THAT(Ask(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), HasSubstr("qrag_test_total 7\n")) << i;
  }
  close(fd);
}

TEST_F(MetricsExposerTest, HeadMetrics_HeadersOnly) {
  const std::string reply = Exchange(port_, "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_THAT(reply, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(reply, ::testing::EndsWith("\r\n\r\n"));
}

TEST_F(MetricsExposerTest, OtherPath_404_OtherMethod_405_Garbage_400) {
  EXPECT_THAT(Exchange(port_, "GET / HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 404 Not Found"));
  EXPECT_THAT(Exchange(port_, "GET /metrics?x=1 HTTP/1.0\r\n\r\n"), StartsWith("HTTP/1.1 200 OK"));
  const std::string post = Exchange(port_, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_THAT(post, StartsWith("HTTP/1.1 405 Method Not Allowed"));
  EXPECT_THAT(post, HasSubstr("Allow: GET, HEAD"));
  EXPECT_THAT(Exchange(port_, "hello there\r\n\r\n"), StartsWith("HTTP/1.1 400 Bad Request"));
  EXPECT_THAT(Exchange(port_, "GET metrics HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 400 Bad Request"));
  EXPECT_THAT(Exchange(port_, std::string(20000, 'a')), StartsWith("HTTP/1.1 431"));
  // A client that connects and says nothing does not keep others out forever (closed after 5 s idle); the
  // server still answers afterwards.
  EXPECT_THAT(Exchange(port_, ""), ::testing::IsEmpty());
  EXPECT_THAT(Exchange(port_, "GET /metrics HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 200 OK"));
}

TEST_F(MetricsExposerTest, AddressInUse_Unavailable) {
  EXPECT_THAT(MetricsExposer::Start({.listen_address = exposer_->address()}, registry_),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot serve metrics on " + exposer_->address())));
}

TEST(MetricsExposer, MalformedAddress_InvalidArgument) {
  auto registry = std::make_shared<prometheus::Registry>();
  for (const char* a : {"nonsense", ":9400", "127.0.0.1:x", "127.0.0.1:70000", "127.0.0.1:-1"}) {
    EXPECT_THAT(MetricsExposer::Start({.listen_address = a}, registry),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not HOST:PORT")))
        << a;
  }
  EXPECT_THAT(MetricsExposer::Start({.listen_address = "no-such-host.invalid:0"}, registry),
              StatusIsCode(absl::StatusCode::kUnavailable));
}

TEST(MetricsExposer, Ipv6Loopback_BracketedAddress) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto e = MetricsExposer::Start({.listen_address = "[::1]:0"}, registry);
  if (!e.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << e.status();
  EXPECT_THAT((*e)->address(), StartsWith("[::1]:"));
}

}  // namespace
}  // namespace qrag::metrics
