// Pushing to local repositories: skopeo pushes an image into ocirelay and pulls it back;
// hostile pushes get a clear 4xx and change nothing.
#include "tests/integration/fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "oci/digest.h"
#include "store/store.h"

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
  // A monolithic blob push (POST ?digest=); returns the digest.
  std::string put_blob(const std::string& repo, const std::string& bytes) {
    const std::string d = sha256_digest(bytes);
    auto r = send("POST", "/v2/" + repo + "/blobs/uploads/?digest=" + d, bytes);
    EXPECT_EQ(r.status, 201) << r.body;
    return d;
  }
  // Pushes a one-layer OCI image (config + layer) as repo:ref; returns the manifest.
  nlohmann::json put_image(const std::string& repo, const std::string& ref, const std::string& layer,
                           std::optional<std::string> subject = std::nullopt,
                           std::string artifact_type = "") {
    const std::string config = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":\"" + ref + "\"}";
    nlohmann::json m{{"schemaVersion", 2},
                     {"mediaType", kOciManifest},
                     {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                                 {"digest", put_blob(repo, config)}, {"size", config.size()}}},
                     {"layers", nlohmann::json::array({{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                                                        {"digest", put_blob(repo, layer)},
                                                        {"size", layer.size()}}})}};
    if (!artifact_type.empty()) m["artifactType"] = artifact_type;
    if (subject)
      m["subject"] = {{"mediaType", kOciManifest}, {"digest", *subject}, {"size", 100}};
    auto r = send("PUT", "/v2/" + repo + "/manifests/" + ref, m.dump(), {{"Content-Type", kOciManifest}});
    EXPECT_EQ(r.status, 201) << r.body;
    return m;
  }
  // Opens a connection to the relay and sends `bytes` (a request that may stop short);
  // returns the socket, or -1.
  int send_raw(const std::string& bytes) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(relay->port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
      ::close(fd);
      return -1;
    }
    return fd;
  }
  std::size_t upload_files() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(relay->store_dir() / "uploads")) ++n;
    return n;
  }
  static constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
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
  // A Content-Range that disagrees with the body's length: refused before a byte is taken.
  auto lying_range = send("PATCH", post.headers["location"], "12345", {{"Content-Range", "0-9"}});
  EXPECT_EQ(lying_range.status, 416) << lying_range.body;
  EXPECT_EQ(http_request(relay->port(), "GET", post.headers["location"]).headers["range"], "0-0");
  // Bad repository and tag names.
  EXPECT_EQ(send("POST", "/v2/apps/Upper/blobs/uploads/", "").status, 400);
  EXPECT_EQ(send("POST", "/v2/apps/a..b/blobs/uploads/", "").status, 400);
  EXPECT_EQ(send("PUT", "/v2/apps/x/manifests/" + std::string(129, 't'), "{}",
                 {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}}).status, 400);

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

