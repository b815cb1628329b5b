// A careless or hostile upstream must never take the daemon down: every reply in the table
// below (wrong JSON types, missing fields, 0xFF bytes in each header ocirelay keeps) is
// answered with a response, the process keeps running, and a clean stop still stores what
// was fetched. The upstream is a loopback fake: a real registry cannot be made to send these.
#include <gtest/gtest.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "tests/integration/harness.h"
#include "tests/support/fake_http_server.h"

namespace ocirelay::testing {
namespace {

constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
const std::string kBad = "\xFF\xFE";  // not UTF-8, not visible ASCII

std::string digest_of(const std::string& bytes) { return sha256_digest(bytes); }

std::string image_manifest(const std::string& config_digest, const std::string& layer_digest) {
  return nlohmann::json{{"schemaVersion", 2},
                        {"mediaType", kOciManifest},
                        {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                                    {"digest", config_digest},
                                    {"size", 2}}},
                        {"layers", {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                                     {"digest", layer_digest},
                                     {"size", 5}}}}}
      .dump();
}

// One hostile reply: what the fake upstream sends for GET/HEAD /v2/hostile/<name>/manifests/*
// and which statuses the mirror may answer the client with.
struct HostileCase {
  std::string name;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::set<int> acceptable;  // statuses the client may get
};

class HostileUpstreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = "{}";
    layer_ = "hello";
    good_ = image_manifest(digest_of(config_), digest_of(layer_));
    const std::string d = digest_of(good_);
    auto ct = [](std::string_view t) { return std::pair<std::string, std::string>("Content-Type", std::string(t)); };
    const std::set<int> ok_or_bad_gateway = {200, 502};
    cases_ = {
        // The crash of the issue: the ETag lands in the tag row, dumped as JSON.
        {"etag-ff", good_, {ct(kOciManifest), {"ETag", "\"" + kBad + "\""}}, {200}},
        {"content-type-ff", good_, {{"Content-Type", std::string(kOciManifest) + kBad}}, {200}},
        {"digest-header-ff", good_, {ct(kOciManifest), {"Docker-Content-Digest", d + kBad}}, {200}},
        {"ratelimit-ff", good_,
         {ct(kOciManifest), {"RateLimit-Remaining", kBad}, {"RateLimit-Limit", kBad + ";w=1"}}, {200}},
        {"link-ff", good_, {ct(kOciManifest), {"Link", "<" + kBad + ">; rel=\"next\""}}, {200}},
        // The other crash of the issue: platform.os a number in an index.
        {"platform-os-number",
         nlohmann::json{{"schemaVersion", 2},
                        {"mediaType", kOciIndex},
                        {"manifests", {{{"mediaType", kOciManifest},
                                        {"digest", d},
                                        {"size", good_.size()},
                                        {"platform", {{"os", 7}, {"architecture", {1, 2}}}}}}}}
             .dump(),
         {ct(kOciIndex)}, ok_or_bad_gateway},
        {"size-string",
         nlohmann::json{{"schemaVersion", 2}, {"mediaType", kOciManifest},
                        {"config", {{"digest", digest_of(config_)}, {"size", "2"}}},
                        {"layers", nlohmann::json::array()}}.dump(),
         {ct(kOciManifest)}, ok_or_bad_gateway},
        {"media-type-number", R"({"schemaVersion":2,"mediaType":7,"config":{"digest":")" +
                                  digest_of(config_) + R"(","size":2},"layers":[]})",
         {ct(kOciManifest)}, ok_or_bad_gateway},
        {"layers-string", R"({"schemaVersion":2,"config":{"digest":")" + digest_of(config_) +
                              R"(","size":2},"layers":"x"})",
         {ct(kOciManifest)}, ok_or_bad_gateway},
        {"config-number", R"({"schemaVersion":2,"config":5,"layers":[]})", {ct(kOciManifest)},
         ok_or_bad_gateway},
        {"digest-number", R"({"schemaVersion":2,"config":{"digest":5,"size":2},"layers":[]})",
         {ct(kOciManifest)}, ok_or_bad_gateway},
        {"manifests-object", R"({"schemaVersion":2,"mediaType":")" + std::string(kOciIndex) +
                                 R"(","manifests":{"a":1}})",
         {ct(kOciIndex)}, ok_or_bad_gateway},
        {"subject-array", R"({"schemaVersion":2,"config":{"digest":")" + digest_of(config_) +
                              R"(","size":2},"layers":[],"subject":[1]})",
         {ct(kOciManifest)}, ok_or_bad_gateway},
        {"annotations-array", R"({"schemaVersion":2,"config":{"digest":")" + digest_of(config_) +
                                  R"(","size":2},"layers":[],"annotations":[1,2]})",
         {ct(kOciManifest)}, ok_or_bad_gateway},
        {"artifact-type-object", R"({"schemaVersion":2,"artifactType":{},"config":{"digest":")" +
                                     digest_of(config_) + R"(","size":2},"layers":[]})",
         {ct(kOciManifest)}, ok_or_bad_gateway},
        {"string-with-ff", R"({"schemaVersion":2,"annotations":{"a":")" + kBad +
                               R"("},"config":{"digest":")" + digest_of(config_) +
                               R"(","size":2},"layers":[]})",
         {ct(kOciManifest)}, ok_or_bad_gateway},
        {"top-level-array", "[1,2,3]", {ct(kOciManifest)}, ok_or_bad_gateway},
        {"not-json", "{\"schemaVersion\":", {ct(kOciManifest)}, ok_or_bad_gateway},
        {"empty-body", "", {ct(kOciManifest)}, ok_or_bad_gateway},
        {"deep-nesting", std::string(100000, '[') + std::string(100000, ']'), {ct(kOciManifest)},
         ok_or_bad_gateway},
    };
    upstream_ = std::make_unique<FakeHttpServer>([this](const HttpCall& call) { return answer(call); });
    relay_ = std::make_unique<OcirelayProcess>(tmp_ / "ocirelay", "hostile.test", upstream_->url());
    ASSERT_TRUE(relay_->start()) << relay_->log();
  }

  HttpReply answer(const HttpCall& call) {
    std::lock_guard lock(mu_);
    if (down_) return HttpReply{503, {}, "down"};
    if (call.path == "/v2/") return HttpReply{200, {}, "{}"};
    for (const auto& c : cases_) {
      std::string prefix = "/v2/hostile/" + c.name + "/";
      if (!call.path.starts_with(prefix)) continue;
      if (call.path.find("/manifests/") != std::string::npos) return HttpReply{200, c.headers, c.body};
      if (call.path.ends_with("/tags/list"))
        return HttpReply{200, {{"Content-Type", "application/json"}, {"Link", "<" + kBad + ">"}}, c.body};
      if (call.path.find("/referrers/") != std::string::npos)
        return HttpReply{200, {{"Content-Type", std::string(kOciIndex)}}, c.body};
    }
    return HttpReply{404, {{"Content-Type", "application/json"}},
                     R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"x"}]})"};
  }

  void expect_alive(const std::string& after) {
    ASSERT_TRUE(relay_->process().running()) << "ocirelay died after " << after << ":\n" << relay_->log();
    auto base = http_request(relay_->port(), "GET", "/v2/");
    ASSERT_EQ(base.status, 200) << "after " << after;
  }

  TempDir tmp_;  // first: removed after everything below
  std::mutex mu_;
  bool down_ = false;  // guarded by mu_
  std::string config_, layer_, good_;
  std::vector<HostileCase> cases_;
  std::unique_ptr<FakeHttpServer> upstream_;
  std::unique_ptr<OcirelayProcess> relay_;
};

