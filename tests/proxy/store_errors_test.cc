// A store that cannot read its metadata must not look like a cache miss: the mirror answers
// with the error and asks no upstream (a refetch would hide a failing disk and spend the
// upstream's quota).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "metrics/metrics.h"
#include "proxy/server.h"
#include "store/file_system.h"
#include "store/store.h"
#include "tests/support/fake_http_server.h"
#include "tests/support/files.h"
#include "tests/support/loopback_http.h"

namespace ocirelay::proxy {
namespace {

using ocirelay::testing::FakeHttpServer;
using ocirelay::testing::HttpCall;
using ocirelay::testing::HttpReply;

// A real store whose metadata reads fail with io_error (as a failing disk would).
class UnreadableStore final : public store::Store {
 public:
  explicit UnreadableStore(std::unique_ptr<store::Store> inner) : inner_(std::move(inner)) {}

  const std::filesystem::path& root() const override { return inner_->root(); }
  std::filesystem::path blob_path(const oci::Digest& d) const override { return inner_->blob_path(d); }
  store::lmdb::Env& metadata() override { return inner_->metadata(); }
  Result<std::optional<store::BlobInfo>> blob(const oci::Digest&) const override { return failure(); }
  Result<bool> repo_references(std::string_view, const oci::Digest&) const override { return failure(); }
  Result<std::optional<store::TagInfo>> tag(std::string_view, std::string_view) const override {
    return failure();
  }
  Result<std::optional<store::ManifestInfo>> manifest(const oci::Digest&) const override {
    return failure();
  }
  Result<std::vector<std::string>> tags(std::string_view) const override { return failure(); }
  Result<std::vector<store::ManifestInfo>> referrers(std::string_view, const oci::Digest&) const override {
    return failure();
  }
  Result<std::string> read_blob(const oci::Digest&, std::size_t) const override { return failure(); }
  Result<std::unique_ptr<store::ReadableFile>> open_blob(const oci::Digest&) const override {
    return failure();
  }
  Result<std::optional<std::uint64_t>> descriptor_size(std::string_view, const oci::Digest&) const override {
    return failure();
  }
  Result<std::unique_ptr<store::BlobWriter>> begin_blob(std::optional<oci::Digest> d,
                                                        std::optional<std::uint64_t> n) override {
    return inner_->begin_blob(std::move(d), n);
  }
  Status link(std::string_view repo, const oci::Digest& d) override { return inner_->link(repo, d); }
  Result<store::ManifestInfo> put_manifest(std::string_view repo, std::string_view bytes,
                                           std::string_view ct, std::optional<oci::Digest> d,
                                           std::optional<std::string> tag, std::int64_t at,
                                           std::string etag) override {
    return inner_->put_manifest(repo, bytes, ct, std::move(d), std::move(tag), at, std::move(etag));
  }
  Status touch_tag(std::string_view repo, std::string_view tag, std::int64_t at) override {
    return inner_->touch_tag(repo, tag, at);
  }
  void record_access(const oci::Digest& d) override { inner_->record_access(d); }
  Status flush_access() override { return inner_->flush_access(); }
  Status flush_index() override { return inner_->flush_index(); }
  Status set_pinned(std::string_view repo, std::string_view tag, bool p) override {
    return inner_->set_pinned(repo, tag, p);
  }
  Result<std::unique_ptr<store::UploadWriter>> begin_upload(std::string_view repo,
                                                            std::string_view user) override {
    return inner_->begin_upload(repo, user);
  }
  Result<std::unique_ptr<store::UploadWriter>> resume_upload(std::string_view id) override {
    return inner_->resume_upload(id);
  }
  Result<std::optional<store::UploadInfo>> upload(std::string_view) const override { return failure(); }
  Status cancel_upload(std::string_view id) override { return inner_->cancel_upload(id); }
  Result<std::size_t> upload_count() const override { return failure(); }
  Result<std::size_t> expire_uploads(std::chrono::seconds idle) override {
    return inner_->expire_uploads(idle);
  }
  Result<store::ManifestInfo> push_manifest(std::string_view repo, std::string_view bytes,
                                            std::string_view ct, std::optional<oci::Digest> d,
                                            std::optional<std::string> tag,
                                            std::string_view user) override {
    return inner_->push_manifest(repo, bytes, ct, std::move(d), std::move(tag), user);
  }
  Status mount_blob(std::string_view repo, const oci::Digest& d, std::string_view user) override {
    return inner_->mount_blob(repo, d, user);
  }
  Status delete_tag(std::string_view repo, std::string_view tag, std::string_view user) override {
    return inner_->delete_tag(repo, tag, user);
  }
  Status delete_manifest(std::string_view repo, const oci::Digest& d, std::string_view user) override {
    return inner_->delete_manifest(repo, d, user);
  }
  Status delete_blob(std::string_view repo, const oci::Digest& d, std::string_view user) override {
    return inner_->delete_blob(repo, d, user);
  }
  Result<std::vector<store::Event>> events(std::uint64_t, std::size_t) const override { return failure(); }
  Result<std::vector<std::string>> repositories(std::string_view, std::size_t) const override {
    return failure();
  }
  store::StoreStats stats() const override { return inner_->stats(); }
  Result<store::EvictReport> enforce_quota() override { return inner_->enforce_quota(); }
  Result<store::GcReport> gc() override { return inner_->gc(); }
  Result<store::FsckReport> fsck(bool repair) override { return inner_->fsck(repair); }

