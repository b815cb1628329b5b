#include "relay/source_reads.h"

#include <chrono>
#include <condition_variable>
#include <exception>
#include <list>
#include <optional>

#include <spdlog/spdlog.h>

#include "fetch/fetcher.h"
#include "fetch/fill_body.h"
#include "relay/replicator.h"
#include "store/store.h"

namespace ocirelay::relay {

// What one read has brought so far: the manifests it fetched (a transfer needs an image's
// manifests before the read stores them, which it does only after their blobs), and a
// generation that moves whenever anything a follower waits for may have changed.
class SourceReads::Feed final : public fetch::ImageObserver {
 public:
  // --- the read's thread ----------------------------------------------------------
  void manifest_fetched(const oci::Digest& d, std::string_view media_type, std::string_view bytes) override {
    std::lock_guard lock(mu_);
    manifests_.emplace(d, ImageSource::Manifest{std::string(media_type), std::string(bytes)});
    bump_locked();
  }
  void blob_progress(const oci::Digest& d, std::uint64_t, std::optional<std::uint64_t>) override {
    if (d == current_) return;  // once per blob: its fill exists now
    current_ = d;
    std::lock_guard lock(mu_);
    bump_locked();
  }
  void blob_done(const oci::Digest&, std::uint64_t, bool) override {
    std::lock_guard lock(mu_);
    bump_locked();
  }
  void manifest_stored(const oci::Digest&, const std::optional<std::string>&) override {
    std::lock_guard lock(mu_);
    bump_locked();
  }
  void end(Status outcome) {
    std::lock_guard lock(mu_);
    outcome_ = std::move(outcome);
    bump_locked();
  }

  // --- followers ------------------------------------------------------------------
  std::uint64_t generation() const {
    std::lock_guard lock(mu_);
    return generation_;
  }
  std::optional<ImageSource::Manifest> manifest(const oci::Digest& d) const {
    std::lock_guard lock(mu_);
    auto it = manifests_.find(d);
    if (it == manifests_.end()) return std::nullopt;
    return it->second;
  }
  // Unset while the read runs.
  std::optional<Status> outcome() const {
    std::lock_guard lock(mu_);
    return outcome_;
  }
  // Blocks until the generation moves past `seen`. Errors: cancelled.
  Status wait(std::uint64_t seen, const std::atomic<bool>* cancel) const {
    std::unique_lock lock(mu_);
    for (;;) {
      if (generation_ != seen) return {};
      if (cancel && cancel->load()) return Error{Errc::cancelled, "stopped while waiting for the source"};
      // The timeout only bounds how late a cancel is seen.
      moved_.wait_for(lock, std::chrono::milliseconds(200));
    }
  }

 private:
  void bump_locked() {
    ++generation_;
    moved_.notify_all();
  }

  oci::Digest current_;  // the read's thread only
  mutable std::mutex mu_;
  mutable std::condition_variable moved_;
  std::uint64_t generation_ = 0;
  std::map<oci::Digest, ImageSource::Manifest> manifests_;
  std::optional<Status> outcome_;
};

namespace {

// An image as its read brings it: what is in the store from the store, a blob being
// filled from its fill, anything else once the read gets to it.
class FollowingSource final : public ImageSource {
 public:
  FollowingSource(std::shared_ptr<SourceReads::Feed> feed, store::Store& store, fetch::FetchCoalescer& fills,
                  std::string store_repo, const std::atomic<bool>* cancel)
      : feed_(std::move(feed)), store_(store), fills_(fills), store_repo_(store_repo),
        stored_(store_image_source(store, std::move(store_repo))), cancel_(cancel) {}

  Result<Manifest> manifest(const oci::Digest& d) override {
    for (;;) {
      const auto seen = feed_->generation();
      if (auto m = feed_->manifest(d)) return std::move(*m);
      auto held = stored_->manifest(d);  // an index child the store held already
      if (held || held.error().code != Errc::not_found) return held;
      if (auto out = feed_->outcome()) return not_read(*out, "manifest " + d.str());
      if (auto st = feed_->wait(seen, cancel_); !st) return st.error();
    }
  }

