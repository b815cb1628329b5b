// Upstream trouble the mirror must survive without caching anything wrong: an upstream that
// dies in the middle of a blob, one that sends no Content-Length or wrong bytes, and
// credentials that must never leak.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "adapters/encoding.h"
#include "tests/integration/fixture.h"
#include "tests/support/loopback_http.h"

namespace ocirelay::testing {
namespace {

// An upstream that answers a blob GET with the full Content-Length, sends only the first
// half of the body and drops the connection: a registry process dying mid-transfer. (The
// real registry cannot be stopped at an exact byte; this stands in for that one fault.)
// After `heal()`, it serves the whole blob.
class DyingUpstream {
 public:
  explicit DyingUpstream(std::string blob) : blob_(std::move(blob)) {
    fd_ = testing::listen_loopback(port_);
    thread_ = std::thread([this] { serve(); });
  }
  ~DyingUpstream() {
    stop_ = true;
    release();
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void heal() { healthy_ = true; }
  int blob_gets() const { return blob_gets_; }
  // From now on a healthy blob answer stops after the first half until release().
  void hold_second_half() { hold_ = true; }
  // Blob bodies go out chunked, without Content-Length (as some registries and proxies
  // send them); a dying transfer then also lacks the last chunk.
  void send_chunked() { chunked_ = true; }
  // Healthy answers carry the blob with its last byte flipped.
  void corrupt() { corrupt_ = true; }
  void release() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }

 private:
  void serve() {
    while (!stop_) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<std::size_t>(n));
      }
      std::string head, body;
      if (req.rfind("GET /v2/", 0) == 0 && req.find("/blobs/") != std::string::npos) {
        ++blob_gets_;
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" +
               (chunked_ ? std::string("Transfer-Encoding: chunked")
                         : "Content-Length: " + std::to_string(blob_.size())) +
               "\r\nConnection: close\r\n\r\n";
        body = healthy_ ? blob_ : blob_.substr(0, blob_.size() / 2);
        if (healthy_ && corrupt_) body.back() ^= 1;
      } else {
        head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      }
      auto send = [c](const std::string& out) {
        for (std::size_t off = 0; off < out.size();) {
          // MSG_NOSIGNAL: ocirelay may close first (it abandons a wrong stream), and a
          // SIGPIPE would kill the test binary.
          ssize_t n = ::send(c, out.data() + off, out.size() - off, MSG_NOSIGNAL);
          if (n <= 0) return;
          off += static_cast<std::size_t>(n);
        }
      };
      const bool whole = body.size() == blob_.size();
      // With chunked framing a part is one chunk, and only a whole body gets the last chunk.
      auto frame = [&](const std::string& part, bool last) {
        if (!chunked_ || head.find("200 OK") == std::string::npos) return part;
        std::string out;
        if (!part.empty()) {
          char hex[20];
          std::snprintf(hex, sizeof hex, "%zx\r\n", part.size());
          out = hex + part + "\r\n";
        }
        return last ? out + "0\r\n\r\n" : out;
      };
      if (hold_ && whole) {
        send(head + frame(body.substr(0, body.size() / 2), false));
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return released_ || stop_; });
        send(frame(body.substr(body.size() / 2), true));
      } else {
        send(head + frame(body, whole));
      }
      ::close(c);  // mid-body when unhealthy: the client sees a short read
    }
  }

  std::string blob_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false}, healthy_{false}, hold_{false}, chunked_{false}, corrupt_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;  // guarded by mu_
  std::atomic<int> blob_gets_{0};
  std::thread thread_;
};

// One random blob on a DyingUpstream with an ocirelay in front; set the upstream's
// behaviour, then start().
struct BlobScenario {
  BlobScenario(std::size_t size, std::uint64_t seed)
      : blob(random_bytes(size, seed)), digest(sha256_digest(blob)), upstream(blob) {}
  bool start() { return relay.start(); }
  HttpResponse get(const std::map<std::string, std::string>& headers = {},
                   std::chrono::milliseconds timeout = 30s) {
    return http_request(relay.port(), "GET", "/v2/team/app/blobs/" + digest, headers, timeout);
  }
  bool cached() const { return fs::exists(relay.store_dir() / "blobs/sha256" / digest.substr(7)); }
  void expect_fsck_clean() const {
    auto fsck = relay.run({"fsck"});
    EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  }

