// The HTTP/1.1 server of http_server.h on Boost.Beast + Boost.Asio (Debian's Boost 1.74, header-only) and
// OpenSSL. The only translation unit that includes Beast: the connection logic is written once (Session) and
// only its I/O calls are a template over the stream type (StreamSession<beast::tcp_stream> and
// StreamSession<beast::ssl_stream<beast::tcp_stream>>), so Beast and Asio are instantiated as little as possible.
//
// Threads: `threads` I/O threads run one io_context; each connection runs on its own strand, so its state is
// touched by one thread at a time and needs no lock. The Exchange methods post to that strand.
//
// A connection's life (Session::phase_):
//   handshake (TLS only, bounded by request_timeout) -> idle (idle_timeout until a byte arrives) -> reading
//   (request_timeout from the first byte) -> exchange (the handler's; a read stays pending to notice a client
//   that goes away) -> idle again (keep-alive), or closing (a lingering close: half-close and drain for TCP,
//   close_notify for TLS, both bounded by kLinger) -> closed.
// A request the server rejects (400, 408, 413, 431) is answered from the reading phase (error reply) and the
// connection closes after it.
//
// Lifetimes: the in-flight asynchronous operations own a Session (shared_ptr); an Exchange only holds it weakly,
// so a connection never outlives its socket's use because a handler kept its Exchange. Sessions and Exchanges
// share a Core (limits, handler, TLS context, counters), never the io_context, which Server::Impl owns. Posting
// from an Exchange goes through Core's gate, closed once the I/O threads have stopped (then a Write's done runs
// with false on the calling thread).
#include "server/http/http_server.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <fstream>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/common/status.h"

namespace qrag::http {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kHeadLimit = 16 * 1024;    // the request line and header fields (431 beyond)
constexpr std::size_t kReadChunk = 16 * 1024;      // bytes asked of one read
constexpr std::size_t kMaxReadAhead = 64 * 1024;   // buffered bytes of a next request while an exchange runs
constexpr auto kLinger = std::chrono::seconds(2);  // a closing connection: drain / close_notify at most this
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);  // after an accept error (EMFILE...)

// absl::Duration -> steady_clock duration; durations past a year (absl::InfiniteDuration()) are a year, so
// now() + d cannot overflow.
Clock::duration ToClock(absl::Duration d) {
  d = std::clamp(d, absl::ZeroDuration(), absl::Hours(24 * 365));
  return std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(d));
}

// Runs a callback of the program (a handler, an OnClientGone callback, a Write's done) so that an exception
// it throws cannot unwind into the I/O loop. Returns false when it threw.
template <class F, class... Args>
bool RunGuarded(F& f, Args&&... args) {
  if (!f) return true;
  try {
    f(std::forward<Args>(args)...);
    return true;
  } catch (...) {
    return false;
  }
}

// A header name a response may carry: an RFC 9110 token. Values may not contain CR, LF or NUL.
bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (c <= 32 || c >= 127 ||
        std::string_view("\"(),/:;<=>?@[\\]{}").find(static_cast<char>(c)) != std::string_view::npos) {
      return false;
    }
  }
  return true;
}

absl::string_view View(beast::string_view s) { return {s.data(), s.size()}; }

