// Hostile and malformed requests get 4xx OCI JSON errors, never files outside the store,
// never a request to an address the client chose.
#include "tests/integration/fixture.h"

namespace ocirelay::testing {
namespace {

using HostileRequestTest = MirrorTest;

void expect_oci_error(const HttpResponse& resp, const std::string& target) {
  EXPECT_GE(resp.status, 400) << target;
  EXPECT_LT(resp.status, 500) << target;
  EXPECT_NE(resp.body.find("\"errors\""), std::string::npos) << target << ": " << resp.body;
  EXPECT_NE(resp.body.find("\"code\""), std::string::npos) << target << ": " << resp.body;
  EXPECT_EQ(resp.body.find("root:"), std::string::npos) << target << " leaked a file";
}

TEST_F(HostileRequestTest, BadPathsNamesAndDigestsAreRejected) {
  auto img = push_image("team/app", "1.0", 1, 1000);
  ASSERT_TRUE(start_relay());
  const std::vector<std::string> targets = {
      "/v2/../../etc/passwd",
      "/v2/team/../../../etc/passwd/manifests/latest",
      "/v2/%2e%2e/%2e%2e/etc/manifests/latest",
      "/v2/team/%2e%2e/app/manifests/1.0",
      "/v2/team/app/blobs/sha256:zz",
      "/v2/team/app/blobs/sha256:" + std::string(63, 'a'),
      "/v2/team/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e",
      "/v2/team/app/blobs/../../../../etc/passwd",
      "/v2/Team/App/manifests/1.0",
      "/v2/team//app/manifests/1.0",
      "/v2/team/app/manifests/bad%20tag",
      "/v2/team/app/manifests/1.0?ns=127.0.0.1:1",
      "/v2/team/app/manifests/1.0?ns=169.254.169.254",
  };
  for (const auto& t : targets) expect_oci_error(http_request(relay->port(), "GET", t), t);
  // No request reached the upstream for any of them (only the ns= one could, and it names
  // an upstream that is not configured).
  EXPECT_EQ(registry.count_requests("etc/passwd"), 0);
  // The server still works.
  auto ok = http_request(relay->port(), "GET", "/v2/team/app/manifests/1.0",
                         {{"Accept", "application/vnd.oci.image.manifest.v1+json"}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(sha256_digest(ok.body), img.digest);
}

}  // namespace
}  // namespace ocirelay::testing
