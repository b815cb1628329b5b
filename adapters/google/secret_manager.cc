// Registry credentials kept in Google Secret Manager (AccessSecretVersion), read with an
// ADC access token and checked against the CRC32C Google stores with the payload.
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <regex>

#include "adapters/encoding.h"
#include "adapters/google/google.h"
#include "adapters/google/google_api.h"

namespace ocirelay::adapters {
namespace google {
namespace {

using json = nlohmann::json;

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as Secret Manager's dataCrc32c.
std::uint32_t crc32c(std::string_view data) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char b : data) crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

class SecretManagerSource final : public ExpiringCredentialSource {
 public:
  SecretManagerSource(GoogleSecretManagerOptions options, std::shared_ptr<CredentialSource> google)
      : ExpiringCredentialSource(options.now),
        options_(std::move(options)),
        now_(options_.now ? options_.now : Now([] { return WallClock::now(); })),
        google_(std::move(google)),
        http_(options_.transport) {
    while (!options_.endpoint.empty() && options_.endpoint.back() == '/')
      options_.endpoint.pop_back();
  }

  std::string describe() const override {
    return "google secret manager (" + options_.secret_version + ")";
  }

 protected:
  Result<IssuedCredentials> fetch() override {
    const std::string step = "Secret Manager AccessSecretVersion " + options_.secret_version;
    auto bearer = bearer_header(*google_, step);
    if (!bearer) return std::move(bearer).error();
    HttpRequest req = google::google_request(
        "GET", options_.endpoint + "/v1/" + options_.secret_version + ":access",
        {*bearer, "Accept: application/json"});
    auto answer = http_.send(step, req);
    if (!answer) return std::move(answer).error();
    if (answer->head.status == 401) google_->invalidate();  // a revoked token: fetch anew
    if (answer->head.status != 200) return google_error(step, *answer);

    auto j = json::parse(answer->body, nullptr, false);
    const json* payload = j.is_object() && j.contains("payload") ? &j["payload"] : nullptr;
    if (!payload || !payload->is_object() || !payload->contains("data") ||
        !(*payload)["data"].is_string()) {
      return malformed(step, "answer holds no payload.data");
    }
    auto value = base64_decode((*payload)["data"].get<std::string>());
    if (!value) return malformed(step, "payload.data is not base64");
    if (payload->contains("dataCrc32c")) {
      // An int64 in JSON is a decimal string (proto3 JSON mapping); accept a number too.
      const auto& c = (*payload)["dataCrc32c"];
      std::int64_t want = -1;
      if (c.is_string()) {
        try {
          want = std::stoll(c.get<std::string>());
        } catch (...) {
          want = -1;
        }
      } else if (c.is_number_integer()) {
        want = c.get<std::int64_t>();
      }
      if (want < 0 || static_cast<std::uint32_t>(want) != crc32c(*value) ||
          want > static_cast<std::int64_t>(UINT32_MAX)) {
        return malformed(step, "payload does not match its dataCrc32c (corrupted in transit)");
      }
    }
    auto creds = parse_secret(step, *value);
    if (!creds) return std::move(creds).error();
    return IssuedCredentials{std::move(*creds), now_() + options_.reread_after};
  }

 private:
  // JSON {"username","password"} or a plain password for the configured username. The
  // value is never quoted back in an error.
  Result<Credentials> parse_secret(const std::string& step, const std::string& value) const {
    auto j = json::parse(value, nullptr, false);
    if (j.is_object()) {
      auto str = [&j](const char* k) {
        auto it = j.find(k);
        return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
      };
      Credentials c{str("username"), str("password"), {}};
      if (c.username.empty()) c.username = options_.username;
      if (c.password.empty())
        return Error{Errc::invalid_argument,
                     "google: " + step + ": the secret is a JSON object without \"password\""};
      if (c.username.empty())
        return Error{Errc::invalid_argument,
                     "google: " + step + ": the secret has no \"username\" and none is configured"};
      return c;
    }
    std::string password = value;
    while (!password.empty() && (password.back() == '\n' || password.back() == '\r'))
      password.pop_back();
    if (password.empty())
      return Error{Errc::invalid_argument, "google: " + step + ": the secret is empty"};
    if (options_.username.empty())
      return Error{
          Errc::invalid_argument,
          "google: " + step + ": the secret is a plain password and no username is configured"};
    return Credentials{options_.username, std::move(password), {}};
  }

  GoogleSecretManagerOptions options_;
  Now now_;
  std::shared_ptr<CredentialSource> google_;
  GoogleHttp http_;
};

}  // namespace
}  // namespace google

Result<std::shared_ptr<CredentialSource>> google_secret_manager_credentials(
    GoogleSecretManagerOptions options, std::shared_ptr<CredentialSource> google) {
  static const std::regex kName(R"(projects/[^/]+/secrets/[^/]+/versions/[^/:]+)");
  if (!std::regex_match(options.secret_version, kName)) {
    return Error{Errc::invalid_argument,
                 "google secret manager: \"" + options.secret_version +
                     "\" is not projects/<project>/secrets/<secret>/versions/<version|latest>"};
  }
  if (!google) {
    return Error{Errc::invalid_argument,
                 "google secret manager: no Google credentials to read the secret with"};
  }
  if (options.reread_after <= std::chrono::seconds(0))
    options.reread_after = std::chrono::seconds(3600);
  return std::shared_ptr<CredentialSource>(
      std::make_shared<google::SecretManagerSource>(std::move(options), std::move(google)));
}

}  // namespace ocirelay::adapters