bool IsSafeValue(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// A plain-text response (the server's own: 500 for a handler's failure).
Response TextResponse(int status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

// The part of an Exchange that both the Exchange (any thread) and its Session (the strand) read: whether it
// finished (answered by the handler, or the client went) and the OnClientGone callback.
struct ExchangeState {
  std::mutex mu;
  bool finished = false;  // the handler ended it, or the client went
  bool gone = false;      // the client went (or the server stopped) before the handler ended it
  std::function<void()> on_gone;
};

class Session;

// What sessions and exchanges share; the io_context is not part of it (Server::Impl owns that).
struct Core {
  Clock::duration request_timeout{};
  Clock::duration idle_timeout{};
  Clock::duration write_timeout{};
  std::size_t max_body_bytes = 0;
  int max_connections = 0;
  Handler handler;
  std::unique_ptr<ssl::context> tls;  // null: plain TCP
  net::any_io_executor io_executor;   // for a done(false) whose connection is gone
  std::atomic<bool> stopping{false};  // Shutdown began: no new request is read

  std::mutex mu;  // guards what follows; cv signals changes of the counts
  std::condition_variable cv;
  int open_connections = 0;
  int open_exchanges = 0;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;  // the open connections

  std::shared_mutex gate_mu;  // Exchange methods post to a strand only while gate_open (shared lock)
  bool gate_open = true;

  void AddExchanges(int delta) {
    std::lock_guard<std::mutex> lock(mu);
    open_exchanges += delta;
    cv.notify_all();
  }
};

// One connection: the HTTP/1.1 state machine, independent of the stream type (StreamSession does the I/O).
// Every method runs on the connection's strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<Core> core, net::any_io_executor executor, std::string peer, bool tls)
      : core_(std::move(core)),
        executor_(std::move(executor)),
        peer_(std::move(peer)),
        tls_(tls),
        timer_(executor_),
        write_timer_(executor_) {}
  virtual ~Session() = default;

  const net::any_io_executor& executor() const { return executor_; }

  // Registers the connection (already counted in open_connections) and starts it.
  void Start() {
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      core_->sessions[this] = weak_from_this();
    }
    if (core_->stopping) {  // accepted as Shutdown began: it may not have seen this connection
      CloseNow();
      return;
    }
    if (tls_) {
      phase_ = Phase::kHandshake;
      ArmTimer(core_->request_timeout);
      Handshake();
    } else {
      BeginRequest();
    }
  }

  // The Exchange's calls, posted to the strand; `id` names the exchange, so a late call for an exchange that
  // ended (or a previous one of the connection) is ignored.
  void DoRespond(std::uint64_t id, Response r);
  void DoStartStream(std::uint64_t id, int status, std::string content_type, std::vector<Header> headers);
  void DoWrite(std::uint64_t id, std::string data, std::function<void(bool)> done);
  void DoEnd(std::uint64_t id);
  // The program dropped its last reference to the Exchange before ending it.
  void DoAbandon(std::uint64_t id);
  // Shutdown: close unless an exchange is open (that one closes after its response).
  void DoStop() {
    if (phase_ != Phase::kExchange) CloseNow();
  }
  // Shutdown, past the grace period: close now (OnClientGone for an open exchange).
  void DoClose() { CloseNow(); }

 protected:
  enum class Framing { kRaw, kChunk, kLastChunk, kNothing };
  // A piece of a response waiting to be written: kRaw writes head + data; kChunk data as one chunk; kLastChunk
  // the last chunk; kNothing writes nothing (a skipped chunk: `done` still runs in order).
  struct OutItem {
    Framing framing = Framing::kRaw;
    std::string head;
    std::string data;
    std::function<void(bool)> done;
    bool last = false;  // the response's last bytes

    static OutItem Raw(std::string head, std::string data = {}, bool last = false) {
      OutItem item;
      item.head = std::move(head);
      item.data = std::move(data);
      item.last = last;
      return item;
    }
    static OutItem Of(Framing framing, std::string data, std::function<void(bool)> done, bool last = false) {
      OutItem item;
      item.framing = framing;
      item.data = std::move(data);
      item.done = std::move(done);
      item.last = last;
      return item;
    }
  };

  // The stream-specific I/O; each completes on the strand by calling OnRead / OnWritten / CloseNow.
  virtual void Handshake() = 0;
  virtual void ReadSome(net::mutable_buffer buffer) = 0;
  virtual void WriteItem(OutItem& item) = 0;
  virtual void TlsShutdown() = 0;  // close_notify, then CloseNow
  virtual tcp::socket& Socket() = 0;

  void OnHandshake(const error_code& ec) {
    if (phase_ != Phase::kHandshake) return;
    if (ec) {
      CloseNow();
    } else {
      BeginRequest();
    }
  }
  void OnRead(const error_code& ec, std::size_t n);
  void OnWritten(const error_code& ec);
  void NoteProgress() { last_progress_ = Clock::now(); }
  void CloseNow();

  bool tls_shutdown_started_ = false;

 private:
  enum class Phase { kHandshake, kIdle, kReading, kExchange, kErrorReply, kClosing, kClosed };

  void BeginRequest();
  void Read();
  void Parse();
  void Dispatch();
  void ReplyError(int status, std::string_view text);
  void Queue(OutItem item);
  void WriteNext();
  void OnResponseSent();
  void GracefulClose();
  void EndExchangeCount();
  // The handler ended the exchange: OnClientGone no longer runs.
  void MarkEnded() {
    std::lock_guard<std::mutex> lock(exchange_->mu);
    exchange_->finished = true;
    exchange_->on_gone = nullptr;
  }
  bool IsOpen(std::uint64_t id) const { return phase_ == Phase::kExchange && id == exchange_id_; }
  // The head of a response to the current request (HTTP/1.1; Connection: close unless keep-alive).
  std::string Head(int status, const std::string& content_type, const std::vector<Header>& headers,
                   std::optional<std::size_t> content_length, bool chunked) const;

  void ArmTimer(Clock::duration d) {
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this()](const error_code& ec) { self->OnTimer(ec); });
  }
  void DisarmTimer() { timer_.expires_at(Clock::time_point::max()); }
  void OnTimer(const error_code& ec);
  void ArmWriteTimer();
  void OnWriteTimer(const error_code& ec);

  const std::shared_ptr<Core> core_;
  const net::any_io_executor executor_;
  const std::string peer_;
  const bool tls_;
  Phase phase_ = Phase::kIdle;
  beast::flat_buffer buffer_;  // bytes read and not parsed yet (a pipelined next request stays here)
  // What the pending read fills. Never buffer_ itself: parsing consumes buffer_ while a read is pending (a next
  // request parsed while the read watches for a disconnect), and consuming moves buffer_'s storage under it.
  std::array<char, kReadChunk> read_chunk_{};
  net::steady_timer timer_;    // handshake / idle / request deadline / linger
  net::steady_timer write_timer_;
  Clock::time_point last_progress_{};
  bool read_pending_ = false;
  bool writing_ = false;
  bool write_timer_armed_ = false;
  bool continue_sent_ = false;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;  // the request being read
  std::deque<OutItem> out_;                                          // the front one is being written while writing_

  // The open exchange (phase kExchange).
  std::uint64_t exchange_id_ = 0;
  std::shared_ptr<ExchangeState> exchange_;
  bool counted_ = false;   // counted in Core::open_exchanges
  bool answered_ = false;  // Respond or StartStream ran
  bool streaming_ = false;
  bool ended_ = false;    // the response's last item is queued
  bool head_ = false;     // a HEAD request: no body
  bool chunked_ = false;  // stream with chunked encoding (HTTP/1.1); else close-delimited (HTTP/1.0)
  bool keep_alive_ = false;
};

