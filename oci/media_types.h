// Media types and the parts of manifests and indexes the mirror needs to know.
// Manifest bytes are never rewritten: this parses them only to learn what they reference.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "oci/digest.h"
#include "oci/result.h"

namespace ocirelay::oci {

namespace media {
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kOciEmpty = "application/vnd.oci.empty.v1+json";
}  // namespace media

// What a mirror asks upstream for when a client sent no Accept header: everything we
// can store, so the upstream does not downgrade to schema1.
inline constexpr std::string_view kDefaultManifestAccept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

bool is_index_type(std::string_view media_type);
bool is_manifest_type(std::string_view media_type);  // manifest or index we can serve

struct Platform {
  std::string os, architecture, variant;
  std::string str() const;  // "linux/arm64/v8"
};

struct Descriptor {
  std::string media_type;
  Digest digest;
  std::int64_t size = 0;
  std::string artifact_type;
  std::optional<Platform> platform;
  std::string annotations_json;  // raw JSON object or empty
};

// A parsed image manifest or index.
struct Manifest {
  std::string media_type;      // from the document, or the Content-Type it came with
  std::string artifact_type;   // OCI 1.1 artifactType, or config.mediaType for artifacts
  std::optional<Descriptor> config;
  std::vector<Descriptor> layers;     // image manifest
  std::vector<Descriptor> manifests;  // index / manifest list
  std::optional<Descriptor> subject;  // OCI 1.1 referrers
  std::string annotations_json;

  bool is_index() const { return is_index_type(media_type); }
  // Blobs this manifest needs (config + layers); empty for an index.
  std::vector<Digest> blob_digests() const;
};

// Parses manifest bytes. `content_type` is the HTTP Content-Type (used when the document
// has no mediaType field). Errors: Errc::invalid_argument with the reason.
Result<Manifest> parse_manifest(std::string_view bytes, std::string_view content_type);

// The media type a manifest fetched from upstream is served and stored under: its
// Content-Type without parameters when that names a manifest type, else the document's
// own type (its mediaType field or its shape) when it parses, else the bare Content-Type.
std::string reply_media_type(std::string_view content_type, std::string_view bytes);

// Picks the best media type for a client's Accept header among what we hold.
// Returns true if `media_type` is acceptable to a client that sent `accept`
// (empty Accept or */* accepts anything).
bool accept_allows(std::string_view accept, std::string_view media_type);

}  // namespace ocirelay::oci
