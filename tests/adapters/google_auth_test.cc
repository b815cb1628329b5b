// Google credentials against FakeGoogle (tests/support/fake_google.h), which verifies what
// Google verifies: Application Default Credentials in Google's order, the service-account
// JWT (RS256 signature against the key's public half, claims), authorized_user refresh,
// the metadata server, token expiry, Secret Manager and Artifact Registry repositories.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "adapters/encoding.h"
#include "adapters/google/credentials.h"
#include "adapters/google/google.h"
#include "tests/support/fake_google.h"
#include "tests/support/files.h"
#include "tests/support/loopback_http.h"
#include "tests/support/scoped_env.h"

namespace ocirelay::adapters {
namespace {

using testing::FakeGoogle;
using testing::ScopedEnv;
using testing::TempDir;
using testing::TestRsaKey;
using testing::write_file;
using json = nlohmann::json;

constexpr const char* kEmail = "relay@test-project.iam.gserviceaccount.com";
constexpr const char* kKeyId = "0123456789abcdef";
constexpr const char* kClientSecret = "GOCSPX-client-secret-8c2f";
constexpr const char* kRefreshToken = "1//refresh-token-b7e4a1";

const TestRsaKey& service_account_key() {
  static const TestRsaKey key = TestRsaKey::generate();
  return key;
}
const TestRsaKey& other_key() {
  static const TestRsaKey key = TestRsaKey::generate();
  return key;
}

FakeGoogle::Options fake_options() {
  FakeGoogle::Options o;
  o.service_account_email = kEmail;
  o.service_account_key_id = kKeyId;
  o.public_key_pem = service_account_key().public_pem;
  o.client_secret = kClientSecret;
  o.refresh_token = kRefreshToken;
  return o;
}

GoogleAuthOptions from_file(const std::string& path) {
  GoogleAuthOptions o;
  o.credentials_file = path;
  return o;
}
GoogleAuthOptions with_clock(ExpiringCredentialSource::Now now) {
  GoogleAuthOptions o;
  o.now = std::move(now);
  return o;
}

// The kind of principal FakeGoogle issued `token` to ("" when it did not issue it).
std::string issued_to(const FakeGoogle& google, const std::string& token) {
  for (const auto& [t, kind] : google.issued_tokens())
    if (t == token) return kind;
  return "";
}

class GoogleAuthTest : public ::testing::Test {
 protected:
  GoogleAuthTest() : google(fake_options()) {
    // Nothing from the machine running the tests: no ADC file, no metadata server.
    for (const char* v : {"GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "GCE_METADATA_HOST",
                          "GCE_METADATA_ROOT"})
      env.unset(v);
    env.set("HOME", (tmp / "home").string());
  }

  std::string write_service_account(const std::string& private_pem,
                                    const std::string& name = "sa.json") {
    auto path = tmp / name;
    write_file(path,
               testing::service_account_key_file(kEmail, kKeyId, private_pem, google.token_uri()));
    return path.string();
  }
  std::string authorized_user_json(const std::string& secret = kClientSecret,
                                   const std::string& refresh = kRefreshToken) {
    return json{{"type", "authorized_user"},
                {"client_id", fake_options().client_id},
                {"client_secret", secret},
                {"refresh_token", refresh},
                {"token_uri", google.token_uri()}}
        .dump();
  }
  std::shared_ptr<CredentialSource> adc(GoogleAuthOptions o = {}) {
    auto c = google_credentials(o);
    EXPECT_TRUE(c.ok()) << c.error().to_string();
    return c.ok() ? *c : nullptr;
  }

