#include "fetch/fetcher.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <spdlog/spdlog.h>

#include "store/file_system.h"
#include "store/store.h"

namespace ocirelay::fetch {

namespace {

constexpr std::size_t kMaxManifestBytes = 4 << 20;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The size an upstream blob must have: its Content-Length, which must agree with the size a
// manifest of the repository gives it (`described`), or whichever of the two is known. A
// byte more than that is an upstream protocol error.
class ExpectedSize {
 public:
  explicit ExpectedSize(std::optional<std::uint64_t> described) : described_(described) {}

  Status on_head(const adapters::ResponseHead& head) {
    if (described_ && head.content_length && *head.content_length != *described_)
      return Error{Errc::upstream_protocol,
                   "upstream announces " + std::to_string(*head.content_length) +
                       " bytes; the manifest gives this blob " + std::to_string(*described_)};
    size_ = head.content_length ? head.content_length : described_;
    source_ = head.content_length ? "its Content-Length" : "the size its manifest gives";
    return {};
  }
  // Errors: upstream_protocol when `total` bytes are more than the blob may have.
  Status check(std::uint64_t total) const {
    if (size_ && total > *size_)
      return Error{Errc::upstream_protocol, "upstream sent more than " + std::to_string(*size_) +
                                                " bytes, " + source_};
    return {};
  }
  std::optional<std::uint64_t> size() const { return size_; }

 private:
  std::optional<std::uint64_t> described_;
  std::optional<std::uint64_t> size_;
  std::string source_;
};

// Writes a blob into the store as it arrives and tells readers how far it got.
class FillSink final : public adapters::BodySink {
 public:
  // `writer`: begun already (the size was known before asking the upstream), or null.
  FillSink(store::Store& store, BlobFill& fill, std::optional<std::uint64_t> described,
           std::unique_ptr<store::BlobWriter> writer, const BlobProgressFn& progress)
      : store_(store), fill_(fill), writer_(std::move(writer)), expected_(described), progress_(progress) {}

  Status on_head(const adapters::ResponseHead& head) override {
    if (head_seen_) return Error{Errc::upstream_protocol, "second response head"};
    head_seen_ = true;
    if (auto st = expected_.on_head(head); !st) return st;
    if (!writer_) {
      auto w = store_.begin_blob(fill_.digest(), expected_.size());
      if (!w) return w.error();
      writer_ = std::move(*w);
    }
    auto reader = writer_->open_reader();
    if (!reader) return reader.error();
    // Readers announce the expected size even without a Content-Length: the fill fails
    // unless exactly those bytes arrive.
    fill_.publish_head(std::move(*reader), expected_.size());
    return {};
  }

  // libcurl hands over at most 16 KiB per call. Writing, hashing and waking readers per
  // call cost more than the transfer itself on a fast upstream, so bytes are gathered up
  // to kWriteChunk; a short piece means curl drained what the socket had, and is written
  // at once, so readers of a slow upstream are not kept waiting. When the socket drained
  // on a full piece, on_idle() writes what is gathered once the upstream goes quiet.
  Status on_data(const char* data, std::size_t n) override {
    if (!writer_) return Error{Errc::upstream_protocol, "body before head"};
    if (auto st = expected_.check(written_ + pending_.size() + n); !st) return st;
    pending_.append(data, n);
    if (pending_.size() >= kWriteChunk || n < kCurlPiece) return flush();
    return {};
  }

  Status on_idle() override { return flush(); }

  // Writes what is gathered. REQUIRES: called once the body ended, before verify().
  Status flush() {
    if (pending_.empty()) return {};
    auto s = writer_->append(pending_.data(), pending_.size());
    if (!s) return s;
    written_ += pending_.size();
    // Less than a full piece: the upstream is slow or paused, so readers hear of it now.
    const bool partial = pending_.size() < kWriteChunk;
    pending_.clear();
    fill_.publish_bytes(written_, partial);
    if (progress_) progress_(written_, expected_.size());
    return {};
  }

  std::unique_ptr<store::BlobWriter>& writer() { return writer_; }
  bool head_seen() const { return head_seen_; }

