// Pushing to local repositories: skopeo pushes an image into ocirelay and pulls it back;
// hostile pushes get a clear 4xx and change nothing.
#include "tests/integration/fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace ocirelay::testing {
namespace {

class PushTest : public MirrorTest {
 protected:
  bool start_local_relay(std::string extra = "") {
    relay = std::make_unique<OcirelayProcess>(tmp / "ocirelay", kUpstream, registry.url());
    relay->add_config("local:\n  repositories: [\"apps/**\"]\n" + extra);
    return relay->start();
  }
  bool ingest_empty() {
    auto dir = relay->store_dir() / "ingest";
    for (const auto& e : fs::directory_iterator(dir))
      if (!e.path().filename().string().starts_with("meta-")) return false;
    return true;
  }
  HttpResponse send(const std::string& method, const std::string& target, const std::string& body,
                    std::map<std::string, std::string> headers = {}) {
    return http_request_with_body(relay->port(), method, target, headers, body);
  }
};

TEST_F(PushTest, SkopeoPushesIntoALocalRepositoryAndPullsItBack) {
  auto img = push_image("team/app", "1.0", 3, 300 * 1024);  // built in images/, also upstream
  ASSERT_TRUE(start_local_relay());
  ASSERT_TRUE(images.push(relay->host(), "apps/web", "1.0")) << relay->log();

  // Served from the store: the upstream has no apps/web, and is never asked.
  auto r = pull(relay->host(), "apps/web", "1.0", tmp / "out");
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << relay->log();
  expect_dir_matches(tmp / "out", img);
  EXPECT_EQ(registry.count_requests("apps/web"), 0) << registry.access_log();

  auto tags = http_request(relay->port(), "GET", "/v2/apps/web/tags/list");
  ASSERT_EQ(tags.status, 200) << tags.body;
  EXPECT_EQ(nlohmann::json::parse(tags.body)["tags"], nlohmann::json::array({"1.0"}));

  // The store is an OCI layout that names the pushed tag.
  relay->stop();
  auto copy = skopeo_copy("oci:" + relay->store_dir().string() + ":apps/web:1.0",
                          "dir:" + (tmp / "from-store").string());
  ASSERT_EQ(copy.exit_code, 0) << copy.err;
  expect_dir_matches(tmp / "from-store", img);
}

TEST_F(PushTest, ChunkedUploadFollowsTheSessionAndRefusesGapsAndWrongDigests) {
  ASSERT_TRUE(start_local_relay());
  const std::string blob = random_bytes(200000, 3);
  const std::string digest = sha256_digest(blob);

  auto post = send("POST", "/v2/apps/x/blobs/uploads/", "");
  ASSERT_EQ(post.status, 202) << post.body;
  const std::string loc = post.headers["location"];
  ASSERT_FALSE(loc.empty());
  EXPECT_EQ(post.headers["range"], "0-0");
  EXPECT_FALSE(post.headers["docker-upload-uuid"].empty());

  // A chunk that does not start where the session ends: 416 with the current range.
  auto gap = send("PATCH", loc, blob.substr(5, 5), {{"Content-Range", "5-9"}});
  EXPECT_EQ(gap.status, 416) << gap.body;
  EXPECT_EQ(gap.headers["range"], "0-0");

  auto first = send("PATCH", loc, blob.substr(0, 100000), {{"Content-Range", "0-99999"}});
  ASSERT_EQ(first.status, 202) << first.body;
  EXPECT_EQ(first.headers["range"], "0-99999");
  auto status = http_request(relay->port(), "GET", loc);
  EXPECT_EQ(status.status, 204);
  EXPECT_EQ(status.headers["range"], "0-99999");

  // A malformed digest is refused before a byte is taken: the session is unchanged.
  auto malformed = send("PUT", loc + "?digest=sha256:oops", blob.substr(100000));
  EXPECT_EQ(malformed.status, 400) << malformed.body;
  EXPECT_EQ(http_request(relay->port(), "GET", loc).headers["range"], "0-99999");

  // The last chunk with the PUT, but the wrong digest: refused, nothing stored.
  const std::string wrong = sha256_digest("something else");
  auto bad = send("PUT", loc + "?digest=" + wrong, blob.substr(100000));
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("DIGEST_INVALID"), std::string::npos) << bad.body;
  EXPECT_EQ(http_request(relay->port(), "HEAD", "/v2/apps/x/blobs/" + digest).status, 404);
  EXPECT_EQ(http_request(relay->port(), "GET", loc).status, 404) << "the failed session is gone";

