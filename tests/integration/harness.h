// Integration-test harness: the real programs the tests drive besides docker-registry
// (skopeo, containerd/ctr, ocirelay) and image building. Temp dirs, processes, polling,
// loopback HTTP and RegistryProcess come from tests/support/. Every helper fails the current
// test (gtest ADD_FAILURE) rather than throwing.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/support/files.h"
#include "tests/support/loopback_http.h"
#include "tests/support/process.h"
#include "tests/support/registry_process.h"
#include "tests/support/requirements.h"

namespace ocirelay::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string sha256_hex(std::string_view bytes);
std::string sha256_digest(std::string_view bytes);  // "sha256:<hex>"
// Deterministic pseudo-random bytes (so failures reproduce).
std::string random_bytes(std::size_t n, std::uint64_t seed);
// A ustar archive of regular files (path -> contents, mode 0644): a layer containerd can
// unpack.
std::string tar_layer(const std::map<std::string, std::string>& files);

// Builds an OCI image layout directory and pushes tags from it with skopeo.
struct Platform {
  std::string os = "linux", architecture = "amd64";
};
struct BuiltImage {
  std::string tag;
  std::string digest;         // manifest (or index) digest
  std::string media_type;
  std::vector<std::string> blobs;     // config + layers (image) or all children's (index)
  std::vector<std::string> children;  // index children
};
class ImageBuilder {
 public:
  explicit ImageBuilder(fs::path layout_dir);
  // Stores a blob; returns its digest.
  std::string add_blob(const std::string& bytes);
  // An image manifest with a config and `layers` (raw bytes; media type ...layer.v1.tar).
  BuiltImage add_image(const std::string& tag, const std::vector<std::string>& layers,
                       Platform platform = {});
  // A multi-arch index over images built with add_image (tag empty: untagged children).
  BuiltImage add_index(const std::string& tag, const std::vector<std::pair<BuiltImage, Platform>>& children);
  // skopeo copy --all oci:<dir>:<tag> docker://<registry_host>/<repo>:<tag>
  bool push(const std::string& registry_host, const std::string& repo, const std::string& tag);
  const fs::path& dir() const { return dir_; }

 private:
  void write_index();
  struct Entry {
    std::string media_type, digest, tag;
    std::size_t size;
  };
  fs::path dir_;
  std::vector<Entry> entries_;
};

// The ocirelay binary under test, configured with one default upstream named `upstream_name`.
class OcirelayProcess {
 public:
  OcirelayProcess(const fs::path& dir, std::string upstream_name, std::string upstream_url);
  fs::path store_dir() const { return dir_ / "store"; }
  fs::path config_file() const { return dir_ / "ocirelay.yaml"; }
  // Upstream credentials written into the config by the next start().
  void set_upstream_auth(std::string username, fs::path password_file) {
    auth_user_ = std::move(username);
    auth_password_file_ = std::move(password_file);
  }
  // Any other credential method: the YAML flow mapping of the upstream's `auth:` key, e.g.
  // "{aws: {region: us-east-1}}", and its `type:` (empty: inferred), from the next start().
  void set_upstream_auth_yaml(std::string auth_flow, std::string type = {}) {
    auth_yaml_ = std::move(auth_flow);
    upstream_type_ = std::move(type);
  }
  // Serve HTTPS with this certificate and key from the next start().
  void set_tls(fs::path cert, fs::path key) {
    tls_cert_ = std::move(cert);
    tls_key_ = std::move(key);
  }
  // The upstream's `tag_ttl` from the next start() (default 5 minutes); 0: every tag
  // request revalidates upstream, so the stale path runs as soon as the upstream is down.
  void set_tag_ttl(std::chrono::seconds ttl) { tag_ttl_ = ttl; }
  // More keys of the `store:` section from the next start(), e.g. "max_size: 1MiB".
  void add_store_key(std::string line) { store_keys_.push_back(std::move(line)); }
  // Top-level YAML appended to the config from the next start(), e.g.
  // "local:\n  repositories: [\"apps/**\"]\n".
  void add_config(std::string yaml) { extra_config_ += std::move(yaml); }
  // Writes the config, starts `ocirelay serve` on `port` (0: a port it binds itself and
  // logs, see port()), waits for /readyz.
  bool start(std::uint16_t port = 0);
  // Starts again on the port of the last start() (which this relay held until it stopped).
  bool restart() { return start(port_); }
  void stop();
  void kill9();
  std::uint16_t port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  // Its stderr log, followed by how it ended when it is no longer running ("killed by
  // signal 11"): what a failing test should print.
  std::string log();
  // Waits (bounded) until its log holds `needle`: a request's log line is written after
  // its response went out, so a test that just got the response may be early.
  bool wait_for_log(const std::string& needle, std::chrono::milliseconds timeout = 10s);
  // Runs another ocirelay subcommand on the same store/config, e.g. {"fsck"}.
  CommandResult run(const std::vector<std::string>& subcommand_args) const;
  Process& process() { return proc_; }

 private:
  fs::path dir_;
  std::string upstream_name_, upstream_url_;
  std::string auth_user_;
  fs::path auth_password_file_;
  std::string auth_yaml_, upstream_type_;
  std::vector<std::string> store_keys_;
  std::string extra_config_;
  fs::path tls_cert_, tls_key_;
  std::chrono::seconds tag_ttl_ = std::chrono::minutes(5);
  std::uint16_t port_ = 0;
  Process proc_;
  int generation_ = 0;
};

// One sample of a Prometheus text exposition (/metrics): `series` is the metric name with
// its labels as exposed ("ocirelay_cache_hits_total{kind=\"blob\"}"); nullopt when absent.
std::optional<double> metric_value(const std::string& exposition, const std::string& series);

// For secret scans: what a running relay exposes and wrote, as (where, text) pairs: its
// /metrics, then, after stopping it, its log and every file of its store.
std::vector<std::pair<std::string, std::string>> stop_and_collect_outputs(OcirelayProcess& relay);

// containerd with its own root/state/socket under a temp dir (needs root).
class ContainerdProcess {
 public:
  explicit ContainerdProcess(const fs::path& dir);
  bool start();
  void stop();
  // Writes <hosts_dir>/<upstream>/hosts.toml sending `upstream` pulls to the mirror.
  fs::path write_hosts(const std::string& upstream, const std::string& mirror_host);
  // ctr content fetch: content only, no unpack (works for layers that are not tar files).
  CommandResult fetch(const std::string& ref, const fs::path& hosts_dir,
                      const std::vector<std::string>& extra = {});
  // ctr images pull with the native snapshotter: fetch, then unpack every layer.
  CommandResult pull(const std::string& ref, const fs::path& hosts_dir,
                     const std::vector<std::string>& extra = {});
  // Any other ctr command against this containerd, e.g. {"images", "push", ...}.
  CommandResult ctr(const std::vector<std::string>& args);
  // Where the native snapshotter unpacked its snapshots (one directory per layer).
  fs::path snapshots_dir() const { return dir_ / "root/io.containerd.snapshotter.v1.native/snapshots"; }
  std::string address() const { return (dir_ / "containerd.sock").string(); }

 private:
  fs::path dir_;
  Process proc_;
};

// skopeo copy docker://<host>/<repo>:<tag> dir:<out> (plain HTTP).
CommandResult skopeo_copy(const std::string& src, const std::string& dst,
                          const std::vector<std::string>& extra = {});

}  // namespace ocirelay::testing
