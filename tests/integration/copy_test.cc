// `ocirelay copy`: ocirelay's own client sends an image from the store to a real
// docker-registry (with htpasswd) and to another ocirelay; skopeo confirms what arrived; a
// second repository on the same destination is served by mounts, with no blob bytes sent.
#include "tests/integration/fixture.h"

#include <fstream>

#include <nlohmann/json.hpp>

namespace ocirelay::testing {
namespace {

constexpr const char* kUser = "relay";
constexpr const char* kPassword = "C0py-S3cret";

class CopyTest : public MirrorTest {
 protected:
  // A multi-arch index (two platforms sharing a layer) pushed into a local repository of
  // a relay, with a cosign-style referrer of the index.
  void SetUp() override {
    MirrorTest::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    const std::string shared = random_bytes(300000, 81);
    auto amd = images.add_image("", {shared, random_bytes(40000, 82)}, {"linux", "amd64"});
    auto arm = images.add_image("", {shared, random_bytes(40000, 83)}, {"linux", "arm64"});
    index = images.add_index("3.0", {{amd, {"linux", "amd64"}}, {arm, {"linux", "arm64"}}});
    relay = std::make_unique<OcirelayProcess>(tmp / "ocirelay", kUpstream, registry.url());
    relay->add_config("local:\n  repositories: [\"apps/**\"]\n");
    ASSERT_TRUE(relay->start());
    ASSERT_TRUE(images.push(relay->host(), "apps/multi", "3.0")) << relay->log();
    referrer_digest = push_signature(relay->port(), "apps/multi", index);
    ASSERT_FALSE(referrer_digest.empty());
  }

  CommandResult copy(const std::string& dest, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"copy", "apps/multi:3.0", dest};
    args.insert(args.end(), extra.begin(), extra.end());
    return relay->run(args);
  }

  BuiltImage index;
  std::string referrer_digest;
};

TEST_F(CopyTest, CopiesAMultiArchImageWithItsReferrerToARegistryAndMountsForASecondRepository) {
  RegistryProcess dest(tmp / "dest", RegistryOptions{kUser, kPassword});
  ASSERT_TRUE(dest.start());
  const std::string creds = std::string(kUser) + ":" + kPassword;
  auto r = copy(dest.url() + "/team/multi:3.0", {"--dest-creds", creds});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.err.find(kPassword), std::string::npos) << "the password was printed";

  auto inspect = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", creds,
                              "docker://" + dest.host() + "/team/multi:3.0"});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_EQ(sha256_digest(inspect.out), index.digest);
  auto all = skopeo_copy("docker://" + dest.host() + "/team/multi:3.0", "dir:" + (tmp / "back").string(),
                         {"--all", "--src-creds", creds});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  // distribution 2.8 has no referrers API: the referrer is under the sha256-<hex> tag.
  auto fallback = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", creds,
                               "docker://" + dest.host() + "/team/multi:sha256-" + index.digest.substr(7)});
  ASSERT_EQ(fallback.exit_code, 0) << fallback.err;
  EXPECT_NE(fallback.out.find(referrer_digest), std::string::npos) << fallback.out;

  // A second repository: every blob mounted from the first, none sent again.
  const int blob_bodies = dest.count_requests("PATCH /v2/team/other/blobs/") +
                          dest.count_requests("PUT /v2/team/other/blobs/");
  ASSERT_EQ(blob_bodies, 0);
  auto again = copy(dest.url() + "/team/other:3.0", {"--dest-creds", creds, "--mount-from", "team/multi"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.err.find("0 uploaded (0 bytes)"), std::string::npos) << again.err;
  EXPECT_EQ(dest.count_requests("PATCH /v2/team/other/blobs/") + dest.count_requests("PUT /v2/team/other/blobs/"),
            0)
      << dest.access_log();
  EXPECT_GT(dest.count_requests("mount="), 0);
  auto other = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", creds,
                            "docker://" + dest.host() + "/team/other:3.0"});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  EXPECT_EQ(sha256_digest(other.out), index.digest);

  // A re-run sends nothing: every blob is already there.
  auto noop = copy(dest.url() + "/team/multi:3.0", {"--dest-creds", creds});
  ASSERT_EQ(noop.exit_code, 0) << noop.err;
  EXPECT_NE(noop.err.find("0 uploaded (0 bytes)"), std::string::npos) << noop.err;
}

