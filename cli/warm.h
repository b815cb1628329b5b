// Warming: fetching images from upstream into the store without serving them, so a site
// can pre-load what it will pull (CI base images, an air-gapped transfer).
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "oci/media_types.h"
#include "oci/result.h"
#include "fetch/registries.h"

namespace ocirelay::store {
class Store;
}

namespace ocirelay::cli {

struct WarmOptions {
  // When set, only the index child for this platform is fetched (os/arch[/variant]).
  std::optional<oci::Platform> platform;
  // Where progress goes; nullptr: silent. A TTY gets one updating line, anything else
  // gets one plain line per object.
  std::FILE* progress = nullptr;
  bool progress_is_tty = false;
};

struct WarmFailure {
  std::string ref;
  Error error;
};

struct WarmReport {
  std::size_t images = 0;     // refs fully fetched
  std::size_t manifests = 0;  // manifests stored (index children included)
  std::size_t blobs_fetched = 0;
  std::size_t blobs_present = 0;  // already in the store: linked, not downloaded
  std::uint64_t bytes_fetched = 0;
  std::vector<WarmFailure> failures;
};

// "linux/arm64" or "linux/arm/v7". Errors: invalid_argument.
Result<oci::Platform> parse_platform(std::string_view s);

// Fetches each ref (as users type it: "upstream.test/team/app:1.0", "alpine:3.20" meaning
// docker.io) from the upstream whose name equals the ref's registry, and stores it under
// "<upstream>/<repository>" with its tag. Every ref is attempted; failures are reported,
// not thrown. Blocks on network and disk: call from a plain thread. `registries` holds a
// client for every upstream.
WarmReport warm(store::Store& store, fetch::RegistryClients& registries,
                const std::vector<fetch::UpstreamConfig>& upstreams,
                const std::vector<std::string>& refs, const WarmOptions& options);

}  // namespace ocirelay::cli
