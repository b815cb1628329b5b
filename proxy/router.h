// Request routing for the mirror: parses a request target into a distribution route
// (refusing hostile paths) and picks the upstream a repository name belongs to.
// Pure functions: no I/O, no store or network access.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fetch/registries.h"
#include "http/query.h"
#include "oci/result.h"

namespace ocirelay::proxy {

enum class RouteKind {
  base,         // /v2/
  manifest,     // /v2/<name>/manifests/<ref>
  blob,         // /v2/<name>/blobs/<digest>
  blob_upload,  // /v2/<name>/blobs/uploads/[<session id>] (push, local repositories)
  tags_list,    // /v2/<name>/tags/list
  referrers,    // /v2/<name>/referrers/<digest>
  catalog,      // /v2/_catalog
  metrics,      // /metrics
  healthz,      // /healthz
  readyz,       // /readyz
  unknown,
};

// Metric/log label of a route ("manifest", "blob", ...).
std::string_view route_label(RouteKind kind);

struct RequestPath {
  RouteKind kind = RouteKind::unknown;
  std::string name;       // repository as the client named it (may carry an upstream prefix)
  std::string reference;  // tag or digest (manifest, blob, referrers); session id (uploads)
  std::string query;      // raw query string, without '?'
};

using http::percent_decode;  // http/query.h
using http::query_param;

// Splits a request target ("/v2/library/alpine/manifests/3.20?ns=docker.io").
// Errors (Errc::name_invalid): paths containing "..", "//", "%2e", NUL or backslash, bad
// escapes. Unknown paths are not errors: kind == RouteKind::unknown.
Result<RequestPath> parse_request_path(std::string_view target);


struct UpstreamRoute {
  const fetch::UpstreamConfig* upstream = nullptr;  // null for a local repository
  std::string repository;  // name on the upstream ("library/alpine"), or the local name
  std::string store_repo;  // "<upstream name>/<repository>", or the local name itself
  bool local() const { return upstream == nullptr; }
};

// Picks the upstream for a client-supplied repository name:
//  1. `ns` (from ?ns=) names an upstream by its configured name (never a host to dial);
//     no such upstream -> Errc::not_found "no upstream named <ns>";
//  2. else a first path segment equal to an upstream name selects it and is stripped;
//  3. else a name matching one of `local_globs` is a local repository (served from the
//     store only, never from an upstream; pushes land there);
//  4. else the default upstream; none -> Errc::not_found.
// Upstreams with library_prefix give one-segment names "library/". The resulting
// repository is validated (Errc::name_invalid) before anything else may use it.
Result<UpstreamRoute> select_upstream(const std::vector<fetch::UpstreamConfig>& upstreams,
                                      std::string_view name,
                                      std::optional<std::string_view> ns,
                                      const std::vector<std::string>& local_globs = {});

}  // namespace ocirelay::proxy