 private:
  static Error failure() { return Error{Errc::io_error, "lmdb get: Input/output error"}; }
  std::unique_ptr<store::Store> inner_;
};

TEST(StoreErrors, AnUnreadableStoreIsAnErrorNotAMiss) {
  std::atomic<int> upstream_requests{0};
  FakeHttpServer upstream([&](const HttpCall& call) {
    if (call.path != "/v2/") ++upstream_requests;
    return HttpReply{404, {}, ""};
  });
  ocirelay::testing::TempDir dir;
  store::StoreOptions so;
  so.root = dir.path() / "store";
  auto inner = store::Store::open(so);
  ASSERT_TRUE(inner.ok()) << inner.error().to_string();
  UnreadableStore store(std::move(*inner));

  ServerOptions opt;
  opt.listener.port = 0;
  fetch::UpstreamConfig up;
  up.name = "up.test";
  up.endpoint.name = "up.test";
  up.endpoint.url = upstream.url();
  up.is_default = true;
  opt.upstreams.push_back(up);
  metrics::Metrics metrics;
  auto registries = fetch::RegistryClients::create(opt.upstreams, &metrics);
  ASSERT_TRUE(registries.ok()) << registries.error().to_string();
  auto server = Server::create(opt, ServerDeps{store, metrics, **registries});
  ASSERT_TRUE(server.ok()) << server.error().to_string();
  std::thread io([&] { (*server)->run(); });
  const std::uint16_t port = (*server)->port();

  const std::string d = oci::Digest::of("x").str();
  for (const std::string& target : std::vector<std::string>{"/v2/app/manifests/latest", "/v2/app/manifests/" + d,
                                    "/v2/app/blobs/" + d}) {
    auto r = ocirelay::testing::http_request(port, "GET", target);
    EXPECT_EQ(r.status, 500) << target << ": " << r.body;
    EXPECT_NE(r.body.find("Input/output error"), std::string::npos) << target << ": " << r.body;
  }
  EXPECT_EQ(upstream_requests.load(), 0) << "a store read error was taken for a miss";

  (*server)->stop();
  io.join();
}

// Pushes are anonymous until client authentication exists: local repositories only on a
// loopback listener.
TEST(ServerTest, LocalRepositoriesRefuseANonLoopbackListener) {
  ocirelay::testing::TempDir dir;
  store::StoreOptions so;
  so.root = dir.path() / "store";
  auto st = store::Store::open(so);
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  ServerOptions opt;
  opt.listener.host = "0.0.0.0";
  opt.listener.port = 0;
  opt.local_repositories = {"apps/**"};
  metrics::Metrics metrics;
  auto registries = fetch::RegistryClients::create(opt.upstreams, &metrics);
  ASSERT_TRUE(registries.ok()) << registries.error().to_string();
  auto server = Server::create(opt, ServerDeps{**st, metrics, **registries});
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.error().message.find("listen on a loopback address"), std::string::npos)
      << server.error().message;
  opt.listener.host = "127.0.0.1";
  auto loopback = Server::create(opt, ServerDeps{**st, metrics, **registries});
  EXPECT_TRUE(loopback.ok()) << loopback.error().to_string();
}

}  // namespace
}  // namespace ocirelay::proxy
