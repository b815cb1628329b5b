// An OCI image layout directory (what `skopeo copy ... oci:DIR:TAG` writes, or an export
// for an air-gapped site) as an ImageSource, so its images go to registries like the
// store's do. Read-only; thread-safe (every call reads the files anew).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "oci/digest.h"
#include "oci/result.h"
#include "relay/copy.h"

namespace ocirelay::relay {

struct LayoutRef {
  std::string tag;     // index.json's org.opencontainers.image.ref.name; empty: untagged
  oci::Digest digest;  // the manifest or index it names
};

// The images index.json lists, in its order. Errors: not_found (no index.json: not a
// layout), upstream_protocol (index.json is not an OCI index).
Result<std::vector<LayoutRef>> layout_refs(const std::filesystem::path& dir);

// Manifests are read from blobs/<algorithm>/<hex> and must hash to their digest
// (digest_mismatch otherwise); blobs are streamed from their files. No referrers.
std::unique_ptr<ImageSource> layout_image_source(std::filesystem::path dir);

}  // namespace ocirelay::relay
