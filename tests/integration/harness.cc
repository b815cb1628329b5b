// Integration-test harness implementation (see harness.h).
#include "tests/integration/harness.h"

#include <cstdio>

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "oci/digest.h"

#ifndef OCIRELAY_BINARY
#define OCIRELAY_BINARY "ocirelay"
#endif

namespace ocirelay::testing {

using json = nlohmann::json;

// ---- bytes -----------------------------------------------------------------------------

std::string tar_layer(const std::map<std::string, std::string>& files) {
  auto octal = [](char* field, std::size_t width, std::uint64_t v) {
    // width - 1 digits, zero padded, then NUL.
    for (std::size_t i = width - 1; i-- > 0; v >>= 3) field[i] = static_cast<char>('0' + (v & 7));
    field[width - 1] = '\0';
  };
  std::string out;
  for (const auto& [path, contents] : files) {
    char h[512] = {};
    std::snprintf(h, 100, "%s", path.c_str());
    octal(h + 100, 8, 0644);         // mode
    octal(h + 108, 8, 0);            // uid
    octal(h + 116, 8, 0);            // gid
    octal(h + 124, 12, contents.size());
    octal(h + 136, 12, 1700000000);  // mtime
    h[156] = '0';                    // regular file
    std::memcpy(h + 257, "ustar", 6);
    std::memcpy(h + 263, "00", 2);
    std::memset(h + 148, ' ', 8);    // checksum counts its own field as spaces
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    std::snprintf(h + 148, 8, "%06o", sum);
    out.append(h, sizeof h);
    out += contents;
    out.append((512 - contents.size() % 512) % 512, '\0');
  }
  out.append(1024, '\0');  // end of archive: two zero blocks
  return out;
}

std::string sha256_digest(std::string_view bytes) { return oci::Digest::of(bytes).str(); }
std::string sha256_hex(std::string_view bytes) { return sha256_digest(bytes).substr(7); }

std::string random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(s.data() + i, &v, std::min<std::size_t>(8, n - i));
  }
  return s;
}

// ---- images ----------------------------------------------------------------------------

namespace {
constexpr const char* kLayerType = "application/vnd.oci.image.layer.v1.tar";
constexpr const char* kConfigType = "application/vnd.oci.image.config.v1+json";
constexpr const char* kManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kIndexType = "application/vnd.oci.image.index.v1+json";
}  // namespace

ImageBuilder::ImageBuilder(fs::path layout_dir) : dir_(std::move(layout_dir)) {
  fs::create_directories(dir_ / "blobs/sha256");
  write_file(dir_ / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  write_index();
}

std::string ImageBuilder::add_blob(const std::string& bytes) {
  std::string d = sha256_digest(bytes);
  write_file(dir_ / "blobs/sha256" / d.substr(7), bytes);
  return d;
}

BuiltImage ImageBuilder::add_image(const std::string& tag, const std::vector<std::string>& layers,
                                   Platform platform) {
  BuiltImage img;
  img.tag = tag;
  img.media_type = kManifestType;
  json diff_ids = json::array(), layer_descs = json::array();
  for (const auto& l : layers) {
    std::string d = add_blob(l);
    diff_ids.push_back(d);
    layer_descs.push_back({{"mediaType", kLayerType}, {"digest", d}, {"size", l.size()}});
  }
  json config = {{"architecture", platform.architecture},
                 {"os", platform.os},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}},
                 {"config", json::object()}};
  std::string config_bytes = config.dump();
  std::string config_digest = add_blob(config_bytes);
  img.blobs.push_back(config_digest);
  for (const auto& l : layer_descs) img.blobs.push_back(l["digest"]);
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", kManifestType},
                   {"config", {{"mediaType", kConfigType}, {"digest", config_digest}, {"size", config_bytes.size()}}},
                   {"layers", layer_descs}};
  std::string mbytes = manifest.dump();
  img.digest = add_blob(mbytes);
  if (!tag.empty()) {
    std::erase_if(entries_, [&](const Entry& e) { return e.tag == tag; });  // re-tag
    entries_.push_back({kManifestType, img.digest, tag, mbytes.size()});
  }
  write_index();
  return img;
}

BuiltImage ImageBuilder::add_index(const std::string& tag,
                                   const std::vector<std::pair<BuiltImage, Platform>>& children) {
  BuiltImage idx;
  idx.tag = tag;
  idx.media_type = kIndexType;
  json manifests = json::array();
  for (const auto& [child, platform] : children) {
    std::string bytes = read_file(dir_ / "blobs/sha256" / child.digest.substr(7));
    manifests.push_back({{"mediaType", kManifestType},
                         {"digest", child.digest},
                         {"size", bytes.size()},
                         {"platform", {{"os", platform.os}, {"architecture", platform.architecture}}}});
    idx.children.push_back(child.digest);
    idx.blobs.insert(idx.blobs.end(), child.blobs.begin(), child.blobs.end());
  }
  json index = {{"schemaVersion", 2}, {"mediaType", kIndexType}, {"manifests", manifests}};
  std::string bytes = index.dump();
  idx.digest = add_blob(bytes);
  std::erase_if(entries_, [&](const Entry& e) { return e.tag == tag; });  // re-tag
  entries_.push_back({kIndexType, idx.digest, tag, bytes.size()});
  write_index();
  return idx;
}

