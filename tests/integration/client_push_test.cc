// RegistryClient's push side against the real distribution registry (docker-registry):
// a multi-arch image with a referrer pushed from files and read back (htpasswd and token
// auth, skopeo as a second reader), mounts that send no blob bytes, chunked uploads
// through proxies that behave like ECR, GHCR, Artifact Registry and ACR, a resume after
// the registry died mid-upload, 429s, lost answers and a wrong returned digest.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <functional>
#include <random>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <optional>
#include <thread>
#include <vector>

#include "adapters/body_source.h"
#include "adapters/registry_client.h"
#include "oci/digest.h"
#include "oci/media_types.h"
#include "tests/support/files.h"
#include "tests/support/process.h"
#include "tests/support/quirk_proxy.h"
#include "tests/support/registry_process.h"
#include "tests/support/requirements.h"
#include "tests/support/token_server.h"

namespace ocirelay {
namespace {

using adapters::BlobPushed;
using adapters::BodySource;
using adapters::Credentials;
using adapters::kMiB;
using adapters::RegistryClient;
using adapters::RegistryEndpoint;
using adapters::RegistryKind;
using adapters::UploadSession;
using testing::Quirks;
using testing::QuirkProxy;
using testing::RegistryOptions;
using testing::RegistryProcess;
using testing::TempDir;
using testing::TokenServer;
using namespace std::chrono_literals;
namespace media = oci::media;

constexpr const char* kUser = "pusher";
constexpr const char* kPassword = "Pu5h-S3cret-Value";

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(gen() & 0xff);
  return out;
}

// A test body over bytes in memory that counts what the client read and can act once
// when the client first reads at or past an offset (to break a registry mid-upload).
class CountingBody : public BodySource {
 public:
  explicit CountingBody(std::string bytes) : bytes_(std::move(bytes)) {}
  std::uint64_t size() const override { return bytes_.size(); }
  Result<std::size_t> read(std::uint64_t offset, char* buf, std::size_t n) override {
    if (hook_ && offset >= hook_at_) {
      auto hook = std::move(hook_);
      hook_ = nullptr;
      hook();
    }
    n = std::min<std::size_t>(n, bytes_.size() - offset);
    std::copy_n(bytes_.data() + offset, n, buf);
    bytes_read += n;
    return n;
  }
  void at_offset(std::uint64_t offset, std::function<void()> hook) {
    hook_at_ = offset;
    hook_ = std::move(hook);
  }
  std::uint64_t bytes_read = 0;

 private:
  std::string bytes_;
  std::uint64_t hook_at_ = 0;
  std::function<void()> hook_;
};

struct Blob {
  std::string bytes;
  oci::Digest digest;
  std::string media_type;
};

Blob blob(std::string bytes, std::string media_type = "application/vnd.oci.image.layer.v1.tar") {
  auto d = oci::Digest::of(bytes);
  return Blob{std::move(bytes), std::move(d), std::move(media_type)};
}

nlohmann::json descriptor(const Blob& b) {
  return {{"mediaType", b.media_type}, {"digest", b.digest.str()}, {"size", b.bytes.size()}};
}

// index -> two child manifests sharing a 3 MiB layer; plus a referrer of the index.
struct MultiArchImage {
  std::vector<Blob> blobs;  // configs and layers, each once
  std::string amd64, arm64, index, referrer;
  oci::Digest amd64_digest, arm64_digest, index_digest, referrer_digest;