// The Exchange handed to the Handler: posts every call to its connection's strand.
class ExchangeImpl final : public Exchange {
 public:
  ExchangeImpl(std::shared_ptr<Core> core, std::weak_ptr<Session> session, std::uint64_t id,
               std::shared_ptr<ExchangeState> state, Request request)
      : core_(std::move(core)),
        session_(std::move(session)),
        id_(id),
        state_(std::move(state)),
        request_(std::move(request)) {}

  ~ExchangeImpl() override {
    Post([id = id_](Session& s) { s.DoAbandon(id); });
  }

  const Request& request() const override { return request_; }

  void Respond(Response response) override {
    Post([id = id_, r = std::move(response)](Session& s) mutable { s.DoRespond(id, std::move(r)); });
  }

  void StartStream(int status, std::string content_type, std::vector<Header> headers) override {
    Post([id = id_, status, ct = std::move(content_type), h = std::move(headers)](Session& s) mutable {
      s.DoStartStream(id, status, std::move(ct), std::move(h));
    });
  }

  void Write(std::string data, std::function<void(bool ok)> done) override {
    auto shared_done = std::make_shared<std::function<void(bool)>>(std::move(done));
    const bool posted = Post([id = id_, d = std::move(data), shared_done](Session& s) mutable {
      s.DoWrite(id, std::move(d), std::move(*shared_done));
    });
    if (posted || !*shared_done) return;
    // The connection is gone: done(false) on an I/O thread while there are any, else here.
    std::shared_lock<std::shared_mutex> lock(core_->gate_mu);
    if (core_->gate_open) {
      net::post(core_->io_executor, [shared_done] { RunGuarded(*shared_done, false); });
    } else {
      lock.unlock();
      RunGuarded(*shared_done, false);
    }
  }

  void End() override {
    Post([id = id_](Session& s) { s.DoEnd(id); });
  }

  void OnClientGone(std::function<void()> callback) override {
    std::unique_lock<std::mutex> lock(state_->mu);
    if (state_->gone) {
      lock.unlock();
      RunGuarded(callback);
    } else if (!state_->finished) {
      state_->on_gone = std::move(callback);
    }
  }

 private:
  // Posts f(session) to the connection's strand; false when the connection or the I/O threads are gone.
  template <class F>
  bool Post(F f) {
    std::shared_lock<std::shared_mutex> lock(core_->gate_mu);
    if (!core_->gate_open) return false;
    std::shared_ptr<Session> s = session_.lock();  // released before the gate: see Server::Impl::Shutdown
    if (!s) return false;
    net::post(s->executor(), [s, f = std::move(f)]() mutable { f(*s); });
    return true;
  }

  const std::shared_ptr<Core> core_;
  const std::weak_ptr<Session> session_;
  const std::uint64_t id_;
  const std::shared_ptr<ExchangeState> state_;
  const Request request_;
};

void Session::BeginRequest() {
  if (core_->stopping) {
    CloseNow();
    return;
  }
  parser_.emplace();
  parser_->header_limit(kHeadLimit);
  parser_->body_limit(core_->max_body_bytes);
  continue_sent_ = false;
  if (buffer_.size() == 0) {
    phase_ = Phase::kIdle;
    ArmTimer(core_->idle_timeout);
  } else {  // a pipelined request already began
    phase_ = Phase::kReading;
    ArmTimer(core_->request_timeout);
  }
  Parse();
}

void Session::Read() {
  if (read_pending_ || phase_ == Phase::kClosed) return;
  // While an exchange runs, a next request is only buffered (no pipelining), up to kMaxReadAhead; past that the
  // client waits (and its disconnect is seen when the exchange ends).
  if (phase_ == Phase::kExchange && buffer_.size() >= kMaxReadAhead) return;
  read_pending_ = true;
  ReadSome(net::buffer(read_chunk_));
}

