// docker config.json resolution and the credential helper exec protocol
// (docker/cli cli/config, docker-credential-helpers client.Get).
#include "adapters/docker_config.h"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <vector>

#include "adapters/encoding.h"
#include "oci/json.h"

extern char** environ;

namespace ocirelay::adapters {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// docker's key for Docker Hub (registry.IndexServer).
constexpr std::string_view kDockerHubKey = "https://index.docker.io/v1/";
// What helpers print on stdout (exit status non-zero) when they hold nothing for a server.
constexpr std::string_view kNotFoundMessage = "credentials not found";
constexpr std::size_t kMaxHelperOutput = 1 << 20;

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// credentials.ConvertToHostname: "https://host:port/v1/" -> "host:port"; a bare key is
// cut at its first '/'.
std::string convert_to_hostname(std::string_view key) {
  if (auto p = key.find("://"); p != std::string_view::npos) key.remove_prefix(p + 3);
  return std::string(key.substr(0, key.find('/')));
}

// The server address docker looks up for a registry host (GetAuthConfigKey).
std::string server_address(std::string_view registry_host) {
  std::string host = convert_to_hostname(registry_host);
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io") {
    return std::string(kDockerHubKey);
  }
  return host;
}

bool valid_helper_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == '.';
  });
}

// A short diagnostic from helper output that may hold secrets: its first non-empty line,
// capped, with every long token-like word (base64, hex, JWT segments) replaced.
std::string sanitized_excerpt(std::string_view out) {
  std::istringstream in{std::string(out)};
  std::string line;
  while (std::getline(in, line)) {
    line = trim(line);
    if (!line.empty()) break;
  }
  if (line.starts_with('{')) return "(JSON output withheld)";
  std::string result;
  std::size_t i = 0;
  auto token_char = [](unsigned char c) {
    return std::isalnum(c) || c == '+' || c == '/' || c == '=' || c == '_' || c == '-';
  };
  while (i < line.size()) {
    if (!token_char(line[i])) {
      result.push_back(std::isprint(static_cast<unsigned char>(line[i])) ? line[i] : '?');
      ++i;
      continue;
    }
    std::size_t j = i;
    bool digit = false, alpha = false;
    while (j < line.size() && token_char(line[j])) {
      digit |= std::isdigit(static_cast<unsigned char>(line[j])) != 0;
      alpha |= std::isalpha(static_cast<unsigned char>(line[j])) != 0;
      ++j;
    }
    if (j - i >= 16 && digit && alpha) {
      result += "[redacted]";
    } else {
      result.append(line, i, j - i);
    }
    i = j;
  }
  if (result.size() > 160) result = result.substr(0, 157) + "...";
  return result;
}

struct HelperRun {
  int exit_code = -1;  // -1: killed (timeout)
  std::string out, err;
};

// Runs `program args...`, writes `input` to its stdin, collects stdout and stderr until it
// exits or `timeout` passes (then SIGKILL, by its pid). spawn errors come back as errno.
Result<HelperRun> run_program(const std::string& program, const std::vector<std::string>& args,
                              const std::string& input, std::chrono::milliseconds timeout) {
  int in_pair[2], out_pipe[2], err_pipe[2];
  // stdin is a socket so writing to a helper that already exited cannot raise SIGPIPE.
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_pair) != 0) {
    return Error{Errc::io_error, std::string("socketpair: ") + std::strerror(errno)};
  }
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(in_pair[0]);
    ::close(in_pair[1]);
    return Error{Errc::io_error, std::string("pipe: ") + std::strerror(e)};
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    for (int fd : {in_pair[0], in_pair[1], out_pipe[0], out_pipe[1]}) ::close(fd);
    return Error{Errc::io_error, std::string("pipe: ") + std::strerror(e)};
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pair[1], 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<std::string> argv_store{program};
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, program.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(in_pair[1]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    for (int fd : {in_pair[0], out_pipe[0], err_pipe[0]}) ::close(fd);
    return Error{rc == ENOENT ? Errc::invalid_argument : Errc::io_error,
                 rc == ENOENT ? std::string("not found on PATH")
                              : std::string("cannot start: ") + std::strerror(rc)};
  }
  (void)::send(in_pair[0], input.data(), input.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::close(in_pair[0]);

  HelperRun run;
  const auto deadline = Clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&run.out, &run.err};
  int open_fds = 2;
  bool timed_out = false;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    int n = ::poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      if (sinks[i]->size() < kMaxHelperOutput) sinks[i]->append(buf, static_cast<std::size_t>(got));
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  if (timed_out) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return run;  // exit_code -1
  }
  // Both pipes closed: the helper is exiting; wait for it, bounded by the same deadline.
  for (;;) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) return run;
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return run;
    }
    ::usleep(2000);
  }
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

