// A real distribution registry (`docker-registry serve`, 2.8) for tests: filesystem storage
// and logs in a directory, a port it binds itself (port 0), optional Basic auth (htpasswd)
// or token auth (a TokenServer's certificate as the trusted root), the access log readable
// for request counting; stopped by its pid.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "tests/support/files.h"
#include "tests/support/process.h"

namespace ocirelay::testing {

// The registry's `auth: token:` section: it then accepts only Bearer JWTs signed by a key
// whose certificate chains to `rootcertbundle`, issued by `issuer` for `service`, and
// sends clients to `realm` (see tests/support/token_server.h).
struct TokenAuthOptions {
  std::string realm;
  std::string service;
  std::string issuer;
  fs::path rootcertbundle;
};

struct RegistryOptions {
  // Non-empty: the registry requires Basic auth with this user (htpasswd, bcrypt).
  std::string username;
  std::string password;
  // Set: token auth instead (username/password then unused).
  std::optional<TokenAuthOptions> token_auth = std::nullopt;
};

// Not thread-safe. Failures to start are reported with gtest ADD_FAILURE (with the
// registry's log) and a false return.
class RegistryProcess {
 public:
  // Config, storage and logs under `dir` (created; removing it is the caller's job).
  explicit RegistryProcess(const fs::path& dir, RegistryOptions options = {});
  // Config, storage and logs in a temp dir of its own, removed on destruction.
  explicit RegistryProcess(RegistryOptions options = {});
  ~RegistryProcess();  // stop()
  RegistryProcess(const RegistryProcess&) = delete;
  RegistryProcess& operator=(const RegistryProcess&) = delete;

  // Starts the registry on `port` (0: it binds a port of the kernel's choosing, read back
  // from its log) and waits, bounded, until /v2/ answers (200, or 401 with auth). False
  // when it exits or does not answer in time.
  bool start(std::uint16_t port = 0);
  // SIGTERM, then SIGKILL after a grace period; reaps the child. Idempotent.
  void stop();
  // Starts again on the same port and storage (after stop()).
  bool restart() { return start(port_); }
  // YAML appended to the registry's config from the next start() on (e.g. its
  // `notifications:` section).
  void set_extra_config(std::string yaml) { extra_config_ = std::move(yaml); }

  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  const fs::path& dir() const { return dir_; }
  // The registry's own log (stderr): what a failing test should print.
  std::string log() const;
  // The access log (stdout).
  std::string access_log() const;
  // Access-log lines containing `needle`, e.g. "\"GET /v2/team/app/blobs/".
  int count_requests(const std::string& needle) const;
  // Path of a stored blob's data file inside the registry's storage.
  fs::path blob_data_path(const std::string& digest) const;
  Process& process() { return proc_; }

 private:
  bool write_config();

  std::unique_ptr<TempDir> own_dir_;  // first: removed after the process stopped
  fs::path dir_;
  RegistryOptions options_;
  std::uint16_t port_ = 0;
  std::string extra_config_;
  Process proc_;
};

}  // namespace ocirelay::testing