  const std::string blob, digest;
  DyingUpstream upstream;
  TempDir tmp;
  OcirelayProcess relay{tmp / "ocirelay", kUpstream, upstream.url()};
};

TEST(UpstreamTroubleTest, UpstreamDyingMidBlobCachesNothingAndTheNextPullWorks) {
  BlobScenario t(4 << 20, 77);
  ASSERT_TRUE(t.start());

  auto first = t.get();
  EXPECT_FALSE(first.status == 200 && first.body.size() == t.blob.size())
      << "the client received a complete body from a transfer that died half-way";
  EXPECT_FALSE(t.cached()) << "a half-fetched blob was cached";
  t.expect_fsck_clean();

  t.upstream.heal();
  auto second = t.get();
  ASSERT_EQ(second.status, 200) << t.relay.log();
  EXPECT_EQ(sha256_digest(second.body), t.digest);
  EXPECT_EQ(t.upstream.blob_gets(), 2) << "the failed fill should not be remembered as done";
  // Now a hit: served from disk, no further upstream request.
  auto third = t.get();
  EXPECT_EQ(sha256_digest(third.body), t.digest);
  EXPECT_EQ(t.upstream.blob_gets(), 2);
}

// Range on a blob still being fetched: a resuming client gets its 206 from the bytes
// already on disk while the upstream holds back the rest, and both share one upstream GET.
TEST(UpstreamTroubleTest, RangeRequestIsServedFromABlobStillBeingFetched) {
  BlobScenario t(4 << 20, 78);
  t.upstream.heal();
  t.upstream.hold_second_half();
  ASSERT_TRUE(t.start());

  auto whole = std::async(std::launch::async, [&] { return t.get(); });
  // Answered while the second half is still held upstream (bounded: a server that waits
  // for the whole blob times out here).
  auto part = t.get({{"Range", "bytes=1000-1999"}}, 20s);
  ASSERT_EQ(part.status, 206) << t.relay.log();
  EXPECT_EQ(part.headers["content-range"], "bytes 1000-1999/" + std::to_string(t.blob.size()));
  EXPECT_EQ(part.body, t.blob.substr(1000, 1000));
  EXPECT_EQ(whole.wait_for(0s), std::future_status::timeout) << "the fill finished early";

  t.upstream.release();
  auto full = whole.get();
  ASSERT_EQ(full.status, 200) << t.relay.log();
  EXPECT_EQ(sha256_digest(full.body), t.digest);
  EXPECT_EQ(t.upstream.blob_gets(), 1);
}

// An upstream that sends no Content-Length: the mirror cannot announce a size, so it streams
// the blob chunked while it arrives instead of holding the client until the end, and sends
// the last chunk only once the digest checked out.
TEST(UpstreamTroubleTest, BlobWithoutContentLengthStreamsChunkedWhileItArrives) {
  BlobScenario t(4 << 20, 79);
  t.upstream.heal();
  t.upstream.send_chunked();
  t.upstream.hold_second_half();
  ASSERT_TRUE(t.start());

  auto whole = std::async(std::launch::async, [&] { return t.get(); });
  // While the upstream holds the second half, a client reading for 3 s gets the first half.
  auto early = t.get({}, 3s);
  ASSERT_EQ(early.status, 200) << t.relay.log();
  EXPECT_EQ(early.headers["transfer-encoding"], "chunked");
  EXPECT_FALSE(early.complete);
  EXPECT_EQ(early.body.size(), t.blob.size() / 2);
  EXPECT_TRUE(early.body == t.blob.substr(0, t.blob.size() / 2));

  t.upstream.release();
  auto full = whole.get();
  ASSERT_EQ(full.status, 200) << t.relay.log();
  EXPECT_TRUE(full.complete);
  EXPECT_EQ(sha256_digest(full.body), t.digest);
  // The last chunk went out on verification, before the store commit. A HEAD needs the
  // size, which this upstream tells only at the end: it waits for the fill to finish.
  auto head = http_request(t.relay.port(), "HEAD", "/v2/team/app/blobs/" + t.digest);
  EXPECT_EQ(head.status, 200) << t.relay.log();
  EXPECT_EQ(head.headers["content-length"], std::to_string(t.blob.size()));
  // Stored: answered from disk with its size, without asking the upstream again.
  auto hit = t.get();
  EXPECT_EQ(hit.headers["content-length"], std::to_string(t.blob.size()));
  EXPECT_EQ(sha256_digest(hit.body), t.digest);
  EXPECT_EQ(t.upstream.blob_gets(), 1);
}