// A multi-arch image pushed with skopeo into two repositories that share its layers, pulled
// back whole; the index keeps its digest, and the store's OCI layout reads it.
TEST_F(PushTest, SkopeoPushesAMultiArchIndexIntoRepositoriesThatShareLayers) {
  const std::string shared = random_bytes(150000, 61);
  auto amd = images.add_image("", {shared, random_bytes(20000, 62)}, {"linux", "amd64"});
  auto arm = images.add_image("", {shared, random_bytes(20000, 63)}, {"linux", "arm64"});
  auto idx = images.add_index("2.0", {{amd, {"linux", "amd64"}}, {arm, {"linux", "arm64"}}});
  ASSERT_TRUE(start_local_relay());
  ASSERT_TRUE(images.push(relay->host(), "apps/multi", "2.0")) << relay->log();
  ASSERT_TRUE(images.push(relay->host(), "apps/multi-copy", "2.0")) << relay->log();
  for (const char* repo : {"apps/multi", "apps/multi-copy"}) {
    auto head = http_request(relay->port(), "HEAD", std::string("/v2/") + repo + "/manifests/2.0",
                             {{"Accept", idx.media_type}});
    ASSERT_EQ(head.status, 200) << repo;
    EXPECT_EQ(head.headers["docker-content-digest"], idx.digest) << repo;
  }
  // The shared layer is one file.
  EXPECT_TRUE(fs::exists(relay->store_dir() / "blobs/sha256" / sha256_digest(shared).substr(7)));
  auto r = pull(relay->host(), "apps/multi-copy", "2.0", tmp / "multi", /*all=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.err << relay->log();
  EXPECT_EQ(sha256_digest(read_file(tmp / "multi" / "manifest.json")), idx.digest);
  relay->stop();
  auto copy = skopeo_copy("oci:" + relay->store_dir().string() + ":apps/multi:2.0",
                          "dir:" + (tmp / "multi-store").string(), {"--all"});
  ASSERT_EQ(copy.exit_code, 0) << copy.err;
  EXPECT_EQ(sha256_digest(read_file(tmp / "multi-store" / "manifest.json")), idx.digest);
}

// containerd pushes to a local repository and pulls the image back from it.
TEST_F(PushTest, CtrPushesAndPullsBack) {
  if (!require_programs({"containerd", "ctr"})) return;
  images.add_image("1.0", {tar_layer({{"app/hello.txt", "pushed by ctr\n"}})});
  ASSERT_TRUE(images.push(registry.host(), "team/ctr", "1.0"));
  ASSERT_TRUE(start_local_relay());
  ContainerdProcess first(tmp / "containerd1");
  ASSERT_TRUE(first.start());
  auto hosts = first.write_hosts(kUpstream, relay->host());
  const std::string src = std::string(kUpstream) + "/team/ctr:1.0";
  auto pulled = first.pull(src, hosts);
  ASSERT_EQ(pulled.exit_code, 0) << pulled.out << pulled.err << relay->log();
  const std::string dst = relay->host() + "/apps/ctr:1.0";
  auto tagged = first.ctr({"images", "tag", src, dst});
  ASSERT_EQ(tagged.exit_code, 0) << tagged.err;
  auto pushed = first.ctr({"images", "push", "--plain-http", dst});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.out << pushed.err << relay->log();
  auto upstream_digest = http_request(relay->port(), "HEAD", "/v2/team/ctr/manifests/1.0",
                                      {{"Accept", kOciManifest}}).headers["docker-content-digest"];
  auto local = http_request(relay->port(), "HEAD", "/v2/apps/ctr/manifests/1.0", {{"Accept", kOciManifest}});
  ASSERT_EQ(local.status, 200);
  EXPECT_EQ(local.headers["docker-content-digest"], upstream_digest);
  first.stop();

  ContainerdProcess second(tmp / "containerd2");
  ASSERT_TRUE(second.start());
  auto back = second.pull(dst, tmp / "no-hosts");
  ASSERT_EQ(back.exit_code, 0) << back.out << back.err << relay->log();
  bool found = false;
  for (const auto& e : fs::directory_iterator(second.snapshots_dir()))
    found = found || read_file(e.path() / "app/hello.txt") == "pushed by ctr\n";
  EXPECT_TRUE(found);
}

// Pushed content is never evicted: once the quota holds only pushed content, a push that
// does not fit fails naming the quota, and pulls keep working.
TEST_F(PushTest, APushTheQuotaCannotHoldFailsNamingItAndPullsGoOn) {
  relay = std::make_unique<OcirelayProcess>(tmp / "ocirelay", kUpstream, registry.url());
  relay->add_store_key("max_size: 1MiB");
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n");
  ASSERT_TRUE(relay->start());
  auto kept = put_image("apps/q", "1.0", random_bytes(600 << 10, 71));
  auto refused = send("POST", "/v2/apps/q/blobs/uploads/?digest=" + sha256_digest(random_bytes(600 << 10, 72)),
                      random_bytes(600 << 10, 72));
  EXPECT_EQ(refused.status, 507) << refused.body;
  EXPECT_NE(refused.body.find("store.max_size"), std::string::npos) << refused.body;
  auto layer = http_request(relay->port(), "GET", "/v2/apps/q/blobs/" + kept["layers"][0]["digest"].get<std::string>());
  EXPECT_EQ(layer.status, 200);
  EXPECT_EQ(layer.body, random_bytes(600 << 10, 71));
  EXPECT_EQ(http_request(relay->port(), "GET", "/v2/apps/q/manifests/1.0", {{"Accept", kOciManifest}}).status, 200);
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
    int fd = send_raw("PATCH " + loc + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                      std::to_string(blob.size()) + "\r\n\r\n" + blob.substr(0, 100000));
    ASSERT_GE(fd, 0);
    // The client dies after 100000 of its 300000 bytes.
    ::close(fd);
  }
  // The server keeps what arrived once it sees the client go; then the session is free
  // again: an empty PATCH (which 409s while the interrupted one still holds it) reports it.
  ASSERT_TRUE(wait_until([&] { return http_request(relay->port(), "GET", loc).headers["range"] != "0-0"; }, 10s));
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
  ASSERT_EQ(kept, 100000u);  // all that arrived
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

// kill -9 in the middle of a 512 MiB chunked upload: after the restart the session's GET
// reports what was kept (at least every acknowledged chunk), and the client finishes the
// upload from there; the blob verifies.
TEST_F(PushTest, AnUploadSurvivesKill9AndFinishesFromTheKeptOffset) {
  ASSERT_TRUE(start_local_relay());
  constexpr std::size_t kChunk = 64u << 20, kChunks = 8;
  oci::Sha256 whole;
  std::vector<std::string> chunks;
  for (std::size_t i = 0; i < kChunks; ++i) {
    chunks.push_back(random_bytes(kChunk, 1000 + i));
    whole.update(chunks.back());
  }
  const std::string digest = whole.finish().str();
  auto range_of = [](std::uint64_t first, std::uint64_t n) {
    return std::to_string(first) + "-" + std::to_string(first + n - 1);
  };
  auto post = send("POST", "/v2/apps/big/blobs/uploads/", "");
  ASSERT_EQ(post.status, 202);
  const std::string loc = post.headers["location"];
  for (std::size_t i = 0; i < 4; ++i) {
    auto r = send("PATCH", loc, chunks[i], {{"Content-Range", range_of(i * kChunk, kChunk)}});
    ASSERT_EQ(r.status, 202) << r.body;
  }
  // The fifth chunk is half sent when the server dies.
  int fd = send_raw("PATCH " + loc + " HTTP/1.1\r\nHost: x\r\nContent-Range: " +
                    range_of(4 * kChunk, kChunk) + "\r\nContent-Length: " + std::to_string(kChunk) +
                    "\r\n\r\n" + chunks[4].substr(0, kChunk / 2));
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(wait_until([&] {
    auto r = http_request(relay->port(), "GET", loc);
    return r.status == 204 && r.headers["range"] != range_of(0, 4 * kChunk);
  }, 30s)) << "the fifth chunk never started";
  relay->kill9();
  ::close(fd);

  ASSERT_TRUE(relay->restart()) << relay->log();
  auto status = http_request(relay->port(), "GET", loc);
  ASSERT_EQ(status.status, 204) << status.body << relay->log();
  const std::string range = status.headers["range"];
  ASSERT_EQ(range.substr(0, 2), "0-");
  const std::uint64_t kept = std::stoull(range.substr(2)) + 1;
  EXPECT_GE(kept, 4 * kChunk);  // every acknowledged chunk
  EXPECT_LE(kept, 4 * kChunk + kChunk / 2);
  // The client continues from the kept offset.
  const std::uint64_t in_fifth = kept - 4 * kChunk;
  auto rest = send("PATCH", loc, chunks[4].substr(in_fifth), {{"Content-Range", range_of(kept, kChunk - in_fifth)}});
  ASSERT_EQ(rest.status, 202) << rest.body;
  for (std::size_t i = 5; i < kChunks - 1; ++i) {
    auto r = send("PATCH", loc, chunks[i], {{"Content-Range", range_of(i * kChunk, kChunk)}});
    ASSERT_EQ(r.status, 202) << r.body;
  }
  auto put = send("PUT", loc + "?digest=" + digest, chunks.back(),
                  {{"Content-Range", range_of((kChunks - 1) * kChunk, kChunk)}});
  ASSERT_EQ(put.status, 201) << put.body << relay->log();
  auto head = http_request(relay->port(), "HEAD", "/v2/apps/big/blobs/" + digest);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["content-length"], std::to_string(kChunks * kChunk));
  EXPECT_EQ(upload_files(), 0u);
  relay->stop();
  auto fsck = relay->run({"fsck"});  // rehashes the blob
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

// Every push is an event in the transaction that makes it visible: kill -9 right after
// the answers, and the outbox holds each.
TEST_F(PushTest, PushEventsSurviveKill9) {
  ASSERT_TRUE(start_local_relay());
  auto m = put_image("apps/ev", "1.0", "layer bytes");
  const std::string mdigest = sha256_digest(m.dump());
  relay->kill9();
  store::StoreOptions opt;
  opt.root = relay->store_dir();
  opt.read_only = true;
  auto s = store::Store::open(opt);
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  auto events = (*s)->events(0, 100);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 3u);  // config, layer, manifest
  EXPECT_EQ((*events)[0].kind, store::EventKind::blob_pushed);
  EXPECT_EQ((*events)[2].kind, store::EventKind::manifest_pushed);
  EXPECT_EQ((*events)[2].repository, "apps/ev");
  EXPECT_EQ((*events)[2].tag, "1.0");
  EXPECT_EQ((*events)[2].digest.str(), mdigest);
}

TEST_F(PushTest, AbandonedSessionsExpireAndFreeTheirFiles) {
  ASSERT_TRUE(start_local_relay("  upload_expiry: 5s\n  max_upload_sessions: 2000\n"));
  std::vector<std::string> sessions;
  for (int i = 0; i < 1000; ++i) {
    auto r = send("POST", "/v2/apps/x/blobs/uploads/", "");
    ASSERT_EQ(r.status, 202) << r.body;
    // Each holds a file until it expires (not before 5 s idle).
    ASSERT_TRUE(fs::exists(relay->store_dir() / "uploads" / r.headers["docker-upload-uuid"]));
    sessions.push_back(r.headers["location"]);
  }
  ASSERT_EQ(send("PATCH", sessions.back(), "some bytes").status, 202);  // one holds bytes
  ASSERT_TRUE(wait_until([&] { return upload_files() == 0; }, 30s)) << upload_files() << " left";
  EXPECT_EQ(http_request(relay->port(), "GET", sessions.back()).status, 404);
  EXPECT_EQ(send("PATCH", sessions.front(), "late").status, 404);
}

TEST_F(PushTest, DeletesNeedLocalDeleteAndThenRemoveTagsManifestsAndBlobs) {
  ASSERT_TRUE(start_local_relay());
  auto m = put_image("apps/d", "1.0", "to delete");
  const std::string mdigest = sha256_digest(m.dump());
  auto refused = send("DELETE", "/v2/apps/d/manifests/" + mdigest, "");
  EXPECT_EQ(refused.status, 405);
  EXPECT_NE(refused.body.find("local.delete"), std::string::npos) << refused.body;
  EXPECT_EQ(http_request(relay->port(), "GET", "/v2/apps/d/manifests/1.0",
                         {{"Accept", kOciManifest}}).status, 200);
  // Mirrored repositories are never deleted from.
  EXPECT_EQ(send("DELETE", "/v2/team/app/manifests/latest", "").status, 405);

  relay->stop();
  relay = std::make_unique<OcirelayProcess>(tmp / "ocirelay", kUpstream, registry.url());
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n  delete: true\n");
  ASSERT_TRUE(relay->start());
  put_image("apps/d", "2.0", "kept");
  EXPECT_EQ(send("DELETE", "/v2/apps/d/manifests/2.0", "").status, 202);  // a tag
  EXPECT_EQ(http_request(relay->port(), "GET", "/v2/apps/d/manifests/2.0", {{"Accept", kOciManifest}}).status, 404);
  EXPECT_EQ(send("DELETE", "/v2/apps/d/manifests/" + mdigest, "").status, 202);  // a manifest and its tags
  EXPECT_EQ(http_request(relay->port(), "GET", "/v2/apps/d/manifests/1.0", {{"Accept", kOciManifest}}).status, 404);
  EXPECT_EQ(http_request(relay->port(), "GET", "/v2/apps/d/manifests/" + mdigest, {{"Accept", kOciManifest}}).status, 404);
  EXPECT_EQ(send("DELETE", "/v2/apps/d/manifests/" + mdigest, "").status, 404);
  const std::string layer = m["layers"][0]["digest"];
  EXPECT_EQ(http_request(relay->port(), "HEAD", "/v2/apps/d/blobs/" + layer).status, 404);  // only it needed it
  const std::string blob = put_blob("apps/d", "a loose blob");
  EXPECT_EQ(send("DELETE", "/v2/apps/d/blobs/" + blob, "").status, 202);
  EXPECT_EQ(http_request(relay->port(), "HEAD", "/v2/apps/d/blobs/" + blob).status, 404);
  auto tags = http_request(relay->port(), "GET", "/v2/apps/d/tags/list");
  EXPECT_EQ(tags.status, 404) << tags.body;  // no tags left: NAME_UNKNOWN, as for any tagless name
  EXPECT_NE(tags.body.find("NAME_UNKNOWN"), std::string::npos) << tags.body;
  // gc reclaims what nothing references any more.
  relay->stop();
  auto gc = relay->run({"gc"});
  EXPECT_EQ(gc.exit_code, 0) << gc.err;
  EXPECT_FALSE(fs::exists(relay->store_dir() / "blobs/sha256" / layer.substr(7)));
  EXPECT_FALSE(fs::exists(relay->store_dir() / "blobs/sha256" / mdigest.substr(7)));
}

TEST_F(PushTest, CatalogAndTagsArePaged) {
  ASSERT_TRUE(start_local_relay());
  for (std::string r : {"apps/c", "apps/a", "apps/b/x"}) put_image(r, "v1", "layer of " + r);
  for (std::string t : {"v2", "v3"}) put_image("apps/a", t, "layer " + t);
  auto all = http_request(relay->port(), "GET", "/v2/_catalog");
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(nlohmann::json::parse(all.body)["repositories"],
            nlohmann::json::array({"apps/a", "apps/b/x", "apps/c"}));
  auto page = http_request(relay->port(), "GET", "/v2/_catalog?n=2");
  EXPECT_EQ(nlohmann::json::parse(page.body)["repositories"], nlohmann::json::array({"apps/a", "apps/b/x"}));
  EXPECT_EQ(page.headers["link"], "</v2/_catalog?last=apps/b/x&n=2>; rel=\"next\"");
  auto next = http_request(relay->port(), "GET", "/v2/_catalog?n=2&last=apps/b/x");
  EXPECT_EQ(nlohmann::json::parse(next.body)["repositories"], nlohmann::json::array({"apps/c"}));
  EXPECT_TRUE(next.headers["link"].empty());
  EXPECT_EQ(http_request(relay->port(), "GET", "/v2/_catalog?n=x").status, 400);

  auto tags = http_request(relay->port(), "GET", "/v2/apps/a/tags/list?n=2");
  ASSERT_EQ(tags.status, 200);
  EXPECT_EQ(nlohmann::json::parse(tags.body)["tags"], nlohmann::json::array({"v1", "v2"}));
  EXPECT_NE(tags.headers["link"].find("last=v2"), std::string::npos) << tags.headers["link"];
  auto rest = http_request(relay->port(), "GET", "/v2/apps/a/tags/list?n=2&last=v2");
  EXPECT_EQ(nlohmann::json::parse(rest.body)["tags"], nlohmann::json::array({"v3"}));
}

TEST_F(PushTest, AMountIsServedOnlyFromARepositoryThatHoldsTheBlob) {
  ASSERT_TRUE(start_local_relay());
  const std::string blob = put_blob("apps/src", "shared layer bytes");
  auto mounted = send("POST", "/v2/apps/dst/blobs/uploads/?mount=" + blob + "&from=apps/src", "");
  ASSERT_EQ(mounted.status, 201) << mounted.body << relay->log();
  EXPECT_EQ(mounted.headers["docker-content-digest"], blob);
  EXPECT_EQ(http_request(relay->port(), "GET", "/v2/apps/dst/blobs/" + blob).body, "shared layer bytes");
  // `from` without the blob, or no `from`: a normal session, and nothing revealed.
  auto other = send("POST", "/v2/apps/dst2/blobs/uploads/?mount=" + blob + "&from=apps/empty", "");
  EXPECT_EQ(other.status, 202);
  EXPECT_FALSE(other.headers["location"].empty());
  EXPECT_EQ(send("POST", "/v2/apps/dst3/blobs/uploads/?mount=" + blob, "").status, 202);
  EXPECT_EQ(http_request(relay->port(), "HEAD", "/v2/apps/dst2/blobs/" + blob).status, 404);
  EXPECT_EQ(http_request(relay->port(), "HEAD", "/v2/apps/dst3/blobs/" + blob).status, 404);
}

TEST_F(PushTest, AReferrerPushedByDigestIsListedAtOnceWithItsArtifactType) {
  ASSERT_TRUE(start_local_relay());
  auto subject = put_image("apps/r", "1.0", "subject layer");
  const std::string sdigest = sha256_digest(subject.dump());
  // A cosign-style signature: pushed by digest, naming its subject.
  nlohmann::json sig = put_image("apps/r", "placeholder", "signature payload", sdigest,
                                 "application/vnd.dev.cosign.artifact.sig.v1+json");
  const std::string sig_digest = sha256_digest(sig.dump());
  auto by_digest = send("PUT", "/v2/apps/r/manifests/" + sig_digest, sig.dump(), {{"Content-Type", kOciManifest}});
  ASSERT_EQ(by_digest.status, 201);
  EXPECT_EQ(by_digest.headers["oci-subject"], sdigest);
  auto list = http_request(relay->port(), "GET", "/v2/apps/r/referrers/" + sdigest);
  ASSERT_EQ(list.status, 200) << list.body;
  auto j = nlohmann::json::parse(list.body);
  ASSERT_EQ(j["manifests"].size(), 1u) << list.body;
  EXPECT_EQ(j["manifests"][0]["digest"], sig_digest);
  EXPECT_EQ(j["manifests"][0]["artifactType"], "application/vnd.dev.cosign.artifact.sig.v1+json");
  auto filtered = http_request(relay->port(), "GET", "/v2/apps/r/referrers/" + sdigest + "?artifactType=text/plain");
  EXPECT_EQ(nlohmann::json::parse(filtered.body)["manifests"].size(), 0u);
  EXPECT_EQ(filtered.headers["oci-filters-applied"], "artifactType");
  // A subject need not exist (yet): the referrer goes in and is listed under it.
  const std::string absent = sha256_digest("a manifest pushed later, or never");
  nlohmann::json early = put_image("apps/r", "early", "early signature", absent);
  auto early_list = http_request(relay->port(), "GET", "/v2/apps/r/referrers/" + absent);
  ASSERT_EQ(early_list.status, 200) << early_list.body;
  auto ej = nlohmann::json::parse(early_list.body);
  ASSERT_EQ(ej["manifests"].size(), 1u) << early_list.body;
  EXPECT_EQ(ej["manifests"][0]["digest"], sha256_digest(early.dump()));
}

}  // namespace
}  // namespace ocirelay::testing
