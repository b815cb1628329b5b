// perform_http: libcurl easy transfers with header parsing and streamed bodies.
#include "adapters/curl_transfer.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <utility>

namespace ocirelay::adapters {
namespace {

constexpr std::size_t kErrorBodyCap = 4096;

void global_init_once() {
  static const bool done = [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return true;
  }();
  (void)done;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// State shared with the curl callbacks of one transfer.
struct TransferState {
  BodySink* sink = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  std::size_t max_body = 0;
  HttpExchange exchange;
  bool head_delivered = false;
  curl_off_t last_received = -1;  // bytes received at the previous progress call
  std::optional<Error> abort_error;
  const HttpRequest* req = nullptr;
  std::uint64_t sent = 0;  // upload bytes handed to libcurl
  bool rewind_refused = false;
};

// Header values ocirelay keeps (stores, compares, forwards to clients) must be visible
// ASCII: a byte outside it (0xFF in an ETag, say) would reach the store's JSON rows and
// the clients' responses. RFC 9110 allows obs-text there, but no registry needs it.
bool visible_ascii(std::string_view v) {
  return std::all_of(v.begin(), v.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c == '\t' || (c >= 0x20 && c < 0x7f);
  });
}

// libcurl's callbacks are C: nothing may unwind through them. A throw from a sink (a bug)
// aborts the transfer with an internal error instead.
template <class F>
auto callback_guard(TransferState* st, decltype(std::declval<F>()()) abort_value, F&& fn) noexcept {
  try {
    return fn();
  } catch (const std::exception& e) {
    st->abort_error = Error{Errc::internal, std::string("transfer callback: ") + e.what()};
  } catch (...) {
    st->abort_error = Error{Errc::internal, "transfer callback: unexpected exception"};
  }
  return abort_value;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* st = static_cast<TransferState*>(user);
  return callback_guard(st, std::size_t{0}, [&] {
    parse_header_line(st->exchange, std::string_view(data, size * n));
    return size * n;
  });
}

std::size_t deliver_body(TransferState* st, char* data, std::size_t size, std::size_t n) {
  const std::size_t len = size * n;
  const int status = st->exchange.head.status;
  // With redirects followed, curl hands over only the final response's body, so the
  // head parsed last is the one this body belongs to.
  if (status < 200 || status >= 300) {
    auto& b = st->exchange.body;
    b.append(data, std::min(len, kErrorBodyCap - std::min(kErrorBodyCap, b.size())));
    return len;
  }
  if (st->sink == nullptr) {
    if (st->exchange.body.size() + len > st->max_body) {
      st->abort_error = Error{Errc::too_large, "response body exceeds " +
                                                   std::to_string(st->max_body) + " bytes"};
      return 0;
    }
    st->exchange.body.append(data, len);
    return len;
  }
  if (!st->head_delivered) {
    st->head_delivered = true;
    if (Status s = st->sink->on_head(st->exchange.head); !s) {
      st->abort_error = s.error();
      return 0;
    }
  }
  if (Status s = st->sink->on_data(data, len); !s) {
    st->abort_error = s.error();
    return 0;
  }
  return len;
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* st = static_cast<TransferState*>(user);
  return callback_guard(st, std::size_t{0}, [&] { return deliver_body(st, data, size, n); });
}

// Request body from HttpRequest::upload, straight into libcurl's buffer.
std::size_t on_read(char* buf, std::size_t size, std::size_t n, void* user) {
  auto* st = static_cast<TransferState*>(user);
  return callback_guard(st, std::size_t{CURL_READFUNC_ABORT}, [&]() -> std::size_t {
    const HttpRequest& req = *st->req;
    const std::uint64_t left = req.upload_length - st->sent;
    if (left == 0) return 0;
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(size * n, left));
    for (;;) {
      const std::uint64_t at = req.upload_offset + st->sent;
      auto got = req.upload->read(at, buf, want);
      if (!got) {
        st->abort_error = std::move(got).error();
        return CURL_READFUNC_ABORT;
      }
      if (*got > 0) {
        st->sent += *got;
        if (req.uploaded) *req.uploaded = st->sent;
        return *got;
      }
      if (Status w = req.upload->wait_for_more(at, st->cancel); !w) {
        st->abort_error = std::move(w).error();
        return CURL_READFUNC_ABORT;
      }
    }
  });
}

// libcurl rewinds a body to send it again. Uploads follow no redirects and leave auth to
// the caller, so a rewind after bytes went out is libcurl resending a request whose
// reused connection closed without an answer: the registry may have acted on it, and
// the caller decides (a PUT is checked with a HEAD first), not libcurl.
int on_seek(void* user, curl_off_t offset, int origin) {
  auto* st = static_cast<TransferState*>(user);
  if (st->sent > 0) {
    st->rewind_refused = true;
    return CURL_SEEKFUNC_CANTSEEK;
  }
  if (origin != SEEK_SET || offset < 0 ||
      static_cast<std::uint64_t>(offset) > st->req->upload_length)
    return CURL_SEEKFUNC_CANTSEEK;
  st->sent = static_cast<std::uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

// libcurl calls this at least once a second, and more often while bytes flow.
int on_progress(void* user, curl_off_t, curl_off_t received, curl_off_t, curl_off_t) {
  auto* st = static_cast<TransferState*>(user);
  return callback_guard(st, 1, [&] {
    if (st->cancel && st->cancel->load(std::memory_order_relaxed)) {
      st->abort_error = Error{Errc::cancelled, "transfer cancelled (shutting down)"};
      return 1;
    }
    const bool idle = received == st->last_received;
    st->last_received = received;
    if (!idle || !st->head_delivered || st->sink == nullptr) return 0;
    if (Status s = st->sink->on_idle(); !s) {
      st->abort_error = s.error();
      return 1;  // aborts the transfer
    }
    return 0;
  });
}

Error curl_error(CURLcode rc, const char* errbuf) {
  std::string msg = curl_easy_strerror(rc);
  if (errbuf[0] != '\0') msg += std::string(" (") + errbuf + ")";
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_AGAIN:
      return Error{Errc::upstream_unavailable, std::move(msg)};
    default:
      return Error{Errc::upstream_protocol, std::move(msg)};
  }
}

}  // namespace