  FakeGoogle google;
  TempDir tmp;
  ScopedEnv env;
};

TEST_F(GoogleAuthTest, ServiceAccountKeyGetsAnAccessTokenGoogleVerified) {
  env.set("GOOGLE_APPLICATION_CREDENTIALS",
          write_service_account(service_account_key().private_pem));
  auto source = adc();
  ASSERT_TRUE(source);
  EXPECT_EQ(source->describe(), std::string("google adc (service account ") + kEmail + ")");
  const auto before = WallClock::now();
  auto c = source->get();
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->credentials.username, "oauth2accesstoken");
  EXPECT_EQ(issued_to(google, c->credentials.password), "service_account");
  ASSERT_TRUE(c->expires);
  EXPECT_GE(*c->expires, before + std::chrono::seconds(3599));
  EXPECT_LE(*c->expires, WallClock::now() + std::chrono::seconds(3599));
  EXPECT_TRUE(google.refusals().empty());
}

TEST_F(GoogleAuthTest, JwtSignedWithAnotherKeyIsRefusedAsInvalidGrant) {
  env.set("GOOGLE_APPLICATION_CREDENTIALS", write_service_account(other_key().private_pem));
  auto c = adc()->get();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, Errc::unauthorized);
  EXPECT_NE(c.error().message.find(std::string("OAuth2 token for service account ") + kEmail),
            std::string::npos)
      << c.error().message;
  EXPECT_NE(c.error().message.find("HTTP 400 (invalid_grant"), std::string::npos)
      << c.error().message;
  EXPECT_EQ(google.refusals(), std::vector<std::string>{"bad JWT signature"});
}

// The JWT itself: the claims Google requires, and a signature that covers them.
TEST_F(GoogleAuthTest, AssertionCarriesGoogleClaimsAndTamperingBreaksIt) {
  const auto now = WallClock::now();
  auto jwt = google::service_account_assertion(service_account_key().private_pem, kKeyId, kEmail,
                                               google.token_uri(), now);
  ASSERT_TRUE(jwt.ok()) << jwt.error().to_string();
  const auto d1 = jwt->find('.'), d2 = jwt->rfind('.');
  auto header = json::parse(*base64url_decode(jwt->substr(0, d1)));
  auto claims = json::parse(*base64url_decode(jwt->substr(d1 + 1, d2 - d1 - 1)));
  EXPECT_EQ(header, (json{{"alg", "RS256"}, {"typ", "JWT"}, {"kid", kKeyId}}));
  EXPECT_EQ(claims["iss"], kEmail);
  EXPECT_EQ(claims["aud"], google.token_uri());
  EXPECT_EQ(claims["scope"], "https://www.googleapis.com/auth/cloud-platform");
  EXPECT_EQ(claims["exp"].get<std::int64_t>() - claims["iat"].get<std::int64_t>(), 3600);

  auto post = [&](const std::string& assertion) {
    return testing::http_request_with_body(
        google.port(), "POST", "/token", {{"Content-Type", "application/x-www-form-urlencoded"}},
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + assertion);
  };
  EXPECT_EQ(post(*jwt).status, 200);
  claims["iss"] = "attacker@evil-project.iam.gserviceaccount.com";
  const std::string tampered =
      jwt->substr(0, d1 + 1) + base64url_encode(claims.dump()) + jwt->substr(d2);
  auto refused = post(tampered);
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(json::parse(refused.body)["error"], "invalid_grant");
}

TEST_F(GoogleAuthTest, UnusableKeyFilesAreInvalidArgumentNamingTheFile) {
  env.set("GOOGLE_APPLICATION_CREDENTIALS", (tmp / "missing.json").string());
  auto missing = google_credentials({});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::invalid_argument);
  EXPECT_NE(missing.error().message.find("missing.json"), std::string::npos);

  write_file(
      tmp / "bad-key.json",
      testing::service_account_key_file(
          kEmail, kKeyId, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
          google.token_uri()));
  auto bad_key = google_credentials(from_file((tmp / "bad-key.json").string()));
  ASSERT_FALSE(bad_key.ok());
  EXPECT_EQ(bad_key.error().code, Errc::invalid_argument);
  EXPECT_NE(bad_key.error().message.find("private_key"), std::string::npos)
      << bad_key.error().message;

  write_file(tmp / "external.json", R"({"type":"external_account","audience":"x"})");
  auto external = google_credentials(from_file((tmp / "external.json").string()));
  ASSERT_FALSE(external.ok());
  EXPECT_NE(external.error().message.find("external_account"), std::string::npos);

  write_file(tmp / "garbage.json", "{not json");
  EXPECT_EQ(google_credentials(from_file((tmp / "garbage.json").string())).error().code,
            Errc::invalid_argument);
}