TEST_F(CopyTest, CopiesToAnotherOcirelayAndItsReferrersApiListsTheReferrer) {
  OcirelayProcess other(tmp / "other", kUpstream, registry.url());
  other.add_config("local:\n  repositories: [\"mirror/**\"]\n");
  ASSERT_TRUE(other.start());
  auto r = copy("http://" + other.host() + "/mirror/multi");  // no tag: the source's
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << other.log();
  auto head = http_request(other.port(), "HEAD", "/v2/mirror/multi/manifests/3.0", {{"Accept", index.media_type}});
  ASSERT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["docker-content-digest"], index.digest);
  auto refs = http_request(other.port(), "GET", "/v2/mirror/multi/referrers/" + index.digest);
  ASSERT_EQ(refs.status, 200);
  auto j = nlohmann::json::parse(refs.body);
  ASSERT_EQ(j["manifests"].size(), 1u) << refs.body;
  EXPECT_EQ(j["manifests"][0]["digest"], referrer_digest);
  auto back = pull(other.host(), "mirror/multi", "3.0", tmp / "back", /*all=*/true);
  ASSERT_EQ(back.exit_code, 0) << back.err;
}

// --create-repository runs the prepare step first: wrong credentials fail there, before
// any blob is sent.
TEST_F(CopyTest, ThePrepareStepRefusesWrongCredentialsBeforeAnyBlobIsSent) {
  RegistryProcess dest(tmp / "dest", RegistryOptions{kUser, kPassword});
  ASSERT_TRUE(dest.start());
  auto wrong = copy(dest.url() + "/team/multi:3.0", {"--dest-creds", std::string(kUser) + ":wrong", "--create-repository"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("FAILED"), std::string::npos) << wrong.err;
  EXPECT_EQ(wrong.err.find("copy: blob"), std::string::npos) << wrong.err;
  EXPECT_EQ(dest.count_requests("/blobs/"), 0) << dest.access_log();
  auto ok = copy(dest.url() + "/team/multi:3.0", {"--dest-creds", std::string(kUser) + ":" + kPassword, "--create-repository"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

// The index's children in `bytes` (an image index), by digest.
std::vector<std::string> children(const std::string& bytes) {
  std::vector<std::string> out;
  auto j = nlohmann::json::parse(bytes, nullptr, false);
  if (j.is_object() && j.contains("manifests"))
    for (const auto& m : j["manifests"]) out.push_back(m.value("digest", ""));
  return out;
}

TEST_F(CopyTest, FromARemoteRegistryEachBlobIsReadOnceForEveryDestinationAndAPlatformNarrowsTheIndex) {
  ASSERT_TRUE(images.push(registry.host(), "team/multi", "3.0"));
  RegistryProcess a(tmp / "a"), b(tmp / "b");
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  const fs::path tmpdir = tmp / "tmpdir";
  fs::create_directories(tmpdir);
  const int blob_gets = registry.count_requests("GET /v2/team/multi/blobs/");
  auto r = run_command({OCIRELAY_BINARY, "copy", "http://" + registry.host() + "/team/multi:3.0",
                        "http://" + a.host() + "/team/multi", "http://" + b.host() + "/copy/multi:renamed",
                        "--config", relay->config_file().string()},
                       120s, {{"TMPDIR", tmpdir.string()}});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto at_a = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + a.host() + "/team/multi:3.0"});
  auto at_b = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + b.host() + "/copy/multi:renamed"});
  EXPECT_EQ(sha256_digest(at_a.out), index.digest) << at_a.err;
  EXPECT_EQ(sha256_digest(at_b.out), index.digest) << at_b.err;
  // Read once: two configs, two layers and the shared one, whatever the destinations.
  EXPECT_EQ(registry.count_requests("GET /v2/team/multi/blobs/") - blob_gets, 5) << registry.access_log();
  EXPECT_TRUE(fs::is_empty(tmpdir)) << "the temporary store was left behind";
  // Without a terminal: plain lines, no bar drawing.
  EXPECT_EQ(r.err.find("\033["), std::string::npos) << r.err;

  // One platform: the index at the destination lists just it, under a new digest.
  auto one = run_command({OCIRELAY_BINARY, "copy", "http://" + registry.host() + "/team/multi:3.0",
                          "http://" + a.host() + "/arm/multi", "--platform", "linux/arm64", "--config",
                          relay->config_file().string()});
  ASSERT_EQ(one.exit_code, 0) << one.out << one.err;
  EXPECT_NE(one.err.find("index rewritten from " + index.digest), std::string::npos) << one.err;
  auto arm = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + a.host() + "/arm/multi:3.0"});
  ASSERT_EQ(arm.exit_code, 0) << arm.err;
  EXPECT_EQ(children(arm.out), std::vector<std::string>{index.children[1]}) << arm.out;
  EXPECT_NE(sha256_digest(arm.out), index.digest);
  EXPECT_NE(one.err.find(sha256_digest(arm.out)), std::string::npos) << one.err;

  EXPECT_EQ(relay->run({"copy", "http://" + registry.host() + "/team/multi:3.0", "http://" + a.host() + "/x",
                        "--platform", "linux"}).exit_code, 2);
  auto missing = relay->run({"copy", "http://" + registry.host() + "/team/multi:9.9", "http://" + a.host() + "/x"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("FAILED"), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("team/multi:9.9"), std::string::npos) << missing.err;
}

