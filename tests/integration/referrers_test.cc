// Referrers: a cosign-style signature pushed to a docker-registry 2.8 upstream, which has no
// referrers API, is found through ocirelay the way cosign looks for it (the sha256-<hex>.sig
// tag) and then listed by the mirror's own /referrers/ answer, also with the upstream gone.
#include <nlohmann/json.hpp>

#include "tests/integration/fixture.h"

namespace ocirelay::testing {
namespace {

using json = nlohmann::json;

constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr const char* kCosignSig = "application/vnd.dev.cosign.artifact.sig.v1+json";
constexpr const char* kManifestAccept =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";

struct Referrer {
  std::string digest;
  std::string sig_tag;  // sha256-<hex of subject>.sig
};

class ReferrersTest : public MirrorTest {
 protected:
  // Monolithic upload: POST /blobs/uploads/, then PUT <Location>&digest=<d> with the bytes.
  std::string push_blob(const std::string& repo, const std::string& bytes) {
    std::string digest = sha256_digest(bytes);
    auto start = http_request_with_body(registry.port(), "POST", "/v2/" + repo + "/blobs/uploads/", {}, "");
    EXPECT_EQ(start.status, 202) << start.body;
    std::string location = start.headers["location"];
    if (location.rfind(registry.url(), 0) == 0) location.erase(0, registry.url().size());
    EXPECT_FALSE(location.empty()) << "no Location from the upload start";
    location += (location.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") + digest;
    auto put = http_request_with_body(registry.port(), "PUT", location,
                                      {{"Content-Type", "application/octet-stream"}}, bytes);
    EXPECT_EQ(put.status, 201) << put.body;
    return digest;
  }

  // Pushes a cosign-style signature of `subject` (the manifest bytes at repo:<subject digest>)
  // under cosign's fallback tag, as cosign does on a registry without the referrers API.
  Referrer push_cosign_signature(const std::string& repo, const std::string& subject_digest) {
    auto subject = http_request(registry.port(), "GET", "/v2/" + repo + "/manifests/" + subject_digest,
                                {{"Accept", kManifestAccept}});
    EXPECT_EQ(subject.status, 200) << subject.body;
    EXPECT_EQ(sha256_digest(subject.body), subject_digest);

    std::string empty_config = "{}";
    std::string payload = R"({"critical":{"identity":{"docker-reference":"upstream.test/)" + repo +
                          R"("},"image":{"docker-manifest-digest":")" + subject_digest +
                          R"("},"type":"cosign container image signature"},"optional":null})";
    std::string config_digest = push_blob(repo, empty_config);
    std::string payload_digest = push_blob(repo, payload);
    json m = {
        {"schemaVersion", 2},
        {"mediaType", kOciManifest},
        {"artifactType", kCosignSig},
        {"config", {{"mediaType", "application/vnd.oci.empty.v1+json"}, {"digest", config_digest}, {"size", 2}}},
        {"layers",
         json::array({{{"mediaType", "application/vnd.dev.cosign.simplesigning.v1+json"},
                       {"digest", payload_digest},
                       {"size", payload.size()},
                       {"annotations", {{"dev.cosignproject.cosign/signature", "MEUCIQ-test"}}}}})},
        {"subject",
         {{"mediaType", subject.headers["content-type"]}, {"digest", subject_digest}, {"size", subject.body.size()}}},
    };
    std::string bytes = m.dump();
    Referrer ref{sha256_digest(bytes), "sha256-" + subject_digest.substr(7) + ".sig"};
    auto put = http_request_with_body(registry.port(), "PUT", "/v2/" + repo + "/manifests/" + ref.sig_tag,
                                      {{"Content-Type", kOciManifest}}, bytes);
    EXPECT_EQ(put.status, 201) << put.body << "\n" << registry.log();
    EXPECT_EQ(put.headers["docker-content-digest"], ref.digest);
    return ref;
  }

  // The referrers index ocirelay answers for `subject`, with the query (may be empty).
  HttpResponse referrers(const std::string& subject, const std::string& query = "") {
    return http_request(relay->port(), "GET", "/v2/team/app/referrers/" + subject + query,
                        {{"Accept", kOciIndex}});
  }

  // The descriptor of `digest` in an index's manifests[]; null when absent or not an index.
  static json find_manifest(const std::string& index_body, const std::string& digest) {
    auto index = json::parse(index_body, nullptr, false);
    if (index.is_discarded() || !index.is_object() || !index.contains("manifests") ||
        !index["manifests"].is_array()) {
      ADD_FAILURE() << "not an image index: " << index_body;
      return nullptr;
    }
    for (const auto& m : index["manifests"])
      if (m.is_object() && m.value("digest", "") == digest) return m;
    return nullptr;
  }
};

