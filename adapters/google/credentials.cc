// Application Default Credentials: service account keys (JWT bearer grant), gcloud's
// authorized_user refresh tokens and the GCE/GKE metadata server, as a CredentialSource
// of {"oauth2accesstoken", <access token>}.
#include "adapters/google/credentials.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <variant>

#include "adapters/encoding.h"
#include "adapters/google/google.h"
#include "adapters/google/google_api.h"

namespace ocirelay::adapters {
namespace google {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Never prompts: an encrypted key is simply unusable here.
int no_passphrase(char*, int, int, void*) { return 0; }

Result<Pkey> load_rsa_key(std::string_view pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  Pkey key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
  ERR_clear_error();
  if (!key) return Error{Errc::invalid_argument, "private_key is not a PEM private key"};
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA)
    return Error{Errc::invalid_argument, "private_key is not an RSA key"};
  return key;
}

Result<std::string> sign_rs256(EVP_PKEY* key, std::string_view data) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  std::size_t len = 0;
  auto bytes = reinterpret_cast<const unsigned char*>(data.data());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, bytes, data.size()) != 1) {
    ERR_clear_error();
    return Error{Errc::invalid_argument, "cannot sign with private_key"};
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, bytes,
                     data.size()) != 1) {
    ERR_clear_error();
    return Error{Errc::invalid_argument, "cannot sign with private_key"};
  }
  sig.resize(len);
  return sig;
}

std::string assertion_with(EVP_PKEY* key, std::string_view key_id, std::string_view email,
                           std::string_view token_uri, WallClock::time_point now, Error* error) {
  json header = {{"alg", "RS256"}, {"typ", "JWT"}};
  if (!key_id.empty()) header["kid"] = key_id;
  const auto iat = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  json claims = {{"iss", email},
                 {"scope", kCloudPlatformScope},
                 {"aud", token_uri},
                 {"iat", iat},
                 {"exp", iat + 3600}};
  std::string signing_input =
      base64url_encode(header.dump()) + "." + base64url_encode(claims.dump());
  auto sig = sign_rs256(key, signing_input);
  if (!sig) {
    *error = sig.error();
    return {};
  }
  return signing_input + "." + base64url_encode(*sig);
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string form(std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    if (!out.empty()) out += '&';
    out += percent_encode(k) + "=" + percent_encode(v);
  }
  return out;
}

struct ServiceAccount {
  std::string client_email;
  std::string private_key_id;
  std::string token_uri;
  std::shared_ptr<EVP_PKEY> key;
};
struct AuthorizedUser {
  std::string client_id;
  std::string client_secret;  // secret
  std::string refresh_token;  // secret
  std::string token_uri;
};
struct MetadataServer {
  std::string host;      // "metadata.google.internal" or $GCE_METADATA_HOST (host[:port])
  std::string searched;  // where ADC looked before, for the error when this fails too
};
using Identity = std::variant<ServiceAccount, AuthorizedUser, MetadataServer>;

class GoogleAdcSource final : public ExpiringCredentialSource {
 public:
  GoogleAdcSource(Identity identity, const GoogleAuthOptions& options)
      : ExpiringCredentialSource(options.now),
        identity_(std::move(identity)),
        now_(options.now ? options.now : Now([] { return WallClock::now(); })),
        http_(options.transport) {}

  std::string describe() const override {
    if (auto* sa = std::get_if<ServiceAccount>(&identity_))
      return "google adc (service account " + sa->client_email + ")";
    if (std::holds_alternative<AuthorizedUser>(identity_)) return "google adc (authorized user)";
    return "google adc (metadata server)";
  }

 protected:
  Result<IssuedCredentials> fetch() override {
    const auto now = now_();
    if (auto* sa = std::get_if<ServiceAccount>(&identity_)) {
      const std::string step = "OAuth2 token for service account " + sa->client_email;
      Error err;
      std::string jwt = assertion_with(sa->key.get(), sa->private_key_id, sa->client_email,
                                       sa->token_uri, now, &err);
      if (jwt.empty()) return Error{err.code, "google: " + step + ": " + err.message};
      HttpRequest req = google_request("POST", sa->token_uri,
                                       {"Content-Type: application/x-www-form-urlencoded"});
      req.body =
          form({{"grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"}, {"assertion", jwt}});
      return exchange(step, req, now);
    }
    if (auto* au = std::get_if<AuthorizedUser>(&identity_)) {
      const std::string step = "OAuth2 token for authorized user";
      HttpRequest req = google_request("POST", au->token_uri,
                                       {"Content-Type: application/x-www-form-urlencoded"});
      req.body = form({{"grant_type", "refresh_token"},
                       {"client_id", au->client_id},
                       {"client_secret", au->client_secret},
                       {"refresh_token", au->refresh_token}});
      return exchange(step, req, now);
    }
    const auto& md = std::get<MetadataServer>(identity_);
    HttpRequest req = google_request(
        "GET", "http://" + md.host + "/computeMetadata/v1/instance/service-accounts/default/token",
        {"Metadata-Flavor: Google"});
    auto r = exchange("metadata server token (" + md.host + ")", req, now);
    if (!r && r.error().code == Errc::upstream_unavailable && !md.searched.empty()) {
      return Error{r.error().code, r.error().message + "; " + md.searched};
    }
    return r;
  }