  MultiArchImage() {
    Blob shared = blob(random_bytes(3 * kMiB, 1));
    Blob amd_layer = blob(random_bytes(512 << 10, 2));
    Blob arm_layer = blob(random_bytes(512 << 10, 3));
    Blob amd_config = blob(R"({"architecture":"amd64","os":"linux"})",
                           "application/vnd.oci.image.config.v1+json");
    Blob arm_config = blob(R"({"architecture":"arm64","os":"linux"})",
                           "application/vnd.oci.image.config.v1+json");
    Blob empty = blob("{}", std::string(media::kOciEmpty));
    Blob sbom = blob(R"({"spdxVersion":"SPDX-2.3"})", "application/spdx+json");
    auto manifest = [](const Blob& config, const Blob& own) {
      return nlohmann::json{{"schemaVersion", 2},
                            {"mediaType", media::kOciManifest},
                            {"config", descriptor(config)},
                            {"layers", {descriptor(own)}}}
          .dump();
    };
    amd64 = manifest(amd_config, amd_layer);
    arm64 = manifest(arm_config, arm_layer);
    // The shared layer comes first in both.
    auto with_shared = [&](std::string m) {
      auto j = nlohmann::json::parse(m);
      j["layers"].insert(j["layers"].begin(), descriptor(shared));
      return j.dump();
    };
    amd64 = with_shared(amd64);
    arm64 = with_shared(arm64);
    amd64_digest = oci::Digest::of(amd64);
    arm64_digest = oci::Digest::of(arm64);
    auto child = [](const std::string& m, const oci::Digest& d, const char* arch) {
      return nlohmann::json{{"mediaType", media::kOciManifest},
                            {"digest", d.str()},
                            {"size", m.size()},
                            {"platform", {{"os", "linux"}, {"architecture", arch}}}};
    };
    index = nlohmann::json{{"schemaVersion", 2},
                           {"mediaType", media::kOciIndex},
                           {"manifests", {child(amd64, amd64_digest, "amd64"),
                                          child(arm64, arm64_digest, "arm64")}}}
                .dump();
    index_digest = oci::Digest::of(index);
    referrer = nlohmann::json{{"schemaVersion", 2},
                              {"mediaType", media::kOciManifest},
                              {"artifactType", "application/spdx+json"},
                              {"config", descriptor(empty)},
                              {"layers", {descriptor(sbom)}},
                              {"subject",
                               {{"mediaType", media::kOciIndex},
                                {"digest", index_digest.str()},
                                {"size", index.size()}}}}
                   .dump();
    referrer_digest = oci::Digest::of(referrer);
    blobs = {shared, amd_layer, arm_layer, amd_config, arm_config, empty, sbom};
  }
};

RegistryEndpoint endpoint(const std::string& url, Credentials creds = {}) {
  RegistryEndpoint ep;
  ep.name = "dest";
  ep.url = url;
  ep.credentials = adapters::fixed_credentials(std::move(creds));
  ep.retry.backoff = std::chrono::milliseconds(20);
  ep.retry.max_backoff = std::chrono::milliseconds(200);
  return ep;
}

std::unique_ptr<RegistryClient> make_client(RegistryEndpoint ep) {
  auto c = RegistryClient::create(std::move(ep));
  EXPECT_TRUE(c.ok()) << c.error().to_string();
  return c ? std::move(*c) : nullptr;
}

// Pushes every blob (from files, through open_file_body), the children, the index as
// `tag`, then the referrer. Returns how each blob arrived.
std::vector<BlobPushed> push_image(RegistryClient& c, const std::string& repo,
                                   const MultiArchImage& img, const std::string& tag,
                                   const std::string& mount_from = {}) {
  TempDir files;
  std::vector<BlobPushed> how;
  for (const auto& b : img.blobs) {
    const auto path = files / std::string(b.digest.hex());
    testing::write_file(path, b.bytes);
    auto body = adapters::open_file_body(path.string(), b.bytes.size());
    EXPECT_TRUE(body.ok()) << body.error().to_string();
    if (!body) return how;
    auto r = c.push_blob(repo, b.digest, **body, mount_from);
    EXPECT_TRUE(r.ok()) << r.error().to_string();
    if (!r) return how;
    how.push_back(*r);
  }
  for (const auto* m : {&img.amd64, &img.arm64}) {
    auto d = oci::Digest::of(*m);
    auto r = c.put_manifest(repo, d.str(), media::kOciManifest, *m);
    EXPECT_TRUE(r.ok()) << r.error().to_string();
  }
  auto idx = c.put_manifest(repo, tag, media::kOciIndex, img.index);
  EXPECT_TRUE(idx.ok()) << idx.error().to_string();
  if (idx) {
    EXPECT_EQ(*idx, img.index_digest);
  }
  auto ref = c.put_manifest(repo, img.referrer_digest.str(), media::kOciManifest, img.referrer);
  EXPECT_TRUE(ref.ok()) << ref.error().to_string();
  return how;
}

class Sink : public adapters::BodySink {
 public:
  Status on_head(const adapters::ResponseHead&) override { return {}; }
  Status on_data(const char* d, std::size_t n) override {
    hash.update(d, n);
    return {};
  }
  oci::Sha256 hash;
};

// Reads the image back through the client: every manifest and blob hashes to its digest,
// the tag resolves to the index, and the referrer is found for the index.
void expect_image(RegistryClient& c, const std::string& repo, const MultiArchImage& img,
                  const std::string& tag) {
  auto idx = c.get_manifest(repo, tag, media::kOciIndex);
  ASSERT_TRUE(idx.ok()) << idx.error().to_string();
  EXPECT_EQ(idx->digest, img.index_digest);
  EXPECT_EQ(idx->body, img.index);
  for (const auto& d : {img.amd64_digest, img.arm64_digest, img.referrer_digest}) {
    auto m = c.get_manifest(repo, d.str(), media::kOciManifest);
    ASSERT_TRUE(m.ok()) << m.error().to_string();
    EXPECT_EQ(m->digest, d);
  }
  for (const auto& b : img.blobs) {
    Sink sink;
    auto r = c.get_blob(repo, b.digest, sink);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(sink.hash.finish(), b.digest);
  }
  auto refs = c.referrers(repo, img.index_digest);
  ASSERT_TRUE(refs.ok()) << refs.error().to_string();
  ASSERT_EQ(refs->size(), 1u);
  EXPECT_EQ((*refs)[0].digest, img.referrer_digest);
  EXPECT_EQ((*refs)[0].artifact_type, "application/spdx+json");
  auto filtered = c.referrers(repo, img.index_digest, "application/vnd.other");
  ASSERT_TRUE(filtered.ok()) << filtered.error().to_string();
  EXPECT_TRUE(filtered->empty());
}

class ClientPushTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::require_programs({"docker-registry", "htpasswd"}, testing::NeedsRoot::no))
      return;
    ready_ = true;
  }
  bool ready_ = false;
};