TEST(UpstreamTroubleTest, ChunkedBlobWithWrongBytesNeverEndsCleanlyAndIsNotCached) {
  BlobScenario t(1 << 20, 80);
  t.upstream.heal();
  t.upstream.send_chunked();
  t.upstream.corrupt();
  ASSERT_TRUE(t.start());

  auto got = t.get();
  EXPECT_FALSE(got.status == 200 && got.complete)
      << "a client received a cleanly ended body of bytes that do not match " << t.digest;
  EXPECT_FALSE(t.cached());
  t.expect_fsck_clean();
}

// Streamed uncached (a quota the blob cannot fit), wrong bytes still never reach a client
// as a complete body: the last byte waits for the digest, as in a fill.
TEST(UpstreamTroubleTest, UncachedStreamOfWrongBytesNeverEndsCleanly) {
  BlobScenario t(4 << 20, 82);
  t.upstream.heal();
  t.upstream.corrupt();
  t.relay.add_store_key("max_size: 1MiB");
  ASSERT_TRUE(t.start());
  auto got = t.get();
  EXPECT_FALSE(got.status == 200 && got.complete) << "a wrong blob was delivered complete";
  EXPECT_LT(got.body.size(), t.blob.size());
  EXPECT_TRUE(t.relay.wait_for_log("cache=bypass")) << t.relay.log();
  EXPECT_FALSE(t.cached());
  t.expect_fsck_clean();
}

// One store, one writer: while `serve` runs, gc, warm and fsck --repair are refused naming
// its pid, and a plain fsck (read-only) checks the store without touching the download in
// progress, which then completes.
TEST(StoreLockTest, SecondWriterIsRefusedAndFsckLeavesInProgressDownloadsAlone) {
  BlobScenario t(4 << 20, 81);
  t.upstream.heal();
  t.upstream.hold_second_half();
  ASSERT_TRUE(t.start());
  auto whole = std::async(std::launch::async, [&] { return t.get(); });
  ASSERT_TRUE(wait_until([&] { return !fs::is_empty(t.relay.store_dir() / "ingest"); }, 20s))
      << "the fill never started: " << t.relay.log();

  const std::string owner = "store in use by pid " + std::to_string(t.relay.process().pid());
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"gc"}, {"fsck", "--repair"},
        {"warm", std::string(kUpstream) + "/team/app:1.0"}}) {
    auto r = t.relay.run(cmd);
    EXPECT_NE(r.exit_code, 0) << cmd[0] << ": " << r.out << r.err;
    EXPECT_NE(r.err.find(owner), std::string::npos) << cmd[0] << ": " << r.err;
  }
  auto fsck = t.relay.run({"fsck"});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  EXPECT_FALSE(fs::is_empty(t.relay.store_dir() / "ingest")) << "fsck removed the download in progress";

  t.upstream.release();
  auto full = whole.get();
  ASSERT_EQ(full.status, 200) << t.relay.log();
  EXPECT_EQ(sha256_digest(full.body), t.digest);
  EXPECT_TRUE(wait_until([&] { return t.cached(); }, 10s)) << t.relay.log();
  EXPECT_EQ(t.upstream.blob_gets(), 1);
}

