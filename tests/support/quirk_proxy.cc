// QuirkProxy: blocking Beast on one thread per client connection.
#include "tests/support/quirk_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>

#include "tests/support/loopback_http.h"

namespace ocirelay::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kBodyLimit = 512 * kMiB;

// "/v2/<name>/blobs/uploads/<uuid>" -> "<uuid>"; "" for other targets.
std::string upload_session(const std::string& target) {
  const std::string marker = "/blobs/uploads/";
  auto at = target.find(marker);
  if (at == std::string::npos) return {};
  std::string rest = target.substr(at + marker.size());
  return rest.substr(0, rest.find('?'));
}

http::response<http::string_body> local_reply(unsigned version, int status,
                                              const std::string& body = {}) {
  http::response<http::string_body> res{static_cast<http::status>(status), version};
  if (!body.empty()) res.set(http::field::content_type, "application/json");
  res.body() = body;
  res.prepare_payload();
  return res;
}

}  // namespace

QuirkProxy::QuirkProxy(std::uint16_t upstream_port, Quirks quirks)
    : upstream_port_(upstream_port), quirks_(quirks) {
  listen_fd_ = listen_loopback(port_, 64);
  if (listen_fd_ >= 0) acceptor_ = std::thread([this] { accept_loop(); });
}

QuirkProxy::~QuirkProxy() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  // No new threads after the acceptor is gone.
  for (auto& t : threads_) t.join();
}

void QuirkProxy::accept_loop() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      return;  // shut down
    }
    std::lock_guard lock(mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    open_fds_.push_back(fd);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

void QuirkProxy::reply_once(const std::string& method, const std::string& needle, int status,
                            std::vector<std::pair<std::string, std::string>> headers,
                            std::string body) {
  std::lock_guard lock(mu_);
  if (body.empty()) body = R"({"errors":[{"code":"TOOMANYREQUESTS","message":"injected"}]})";
  faults_.push_back({Fault::reply, method, needle, status, std::move(headers), std::move(body), 0, {}, {}, {}});
}

void QuirkProxy::drop_answer_once(const std::string& method, const std::string& needle) {
  std::lock_guard lock(mu_);
  faults_.push_back({Fault::drop, method, needle, 0, {}, {}, 0, {}, {}, {}});
}

void QuirkProxy::wrong_digest_once(const std::string& method, const std::string& needle) {
  std::lock_guard lock(mu_);
  faults_.push_back({Fault::wrong_digest, method, needle, 0, {}, {}, 0, {}, {}, {}});
}

std::shared_ptr<QuirkProxy::Stall> QuirkProxy::stall_answer_once(const std::string& method, const std::string& needle,
                                                                 std::uint64_t after, std::function<bool()> until,
                                                                 std::chrono::milliseconds give_up) {
  auto stall = std::make_shared<Stall>();
  PendingFault f{Fault::stall, method, needle, 0, {}, {}, after, std::move(until), give_up, stall};
  std::lock_guard lock(mu_);
  faults_.push_back(std::move(f));
  return stall;
}

std::optional<QuirkProxy::PendingFault> QuirkProxy::take_fault(const std::string& method,
                                                               const std::string& target) {
  std::lock_guard lock(mu_);
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if (it->method == method && target.find(it->needle) != std::string::npos) {
      PendingFault f = std::move(*it);
      faults_.erase(it);
      return f;
    }
  }
  return std::nullopt;
}

void QuirkProxy::add_answer_header(const std::string& needle, const std::string& name, const std::string& value) {
  std::lock_guard lock(mu_);
  for (auto& h : answer_headers_)
    if (h.needle == needle && h.name == name) {
      h.value = value;
      return;
    }
  answer_headers_.push_back({needle, name, value});
}

std::vector<ProxiedRequest> QuirkProxy::requests() const {
  std::lock_guard lock(mu_);
  return seen_;
}

int QuirkProxy::count(const std::string& method, const std::string& needle) const {
  std::lock_guard lock(mu_);
  return static_cast<int>(std::count_if(seen_.begin(), seen_.end(), [&](const ProxiedRequest& r) {
    return r.method == method && r.target.find(needle) != std::string::npos;
  }));
}

std::uint64_t QuirkProxy::body_bytes(const std::string& method, const std::string& needle) const {
  std::lock_guard lock(mu_);
  std::uint64_t n = 0;
  for (const auto& r : seen_) {
    if (r.method == method && r.target.find(needle) != std::string::npos) n += r.body_bytes;
  }
  return n;
}

