// Configuration: the YAML file (or the embedded default) turned into the options of the
// server, the store and logging. Loading runs at startup only, so errors are exceptions
// (ConfigError) whose message names the file, the line and the key at fault.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "api/notification_config.h"
#include "api/tokens.h"
#include "api/webhook_config.h"
#include "oci/result.h"
#include "proxy/server.h"
#include "relay/rule.h"
#include "store/store.h"

namespace ocirelay::cli {

// "config.yaml:7: upstreams[0].tag_ttl: invalid duration '5x' (use e.g. 30s, 5m, 1h)".
// Never carries a secret (password file contents are not echoed).
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct LogOptions {
  std::string level = "info";   // trace, debug, info, warn, error, off
  std::string format = "text";  // text | json (one JSON object per line: ts, level, msg)
};

struct Config {
  std::string source;  // file name, or "<embedded default>"
  proxy::ServerOptions server;
  store::StoreOptions store;
  LogOptions log;
  relay::RelayConfig relay;  // registries: and rules:
  std::vector<api::ApiToken> api_tokens;  // api_tokens: who may call the admin API
  // health_check.every: how often serve pings every registry (the API's health); 0: never.
  std::chrono::seconds health_every{60};
  std::vector<api::WebhookConfig> webhooks;  // webhooks: registries telling the relay of changes
  bool cloudwatch_emf = false;  // metrics.cloudwatch_emf: relay outcomes as EMF lines on stdout
  std::vector<api::NotificationConfig> notifications;  // notifications: where serve tells what happened
};

// Command-line flags that override config keys. Empty optionals leave the key alone.
struct ConfigOverrides {
  std::optional<std::string> listen;      // --listen host:port
  std::optional<std::string> store_path;  // --store
  std::optional<std::string> log_level;   // --log-level
  std::optional<std::string> log_format;  // --log-format
  std::optional<std::string> max_size;    // --max-size (same syntax as store.max_size)
};

// The config used when no --config is given: a Docker Hub mirror on 127.0.0.1:5000 with its
// store in /var/lib/ocirelay.
std::string_view embedded_default_config();

// Parses YAML text. `source` names it in error messages. Throws ConfigError.
Config parse_config(std::string_view yaml, std::string_view source);
// Reads and parses a file. Throws ConfigError (also when the file cannot be read).
Config load_config_file(const std::filesystem::path& file);
// Applies flags on top of a loaded config, validating them like config keys. Throws
// ConfigError naming the flag.
void apply_overrides(Config& config, const ConfigOverrides& overrides);

// Every registry the process talks to, for fetch::RegistryClients: the upstreams, then the
// relay's registries (names are unique across both).
std::vector<fetch::UpstreamConfig> all_registries(const Config& config);

// What is valid but probably not what the operator meant (a config that serves nothing):
// `serve` logs each line as a warning at startup.
std::vector<std::string> config_warnings(const Config& config);

// Value syntaxes, exposed for the flags and the tests.
// Sizes: 123, 10KiB/MiB/GiB/TiB (binary), 10KB/MB/GB/TB (decimal).
Result<std::uint64_t> parse_size(std::string_view s);
// The inverse for people: 1536 -> "1.5 KiB".
std::string human_bytes(std::uint64_t n);
// Durations: 0, 30s, 5m, 1h, 1d.
Result<std::chrono::seconds> parse_duration(std::string_view s);
// host:port, [v6addr]:port. Port 0 means "pick a free port".
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
Result<HostPort> parse_listen(std::string_view s);

}  // namespace ocirelay::cli
