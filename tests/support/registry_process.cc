// RegistryProcess: docker-registry with a generated config (see registry_process.h).
#include "tests/support/registry_process.h"

#include <gtest/gtest.h>

#include <sstream>

#include "tests/support/loopback_http.h"

namespace ocirelay::testing {

RegistryProcess::RegistryProcess(const fs::path& dir, RegistryOptions options)
    : dir_(dir), options_(std::move(options)) {
  fs::create_directories(dir_);
}

RegistryProcess::RegistryProcess(RegistryOptions options)
    : own_dir_(std::make_unique<TempDir>()), dir_(own_dir_->path()), options_(std::move(options)) {}

RegistryProcess::~RegistryProcess() { stop(); }

bool RegistryProcess::write_config() {
  std::string cfg = "version: 0.1\n"
                    "log:\n  level: info\n  accesslog:\n    disabled: false\n"
                    "storage:\n  filesystem:\n    rootdirectory: " + (dir_ / "data").string() + "\n"
                    "  delete:\n    enabled: true\n"
                    "http:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n"
                    // Fixed: upload sessions (their signed _state) survive a restart.
                    "  secret: ocirelay-test-upload-state\n";
  if (options_.token_auth) {
    const auto& t = *options_.token_auth;
    cfg += "auth:\n  token:\n    realm: " + t.realm + "\n    service: " + t.service +
           "\n    issuer: " + t.issuer + "\n    rootcertbundle: " + t.rootcertbundle.string() +
           "\n";
  } else if (!options_.username.empty()) {
    // A bcrypt entry; the password passes through argv of a short-lived local command only.
    auto r = run_command({"htpasswd", "-Bbn", options_.username, options_.password}, 30s);
    if (r.exit_code != 0) {
      ADD_FAILURE() << "htpasswd failed (exit " << r.exit_code << "):\n" << r.err;
      return false;
    }
    write_file(dir_ / "htpasswd", r.out);
    cfg += "auth:\n  htpasswd:\n    realm: ocirelay-test\n    path: " + (dir_ / "htpasswd").string() +
           "\n";
  }
  cfg += extra_config_;
  write_file(dir_ / "config.yml", cfg);
  return true;
}

bool RegistryProcess::start(std::uint16_t port) {
  port_ = port;  // 0: the registry binds a port of the kernel's choosing
  if (!write_config()) return false;
  const auto log_from = log_size(dir_ / "registry.log");
  if (!proc_.start({"docker-registry", "serve", (dir_ / "config.yml").string()},
                   dir_ / "access.log", dir_ / "registry.log"))
    return false;
  // distribution logs `listening on <addr>` with the address of its bound listener
  // (registry.ListenAndServe), so port 0 reads back as the real port.
  auto bound = wait_for_listening_port(proc_, dir_ / "registry.log", log_from, "127.0.0.1", 20s);
  if (!bound) {
    ADD_FAILURE() << "docker-registry did not log the port it listens on [" << proc_.describe()
                  << "]:\n" << log();
    stop();
    return false;
  }
  port_ = *bound;
  const int ready_status = options_.username.empty() && !options_.token_auth ? 200 : 401;
  const std::uint16_t p = port_;
  bool up = wait_until(
      [&] {
        if (!proc_.running()) return true;  // exited: report below
        return http_request(p, "GET", "/v2/", {}, 2s).status == ready_status;
      },
      20s);
  if (!up || !proc_.running()) {
    ADD_FAILURE() << "docker-registry did not answer /v2/ with " << ready_status << " on port "
                  << port_ << " [" << proc_.describe() << "]:\n" << log();
    stop();
    return false;
  }
  return true;
}

void RegistryProcess::stop() { proc_.stop(); }

std::string RegistryProcess::log() const { return read_file(dir_ / "registry.log"); }

std::string RegistryProcess::access_log() const { return read_file(dir_ / "access.log"); }

int RegistryProcess::count_requests(const std::string& needle) const {
  std::istringstream in(access_log());
  std::string line;
  int n = 0;
  while (std::getline(in, line))
    if (line.find(needle) != std::string::npos) ++n;
  return n;
}

fs::path RegistryProcess::blob_data_path(const std::string& digest) const {
  std::string hex = digest.substr(7);
  return dir_ / "data/docker/registry/v2/blobs/sha256" / hex.substr(0, 2) / hex / "data";
}

}  // namespace ocirelay::testing
