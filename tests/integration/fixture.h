// Shared fixture for the integration tests: a docker-registry upstream named
// "upstream.test", an OCI layout to build test images in, and an ocirelay in front of it.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/integration/harness.h"

namespace ocirelay::testing {

inline constexpr const char* kUpstream = "upstream.test";

class MirrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!require_programs({"docker-registry", "skopeo"})) return;
    ASSERT_TRUE(registry.start());
  }

  bool start_relay() {
    relay = std::make_unique<OcirelayProcess>(tmp / "ocirelay", kUpstream, registry.url());
    return relay->start();
  }

  // Builds an image with `n_layers` random layers of `layer_size` bytes (plus `shared`
  // layers, reused across repositories) and pushes it as repo:tag.
  BuiltImage push_image(const std::string& repo, const std::string& tag, int n_layers,
                        std::size_t layer_size, const std::vector<std::string>& shared = {}) {
    std::vector<std::string> layers = shared;
    for (int i = 0; i < n_layers; ++i) layers.push_back(random_bytes(layer_size, ++seed_));
    BuiltImage img = images.add_image(tag, layers);
    EXPECT_TRUE(images.push(registry.host(), repo, tag));
    return img;
  }

  // Pulls through ocirelay (or any registry host) with skopeo into a fresh dir: layout.
  CommandResult pull(const std::string& host, const std::string& repo, const std::string& tag,
                     const fs::path& out, bool all = false) {
    std::vector<std::string> extra;
    if (all) extra.push_back("--all");
    return skopeo_copy("docker://" + host + "/" + repo + ":" + tag, "dir:" + out.string(), extra);
  }

  // The dir: copy holds exactly the image's manifest bytes and blobs.
  static void expect_dir_matches(const fs::path& out, const BuiltImage& img) {
    EXPECT_EQ(sha256_digest(read_file(out / "manifest.json")), img.digest)
        << "manifest bytes differ from upstream's";
    for (const auto& b : img.blobs) {
      auto p = out / b.substr(7);
      ASSERT_TRUE(fs::exists(p)) << "blob " << b << " missing from the pulled copy";
      EXPECT_EQ(sha256_digest(read_file(p)), b);
    }
  }

  TempDir tmp;  // first member: removed after every process below stopped
  RegistryProcess registry{tmp / "registry"};
  ImageBuilder images{tmp / "layout"};
  std::unique_ptr<OcirelayProcess> relay;

 private:
  std::uint64_t seed_ = 1000;
};

// Pushes a cosign-style signature of `subject` into `repo` of the relay on `port`: an
// artifact manifest with an empty config and one payload layer, naming `subject` as its
// subject. Returns the signature's digest, or "" (after a test failure) when a push was
// refused.
inline std::string push_signature(std::uint16_t port, const std::string& repo, const BuiltImage& subject,
                                  const std::string& sig = "signature payload") {
  const std::string empty = "{}";
  for (const auto* blob : {&sig, &empty}) {
    auto r = http_request_with_body(port, "POST", "/v2/" + repo + "/blobs/uploads/?digest=" + sha256_digest(*blob),
                                    {}, *blob);
    EXPECT_EQ(r.status, 201) << r.body;
    if (r.status != 201) return "";
  }
  nlohmann::json m{{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"artifactType", "application/vnd.dev.cosign.artifact.sig.v1+json"},
                   {"config", {{"mediaType", "application/vnd.oci.empty.v1+json"},
                               {"digest", sha256_digest(empty)}, {"size", 2}}},
                   {"layers", nlohmann::json::array({{{"mediaType", "application/octet-stream"},
                                                      {"digest", sha256_digest(sig)}, {"size", sig.size()}}})},
                   {"subject", {{"mediaType", subject.media_type}, {"digest", subject.digest}, {"size", 100}}}};
  const std::string bytes = m.dump();
  const std::string digest = sha256_digest(bytes);
  auto put = http_request_with_body(port, "PUT", "/v2/" + repo + "/manifests/" + digest,
                                    {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}}, bytes);
  EXPECT_EQ(put.status, 201) << put.body;
  return put.status == 201 ? digest : "";
}

}  // namespace ocirelay::testing