void ImageBuilder::write_index() {
  json manifests = json::array();
  for (const auto& e : entries_)
    manifests.push_back({{"mediaType", e.media_type},
                         {"digest", e.digest},
                         {"size", e.size},
                         {"annotations", {{"org.opencontainers.image.ref.name", e.tag}}}});
  json index = {{"schemaVersion", 2}, {"manifests", manifests}};
  write_file(dir_ / "index.json", index.dump());
}

bool ImageBuilder::push(const std::string& registry_host, const std::string& repo,
                        const std::string& tag) {
  auto r = skopeo_copy("oci:" + dir_.string() + ":" + tag,
                       "docker://" + registry_host + "/" + repo + ":" + tag, {"--all"});
  if (r.exit_code != 0) ADD_FAILURE() << "skopeo push " << repo << ":" << tag << " failed:\n" << r.err;
  return r.exit_code == 0;
}

CommandResult skopeo_copy(const std::string& src, const std::string& dst,
                          const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                                   "--dest-tls-verify=false", "--retry-times=0", "--preserve-digests"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(src);
  args.push_back(dst);
  // An empty auth file: the tests never use the host's registry credentials.
  struct AuthFile {
    fs::path path = fs::temp_directory_path() /
                    ("ocirelay-it-auth-" + std::to_string(::getpid()) + ".json");
    AuthFile() { write_file(path, "{}"); }
    ~AuthFile() {
      std::error_code ec;
      fs::remove(path, ec);
    }
  };
  static const AuthFile auth;
  return run_command(args, 180s, {{"REGISTRY_AUTH_FILE", auth.path.string()}});
}

// ---- ocirelay --------------------------------------------------------------------------

OcirelayProcess::OcirelayProcess(const fs::path& dir, std::string upstream_name, std::string upstream_url)
    : dir_(dir), upstream_name_(std::move(upstream_name)), upstream_url_(std::move(upstream_url)) {
  fs::create_directories(dir_);
}

bool OcirelayProcess::start(std::uint16_t port) {
  port_ = port;  // 0: serve binds a port of the kernel's choosing, read back from its log
  std::string cfg = "listen: 127.0.0.1:" + std::to_string(port_) + "\n"
                    "store:\n  path: " + store_dir().string() + "\n";
  for (const auto& line : store_keys_) cfg += "  " + line + "\n";
  cfg += "upstreams:\n"
         "  - name: " + upstream_name_ + "\n"
         "    url: " + upstream_url_ + "\n"
         "    default: true\n"
         "    tag_ttl: " + std::to_string(tag_ttl_.count()) + "s\n";
  if (!auth_user_.empty())
    cfg += "    auth: {username: " + auth_user_ + ", password_file: " + auth_password_file_.string() + "}\n";
  if (!auth_yaml_.empty()) cfg += "    auth: " + auth_yaml_ + "\n";
  if (!upstream_type_.empty()) cfg += "    type: " + upstream_type_ + "\n";
  if (!tls_cert_.empty())
    cfg += "tls: {cert: " + tls_cert_.string() + ", key: " + tls_key_.string() + "}\n";
  cfg += "log:\n  level: debug\n  format: text\n";
  cfg += extra_config_;
  write_file(config_file(), cfg);
  ++generation_;
  const auto log_from = log_size(dir_ / "ocirelay.log");
  if (!proc_.start({OCIRELAY_BINARY, "serve", "--config", config_file().string()},
                   dir_ / "ocirelay.out", dir_ / "ocirelay.log"))
    return false;
  // run_serve logs "listening on <host>:<port>" with the port it bound.
  auto bound = wait_for_listening_port(proc_, dir_ / "ocirelay.log", log_from, "127.0.0.1");
  if (!bound) {
    ADD_FAILURE() << "ocirelay did not log the port it listens on:\n" << log();
    return false;
  }
  port_ = *bound;
  std::uint16_t p = port_;
  bool ready = wait_until(
      [&] {
        if (!proc_.running()) return true;  // exited: report below
        if (!tls_cert_.empty())
          return run_command({"curl", "-ksf", "-o", "/dev/null",
                              "https://127.0.0.1:" + std::to_string(p) + "/readyz"},
                             5s).exit_code == 0;
        return http_request(p, "GET", "/readyz", {}, 2s).status == 200;
      },
      30s);
  if (!ready || !proc_.running()) {
    ADD_FAILURE() << "ocirelay did not become ready on port " << port_ << ":\n" << log();
    return false;
  }
  return true;
}