void Session::OnRead(const error_code& ec, std::size_t n) {
  read_pending_ = false;
  if (phase_ == Phase::kClosed) return;
  if (phase_ == Phase::kClosing) {
    if (tls_) {
      TlsShutdown();  // the read was cancelled to let close_notify go out
    } else if (ec) {
      CloseNow();  // the client closed its side (or failed): done
    } else {
      buffer_.clear();
      Read();  // draining what the client still sends, so the close is a FIN rather than a reset
    }
    return;
  }
  if (ec) {
    // End of stream or an error: a client gone mid-request, idle, or during an exchange (then CloseNow runs
    // OnClientGone). A half-closed client counts as gone: reading cannot tell it from a closed one.
    CloseNow();
    return;
  }
  buffer_.commit(net::buffer_copy(buffer_.prepare(n), net::buffer(read_chunk_.data(), n)));
  switch (phase_) {
    case Phase::kIdle:
      phase_ = Phase::kReading;
      ArmTimer(core_->request_timeout);  // from the request's first byte; not reset by later bytes
      Parse();
      break;
    case Phase::kReading:
      Parse();
      break;
    case Phase::kExchange:
      Read();  // keep watching; the bytes wait for the next request
      break;
    case Phase::kErrorReply:
      buffer_.clear();  // the rejected request's rest: read only so that closing does not reset the reply
      Read();
      break;
    default:
      break;
  }
}

void Session::Parse() {
  while (buffer_.size() > 0) {
    error_code ec;
    const std::size_t used = parser_->put(buffer_.data(), ec);
    buffer_.consume(used);
    if (ec == bhttp::error::need_more) break;
    if (ec == bhttp::error::header_limit) return ReplyError(431, "request header fields too large\n");
    if (ec == bhttp::error::body_limit) return ReplyError(413, "request body too large\n");
    if (ec) return ReplyError(400, "malformed HTTP request\n");
    if (parser_->is_done()) return Dispatch();
    if (used == 0) break;
  }
  if (parser_->is_header_done() && !continue_sent_) {
    const auto& req = parser_->get();
    const auto expect = req.find(bhttp::field::expect);
    if (req.version() >= 11 && expect != req.end() && absl::EqualsIgnoreCase(View(expect->value()), "100-continue")) {
      continue_sent_ = true;  // the client waits for this before sending its body
      Queue(OutItem::Raw("HTTP/1.1 100 Continue\r\n\r\n"));
    }
  }
  Read();
}

void Session::Dispatch() {
  DisarmTimer();
  auto& msg = parser_->get();
  Request r;
  r.method = std::string(View(msg.method_string()));
  r.target = std::string(View(msg.target()));
  const std::size_t q = r.target.find('?');
  r.path = r.target.substr(0, q);
  if (q != std::string::npos) r.query = r.target.substr(q + 1);
  for (const auto& field : msg) {
    r.headers.push_back(Header{absl::AsciiStrToLower(View(field.name_string())), std::string(View(field.value()))});
  }
  r.body = std::move(msg.body());
  r.peer = peer_;
  r.tls = tls_;
  keep_alive_ = msg.version() >= 11 && msg.keep_alive();  // HTTP/1.0 closes
  chunked_ = msg.version() >= 11;
  head_ = msg.method() == bhttp::verb::head;
  parser_.reset();

  phase_ = Phase::kExchange;
  answered_ = streaming_ = ended_ = false;
  exchange_ = std::make_shared<ExchangeState>();
  ++exchange_id_;
  counted_ = true;
  core_->AddExchanges(1);
  Read();  // keeps a read pending, so that a client going away is seen at once

  auto exchange = std::make_shared<ExchangeImpl>(core_, weak_from_this(), exchange_id_, exchange_, std::move(r));
  if (!RunGuarded(core_->handler, exchange)) {
    // Posted, so a Respond the handler made before throwing still counts first.
    exchange->Respond(TextResponse(500, "internal error\n"));
  }
}