TEST_F(GoogleAuthTest, GcloudAuthorizedUserIsRefreshedWithItsClientSecret) {
  env.set("CLOUDSDK_CONFIG", (tmp / "gcloud").string());
  write_file(tmp / "gcloud" / "application_default_credentials.json", authorized_user_json());
  auto source = adc();
  EXPECT_EQ(source->describe(), "google adc (authorized user)");
  auto c = source->get();
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->credentials.username, "oauth2accesstoken");
  EXPECT_EQ(issued_to(google, c->credentials.password), "authorized_user");
}

TEST_F(GoogleAuthTest, GcloudFileUnderHomeWhenCloudsdkConfigIsUnset) {
  write_file(tmp / "home" / ".config" / "gcloud" / "application_default_credentials.json",
             authorized_user_json());
  auto c = adc()->get();
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(issued_to(google, c->credentials.password), "authorized_user");
}

TEST_F(GoogleAuthTest, WrongClientSecretOrRefreshTokenIsUnauthorized) {
  write_file(tmp / "wrong-secret.json", authorized_user_json("GOCSPX-wrong"));
  auto wrong_secret = adc(from_file((tmp / "wrong-secret.json").string()))->get();
  ASSERT_FALSE(wrong_secret.ok());
  EXPECT_EQ(wrong_secret.error().code, Errc::unauthorized);
  EXPECT_NE(wrong_secret.error().message.find("HTTP 401 (invalid_client"), std::string::npos)
      << wrong_secret.error().message;

  write_file(tmp / "wrong-refresh.json", authorized_user_json(kClientSecret, "1//revoked"));
  auto wrong_refresh = adc(from_file((tmp / "wrong-refresh.json").string()))->get();
  ASSERT_FALSE(wrong_refresh.ok());
  EXPECT_EQ(wrong_refresh.error().code, Errc::unauthorized);
  EXPECT_NE(wrong_refresh.error().message.find("HTTP 400 (invalid_grant"), std::string::npos);
  EXPECT_EQ(google.refusals(),
            (std::vector<std::string>{"client_id/client_secret", "refresh_token"}));
}

TEST_F(GoogleAuthTest, MetadataServerIsAskedWithMetadataFlavor) {
  env.set("GCE_METADATA_HOST", google.host());
  auto source = adc();
  EXPECT_EQ(source->describe(), "google adc (metadata server)");
  auto c = source->get();
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(issued_to(google, c->credentials.password), "metadata");
  // The fake enforces the header, as the real server does.
  auto bare = testing::http_request(google.port(), "GET",
                                    "/computeMetadata/v1/instance/service-accounts/default/token");
  EXPECT_EQ(bare.status, 403);
}

TEST_F(GoogleAuthTest, AdcOrderIsEnvFileThenGcloudFileThenMetadataServer) {
  env.set("GCE_METADATA_HOST", google.host());
  env.set("CLOUDSDK_CONFIG", (tmp / "gcloud").string());
  write_file(tmp / "gcloud" / "application_default_credentials.json", authorized_user_json());
  env.set("GOOGLE_APPLICATION_CREDENTIALS",
          write_service_account(service_account_key().private_pem));

  auto kind_of = [&] {
    auto c = adc()->get();
    EXPECT_TRUE(c.ok()) << c.error().to_string();
    return c.ok() ? issued_to(google, c->credentials.password) : "";
  };
  EXPECT_EQ(kind_of(), "service_account");
  env.unset("GOOGLE_APPLICATION_CREDENTIALS");
  EXPECT_EQ(kind_of(), "authorized_user");
  std::filesystem::remove(tmp / "gcloud" / "application_default_credentials.json");
  EXPECT_EQ(kind_of(), "metadata");
}