void OcirelayProcess::stop() { proc_.stop(); }
void OcirelayProcess::kill9() { proc_.kill9(); }
bool OcirelayProcess::wait_for_log(const std::string& needle, std::chrono::milliseconds timeout) {
  return wait_until([&] { return read_file(dir_ / "ocirelay.log").find(needle) != std::string::npos; },
                    timeout);
}

std::string OcirelayProcess::log() {
  return read_file(dir_ / "ocirelay.log") + "[ocirelay " + proc_.describe() + "]\n";
}

CommandResult OcirelayProcess::run(const std::vector<std::string>& subcommand_args) const {
  std::vector<std::string> args = {OCIRELAY_BINARY};
  args.insert(args.end(), subcommand_args.begin(), subcommand_args.end());
  args.push_back("--config");
  args.push_back(config_file().string());
  return run_command(args, 300s);
}

std::optional<double> metric_value(const std::string& exposition, const std::string& series) {
  const std::string line_start = series + " ";
  std::size_t at = exposition.starts_with(line_start) ? 0 : exposition.find("\n" + line_start);
  if (at == std::string::npos) return std::nullopt;
  if (at != 0) ++at;  // past the newline
  const char* value = exposition.c_str() + at + line_start.size();
  char* end = nullptr;
  double v = std::strtod(value, &end);
  if (end == value) return std::nullopt;
  return v;
}

std::vector<std::pair<std::string, std::string>> stop_and_collect_outputs(OcirelayProcess& relay) {
  std::vector<std::pair<std::string, std::string>> outputs = {
      {"metrics", http_request(relay.port(), "GET", "/metrics").body}};
  relay.stop();
  outputs.emplace_back("serve log", relay.log());
  for (const auto& e : fs::recursive_directory_iterator(relay.store_dir()))
    if (e.is_regular_file()) outputs.emplace_back(e.path().string(), read_file(e.path()));
  return outputs;
}

// ---- containerd ------------------------------------------------------------------------

ContainerdProcess::ContainerdProcess(const fs::path& dir) : dir_(dir) { fs::create_directories(dir_); }

bool ContainerdProcess::start() {
  std::string cfg =
      "version = 2\n"
      "root = \"" + (dir_ / "root").string() + "\"\n"
      "state = \"" + (dir_ / "state").string() + "\"\n"
      "disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\", "
      "\"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\", "
      "\"io.containerd.snapshotter.v1.aufs\", \"io.containerd.internal.v1.opt\"]\n"
      "[grpc]\n  address = \"" + address() + "\"\n"
      "[ttrpc]\n  address = \"" + address() + ".ttrpc\"\n"
      "[debug]\n  address = \"\"\n"
      "[metrics]\n  address = \"\"\n";
  write_file(dir_ / "config.toml", cfg);
  if (!proc_.start({"containerd", "--config", (dir_ / "config.toml").string()}, dir_ / "containerd.out",
                   dir_ / "containerd.log"))
    return false;
  bool up = wait_until(
      [&] { return run_command({"ctr", "--address", address(), "version"}, 5s).exit_code == 0; }, 30s, 200ms);
  if (!up) ADD_FAILURE() << "containerd did not start:\n" << read_file(dir_ / "containerd.log");
  return up;
}

void ContainerdProcess::stop() { proc_.stop(); }

fs::path ContainerdProcess::write_hosts(const std::string& upstream, const std::string& mirror_host) {
  fs::path hosts_dir = dir_ / "hosts";
  write_file(hosts_dir / upstream / "hosts.toml",
             "server = \"http://" + upstream + "\"\n\n"
             "[host.\"http://" + mirror_host + "\"]\n"
             "  capabilities = [\"pull\", \"resolve\"]\n");
  return hosts_dir;
}

CommandResult ContainerdProcess::pull(const std::string& ref, const fs::path& hosts_dir,
                                      const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"ctr", "--address", address(), "images", "pull",
                                   "--snapshotter", "native", "--hosts-dir", hosts_dir.string(),
                                   "--plain-http"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(ref);
  return run_command(args, 180s);
}

CommandResult ContainerdProcess::ctr(const std::vector<std::string>& args) {
  std::vector<std::string> all = {"ctr", "--address", address()};
  all.insert(all.end(), args.begin(), args.end());
  return run_command(all, 180s);
}

CommandResult ContainerdProcess::fetch(const std::string& ref, const fs::path& hosts_dir,
                                       const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"ctr", "--address", address(), "content", "fetch",
                                   "--hosts-dir", hosts_dir.string(), "--plain-http"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(ref);
  return run_command(args, 180s);
}

}  // namespace ocirelay::testing
