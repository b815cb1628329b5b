// Sending one image from the store to a destination registry: the relay's transfer step.
//
// Bottom-up, so the destination never shows a tag whose content it does not fully hold
// (invariant 3): each manifest's blobs (known there: nothing sent; else HEAD; a mount from
// a repository there known to hold it; else an upload read from the store's file), child
// manifests before their index, the tag last, then the referrers of what was sent.
// Digests at the destination equal the store's, except for an index narrowed to some
// platforms, which is rewritten (the new digest is reported).
// Blocking: call from a worker thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/upload.h"
#include "oci/digest.h"
#include "oci/result.h"
#include "relay/filters.h"

namespace ocirelay::store {
class Store;
}
namespace ocirelay::adapters {
class BodySource;
class RegistryClient;
}

namespace ocirelay::relay {

// What the relay's ledger knows of a blob at the destination.
struct BlobHint {
  bool present = false;                 // the repository holds it: nothing is sent or asked
  std::vector<std::string> mount_from;  // repositories there that hold it (first one tried)
};

enum class BlobStep { known, existed, mounted, uploaded };
std::string_view to_string(BlobStep s);  // "known", "existed", "mounted", "uploaded"

struct CopyOptions {
  // A repository on the destination that holds the image's blobs already (a copy made
  // there before): blobs are mounted from it instead of sent. blob_hint overrides it.
  std::string mount_from;
  bool referrers = true;  // also send manifests whose subject is a sent manifest
  // Only these index children travel; the index is rewritten to list just them.
  PlatformFilter platforms;
  // Sends no write: blobs are looked up (ledger, then HEAD) and reported as they would be
  // sent (a mount candidate as mounted, a missing blob as uploaded), manifests as put.
  bool dry_run = false;
  std::function<BlobHint(const oci::Digest&)> blob_hint;
  // After each blob, with its digest, size and what was done.
  std::function<void(const oci::Digest&, std::uint64_t size, BlobStep)> on_blob;
  // Resumable uploads: `resume` gives the persisted session of a blob's interrupted
  // chunked upload (empty: none), and `on_session` is called on this thread after each
  // confirmed chunk with the state to persist, and with an empty session when the upload
  // ended (done, or abandoned for a reason a retry would not change).
  std::function<adapters::UploadSession(const oci::Digest&)> resume;
  std::function<void(const oci::Digest&, const adapters::UploadSession&)> on_session;
};

struct CopyReport {
  std::uint64_t blobs_known = 0, blobs_existed = 0, blobs_mounted = 0, blobs_uploaded = 0;
  std::uint64_t bytes_uploaded = 0;
  std::uint64_t manifests = 0;  // manifests PUT (children, index, referrers)
  std::string digest;           // the copied image's digest in the store
  std::string sent_digest;      // its digest at the destination (differs when rewritten)
};

// Where an image's manifests and blobs are read from: the store (the relay's source of
// every transfer), or, for a dry run of an image not yet stored, the source registry's
// manifests alone.
class ImageSource {
 public:
  virtual ~ImageSource() = default;
  struct Manifest {
    std::string media_type;
    std::string bytes;
  };
  virtual Result<Manifest> manifest(const oci::Digest& d) = 0;
  // Manifests naming `subject` as their subject.
  virtual Result<std::vector<oci::Digest>> referrers(const oci::Digest& subject) = 0;
  // The blob's bytes (`size` from its descriptor). Not called in a dry run.
  virtual Result<std::unique_ptr<adapters::BodySource>> blob(const oci::Digest& d, std::uint64_t size) = 0;
};

// The store's repository `repo` (the store's key) as an ImageSource.
std::unique_ptr<ImageSource> store_image_source(store::Store& store, std::string repo);

// Copies the image `root` from `source` to `dst_repo` on `dest`, tagged `dst_tag` (empty:
// by digest only). Errors name the object and the cause: not_found (not in the source),
// or the destination's answer.
Result<CopyReport> copy_image(ImageSource& source, const oci::Digest& root, adapters::RegistryClient& dest,
                              std::string_view dst_repo, std::string_view dst_tag,
                              const CopyOptions& options = {});

// The same from the store: `src_repo` (the store's key) at `ref` (tag or digest).
Result<CopyReport> copy_image(store::Store& store, adapters::RegistryClient& dest,
                              std::string_view src_repo, std::string_view ref,
                              std::string_view dst_repo, std::string_view dst_tag,
                              const CopyOptions& options = {});

}  // namespace ocirelay::relay
