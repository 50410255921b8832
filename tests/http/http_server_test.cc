// The HTTP/1.1 server over real loopback sockets: a small blocking client (POSIX sockets) for plain HTTP, the
// curl and python3 command-line clients for TLS and for an independent check of the chunked encoding.
//
// Wall-clock bounds: only the product requirement (a request served in < 1 s while slow clients are connected)
// is asserted tight; the other bounds only keep a broken server from hanging the test.
#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "tests/test_util.h"

namespace qrag::http {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;

constexpr absl::Duration kWait = absl::Seconds(20);  // for events that must happen: only a hang guard

double SecondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

int PortOf(const std::string& address) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port)) << address;
  return port;
}

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
  std::vector<std::string> chunks;  // a chunked body, chunk by chunk
  bool Has(const std::string& name) const { return headers.count(name) != 0; }
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// A blocking HTTP/1.1 client over one TCP connection to 127.0.0.1. Every recv waits at most 20 s.
class Client {
 public:
  // `receive_buffer` > 0: SO_RCVBUF, set before connecting (a client that reads slowly).
  explicit Client(int port, int receive_buffer = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
    timeval timeout{20, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Client() { Close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }

  bool Send(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  // Reads one response (skipping 100 Continue); nullopt when the connection ends first. `head`: the request
  // was HEAD, so no body follows.
  std::optional<Reply> Read(bool head = false) {
    while (true) {
      size_t end;
      while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
        if (!Fill()) return std::nullopt;
      }
      const std::string text = in_.substr(0, end);
      in_.erase(0, end + 4);
      Reply r;
      std::vector<std::string> lines = absl::StrSplit(text, "\r\n");
      std::vector<std::string> status_line = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
      if (status_line.size() < 2 || status_line[0] != "HTTP/1.1" || !absl::SimpleAtoi(status_line[1], &r.status)) {
        ADD_FAILURE() << "bad status line: " << lines[0];
        return std::nullopt;
      }
      for (size_t i = 1; i < lines.size(); ++i) {
        const size_t colon = lines[i].find(':');
        if (colon == std::string::npos) continue;
        r.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
            std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
      }
      if (r.status < 200) continue;
      if (head || r.status == 204 || r.status == 304) return r;
      if (r.Header("transfer-encoding") == "chunked") {
        while (true) {
          std::string line;
          if (!ReadLine(&line)) return std::nullopt;
          unsigned long size = std::strtoul(line.c_str(), nullptr, 16);
          if (size == 0) {
            while (ReadLine(&line) && !line.empty()) {
            }
            return r;
          }
          std::string chunk, crlf;
          if (!ReadExactly(size, &chunk) || !ReadExactly(2, &crlf) || crlf != "\r\n") return std::nullopt;
          r.body += chunk;
          r.chunks.push_back(std::move(chunk));
        }
      }
      if (r.Has("content-length")) {
        size_t length = 0;
        if (!absl::SimpleAtoi(r.Header("content-length"), &length) || !ReadExactly(length, &r.body))
          return std::nullopt;
        return r;
      }
      while (Fill()) {
      }
      r.body = std::move(in_);
      in_.clear();
      return r;
    }
  }

  // Send, then Read.
  std::optional<Reply> Ask(const std::string& request, bool head = false) {
    if (!Send(request)) return std::nullopt;
    return Read(head);
  }

  // Reads the head of a streamed response and its first chunk (the client then stops reading).
  bool ReadHeadAndSomeBody() {
    while (in_.find("\r\n\r\n") == std::string::npos || in_.size() < in_.find("\r\n\r\n") + 8) {
      if (!Fill()) return false;
    }
    return true;
  }

  // True when the server closes the connection (end of stream or reset) before any further byte.
  bool ServerClosed() {
    char c;
    const ssize_t n = recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

  int fd() const { return fd_; }

 private:
  bool Fill() {
    char buf[65536];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    in_.append(buf, static_cast<size_t>(n));
    return true;
  }
  bool ReadLine(std::string* line) {
    size_t end;
    while ((end = in_.find("\r\n")) == std::string::npos) {
      if (!Fill()) return false;
    }
    *line = in_.substr(0, end);
    in_.erase(0, end + 2);
    return true;
  }
  bool ReadExactly(size_t n, std::string* out) {
    while (in_.size() < n) {
      if (!Fill()) return false;
    }
    *out = in_.substr(0, n);
    in_.erase(0, n);
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string in_;
};

// The body of a reply, or "<no reply>".
std::string BodyOf(const std::optional<Reply>& r) { return r.has_value() ? r->body : "<no reply>"; }

// One request on a fresh connection ("Connection: close"); the reply, or nullopt.
std::optional<Reply> Fetch(int port, const std::string& method, const std::string& target) {
  Client c(port);
  if (!c.connected() ||
      !c.Send(absl::StrCat(method, " ", target, " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))) {
    return std::nullopt;
  }
  return c.Read(method == "HEAD");
}

// Answers "METHOD PATH?QUERY|x-test header|body".
void EchoHandler(std::shared_ptr<Exchange> ex) {
  const Request& r = ex->request();
  const std::string* x = r.Find("x-test");
  Response resp;
  resp.content_type = "text/plain";
  resp.headers = {{"X-Reply", "yes"}};
  resp.body = absl::StrCat(r.method, " ", r.path, "?", r.query, "|", x != nullptr ? *x : "-", "|", r.body);
  ex->Respond(std::move(resp));
}

ServerOptions Local() {
  ServerOptions o;
  o.listen_address = "127.0.0.1:0";
  return o;
}

std::unique_ptr<Server> StartOrDie(ServerOptions options, Handler handler) {
  auto s = Server::Start(std::move(options), std::move(handler));
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

// Holds the exchanges a test's handler parked, for the test's thread to answer, and notes when the client of
// the first one went (OnClientGone).
class Parked {
 public:
  void Add(std::shared_ptr<Exchange> ex) {
    std::lock_guard<std::mutex> lock(mu_);
    exchanges_.push_back(std::move(ex));
    if (exchanges_.size() == 1) {
      exchanges_.front()->OnClientGone([this] { gone_.Notify(); });
      first_.Notify();
    }
  }
  std::shared_ptr<Exchange> First() {
    EXPECT_TRUE(first_.WaitForNotificationWithTimeout(kWait));
    std::lock_guard<std::mutex> lock(mu_);
    return exchanges_.empty() ? nullptr : exchanges_.front();
  }
  bool WaitGone() { return gone_.WaitForNotificationWithTimeout(kWait); }
  bool gone() const { return gone_.HasBeenNotified(); }

 private:
  std::mutex mu_;
  std::vector<std::shared_ptr<Exchange>> exchanges_;
  absl::Notification first_;
  absl::Notification gone_;
};

TEST(HttpServer, GetAndPost_LowercaseHeaders_PathQuerySplit) {
  std::mutex mu;
  Request seen;
  auto server = StartOrDie(Local(), [&](std::shared_ptr<Exchange> ex) {
    {
      std::lock_guard<std::mutex> lock(mu);
      seen = ex->request();
    }
    EchoHandler(ex);
  });
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->address(), StartsWith("127.0.0.1:"));
  const int port = PortOf(server->address());

  Client c(port);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Send("GET /v1/models?limit=2&x=y HTTP/1.1\r\nHost: t\r\nX-Test: Hello\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "GET /v1/models?limit=2&x=y|Hello|");
  EXPECT_EQ(r->Header("content-type"), "text/plain");
  EXPECT_EQ(r->Header("x-reply"), "yes");
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(seen.target, "/v1/models?limit=2&x=y");
    EXPECT_EQ(seen.path, "/v1/models");
    EXPECT_EQ(seen.query, "limit=2&x=y");
    ASSERT_EQ(seen.headers.size(), 2u);
    EXPECT_EQ(seen.headers[0].name, "host");
    EXPECT_EQ(seen.headers[1].name, "x-test");
    EXPECT_EQ(seen.headers[1].value, "Hello");
    EXPECT_THAT(seen.peer, StartsWith("127.0.0.1:"));
    EXPECT_FALSE(seen.tls);
  }

  // A POST body, then a chunked request body, on the same connection.
  EXPECT_EQ(BodyOf(c.Ask("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world")),
            "POST /echo?|-|hello world");
  EXPECT_EQ(BodyOf(c.Ask("POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n")),
            "POST /c?|-|hello!");
}

TEST(HttpServer, Head_ContentLengthOfTheBody_NoBody) {
  auto server = StartOrDie(Local(), EchoHandler);
  ASSERT_NE(server, nullptr);
  Client c(PortOf(server->address()));
  ASSERT_TRUE(c.Send("HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto r = c.Read(/*head=*/true);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("content-length"), std::to_string(std::string("HEAD /h?|-|").size()));
  // No body bytes followed the head: the next response on the connection parses from its first byte.
  EXPECT_EQ(BodyOf(c.Ask("GET /next HTTP/1.1\r\nHost: t\r\n\r\n")), "GET /next?|-|");
}

TEST(HttpServer, KeepAlive_TwoRequestsOneConnection_PipelinedBytesWait_ConnectionCloseHonoured) {
  std::atomic<int> calls{0};
  auto server = StartOrDie(Local(), [&](std::shared_ptr<Exchange> ex) {
    ++calls;
    EchoHandler(ex);
  });
  ASSERT_NE(server, nullptr);
  const int port = PortOf(server->address());
  Client c(port);
  auto r = c.Ask("GET /one HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(BodyOf(r), "GET /one?|-|");
  EXPECT_FALSE(r.has_value() && r->Has("connection"));
  // Two requests in one write: the second waits in the buffer and is answered after the first.
  EXPECT_EQ(
      BodyOf(c.Ask("GET /two HTTP/1.1\r\nHost: t\r\n\r\nGET /three HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")),
      "GET /two?|-|");
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "GET /three?|-|");
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_TRUE(c.ServerClosed());
  EXPECT_EQ(calls.load(), 3);

  // HTTP/1.0 closes after its response.
  Client old(port);
  EXPECT_EQ(BodyOf(old.Ask("GET /old HTTP/1.0\r\n\r\n")), "GET /old?|-|");
  EXPECT_TRUE(old.ServerClosed());
}

TEST(HttpServer, NextRequestSentDuringAnExchange_WaitsInTheBuffer) {
  Parked parked;
  auto server = StartOrDie(Local(), [&](std::shared_ptr<Exchange> ex) {
    if (ex->request().path == "/first") return parked.Add(ex);  // answered later by the test
    EchoHandler(ex);
  });
  ASSERT_NE(server, nullptr);
  Client c(PortOf(server->address()));
  ASSERT_TRUE(c.Send("GET /first HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::shared_ptr<Exchange> first = parked.First();
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(c.Send("GET /second HTTP/1.1\r\nHost: t\r\n\r\n"));  // read while /first is open, kept
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(server->open_exchanges(), 1);  // no pipelining: /second waits for /first to end
  first->Respond(Response{.status = 201, .content_type = "text/plain", .headers = {}, .body = "first"});
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, "first");
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "GET /second?|-|");
  // The read that was pending while /second was parsed out of the buffer delivers /third: its own bytes, not
  // a replay of /second's (the bug CI once caught: consuming the buffer moved it under the pending read).
  EXPECT_EQ(BodyOf(c.Ask("POST /third HTTP/1.1\r\nHost: t\r\nContent-Length: 26\r\n\r\n"
                         "abcdefghijklmnopqrstuvwxyz")),
            "POST /third?|-|abcdefghijklmnopqrstuvwxyz");
}

TEST(HttpServer, Expect100Continue_AnsweredBeforeTheBody) {
  auto server = StartOrDie(Local(), EchoHandler);
  ASSERT_NE(server, nullptr);
  Client c(PortOf(server->address()));
  ASSERT_TRUE(c.Send("POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));
  char buf[64] = {};
  const ssize_t n = recv(c.fd(), buf, sizeof(buf) - 1, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_EQ(BodyOf(c.Ask("body")), "POST /e?|-|body");
}

TEST(HttpServer, BodyOverLimit_413_WithoutReadingIt) {
  ServerOptions o = Local();
  o.max_body_bytes = 1024;
  std::atomic<int> calls{0};
  auto server = StartOrDie(o, [&](std::shared_ptr<Exchange> ex) {
    ++calls;
    EchoHandler(ex);
  });
  ASSERT_NE(server, nullptr);
  const int port = PortOf(server->address());
  Client c(port);
  // The head alone: the answer comes without the body ever being sent.
  ASSERT_TRUE(c.Send("POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_TRUE(c.ServerClosed());
  // A chunked body that grows past the limit.
  Client chunked(port);
  ASSERT_TRUE(chunked.Send(absl::StrCat("POST /big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n",
                                        std::string(0x800, 'x'), "\r\n")));
  r = chunked.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  // At the limit is fine.
  Client fits(port);
  ASSERT_TRUE(fits.Send(
      absl::StrCat("POST /fits HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n", std::string(1024, 'y'))));
  r = fits.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(calls.load(), 1);
}

TEST(HttpServer, HeadOver16KiB_431_Garbage_400) {
  auto server = StartOrDie(Local(), EchoHandler);
  ASSERT_NE(server, nullptr);
  const int port = PortOf(server->address());
  {
    Client c(port);
    ASSERT_TRUE(c.Send(absl::StrCat("GET / HTTP/1.1\r\nX-Big: ", std::string(17 * 1024, 'a'), "\r\n\r\n")));
    auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 431);
    EXPECT_EQ(r->Header("connection"), "close");
    EXPECT_TRUE(c.ServerClosed());
  }
  {
    Client c(port);  // a head just under the limit is served
    ASSERT_TRUE(c.Send(absl::StrCat("GET /ok HTTP/1.1\r\nX-Big: ", std::string(15 * 1024, 'a'), "\r\n\r\n")));
    auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
  }
  for (const char* garbage : {"hello there\r\n\r\n", "GET / HTTP/1.1\r\nno colon here\r\n\r\n",
                              "POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n"}) {
    Client c(port);
    ASSERT_TRUE(c.Send(garbage));
    auto r = c.Read();
    ASSERT_TRUE(r.has_value()) << garbage;
    EXPECT_EQ(r->status, 400) << garbage;
    EXPECT_EQ(r->Header("connection"), "close");
    EXPECT_TRUE(c.ServerClosed());
  }
}

TEST(HttpServer, HandlerThrows_500_ServerKeepsServing) {
  auto server = StartOrDie(Local(), [](std::shared_ptr<Exchange> ex) {
    if (ex->request().path == "/throw") throw std::runtime_error("handler bug");
    if (ex->request().path == "/drop") return;  // the exchange is dropped without an answer
    EchoHandler(ex);
  });
  ASSERT_NE(server, nullptr);
  const int port = PortOf(server->address());
  auto r = Fetch(port, "GET", "/throw");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  r = Fetch(port, "GET", "/drop");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  r = Fetch(port, "GET", "/fine");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

// Sends `request` one byte every 200 ms until the server drops the connection; returns when it did (seconds
// after the first byte), or a negative value if the whole request went out.
double Trickle(int port, const std::string& request, const std::atomic<bool>& stop) {
  Client c(port);
  if (!c.connected()) return -1;
  const Clock::time_point start = Clock::now();
  for (char byte : request) {
    if (stop) return -1;
    if (!c.Send(std::string(1, byte))) return SecondsSince(start);
    char got;
    const ssize_t n = recv(c.fd(), &got, 1, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return SecondsSince(start);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return -1;
}

const std::string kSlowRequest =
    absl::StrCat("GET /slow HTTP/1.1\r\nHost: t\r\nX-Pad: ", std::string(200, 'p'), "\r\n\r\n");

TEST(HttpServer, TricklingClient_DroppedAtRequestDeadline_OtherRequestServedMeanwhile) {
  ServerOptions o = Local();
  o.request_timeout = absl::Seconds(1);
  std::atomic<int> slow_calls{0};
  auto server = StartOrDie(o, [&](std::shared_ptr<Exchange> ex) {
    if (ex->request().path == "/slow") ++slow_calls;
    EchoHandler(ex);
  });
  ASSERT_NE(server, nullptr);
  const int port = PortOf(server->address());
  std::atomic<bool> stop{false};
  double dropped_after = 0;
  std::thread slow([&] { dropped_after = Trickle(port, kSlowRequest, stop); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // mid-request
  const Clock::time_point start = Clock::now();
  auto r = Fetch(port, "GET", "/fast");
  const double elapsed = SecondsSince(start);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_LT(elapsed, 1.0) << "a request took " << elapsed << " s beside a trickling client";
  slow.join();
  // The deadline counts from the first byte and is not reset by later bytes (the request would take 40 s):
  // the client is dropped once it passed, never before.
  EXPECT_GE(dropped_after, 0.9);
  EXPECT_LT(dropped_after, 10.0) << "the trickling client was not dropped";
  EXPECT_EQ(slow_calls.load(), 0);
}

TEST(HttpServer, HeadCompleteBodyLate_408) {
  ServerOptions o = Local();
  o.request_timeout = absl::Seconds(1);
  auto server = StartOrDie(o, EchoHandler);
  ASSERT_NE(server, nullptr);
  Client c(PortOf(server->address()));
  ASSERT_TRUE(c.Send("POST /late HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly a part"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 408);
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_TRUE(c.ServerClosed());
}

TEST(HttpServer, IdleKeepAliveConnection_ClosedAfterIdleTimeout) {
  ServerOptions o = Local();
  o.idle_timeout = absl::Seconds(1);
  auto server = StartOrDie(o, EchoHandler);
  ASSERT_NE(server, nullptr);
  Client c(PortOf(server->address()));
  ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_TRUE(c.Read().has_value());
  EXPECT_TRUE(c.ServerClosed());  // within the client's 20 s receive timeout
}

TEST(HttpServer, TwentyTricklingConnections_RequestStillServedPromptly) {
  ServerOptions o = Local();
  o.request_timeout = absl::Seconds(5);
  auto server = StartOrDie(o, EchoHandler);
  ASSERT_NE(server, nullptr);
  const int port = PortOf(server->address());
  std::atomic<bool> stop{false};
  std::vector<std::thread> slow;
  for (int i = 0; i < 20; ++i) slow.emplace_back([&] { Trickle(port, kSlowRequest, stop); });
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // every slow connection is mid-request
  for (int attempt = 0; attempt < 3; ++attempt) {
    const Clock::time_point start = Clock::now();
    auto r = Fetch(port, "GET", "/fast");
    const double elapsed = SecondsSince(start);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
    EXPECT_LT(elapsed, 1.0) << "attempt " << attempt << " took " << elapsed << " s beside 20 trickling clients";
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  stop = true;
  for (std::thread& t : slow) t.join();
}

TEST(HttpServer, Stream_ChunksArriveInOrder_DoneTrue) {
  std::atomic<int> done_true{0}, done_false{0};
  constexpr int kChunks = 50;
  std::vector<std::thread> producers;
  std::mutex mu;
  auto server = StartOrDie(Local(), [&](std::shared_ptr<Exchange> ex) {
    std::lock_guard<std::mutex> lock(mu);
    producers.emplace_back([&, ex] {  // the work happens elsewhere; the exchange is answered from there
      ex->StartStream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
      for (int i = 0; i < kChunks; ++i) {
        ex->Write(absl::StrCat("data: ", i, "\n\n"), [&](bool ok) { ++(ok ? done_true : done_false); });
        if (i == 10) ex->Write("");  // skipped
      }
      ex->End();
    });
  });
  ASSERT_NE(server, nullptr);
  Client c(PortOf(server->address()));
  ASSERT_TRUE(c.Send("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("content-type"), "text/event-stream");
  EXPECT_EQ(r->Header("cache-control"), "no-cache");
  EXPECT_FALSE(r->Has("content-length"));
  ASSERT_EQ(r->chunks.size(), static_cast<size_t>(kChunks));  // one chunk per Write, as written
  for (int i = 0; i < kChunks; ++i) EXPECT_EQ(r->chunks[i], absl::StrCat("data: ", i, "\n\n"));
  // The connection stays usable after a stream.
  ASSERT_TRUE(c.Send("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"));
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->chunks.size(), static_cast<size_t>(kChunks));
  for (std::thread& t : producers) t.join();
  server->Shutdown(absl::Seconds(5));
  EXPECT_EQ(done_true.load(), 2 * kChunks);
  EXPECT_EQ(done_false.load(), 0);
  EXPECT_EQ(server->open_exchanges(), 0);
}

TEST(HttpServer, ClientClosesMidStream_OnClientGone_LaterWritesDoneFalse) {
  Parked parked;
  auto server = StartOrDie(Local(), [&](std::shared_ptr<Exchange> ex) {
    parked.Add(ex);
    ex->StartStream(200, "text/plain");
    ex->Write("first chunk");
  });
  ASSERT_NE(server, nullptr);
  auto c = std::make_unique<Client>(PortOf(server->address()));
  ASSERT_TRUE(c->Send("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_TRUE(c->ReadHeadAndSomeBody());
  std::shared_ptr<Exchange> ex = parked.First();
  ASSERT_NE(ex, nullptr);
  EXPECT_EQ(server->open_exchanges(), 1);
  c.reset();  // the client goes away mid-stream
  ASSERT_TRUE(parked.WaitGone()) << "OnClientGone did not run";
  absl::Notification written;
  std::atomic<bool> result{true};
  ex->Write("too late", [&](bool ok) {
    result = ok;
    written.Notify();
  });
  ASSERT_TRUE(written.WaitForNotificationWithTimeout(kWait));
  EXPECT_FALSE(result.load());
  ex->End();  // ignored
  // Set after the client went: runs at once, on this thread.
  bool late = false;
  ex->OnClientGone([&] { late = true; });
  EXPECT_TRUE(late);
  EXPECT_EQ(server->open_exchanges(), 0);
}

TEST(HttpServer, ClientClosesBeforeTheAnswer_OnClientGone) {
  Parked parked;
  auto server = StartOrDie(Local(), [&](std::shared_ptr<Exchange> ex) {
    parked.Add(ex);  // no answer yet: the work is queued elsewhere
  });
  ASSERT_NE(server, nullptr);
  auto c = std::make_unique<Client>(PortOf(server->address()));
  ASSERT_TRUE(c->Send("POST /slow-work HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"));
  std::shared_ptr<Exchange> ex = parked.First();
  ASSERT_NE(ex, nullptr);
  EXPECT_EQ(ex->request().body, "hi");
  c.reset();
  ASSERT_TRUE(parked.WaitGone()) << "OnClientGone did not run";
  ex->Respond(Response{});  // ignored
  EXPECT_EQ(server->open_exchanges(), 0);
}

// Writes 64 KiB chunks, one in flight at a time (the next when the previous was taken), until a write fails.
class BigStream : public std::enable_shared_from_this<BigStream> {
 public:
  BigStream(std::shared_ptr<Exchange> ex, std::atomic<int>* written, std::atomic<bool>* failed)
      : ex_(std::move(ex)), written_(written), failed_(failed) {}
  void Next() {
    ex_->Write(std::string(64 * 1024, 'z'), [self = shared_from_this()](bool ok) {
      if (!ok) {
        *self->failed_ = true;
      } else if (++*self->written_ < 100000) {  // 6 GiB: the server never noticed the stall
        self->Next();
      }
    });
  }

 private:
  std::shared_ptr<Exchange> ex_;
  std::atomic<int>* written_;
  std::atomic<bool>* failed_;
};

TEST(HttpServer, ClientNeverReadsABigStream_WriteTimeout_OthersServed) {
  ServerOptions o = Local();
  o.write_timeout = absl::Seconds(1);
  absl::Notification gone;
  std::atomic<int> written{0};
  std::atomic<bool> failed{false};
  auto server = StartOrDie(o, [&](std::shared_ptr<Exchange> ex) {
    if (ex->request().path != "/big") return EchoHandler(ex);
    ex->OnClientGone([&] { gone.Notify(); });
    ex->StartStream(200, "application/octet-stream");
    std::make_shared<BigStream>(ex, &written, &failed)->Next();
  });
  ASSERT_NE(server, nullptr);
  const int port = PortOf(server->address());
  Client reader(port, /*receive_buffer=*/4096);
  ASSERT_TRUE(reader.Send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n"));
  // While that stream is stuck, the server answers others.
  for (int i = 0; i < 3; ++i) {
    const Clock::time_point start = Clock::now();
    auto r = Fetch(port, "GET", "/other");
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
    EXPECT_LT(SecondsSince(start), 1.0);
  }
  ASSERT_TRUE(gone.WaitForNotificationWithTimeout(kWait)) << "a stalled stream was not ended";
  EXPECT_LT(written.load(), 100000);
  for (int i = 0; i < 2000 && !failed.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(failed.load()) << "the write in flight when the client went did not report false";
  server->Shutdown(absl::ZeroDuration());
  EXPECT_EQ(server->open_exchanges(), 0);
}

TEST(HttpServer, MaxConnections_NewOnesClosedAtOnce) {
  ServerOptions o = Local();
  o.max_connections = 2;
  auto server = StartOrDie(o, EchoHandler);
  ASSERT_NE(server, nullptr);
  const int port = PortOf(server->address());
  auto a = std::make_unique<Client>(port);
  Client b(port);
  for (Client* c : {a.get(), &b}) {  // both surely accepted and open (keep-alive)
    ASSERT_TRUE(c->Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
    ASSERT_TRUE(c->Read().has_value());
  }
  Client third(port);
  ASSERT_TRUE(third.connected());  // the kernel accepts; the server closes it at once
  third.Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_TRUE(third.ServerClosed());
  a.reset();  // a slot frees up
  bool served = false;
  for (int attempt = 0; attempt < 100 && !served; ++attempt) {
    served = Fetch(port, "GET", "/again").has_value();
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(served);
}

TEST(HttpServer, ShutdownWithGrace_OpenExchangeFinishes) {
  Parked parked;
  auto server = StartOrDie(Local(), [&](std::shared_ptr<Exchange> ex) {
    parked.Add(ex);
  });
  ASSERT_NE(server, nullptr);
  const int port = PortOf(server->address());
  Client c(port);
  ASSERT_TRUE(c.Send("GET /work HTTP/1.1\r\nHost: t\r\n\r\n"));
  Client idle(port);
  ASSERT_TRUE(idle.connected());
  std::shared_ptr<Exchange> ex = parked.First();
  ASSERT_NE(ex, nullptr);
  EXPECT_EQ(server->open_exchanges(), 1);
  std::thread answer([ex] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ex->Respond(Response{.status = 200, .content_type = "text/plain", .headers = {}, .body = "finished"});
  });
  server->Shutdown(absl::Seconds(30));  // returns once the exchange ended, well before 30 s
  answer.join();
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "finished");
  EXPECT_EQ(r->Header("connection"), "close");  // no next request during a shutdown
  EXPECT_TRUE(idle.ServerClosed());
  EXPECT_FALSE(parked.gone());
  EXPECT_EQ(server->open_exchanges(), 0);
  EXPECT_FALSE(Client(port).connected());  // no longer accepting
}

TEST(HttpServer, ShutdownZero_OnClientGone_LaterCallsIgnored) {
  Parked parked;
  auto server = StartOrDie(Local(), [&](std::shared_ptr<Exchange> ex) {
    parked.Add(ex);
    ex->StartStream(200, "text/plain");
  });
  ASSERT_NE(server, nullptr);
  Client c(PortOf(server->address()));
  ASSERT_TRUE(c.Send("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::shared_ptr<Exchange> ex = parked.First();
  ASSERT_NE(ex, nullptr);
  server->Shutdown(absl::ZeroDuration());
  EXPECT_TRUE(parked.gone());
  EXPECT_EQ(server->open_exchanges(), 0);
  bool result = true;
  ex->Write("after the end", [&](bool ok) { result = ok; });  // no I/O thread left: runs here
  EXPECT_FALSE(result);
  ex->End();
  server.reset();
  ex.reset();  // outlives the server without harm
}

TEST(HttpServer, Addresses_InUseUnavailable_MalformedInvalid) {
  auto server = StartOrDie(Local(), EchoHandler);
  ASSERT_NE(server, nullptr);
  ServerOptions same = Local();
  same.listen_address = server->address();
  EXPECT_THAT(Server::Start(same, EchoHandler),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot serve on " + server->address())));
  for (const char* a : {"nonsense", ":9400", "127.0.0.1:x", "127.0.0.1:70000", "127.0.0.1:-1"}) {
    ServerOptions bad = Local();
    bad.listen_address = a;
    EXPECT_THAT(Server::Start(bad, EchoHandler),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not HOST:PORT")))
        << a;
  }
  ServerOptions unknown = Local();
  unknown.listen_address = "no-such-host.invalid:0";
  EXPECT_THAT(Server::Start(unknown, EchoHandler), StatusIsCode(absl::StatusCode::kUnavailable));
  ServerOptions v6 = Local();
  v6.listen_address = "[::1]:0";
  auto s6 = Server::Start(v6, EchoHandler);
  if (s6.ok()) EXPECT_THAT((*s6)->address(), StartsWith("[::1]:"));
}

// ---- Independent clients: curl and Python's http.client (the chunked encoding as others parse it); TLS.

struct Command {
  int exit_code = -1;
  std::string output;
};

Command RunCommand(const std::string& command) {
  Command result;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) result.output.append(buf, n);
  const int status = pclose(p);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// Streams "a", "b", ... "j" (one chunk each) for /stream; echoes otherwise.
void StreamingHandler(std::shared_ptr<Exchange> ex) {
  if (ex->request().path != "/stream") return EchoHandler(ex);
  std::thread([ex] {
    ex->StartStream(200, "text/plain");
    for (char c = 'a'; c <= 'j'; ++c) ex->Write(std::string(3, c));
    ex->End();
  }).detach();
}

TEST(HttpServer, CurlAndPythonParseTheStream) {
  auto server = StartOrDie(Local(), StreamingHandler);
  ASSERT_NE(server, nullptr);
  const std::string url = absl::StrCat("http://", server->address(), "/stream");
  Command curl = RunCommand(absl::StrCat("curl -sS --max-time 20 ", url, " ", url));  // twice: keep-alive
  EXPECT_EQ(curl.exit_code, 0) << curl.output;
  EXPECT_EQ(curl.output, "aaabbbcccdddeeefffggghhhiiijjjaaabbbcccdddeeefffggghhhiiijjj");
  const std::string script = absl::StrCat(
      "import http.client; c = http.client.HTTPConnection('127.0.0.1', ", PortOf(server->address()),
      ", timeout=20)\nfor _ in range(2):\n  c.request('GET', '/stream'); r = c.getresponse()\n"
      "  print(r.status, r.getheader('Transfer-Encoding'), r.read().decode())\n"
      "c.request('HEAD', '/x'); r = c.getresponse(); print(r.status, r.getheader('Content-Length'), repr(r.read()))");
  Command py = RunCommand("python3 -c \"" + script + "\"");
  EXPECT_EQ(py.exit_code, 0) << py.output;
  EXPECT_EQ(py.output,
            "200 chunked aaabbbcccdddeeefffggghhhiiijjj\n200 chunked aaabbbcccdddeeefffggghhhiiijjj\n200 11 b''\n");
}

// A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl command (as
// tests/integration/security_test.py does).
class Pki {
 public:
  Pki() {
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    Run(absl::StrCat("openssl req -x509 ", ec, " -keyout ca.key -out ca.pem -days 2 -subj '/CN=qrag test CA' ",
                     "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"));
    testing::WriteFile(
        dir_.Join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
    testing::WriteFile(dir_.Join("client.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
    for (const char* name : {"server", "client"}) {
      Run(absl::StrCat("openssl req -new ", ec, " -keyout ", name, ".key -out ", name, ".csr -subj '/CN=qrag ", name,
                       "'"));
      Run(absl::StrCat("openssl x509 -req -in ", name, ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out ",
                       name, ".pem -extfile ", name, ".ext"));
    }
  }
  std::string operator[](const std::string& file) const { return dir_.Join(file); }
  bool ok() const { return ok_; }

 private:
  void Run(const std::string& command) {
    Command c = RunCommand("cd " + dir_.path() + " && " + command);
    if (c.exit_code != 0) {
      ok_ = false;
      ADD_FAILURE() << command << ": " << c.output;
    }
  }
  testing::TempDir dir_;
  bool ok_ = true;
};

TEST(HttpServer, Tls_ServedToCurl_MutualTls) {
  Pki pki;
  ASSERT_TRUE(pki.ok());
  ServerOptions o = Local();
  o.tls = TlsFiles{.cert_chain = pki["server.pem"], .private_key = pki["server.key"], .client_ca = ""};
  std::atomic<bool> saw_tls{false};
  auto server = StartOrDie(o, [&](std::shared_ptr<Exchange> ex) {
    saw_tls = ex->request().tls;
    StreamingHandler(ex);
  });
  ASSERT_NE(server, nullptr);
  const std::string base = absl::StrCat("https://", server->address());
  const std::string curl = absl::StrCat("curl -sS --max-time 20 --cacert ", pki["ca.pem"], " ");
  Command c = RunCommand(curl + base + "/hello?q=1 " + base + "/stream");
  EXPECT_EQ(c.exit_code, 0) << c.output;
  EXPECT_EQ(c.output, "GET /hello?q=1|-|aaabbbcccdddeeefffggghhhiiijjj");
  EXPECT_TRUE(saw_tls.load());
  c = RunCommand(curl + "-X POST --data-binary 'tls body' " + base + "/post");
  EXPECT_EQ(c.output, "POST /post?|-|tls body");
  // Plain HTTP to the TLS port gets nowhere (and does not disturb the server).
  EXPECT_NE(RunCommand(absl::StrCat("curl -sS --max-time 5 http://", server->address(), "/")).exit_code, 0);
  EXPECT_EQ(RunCommand(curl + base + "/again").output, "GET /again?|-|");

  // Mutual TLS: a client certificate signed by client_ca is required.
  o.tls->client_ca = pki["ca.pem"];
  auto mtls = StartOrDie(o, EchoHandler);
  ASSERT_NE(mtls, nullptr);
  const std::string mbase = absl::StrCat("https://", mtls->address());
  EXPECT_NE(RunCommand(curl + mbase + "/no-cert").exit_code, 0);
  c = RunCommand(absl::StrCat(curl, "--cert ", pki["client.pem"], " --key ", pki["client.key"], " ", mbase, "/cert"));
  EXPECT_EQ(c.exit_code, 0) << c.output;
  EXPECT_EQ(c.output, "GET /cert?|-|");
}

TEST(HttpServer, TlsHandshakeBoundedByRequestTimeout) {
  Pki pki;
  ASSERT_TRUE(pki.ok());
  ServerOptions o = Local();
  o.request_timeout = absl::Seconds(1);
  o.tls = TlsFiles{.cert_chain = pki["server.pem"], .private_key = pki["server.key"], .client_ca = ""};
  auto server = StartOrDie(o, EchoHandler);
  ASSERT_NE(server, nullptr);
  Client silent(PortOf(server->address()));  // connects and never starts the handshake
  ASSERT_TRUE(silent.connected());
  EXPECT_TRUE(silent.ServerClosed());
}

TEST(HttpServer, BadTlsFiles_InvalidArgumentNamingTheFile) {
  Pki pki;
  ASSERT_TRUE(pki.ok());
  testing::TempDir dir;
  const std::string garbage = dir.Join("garbage.pem");
  testing::WriteFile(garbage, "not a certificate\n");
  const std::string missing = dir.Join("missing.pem");
  struct Case {
    TlsFiles files;
    std::string named;
  };
  const std::vector<Case> cases = {
      {{missing, pki["server.key"], ""}, missing},
      {{garbage, pki["server.key"], ""}, garbage},
      {{pki["server.pem"], garbage, ""}, garbage},
      {{pki["server.pem"], pki["client.key"], ""}, pki["client.key"]},  // the key of another certificate
      {{pki["server.pem"], pki["server.key"], missing}, missing},
      {{pki["server.pem"], pki["server.key"], garbage}, garbage},
  };
  for (const Case& c : cases) {
    ServerOptions o = Local();
    o.tls = c.files;
    EXPECT_THAT(Server::Start(o, EchoHandler),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'" + c.named + "'")))
        << c.named;
  }
}

}  // namespace
}  // namespace qrag::http
