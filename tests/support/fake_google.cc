// FakeGoogle: handlers for the Google token, metadata, Secret Manager and
// Artifact Registry endpoints.
#include "tests/support/fake_google.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <array>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "adapters/encoding.h"

namespace ocirelay::testing {
namespace {

using json = nlohmann::json;

// Decoded parameters as a map where the last of repeated names wins.
std::map<std::string, std::string> last_wins(const std::multimap<std::string, std::string>& m) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : m) out[k] = v;
  return out;
}

std::string bio_string(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

// CRC-32C (Castagnoli), written apart from the library's so each checks the other.
std::uint32_t crc32c(std::string_view data) {
  std::uint32_t crc = ~0u;
  for (unsigned char b : data) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

bool verify_rs256(const std::string& public_pem, std::string_view signed_part,
                  std::string_view signature) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(public_pem.data(), static_cast<int>(public_pem.size())), &BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  if (!key) return false;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  return EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
         EVP_DigestVerify(
             ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
             reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size()) == 1;
}

std::string api_error(int code, const std::string& status, const std::string& message) {
  return json{{"error", {{"code", code}, {"message", message}, {"status", status}}}}.dump();
}

std::string oauth_error(const std::string& error, const std::string& description) {
  return json{{"error", error}, {"error_description", description}}.dump();
}

}  // namespace