std::string Session::Head(int status, const std::string& content_type, const std::vector<Header>& headers,
                          std::optional<std::size_t> content_length, bool chunked) const {
  bhttp::response<bhttp::empty_body> res;
  res.version(11);
  res.result(static_cast<unsigned>(status));
  // RFC 9110 6.6.1: an origin server with a clock sends Date (IMF-fixdate).
  res.set(bhttp::field::date, absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", absl::Now(), absl::UTCTimeZone()));
  if (!content_type.empty() && IsSafeValue(content_type)) res.set(bhttp::field::content_type, content_type);
  for (const Header& h : headers) {
    // The framing headers are the server's; a name or value that would break the head is dropped.
    if (!IsToken(h.name) || !IsSafeValue(h.value) || absl::EqualsIgnoreCase(h.name, "content-length") ||
        absl::EqualsIgnoreCase(h.name, "transfer-encoding") || absl::EqualsIgnoreCase(h.name, "connection") ||
        absl::EqualsIgnoreCase(h.name, "content-type")) {
      continue;
    }
    res.insert(h.name, h.value);
  }
  if (content_length.has_value()) res.content_length(*content_length);
  if (chunked) res.chunked(true);
  res.keep_alive(keep_alive_);
  std::ostringstream os;
  os << res.base();
  return std::move(os).str();
}

void Session::ReplyError(int status, std::string_view text) {
  phase_ = Phase::kErrorReply;
  DisarmTimer();
  keep_alive_ = false;
  parser_.reset();
  Queue(OutItem::Raw(Head(status, "text/plain", {}, text.size(), false), std::string(text), true));
  Read();  // drains what the client still sends while the reply goes out
}

void Session::DoRespond(std::uint64_t id, Response r) {
  if (!IsOpen(id) || answered_) return;
  answered_ = ended_ = true;
  MarkEnded();
  if (r.status < 200 || r.status > 999) {  // not a final status: the handler's bug
    r = TextResponse(500, "internal error: bad status\n");
  }
  keep_alive_ = keep_alive_ && !core_->stopping;
  // RFC 9110 8.6: no Content-Length (and no body) in a 204 or 304 response.
  const bool no_body = r.status == 204 || r.status == 304;
  std::string head = Head(r.status, r.content_type, r.headers,
                          no_body ? std::nullopt : std::optional<std::size_t>(r.body.size()), false);
  Queue(OutItem::Raw(std::move(head), no_body || head_ ? std::string() : std::move(r.body), true));
}

void Session::DoStartStream(std::uint64_t id, int status, std::string content_type, std::vector<Header> headers) {
  if (!IsOpen(id) || answered_) return;
  answered_ = streaming_ = true;
  if (status < 200 || status > 999) status = 500;
  // HTTP/1.0 has no chunked encoding: its stream is delimited by closing the connection.
  keep_alive_ = keep_alive_ && chunked_ && !core_->stopping;
  Queue(OutItem::Raw(Head(status, content_type, headers, std::nullopt, chunked_)));
}

void Session::DoWrite(std::uint64_t id, std::string data, std::function<void(bool)> done) {
  if (!IsOpen(id) || !streaming_ || ended_) {
    RunGuarded(done, false);
    return;
  }
  if (data.empty() || head_) {
    Queue(OutItem::Of(Framing::kNothing, {}, std::move(done)));
  } else {
    Queue(OutItem::Of(chunked_ ? Framing::kChunk : Framing::kRaw, std::move(data), std::move(done)));
  }
}

void Session::DoEnd(std::uint64_t id) {
  if (!IsOpen(id) || !streaming_ || ended_) return;
  ended_ = true;
  MarkEnded();
  Queue(OutItem::Of(chunked_ && !head_ ? Framing::kLastChunk : Framing::kNothing, {}, nullptr, true));
}

void Session::DoAbandon(std::uint64_t id) {
  if (!IsOpen(id) || ended_) return;
  {
    std::lock_guard<std::mutex> lock(exchange_->mu);
    exchange_->on_gone = nullptr;  // nobody is left to tell
  }
  if (!answered_) {
    DoRespond(id, TextResponse(500, "internal error: no response\n"));
  } else {
    CloseNow();  // a stream without its end: closing tells the client it is incomplete
  }
}

void Session::Queue(OutItem item) {
  out_.push_back(std::move(item));
  WriteNext();
}

void Session::WriteNext() {
  while (!writing_ && !out_.empty() && phase_ != Phase::kClosed) {
    OutItem& item = out_.front();
    if (item.framing == Framing::kNothing) {
      OutItem skipped = std::move(item);
      out_.pop_front();
      RunGuarded(skipped.done, true);
      if (skipped.last) return OnResponseSent();
      continue;
    }
    writing_ = true;
    NoteProgress();
    ArmWriteTimer();
    WriteItem(item);
  }
}

void Session::OnWritten(const error_code& ec) {
  writing_ = false;
  if (phase_ == Phase::kClosed) {
    out_.clear();  // CloseNow kept the item in flight alive until now; its done already ran
    return;
  }
  if (ec) {
    CloseNow();  // the client is gone (or stalled: the write timer closed the socket)
    return;
  }
  OutItem item = std::move(out_.front());
  out_.pop_front();
  RunGuarded(item.done, true);
  if (phase_ == Phase::kClosed) return;
  if (item.last) return OnResponseSent();
  WriteNext();
}

void Session::ArmWriteTimer() {
  if (write_timer_armed_) return;
  write_timer_armed_ = true;
  write_timer_.expires_at(last_progress_ + core_->write_timeout);
  write_timer_.async_wait([self = shared_from_this()](const error_code& ec) { self->OnWriteTimer(ec); });
}

void Session::OnWriteTimer(const error_code& ec) {
  write_timer_armed_ = false;
  if (ec || phase_ == Phase::kClosed || !writing_) return;
  if (Clock::now() >= last_progress_ + core_->write_timeout) {
    CloseNow();  // no byte accepted for write_timeout: the client stopped reading
  } else {
    ArmWriteTimer();  // progress was made meanwhile: wait from the last of it
  }
}

void Session::OnTimer(const error_code& ec) {
  if (ec || timer_.expiry() > Clock::now()) return;  // cancelled, or re-armed after this wait completed
  switch (phase_) {
    case Phase::kReading:
      if (parser_.has_value() && parser_->is_header_done()) {
        ReplyError(408, "request timeout\n");
      } else {
        CloseNow();
      }
      break;
    case Phase::kHandshake:
    case Phase::kIdle:
    case Phase::kClosing:
      CloseNow();
      break;
    default:
      break;
  }
}

void Session::EndExchangeCount() {
  if (!counted_) return;
  counted_ = false;
  core_->AddExchanges(-1);
}

void Session::OnResponseSent() {
  if (phase_ == Phase::kExchange) {
    exchange_.reset();
    EndExchangeCount();
    if (keep_alive_ && !core_->stopping) return BeginRequest();
  }
  GracefulClose();
}

void Session::GracefulClose() {
  phase_ = Phase::kClosing;
  ArmTimer(kLinger);
  error_code ignored;
  if (!tls_) {
    Socket().shutdown(tcp::socket::shutdown_send, ignored);
    Read();  // until the client closes its side (OnRead: CloseNow) or kLinger
  } else if (read_pending_) {
    Socket().cancel(ignored);  // OnRead then starts the TLS shutdown (one read at a time on the TLS stream)
  } else {
    TlsShutdown();
  }
}

void Session::CloseNow() {
  if (phase_ == Phase::kClosed) return;
  phase_ = Phase::kClosed;
  DisarmTimer();
  error_code ignored;
  write_timer_.cancel();
  Socket().close(ignored);  // the pending operations complete with operation_aborted
  parser_.reset();
  // The counts first, the program's callbacks last: whoever OnClientGone wakes sees the exchange ended.
  std::function<void()> on_gone;
  if (exchange_ != nullptr) {
    std::lock_guard<std::mutex> lock(exchange_->mu);
    if (!exchange_->finished) {
      exchange_->finished = exchange_->gone = true;
      on_gone = std::move(exchange_->on_gone);
    }
  }
  exchange_.reset();
  EndExchangeCount();
  // Chunks that can never be written: done(false), in order. The item being written stays (unmoved) until its
  // write completes: the operation still refers to its bytes.
  std::vector<std::function<void(bool)>> failed;
  for (OutItem& item : out_) {
    if (item.done) failed.push_back(std::move(item.done));
    item.done = nullptr;
  }
  if (writing_) {
    out_.erase(out_.begin() + 1, out_.end());
  } else {
    out_.clear();
  }
  {
    std::lock_guard<std::mutex> lock(core_->mu);
    core_->sessions.erase(this);
    --core_->open_connections;
    core_->cv.notify_all();
  }
  RunGuarded(on_gone);
  for (auto& done : failed) RunGuarded(done, false);
}

// The I/O of a Session over one stream type.
template <class Stream>
class StreamSession final : public Session {
 public:
  template <class... StreamArgs>
  StreamSession(std::shared_ptr<Core> core, std::string peer, bool tls, tcp::socket socket, StreamArgs&... args)
      : Session(core, socket.get_executor(), std::move(peer), tls), stream_(std::move(socket), args...) {}

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  std::shared_ptr<StreamSession> Self() { return std::static_pointer_cast<StreamSession>(shared_from_this()); }

  void Handshake() override {
    if constexpr (kTls) {
      stream_.async_handshake(ssl::stream_base::server,
                              [self = Self()](const error_code& ec) { self->OnHandshake(ec); });
    }
  }

  void ReadSome(net::mutable_buffer buffer) override {
    stream_.async_read_some(buffer, [self = Self()](const error_code& ec, std::size_t n) { self->OnRead(ec, n); });
  }

  void WriteItem(OutItem& item) override {
    // The completion condition sees every partial write: each one is progress for the write timer.
    auto progress = [self = Self(), seen = std::size_t{0}](const error_code& ec, std::size_t total) mutable {
      if (total != seen) {
        seen = total;
        self->NoteProgress();
      }
      return ec ? std::size_t{0} : std::size_t{65536};
    };
    auto done = [self = Self()](const error_code& ec, std::size_t) { self->OnWritten(ec); };
    switch (item.framing) {
      case Framing::kChunk:
        chunk_.emplace(bhttp::make_chunk(net::const_buffer(item.data.data(), item.data.size())));
        net::async_write(stream_, *chunk_, std::move(progress), std::move(done));
        break;
      case Framing::kLastChunk:
        net::async_write(stream_, last_chunk_, std::move(progress), std::move(done));
        break;
      default: {
        const std::array<net::const_buffer, 2> buffers{net::buffer(item.head), net::buffer(item.data)};
        net::async_write(stream_, buffers, std::move(progress), std::move(done));
        break;
      }
    }
  }

  void TlsShutdown() override {
    if constexpr (kTls) {
      if (tls_shutdown_started_) return;
      tls_shutdown_started_ = true;
      stream_.async_shutdown([self = Self()](const error_code&) { self->CloseNow(); });
    } else {
      CloseNow();
    }
  }

  tcp::socket& Socket() override { return beast::get_lowest_layer(stream_).socket(); }

  Stream stream_;
  std::optional<bhttp::chunk_body<net::const_buffer>> chunk_;  // the chunk being written
  const bhttp::chunk_last<bhttp::chunk_crlf> last_chunk_ = bhttp::make_chunk_last();
};

std::string FormatPeer(const tcp::socket& socket) {
  error_code ec;
  const tcp::endpoint ep = socket.remote_endpoint(ec);
  if (ec) return "unknown";
  if (ep.address().is_v6()) return absl::StrCat("[", ep.address().to_string(), "]:", ep.port());
  return absl::StrCat(ep.address().to_string(), ":", ep.port());
}

// The TLS context of `files`; INVALID_ARGUMENT naming the file that cannot be read or used.
absl::StatusOr<std::unique_ptr<ssl::context>> MakeTlsContext(const TlsFiles& files) {
  auto readable = [](const std::string& path, const char* what) -> absl::Status {
    if (path.empty()) return absl::InvalidArgumentError(absl::StrCat("TLS ", what, " file not set"));
    std::ifstream in(path);
    if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read TLS ", what, " file '", path, "'"));
    return absl::OkStatus();
  };
  QRAG_RETURN_IF_ERROR(readable(files.cert_chain, "certificate chain"));
  QRAG_RETURN_IF_ERROR(readable(files.private_key, "private key"));
  if (!files.client_ca.empty()) QRAG_RETURN_IF_ERROR(readable(files.client_ca, "client CA"));
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use,
                   ec);
  // An encrypted key is refused rather than prompted for on the terminal.
  ctx->set_password_callback([](std::size_t, ssl::context::password_purpose) { return std::string(); }, ec);
  if (ctx->use_certificate_chain_file(files.cert_chain, ec); ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate chain file '", files.cert_chain, "' is not usable: ", ec.message()));
  }
  if (ctx->use_private_key_file(files.private_key, ssl::context::pem, ec); ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS private key file '", files.private_key, "' is not usable: ", ec.message()));
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("TLS private key file '", files.private_key,
                                                   "' does not match the certificate of '", files.cert_chain, "'"));
  }
  if (!files.client_ca.empty()) {
    if (ctx->load_verify_file(files.client_ca, ec); ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS client CA file '", files.client_ca, "' is not usable: ", ec.message()));
    }
    // Names the acceptable CAs in the certificate request (clients with several certificates pick by them).
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca.c_str()); names != nullptr) {
      SSL_CTX_set_client_CA_list(ctx->native_handle(), names);
    }
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
  }
  return ctx;
}

}  // namespace

