// FakeTokenRegistry: Beast coroutine server answering the Bearer flow.
#include "tests/adapters/fake_token_registry.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "oci/digest.h"

namespace ocirelay::testing {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

std::string base64(std::string_view in) {
  static constexpr char k[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned val = 0;
  int bits = -6;
  for (unsigned char c : in) {
    val = (val << 8) + c;
    bits += 8;
    while (bits >= 0) {
      out.push_back(k[(val >> bits) & 0x3F]);
      bits -= 6;
    }
  }
  if (bits > -6) out.push_back(k[((val << 8) >> (bits + 8)) & 0x3F]);
  while (out.size() % 4) out.push_back('=');
  return out;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i] == '+' ? ' ' : s[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> query_params(std::string_view target) {
  std::map<std::string, std::string> out;
  auto q = target.find('?');
  if (q == std::string_view::npos) return out;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    auto eq = kv.find('=');
    out[percent_decode(kv.substr(0, eq))] =
        eq == std::string_view::npos ? "" : percent_decode(kv.substr(eq + 1));
    rest = amp == std::string_view::npos ? "" : rest.substr(amp + 1);
  }
  return out;
}

}  // namespace

struct FakeTokenRegistry::Reply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  Behaviour behaviour = Behaviour::answer;
};

FakeTokenRegistry::FakeTokenRegistry(Options options)
    : options_(std::move(options)),
      acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
  port_ = acceptor_.local_endpoint().port();
  accept_loop();
  thread_ = std::thread([this] { io_.run(); });
}

FakeTokenRegistry::~FakeTokenRegistry() {
  io_.stop();
  thread_.join();
}

std::string FakeTokenRegistry::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::string FakeTokenRegistry::manifest_body() {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"})";
}

std::string FakeTokenRegistry::blob_body() {
  std::string b;
  for (int i = 0; i < 4096; ++i) b += "blob-bytes-" + std::to_string(i) + ";";
  return b;
}

void FakeTokenRegistry::accept_loop() {
  asio::co_spawn(
      io_,
      [this]() -> asio::awaitable<void> {
        for (;;) {
          auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
          if (ec) co_return;
          {
            std::lock_guard lock(mu_);
            ++connections_;
          }
          serve(std::move(socket));
        }
      },
      asio::detached);
}

void FakeTokenRegistry::serve(tcp::socket socket) {
  asio::co_spawn(
      io_,
      [this, s = std::move(socket)]() mutable -> asio::awaitable<void> {
        boost::beast::flat_buffer buffer;
        for (;;) {
          http::request<http::string_body> req;
          auto [rec, rn] = co_await http::async_read(s, buffer, req, kTuple);
          if (rec) co_return;
          Reply r = handle(std::string(req.method_string()), std::string(req.target()),
                           std::string(req[http::field::authorization]));
          if (r.behaviour != Behaviour::answer) {
            if (r.behaviour == Behaviour::stall) {
              std::string partial =
                  "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                  "Content-Length: 1048576\r\n\r\n" + std::string(2048, 'x');
              auto [wec, wn] = co_await asio::async_write(s, asio::buffer(partial), kTuple);
              if (wec) co_return;
            }
            // Hold the connection open, silent, until the client gives up or we stop.
            asio::steady_timer timer(io_, std::chrono::seconds(60));
            co_await timer.async_wait(kTuple);
            co_return;
          }
          if (req.method() == http::verb::head) {
            http::response<http::empty_body> res{static_cast<http::status>(r.status), 11};
            for (auto& [k, v] : r.headers) res.set(k, v);
            res.content_length(r.body.size());
            res.keep_alive(req.keep_alive());
            auto [wec, wn] = co_await http::async_write(s, res, kTuple);
            if (wec) co_return;
          } else {
            http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
            for (auto& [k, v] : r.headers) res.set(k, v);
            res.body() = std::move(r.body);
            res.prepare_payload();
            res.keep_alive(req.keep_alive());
            auto [wec, wn] = co_await http::async_write(s, res, kTuple);
            if (wec) co_return;
          }
          if (!req.keep_alive()) co_return;
        }
      },
      asio::detached);
}

bool FakeTokenRegistry::token_valid(const std::string& authorization, const std::string& scope) {
  if (!authorization.starts_with("Bearer ")) return false;
  auto it = tokens_.find(authorization.substr(7));
  if (it == tokens_.end() || it->second.revoked) return false;
  if (std::chrono::steady_clock::now() >= it->second.expires) return false;
  return scope.empty() || it->second.scope == scope;
}

