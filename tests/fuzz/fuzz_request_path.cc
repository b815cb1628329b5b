// Request targets from clients: parse_request_path, query_param, percent_decode and the
// upstream selection that turns a client's name into the repository fetched upstream.
// Nothing hostile ("..", "//", NUL, backslash, encoded separators) gets through.
#include <string>
#include <vector>

#include "oci/reference.h"
#include "proxy/router.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;

namespace {
const std::vector<fetch::UpstreamConfig>& upstreams() {
  static const std::vector<fetch::UpstreamConfig> u = [] {
    std::vector<fetch::UpstreamConfig> v(3);
    v[0].name = "docker.io";
    v[0].is_default = true;
    v[0].library_prefix = true;
    v[1].name = "ghcr.io";
    v[2].name = "quay";
    return v;
  }();
  return u;
}

bool hostile(std::string_view s) {
  return s.find("..") != s.npos || s.find("//") != s.npos || s.find('\0') != s.npos ||
         s.find('\\') != s.npos;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view target = fuzz::input(data, size);

  if (auto d = proxy::percent_decode(target)) FUZZ_CHECK(d->size() <= target.size());

  auto rp = proxy::parse_request_path(target);
  if (!rp) {
    FUZZ_CHECK(rp.error().code == Errc::name_invalid);
    return 0;
  }
  FUZZ_CHECK(!hostile(rp->name) && !hostile(rp->reference));
  switch (rp->kind) {
    case proxy::RouteKind::manifest:
    case proxy::RouteKind::blob:
    case proxy::RouteKind::referrers:
      FUZZ_CHECK(!rp->reference.empty() && rp->reference.find('/') == std::string::npos);
      [[fallthrough]];
    case proxy::RouteKind::blob_upload:
    case proxy::RouteKind::tags_list:
      FUZZ_CHECK(!rp->name.empty());
      break;
    default:  // unknown may keep the name of a route whose reference was unusable
      FUZZ_CHECK(rp->reference.empty());
      break;
  }
  (void)proxy::route_label(rp->kind);

  auto ns = proxy::query_param(rp->query, "ns");
  (void)proxy::query_param(rp->query, "n");
  (void)proxy::query_param(rp->query, "last");
  if (rp->name.empty()) return 0;
  std::optional<std::string_view> ns_view;
  if (ns) ns_view = *ns;
  auto route = proxy::select_upstream(upstreams(), rp->name, ns_view);
  if (route) {
    FUZZ_CHECK(route->upstream != nullptr);
    FUZZ_CHECK(oci::valid_repository(route->repository));
    FUZZ_CHECK(route->store_repo == route->upstream->name + "/" + route->repository);
  } else {
    FUZZ_CHECK(route.error().code == Errc::not_found || route.error().code == Errc::name_invalid);
  }
  return 0;
}