TEST_F(GoogleAuthTest, TokenIsCachedUntilNearExpiryThenRefreshed) {
  env.set("GCE_METADATA_HOST", google.host());
  auto now = WallClock::now();
  auto source = adc(with_clock([&now] { return now; }));
  auto first = source->get();
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  auto again = source->get();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->credentials.password, first->credentials.password);
  EXPECT_EQ(google.metadata_requests(), 1);

  now += std::chrono::seconds(3599 - 60);  // inside the refresh margin (5 min)
  auto refreshed = source->get();
  ASSERT_TRUE(refreshed.ok());
  EXPECT_NE(refreshed->credentials.password, first->credentials.password);
  EXPECT_EQ(google.metadata_requests(), 2);

  source->invalidate();  // the registry refused it
  ASSERT_TRUE(source->get().ok());
  EXPECT_EQ(google.metadata_requests(), 3);
}

TEST_F(GoogleAuthTest, UnreachableIssuersAreUpstreamUnavailable) {
  const testing::ClosedPort closed;
  env.set("GCE_METADATA_HOST", closed.host());
  auto md = adc()->get();
  ASSERT_FALSE(md.ok());
  EXPECT_EQ(md.error().code, Errc::upstream_unavailable);
  EXPECT_NE(md.error().message.find("metadata server token"), std::string::npos)
      << md.error().message;
  EXPECT_NE(md.error().message.find("no GOOGLE_APPLICATION_CREDENTIALS"), std::string::npos);

  write_file(tmp / "down.json", testing::service_account_key_file(
                                    kEmail, kKeyId, service_account_key().private_pem,
                                    closed.url() + "/token"));
  auto sa = adc(from_file((tmp / "down.json").string()))->get();
  ASSERT_FALSE(sa.ok());
  EXPECT_EQ(sa.error().code, Errc::upstream_unavailable);
}