TEST_F(ClientPushTest, PushesAMultiArchImageWithAReferrerBehindHtpasswd) {
  if (!ready_) return;
  RegistryProcess registry(RegistryOptions{kUser, kPassword});
  ASSERT_TRUE(registry.start());
  auto c = make_client(endpoint(registry.url(), Credentials{kUser, kPassword, {}}));
  ASSERT_TRUE(c);
  MultiArchImage img;
  auto how = push_image(*c, "team/app", img, "v1");
  ASSERT_EQ(how.size(), img.blobs.size());
  for (auto h : how) EXPECT_EQ(h, BlobPushed::uploaded);
  expect_image(*c, "team/app", img, "v1");

  // Pushing again sends no blob: each one is found with a HEAD.
  const int puts_before = registry.count_requests("\"PUT /v2/team/app/blobs/uploads/");
  auto again = push_image(*c, "team/app", img, "v1");
  for (auto h : again) EXPECT_EQ(h, BlobPushed::existed);
  EXPECT_EQ(registry.count_requests("\"PUT /v2/team/app/blobs/uploads/"), puts_before);

  if (testing::require_programs({"skopeo"}, testing::NeedsRoot::no)) {
    auto raw = testing::run_command({"skopeo", "inspect", "--raw", "--tls-verify=false",
                                     "--creds", std::string(kUser) + ":" + kPassword,
                                     "docker://" + registry.host() + "/team/app:v1"});
    ASSERT_EQ(raw.exit_code, 0) << raw.err;
    EXPECT_EQ(oci::Digest::of(raw.out), img.index_digest);
  }
}

TEST_F(ClientPushTest, PushesWithTokenAuthAndMountsIntoASecondRepositoryWithoutSendingBytes) {
  if (!ready_) return;
  TempDir dir;
  TokenServer::Options to;
  to.username = kUser;
  to.password = kPassword;
  TokenServer tokens(dir / "token", to);
  RegistryOptions ro;
  ro.token_auth = testing::TokenAuthOptions{tokens.realm(), tokens.options().service,
                                            tokens.options().issuer, tokens.cert_path()};
  RegistryProcess registry(dir / "registry", ro);
  ASSERT_TRUE(registry.start());
  auto c = make_client(endpoint(registry.url(), Credentials{kUser, kPassword, {}}));
  ASSERT_TRUE(c);
  MultiArchImage img;
  push_image(*c, "team/app", img, "v1");
  expect_image(*c, "team/app", img, "v1");
  // Few tokens: one per set of scopes (push, pull), not one per request.
  EXPECT_LE(tokens.token_requests(), 3);

  auto how = push_image(*c, "team/copy", img, "v1", "team/app");
  ASSERT_EQ(how.size(), img.blobs.size());
  for (auto h : how) EXPECT_EQ(h, BlobPushed::mounted);
  EXPECT_EQ(registry.count_requests("\"PATCH /v2/team/copy/"), 0);
  EXPECT_EQ(registry.count_requests("\"PUT /v2/team/copy/blobs/"), 0);
  EXPECT_EQ(registry.count_requests("\"POST /v2/team/copy/blobs/uploads/?mount="),
            static_cast<int>(img.blobs.size()));
  expect_image(*c, "team/copy", img, "v1");
}