TEST_F(ReferrersTest, CosignSignatureFoundByTagIsListedAsReferrerAndServedFromCache) {
  auto img = push_image("team/app", "1.0", 1, 4096);
  Referrer sig = push_cosign_signature("team/app", img.digest);
  ASSERT_TRUE(start_relay());

  // What cosign does against a registry without the referrers API: the image, then the tag.
  auto image = http_request(relay->port(), "GET", "/v2/team/app/manifests/1.0", {{"Accept", kManifestAccept}});
  ASSERT_EQ(image.status, 200) << image.body << "\n" << relay->log();
  EXPECT_EQ(sha256_digest(image.body), img.digest);
  auto by_tag = http_request(relay->port(), "GET", "/v2/team/app/manifests/" + sig.sig_tag,
                             {{"Accept", kManifestAccept}});
  ASSERT_EQ(by_tag.status, 200) << by_tag.body << "\n" << relay->log();
  EXPECT_EQ(sha256_digest(by_tag.body), sig.digest) << "signature manifest bytes changed";
  EXPECT_EQ(by_tag.headers["docker-content-digest"], sig.digest);

  // docker-registry 2.8 answers 404 for /referrers/: the mirror lists what it has cached.
  auto all = referrers(img.digest);
  ASSERT_EQ(all.status, 200) << all.body << "\n" << relay->log();
  EXPECT_EQ(all.headers["content-type"], kOciIndex);
  EXPECT_EQ(all.headers.count("oci-filters-applied"), 0u) << "no filter was asked for";
  auto listed = find_manifest(all.body, sig.digest);
  ASSERT_TRUE(listed.is_object()) << "signature not listed:\n" << all.body << "\n" << relay->log();
  EXPECT_EQ(listed.value("artifactType", ""), kCosignSig);
  EXPECT_EQ(listed.value("mediaType", ""), kOciManifest);
  EXPECT_EQ(listed.value("size", std::size_t{0}), by_tag.body.size());
  auto all_index = json::parse(all.body);
  EXPECT_EQ(all_index.value("schemaVersion", 0), 2);
  EXPECT_EQ(all_index.value("mediaType", ""), kOciIndex);
  EXPECT_EQ(all_index["manifests"].size(), 1u) << all.body;

  auto sigs = referrers(img.digest, std::string("?artifactType=") + kCosignSig);
  ASSERT_EQ(sigs.status, 200) << sigs.body << "\n" << relay->log();
  EXPECT_EQ(sigs.headers["content-type"], kOciIndex);
  EXPECT_EQ(sigs.headers["oci-filters-applied"], "artifactType");
  EXPECT_TRUE(find_manifest(sigs.body, sig.digest).is_object()) << sigs.body;

  auto other = referrers(img.digest, "?artifactType=application/example.other");
  ASSERT_EQ(other.status, 200) << other.body << "\n" << relay->log();
  EXPECT_EQ(other.headers["oci-filters-applied"], "artifactType");
  auto other_index = json::parse(other.body, nullptr, false);
  ASSERT_TRUE(other_index.is_object()) << other.body;
  EXPECT_EQ(other_index["manifests"], json::array()) << other.body;

  // The signature itself has no referrers.
  auto none = referrers(sig.digest);
  ASSERT_EQ(none.status, 200) << none.body;
  EXPECT_EQ(json::parse(none.body, nullptr, false)["manifests"], json::array()) << none.body;

  // With the upstream gone, both the listing and the signature come from the store.
  registry.stop();
  auto offline = referrers(img.digest);
  ASSERT_EQ(offline.status, 200) << offline.body << "\n" << relay->log();
  EXPECT_EQ(offline.headers["content-type"], kOciIndex);
  auto offline_listed = find_manifest(offline.body, sig.digest);
  ASSERT_TRUE(offline_listed.is_object()) << offline.body << "\n" << relay->log();
  EXPECT_EQ(offline_listed.value("artifactType", ""), kCosignSig);
  auto offline_filtered = referrers(img.digest, std::string("?artifactType=") + kCosignSig);
  ASSERT_EQ(offline_filtered.status, 200) << offline_filtered.body;
  EXPECT_EQ(offline_filtered.headers["oci-filters-applied"], "artifactType");
  EXPECT_TRUE(find_manifest(offline_filtered.body, sig.digest).is_object()) << offline_filtered.body;

  auto offline_tag = http_request(relay->port(), "GET", "/v2/team/app/manifests/" + sig.sig_tag,
                                  {{"Accept", kManifestAccept}});
  ASSERT_EQ(offline_tag.status, 200) << offline_tag.body << "\n" << relay->log();
  EXPECT_EQ(sha256_digest(offline_tag.body), sig.digest);
  auto offline_digest = http_request(relay->port(), "GET", "/v2/team/app/manifests/" + sig.digest,
                                     {{"Accept", kManifestAccept}});
  ASSERT_EQ(offline_digest.status, 200) << offline_digest.body << "\n" << relay->log();
  EXPECT_EQ(sha256_digest(offline_digest.body), sig.digest);
}

}  // namespace
}  // namespace ocirelay::testing