// client.Get of docker-credential-helpers: nullopt when the helper has no entry.
Result<std::optional<Credentials>> helper_get(const std::string& helper,
                                              const std::string& server_url,
                                              std::chrono::seconds timeout) {
  const std::string who = "credential helper " + helper + ": get " + server_url;
  if (!valid_helper_name(helper)) {
    return Error{Errc::invalid_argument,
                 "credential helper: invalid helper name (letters, digits, '-', '_', '.')"};
  }
  const std::string program = "docker-credential-" + helper;
  auto run = run_program(program, {"get"}, server_url, timeout);
  if (!run) return Error{run.error().code, who + ": " + program + ": " + run.error().message};
  if (run->exit_code == -1) {
    return Error{Errc::upstream_unavailable,
                 who + ": no answer within " + std::to_string(timeout.count()) + " s (killed)"};
  }
  if (run->exit_code != 0) {
    if (trim(run->out).starts_with(kNotFoundMessage)) return std::optional<Credentials>{};
    std::string excerpt = sanitized_excerpt(trim(run->err).empty() ? run->out : run->err);
    return Error{Errc::upstream_unavailable,
                 who + ": exit status " + std::to_string(run->exit_code) +
                     (excerpt.empty() ? "" : ": " + excerpt)};
  }
  auto c = parse_helper_answer(run->out);
  if (!c) return Error{c.error().code, who + ": " + c.error().message};
  return std::optional<Credentials>{std::move(*c)};
}

fs::path default_config_path() {
  if (const char* d = std::getenv("DOCKER_CONFIG"); d && *d) return fs::path(d) / "config.json";
  std::string home;
  if (const char* h = std::getenv("HOME"); h && *h) {
    home = h;
  } else {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwuid_r(::getuid(), &pw, buf.data(), buf.size(), &found) == 0 && found) {
      home = found->pw_dir;
    }
  }
  return fs::path(home) / ".docker" / "config.json";
}

Result<DockerConfig> load_docker_config(const fs::path& path, bool explicit_path) {
  const std::string who = "docker config.json " + path.string();
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    if (explicit_path) return Error{Errc::invalid_argument, who + ": file not found"};
    return DockerConfig{};  // docker: no file, no credentials
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{Errc::invalid_argument, who + ": cannot be read"};
  std::stringstream ss;
  ss << in.rdbuf();
  auto cfg = parse_docker_config(ss.str());
  if (!cfg) return Error{cfg.error().code, who + ": " + cfg.error().message};
  return cfg;
}

// fileStore.Get: the exact key, else a key whose hostname is the address.
std::optional<Credentials> file_store_get(const DockerConfig& cfg, const std::string& address) {
  if (auto it = cfg.auths.find(address); it != cfg.auths.end()) return it->second;
  for (const auto& [key, c] : cfg.auths) {
    if (convert_to_hostname(key) == address) return c;
  }
  return std::nullopt;
}

IssuedCredentials issued(Credentials c, std::chrono::seconds cache_for) {
  return IssuedCredentials{std::move(c), WallClock::now() + cache_for};
}

class DockerConfigSource final : public ExpiringCredentialSource {
 public:
  DockerConfigSource(std::string registry_host, DockerConfigOptions options)
      : address_(server_address(registry_host)),
        options_(std::move(options)),
        path_(options_.config_path.empty() ? default_config_path()
                                           : fs::path(options_.config_path)) {
    if (auto cfg = load_docker_config(path_, !options_.config_path.empty())) {
      set_store(pick_store(*cfg).first);
    }
  }

  std::string describe() const override {
    std::lock_guard lock(describe_mu_);
    return "docker config.json (" + store_ + ")";
  }

 protected:
  Result<IssuedCredentials> fetch() override {
    auto cfg = load_docker_config(path_, !options_.config_path.empty());
    if (!cfg) return std::move(cfg).error();
    auto [store, helper] = pick_store(*cfg);
    set_store(store);
    if (!helper.empty()) {
      auto r = helper_get(helper, address_, options_.helper_timeout);
      if (!r) {
        return Error{r.error().code,
                     "docker config.json (" + store + "): " + r.error().message};
      }
      if (!*r) {
        spdlog::debug("docker config.json ({}): no entry for {}: anonymous", store, address_);
        return issued({}, options_.cache_for);
      }
      // nativeStore.Get: the helper's answer replaces what the file holds.
      return issued(std::move(**r), options_.cache_for);
    }
    return issued(file_store_get(*cfg, address_).value_or(Credentials{}), options_.cache_for);
  }