// A 20 MiB blob through each product's quirks, with the endpoint's kind set as a user
// would configure it (and, for the GHCR and ACR proxies, also a generic endpoint that
// must learn the limits from the answers).
struct QuirkCase {
  const char* name;
  Quirks quirks;
  RegistryKind kind;
  adapters::UploadPolicy policy;
};

class QuirkUploadTest : public ::testing::TestWithParam<QuirkCase> {};

TEST_P(QuirkUploadTest, UploadsALargeBlobAndItReadsBack) {
  if (!testing::require_programs({"docker-registry"}, testing::NeedsRoot::no)) return;
  const QuirkCase& qc = GetParam();
  RegistryProcess registry;
  ASSERT_TRUE(registry.start());
  QuirkProxy proxy(registry.port(), qc.quirks);
  auto ep = endpoint(proxy.url());
  ep.kind = qc.kind;
  ep.upload = qc.policy;
  auto c = make_client(ep);
  ASSERT_TRUE(c);
  CountingBody body(random_bytes(20 * kMiB, 42));
  const auto digest = oci::Digest::of(random_bytes(20 * kMiB, 42));
  auto r = c->push_blob("team/big", digest, body);
  ASSERT_TRUE(r.ok()) << r.error().to_string() << "\n" << registry.log();
  EXPECT_EQ(*r, BlobPushed::uploaded);
  Sink sink;
  ASSERT_TRUE(c->get_blob("team/big", digest, sink).ok());
  EXPECT_EQ(sink.hash.finish(), digest);

  const auto reqs = proxy.requests();
  int patches = 0;
  for (const auto& q : reqs) {
    if (q.method != "PATCH" || q.status >= 300) continue;
    ++patches;
    if (qc.quirks == Quirks::ghcr) {
      EXPECT_LE(q.body_bytes, 4 * kMiB);
    }
  }
  switch (qc.quirks) {
    case Quirks::ecr:
      EXPECT_EQ(patches, 3);  // 8 + 8 + 4 MiB
      EXPECT_EQ(proxy.count("PATCH"), 3) << "no chunk refused as too small";
      break;
    case Quirks::ghcr:
      EXPECT_EQ(patches, 5);  // 4 MiB each
      break;
    case Quirks::artifact_registry:
      EXPECT_EQ(patches, 0);
      EXPECT_EQ(proxy.body_bytes("PUT", "/blobs/uploads/"), 20 * kMiB);
      break;
    case Quirks::acr:
      EXPECT_GE(patches, 2);
      EXPECT_EQ(proxy.body_bytes("PATCH"), 20 * kMiB);
      break;
    default:
      break;
  }
  // Every byte read from the source went out once to the registry (or to a refusal).
  EXPECT_EQ(body.bytes_read, proxy.body_bytes("PATCH") + proxy.body_bytes("PUT"));
}

INSTANTIATE_TEST_SUITE_P(
    Registries, QuirkUploadTest,
    ::testing::Values(
        QuirkCase{"ecr", Quirks::ecr, RegistryKind::ecr, {}},
        QuirkCase{"ghcr", Quirks::ghcr, RegistryKind::ghcr, {}},
        // Told nothing: 8 MiB chunks get 416 "exceeds the maximum" and shrink to 4 MiB.
        QuirkCase{"ghcr_learned", Quirks::ghcr, RegistryKind::generic, {8 * kMiB, 1 * kMiB}},
        QuirkCase{
            "artifact_registry", Quirks::artifact_registry, RegistryKind::artifact_registry, {}},
        // Told nothing: chunks get 405 and the blob goes in one piece.
        QuirkCase{"artifact_registry_learned",
                  Quirks::artifact_registry,
                  RegistryKind::generic,
                  {4 * kMiB, 1 * kMiB}},
        QuirkCase{"acr", Quirks::acr, RegistryKind::acr, {}},
        // Told nothing: the one-piece PUT gets 413 and the blob goes in chunks.
        QuirkCase{"acr_learned", Quirks::acr, RegistryKind::generic, {8 * kMiB, 64 * kMiB}}),
    [](const ::testing::TestParamInfo<QuirkCase>& p) { return std::string(p.param.name); });

