// Upload policies per registry kind (shared/REGISTRY-QUIRKS.md, "Upload methods").
#include "adapters/upload.h"

#include <limits>

namespace ocirelay::adapters {

UploadPolicy default_upload_policy(RegistryKind kind) {
  constexpr std::uint64_t kUnlimited = std::numeric_limits<std::uint64_t>::max();
  switch (kind) {
    case RegistryKind::artifact_registry:
    case RegistryKind::gcr:
      return {16 * kMiB, kUnlimited};  // no chunked uploads: one piece whatever the size
    case RegistryKind::ecr:
      return {8 * kMiB, 8 * kMiB};     // parts of 5-10 MiB
    case RegistryKind::ghcr:
      return {4 * kMiB, 4 * kMiB};     // PATCH bodies above 4 MiB get 416
    case RegistryKind::acr:
      return {16 * kMiB, 16 * kMiB};   // one-piece PUTs above ~20 MB get 413
    default:
      return {16 * kMiB, 32 * kMiB};
  }
}

UploadPolicy effective_upload_policy(RegistryKind kind, UploadPolicy configured) {
  const UploadPolicy d = default_upload_policy(kind);
  if (configured.chunk_size == 0) configured.chunk_size = d.chunk_size;
  if (configured.monolithic_max == 0) configured.monolithic_max = d.monolithic_max;
  return configured;
}

}  // namespace ocirelay::adapters