void parse_header_line(HttpExchange& x, std::string_view line) {
  line = trim(line);
  if (line.starts_with("HTTP/")) {
    // Status line: a new response begins (1xx, a redirect hop, or the final one).
    int status = 0;
    auto sp = line.find(' ');
    if (sp != std::string_view::npos) {
      auto code = line.substr(sp + 1, 3);
      std::from_chars(code.data(), code.data() + code.size(), status);
    }
    x.head = ResponseHead{};
    x.head.status = status;
    x.challenges.clear();
    x.body.clear();
    return;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return;
  auto name = trim(line.substr(0, colon));
  auto value = trim(line.substr(colon + 1));
  if (!visible_ascii(value)) return;  // as if absent
  ResponseHead& h = x.head;
  if (iequals(name, "content-type")) {
    h.content_type = value;
  } else if (iequals(name, "content-length")) {
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec == std::errc() && p == value.data() + value.size()) h.content_length = n;
  } else if (iequals(name, "docker-content-digest")) {
    h.docker_content_digest = value;
  } else if (iequals(name, "etag")) {
    h.etag = value;
  } else if (iequals(name, "link")) {
    h.link = value;
  } else if (iequals(name, "ratelimit-remaining")) {
    h.ratelimit_remaining = parse_ratelimit(value);
  } else if (iequals(name, "ratelimit-limit")) {
    h.ratelimit_limit = parse_ratelimit(value);
  } else if (iequals(name, "retry-after")) {
    h.retry_after = parse_retry_after(value, static_cast<std::int64_t>(std::time(nullptr)));
  } else if (iequals(name, "location")) {
    h.location = value;
  } else if (iequals(name, "range")) {
    h.range = value;
  } else if (iequals(name, "oci-subject")) {
    h.oci_subject = value;
  } else if (iequals(name, "oci-chunk-min-length")) {
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec == std::errc() && p == value.data() + value.size()) h.chunk_min_length = n;
  } else if (iequals(name, "www-authenticate")) {
    x.challenges.emplace_back(value);
  }
}

std::optional<std::int64_t> parse_retry_after(std::string_view value, std::int64_t now_unix) {
  value = trim(value);
  if (value.empty()) return std::nullopt;
  if (std::isdigit(static_cast<unsigned char>(value.front()))) {
    std::int64_t n = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || p != value.data() + value.size()) return std::nullopt;
    return n;
  }
  const std::string date(value);
  const time_t at = curl_getdate(date.c_str(), nullptr);
  if (at == -1) return std::nullopt;
  return std::max<std::int64_t>(0, static_cast<std::int64_t>(at) - now_unix);
}

std::optional<std::int64_t> parse_ratelimit(std::string_view value) {
  value = trim(value);
  std::int64_t n = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || p == value.data()) return std::nullopt;
  return n;
}

CurlHandlePool::CurlHandlePool(std::size_t max_idle) : max_idle_(max_idle) {
  global_init_once();
}

CurlHandlePool::~CurlHandlePool() {
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* CurlHandlePool::acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  CURL* h = curl_easy_init();
  if (h == nullptr) std::abort();  // out of memory: nothing sensible to do
  return h;
}

void CurlHandlePool::discard(void* handle) { curl_easy_cleanup(static_cast<CURL*>(handle)); }

void CurlHandlePool::release(void* handle) {
  auto* h = static_cast<CURL*>(handle);
  // Reset drops options (and with them any Authorization header list pointer) but keeps
  // the connection cache, which is the point of pooling.
  curl_easy_reset(h);
  std::lock_guard lock(mu_);
  if (idle_.size() < max_idle_) {
    idle_.push_back(h);
    return;
  }
  curl_easy_cleanup(h);
}