TEST_F(ClientPushTest, ResumesAfterTheRegistryDiedMidUploadResendingAtMostOneChunk) {
  if (!ready_) return;
  RegistryProcess registry;
  ASSERT_TRUE(registry.start());
  auto ep = endpoint(registry.url());
  ep.upload = {4 * kMiB, 1 * kMiB};
  ep.retry.attempts = 2;
  auto c = make_client(ep);
  ASSERT_TRUE(c);
  const std::string bytes = random_bytes(14 * kMiB, 9);
  const auto digest = oci::Digest::of(bytes);
  CountingBody body(bytes);
  // The registry dies as the second chunk starts.
  body.at_offset(4 * kMiB, [&] { registry.stop(); });
  UploadSession session;
  std::vector<std::uint64_t> confirmed;  // what a caller would persist, chunk by chunk
  auto first = c->push_blob("team/resume", digest, body, {}, &session,
                            [&](const UploadSession& s) { confirmed.push_back(s.offset); });
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(confirmed, std::vector<std::uint64_t>{4 * kMiB});
  EXPECT_TRUE(first.error().retryable()) << first.error().to_string();
  EXPECT_FALSE(session.empty());
  EXPECT_EQ(session.offset, 4 * kMiB);

  ASSERT_TRUE(registry.restart());
  CountingBody again(bytes);
  auto second = c->push_blob("team/resume", digest, again, {}, &session);
  ASSERT_TRUE(second.ok()) << second.error().to_string() << "\n" << registry.log();
  EXPECT_EQ(*second, BlobPushed::uploaded);
  EXPECT_TRUE(session.empty());
  // From the confirmed offset: the 10 MiB not yet confirmed, nothing before it.
  EXPECT_EQ(again.bytes_read, 10 * kMiB);
  Sink sink;
  ASSERT_TRUE(c->get_blob("team/resume", digest, sink).ok());
  EXPECT_EQ(sink.hash.finish(), digest);
}

TEST_F(ClientPushTest, ResumesAnEcrUploadFromThePersistedOffset) {
  if (!ready_) return;
  RegistryProcess registry;
  ASSERT_TRUE(registry.start());
  auto proxy = std::make_unique<QuirkProxy>(registry.port(), Quirks::ecr);
  auto ep = endpoint(proxy->url());
  ep.kind = RegistryKind::ecr;
  ep.retry.attempts = 1;
  const std::string bytes = random_bytes(20 * kMiB, 11);
  const auto digest = oci::Digest::of(bytes);
  UploadSession session;
  {
    auto c = make_client(ep);
    ASSERT_TRUE(c);
    CountingBody body(bytes);
    proxy->reply_once("PATCH", "/blobs/uploads/", 503);
    auto r = c->push_blob("team/ecr", digest, body, {}, &session);
    // The injected 503 hits the first PATCH: nothing confirmed yet.
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(session.offset, 0u);
    // Now one chunk goes through and the next fails.
    CountingBody body2(bytes);
    body2.at_offset(8 * kMiB, [&] { proxy->reply_once("PATCH", "/blobs/uploads/", 503); });
    auto r2 = c->push_blob("team/ecr", digest, body2, {}, &session);
    ASSERT_FALSE(r2.ok());
    EXPECT_EQ(session.offset, 8 * kMiB);
  }
  auto c = make_client(ep);
  CountingBody rest(bytes);
  auto r = c->push_blob("team/ecr", digest, rest, {}, &session);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  // ECR's Range is stuck at the first chunk: the persisted offset is what counts.
  EXPECT_EQ(rest.bytes_read, 12 * kMiB);
  Sink sink;
  ASSERT_TRUE(c->get_blob("team/ecr", digest, sink).ok());
  EXPECT_EQ(sink.hash.finish(), digest);
}

