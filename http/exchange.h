// One request and its response on a connection, as a route handler sees it: the request's
// line and headers, and the ways to answer (a whole small body in one write, or a header
// followed by raw bytes and file ranges sent with sendfile). Beast stays inside http/.
//
// An Exchange lives for one request, on the connection's I/O thread; its methods must be
// awaited from that thread (a handler that does blocking work moves it to a pool and
// resumes there, see proxy/). Expected network outcomes are values: a false or short
// return means the client is gone or stalled, and the connection will close.
#pragma once

#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace ocirelay::http {

enum class Method { get, head, put, post, patch, delete_, other };

// What a handler returns, for the access log and the request metrics.
struct Outcome {
  unsigned status = 0;
  std::uint64_t bytes = 0;            // body bytes sent
  std::string_view route = "unknown";  // metric label: a string with static lifetime
  std::string_view cache = "-";       // access-log field: hit | miss | stale | bypass | -
  std::string_view source = "cache";  // where the body came from: cache | upstream
  bool close = false;                 // the connection cannot carry another request
};

// A response header. Names are string literals (static lifetime), values are copied.
class Response {
 public:
  explicit Response(unsigned status) : status_(status) {}
  unsigned status() const { return status_; }
  // Adds a field; at most kMaxFields (more are dropped: a programming error caught in tests).
  void set(std::string_view name, std::string value);
  void content_length(std::uint64_t n) { length_ = n; }
  void chunked() { chunked_ = true; }
  // Ends the connection after this response.
  void close() { close_ = true; }

  static constexpr std::size_t kMaxFields = 12;
  std::size_t field_count() const { return count_; }
  const std::pair<std::string_view, std::string>& field(std::size_t i) const { return fields_[i]; }
  const std::optional<std::uint64_t>& length() const { return length_; }
  bool is_chunked() const { return chunked_; }
  bool closes() const { return close_; }

 private:
  unsigned status_;
  std::array<std::pair<std::string_view, std::string>, kMaxFields> fields_{};
  std::size_t count_ = 0;
  std::optional<std::uint64_t> length_;
  bool chunked_ = false;
  bool close_ = false;
};

class Exchange {
 public:
  virtual ~Exchange() = default;

  virtual Method method() const = 0;
  virtual std::string_view method_name() const = 0;
  virtual std::string_view target() const = 0;  // as sent: path and query, not decoded
  virtual unsigned version() const = 0;         // 10 or 11
  // The request announced a body (Content-Length > 0 or chunked). A handler reads it with
  // read_body; a body not read to its end closes the connection after the response (its
  // bytes would be taken for the next request).
  virtual bool has_body() const = 0;
  // The announced Content-Length; nullopt for a chunked body (or none).
  virtual std::optional<std::uint64_t> body_length() const = 0;
  // Reads the next bytes of the body into `buf` (at most `n`): `n` 0 at the end. `ok` false
  // when the client went away, stalled (idle_timeout) or framed the body wrongly.
  struct BodyRead {
    std::size_t n = 0;
    bool ok = true;
    std::string error;
  };
  virtual boost::asio::awaitable<BodyRead> read_body(char* buf, std::size_t n) = 0;
  // A request header's values joined with ", "; empty when absent.
  virtual std::string header(std::string_view name) const = 0;

  // A complete response with a small in-memory body (manifests, listings, errors), header
  // and body in one write; Content-Length is set here. A HEAD gets the header only.
  virtual boost::asio::awaitable<Outcome> send(Response res, std::string_view body) = 0;
  // The header alone; the body follows through write() and send_file(). `res` says how it
  // is framed (content_length or chunked).
  virtual boost::asio::awaitable<bool> send_header(Response res) = 0;
  virtual boost::asio::awaitable<bool> write(std::string_view bytes) = 0;
  // Sends [offset, offset + n) of `fd` (sendfile on plain connections); returns the bytes
  // sent, fewer when the client went away, stalled or the file was short.
  virtual boost::asio::awaitable<std::uint64_t> send_file(int fd, std::uint64_t offset,
                                                          std::uint64_t n) = 0;

  // The client's address ("192.0.2.7", "2001:db8::1"), for limits keyed by client.
  virtual std::string remote_address() const = 0;
  // The address the connection came in on, as a URL authority ("127.0.0.1:5000",
  // "[::1]:5000"): for a URL pointing back at this server when the request has no Host.
  virtual std::string local_address() const = 0;
  // The connection is TLS.
  virtual bool secure() const = 0;

  // The connection's executor: timers and resumptions of this exchange run there.
  virtual boost::asio::any_io_executor executor() const = 0;
  // True once the listener is stopping (a response should not promise keep-alive).
  virtual bool stopping() const = 0;
};

// A distribution-spec error answer ({"errors":[{"code","message"}]}, application/json).
boost::asio::awaitable<Outcome> send_error(Exchange& ex, unsigned status, std::string_view code,
                                           std::string_view message, bool close = false);

}  // namespace ocirelay::http
