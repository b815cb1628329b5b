// A registry repository named on the command line (`sync --from/--to`, `copy`):
// [http[s]://]host[:port]/repository, https unless http:// is given. Docker Hub's names are
// normalized (docker.io/alpine -> registry-1.docker.io, library/alpine).
#pragma once

#include <string>

#include "adapters/registry_client.h"
#include "oci/result.h"

namespace ocirelay::cli {

struct RegistryRepository {
  std::string host;        // host[:port]; "docker.io" for Docker Hub
  std::string url;         // scheme://host[:port] of its registry API
  std::string repository;
};

// Strips a leading http:// or https:// from `s` and returns it; "https://" when there was
// none (registries speak TLS unless told otherwise).
std::string take_scheme(std::string& s);

// `text` holds no tag or digest. Errors: invalid_argument saying what is wrong.
Result<RegistryRepository> parse_registry_repository(std::string text);

// Whether `component` (the first of a name) is a registry host rather than the start of a
// repository path, as docker decides: it has a '.' or a ':', or is localhost.
bool looks_like_host(std::string_view component);

// The registry's endpoint: its kind from the host, credentials from docker's config.json
// (as docker pull and push would log in).
adapters::RegistryEndpoint endpoint_for(const RegistryRepository& r);

}  // namespace ocirelay::cli
