// An in-process fake of the AWS endpoints the relay calls (on a FakeHttpServer: background
// thread, port 0), reached through AWS_ENDPOINT_URL_ECR / _STS / _SECRETS_MANAGER,
// AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_EC2_METADATA_SERVICE_ENDPOINT. It checks what
// the real services check: SigV4 signatures recomputed with the caller's secret key (only
// keys it knows or issued, session tokens matching), the signing scope (region, service),
// date skew, X-Amz-Target and Content-Type; the web identity token; the ECS authorization
// token; the IMDSv2 session token on every metadata GET.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tests/support/fake_http_server.h"

namespace ocirelay::testing {

class FakeAws {
 public:
  struct Options {
    std::string region = "us-east-1";
    // The long-term key pair the fake accepts (as IAM would).
    std::string access_key_id = "AKIDFAKELONGTERM";
    std::string secret_access_key = "fake-LONGTERM-secret-key-0001";
    std::string ecr_password = "ecr-password-0001";
    int ecr_token_seconds = 43200;      // expiresAt = now + this
    int sts_credentials_seconds = 3600;  // Expiration of issued temporary credentials
    std::string web_identity_token = "web-identity-jwt-0001";
    std::string ecs_authorization = "ecs-auth-token-0001";
    std::string imds_role = "relay-instance-role";
  };

  explicit FakeAws(Options options);
  ~FakeAws();
  FakeAws(const FakeAws&) = delete;
  FakeAws& operator=(const FakeAws&) = delete;

  std::string url() const { return server_.url(); }  // "http://127.0.0.1:<port>"
  const Options& options() const { return options_; }

  // Knobs.
  void set_ecr_password(const std::string& p);
  void set_ecr_token_seconds(int s);
  // The next GetAuthorizationToken answers `p` once (a token the registry will refuse).
  void queue_ecr_password(const std::string& p);
  void set_secret(const std::string& id, const std::string& secret_string);
  void set_sts_down(bool down);  // STS answers 503
  // What ListImages lists for `repository`: (tag, digest) pairs, in this order; repositories
  // never set are RepositoryNotFoundException. Pages hold at most `page_size` image ids
  // (and at most the caller's maxResults).
  void set_images(const std::string& repository, std::vector<std::pair<std::string, std::string>> tagged);
  void set_list_page_size(std::size_t page_size);
  // The external id AssumeRole requires for `role_arn` (roles not listed need none).
  void require_external_id(const std::string& role_arn, const std::string& external_id);

  // What happened.
  int calls(const std::string& operation) const;  // "GetAuthorizationToken", "AssumeRole",
                                                  // "AssumeRoleWithWebIdentity", "ecs",
                                                  // "imds-token", "imds-credentials", ...
  int rejected() const;                           // requests refused (4xx)
  // The access key id that signed the last call of `operation` (who the caller was).
  std::string last_signer(const std::string& operation) const;
  std::string last_body(const std::string& operation) const;
  std::vector<std::string> repositories() const;  // created by CreateRepository
  // Every secret the fake handed out (temporary secret keys, session tokens, passwords).
  std::vector<std::string> issued_secrets() const;

 // Wire types of the implementation.
  struct Reply;
  struct Request;

 private:
  struct TempCredentials {
    std::string secret;
    std::string token;
    std::string role_arn;
  };
  Reply handle(const Request& req);
  Reply verify_signature(const Request& req, const std::string& service, bool json,
                         std::string* signer);
  Reply sts(const Request& req);
  Reply json_api(const Request& req);
  std::string issue_temp(const std::string& role_arn, TempCredentials* out, std::string* id);

  Options options_;
  mutable std::mutex mu_;
  std::map<std::string, TempCredentials> temp_;  // access key id -> issued
  std::map<std::string, std::string> secrets_;
  std::map<std::string, std::string> external_ids_;
  std::map<std::string, int> calls_;
  std::map<std::string, std::string> last_signer_;
  std::map<std::string, std::string> last_body_;
  std::vector<std::string> repositories_;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> images_;
  std::size_t list_page_size_ = 1000;
  std::vector<std::string> issued_;
  std::vector<std::string> imds_tokens_;
  std::vector<std::string> queued_passwords_;
  bool sts_down_ = false;
  int rejected_ = 0;
  int serial_ = 0;
  FakeHttpServer server_;  // last: stops before the state its handler reads
};

}  // namespace ocirelay::testing
