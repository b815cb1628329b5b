// Secrets Manager GetSecretValue (AWS JSON 1.1, SigV4 service "secretsmanager").
#include "adapters/aws/secrets_manager.h"

#include <nlohmann/json.hpp>

#include "oci/json.h"

namespace ocirelay::adapters::aws {

SecretsManagerCredentials::SecretsManagerCredentials(AwsContext ctx, std::string secret_id,
                                                     std::string username,
                                                     std::chrono::seconds ttl, Now now)
    : ExpiringCredentialSource(now),
      ctx_(std::move(ctx)),
      secret_id_(std::move(secret_id)),
      username_(std::move(username)),
      ttl_(ttl),
      now_(now ? std::move(now) : Now([] { return WallClock::now(); })) {}

std::string SecretsManagerCredentials::describe() const {
  return "aws secrets manager " + secret_id_ + " (" + ctx_.chain->describe() + ", region " +
         (ctx_.region.empty() ? "unknown" : ctx_.region) + ")";
}

Result<IssuedCredentials> SecretsManagerCredentials::fetch() {
  const std::string step = "Secrets Manager GetSecretValue " + secret_id_;
  if (ctx_.region.empty()) {
    return Error{Errc::invalid_argument,
                 "aws: " + step + ": no region (use the secret's ARN or set auth.aws.region)"};
  }
  auto creds = ctx_.chain->get();
  if (!creds) return Error{creds.error().code, "aws: " + creds.error().message};
  nlohmann::json req = {{"SecretId", secret_id_}};
  auto body = ctx_.client->call_json(resolve_endpoint(AwsService::secrets_manager, ctx_.region),
                                     "secretsmanager.GetSecretValue", req.dump(), *creds, step);
  if (!body) return Error{body.error().code, "aws: " + body.error().message};

  auto j = nlohmann::json::parse(*body, nullptr, false);
  if (!j.is_object() || !j.contains("SecretString") || !j["SecretString"].is_string()) {
    return Error{Errc::upstream_protocol,
                 "aws: " + step + ": no SecretString (binary secrets are not supported)"};
  }
  const std::string secret = j["SecretString"].get<std::string>();
  IssuedCredentials out;
  out.expires = now_() + ttl_;
  auto inner = nlohmann::json::parse(secret, nullptr, false);
  if (inner.is_object() && inner.contains("password")) {
    if (!inner["password"].is_string() ||
        (inner.contains("username") && !inner["username"].is_string())) {
      return Error{Errc::invalid_argument,
                   "aws: " + step + ": username and password must be strings"};
    }
    out.credentials.password = inner["password"].get<std::string>();
    out.credentials.username = oci::json::string_or(inner, "username", username_);
  } else {
    out.credentials.password = secret;
    out.credentials.username = username_;
  }
  if (out.credentials.username.empty()) {
    return Error{Errc::invalid_argument,
                 "aws: " + step + ": the secret holds no username and none is configured"};
  }
  return out;
}

}  // namespace ocirelay::adapters::aws