 private:
  store::Store& store_;
  BlobFill& fill_;
  std::unique_ptr<store::BlobWriter> writer_;
  bool head_seen_ = false;
  static constexpr std::size_t kWriteChunk = 256 << 10;
  static constexpr std::size_t kCurlPiece = 16 << 10;  // CURL_MAX_WRITE_SIZE
  ExpectedSize expected_;
  const BlobProgressFn& progress_;
  std::uint64_t written_ = 0;
  std::string pending_;  // received, not yet written
};

// Passes a blob to one client through a BlobPipe, hashing it, for a store that cannot take it.
class PipeSink final : public adapters::BodySink {
 public:
  PipeSink(BlobPipe& pipe, std::optional<std::uint64_t> described) : pipe_(pipe), expected_(described) {}

  Status on_head(const adapters::ResponseHead& head) override {
    if (auto st = expected_.on_head(head); !st) return st;
    pipe_.publish_head(expected_.size());
    return {};
  }
  Status on_data(const char* data, std::size_t n) override {
    if (auto st = expected_.check(received_ + n); !st) return st;
    hasher_.update(data, n);
    received_ += n;
    return pipe_.push(data, n);
  }
  // After the body ended: the bytes must be all there and hash to `d`.
  Status verify(const oci::Digest& d) {
    if (auto size = expected_.size(); size && received_ != *size)
      return Error{Errc::size_mismatch, "upstream sent " + std::to_string(received_) + " of " +
                                            std::to_string(*size) + " bytes"};
    if (auto got = hasher_.finish(); got != d)
      return Error{Errc::digest_mismatch, "content hashes to " + got.str()};
    return {};
  }

