// Credentials the way the docker CLI finds them: docker's config.json (credHelpers,
// credsStore, auths) and docker credential helpers (`docker-credential-<name> get`).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "adapters/credentials.h"

namespace ocirelay::adapters {

struct DockerConfigOptions {
  // config.json to read. Empty: $DOCKER_CONFIG/config.json, else ~/.docker/config.json
  // (a missing default file means anonymous, as for docker; a missing explicit one is
  // an error).
  std::string config_path;
  // A credential helper that runs longer is killed and the lookup fails.
  std::chrono::seconds helper_timeout{30};
  // How long an answer (from the file or a helper) is reused before it is looked up again.
  std::chrono::seconds cache_for{300};
};

// Resolves credentials for `registry_host` ("ghcr.io", "127.0.0.1:5000"; docker.io,
// index.docker.io and registry-1.docker.io all mean docker's "https://index.docker.io/v1/")
// exactly as docker does: the helper named by credHelpers[host], else the credsStore
// helper, else auths[host] (exact key first, then keys that are URLs of that host):
// `auth` (base64 "user:pass"), username/password, or `identitytoken`. A helper that has
// no entry answers anonymous, without falling back to auths (docker does the same).
// describe(): "docker config.json (credHelpers: ecr-login)", "... (credsStore: pass)",
// "... (auths)", "... (no entry)".
std::shared_ptr<CredentialSource> docker_config_credentials(std::string registry_host,
                                                            DockerConfigOptions options = {});

// Runs `docker-credential-<helper_name> get` (found on PATH) for `registry_host`.
// describe(): "credential helper <helper_name>". Only helper_timeout and cache_for of
// `options` apply.
std::shared_ptr<CredentialSource> credential_helper_credentials(std::string helper_name,
                                                                std::string registry_host,
                                                                DockerConfigOptions options = {});

// --- the parsers behind these sources (pure: unit tests and fuzzers call them) -------

// The parts of a docker config.json that credentials come from.
struct DockerConfig {
  bool present = false;  // false: no file was found (docker then answers anonymous)
  std::map<std::string, std::string> cred_helpers;  // registry key -> helper name
  std::string creds_store;
  std::map<std::string, Credentials> auths;  // key as written; `auth` already decoded
};

// Parses config.json text. Members of unexpected types are ignored. Errors
// (Errc::invalid_argument, never naming a secret): not a JSON object; an `auth` that is not
// base64 of "user:password" (as for docker, the whole file is then unusable).
Result<DockerConfig> parse_docker_config(std::string_view text);

// The auths entry docker uses for `registry_host`: the exact key of its server address,
// else a key whose hostname is that address. nullopt when there is none.
std::optional<Credentials> docker_config_auth(const DockerConfig& config,
                                              std::string_view registry_host);

// A credential helper's answer to `get` ({"ServerURL","Username","Secret"}); Username
// "<token>" makes Secret an identity token. Errors: Errc::upstream_protocol.
Result<Credentials> parse_helper_answer(std::string_view out);

}  // namespace ocirelay::adapters
