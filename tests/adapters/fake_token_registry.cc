// FakeTokenRegistry: handlers answering the Bearer flow, on a FakeHttpServer.
#include "tests/adapters/fake_token_registry.h"

#include <nlohmann/json.hpp>

#include "oci/digest.h"

namespace ocirelay::testing {
namespace {

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

}  // namespace

struct FakeTokenRegistry::Reply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  Behaviour behaviour = Behaviour::answer;
};

FakeTokenRegistry::FakeTokenRegistry(Options options)
    : options_(std::move(options)), server_([this](const HttpCall& call) {
        Reply r = handle(call);
        HttpReply out{r.status, std::move(r.headers), std::move(r.body)};
        if (r.behaviour == Behaviour::hang) out.raw_then_hold = "";
        if (r.behaviour == Behaviour::stall) {
          out.raw_then_hold =
              "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
              "Content-Length: 1048576\r\n\r\n" + std::string(2048, 'x');
        }
        return out;
      }) {}

FakeTokenRegistry::~FakeTokenRegistry() = default;

std::string FakeTokenRegistry::manifest_body() {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"})";
}

std::string FakeTokenRegistry::blob_body() {
  std::string b;
  for (int i = 0; i < 4096; ++i) b += "blob-bytes-" + std::to_string(i) + ";";
  return b;
}

std::chrono::steady_clock::time_point FakeTokenRegistry::now() const {
  return options_.now ? options_.now() : std::chrono::steady_clock::now();
}

bool FakeTokenRegistry::token_valid(const std::string& authorization, const std::string& scope) {
  if (!authorization.starts_with("Bearer ")) return false;
  auto it = tokens_.find(authorization.substr(7));
  if (it == tokens_.end() || it->second.revoked) return false;
  if (now() >= it->second.expires) return false;
  return scope.empty() || it->second.scope == scope;
}

FakeTokenRegistry::Reply FakeTokenRegistry::handle(const HttpCall& call) {
  std::lock_guard lock(mu_);
  const std::string& path = call.path;
  const std::string authorization = call.header("authorization");

  if (path == "/token") {
    const std::string scope = call.query.count("scope") ? call.query.find("scope")->second : "";
    ++token_requests_[scope];
    if (!options_.username.empty() &&
        authorization != "Basic " + base64(options_.username + ":" + options_.password)) {
      return Reply{401, {{"Content-Type", "application/json"}},
                   R"({"details":"incorrect username or password"})"};
    }
    std::string token = "tok-" + std::to_string(issued_.size() + 1) + "-c0ffee-secret";
    issued_.push_back(token);
    tokens_[token] = Token{scope, now() + std::chrono::seconds(options_.expires_in)};
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
                 {{"Location", "http://localhost:" + std::to_string(server_.port()) + "/storage/" +
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

int FakeTokenRegistry::connections_accepted() const { return server_.connections_accepted(); }

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
