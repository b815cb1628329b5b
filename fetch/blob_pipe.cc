#include "fetch/blob_pipe.h"

namespace ocirelay::fetch {

void BlobPipe::notify_consumer(std::unique_lock<std::mutex>& lock) {
  auto wake = std::move(waiter_);
  waiter_ = nullptr;
  lock.unlock();
  if (wake) wake();
}

void BlobPipe::publish_head(std::optional<std::uint64_t> length) {
  std::unique_lock lock(mu_);
  has_head_ = true;
  length_ = length;
  notify_consumer(lock);
}

Status BlobPipe::push(const char* data, std::size_t n) {
  std::unique_lock lock(mu_);
  // A piece larger than the capacity still goes in whole once the pipe is empty.
  space_.wait(lock, [&] { return abandoned_ || buffered_.empty() || buffered_.size() + n <= capacity_; });
  if (abandoned_) return Error{Errc::cancelled, "the client left"};
  buffered_.append(data, n);
  notify_consumer(lock);
  return {};
}

void BlobPipe::finish(Status outcome) {
  std::unique_lock lock(mu_);
  if (!has_head_ && outcome.ok()) outcome = Error{Errc::upstream_protocol, "upstream sent no body"};
  outcome_ = std::move(outcome);
  notify_consumer(lock);
}

BlobPipe::Taken BlobPipe::take() {
  Taken t;
  {
    std::lock_guard lock(mu_);
    t.has_head = has_head_;
    t.length = length_;
    t.bytes.swap(buffered_);
    t.outcome = outcome_;
    head_taken_ = has_head_;
  }
  space_.notify_one();
  return t;
}

bool BlobPipe::wait(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  if (!buffered_.empty() || outcome_ || (has_head_ && !head_taken_)) return false;
  waiter_ = std::move(wake);
  return true;
}

void BlobPipe::abandon() {
  {
    std::lock_guard lock(mu_);
    abandoned_ = true;
    waiter_ = nullptr;
  }
  space_.notify_all();
}

}  // namespace ocirelay::fetch
