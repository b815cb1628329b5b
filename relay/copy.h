// Sending one image from the store to a destination registry: the first piece of the
// relay's transfer engine (rules, queue and fan-out come with the relay issue).
//
// Bottom-up, so the destination never shows a tag whose content it does not fully hold
// (invariant 3): each manifest's blobs (HEAD; a mount from `mount_from` when given; else an
// upload read from the store's file), child manifests before their index, the tag last,
// then the referrers of what was sent. Blocking: call from a worker thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "oci/result.h"

namespace ocirelay::store {
class Store;
}
namespace ocirelay::adapters {
class RegistryClient;
}

namespace ocirelay::relay {

struct CopyOptions {
  // A repository on the destination that holds the image's blobs already (a copy made
  // there before): blobs are mounted from it instead of sent.
  std::string mount_from;
  bool referrers = true;  // also send manifests whose subject is a sent manifest
  // Called after each blob, with its digest, size and "existed" | "mounted" | "uploaded".
  std::function<void(std::string_view digest, std::uint64_t size, std::string_view how)> on_blob;
};

struct CopyReport {
  std::uint64_t blobs_existed = 0, blobs_mounted = 0, blobs_uploaded = 0;
  std::uint64_t bytes_uploaded = 0;
  std::uint64_t manifests = 0;  // manifests PUT (children, index, referrers)
  std::string digest;           // the copied image's digest
};

// Copies `src_repo` (the store's key) at `ref` (tag or digest) to `dst_repo` on `dest`,
// tagged `dst_tag` (empty: by digest only). Errors name the object and the cause:
// not_found (not in the store), or the destination's answer.
Result<CopyReport> copy_image(store::Store& store, adapters::RegistryClient& dest,
                              std::string_view src_repo, std::string_view ref,
                              std::string_view dst_repo, std::string_view dst_tag,
                              const CopyOptions& options = {});

}  // namespace ocirelay::relay
