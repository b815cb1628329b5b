// Shared fixture for the integration tests: a docker-registry upstream named
// "upstream.test", an OCI layout to build test images in, and an ocirelay in front of it.
#pragma once

#include <gtest/gtest.h>

#include <memory>

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

}  // namespace ocirelay::testing