 private:
  BlobPipe& pipe_;
  ExpectedSize expected_;
  oci::Sha256 hasher_;
  std::uint64_t received_ = 0;
};

// Blocks until `fill` is done or failed, reporting its bytes as they come.
void wait_for_end(BlobFill& fill, const BlobProgressFn& progress) {
  // Shared with the wake-ups the fill keeps, which may run after this frame returned.
  struct Wakeup {
    std::mutex mu;
    std::condition_variable cv;
    bool woken = false;
  };
  std::uint64_t reported = 0;
  for (auto p = fill.progress(); p.state != BlobFill::State::done && p.state != BlobFill::State::failed;
       p = fill.progress()) {
    if (progress && p.written != reported) progress(reported = p.written, fill.length());
    auto w = std::make_shared<Wakeup>();
    bool waiting = fill.wait_for_progress(p, [w] {
      std::lock_guard lock(w->mu);
      w->woken = true;
      w->cv.notify_one();
    });
    if (!waiting) continue;
    std::unique_lock lock(w->mu);
    // The timeout only bounds a missed wake-up: the loop looks at the fill again.
    w->cv.wait_for(lock, std::chrono::seconds(1), [&] { return w->woken; });
  }
}

}  // namespace

void describe_fetch_metrics(metrics::Metrics& m) {
  m.describe("ocirelay_fills_in_flight", metrics::MetricType::gauge,
             "Blob transfers from upstream in progress.");
  m.describe("ocirelay_coalesced_waiters_total", metrics::MetricType::counter,
             "Requests that joined a blob transfer already in flight.");
}

bool platform_matches(const std::optional<oci::Platform>& want, const oci::Descriptor& d) {
  if (!want) return true;
  if (!d.platform) return false;
  if (d.platform->os != want->os || d.platform->architecture != want->architecture) return false;
  return want->variant.empty() || d.platform->variant == want->variant;
}

Fetcher::Fetcher(store::Store& store, metrics::Metrics& metrics, bool enforce_quota)
    : store_(store), metrics_(metrics), enforce_quota_after_fill_(enforce_quota) {
  describe_fetch_metrics(metrics_);
}

void Fetcher::run_fill(const Origin& origin, const std::shared_ptr<BlobFill>& fill,
                       std::optional<std::uint64_t> described, const BlobProgressFn& progress) noexcept {
  Status st = guarded("blob fill", [&] { return fill_blob(origin, fill, described, progress); });
  if (st) return;
  spdlog::error("fill {} {}: {}", origin.store_repo, fill->digest().str(), st.error().to_string());
  // Whatever threw, the fill must end: its readers would otherwise wait for ever.
  if (auto state = fill->state(); state != BlobFill::State::done && state != BlobFill::State::failed) {
    coalescer_.finish(*fill);
    fill->publish_failed(st.error());
  }
}

Status Fetcher::fill_blob(const Origin& origin, const std::shared_ptr<BlobFill>& fill,
                          std::optional<std::uint64_t> described, const BlobProgressFn& progress) {
  const auto& d = fill->digest();
  metrics_.set("ocirelay_fills_in_flight", {}, static_cast<double>(coalescer_.in_flight()));
  // The blob may have landed between the caller's store lookup and its join.
  auto info = store_.blob(d);
  auto linked = store_.repo_references(origin.store_repo, d);
  if (!info || !linked) {
    coalescer_.finish(*fill);
    fill->publish_failed(!info ? info.error() : linked.error());
    return {};
  }
  if (*info && *linked) {
    if (auto file = store_.open_blob(d)) {
      fill->publish_head(std::move(*file), (*info)->size);
      fill->publish_bytes((*info)->size);
      coalescer_.finish(*fill);
      fill->publish_done();
      return {};
    }
  }
  // With the size known, the store says before any upstream request whether it can take
  // the blob; when it cannot (disk, quota), readers stream it uncached instead.
  std::unique_ptr<store::BlobWriter> writer;
  if (described) {
    auto w = store_.begin_blob(d, *described);
    if (!w) {
      spdlog::warn("fill {} {} not started: {}", origin.store_repo, d.str(), w.error().to_string());
      coalescer_.finish(*fill);
      fill->publish_failed(w.error());
      return {};
    }
    writer = std::move(*w);
  }
  bool committed = false;
  {
    FillSink sink(store_, *fill, described, std::move(writer), progress);
    auto started = std::chrono::steady_clock::now();
    auto head = origin.client->get_blob(origin.repository, d, sink);
    Error failure;
    if (!head) {
      failure = head.error();
    } else if (!sink.head_seen()) {
      failure = Error{Errc::upstream_protocol, "upstream sent no body"};
    } else if (Status flushed = sink.flush(); !flushed) {
      failure = flushed.error();
    } else {
      // Readers hold back the last byte until the content verified; the commit's fsyncs
      // need not delay them (a client holding verified bytes loses nothing if caching fails).
      if (sink.writer()->verify()) fill->publish_verified();
      auto committed_info = sink.writer()->commit(origin.store_repo);
      if (committed_info) {
        committed = true;
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        spdlog::info("fill {} {} bytes={} seconds={:.3f}", origin.store_repo, d.str(),
                     committed_info->size, secs);
      } else {
        failure = committed_info.error();
      }
    }
    if (!committed) {
      spdlog::warn("fill {} {} failed: {}", origin.store_repo, d.str(), failure.to_string());
      sink.writer().reset();  // removes the temp file before anyone retries
      coalescer_.finish(*fill);
      fill->publish_failed(std::move(failure));
    }
  }
  if (committed) {
    coalescer_.finish(*fill);
    fill->publish_done();
    if (enforce_quota_after_fill_) enforce_quota();
  }
  metrics_.set("ocirelay_fills_in_flight", {}, static_cast<double>(coalescer_.in_flight()));
  return {};
}

Result<Fetcher::BlobDone> Fetcher::fetch_blob(const Origin& origin, const oci::Digest& d,
                                              std::optional<std::uint64_t> size,
                                              const BlobProgressFn& progress) {
  auto held = store_.blob(d);
  if (!held) return held.error();
  if (*held) {
    if (auto st = store_.link(origin.store_repo, d); !st) return st.error();
    return BlobDone{(*held)->size, false};
  }
  auto joined = coalescer_.join(origin.store_repo, d);
  if (joined.started) {
    run_fill(origin, joined.fill, size, progress);
  } else {
    metrics_.inc("ocirelay_coalesced_waiters_total");
    wait_for_end(*joined.fill, progress);
  }
  const auto& fill = *joined.fill;
  if (fill.state() == BlobFill::State::failed) return fill.error();
  return BlobDone{fill.written(), true};
}

void Fetcher::stream_uncached(const Origin& origin, const oci::Digest& d,
                              std::optional<std::uint64_t> described, BlobPipe& pipe) noexcept {
  Status outcome = guarded("uncached blob stream", [&]() -> Status {
    PipeSink sink(pipe, described);
    auto head = origin.client->get_blob(origin.repository, d, sink);
    if (!head) return head.error();
    return sink.verify(d);
  });
  if (!outcome)
    spdlog::warn("uncached blob {} {} failed: {}", origin.store_repo, d.str(),
                 outcome.error().to_string());
  pipe.finish(std::move(outcome));
}

Result<FetchedManifest> Fetcher::get_manifest(const Origin& origin, std::string_view ref,
                                              std::string_view accept) {
  auto got = origin.client->get_manifest(origin.repository, ref, accept, kMaxManifestBytes);
  if (!got) return got.error();
  FetchedManifest m;
  m.media_type = oci::reply_media_type(got->head.content_type, got->body);
  m.digest = got->digest;  // verified by get_manifest
  m.etag = std::move(got->head.etag);
  if (auto parsed = oci::parse_manifest(got->body, m.media_type)) {
    if (parsed->config) m.blob_sizes.emplace_back(parsed->config->digest, parsed->config->size);
    for (const auto& l : parsed->layers) m.blob_sizes.emplace_back(l.digest, l.size);
  }
  m.bytes = std::move(got->body);
  return m;
}

Result<ImageReport> Fetcher::fetch_image(const Origin& origin, const oci::ManifestRef& ref,
                                         const ImageOptions& options, ImageObserver* observer) {
  ImageReport report;
  std::optional<std::string> tag;
  if (!ref.tag.empty()) tag = ref.tag;
  if (auto st = walk_manifest(origin, ref.str(), tag, options, observer, report); !st) return st.error();
  return report;
}

Status Fetcher::walk_manifest(const Origin& origin, std::string_view ref,
                              std::optional<std::string> tag, const ImageOptions& options,
                              ImageObserver* observer, ImageReport& report) {
  auto got = get_manifest(origin, ref, oci::kDefaultManifestAccept);
  if (!got) return got.error();
  auto m = oci::parse_manifest(got->bytes, got->media_type);
  if (!m) return m.error();
  if (observer) observer->manifest_fetched(got->digest, got->media_type, got->bytes);

  if (m->is_index()) {
    std::size_t picked = 0;
    for (const auto& child : m->manifests) {
      if (!platform_matches(options.platform, child)) continue;
      ++picked;
      auto held = store_.manifest(child.digest);
      if (!held) return held.error();
      if (*held) {
        // Already held: its blobs were stored before it was (everything here stores
        // bottom-up); just make sure this repository references it.
        if (auto st = store_.link(origin.store_repo, child.digest); !st) return st;
        continue;
      }
      if (auto st = walk_manifest(origin, child.digest.str(), std::nullopt, options, observer, report); !st)
        return st;
    }
    if (options.platform && picked == 0)
      return Error{Errc::not_found, "no manifest for platform " + options.platform->str() +
                                        " in index " + got->digest.str()};
  } else {
    std::vector<const oci::Descriptor*> blobs;
    if (m->config) blobs.push_back(&*m->config);
    for (const auto& layer : m->layers) blobs.push_back(&layer);
    for (const oci::Descriptor* b : blobs) {
      std::optional<std::uint64_t> size;
      if (b->size > 0) size = static_cast<std::uint64_t>(b->size);
      BlobProgressFn progress;
      if (observer)
        progress = [observer, b](std::uint64_t written, std::optional<std::uint64_t> total) {
          observer->blob_progress(b->digest, written, total);
        };
      auto done = fetch_blob(origin, b->digest, size, progress);
      if (!done) return done.error();
      if (done->fetched) {
        ++report.blobs_fetched;
        report.bytes_fetched += done->size;
      } else {
        ++report.blobs_present;
      }
      if (observer) observer->blob_done(b->digest, done->size, done->fetched);
    }
  }

  auto put = store_.put_manifest(origin.store_repo, got->bytes, got->media_type, got->digest, tag,
                                 unix_now(), got->etag);
  if (!put) return put.error();
  ++report.manifests;
  report.digest = got->digest;
  if (observer) observer->manifest_stored(got->digest, tag);
  return {};
}

void Fetcher::enforce_quota() noexcept {
  if (quota_running_.exchange(true)) return;
  auto r = guarded("enforce quota", [&] { return store_.enforce_quota(); });
  if (!r) spdlog::warn("enforce quota: {}", r.error().to_string());
  else if (r->blobs > 0)
    spdlog::info("evicted blobs={} bytes={} tags={}", r->blobs, r->bytes, r->tags);
  quota_running_.store(false);
}

}  // namespace ocirelay::fetch