namespace {

// One attempt of perform_http. `fresh`: on a new connection. Sets `retry` when the attempt
// failed as garbage on a reused connection before anything reached the caller, for an
// idempotent request: an upstream that sent more than it announced on that connection
// earlier (the next response then starts with its leftovers).
Result<HttpExchange> perform_once(CurlHandlePool& pool, const TransferLimits& limits,
                                  const HttpRequest& req, BodySink* sink, std::size_t max_body,
                                  bool fresh, bool& retry) {
  CURL* h = static_cast<CURL*>(pool.acquire());
  struct Release {
    CurlHandlePool& pool;
    CURL* h;
    curl_slist* headers = nullptr;
    bool discard = false;  // the handle's connections are suspect: close them
    ~Release() {
      if (discard)
        pool.discard(h);
      else
        pool.release(h);
      curl_slist_free_all(headers);
    }
  } release{pool, h};

  TransferState st;
  st.req = &req;
  st.sink = sink;
  st.cancel = limits.cancel;
  st.max_body = max_body;
  char errbuf[CURL_ERROR_SIZE] = {0};

  for (const auto& line : req.headers) release.headers = curl_slist_append(release.headers, line.c_str());

  curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  if (req.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (req.upload != nullptr) {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, std::string(req.method).c_str());
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.upload_length));
    curl_easy_setopt(h, CURLOPT_READFUNCTION, &on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &st);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, &on_seek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, &st);
    // Large pieces per read: fewer syscalls per chunk of a multi-GB layer.
    curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 1L << 20);
    // Registries answer a PATCH or PUT only after its body: no 100-continue round trip.
    release.headers = curl_slist_append(release.headers, "Expect:");
  } else if (req.method == "POST" || req.method == "PUT") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    if (req.method == "PUT") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
    // No "Expect: 100-continue" round trip for small API bodies.
    release.headers = curl_slist_append(release.headers, "Expect:");
  } else if (req.method != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, std::string(req.method).c_str());
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, release.headers);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &st);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!limits.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, limits.ca_file.c_str());
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(limits.connect_timeout.count()));
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                   std::max(1L, static_cast<long>(limits.stall_timeout.count() / 1000)));
  if (limits.request_timeout.count() > 0) {
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(limits.request_timeout.count()));
  }
  if (req.follow_redirects) {
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    // Explicit, although it is libcurl's default: credentials stay on the first host.
    curl_easy_setopt(h, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  }
  // Streamed bodies (blobs) arrive in large pieces: with curl's default 16 KiB, a layer
  // costs a write(2), a hash update and a reader wake-up per 16 KiB, which halved the
  // cold-pull throughput here. libcurl caps the value itself (512 KiB before 7.88).
  if (sink != nullptr) curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 1L << 20);
  // The progress callback wakes a streamed body's sink when the upstream pauses, and
  // aborts a cancelled transfer.
  if (sink != nullptr || limits.cancel != nullptr || req.upload != nullptr) {
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &st);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  }
  // No Accept-Encoding and no decoding: blob bytes must reach the sink as digested.
  curl_easy_setopt(h, CURLOPT_HTTP_CONTENT_DECODING, 0L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "ocirelay/0.1");

  if (fresh) curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);

  CURLcode rc = curl_easy_perform(h);
  // After a failed or aborted exchange the connection may hold unread bytes, or bytes the
  // upstream should not have sent: it is never reused.
  release.discard = rc != CURLE_OK || st.abort_error.has_value();
  if (st.abort_error) return *std::move(st.abort_error);
  if (rc == CURLE_SEND_FAIL_REWIND && st.rewind_refused) {
    return Error{Errc::upstream_unavailable,
                 "the connection closed after the request was sent, without an answer"};
  }
  if (rc != CURLE_OK) {
    long connects = 0;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
    const bool garbage = rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_WEIRD_SERVER_REPLY ||
                         rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR;
    retry = garbage && !fresh && connects == 0 && !st.head_delivered &&
            (req.method == "GET" || req.method == "HEAD");
    return curl_error(rc, errbuf);
  }

  const int status = st.exchange.head.status;
  if (sink != nullptr && status >= 200 && status < 300 && !st.head_delivered) {
    // Empty 2xx body: the sink still learns the head.
    if (Status s = sink->on_head(st.exchange.head); !s) return s.error();
  }
  return std::move(st.exchange);
}

}  // namespace

Result<HttpExchange> perform_http(CurlHandlePool& pool, const TransferLimits& limits,
                                  const HttpRequest& req, BodySink* sink,
                                  std::size_t max_body) {
  bool retry = false;
  auto r = perform_once(pool, limits, req, sink, max_body, /*fresh=*/false, retry);
  if (r || !retry) return r;
  return perform_once(pool, limits, req, sink, max_body, /*fresh=*/true, retry);
}

}  // namespace ocirelay::adapters