// Invariant 7: with known secrets (keys, client secret, refresh token, access tokens, a
// stored password) and every way these flows fail, no error message and no describe()
// holds any of them.
TEST_F(GoogleAuthTest, NoSecretReachesAnErrorMessageOrDescribe) {
  std::vector<std::string> texts;
  auto record = [&texts](const std::shared_ptr<CredentialSource>& source) {
    if (!source) return;
    texts.push_back(source->describe());
    auto c = source->get();
    if (!c) texts.push_back(c.error().message);
  };
  auto record_creation = [&](const std::string& path) {
    auto c = google_credentials(from_file(path));
    if (c)
      record(*c);
    else
      texts.push_back(c.error().message);
  };
  const testing::ClosedPort down;  // every endpoint below that is "down" points here
  const std::string closed = down.url() + "/token";

  // Service account: a key Google does not know, a damaged key, the token endpoint down.
  record_creation(write_service_account(other_key().private_pem, "other.json"));
  // A line cut out of the middle: no longer a parsable key.
  std::string damaged = service_account_key().private_pem;
  const auto cut = damaged.find('\n', damaged.size() / 2);
  damaged.erase(cut, damaged.find('\n', cut + 1) - cut);
  record_creation(write_service_account(damaged, "damaged.json"));
  write_file(tmp / "sa-down.json", testing::service_account_key_file(
                                       kEmail, kKeyId, service_account_key().private_pem, closed));
  record_creation((tmp / "sa-down.json").string());

  // Authorized user: wrong client secret, revoked refresh token, token endpoint down.
  const std::string wrong_secret = "GOCSPX-wrong-secret-5d1e";
  const std::string wrong_refresh = "1//wrong-refresh-9f3c";
  write_file(tmp / "au-secret.json", authorized_user_json(wrong_secret));
  record_creation((tmp / "au-secret.json").string());
  write_file(tmp / "au-refresh.json", authorized_user_json(kClientSecret, wrong_refresh));
  record_creation((tmp / "au-refresh.json").string());
  auto au_down = json::parse(authorized_user_json());
  au_down["token_uri"] = closed;
  write_file(tmp / "au-down.json", au_down.dump());
  record_creation((tmp / "au-down.json").string());

  // Metadata server down.
  env.set("GCE_METADATA_HOST", down.host());
  record(adc());
  env.set("GCE_METADATA_HOST", google.host());

  // Secret Manager and Artifact Registry failing after a real access token was issued.
  auto token = adc(from_file(write_service_account(service_account_key().private_pem)));
  ASSERT_TRUE(token->get().ok());
  const std::string stored_password = "sm-stored-password-3a7b";
  google.add_secret_version("p", "bad-crc", stored_password, true);
  google.add_secret_version("p", "no-user", stored_password);
  google.add_secret_version("p", "no-password",
                            R"({"username":"u","pass":")" + stored_password + "\"}");
  for (const char* name : {"bad-crc", "no-user", "no-password", "missing"}) {
    GoogleSecretManagerOptions o;
    o.secret_version = std::string("projects/p/secrets/") + name + "/versions/latest";
    o.endpoint = google.url();
    record(*google_secret_manager_credentials(o, token));
  }
  ArtifactRegistryCreateOptions ar;
  ar.endpoint = google.url();
  ar.poll_interval = std::chrono::milliseconds(1);
  google.fail_next_operation(7, "denied");
  auto s = artifact_registry_create_repository("us-docker.pkg.dev/p/r", *token, ar);
  ASSERT_FALSE(s.ok());
  texts.push_back(s.error().message);
  google.revoke_all_tokens();
  auto s2 = artifact_registry_create_repository("us-docker.pkg.dev/p/r2", *token, ar);
  ASSERT_FALSE(s2.ok());
  texts.push_back(s2.error().message);

  std::vector<std::string> secrets = {kClientSecret, kRefreshToken, wrong_secret, wrong_refresh,
                                      stored_password};
  for (const std::string* pem : std::vector<const std::string*>{
           &service_account_key().private_pem, &other_key().private_pem, &damaged}) {
    std::stringstream lines(*pem);
    for (std::string line; std::getline(lines, line);)
      if (line.find("-----") == std::string::npos && line.size() > 16) secrets.push_back(line);
  }
  ASSERT_GE(google.issued_tokens().size(), 1u);
  for (const auto& [t, kind] : google.issued_tokens()) secrets.push_back(t);

  ASSERT_GE(texts.size(), 20u);
  int errors_seen = 0;
  for (const auto& text : texts) {
    if (text.starts_with("google:")) ++errors_seen;
    for (const auto& secret : secrets)
      EXPECT_EQ(text.find(secret), std::string::npos) << "a secret leaked into: " << text;
  }
  EXPECT_GE(errors_seen, 12) << "every flow above should have failed with a google: error";
}

// ---- Secret Manager -----------------------------------------------------------------

class GoogleSecretManagerTest : public GoogleAuthTest {
 protected:
  std::shared_ptr<CredentialSource> token_source() {
    env.set("GCE_METADATA_HOST", google.host());
    return adc();
  }
  Result<std::shared_ptr<CredentialSource>> secret(const std::string& version,
                                                   const std::string& username = "") {
    GoogleSecretManagerOptions o;
    o.secret_version = version;
    o.username = username;
    o.endpoint = google.url();
    return google_secret_manager_credentials(o, token_source());
  }
};