FakeTokenRegistry::Reply FakeTokenRegistry::handle(const std::string& method,
                                                   const std::string& target,
                                                   const std::string& authorization) {
  std::lock_guard lock(mu_);
  const std::string path = target.substr(0, target.find('?'));

  if (path == "/token") {
    auto q = query_params(target);
    const std::string scope = q.count("scope") ? q["scope"] : "";
    ++token_requests_[scope];
    if (!options_.username.empty() &&
        authorization != "Basic " + base64(options_.username + ":" + options_.password)) {
      return Reply{401, {{"Content-Type", "application/json"}},
                   R"({"details":"incorrect username or password"})"};
    }
    std::string token = "tok-" + std::to_string(issued_.size() + 1) + "-c0ffee-secret";
    issued_.push_back(token);
    tokens_[token] = Token{scope, std::chrono::steady_clock::now() +
                                      std::chrono::seconds(options_.expires_in)};
    nlohmann::json j = {{options_.access_token_field ? "access_token" : "token", token},
                        {"expires_in", options_.expires_in},
                        {"issued_at", "2026-01-01T00:00:00Z"}};
    return Reply{200, {{"Content-Type", "application/json"}}, j.dump()};
  }

  if (path.starts_with("/storage/")) {
    storage_authorizations_.push_back(authorization);
    if (path == "/storage/" + oci::Digest::of("stall").str()) {
      return Reply{200, {}, "", Behaviour::stall};
    }
    return Reply{200, {{"Content-Type", "application/octet-stream"}}, blob_body()};
  }

  if (!path.starts_with("/v2/")) return Reply{404, {}, ""};
  std::string repo;
  std::string rest;
  for (std::string marker : {"/manifests/", "/blobs/"}) {
    if (auto at = path.find(marker); at != std::string::npos) {
      repo = path.substr(4, at - 4);
      rest = path.substr(at);
      break;
    }
  }
  const std::string scope = repo.empty() ? "" : "repository:" + repo + ":pull";
  if (!token_valid(authorization, scope)) {
    ++unauthorized_;
    std::string realm = options_.realm.empty() ? url() + "/token" : options_.realm;
    std::string challenge = "Bearer realm=\"" + realm + "\",service=\"fake-registry\"";
    if (!scope.empty()) challenge += ",scope=\"" + scope + "\"";
    return Reply{401,
                 {{"WWW-Authenticate", challenge}, {"Content-Type", "application/json"}},
                 R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})"};
  }
  if (path == "/v2/") return Reply{200, {{"Content-Type", "application/json"}}, "{}"};
  if (rest.starts_with("/manifests/")) {
    if (rest == "/manifests/hang") return Reply{200, {}, "", Behaviour::hang};
    if (rest == "/manifests/limited") {
      return Reply{429, {{"ratelimit-remaining", "0;w=21600"}, {"Retry-After", "30"}},
                   R"({"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]})"};
    }
    if (rest == "/manifests/broken") return Reply{503, {}, "upstream exploded"};
    if (rest == "/manifests/lying") {  // announces a digest the bytes do not have
      return Reply{200,
                   {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"},
                    {"Docker-Content-Digest", oci::Digest::of("other bytes").str()}},
                   manifest_body()};
    }
    if (rest == "/manifests/forbidden") return Reply{403, {}, ""};
    if (rest == "/manifests/missing") {
      return Reply{404, {{"Content-Type", "application/json"}},
                   R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})"};
    }
    return Reply{200,
                 {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"},
                  {"Docker-Content-Digest", oci::Digest::of(manifest_body()).str()},
                  {"ETag", "\"" + oci::Digest::of(manifest_body()).str() + "\""},
                  {"ratelimit-limit", "100;w=21600"},
                  {"ratelimit-remaining", "76;w=21600"}},
                 manifest_body()};
  }
  if (rest.starts_with("/blobs/")) {
    return Reply{307,
                 {{"Location", "http://localhost:" + std::to_string(port_) + "/storage/" +
                                   rest.substr(7)}},
                 ""};
  }
  return Reply{404, {}, ""};
}

int FakeTokenRegistry::token_requests() const {
  std::lock_guard lock(mu_);
  int n = 0;
  for (auto& [scope, count] : token_requests_) n += count;
  return n;
}

int FakeTokenRegistry::token_requests(const std::string& scope) const {
  std::lock_guard lock(mu_);
  auto it = token_requests_.find(scope);
  return it == token_requests_.end() ? 0 : it->second;
}

int FakeTokenRegistry::connections_accepted() const {
  std::lock_guard lock(mu_);
  return connections_;
}

int FakeTokenRegistry::unauthorized_responses() const {
  std::lock_guard lock(mu_);
  return unauthorized_;
}

std::vector<std::string> FakeTokenRegistry::issued_tokens() const {
  std::lock_guard lock(mu_);
  return issued_;
}

void FakeTokenRegistry::revoke_all_tokens() {
  std::lock_guard lock(mu_);
  for (auto& [t, tok] : tokens_) tok.revoked = true;
}

std::vector<std::string> FakeTokenRegistry::storage_authorizations() const {
  std::lock_guard lock(mu_);
  return storage_authorizations_;
}

}  // namespace ocirelay::testing