 private:
  // GetCredentialsStore: credHelpers[address], else credsStore, else the file itself.
  std::pair<std::string, std::string> pick_store(const DockerConfig& cfg) const {
    if (auto it = cfg.cred_helpers.find(address_); it != cfg.cred_helpers.end()) {
      return {"credHelpers: " + it->second, it->second};
    }
    if (!cfg.creds_store.empty()) return {"credsStore: " + cfg.creds_store, cfg.creds_store};
    if (!cfg.present) return {"no file", {}};
    return {file_store_get(cfg, address_) ? "auths" : "no entry", {}};
  }

  void set_store(std::string s) {
    std::lock_guard lock(describe_mu_);
    store_ = std::move(s);
  }

  const std::string address_;
  const DockerConfigOptions options_;
  const fs::path path_;
  mutable std::mutex describe_mu_;
  std::string store_ = "not read";
};

class CredentialHelperSource final : public ExpiringCredentialSource {
 public:
  CredentialHelperSource(std::string helper, std::string registry_host,
                         DockerConfigOptions options)
      : helper_(std::move(helper)),
        address_(server_address(registry_host)),
        options_(std::move(options)) {}

  std::string describe() const override { return "credential helper " + helper_; }

 protected:
  Result<IssuedCredentials> fetch() override {
    auto r = helper_get(helper_, address_, options_.helper_timeout);
    if (!r) return std::move(r).error();
    if (!*r) {
      spdlog::debug("credential helper {}: no entry for {}: anonymous", helper_, address_);
      return issued({}, options_.cache_for);
    }
    return issued(std::move(**r), options_.cache_for);
  }

 private:
  const std::string helper_;
  const std::string address_;
  const DockerConfigOptions options_;
};

}  // namespace

Result<DockerConfig> parse_docker_config(std::string_view text) {
  namespace json = oci::json;
  json::Json j = json::parse(text);
  if (!j.is_object()) return Error{Errc::invalid_argument, "not a JSON object"};
  DockerConfig cfg;
  cfg.present = true;
  if (const json::Json* helpers = json::object_field(j, "credHelpers")) {
    for (const auto& [k, v] : helpers->items()) {
      if (v.is_string()) cfg.cred_helpers[k] = v.get<std::string>();
    }
  }
  cfg.creds_store = json::string_or(j, "credsStore");
  if (const json::Json* auths = json::object_field(j, "auths")) {
    for (const auto& [key, entry] : auths->items()) {
      if (!entry.is_object()) continue;
      Credentials c;
      c.username = json::string_or(entry, "username");
      c.password = json::string_or(entry, "password");
      c.identity_token = json::string_or(entry, "identitytoken");
      // As docker's load: a malformed `auth` makes the whole file unusable.
      if (std::string auth = json::string_or(entry, "auth"); !auth.empty()) {
        auto decoded = base64_decode(auth);
        auto colon = decoded ? decoded->find(':') : std::string::npos;
        if (!decoded || colon == std::string::npos) {
          return Error{Errc::invalid_argument,
                       "auths[\"" + key + "\"].auth is not base64 of user:password"};
        }
        c.username = decoded->substr(0, colon);
        c.password = decoded->substr(colon + 1);
        while (!c.password.empty() && c.password.back() == '\0') c.password.pop_back();
      }
      cfg.auths[key] = std::move(c);
    }
  }
  return cfg;
}

std::optional<Credentials> docker_config_auth(const DockerConfig& config,
                                              std::string_view registry_host) {
  return file_store_get(config, server_address(registry_host));
}

Result<Credentials> parse_helper_answer(std::string_view out) {
  namespace json = oci::json;
  json::Json j = json::parse(out);
  auto secret = json::string_field(j, "Secret");
  if (!secret || (j.contains("Username") && !json::string_field(j, "Username"))) {
    return Error{Errc::upstream_protocol,
                 "answer is not the credentials JSON {ServerURL, Username, Secret}"};
  }
  Credentials c;
  std::string username = json::string_or(j, "Username");
  // docker's tokenUsername: the secret is an OAuth2 refresh (identity) token.
  if (username == "<token>") {
    c.identity_token = std::move(*secret);
  } else {
    c.username = std::move(username);
    c.password = std::move(*secret);
  }
  return c;
}

std::shared_ptr<CredentialSource> docker_config_credentials(std::string registry_host,
                                                            DockerConfigOptions options) {
  return std::make_shared<DockerConfigSource>(std::move(registry_host), std::move(options));
}

std::shared_ptr<CredentialSource> credential_helper_credentials(std::string helper_name,
                                                                std::string registry_host,
                                                                DockerConfigOptions options) {
  return std::make_shared<CredentialHelperSource>(std::move(helper_name),
                                                  std::move(registry_host), std::move(options));
}

}  // namespace ocirelay::adapters
