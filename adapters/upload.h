// How blobs are uploaded to a destination: one piece or chunks, how large, and the state
// an interrupted chunked upload resumes from. See shared/REGISTRY-QUIRKS.md.
#pragma once

#include <cstdint>
#include <string>

#include "adapters/registry_kind.h"

namespace ocirelay::adapters {

inline constexpr std::uint64_t kMiB = 1 << 20;

// Zero fields take the registry kind's default (default_upload_policy).
struct UploadPolicy {
  // Bytes per PATCH of a chunked upload; what the registry says wins when it asks for more
  // (OCI-Chunk-Min-Length) or refuses a chunk as too large (416 "exceeds the maximum").
  std::uint64_t chunk_size = 0;
  // Blobs up to this size go in one request (POST, then one PUT ?digest=), larger ones in
  // chunks. A one-piece PUT answered 413 falls back to chunks.
  std::uint64_t monolithic_max = 0;
};

// Artifact Registry/GCR: one piece whatever the size; ECR: 8 MiB chunks (each part but the
// last >= 5 MiB, <= 10 MiB); GHCR: 4 MiB PATCHes; ACR: chunks above 16 MiB (a one-piece PUT
// above ~20 MB gets 413); others: one piece up to 32 MiB, 16 MiB chunks above.
UploadPolicy default_upload_policy(RegistryKind kind);
// `configured` with its zero fields filled from the kind's default.
UploadPolicy effective_upload_policy(RegistryKind kind, UploadPolicy configured);

// An upload session the registry opened, as far as it is confirmed: what a caller persists
// to resume a chunked upload after a crash or an outage. Holds no secret (a session URL
// carries the registry's own state, never our credentials).
struct UploadSession {
  std::string location;     // absolute session URL (the last Location the registry sent)
  std::uint64_t offset = 0; // bytes the registry confirmed (tracked by us where its Range
                            // cannot be trusted: ECR)
  bool empty() const { return location.empty(); }
};

// How a blob came to be at the destination.
enum class BlobPushed {
  existed,   // HEAD found it: nothing sent
  mounted,   // cross-repository mount (201): nothing sent
  uploaded,  // its bytes were sent
};

}  // namespace ocirelay::adapters
