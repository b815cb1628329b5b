#include "adapters/prepare.h"

#include <nlohmann/json.hpp>

#include "adapters/curl_transfer.h"
#include "adapters/encoding.h"
#include "adapters/google/google.h"
#include "adapters/http_status.h"
#include "adapters/www_authenticate.h"
#include "oci/reference.h"

namespace ocirelay::adapters {
namespace {

// Harbor keeps repositories in projects: `team/app` needs project `team`. A HEAD first,
// since robot accounts may push to a project they may not create.
Status create_harbor_project(const RegistryEndpoint& ep, std::string_view repository,
                             const PrepareOptions& options) {
  const std::string project(repository.substr(0, repository.find('/')));
  const std::string step = "create Harbor project " + project;
  std::string api = options.harbor_api_url.empty() ? ep.url : options.harbor_api_url;
  while (api.ends_with('/')) api.pop_back();
  std::vector<std::string> headers = {"Accept: application/json"};
  if (ep.credentials && !ep.credentials->anonymous()) {
    auto creds = ep.credentials->get();
    if (!creds) return Error{creds.error().code, step + ": credentials: " + creds.error().message};
    headers.push_back("Authorization: Basic " + base64_encode(creds->credentials.username + ":" +
                                                              creds->credentials.password));
  }
  CurlHandlePool pool(1);
  TransferLimits limits;
  limits.connect_timeout = ep.connect_timeout;
  limits.request_timeout = ep.request_timeout;
  limits.ca_file = ep.ca_file;

  HttpRequest exists;
  exists.method = "HEAD";
  exists.url = api + "/api/v2.0/projects?project_name=" + percent_encode(project);
  exists.headers = headers;
  auto head = perform_http(pool, limits, exists, nullptr, 1 << 16);
  if (!head) return Error{head.error().code, step + ": " + head.error().message};
  if (head->head.status == 200) return {};

  HttpRequest create;
  create.method = "POST";
  create.url = api + "/api/v2.0/projects";
  create.headers = headers;
  create.headers.push_back("Content-Type: application/json");
  create.body = nlohmann::json{{"project_name", project},
                               {"metadata", {{"public", options.harbor_public ? "true" : "false"}}}}
                    .dump();
  auto r = perform_http(pool, limits, create, nullptr, 1 << 16);
  if (!r) return Error{r.error().code, step + ": " + r.error().message};
  const int status = r->head.status;
  if (status == 201 || status == 409) return {};  // 409: created meanwhile
  std::string cause = "HTTP " + std::to_string(status);
  if (auto code = distribution_error_code(r->body); !code.empty()) cause += " (" + code + ")";
  return Error{errc_for_status(status), step + ": " + cause};
}

}  // namespace

Status prepare_destination(RegistryClient& registry, std::string_view repository,
                           const PrepareOptions& options) {
  const RegistryEndpoint& ep = registry.endpoint();
  const std::string what = "prepare " + ep.name + " " + std::string(repository);
  if (!oci::valid_repository(repository))
    return Error{Errc::name_invalid, what + ": invalid repository name"};
  if (Status s = registry.ping(); !s) return Error{s.error().code, what + ": " + s.error().message};

  Status created;
  switch (ep.kind) {
    case RegistryKind::ecr:
      created = aws::ecr_create_repository(options.aws, url_host(ep.url), repository, options.ecr);
      break;
    case RegistryKind::artifact_registry: {
      if (!ep.credentials)
        return Error{Errc::invalid_argument, what + ": Artifact Registry needs google credentials"};
      ArtifactRegistryCreateOptions o;
      o.kms_key = options.kms_key;
      if (!options.artifact_registry_endpoint.empty()) o.endpoint = options.artifact_registry_endpoint;
      o.transport.ca_file = ep.ca_file;
      created = artifact_registry_create_repository(url_host(ep.url) + "/" + std::string(repository),
                                                    *ep.credentials, o);
      break;
    }
    case RegistryKind::harbor:
      created = create_harbor_project(ep, repository, options);
      break;
    default:
      break;  // repositories appear on first push
  }
  if (!created) return Error{created.error().code, what + ": " + created.error().message};
  return {};
}

}  // namespace ocirelay::adapters