TEST_F(GoogleSecretManagerTest, JsonSecretGivesUsernameAndPassword) {
  google.add_secret_version("p", "registry", R"({"username":"robot$ci","password":"pw-1"})");
  auto source = secret("projects/p/secrets/registry/versions/latest");
  ASSERT_TRUE(source.ok()) << source.error().to_string();
  EXPECT_EQ((*source)->describe(),
            "google secret manager (projects/p/secrets/registry/versions/latest)");
  auto c = (*source)->get();
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->credentials.username, "robot$ci");
  EXPECT_EQ(c->credentials.password, "pw-1");
  EXPECT_EQ(google.secret_requests(), 1);
  EXPECT_TRUE(google.refusals().empty());
}

TEST_F(GoogleSecretManagerTest, PlainPasswordTakesTheConfiguredUsernameAndVersion) {
  google.add_secret_version("p", "pw", "old-password\n");
  google.add_secret_version("p", "pw", "new-password\n");
  auto latest = secret("projects/p/secrets/pw/versions/latest", "robot");
  ASSERT_TRUE(latest.ok());
  auto c = (*latest)->get();
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->credentials.username, "robot");
  EXPECT_EQ(c->credentials.password, "new-password");
  auto first = (*secret("projects/p/secrets/pw/versions/1", "robot"))->get();
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->credentials.password, "old-password");

  auto no_user = (*secret("projects/p/secrets/pw/versions/1"))->get();
  ASSERT_FALSE(no_user.ok());
  EXPECT_EQ(no_user.error().code, Errc::invalid_argument);
}

TEST_F(GoogleSecretManagerTest, CorruptedPayloadMissingSecretAndBadNamesAreErrors) {
  google.add_secret_version("p", "flaky", "password", /*wrong_crc=*/true);
  auto corrupt = (*secret("projects/p/secrets/flaky/versions/latest", "u"))->get();
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.error().code, Errc::upstream_protocol);
  EXPECT_NE(corrupt.error().message.find("dataCrc32c"), std::string::npos);

  auto missing = (*secret("projects/p/secrets/nope/versions/latest", "u"))->get();
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);
  EXPECT_NE(
      missing.error().message.find("Secret Manager AccessSecretVersion projects/p/secrets/nope"),
      std::string::npos)
      << missing.error().message;
  EXPECT_NE(missing.error().message.find("HTTP 404 (NOT_FOUND"), std::string::npos);

  EXPECT_EQ(secret("projects/p/secrets/x").error().code, Errc::invalid_argument);
  EXPECT_EQ(secret("p/x").error().code, Errc::invalid_argument);
}

TEST_F(GoogleSecretManagerTest, RevokedAccessTokenIsReplacedOnTheNextRead) {
  google.add_secret_version("p", "s", R"({"username":"u","password":"pw"})");
  auto source = *secret("projects/p/secrets/s/versions/latest");
  ASSERT_TRUE(source->get().ok());
  source->invalidate();
  google.revoke_all_tokens();
  auto refused = source->get();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::unauthorized);
  EXPECT_NE(refused.error().message.find("UNAUTHENTICATED"), std::string::npos);
  auto again = source->get();  // with a fresh access token
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  EXPECT_EQ(google.metadata_requests(), 2);
}

// ---- Artifact Registry ----------------------------------------------------------------

TEST(ArtifactRegistryDestination, ParsesLocationProjectAndRepository) {
  auto r =
      parse_artifact_registry_destination("us-central1-docker.pkg.dev/my-proj/images/team/app");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->location, "us-central1");
  EXPECT_EQ(r->project, "my-proj");
  EXPECT_EQ(r->repository, "images");
  auto multi = parse_artifact_registry_destination("europe-docker.pkg.dev/p/r");
  ASSERT_TRUE(multi.ok());
  EXPECT_EQ(multi->location, "europe");
  auto domain = parse_artifact_registry_destination("us-docker.pkg.dev/example.com/proj/r/app");
  ASSERT_TRUE(domain.ok());
  EXPECT_EQ(domain->project, "example.com:proj");
  EXPECT_EQ(domain->repository, "r");
  for (const char* bad : {"docker.io/library/alpine", "us-docker.pkg.dev/p", "-docker.pkg.dev/p/r",
                          "us-docker.pkg.dev//r"})
    EXPECT_EQ(parse_artifact_registry_destination(bad).error().code, Errc::invalid_argument) << bad;
  EXPECT_TRUE(is_gcr_host("gcr.io"));
  EXPECT_TRUE(is_gcr_host("eu.gcr.io"));
  EXPECT_FALSE(is_gcr_host("notgcr.io"));
  EXPECT_FALSE(is_gcr_host("us-docker.pkg.dev"));
}