TEST_F(HostileUpstreamTest, EveryHostileManifestReplyIsAnsweredAndTheDaemonSurvives) {
  for (const auto& c : cases_) {
    for (const char* method : {"GET", "HEAD"}) {
      auto r = http_request(relay_->port(), method, "/v2/hostile/" + c.name + "/manifests/latest",
                            {{"Accept", std::string(kOciManifest) + ", " + std::string(kOciIndex)}});
      EXPECT_TRUE(c.acceptable.contains(r.status))
          << c.name << " " << method << ": status " << r.status << " body " << r.body;
      if (r.status >= 400 && method == std::string("GET")) {
        auto body = nlohmann::json::parse(r.body, nullptr, false);
        EXPECT_TRUE(body.is_object() && body.contains("errors")) << c.name << ": " << r.body;
      }
      expect_alive(c.name + " " + method);
    }
    // The same bytes as tag listings and referrer indexes.
    auto tags = http_request(relay_->port(), "GET", "/v2/hostile/" + c.name + "/tags/list");
    EXPECT_NE(tags.status, 0) << c.name << ": tags list got no answer";
    auto refs = http_request(relay_->port(), "GET",
                             "/v2/hostile/" + c.name + "/referrers/" + digest_of(good_) +
                                 "?artifactType=application%2Fx");
    EXPECT_NE(refs.status, 0) << c.name << ": referrers got no answer";
    expect_alive(c.name + " listings");
  }

  // A clean stop stores every manifest still queued: the writer thread must survive them all.
  relay_->stop();
  EXPECT_EQ(relay_->process().describe(), "exited with code 0") << relay_->log();
  EXPECT_NE(relay_->log().find("stopped"), std::string::npos) << relay_->log();

  // The manifest whose ETag held 0xFF was stored: after a restart, with the upstream down,
  // it serves from the store.
  {
    std::lock_guard lock(mu_);
    down_ = true;
  }
  ASSERT_TRUE(relay_->restart()) << relay_->log();
  auto stored = http_request(relay_->port(), "GET", "/v2/hostile/etag-ff/manifests/latest",
                             {{"Accept", std::string(kOciManifest)}});
  EXPECT_EQ(stored.status, 200) << stored.body;
  EXPECT_EQ(stored.body, good_);
}

TEST_F(HostileUpstreamTest, NonUtf8NamespaceGetsAJsonError) {
  for (const std::string& target : std::vector<std::string>{"/v2/a/manifests/latest?ns=%FF%FE", "/v2/a/manifests/latest?ns=\xFF",
                             "/v2/a/blobs/sha256:" + std::string(64, 'a') + "?ns=%C3%28",
                             "/v2/a/tags/list?ns=%ED%A0%80"}) {
    auto r = http_request(relay_->port(), "GET", target);
    EXPECT_GE(r.status, 400) << target;
    EXPECT_LT(r.status, 500) << target;
    auto body = nlohmann::json::parse(r.body, nullptr, false);
    EXPECT_TRUE(body.is_object() && body.contains("errors")) << target << ": " << r.body;
    expect_alive(target);
  }
}

}  // namespace
}  // namespace ocirelay::testing