TEST_F(CopyTest, ConfiguredRegistriesAreNamedAsSourceAndDestinationAndATerminalGetsProgressBars) {
  ASSERT_TRUE(images.push(registry.host(), "team/multi", "3.0"));
  RegistryProcess dest(tmp / "dest", RegistryOptions{kUser, kPassword});
  ASSERT_TRUE(dest.start());
  const fs::path pw = tmp / "dest.pw";
  std::ofstream(pw) << kPassword << "\n";
  relay->stop();
  relay->add_config("registries:\n"
                    "  - {name: src.corp, url: " + registry.url() + "}\n"
                    "  - name: dest.corp\n    url: " + dest.url() + "\n"
                    "    auth: {username: " + kUser + ", password_file: " + pw.string() + "}\n");
  ASSERT_TRUE(relay->start());
  // On a terminal (script(1) gives the command a pty): one bar for the fetch and one per
  // destination, redrawn in place, ending at 100% done.
  const std::string cmd = std::string(OCIRELAY_BINARY) + " copy src.corp/team/multi:3.0 dest.corp/team/multi --config " +
                          relay->config_file().string();
  auto r = run_command({"script", "-qefc", cmd, "/dev/null"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("\033[2K"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("fetch src.corp/team/multi ["), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dest.corp/team/multi [========================] 100%"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("done"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(kPassword), std::string::npos) << "the password was printed";
  const std::string creds = std::string(kUser) + ":" + kPassword;
  auto there = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", creds,
                            "docker://" + dest.host() + "/team/multi:3.0"});
  EXPECT_EQ(sha256_digest(there.out), index.digest) << there.err;
  // A configured destination brings its own credentials: flags for them are refused.
  EXPECT_EQ(relay->run({"copy", "src.corp/team/multi:3.0", "dest.corp/x", "--dest-creds", "u:p"}).exit_code, 2);
}

TEST_F(CopyTest, BadArgumentsAndMissingImagesAreClearErrors) {
  EXPECT_EQ(relay->run({"copy", "no-tag-here", "http://127.0.0.1:1/x"}).exit_code, 2);
  EXPECT_EQ(relay->run({"copy", "apps/multi:3.0", "not a destination"}).exit_code, 2);
  auto missing = relay->run({"copy", "apps/multi:9.9", "http://127.0.0.1:1/x"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("apps/multi:9.9 is not in the store"), std::string::npos) << missing.err;
}

TEST_F(CopyTest, AnOciLayoutGoesToSeveralRegistriesAtOnceEveryTagWithAllTags) {
  // The test's own OCI layout (what skopeo pushed from) holds 3.0 (the index) and 4.0.
  auto four = images.add_image("4.0", {random_bytes(60000, 84)});
  RegistryProcess a(tmp / "a"), b(tmp / "b");
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  const std::string layout = "oci:" + (tmp / "layout").string();
  auto one = relay->run({"copy", layout + ":4.0", "http://" + a.host() + "/team/app", "http://" + b.host() + "/team/app:renamed"});
  ASSERT_EQ(one.exit_code, 0) << one.out << one.err;
  auto head = [](const RegistryProcess& r, const std::string& path) {
    auto h = http_request(r.port(), "HEAD", "/v2/" + path,
                          {{"Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"}});
    return h.status == 200 ? h.headers["docker-content-digest"] : "HTTP " + std::to_string(h.status);
  };
  EXPECT_EQ(head(a, "team/app/manifests/4.0"), four.digest);
  EXPECT_EQ(head(b, "team/app/manifests/renamed"), four.digest);

  auto all = relay->run({"copy", layout, "--all-tags", "http://" + a.host() + "/every/app", "http://" + b.host() + "/every/app"});
  ASSERT_EQ(all.exit_code, 0) << all.out << all.err;
  for (const auto* r : {&a, &b}) {
    EXPECT_EQ(head(*r, "every/app/manifests/3.0"), index.digest);
    EXPECT_EQ(head(*r, "every/app/manifests/4.0"), four.digest);
    EXPECT_EQ(head(*r, "every/app/manifests/" + index.children.front()), index.children.front());
  }

  // What is wrong is said: a tag not in the layout, a directory that is no layout, a tag
  // with --all-tags.
  auto missing = relay->run({"copy", layout + ":9.9", "http://" + a.host() + "/x"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no image tagged 9.9 in the layout"), std::string::npos) << missing.err;
  auto not_layout = relay->run({"copy", "oci:" + tmp.path().string() + ":1.0", "http://" + a.host() + "/x"});
  EXPECT_EQ(not_layout.exit_code, 1);
  EXPECT_NE(not_layout.err.find("is not an OCI image layout"), std::string::npos) << not_layout.err;
  EXPECT_EQ(relay->run({"copy", layout + ":4.0", "--all-tags", "http://" + a.host() + "/x"}).exit_code, 2);
}

}  // namespace
}  // namespace ocirelay::testing