// Invariant 7: an upstream password reaches no log line (at debug level), no metric, no
// error and no file in the store, whether the credentials are right or wrong.
TEST(SecretsTest, UpstreamPasswordReachesNoLogMetricOrStoreFile) {
  if (!require_programs({"docker-registry", "skopeo", "htpasswd"})) return;
  const std::string user = "mirror";
  const std::string password = "pw-" + sha256_hex(random_bytes(32, 4242)).substr(0, 24);
  TempDir tmp;
  RegistryProcess registry(tmp / "registry", RegistryOptions{user, password});
  ASSERT_TRUE(registry.start());
  ImageBuilder images(tmp / "layout");
  BuiltImage img = images.add_image("1.0", {random_bytes(64 << 10, 5)});
  auto push = skopeo_copy("oci:" + images.dir().string() + ":1.0",
                          "docker://" + registry.host() + "/team/app:1.0",
                          {"--all", "--dest-creds", user + ":" + password});
  ASSERT_EQ(push.exit_code, 0) << push.err;

  write_file(tmp / "password", password + "\n");
  OcirelayProcess relay(tmp / "ocirelay", kUpstream, registry.url());
  relay.set_upstream_auth(user, tmp / "password");
  ASSERT_TRUE(relay.start());
  auto pulled = skopeo_copy("docker://" + relay.host() + "/team/app:1.0", "dir:" + (tmp / "out").string());
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err << relay.log();
  EXPECT_EQ(sha256_digest(read_file(tmp / "out" / "manifest.json")), img.digest);

  // Wrong credentials: the error a client and the log see must not echo them either.
  const std::string wrong = password + "-wrong";
  write_file(tmp / "wrong-password", wrong + "\n");
  OcirelayProcess refused(tmp / "refused", kUpstream, registry.url());
  refused.set_upstream_auth(user, tmp / "wrong-password");
  ASSERT_TRUE(refused.start());
  auto denied = http_request(refused.port(), "GET", "/v2/team/app/manifests/1.0");
  EXPECT_GE(denied.status, 400);

  // `ocirelay check` reports both registries by how they authenticate, and fails for the
  // refused one, naming the cause.
  auto checked = relay.run({"check"});
  EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  EXPECT_NE(checked.out.find(std::string(kUpstream) + "  generic  basic"), std::string::npos) << checked.out;
  auto check_refused = refused.run({"check"});
  EXPECT_EQ(check_refused.exit_code, 1) << check_refused.out << check_refused.err;
  EXPECT_NE(check_refused.out.find("unauthorized"), std::string::npos) << check_refused.out;

  std::vector<std::pair<std::string, std::string>> outputs = {
      {"check output", checked.out + checked.err},
      {"refused check output", check_refused.out + check_refused.err},
      {"serve log", relay.log()},
      {"metrics", http_request(relay.port(), "GET", "/metrics").body},
      {"refused serve log", refused.log()},
      {"refused error body", denied.body},
      {"refused metrics", http_request(refused.port(), "GET", "/metrics").body}};
  relay.stop();
  refused.stop();
  for (const auto& dir : {relay.store_dir(), refused.store_dir()})
    for (const auto& e : fs::recursive_directory_iterator(dir))
      if (e.is_regular_file()) outputs.emplace_back(e.path().string(), read_file(e.path()));
  ASSERT_GT(outputs.size(), 8u) << "the store should hold files to check";
  for (const auto& secret : {password, wrong, adapters::base64_encode(user + ":" + password), adapters::base64_encode(user + ":" + wrong)})
    for (const auto& [where, text] : outputs)
      EXPECT_EQ(text.find(secret), std::string::npos) << "a secret leaked into " << where;
}

}  // namespace
}  // namespace ocirelay::testing
