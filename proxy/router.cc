#include "proxy/router.h"

#include <algorithm>
#include <array>

#include "oci/reference.h"

namespace ocirelay::proxy {

namespace {

// "%2e" in any case: an encoded dot.
bool has_encoded_dot(std::string_view p) {
  for (auto pos = p.find('%'); pos != p.npos && pos + 2 < p.size(); pos = p.find('%', pos + 1))
    if (p[pos + 1] == '2' && (p[pos + 2] == 'e' || p[pos + 2] == 'E')) return true;
  return false;
}

bool hostile(std::string_view p) {
  return p.find("..") != p.npos || p.find("//") != p.npos || p.find('\0') != p.npos ||
         p.find('\\') != p.npos || has_encoded_dot(p);
}

Error bad_path() { return Error{Errc::name_invalid, "invalid request path"}; }

}  // namespace

std::string_view route_label(RouteKind kind) {
  switch (kind) {
    case RouteKind::base: return "base";
    case RouteKind::manifest: return "manifest";
    case RouteKind::blob: return "blob";
    case RouteKind::blob_upload: return "blob_upload";
    case RouteKind::tags_list: return "tags";
    case RouteKind::referrers: return "referrers";
    case RouteKind::catalog: return "catalog";
    case RouteKind::metrics: return "metrics";
    case RouteKind::healthz: return "healthz";
    case RouteKind::readyz: return "readyz";
    case RouteKind::unknown: return "other";
  }
  return "other";
}

Result<RequestPath> parse_request_path(std::string_view target) {
  RequestPath rp;
  std::string_view raw = target;
  if (auto q = raw.find('?'); q != raw.npos) {
    rp.query = std::string(raw.substr(q + 1));
    raw = raw.substr(0, q);
  }
  if (hostile(raw)) return bad_path();
  // Most targets have nothing to decode: no copy, and nothing new to check.
  std::string decoded_copy;
  std::string_view path = raw;
  if (raw.find('%') != raw.npos) {
    auto decoded = percent_decode(raw);
    if (!decoded) return decoded.error();
    decoded_copy = std::move(*decoded);
    path = decoded_copy;
    if (hostile(path)) return bad_path();
  }

  if (path == "/metrics") rp.kind = RouteKind::metrics;
  else if (path == "/healthz") rp.kind = RouteKind::healthz;
  else if (path == "/readyz") rp.kind = RouteKind::readyz;
  else if (path == "/v2" || path == "/v2/") rp.kind = RouteKind::base;
  else if (path == "/v2/_catalog") rp.kind = RouteKind::catalog;
  if (rp.kind != RouteKind::unknown || !path.starts_with("/v2/")) return rp;

  std::string_view rest = path.substr(4);
  // The last marker in the path wins: a repository may have a component named "blobs".
  struct Marker { std::string_view text; RouteKind kind; bool suffix_only; };
  static constexpr std::array<Marker, 5> kMarkers{{
      {"/manifests/", RouteKind::manifest, false},
      {"/blobs/uploads", RouteKind::blob_upload, false},
      {"/blobs/", RouteKind::blob, false},
      {"/tags/list", RouteKind::tags_list, true},
      {"/referrers/", RouteKind::referrers, false},
  }};
  std::size_t best = std::string_view::npos;
  const Marker* found = nullptr;
  for (const auto& m : kMarkers) {
    auto pos = rest.rfind(m.text);
    if (pos == rest.npos || pos == 0) continue;
    if (m.suffix_only && pos + m.text.size() != rest.size()) continue;
    // "/blobs/uploads" must be a full segment (the blob marker covers "/blobs/uploadsX").
    if (m.kind == RouteKind::blob_upload) {
      auto end = pos + m.text.size();
      if (end != rest.size() && rest[end] != '/') continue;
    }
    if (best == std::string_view::npos || pos > best ||
        (pos == best && m.kind == RouteKind::blob_upload)) {
      best = pos;
      found = &m;
    }
  }
  if (!found) return rp;
  rp.name = std::string(rest.substr(0, best));
  std::string_view tail = rest.substr(best + found->text.size());
  switch (found->kind) {
    case RouteKind::manifest:
    case RouteKind::blob:
    case RouteKind::referrers:
      if (tail.empty() || tail.find('/') != tail.npos) return rp;  // unknown
      rp.reference = std::string(tail);
      break;
    case RouteKind::blob_upload:
      // "/blobs/uploads" or "/blobs/uploads/" (a new upload), "/blobs/uploads/<id>".
      if (!tail.empty()) tail.remove_prefix(1);
      if (tail.find('/') != tail.npos) return rp;  // unknown
      rp.reference = std::string(tail);
      break;
    default:
      break;
  }
  rp.kind = found->kind;
  return rp;
}

Result<UpstreamRoute> select_upstream(const std::vector<fetch::UpstreamConfig>& upstreams,
                                      std::string_view name,
                                      std::optional<std::string_view> ns,
                                      const std::vector<std::string>& local_globs) {
  UpstreamRoute r;
  std::string_view repo = name;
  if (ns) {
    for (const auto& u : upstreams)
      if (u.name == *ns) r.upstream = &u;
    if (!r.upstream) return Error{Errc::not_found, "no upstream named " + std::string(*ns)};
  } else {
    auto slash = name.find('/');
    if (slash != name.npos && slash + 1 < name.size()) {
      auto first = name.substr(0, slash);
      for (const auto& u : upstreams)
        if (u.name == first) {
          r.upstream = &u;
          repo = name.substr(slash + 1);
        }
    }
    if (!r.upstream)
      for (const auto& g : local_globs)
        if (oci::repository_glob_match(g, name)) {
          if (!oci::valid_repository(name)) return Error{Errc::name_invalid, "invalid repository name"};
          r.repository = std::string(name);
          r.store_repo = r.repository;
          return r;
        }
    if (!r.upstream)
      for (const auto& u : upstreams)
        if (u.is_default) {
          r.upstream = &u;
          break;
        }
    if (!r.upstream) return Error{Errc::not_found, "no upstream for repository " + std::string(name)};
  }
  if (r.upstream->library_prefix && repo.find('/') == repo.npos)
    r.repository = "library/" + std::string(repo);
  else
    r.repository = std::string(repo);
  if (!oci::valid_repository(r.repository))
    return Error{Errc::name_invalid, "invalid repository name"};
  r.store_repo = r.upstream->name + "/" + r.repository;
  return r;
}

}  // namespace ocirelay::proxy
