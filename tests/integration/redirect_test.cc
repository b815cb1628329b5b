// An upstream on object storage redirects blob GETs and HEADs to another host (distribution
// on S3/GCS does): the mirror follows both, never sending the upstream's credentials there,
// so uncached HEADs and a shared layer under a new repository work.
#include <gtest/gtest.h>

#include <mutex>

#include "adapters/encoding.h"
#include "tests/integration/harness.h"
#include "tests/support/fake_http_server.h"

namespace ocirelay::testing {
namespace {

// /v2/ needs Basic credentials; every blob of any repository redirects to
// http://localhost:<port>/storage/<digest>, which serves it to anyone and records the
// Authorization header each request carried.
class ObjectStorageUpstream {
 public:
  ObjectStorageUpstream(std::string user, std::string password, std::string blob)
      : basic_("Basic " + adapters::base64_encode(user + ":" + password)),
        blob_(std::move(blob)),
        digest_(sha256_digest(blob_)),
        server_([this](const HttpCall& call) { return answer(call); }) {}

  std::string url() const { return server_.url(); }
  const std::string& digest() const { return digest_; }
  std::vector<std::string> storage_authorizations() const {
    std::lock_guard lock(mu_);
    return storage_auth_;
  }

 private:
  HttpReply answer(const HttpCall& call) {
    if (call.path.starts_with("/storage/")) {
      std::lock_guard lock(mu_);
      storage_auth_.push_back(call.header("authorization"));
      return HttpReply{200, {{"Content-Type", "application/octet-stream"}}, blob_};
    }
    if (call.header("authorization") != basic_)
      return HttpReply{401, {{"WWW-Authenticate", "Basic realm=\"registry\""}}, ""};
    if (call.path.find("/blobs/" + digest_) != std::string::npos)
      return HttpReply{307, {{"Location", "http://localhost:" + std::to_string(server_.port()) +
                                              "/storage/" + digest_}}, ""};
    return HttpReply{200, {}, "{}"};
  }

  const std::string basic_, blob_, digest_;
  mutable std::mutex mu_;
  std::vector<std::string> storage_auth_;  // guarded by mu_
  FakeHttpServer server_;  // last: stops before what its handler touches
};

TEST(RedirectTest, BlobHeadsAndGetsFollowRedirectsWithoutCredentials) {
  const std::string password = "pw-not-for-storage";
  ObjectStorageUpstream upstream("mirror", password, random_bytes(300 << 10, 91));
  TempDir tmp;
  write_file(tmp / "password", password + "\n");
  OcirelayProcess relay(tmp / "ocirelay", "s3.test", upstream.url());
  relay.set_upstream_auth("mirror", tmp / "password");
  ASSERT_TRUE(relay.start()) << relay.log();
  const std::string size = std::to_string(300 << 10);

  // Uncached HEAD: answered from the upstream's HEAD, through the redirect.
  auto head = http_request(relay.port(), "HEAD", "/v2/team/one/blobs/" + upstream.digest());
  ASSERT_EQ(head.status, 200) << relay.log();
  EXPECT_EQ(head.headers["content-length"], size);

  auto get = http_request(relay.port(), "GET", "/v2/team/one/blobs/" + upstream.digest());
  ASSERT_EQ(get.status, 200) << relay.log();
  EXPECT_EQ(sha256_digest(get.body), upstream.digest());

  // The same layer under another repository: stored once, and the "does team/two have it"
  // check is a HEAD that is redirected too.
  ASSERT_TRUE(relay.wait_for_log("fill s3.test/team/one " + upstream.digest() + " bytes="))
      << relay.log();  // logged once the blob is committed
  auto shared = http_request(relay.port(), "GET", "/v2/team/two/blobs/" + upstream.digest());
  ASSERT_EQ(shared.status, 200) << relay.log();
  EXPECT_EQ(sha256_digest(shared.body), upstream.digest());
  EXPECT_TRUE(relay.wait_for_log("cache=hit")) << relay.log();

  auto seen = upstream.storage_authorizations();
  EXPECT_EQ(seen.size(), 3u) << "HEAD, GET and the second repository's HEAD reach storage";
  for (const auto& a : seen) EXPECT_EQ(a, "") << "credentials were sent to the storage host";
}

}  // namespace
}  // namespace ocirelay::testing