 private:
  Result<IssuedCredentials> exchange(const std::string& step, const HttpRequest& req,
                                     WallClock::time_point now) {
    auto answer = http_.send(step, req);
    if (!answer) return std::move(answer).error();
    if (answer->head.status != 200) return google_error(step, *answer);
    auto j = json::parse(answer->body, nullptr, false);
    if (!j.is_object() || !j.contains("access_token") || !j["access_token"].is_string() ||
        j["access_token"].get<std::string>().empty()) {
      return malformed(step, "answer holds no access_token");
    }
    std::int64_t expires_in = 3600;  // Google's access token lifetime when not announced
    if (j.contains("expires_in") && j["expires_in"].is_number_integer())
      expires_in = j["expires_in"].get<std::int64_t>();
    IssuedCredentials out;
    out.credentials.username = std::string(kAccessTokenUsername);
    out.credentials.password = j["access_token"].get<std::string>();
    out.expires = now + std::chrono::seconds(std::max<std::int64_t>(expires_in, 0));
    return out;
  }

  Identity identity_;
  Now now_;
  GoogleHttp http_;
};

// A credentials file: service_account or authorized_user. Errors name the file, never a
// value from it (a JSON parser's excerpt could show a key, so it is not passed on).
Result<Identity> load_file(const fs::path& path) {
  const std::string where = "google: credentials file " + path.string() + ": ";
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{Errc::invalid_argument, where + "cannot be read"};
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = json::parse(ss.str(), nullptr, false);
  if (!j.is_object()) return Error{Errc::invalid_argument, where + "is not a JSON object"};
  auto field = [&j](const char* name) -> std::string {
    auto it = j.find(name);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const std::string type = field("type");
  if (type == "service_account") {
    ServiceAccount sa;
    sa.client_email = field("client_email");
    sa.private_key_id = field("private_key_id");
    sa.token_uri = field("token_uri");
    if (sa.token_uri.empty()) sa.token_uri = std::string(kDefaultTokenUri);
    if (sa.client_email.empty()) return Error{Errc::invalid_argument, where + "no client_email"};
    const std::string pem = field("private_key");
    if (pem.empty()) return Error{Errc::invalid_argument, where + "no private_key"};
    auto key = load_rsa_key(pem);
    if (!key) return Error{Errc::invalid_argument, where + key.error().message};
    sa.key = std::shared_ptr<EVP_PKEY>(key->release(), PkeyFree{});
    return Identity{std::move(sa)};
  }
  if (type == "authorized_user") {
    AuthorizedUser au{field("client_id"), field("client_secret"), field("refresh_token"),
                      field("token_uri")};
    if (au.token_uri.empty()) au.token_uri = std::string(kDefaultTokenUri);
    for (auto [name, value] :
         {std::pair<const char*, const std::string*>{"client_id", &au.client_id},
          {"client_secret", &au.client_secret},
          {"refresh_token", &au.refresh_token}}) {
      if (value->empty()) return Error{Errc::invalid_argument, where + "no " + name};
    }
    return Identity{std::move(au)};
  }
  if (type.empty()) return Error{Errc::invalid_argument, where + "no \"type\""};
  return Error{
      Errc::invalid_argument,
      where + "type \"" + type + "\" is not supported (service_account and authorized_user are)"};
}

}  // namespace

Result<std::string> service_account_assertion(std::string_view private_key_pem,
                                              std::string_view key_id,
                                              std::string_view client_email,
                                              std::string_view token_uri,
                                              WallClock::time_point now) {
  auto key = load_rsa_key(private_key_pem);
  if (!key) return std::move(key).error();
  Error err;
  std::string jwt = assertion_with(key->get(), key_id, client_email, token_uri, now, &err);
  if (jwt.empty()) return err;
  return jwt;
}

}  // namespace google

Result<std::shared_ptr<CredentialSource>> google_credentials(const GoogleAuthOptions& options) {
  namespace fs = std::filesystem;
  auto make = [&](Result<google::Identity> id) -> Result<std::shared_ptr<CredentialSource>> {
    if (!id) return std::move(id).error();
    return std::shared_ptr<CredentialSource>(
        std::make_shared<google::GoogleAdcSource>(std::move(*id), options));
  };
  if (!options.credentials_file.empty()) return make(google::load_file(options.credentials_file));
  if (auto file = google::env("GOOGLE_APPLICATION_CREDENTIALS"); !file.empty()) {
    return make(google::load_file(file));
  }
  fs::path gcloud_dir;
  if (auto dir = google::env("CLOUDSDK_CONFIG"); !dir.empty()) {
    gcloud_dir = dir;
  } else if (auto home = google::env("HOME"); !home.empty()) {
    gcloud_dir = fs::path(home) / ".config" / "gcloud";
  }
  std::string searched = "no GOOGLE_APPLICATION_CREDENTIALS";
  if (!gcloud_dir.empty()) {
    const auto adc = gcloud_dir / "application_default_credentials.json";
    std::error_code ec;
    if (fs::exists(adc, ec)) return make(google::load_file(adc));
    searched += ", no gcloud credentials at " + adc.string();
  }
  std::string host = google::env("GCE_METADATA_HOST");
  if (host.empty()) host = google::env("GCE_METADATA_ROOT");
  if (host.empty()) host = "metadata.google.internal";
  return make(google::Identity{google::MetadataServer{host, searched}});
}

}  // namespace ocirelay::adapters