std::string http_date(std::time_t t) {
  char buf[64];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

TEST_F(ClientPushTest, HonoursRetryAfterInSecondsAndAsAnHttpDate) {
  if (!ready_) return;
  RegistryProcess registry;
  ASSERT_TRUE(registry.start());
  QuirkProxy proxy(registry.port(), Quirks::none);
  auto ep = endpoint(proxy.url());
  ep.upload = {4 * kMiB, 1 * kMiB};
  auto c = make_client(ep);
  ASSERT_TRUE(c);

  // Seconds, on a PATCH.
  const std::string chunked = random_bytes(6 * kMiB, 5);
  proxy.reply_once("PATCH", "/blobs/uploads/", 429, {{"Retry-After", "1"}});
  CountingBody a(chunked);
  auto start = std::chrono::steady_clock::now();
  auto r = c->push_blob("team/limited", oci::Digest::of(chunked), a);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(950));

  // An HTTP-date two seconds ahead, on a PUT (whole-second resolution: at least 1 s).
  const std::string small = random_bytes(256 << 10, 6);
  proxy.reply_once("PUT", "/blobs/uploads/", 429,
                   {{"Retry-After", http_date(std::time(nullptr) + 2)}});
  CountingBody b(small);
  start = std::chrono::steady_clock::now();
  r = c->push_blob("team/limited", oci::Digest::of(small), b);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(950));
  EXPECT_EQ(proxy.count("PUT", "/blobs/uploads/"), 3);  // two blobs, one refused once
}

TEST_F(ClientPushTest, A429WithRetryAfterHoldsBackTheWritesOfEveryThreadUntilItPassed) {
  if (!ready_) return;
  RegistryProcess registry;
  ASSERT_TRUE(registry.start());
  QuirkProxy proxy(registry.port(), Quirks::none);
  auto c = make_client(endpoint(proxy.url()));
  ASSERT_TRUE(c);
  const std::string first = random_bytes(64 << 10, 7), second = random_bytes(64 << 10, 8);
  proxy.reply_once("POST", "/blobs/uploads/", 429, {{"Retry-After", "2"}});
  std::thread refused([&] {
    CountingBody a(first);
    auto r = c->push_blob("team/one", oci::Digest::of(first), a);
    EXPECT_TRUE(r.ok()) << r.error().to_string();
  });
  // Another upload starts once the client has taken the 429 in: its first write waits too.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (c->rate_limited_for() == std::chrono::seconds(0) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_GT(c->rate_limited_for(), std::chrono::seconds(0));
  CountingBody b(second);
  auto r = c->push_blob("team/two", oci::Digest::of(second), b);
  refused.join();
  ASSERT_TRUE(r.ok()) << r.error().to_string();

  std::optional<std::chrono::steady_clock::time_point> refused_at, other_post;
  for (const auto& q : proxy.requests()) {
    if (q.status == 429) refused_at = q.at;
    if (q.method == "POST" && q.target.find("/team/two/") != std::string::npos && !other_post) other_post = q.at;
  }
  ASSERT_TRUE(refused_at && other_post);
  EXPECT_GE(*other_post - *refused_at, std::chrono::milliseconds(1900));
  // Reads were not held: the second upload's HEAD went out at once.
  for (const auto& q : proxy.requests())
    if (q.method == "HEAD" && q.target.find("/team/two/") != std::string::npos) {
      EXPECT_LT(q.at - *refused_at, std::chrono::milliseconds(1500));
    }
}

TEST_F(ClientPushTest, ALostPutAnswerIsCheckedWithAHeadBeforeSendingAgain) {
  if (!ready_) return;
  RegistryProcess registry;
  ASSERT_TRUE(registry.start());
  QuirkProxy proxy(registry.port(), Quirks::none);
  auto c = make_client(endpoint(proxy.url()));
  ASSERT_TRUE(c);
  const std::string bytes = random_bytes(1 * kMiB, 8);
  const auto digest = oci::Digest::of(bytes);
  proxy.drop_answer_once("PUT", "/blobs/uploads/");
  CountingBody body(bytes);
  auto r = c->push_blob("team/lost", digest, body);
  auto describe = [&] {
    std::string out;
    for (const auto& q : proxy.requests())
      out += q.method + " " + q.target.substr(0, 90) + " -> " + std::to_string(q.status) + "\n";
    return out;
  };
  ASSERT_TRUE(r.ok()) << r.error().to_string() << "\n" << describe();
  EXPECT_EQ(proxy.count("PUT", "/blobs/uploads/"), 1);
  EXPECT_EQ(proxy.count("HEAD", "/blobs/" + digest.str()), 2);  // before, and the check
  EXPECT_EQ(body.bytes_read, bytes.size());

  const std::string config = blob("{}", std::string(media::kOciEmpty)).bytes;
  ASSERT_TRUE(
      c->push_blob("team/lost", oci::Digest::of(config), *std::make_unique<CountingBody>(config))
          .ok());
  const std::string manifest =
      nlohmann::json{{"schemaVersion", 2},
                     {"mediaType", media::kOciManifest},
                     {"config", descriptor(blob(config, std::string(media::kOciEmpty)))},
                     {"layers", {descriptor(blob(bytes))}}}
          .dump();
  proxy.drop_answer_once("PUT", "/manifests/");
  auto m = c->put_manifest("team/lost", "v1", media::kOciManifest, manifest);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  EXPECT_EQ(*m, oci::Digest::of(manifest));
  EXPECT_EQ(proxy.count("PUT", "/manifests/"), 1);
}

