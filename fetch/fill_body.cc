#include "fetch/fill_body.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace ocirelay::fetch {
namespace {

// Set once by the fill's notification; outlives the body (the fill keeps its waiters
// until it next makes progress).
struct Wake {
  std::mutex mu;
  std::condition_variable cv;
  bool fired = false;
};

class FillBody final : public adapters::BodySource {
 public:
  FillBody(std::shared_ptr<BlobFill> fill, std::uint64_t size) : fill_(std::move(fill)), size_(size) {}

  std::uint64_t size() const override { return size_; }

  Result<std::size_t> read(std::uint64_t offset, char* buf, std::size_t n) override {
    const auto p = fill_->progress();
    if (p.state == BlobFill::State::failed) return failure();
    const std::uint64_t have = readable(p);
    if (offset >= have) return std::size_t{0};
    if (n > have - offset) n = static_cast<std::size_t>(have - offset);
    for (;;) {
      const ssize_t got = ::pread(fill_->fd(), buf, n, static_cast<off_t>(offset));
      if (got >= 0) return static_cast<std::size_t>(got);
      if (errno != EINTR) return error_from_errno(errno, "read the fill of " + fill_->digest().str());
    }
  }

  Status wait_for_more(std::uint64_t offset, const std::atomic<bool>* cancel) override {
    for (;;) {
      const auto p = fill_->progress();
      if (p.state == BlobFill::State::failed) return failure();
      if (readable(p) > offset) return {};
      if (p.state == BlobFill::State::done || (p.verified && p.written < size_))
        return Error{Errc::size_mismatch, "blob " + fill_->digest().str() + " ended at " + std::to_string(p.written) +
                                              " bytes at the source; its descriptor says " + std::to_string(size_)};
      if (cancel && cancel->load()) return Error{Errc::cancelled, "upload cancelled"};
      if (!wake_ || fired()) {
        auto w = std::make_shared<Wake>();
        if (!fill_->wait_for_progress(p, [w] {
              std::lock_guard lock(w->mu);
              w->fired = true;
              w->cv.notify_all();
            }))
          continue;  // it moved on already: look again
        wake_ = std::move(w);
      }
      // Woken by the fill; the timeout only bounds how late a cancel is seen.
      std::unique_lock lock(wake_->mu);
      wake_->cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return wake_->fired; });
    }
  }

 private:
  // Bytes that may go: all once verified, else all but the blob's last byte.
  std::uint64_t readable(const BlobFill::Progress& p) const {
    if (p.state == BlobFill::State::starting) return 0;  // no file yet
    if (p.verified || p.state == BlobFill::State::done) return std::min(p.written, size_);
    return std::min(p.written, size_ > 0 ? size_ - 1 : 0);
  }
  bool fired() {
    std::lock_guard lock(wake_->mu);
    return wake_->fired;
  }
  Error failure() const {
    const Error e = fill_->error();
    return Error{e.code, "reading " + fill_->digest().str() + " from the source: " + e.message};
  }

  std::shared_ptr<BlobFill> fill_;
  const std::uint64_t size_;
  std::shared_ptr<Wake> wake_;  // registered with the fill, not yet fired
};

}  // namespace

std::unique_ptr<adapters::BodySource> follow_fill(std::shared_ptr<BlobFill> fill, std::uint64_t size) {
  return std::make_unique<FillBody>(std::move(fill), size);
}

}  // namespace ocirelay::fetch