TestRsaKey TestRsaKey::generate() {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_RSA_gen(2048), &EVP_PKEY_free);
  if (!key) throw std::runtime_error("EVP_RSA_gen failed");
  std::unique_ptr<BIO, decltype(&BIO_free)> priv(BIO_new(BIO_s_mem()), &BIO_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> pub(BIO_new(BIO_s_mem()), &BIO_free);
  if (PEM_write_bio_PrivateKey(priv.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      PEM_write_bio_PUBKEY(pub.get(), key.get()) != 1) {
    throw std::runtime_error("PEM_write failed");
  }
  return TestRsaKey{bio_string(priv.get()), bio_string(pub.get())};
}

std::string service_account_key_file(const std::string& client_email,
                                     const std::string& private_key_id,
                                     const std::string& private_key_pem,
                                     const std::string& token_uri) {
  return json{{"type", "service_account"},
              {"project_id", "test-project"},
              {"private_key_id", private_key_id},
              {"private_key", private_key_pem},
              {"client_email", client_email},
              {"client_id", "109876543210987654321"},
              {"auth_uri", "https://accounts.google.com/o/oauth2/auth"},
              {"token_uri", token_uri},
              {"auth_provider_x509_cert_url", "https://www.googleapis.com/oauth2/v1/certs"},
              {"universe_domain", "googleapis.com"}}
      .dump(2);
}

struct FakeGoogle::Request {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;  // decoded
  std::map<std::string, std::string> form;   // decoded x-www-form-urlencoded body
  std::string authorization;
  std::string metadata_flavor;
  std::string content_type;
  std::string body;
};

FakeGoogle::FakeGoogle(Options options)
    : options_(std::move(options)), server_([this](const HttpCall& call) {
        Request r{call.method,
                  call.path,
                  last_wins(call.query),
                  last_wins(call.form),
                  call.header("authorization"),
                  call.header("metadata-flavor"),
                  call.header("content-type"),
                  call.body};
        Reply reply = handle(r);
        HttpReply out{reply.status, {{"Content-Type", reply.content_type}}, std::move(reply.body)};
        if (r.path.starts_with("/computeMetadata/")) out.headers.emplace_back("Metadata-Flavor", "Google");
        return out;
      }) {}

FakeGoogle::~FakeGoogle() = default;

FakeGoogle::Reply FakeGoogle::issue(const std::string& kind) {
  std::string token = options_.access_token.empty()
                          ? "ya29.fake-" + kind + "-" + std::to_string(issued_.size() + 1) + "-tok"
                          : options_.access_token;
  issued_.emplace_back(token, kind);
  tokens_[token] = Token{kind};
  return Reply{
      200, "application/json",
      json{{"access_token", token}, {"expires_in", options_.expires_in}, {"token_type", "Bearer"}}
          .dump()};
}

FakeGoogle::Reply FakeGoogle::verify_jwt_grant(const std::string& jwt) {
  auto refuse = [this](const std::string& why, const std::string& description) {
    refusals_.push_back(why);
    return Reply{400, "application/json", oauth_error("invalid_grant", description)};
  };
  const auto dot1 = jwt.find('.');
  const auto dot2 = dot1 == std::string::npos ? dot1 : jwt.find('.', dot1 + 1);
  if (dot2 == std::string::npos || jwt.find('.', dot2 + 1) != std::string::npos)
    return refuse("JWT is not three parts", "Invalid JWT.");
  auto header_bytes = adapters::base64url_decode(std::string_view(jwt).substr(0, dot1));
  auto claims_bytes =
      adapters::base64url_decode(std::string_view(jwt).substr(dot1 + 1, dot2 - dot1 - 1));
  auto signature = adapters::base64url_decode(std::string_view(jwt).substr(dot2 + 1));
  if (!header_bytes || !claims_bytes || !signature)
    return refuse("JWT is not base64url", "Invalid JWT.");
  auto header = json::parse(*header_bytes, nullptr, false);
  auto claims = json::parse(*claims_bytes, nullptr, false);
  if (!header.is_object() || !claims.is_object()) return refuse("JWT is not JSON", "Invalid JWT.");
  if (header.value("alg", "") != "RS256" || header.value("typ", "") != "JWT")
    return refuse("JWT header alg/typ", "Invalid JWT.");
  if (header.value("kid", "") != options_.service_account_key_id)
    return refuse("JWT kid", "Invalid JWT Signature.");
  if (!verify_rs256(options_.public_key_pem, std::string_view(jwt).substr(0, dot2), *signature))
    return refuse("bad JWT signature", "Invalid JWT Signature.");
  if (claims.value("iss", "") != options_.service_account_email)
    return refuse("JWT iss", "Invalid grant: account not found");
  if (claims.value("aud", "") != token_uri()) return refuse("JWT aud", "Invalid JWT audience.");
  const std::string scope = claims.value("scope", "");
  if (scope.find("https://www.googleapis.com/auth/cloud-platform") == std::string::npos)
    return refuse("JWT scope", "Invalid OAuth scope or ID token audience provided.");
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  if (!claims.contains("iat") || !claims["iat"].is_number_integer() || !claims.contains("exp") ||
      !claims["exp"].is_number_integer())
    return refuse("JWT iat/exp", "Invalid JWT.");
  const auto iat = claims["iat"].get<std::int64_t>();
  const auto exp = claims["exp"].get<std::int64_t>();
  if (iat > now + 300 || iat < now - 3600 || exp <= now || exp - iat > 3600)
    return refuse("JWT times",
                  "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                  "reasonable timeframe. Check your iat and exp values in the JWT claim.");
  return issue("service_account");
}

FakeGoogle::Reply FakeGoogle::token(const Request& req) {
  ++token_requests_;
  if (req.method != "POST") return Reply{405, "text/plain", "POST only"};
  if (!req.content_type.starts_with("application/x-www-form-urlencoded")) {
    refusals_.push_back("token content type " + req.content_type);
    return Reply{400, "application/json", oauth_error("invalid_request", "Bad Request")};
  }
  auto form = req.form;
  const std::string grant = form["grant_type"];
  if (grant == "urn:ietf:params:oauth:grant-type:jwt-bearer")
    return verify_jwt_grant(form["assertion"]);
  if (grant == "refresh_token") {
    if (form["client_id"] != options_.client_id || options_.client_secret.empty() ||
        form["client_secret"] != options_.client_secret) {
      refusals_.push_back("client_id/client_secret");
      return Reply{401, "application/json", oauth_error("invalid_client", "Unauthorized")};
    }
    if (options_.refresh_token.empty() || form["refresh_token"] != options_.refresh_token) {
      refusals_.push_back("refresh_token");
      return Reply{400, "application/json", oauth_error("invalid_grant", "Bad Request")};
    }
    return issue("authorized_user");
  }
  refusals_.push_back("grant_type " + grant);
  return Reply{400, "application/json",
               oauth_error("unsupported_grant_type", "Invalid grant_type: " + grant)};
}

bool FakeGoogle::bearer_ok(const Request& req) {
  if (!req.authorization.starts_with("Bearer ")) return false;
  auto it = tokens_.find(req.authorization.substr(7));
  return it != tokens_.end() && !it->second.revoked;
}

FakeGoogle::Reply FakeGoogle::handle(const Request& req) {
  std::lock_guard lock(mu_);
  if (req.path == "/token") return token(req);

  if (req.path == "/computeMetadata/v1/instance/service-accounts/default/token") {
    ++metadata_requests_;
    if (req.metadata_flavor != "Google") {
      refusals_.push_back("missing Metadata-Flavor");
      return Reply{403, "text/html", "Missing required header: Metadata-Flavor"};
    }
    return issue("metadata");
  }

  const Reply unauthenticated{
      401, "application/json",
      api_error(401, "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.")};

  // Secret Manager: GET /v1/projects/P/secrets/S/versions/V:access
  if (req.path.starts_with("/v1/projects/") && req.path.ends_with(":access")) {
    ++secret_requests_;
    if (req.method != "GET") return Reply{405, "text/plain", ""};
    if (!bearer_ok(req)) {
      refusals_.push_back("secret manager bearer");
      return unauthenticated;
    }
    const std::string name = req.path.substr(4, req.path.size() - 4 - 7);
    const auto at = name.find("/versions/");
    auto it = at == std::string::npos ? secrets_.end() : secrets_.find(name.substr(0, at));
    if (it == secrets_.end())
      return Reply{
          404, "application/json",
          api_error(404, "NOT_FOUND", "Secret [" + name + "] not found or has no versions.")};
    const std::string version = name.substr(at + 10);
    std::size_t index = it->second.size();
    if (version != "latest") {
      index = 0;
      try {
        index = std::stoul(version);
      } catch (...) {
      }
      if (index == 0 || index > it->second.size())
        return Reply{404, "application/json",
                     api_error(404, "NOT_FOUND", "Secret Version [" + name + "] not found.")};
    }
    const auto& v = it->second[index - 1];
    std::uint32_t crc = crc32c(v.value) ^ (v.wrong_crc ? 1u : 0u);
    return Reply{
        200, "application/json",
        json{{"name", it->first + "/versions/" + std::to_string(index)},
             {"payload",
              {{"data", adapters::base64_encode(v.value)}, {"dataCrc32c", std::to_string(crc)}}}}
            .dump()};
  }

  // Artifact Registry: POST /v1/projects/P/locations/L/repositories?repositoryId=R and
  // GET /v1/projects/P/locations/L/operations/O
  if (req.path.starts_with("/v1/projects/") && req.path.ends_with("/repositories")) {
    ++create_requests_;
    if (req.method != "POST") return Reply{405, "text/plain", ""};
    if (!bearer_ok(req)) {
      refusals_.push_back("artifact registry bearer");
      return unauthenticated;
    }
    const std::string parent = req.path.substr(4, req.path.size() - 4 - 13);
    auto query = req.query;
    auto body = json::parse(req.body, nullptr, false);
    if (query["repositoryId"].empty() || !body.is_object())
      return Reply{
          400, "application/json",
          api_error(400, "INVALID_ARGUMENT", "repositoryId and a Repository are required")};
    if (body.value("format", "") != "DOCKER")
      return Reply{400, "application/json",
                   api_error(400, "INVALID_ARGUMENT", "format is required")};
    const std::string name = parent + "/repositories/" + query["repositoryId"];
    for (const auto& r : repositories_)
      if (r.name == name)
        return Reply{409, "application/json",
                     api_error(409, "ALREADY_EXISTS", "the repository already exists")};
    const std::string op_name = parent + "/operations/op-" + std::to_string(operations_.size() + 1);
    Operation op{name,       "DOCKER",     body.value("kmsKeyName", ""), options_.operation_polls,
                 fail_code_, fail_message_};
    fail_code_ = 0;
    fail_message_.clear();
    operations_[op_name] = op;
    json answer = {
        {"name", op_name},
        {"metadata",
         {{"@type", "type.googleapis.com/google.devtools.artifactregistry.v1.OperationMetadata"}}}};
    if (op.polls_left == 0) {
      answer["done"] = true;
      if (op.error_code != 0)
        answer["error"] = {{"code", op.error_code}, {"message", op.error_message}};
      else
        repositories_.push_back(Repository{op.repository, op.format, op.kms_key});
    }
    return Reply{200, "application/json", answer.dump()};
  }
  if (req.path.starts_with("/v1/projects/") && req.path.find("/operations/") != std::string::npos) {
    ++operation_polls_;
    if (!bearer_ok(req)) return unauthenticated;
    auto it = operations_.find(req.path.substr(4));
    if (it == operations_.end())
      return Reply{404, "application/json", api_error(404, "NOT_FOUND", "operation not found")};
    auto& op = it->second;
    json answer = {{"name", it->first}};
    if (op.polls_left > 0 && --op.polls_left > 0)
      return Reply{200, "application/json", answer.dump()};
    answer["done"] = true;
    if (op.error_code != 0) {
      answer["error"] = {{"code", op.error_code}, {"message", op.error_message}};
    } else {
      bool known = false;
      for (const auto& r : repositories_) known = known || r.name == op.repository;
      if (!known) repositories_.push_back(Repository{op.repository, op.format, op.kms_key});
      answer["response"] = {
          {"@type", "type.googleapis.com/google.devtools.artifactregistry.v1.Repository"},
          {"name", op.repository},
          {"format", op.format}};
    }
    return Reply{200, "application/json", answer.dump()};
  }
  return Reply{404, "text/plain", "no route"};
}

void FakeGoogle::add_secret_version(const std::string& project, const std::string& secret,
                                    const std::string& value, bool wrong_crc) {
  std::lock_guard lock(mu_);
  secrets_["projects/" + project + "/secrets/" + secret].push_back(SecretVersion{value, wrong_crc});
}

void FakeGoogle::fail_next_operation(int rpc_code, const std::string& message) {
  std::lock_guard lock(mu_);
  fail_code_ = rpc_code;
  fail_message_ = message;
}

void FakeGoogle::set_operation_polls(int polls) {
  std::lock_guard lock(mu_);
  options_.operation_polls = polls;
}

void FakeGoogle::revoke_all_tokens() {
  std::lock_guard lock(mu_);
  for (auto& [t, tok] : tokens_) tok.revoked = true;
}

std::vector<std::pair<std::string, std::string>> FakeGoogle::issued_tokens() const {
  std::lock_guard lock(mu_);
  return issued_;
}
int FakeGoogle::token_requests() const {
  std::lock_guard lock(mu_);
  return token_requests_;
}
int FakeGoogle::metadata_requests() const {
  std::lock_guard lock(mu_);
  return metadata_requests_;
}
int FakeGoogle::secret_requests() const {
  std::lock_guard lock(mu_);
  return secret_requests_;
}
std::vector<std::string> FakeGoogle::refusals() const {
  std::lock_guard lock(mu_);
  return refusals_;
}
std::vector<FakeGoogle::Repository> FakeGoogle::repositories() const {
  std::lock_guard lock(mu_);
  return repositories_;
}
int FakeGoogle::create_requests() const {
  std::lock_guard lock(mu_);
  return create_requests_;
}
int FakeGoogle::operation_polls() const {
  std::lock_guard lock(mu_);
  return operation_polls_;
}

}  // namespace ocirelay::testing
