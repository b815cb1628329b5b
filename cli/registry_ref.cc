#include "cli/registry_ref.h"

#include "adapters/docker_config.h"
#include "adapters/registry_kind.h"
#include "oci/reference.h"

namespace ocirelay::cli {

std::string take_scheme(std::string& s) {
  for (const char* p : {"http://", "https://"})
    if (s.rfind(p, 0) == 0) {
      s.erase(0, std::string_view(p).size());
      return p;
    }
  return "https://";
}

Result<RegistryRepository> parse_registry_repository(std::string s) {
  const std::string scheme = take_scheme(s);
  auto slash = s.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == s.size())
    return Error{Errc::invalid_argument, "no repository"};
  RegistryRepository r;
  r.host = s.substr(0, slash);
  r.repository = s.substr(slash + 1);
  if (r.repository.find_first_of(":@") != std::string::npos)
    return Error{Errc::invalid_argument, "a tag or digest in the repository name"};
  // Docker Hub's registry API is on registry-1.docker.io, and one-component names are
  // library/ images there.
  const bool hub = r.host == "docker.io" || r.host == "index.docker.io" || r.host == "registry-1.docker.io";
  if (hub && r.repository.find('/') == std::string::npos) r.repository = "library/" + r.repository;
  if (!oci::valid_repository(r.repository))
    return Error{Errc::invalid_argument, "'" + r.repository + "' is not a valid repository name"};
  r.url = scheme + (hub ? std::string("registry-1.docker.io") : r.host);
  if (hub) r.host = "docker.io";
  return r;
}

bool looks_like_host(std::string_view component) {
  return component.find_first_of(".:") != std::string_view::npos || component == "localhost";
}

adapters::RegistryEndpoint endpoint_for(const RegistryRepository& r) {
  adapters::RegistryEndpoint ep;
  ep.name = r.host;
  ep.url = r.url;
  ep.kind = adapters::infer_registry_kind(r.host.substr(0, r.host.find(':')));
  ep.credentials = adapters::docker_config_credentials(r.host);
  return ep;
}

}  // namespace ocirelay::cli