const std::string* Request::Find(std::string_view lowercase_name) const {
  for (const Header& h : headers) {
    if (h.name == lowercase_name) return &h.value;
  }
  return nullptr;
}

class Server::Impl {
 public:
  Impl(std::shared_ptr<Core> core, int threads)
      : core_(std::move(core)),
        ioc_(threads),
        acceptor_(net::make_strand(ioc_)),
        accept_retry_(acceptor_.get_executor()),
        threads_count_(threads) {
    core_->io_executor = ioc_.get_executor();
  }

  ~Impl() { Shutdown(absl::ZeroDuration()); }

  // Resolves and binds HOST:PORT; sets address_.
  absl::Status Listen(const std::string& address) {
    const std::size_t colon = address.rfind(':');
    int port = -1;
    if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
        port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(
          "address '", address, "' is not HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080; port 0 = any free port)"));
    }
    std::string host = address.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    const std::string unavailable = absl::StrCat("cannot serve on ", address, ": ");
    tcp::resolver resolver(ioc_);
    error_code ec;
    const auto endpoints =
        resolver.resolve(host, std::to_string(port), tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec) return absl::UnavailableError(unavailable + ec.message());
    std::string error = "no address";
    for (const auto& entry : endpoints) {
      acceptor_.open(entry.endpoint().protocol(), ec);
      if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);  // restart after TIME_WAIT
      if (!ec) acceptor_.bind(entry.endpoint(), ec);
      if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
      if (!ec) break;
      error = ec.message();
      error_code ignored;
      acceptor_.close(ignored);
    }
    if (!acceptor_.is_open()) return absl::UnavailableError(unavailable + error);
    const tcp::endpoint bound = acceptor_.local_endpoint(ec);
    if (ec) return absl::UnavailableError(unavailable + ec.message());
    address_ = absl::StrCat(address.substr(0, colon), ":", bound.port());
    return absl::OkStatus();
  }

  void Run() {
    Accept();
    for (int i = 0; i < threads_count_; ++i) {
      threads_.emplace_back([this] {
        while (true) {
          try {
            ioc_.run();
            return;
          } catch (...) {
            // A handler threw past its guards (e.g. bad_alloc): keep serving the other connections.
          }
        }
      });
    }
  }

  void Shutdown(absl::Duration grace) {
    std::lock_guard<std::mutex> once(shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
    core_->stopping = true;
    net::post(acceptor_.get_executor(), [this] {
      error_code ignored;
      acceptor_.close(ignored);
      accept_retry_.cancel();
    });
    PostToSessions(&Session::DoStop);
    const Clock::time_point deadline = Clock::now() + ToClock(grace);
    {
      std::unique_lock<std::mutex> lock(core_->mu);
      core_->cv.wait_until(lock, deadline, [this] { return core_->open_exchanges == 0; });
    }
    PostToSessions(&Session::DoClose);
    {
      // Every connection closed (their OnClientGone run on the I/O threads, which the join below waits for);
      // bounded in case a program callback blocks the I/O threads.
      std::unique_lock<std::mutex> lock(core_->mu);
      core_->cv.wait_for(lock, std::chrono::seconds(10), [this] { return core_->open_connections == 0; });
    }
    {
      // From here no Exchange holds a Session outside the io_context, so destroying it (with its queued
      // handlers, which own the sessions) is the end of every connection.
      std::unique_lock<std::shared_mutex> gate(core_->gate_mu);
      core_->gate_open = false;
    }
    ioc_.stop();
    for (std::thread& t : threads_) {
      if (t.get_id() == std::this_thread::get_id()) {
        t.detach();  // Shutdown called from an I/O thread (a handler): it cannot join itself
      } else {
        t.join();
      }
    }
    threads_.clear();
  }

  const std::string& address() const { return address_; }

  int open_exchanges() const {
    std::lock_guard<std::mutex> lock(core_->mu);
    return core_->open_exchanges;
  }

 private:
  void PostToSessions(void (Session::*method)()) {
    std::lock_guard<std::mutex> lock(core_->mu);
    for (const auto& [raw, weak] : core_->sessions) {
      if (std::shared_ptr<Session> s = weak.lock()) {
        net::post(s->executor(), [s, method] { ((*s).*method)(); });
      }
    }
  }

  void Accept() {
    acceptor_.async_accept(net::make_strand(ioc_),
                           [this](const error_code& ec, tcp::socket socket) { OnAccept(ec, std::move(socket)); });
  }

  void OnAccept(const error_code& ec, tcp::socket socket) {
    if (core_->stopping || ec == net::error::operation_aborted) return;
    if (ec) {  // EMFILE and the like: try again shortly rather than spin
      accept_retry_.expires_after(kAcceptRetry);
      accept_retry_.async_wait([this](const error_code& e) {
        if (!e && !core_->stopping) Accept();
      });
      return;
    }
    Accept();
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      if (core_->open_connections >= core_->max_connections) {
        error_code ignored;
        socket.close(ignored);  // over max_connections: closed at once
        return;
      }
      ++core_->open_connections;
    }
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // chunks of a stream go out as written
    std::string peer = FormatPeer(socket);
    try {
      std::shared_ptr<Session> session;
      if (core_->tls != nullptr) {
        session = std::make_shared<StreamSession<beast::ssl_stream<beast::tcp_stream>>>(core_, std::move(peer), true,
                                                                                        std::move(socket), *core_->tls);
      } else {
        session = std::make_shared<StreamSession<beast::tcp_stream>>(core_, std::move(peer), false, std::move(socket));
      }
      net::post(session->executor(), [session] { session->Start(); });
    } catch (...) {  // e.g. SSL_new failed: drop this connection only
      std::lock_guard<std::mutex> lock(core_->mu);
      --core_->open_connections;
      core_->cv.notify_all();
    }
  }

  std::shared_ptr<Core> core_;
  net::io_context ioc_;  // destroyed after the acceptor and timers, before core_
  tcp::acceptor acceptor_;
  net::steady_timer accept_retry_;
  const int threads_count_;
  std::string address_;
  std::vector<std::thread> threads_;
  std::mutex shutdown_mu_;
  bool shut_down_ = false;
};

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options, Handler handler) {
  if (options.threads < 1 || options.max_connections < 1 || options.max_body_bytes < 1 ||
      options.request_timeout <= absl::ZeroDuration() || options.idle_timeout <= absl::ZeroDuration() ||
      options.write_timeout <= absl::ZeroDuration() || !handler) {
    return absl::InvalidArgumentError(
        "HTTP server options: threads, max_connections and max_body_bytes must be >= 1, the timeouts > 0, and a "
        "handler set");
  }
  auto core = std::make_shared<Core>();
  core->request_timeout = ToClock(options.request_timeout);
  core->idle_timeout = ToClock(options.idle_timeout);
  core->write_timeout = ToClock(options.write_timeout);
  core->max_body_bytes = options.max_body_bytes;
  core->max_connections = options.max_connections;
  core->handler = std::move(handler);
  if (options.tls.has_value()) {
    QRAG_ASSIGN_OR_RETURN(core->tls, MakeTlsContext(*options.tls));
  }
  try {
    auto impl = std::make_unique<Impl>(core, options.threads);
    QRAG_RETURN_IF_ERROR(impl->Listen(options.listen_address));
    impl->Run();
    return std::unique_ptr<Server>(new Server(std::move(impl)));
  } catch (const std::exception& e) {  // thread creation, allocation
    return absl::UnavailableError(absl::StrCat("cannot serve on ", options.listen_address, ": ", e.what()));
  }
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

const std::string& Server::address() const { return impl_->address(); }

void Server::Shutdown(absl::Duration grace) { impl_->Shutdown(grace); }

int Server::open_exchanges() const { return impl_->open_exchanges(); }

}  // namespace qrag::http
