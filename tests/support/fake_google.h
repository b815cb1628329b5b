// An in-process stand-in for the Google endpoints ocirelay talks to (on a FakeHttpServer:
// background thread, port 0): the OAuth2 token endpoint, the GCE metadata server, Secret
// Manager and the Artifact Registry API. It checks what Google checks: the RS256 signature
// and claims of a service account's JWT against the key's PUBLIC half, an authorized
// user's client secret and refresh token, `Metadata-Flavor: Google`, bearer tokens it
// issued, and answers in Google's wire formats (errors included).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tests/support/fake_http_server.h"

namespace ocirelay::testing {

// An RSA key pair made at run time (2048 bits), PEM: PKCS#8 private, SubjectPublicKeyInfo.
struct TestRsaKey {
  std::string private_pem;
  std::string public_pem;
  static TestRsaKey generate();
};

// The JSON Google hands out as a service account key file.
std::string service_account_key_file(const std::string& client_email,
                                     const std::string& private_key_id,
                                     const std::string& private_key_pem,
                                     const std::string& token_uri);

class FakeGoogle {
 public:
  struct Options {
    // The one service account the token endpoint knows: JWTs must be signed by the
    // private half of `public_key_pem` and name this email and key id.
    std::string service_account_email = "relay@test-project.iam.gserviceaccount.com";
    std::string service_account_key_id = "0123456789abcdef";
    std::string public_key_pem;
    // The one authorized user (gcloud auth application-default login).
    std::string client_id = "764086051850-test.apps.googleusercontent.com";
    std::string client_secret;
    std::string refresh_token;
    int expires_in = 3599;  // announced lifetime of the access tokens issued
    // Non-empty: every access token issued is this one (a registry behind htpasswd can
    // then be set up with it as the password of "oauth2accesstoken").
    std::string access_token;
    int operation_polls = 1;  // GetOperation calls before a CreateRepository op is done
  };

  explicit FakeGoogle(Options options);
  ~FakeGoogle();
  FakeGoogle(const FakeGoogle&) = delete;
  FakeGoogle& operator=(const FakeGoogle&) = delete;

  std::uint16_t port() const { return server_.port(); }
  std::string url() const { return server_.url(); }
  std::string host() const { return "127.0.0.1:" + std::to_string(server_.port()); }  // GCE_METADATA_HOST
  std::string token_uri() const { return url() + "/token"; }

  // Adds a version (numbered 1, 2, ...) to projects/<project>/secrets/<secret>; "latest"
  // is the newest. `wrong_crc`: the answer's dataCrc32c does not match the data.
  void add_secret_version(const std::string& project, const std::string& secret,
                          const std::string& value, bool wrong_crc = false);
  // The next CreateRepository operation ends with this google.rpc error.
  void fail_next_operation(int rpc_code, const std::string& message);
  void revoke_all_tokens();
  void set_operation_polls(int polls);  // for operations created from now on

  // Access tokens issued, each with who got it: "service_account", "authorized_user",
  // "metadata".
  std::vector<std::pair<std::string, std::string>> issued_tokens() const;
  int token_requests() const;  // POST /token, accepted or not
  int metadata_requests() const;
  int secret_requests() const;
  // Why requests were refused ("bad JWT signature", "missing Metadata-Flavor"), in order.
  std::vector<std::string> refusals() const;
  struct Repository {
    std::string name;  // projects/P/locations/L/repositories/R
    std::string format;
    std::string kms_key;
  };
  std::vector<Repository> repositories() const;
  int create_requests() const;
  int operation_polls() const;

 private:
  struct Reply {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
  };
  struct Request;
  Reply handle(const Request& req);
  Reply token(const Request& req);
  Reply verify_jwt_grant(const std::string& jwt);
  Reply issue(const std::string& kind);
  bool bearer_ok(const Request& req);

  Options options_;
  mutable std::mutex mu_;
  struct Token {
    std::string kind;
    bool revoked = false;
  };
  std::map<std::string, Token> tokens_;
  std::vector<std::pair<std::string, std::string>> issued_;
  struct SecretVersion {
    std::string value;
    bool wrong_crc;
  };
  std::map<std::string, std::vector<SecretVersion>> secrets_;  // projects/P/secrets/S
  struct Operation {
    std::string repository;  // full name
    std::string format, kms_key;
    int polls_left;
    int error_code = 0;
    std::string error_message;
  };
  std::map<std::string, Operation> operations_;
  std::vector<Repository> repositories_;
  int fail_code_ = 0;
  std::string fail_message_;
  int token_requests_ = 0, metadata_requests_ = 0, secret_requests_ = 0;
  int create_requests_ = 0, operation_polls_ = 0;
  std::vector<std::string> refusals_;
  FakeHttpServer server_;  // last: stops before the state its handler reads
};

}  // namespace ocirelay::testing
