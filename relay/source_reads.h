// Reads of remote images into the store, each made once however many destinations want
// the image while it runs (read once, write N). A destination's transfer does not wait for
// the whole image: it starts once the read has the manifest and sends each blob as its
// fill writes it, at its own pace, so a slow destination holds back no other and the
// bytes go out while they are still arriving. Memory stays bounded: blobs are followed in
// the store's files, never held.
//
// Thread-safe. Each read runs on a thread of its own; the destructor waits for them (a
// cancelled client ends one within about a second).
#pragma once

#include <atomic>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "oci/digest.h"
#include "oci/result.h"
#include "relay/copy.h"
#include "relay/filters.h"

namespace ocirelay::store {
class Store;
}
namespace ocirelay::fetch {
class Fetcher;
}
namespace ocirelay::adapters {
class RegistryClient;
}

namespace ocirelay::relay {

// One image of a remote source, as a rule reads it.
struct RemoteImage {
  adapters::RegistryClient* client = nullptr;
  std::string registry;    // the configured name: the store keeps it as "<registry>/<repository>"
  std::string repository;  // at the registry
  std::string tag;         // what it is stored under (empty: by digest only)
  oci::Digest digest;      // what the tag named when it was resolved: what is read
  PlatformFilter platforms;
  bool referrers = true;   // also the manifests naming it as their subject
  std::string store_repository() const { return registry + "/" + repository; }
};

class SourceReads {
 public:
  // Both outlive this object.
  SourceReads(fetch::Fetcher& fetcher, store::Store& store);
  ~SourceReads();
  SourceReads(const SourceReads&) = delete;
  SourceReads& operator=(const SourceReads&) = delete;

  // The image to send: the store's copy when the store holds it under its tag already,
  // else one that follows its read (started here unless one is running). A read that
  // fails fails what waits on it, with "reading the source: <cause>". `cancel` (set: read
  // true) ends a wait for the read at once, with Errc::cancelled; it outlives the source.
  std::unique_ptr<ImageSource> open(const RemoteImage& image, const std::atomic<bool>* cancel = nullptr);

  // Reads running now.
  std::size_t running() const;

  class Feed;  // one read's progress, shared by every source following it

 private:
  struct Read;
  void reap_locked();  // joins the reads that finished

  fetch::Fetcher& fetcher_;
  store::Store& store_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Feed>> running_;  // "<store repository>@<digest>"
  std::list<Read> reads_;
};

}  // namespace ocirelay::relay