  // A monolithic POST with a malformed digest takes nothing.
  EXPECT_EQ(send("POST", "/v2/apps/x/blobs/uploads/?digest=bogus", blob).status, 400);
  EXPECT_TRUE(ingest_empty()) << "a refused upload left its bytes in ingest/";

  // Again, whole in one POST: stored, and served under that repository.
  auto mono = send("POST", "/v2/apps/x/blobs/uploads/?digest=" + digest, blob);
  ASSERT_EQ(mono.status, 201) << mono.body;
  EXPECT_EQ(mono.headers["docker-content-digest"], digest);
  auto got = http_request(relay->port(), "GET", "/v2/apps/x/blobs/" + digest);
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body, blob);
}

TEST_F(PushTest, HostilePushesGetA4xxAndChangeNothing) {
  ASSERT_TRUE(start_local_relay());
  const std::string blob = "a blob";
  const std::string digest = sha256_digest(blob);

  // Unknown session, a session id that climbs out, another repository's session.
  auto unknown = send("PATCH", "/v2/apps/x/blobs/uploads/0123456789abcdef", "bytes");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(unknown.body.find("BLOB_UPLOAD_UNKNOWN"), std::string::npos) << unknown.body;
  EXPECT_EQ(send("PATCH", "/v2/apps/x/blobs/uploads/../../../etc", "bytes").status, 400);
  auto post = send("POST", "/v2/apps/x/blobs/uploads/", "");
  ASSERT_EQ(post.status, 202);
  std::string other = post.headers["location"];
  other.replace(other.find("apps/x"), 6, "apps/y");
  EXPECT_EQ(send("PATCH", other, "bytes").status, 404) << "a session belongs to its repository";

  // Pushes to a mirrored repository.
  auto mirrored = send("POST", "/v2/team/app/blobs/uploads/?digest=" + digest, blob);
  EXPECT_EQ(mirrored.status, 405) << mirrored.body;
  EXPECT_NE(mirrored.body.find("mirrored"), std::string::npos) << mirrored.body;

  // A manifest naming a blob the repository lacks; one over 4 MiB; a bad tag.
  nlohmann::json m = {{"schemaVersion", 2},
                      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                      {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                                  {"digest", digest}, {"size", blob.size()}}},
                      {"layers", nlohmann::json::array()}};
  const std::map<std::string, std::string> oci_type = {
      {"Content-Type", "application/vnd.oci.image.manifest.v1+json"}};
  auto missing = send("PUT", "/v2/apps/x/manifests/1.0", m.dump(), oci_type);
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(missing.body.find("MANIFEST_BLOB_UNKNOWN"), std::string::npos) << missing.body;
  auto huge = send("PUT", "/v2/apps/x/manifests/1.0", std::string(5 << 20, ' '), oci_type);
  EXPECT_EQ(huge.status, 413);
  auto mismatch = send("PUT", "/v2/apps/x/manifests/1.0", m.dump(),
                       {{"Content-Type", "application/vnd.docker.distribution.manifest.v2+json"}});
  EXPECT_EQ(mismatch.status, 400) << mismatch.body;
  EXPECT_EQ(send("PUT", "/v2/apps/x/manifests/-bad-tag", m.dump(), oci_type).status, 400);
  {  // a descriptor whose size is not the blob's
    ASSERT_EQ(send("POST", "/v2/apps/x/blobs/uploads/?digest=" + digest, blob).status, 201);
    auto lying = m;
    lying["config"]["size"] = 99999;
    auto r = send("PUT", "/v2/apps/x/manifests/1.0", lying.dump(), oci_type);
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.body.find("SIZE_INVALID"), std::string::npos) << r.body;
  }

  // No manifest of it is visible.
  EXPECT_EQ(http_request(relay->port(), "GET", "/v2/apps/x/manifests/1.0").status, 404);

  // With the blob pushed (above), the manifest goes in and is served by tag and digest.
  auto put = send("PUT", "/v2/apps/x/manifests/1.0", m.dump(), oci_type);
  ASSERT_EQ(put.status, 201) << put.body;
  const std::string mdigest = sha256_digest(m.dump());
  EXPECT_EQ(put.headers["docker-content-digest"], mdigest);
  EXPECT_EQ(put.headers["location"], "/v2/apps/x/manifests/" + mdigest);
  auto by_tag = http_request(relay->port(), "GET", "/v2/apps/x/manifests/1.0",
                             {{"Accept", "application/vnd.oci.image.manifest.v1+json"}});
  ASSERT_EQ(by_tag.status, 200);
  EXPECT_EQ(by_tag.body, m.dump());
}

