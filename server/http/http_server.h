// An asynchronous HTTP/1.1 server (Boost.Beast over Boost.Asio, optionally TLS through OpenSSL) that the
// front ends hand their routes to: the OpenAI-compatible API (--http-listen) and Prometheus' /metrics
// (--metrics-listen). It knows nothing of models or metrics.
//
// Why event-driven: no thread is held by a connection, so slow or hostile clients (one byte every few seconds,
// a client that never reads its stream, thousands of idle keep-alive connections) cost a file descriptor and a
// little memory each, never a thread, and cannot delay another exchange. A few I/O threads (`threads`) run
// every connection.
//
// Limits and deadlines (ServerOptions):
//   - the request head and body must arrive within `request_timeout` of the first byte of the request (a whole-
//     request deadline, not reset by each byte: a client trickling bytes is dropped on time; 408 if the head
//     arrived, else the connection is closed);
//   - a connection idle between requests (keep-alive) is closed after `idle_timeout`;
//   - a body over `max_body_bytes` is answered 413 without reading it; a head over 16 KiB 431; an unparsable
//     request 400 (each with "Connection: close");
//   - past `max_connections` open connections a new one is closed at once;
//   - a response write that makes no progress for `write_timeout` (a client that stopped reading) ends the
//     connection, as if the client had gone.
// HEAD requests get the handler's response headers (Content-Length of its body) without the body.
//
// Each request is one Exchange handed to the Handler on an I/O thread; the handler must not block (queue real
// work elsewhere) and answers through the Exchange, from any thread, now or later: either Respond once, or
// StartStream, Write..., End (chunked transfer encoding; each Write goes out as written, in order). While an
// exchange is open the server keeps reading the connection, so a client that disconnects (or a stream that
// fails or stalls) is noticed at once: the OnClientGone callback runs (once, on an I/O thread), and later
// Respond/Write/End calls are ignored (a client that half-closes its side counts as gone: reading cannot tell it
// from one that closed). Keep-alive: the next request of a connection is read once the previous
// exchange ended (no pipelining: bytes of a next request wait in the buffer).
//
// Thread-safe: every Exchange method may be called from any thread.
#ifndef QRAG_SERVER_HTTP_HTTP_SERVER_H_
#define QRAG_SERVER_HTTP_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qrag::http {

struct Header {
  std::string name;   // lowercase in a Request; as given in a Response
  std::string value;
};

struct Request {
  std::string method;  // "GET", "POST", ... as received
  std::string target;  // "/v1/models?limit=2"
  std::string path;    // "/v1/models" (the target up to '?')
  std::string query;   // "limit=2" (after '?', not decoded)
  std::vector<Header> headers;  // names lowercase, in arrival order
  std::string body;
  std::string peer;    // "IP:PORT" of the client
  bool tls = false;

  // The first header of that (lowercase) name, or null.
  const std::string* Find(std::string_view lowercase_name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<Header> headers;  // extra headers (Content-Type, Content-Length, Connection: set by the server)
  std::string body;
};

class Exchange {
 public:
  virtual ~Exchange() = default;

  virtual const Request& request() const = 0;

  // The whole response; ends the exchange. Only the first of Respond / StartStream counts.
  virtual void Respond(Response response) = 0;

  // Starts a streamed response: status and headers now, the body in chunks (Transfer-Encoding: chunked).
  virtual void StartStream(int status, std::string content_type, std::vector<Header> headers = {}) = 0;
  // Queues `data` as the next chunk (empty data is skipped). `done`, when set, runs on an I/O thread once the
  // chunk was handed to the kernel (true) or can never be (false: client gone, server stopping; once the server
  // has stopped, on the calling thread); use it to keep one write in flight and coalesce what is produced
  // meanwhile.
  virtual void Write(std::string data, std::function<void(bool ok)> done = nullptr) = 0;
  // Ends the stream (the last chunk) after the queued chunks; ends the exchange.
  virtual void End() = 0;

  // Runs `callback` once when the client goes away (or the server stops) before the exchange ended; at once
  // (on the calling thread) if it already went. Set it once, before the work it cancels starts.
  virtual void OnClientGone(std::function<void()> callback) = 0;
};

using Handler = std::function<void(std::shared_ptr<Exchange> exchange)>;

struct TlsFiles {
  std::string cert_chain;   // PEM certificate (chain)
  std::string private_key;  // PEM key
  std::string client_ca;    // PEM CA bundle: set = mutual TLS (clients must present a certificate it signed)
};

struct ServerOptions {
  std::string listen_address;  // "HOST:PORT" or "[IPv6]:PORT"; port 0 picks a free one (see address())
  int threads = 2;             // I/O threads
  std::size_t max_body_bytes = 4 << 20;
  absl::Duration request_timeout = absl::Seconds(10);
  absl::Duration idle_timeout = absl::Seconds(60);
  absl::Duration write_timeout = absl::Seconds(30);
  int max_connections = 1024;
  std::optional<TlsFiles> tls;  // set: every connection is TLS (HTTPS)
};

class Server {
 public:
  // Binds, listens and starts the I/O threads. INVALID_ARGUMENT: not HOST:PORT, or TLS files that cannot be
  // read or do not match (naming the file), or an option out of range (threads, max_connections or
  // max_body_bytes < 1, a timeout <= 0, no handler); UNAVAILABLE: the address cannot be resolved or bound.
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options, Handler handler);

  ~Server();  // Shutdown(absl::ZeroDuration()) if not done

  // "HOST:PORT" with the bound port.
  const std::string& address() const;

  // Stops accepting at once; waits up to `grace` for the open exchanges to end (idle connections are closed
  // at once), then closes every connection (OnClientGone runs for exchanges still open) and joins the
  // threads. Idempotent.
  void Shutdown(absl::Duration grace);

  // Exchanges started and not yet ended (an exchange ends once its response's last byte was written, or its
  // client went).
  int open_exchanges() const;

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qrag::http

#endif  // QRAG_SERVER_HTTP_HTTP_SERVER_H_