  // Once the read ended: it reads the referrers after the image.
  Result<std::vector<oci::Digest>> referrers(const oci::Digest& subject) override {
    for (;;) {
      const auto seen = feed_->generation();
      if (auto out = feed_->outcome()) {
        if (!*out) return not_read(*out, "");
        return stored_->referrers(subject);
      }
      if (auto st = feed_->wait(seen, cancel_); !st) return st.error();
    }
  }

  Result<std::unique_ptr<adapters::BodySource>> blob(const oci::Digest& d, std::uint64_t size) override {
    for (;;) {
      const auto seen = feed_->generation();
      auto held = store_.blob(d);
      if (!held) return held.error();
      if (*held) return stored_->blob(d, size);
      if (auto fill = fills_.find(store_repo_, d)) return fetch::follow_fill(std::move(fill), size);
      if (auto out = feed_->outcome()) return not_read(*out, "blob " + d.str());
      if (auto st = feed_->wait(seen, cancel_); !st) return st.error();
    }
  }

 private:
  static Error not_read(const Status& outcome, const std::string& what) {
    if (!outcome) return Error{outcome.error().code, "reading the source: " + outcome.error().message};
    return Error{Errc::not_found, what + " is not in the image read from the source"};
  }

  std::shared_ptr<SourceReads::Feed> feed_;
  store::Store& store_;
  fetch::FetchCoalescer& fills_;
  const std::string store_repo_;
  std::unique_ptr<ImageSource> stored_;
  const std::atomic<bool>* cancel_;
};

}  // namespace

struct SourceReads::Read {
  std::thread thread;
  bool finished = false;  // guarded by mu_; the thread touches nothing of ours after it
};

SourceReads::SourceReads(fetch::Fetcher& fetcher, store::Store& store) : fetcher_(fetcher), store_(store) {}

SourceReads::~SourceReads() {
  std::list<Read> reads;
  {
    std::lock_guard lock(mu_);
    reads.swap(reads_);
  }
  for (auto& r : reads) r.thread.join();
}

void SourceReads::reap_locked() {
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (!it->finished) {
      ++it;
      continue;
    }
    it->thread.join();  // past its last use of mu_: at most its feed's end is left
    it = reads_.erase(it);
  }
}

std::size_t SourceReads::running() const {
  std::lock_guard lock(mu_);
  return running_.size();
}

std::unique_ptr<ImageSource> SourceReads::open(const RemoteImage& image, const std::atomic<bool>* cancel) {
  const std::string store_repo = image.store_repository();
  const std::string key = store_repo + "@" + image.digest.str();
  std::lock_guard lock(mu_);
  reap_locked();
  std::shared_ptr<Feed> feed;
  if (auto it = running_.find(key); it != running_.end()) {
    feed = it->second;
  } else {
    const bool held = [&] {
      if (image.tag.empty()) {
        auto linked = store_.repo_references(store_repo, image.digest);
        return linked && *linked;
      }
      auto t = store_.tag(store_repo, image.tag);
      return t && *t && (*t)->digest == image.digest;
    }();
    if (held) return store_image_source(store_, store_repo);
    feed = std::make_shared<Feed>();
    running_.emplace(key, feed);
    auto& read = reads_.emplace_back();
    try {
      read.thread = std::thread([this, image, key, feed, &read] {
        Status outcome;
        try {
          auto got = fetch_remote_image(fetcher_, *image.client, image.registry, image.repository,
                                        oci::ManifestRef{image.tag, image.digest}, image.platforms,
                                        image.referrers, feed.get());
          if (!got) outcome = got.error();
        } catch (const std::exception& e) {
          outcome = Error{Errc::internal, std::string("reading the source: ") + e.what()};
        }
        if (!outcome)
          spdlog::warn("relay: reading {}/{}@{}: {}", image.registry, image.repository, image.digest.str(),
                       outcome.error().message);
        {
          // Gone from running_ first: from now on an open() finds the image in the store.
          std::lock_guard done(mu_);
          running_.erase(key);
          read.finished = true;
        }
        feed->end(std::move(outcome));
      });
    } catch (const std::system_error& e) {
      running_.erase(key);
      reads_.pop_back();
      feed->end(Error{Errc::internal, std::string("no thread to read the source: ") + e.what()});
    }
  }
  return std::make_unique<FollowingSource>(feed, store_, fetcher_.coalescer(), store_repo, cancel);
}

}  // namespace ocirelay::relay