TEST_F(ClientPushTest, AManifestPutAnsweredWithAnotherDigestIsAnError) {
  if (!ready_) return;
  RegistryProcess registry;
  ASSERT_TRUE(registry.start());
  QuirkProxy proxy(registry.port(), Quirks::none);
  auto c = make_client(endpoint(proxy.url()));
  ASSERT_TRUE(c);
  const std::string config = "{}";
  CountingBody body(config);
  ASSERT_TRUE(c->push_blob("team/wrong", oci::Digest::of(config), body).ok());
  const std::string manifest =
      nlohmann::json{{"schemaVersion", 2},
                     {"mediaType", media::kOciManifest},
                     {"config", descriptor(blob(config, std::string(media::kOciEmpty)))},
                     {"layers", nlohmann::json::array()}}
          .dump();
  proxy.wrong_digest_once("PUT", "/manifests/");
  auto m = c->put_manifest("team/wrong", "v1", media::kOciManifest, manifest);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, Errc::digest_mismatch) << m.error().to_string();
}

TEST_F(ClientPushTest, RetriesA5xxWithBackoffAndStopsWaitingWhenCancelled) {
  if (!ready_) return;
  RegistryProcess registry;
  ASSERT_TRUE(registry.start());
  QuirkProxy proxy(registry.port(), Quirks::none);
  auto c = make_client(endpoint(proxy.url()));
  ASSERT_TRUE(c);
  const std::string bytes = random_bytes(64 << 10, 13);
  proxy.reply_once("POST", "/blobs/uploads/", 503);
  proxy.reply_once("HEAD", "/blobs/", 502);
  CountingBody body(bytes);
  auto r = c->push_blob("team/flaky", oci::Digest::of(bytes), body);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(proxy.count("POST", "/blobs/uploads/"), 2);
  EXPECT_EQ(proxy.count("HEAD", "/blobs/"), 2);

  // A minute's Retry-After is waited out... until shutdown cancels the client.
  const std::string other = random_bytes(64 << 10, 14);
  proxy.reply_once("PUT", "/blobs/uploads/", 429, {{"Retry-After", "60"}});
  CountingBody b(other);
  std::thread cancel([&] {
    testing::wait_until([&] { return proxy.count("PUT", "/blobs/uploads/") >= 2; }, 30s);
    c->cancel_transfers();
  });
  const auto start = std::chrono::steady_clock::now();
  auto cancelled = c->push_blob("team/flaky", oci::Digest::of(other), b);
  cancel.join();
  ASSERT_FALSE(cancelled.ok());
  EXPECT_EQ(cancelled.error().code, Errc::cancelled) << cancelled.error().to_string();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST_F(ClientPushTest, AnImmutableTagAlreadyAtTheSameDigestIsSuccess) {
  if (!ready_) return;
  RegistryProcess registry;
  ASSERT_TRUE(registry.start());
  QuirkProxy proxy(registry.port(), Quirks::none);
  auto ep = endpoint(proxy.url());
  ep.kind = RegistryKind::ecr;
  auto c = make_client(ep);
  ASSERT_TRUE(c);
  const std::string config = "{}";
  CountingBody body(config);
  ASSERT_TRUE(c->push_blob("team/immutable", oci::Digest::of(config), body).ok());
  auto manifest = [&](const std::string& note) {
    return nlohmann::json{{"schemaVersion", 2},
                          {"mediaType", media::kOciManifest},
                          {"annotations", {{"note", note}}},
                          {"config", descriptor(blob(config, std::string(media::kOciEmpty)))},
                          {"layers", nlohmann::json::array()}}
        .dump();
  };
  const std::string first = manifest("first");
  ASSERT_TRUE(c->put_manifest("team/immutable", "v1", media::kOciManifest, first).ok());
  const std::string ecr_refusal =
      R"x({"errors":[{"code":"TAG_INVALID","message":"The image tag 'v1' already exists in the )x"
      R"x('team/immutable' repository and cannot be overwritten because the repository is )x"
      R"x(immutable. (ImageTagAlreadyExistsException)"}]})x";
  proxy.reply_once("PUT", "/manifests/v1", 400, {}, ecr_refusal);
  auto same = c->put_manifest("team/immutable", "v1", media::kOciManifest, first);
  ASSERT_TRUE(same.ok()) << same.error().to_string();
  EXPECT_EQ(*same, oci::Digest::of(first));

  proxy.reply_once("PUT", "/manifests/v1", 400, {}, ecr_refusal);
  auto other = c->put_manifest("team/immutable", "v1", media::kOciManifest, manifest("second"));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, Errc::denied) << other.error().to_string();
}