void QuirkProxy::serve(int fd) {
  asio::io_context io;
  tcp::socket client(io);
  boost::system::error_code ec;
  client.assign(tcp::v4(), fd, ec);
  if (ec) return;
  std::optional<tcp::socket> upstream;
  beast::flat_buffer in, up_in;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    http::read(client, in, parser, ec);
    if (ec) break;
    http::request<http::string_body> req = parser.release();
    const std::string method(req.method_string());
    const std::string target(req.target());
    ProxiedRequest seen{method, target, req.body().size(), 0, std::chrono::steady_clock::now()};
    auto record = [&](int status) {
      seen.status = status;
      std::lock_guard lock(mu_);
      seen_.push_back(seen);
    };
    auto answer = [&](http::response<http::string_body>& res) {
      record(static_cast<int>(res.result_int()));
      http::write(client, res, ec);
      return !ec && req.keep_alive();
    };
    const std::string session = upload_session(target);

    auto fault = take_fault(method, target);
    if (fault && fault->fault == Fault::reply) {
      auto res = local_reply(req.version(), fault->status, fault->body);
      for (auto& [k, v] : fault->headers) res.set(k, v);
      if (!answer(res)) break;
      continue;
    }
    // Refusals of the registry being imitated, before anything reaches the real one.
    std::optional<http::response<http::string_body>> refusal;
    if (quirks_ == Quirks::ghcr && method == "PATCH" && req.body().size() > 4 * kMiB) {
      refusal = local_reply(req.version(), 416,
                            R"({"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"upload chunk )"
                            R"(size exceeds the maximum permissible limit of 4.00MiB"}]})");
    } else if (quirks_ == Quirks::artifact_registry && method == "PATCH") {
      refusal = local_reply(req.version(), 405,
                            R"({"errors":[{"code":"UNSUPPORTED","message":"chunked upload"}]})");
    } else if (quirks_ == Quirks::acr && method == "PUT" && !session.empty() &&
               req.body().size() > 20'000'000) {
      refusal = local_reply(req.version(), 413);
    } else if (quirks_ == Quirks::ecr && method == "PATCH" && !session.empty()) {
      std::lock_guard lock(mu_);
      auto last = ecr_last_part_.find(session);
      if (last != ecr_last_part_.end() && last->second < 5 * kMiB) {
        refusal = local_reply(req.version(), 400,
                              R"({"errors":[{"code":"LayerPartTooSmallException",)"
                              R"("message":"Layer part size must be at least 5 MiB"}]})");
      } else {
        ecr_last_part_[session] = req.body().size();
      }
    }
    if (refusal) {
      if (!answer(*refusal)) break;
      continue;
    }

    if (!upstream) {
      upstream.emplace(io);
      upstream->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), upstream_port_), ec);
      if (!ec) {
        std::lock_guard lock(mu_);
        open_fds_.push_back(upstream->native_handle());
      }
      if (ec) {
        upstream.reset();
        auto res = local_reply(req.version(), 502);
        if (!answer(res)) break;
        continue;
      }
    }
    http::write(*upstream, req, ec);
    http::response_parser<http::string_body> rp;
    rp.body_limit(kBodyLimit);
    if (method == "HEAD") rp.skip(true);
    if (!ec) http::read(*upstream, up_in, rp, ec);
    if (ec) {
      // The registry went away mid-request: so does the answer.
      record(0);
      break;
    }
    http::response<http::string_body> res = rp.release();
    if (fault && fault->fault == Fault::drop) {
      record(0);
      break;  // closes the client's connection without an answer
    }
    if (fault && fault->fault == Fault::wrong_digest) {
      res.set("Docker-Content-Digest", "sha256:" + std::string(64, '0'));
    }
    if (quirks_ == Quirks::ecr && !session.empty() && (method == "PATCH" || method == "GET")) {
      std::lock_guard lock(mu_);
      if (method == "PATCH" && res.result_int() == 202) res.result(201);
      if (auto range = res.find(http::field::range); range != res.end()) {
        auto [it, fresh] = ecr_stuck_range_.emplace(session, std::string(range->value()));
        res.set(http::field::range, it->second);
      }
    }
    {
      std::lock_guard lock(mu_);
      for (const auto& h : answer_headers_)
        if (target.find(h.needle) != std::string::npos) res.set(h.name, h.value);
    }
    if (!res.keep_alive()) req.keep_alive(false);
    if (fault && fault->fault == Fault::stall && res.body().size() > fault->after) {
      record(static_cast<int>(res.result_int()));
      http::response_serializer<http::string_body> sr(res);
      http::write_header(client, sr, ec);
      if (!ec) asio::write(client, asio::buffer(res.body().data(), fault->after), ec);
      if (ec) break;
      fault->stall->reached = true;
      const auto deadline = std::chrono::steady_clock::now() + fault->give_up;
      for (;;) {
        if (fault->until()) {
          fault->stall->released = true;
          break;
        }
        if (std::chrono::steady_clock::now() > deadline) {
          fault->stall->gave_up = true;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      asio::write(client, asio::buffer(res.body().data() + fault->after, res.body().size() - fault->after), ec);
      if (ec || !req.keep_alive()) break;
      continue;
    }
    if (!answer(res)) break;
  }
  {
    // Forget the descriptors before the sockets close them (and the numbers get reused).
    std::lock_guard lock(mu_);
    std::erase(open_fds_, fd);
    if (upstream) std::erase(open_fds_, upstream->native_handle());
  }
  boost::system::error_code ignored;
  client.shutdown(tcp::socket::shutdown_both, ignored);
}

}  // namespace ocirelay::testing