// A PATCH whose client goes away mid-body keeps what arrived: the session's Range says
// where to resume, and the upload finishes from there.
TEST_F(PushTest, AnInterruptedChunkKeepsTheSessionAndWhatArrived) {
  ASSERT_TRUE(start_local_relay());
  const std::string blob = random_bytes(300000, 9);
  auto post = send("POST", "/v2/apps/x/blobs/uploads/", "");
  ASSERT_EQ(post.status, 202);
  const std::string loc = post.headers["location"];
  {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(relay->port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    std::string req = "PATCH " + loc + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                      std::to_string(blob.size()) + "\r\n\r\n" + blob.substr(0, 100000);
    ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
    // The session reports bytes of the PATCH still running (a GET answers meanwhile);
    // then the client dies.
    ASSERT_TRUE(wait_until([&] {
      auto r = http_request(relay->port(), "GET", loc);
      return r.status == 204 && r.headers["range"] != "0-0";
    }, 10s)) << "the PATCH never started";
    ::close(fd);
  }
  // Once the server saw the client go, the session is free again: an empty PATCH (which
  // 409s while the interrupted one still holds it) reports what was kept.
  std::string range;
  ASSERT_TRUE(wait_until([&] {
    auto r = send("PATCH", loc, "");
    range = r.headers["range"];
    return r.status == 202;
  }, 10s)) << relay->log();
  EXPECT_EQ(http_request(relay->port(), "GET", loc).headers["range"], range);
  ASSERT_EQ(range.substr(0, 2), "0-");
  const std::size_t kept = std::stoul(range.substr(2)) + 1;
  ASSERT_GT(kept, 0u);
  ASSERT_LE(kept, 100000u);
  auto rest = send("PUT", loc + "?digest=" + sha256_digest(blob), blob.substr(kept));
  ASSERT_EQ(rest.status, 201) << rest.body;
  EXPECT_EQ(http_request(relay->port(), "GET", "/v2/apps/x/blobs/" + sha256_digest(blob)).body, blob);
}

TEST_F(PushTest, OpenUploadsAreCappedAndACapSessionFreesItsPlace) {
  ASSERT_TRUE(start_local_relay("  max_upload_sessions: 3\n"));
  std::vector<std::string> sessions;
  for (int i = 0; i < 3; ++i) {
    auto r = send("POST", "/v2/apps/x/blobs/uploads/", "");
    ASSERT_EQ(r.status, 202) << r.body;
    sessions.push_back(r.headers["location"]);
  }
  auto refused = send("POST", "/v2/apps/x/blobs/uploads/", "");
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(send("DELETE", sessions[0], "").status, 204);
  EXPECT_EQ(send("POST", "/v2/apps/x/blobs/uploads/", "").status, 202);
}

}  // namespace
}  // namespace ocirelay::testing