TEST_F(ClientPushTest, ListsEveryPageOfTagsAndCatalogAndDeletesManifests) {
  if (!ready_) return;
  RegistryProcess registry(RegistryOptions{kUser, kPassword});
  ASSERT_TRUE(registry.start());
  auto ep = endpoint(registry.url(), Credentials{kUser, kPassword, {}});
  ep.list_page_size = 2;
  auto c = make_client(ep);
  ASSERT_TRUE(c);
  const std::string config = "{}";
  std::vector<std::string> repos = {"a/one", "a/two", "b/three"};
  for (const auto& repo : repos) {
    CountingBody body(config);
    ASSERT_TRUE(c->push_blob(repo, oci::Digest::of(config), body).ok());
  }
  std::vector<std::string> tags = {"t1", "t2", "t3", "t4", "t5"};
  std::vector<oci::Digest> digests;
  for (const auto& t : tags) {
    const std::string m =
        nlohmann::json{{"schemaVersion", 2},
                       {"mediaType", media::kOciManifest},
                       {"annotations", {{"tag", t}}},
                       {"config", descriptor(blob(config, std::string(media::kOciEmpty)))},
                       {"layers", nlohmann::json::array()}}
            .dump();
    auto d = c->put_manifest("a/one", t, media::kOciManifest, m);
    ASSERT_TRUE(d.ok()) << d.error().to_string();
    digests.push_back(*d);
  }
  auto listed = c->list_tags("a/one");
  ASSERT_TRUE(listed.ok()) << listed.error().to_string();
  std::sort(listed->begin(), listed->end());  // the registry's order is its own
  EXPECT_EQ(*listed, tags);  // docker-registry 2.8 pages its catalog, not tags/list

  for (const auto& repo : {"a/two", "b/three"}) {
    ASSERT_TRUE(
        c->put_manifest(
             repo, "v1", media::kOciManifest,
             nlohmann::json{{"schemaVersion", 2},
                            {"mediaType", media::kOciManifest},
                            {"config", descriptor(blob(config, std::string(media::kOciEmpty)))},
                            {"layers", nlohmann::json::array()}}
                 .dump())
            .ok());
  }
  auto cat = c->catalog();
  ASSERT_TRUE(cat.ok()) << cat.error().to_string();
  EXPECT_EQ(*cat, repos);
  EXPECT_EQ(registry.count_requests("\"GET /v2/_catalog"), 2);  // two pages of two

  ASSERT_TRUE(c->delete_manifest("a/one", digests[0].str()).ok());
  auto gone = c->get_manifest("a/one", digests[0].str(), media::kOciManifest);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, Errc::not_found);
  auto again = c->delete_manifest("a/one", digests[0].str());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, Errc::not_found);
}

TEST_F(ClientPushTest, AFailedUploadLeavesNoSessionBehind) {
  if (!ready_) return;
  RegistryProcess registry;
  ASSERT_TRUE(registry.start());
  QuirkProxy proxy(registry.port(), Quirks::none);
  auto ep = endpoint(proxy.url());
  ep.upload = {4 * kMiB, 1 * kMiB};
  auto c = make_client(ep);
  ASSERT_TRUE(c);
  const std::string bytes = random_bytes(6 * kMiB, 12);
  // Bytes that do not hash to the digest: the registry refuses the final PUT.
  CountingBody body(bytes);
  auto r = c->push_blob("team/bad", oci::Digest::of("something else"), body);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.error().retryable()) << r.error().to_string();
  EXPECT_EQ(proxy.count("DELETE", "/blobs/uploads/"), 1);
}

}  // namespace
}  // namespace ocirelay