class ArtifactRegistryTest : public GoogleAuthTest {
 protected:
  ArtifactRegistryTest() {
    env.set("GOOGLE_APPLICATION_CREDENTIALS",
            write_service_account(service_account_key().private_pem));
    token = adc();
    options.endpoint = google.url();
    options.poll_interval = std::chrono::milliseconds(10);
  }
  std::shared_ptr<CredentialSource> token;
  ArtifactRegistryCreateOptions options;
};

TEST_F(ArtifactRegistryTest, CreatesRepositoryWithKmsKeyOnceAndIsIdempotent) {
  google.set_operation_polls(3);
  options.kms_key = "projects/p/locations/us-central1/keyRings/k/cryptoKeys/c";

  auto created = artifact_registry_create_repository(
      "us-central1-docker.pkg.dev/my-proj/images/team/app", *token, options);
  ASSERT_TRUE(created.ok()) << created.error().to_string();
  auto repos = google.repositories();
  ASSERT_EQ(repos.size(), 1u);
  EXPECT_EQ(repos[0].name, "projects/my-proj/locations/us-central1/repositories/images");
  EXPECT_EQ(repos[0].format, "DOCKER");
  EXPECT_EQ(repos[0].kms_key, options.kms_key);
  EXPECT_EQ(google.operation_polls(), 3);

  auto again = artifact_registry_create_repository(
      "us-central1-docker.pkg.dev/my-proj/images/other", *token, options);
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  EXPECT_EQ(google.repositories().size(), 1u);
  EXPECT_EQ(google.create_requests(), 2);
  EXPECT_EQ(google.operation_polls(), 3);  // 409: nothing to wait for
}

TEST_F(ArtifactRegistryTest, GcrNeedsNoRepository) {
  ASSERT_TRUE(artifact_registry_create_repository("gcr.io/my-proj/app", *token, options).ok());
  ASSERT_TRUE(artifact_registry_create_repository("eu.gcr.io/my-proj/app", *token, options).ok());
  EXPECT_EQ(google.create_requests(), 0);
  EXPECT_EQ(google.token_requests(), 0);
}

TEST_F(ArtifactRegistryTest, FailedOperationIsReportedWithGoogleCode) {
  google.fail_next_operation(7, "Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied");
  auto s = artifact_registry_create_repository("us-docker.pkg.dev/p/r", *token, options);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::denied);
  EXPECT_NE(s.error().message.find(
                "Artifact Registry CreateRepository projects/p/locations/us/repositories/r"),
            std::string::npos)
      << s.error().message;
  EXPECT_NE(s.error().message.find("code 7"), std::string::npos);
  EXPECT_TRUE(google.repositories().empty());
}

TEST_F(ArtifactRegistryTest, OperationThatNeverEndsIsBounded) {
  google.set_operation_polls(1000000);
  options.operation_timeout = std::chrono::milliseconds(200);
  auto s = artifact_registry_create_repository("us-docker.pkg.dev/p/r", *token, options);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::upstream_unavailable);
  EXPECT_NE(s.error().message.find("not done after 200 ms"), std::string::npos)
      << s.error().message;
  EXPECT_GE(google.operation_polls(), 1);
}

}  // namespace
}  // namespace ocirelay::adapters
