// HTTPS serving: the mirror speaks TLS with the configured certificate, clients verify it,
// and pulls through it return upstream's exact bytes.
#include "tests/integration/fixture.h"

namespace ocirelay::testing {
namespace {

class TlsTest : public MirrorTest {};

TEST_F(TlsTest, PullsOverHttpsWithAVerifiedCertificate) {
  if (!require_programs({"openssl", "curl"})) return;
  auto img = push_image("team/app", "1.0", 2, 64 * 1024);
  fs::path cert = tmp / "cert.pem", key = tmp / "key.pem";
  auto made = run_command({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                           key.string(), "-out", cert.string(), "-days", "1", "-subj",
                           "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"},
                          60s);
  ASSERT_EQ(made.exit_code, 0) << made.err;
  relay = std::make_unique<OcirelayProcess>(tmp / "ocirelay", kUpstream, registry.url());
  relay->set_tls(cert, key);
  ASSERT_TRUE(relay->start());

  // curl checks the chain against the certificate and the name against the IP SAN.
  fs::path body = tmp / "manifest";
  auto got = run_command({"curl", "-sSf", "--cacert", cert.string(), "-H", "Accept: " + img.media_type,
                          "-o", body.string(),
                          "https://127.0.0.1:" + std::to_string(relay->port()) +
                              "/v2/team/app/manifests/1.0"},
                         60s);
  ASSERT_EQ(got.exit_code, 0) << got.err << relay->log();
  EXPECT_EQ(sha256_digest(read_file(body)), img.digest);

  // Plain HTTP to the TLS port gets no registry answer.
  EXPECT_NE(http_request(relay->port(), "GET", "/v2/", {}, 5s).status, 200);

  // A whole image over HTTPS (blobs go through the TLS write path, not sendfile).
  auto r = pull(relay->host(), "team/app", "1.0", tmp / "out");
  ASSERT_EQ(r.exit_code, 0) << r.err << relay->log();
  expect_dir_matches(tmp / "out", img);
}

}  // namespace
}  // namespace ocirelay::testing
