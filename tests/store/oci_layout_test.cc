// The store's directory is a valid OCI image layout: skopeo reads it with the `oci:`
// transport using "<upstream>/<repository>:<tag>" as the reference name.
#include <gtest/gtest.h>

#include <cstdio>

#include "store/store.h"
#include "store_test_support.h"
#include "tests/support/requirements.h"

namespace ocirelay::store {
namespace {
using namespace testing;
namespace fs = std::filesystem;

// Runs a shell command to completion, capturing stdout.
int run(const std::string& cmd, std::string* out) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  return ::pclose(p);
}

TEST(OciLayoutTest, SkopeoReadsAnImageWrittenThroughTheStore) {
  if (!ocirelay::testing::require_programs({"skopeo"}, ocirelay::testing::NeedsRoot::no)) return;
  TempDir dir;
  auto s = open_store(dir.path());
  ASSERT_TRUE(s);
  // An empty tar archive is a valid layer.
  auto img = make_image({std::string(10240, '\0')});
  put_image(*s, "docker.io/library/alpine", img, "3.20");
  put_image(*s, "docker.io/library/busybox", make_image({"other"}), "latest");
  ASSERT_TRUE(s->flush_index().ok());

  std::string ref = "oci:" + dir.path().string() + ":docker.io/library/alpine:3.20";
  std::string raw;
  ASSERT_EQ(run("timeout 120 skopeo inspect --raw '" + ref + "' 2>&1", &raw), 0) << raw;
  EXPECT_EQ(raw, img.manifest);

  fs::path out = dir.path().parent_path() / (dir.path().filename().string() + "-copy");
  std::string log;
  int rc = run("timeout 120 skopeo --insecure-policy copy '" + ref + "' 'dir:" + out.string() +
                   "' 2>&1",
               &log);
  std::string manifest = read_file(out / "manifest.json");
  std::string config = read_file(out / std::string(oci::Digest::of(img.config).hex()));
  std::string layer = read_file(out / std::string(oci::Digest::of(img.layers[0]).hex()));
  std::error_code ec;
  fs::remove_all(out, ec);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_EQ(oci::Digest::of(manifest), img.digest());
  EXPECT_EQ(config, img.config);
  EXPECT_EQ(layer, img.layers[0]);
}

}  // namespace
}  // namespace ocirelay::store
