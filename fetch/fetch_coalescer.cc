#include "fetch/fetch_coalescer.h"

#include "store/file_system.h"

namespace ocirelay::fetch {

BlobFill::BlobFill(oci::Digest digest, std::string store_repo)
    : digest_(std::move(digest)), store_repo_(std::move(store_repo)) {}

BlobFill::~BlobFill() = default;

std::optional<std::uint64_t> BlobFill::length() const {
  std::lock_guard lock(mu_);
  return length_;
}

Error BlobFill::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

bool BlobFill::wait_for_progress(const Progress& seen, std::function<void()> wake) {
  std::lock_guard lock(mu_);
  // verified_ counts as progress too (a reader that saw it false may now send its last
  // byte), but only when it changed: a reader that saw it true must wait, not spin.
  if (written_.load() != seen.written || state_.load() != seen.state ||
      verified_.load() != seen.verified)
    return false;
  waiters_.push_back(std::move(wake));
  return true;
}

void BlobFill::notify() {
  std::vector<std::function<void()>> waiters;
  {
    std::lock_guard lock(mu_);
    waiters.swap(waiters_);
  }
  for (auto& w : waiters) w();
}

void BlobFill::publish_head(std::unique_ptr<store::ReadableFile> file,
                            std::optional<std::uint64_t> length) {
  {
    std::lock_guard lock(mu_);
    file_ = std::move(file);
    fd_ = file_ ? file_->native_handle() : -1;
    length_ = length;
    state_.store(State::streaming, std::memory_order_release);
  }
  notify();
}

void BlobFill::publish_bytes(std::uint64_t total_written, bool wake_now) {
  // Waking a reader costs a context switch or two (expensive on VMs), and each wake-up
  // sends what arrived: batch them per kWakeStep bytes. The head, verification, the end
  // and failures always wake readers, so nobody waits for bytes that never come.
  constexpr std::uint64_t kWakeStep = 256 << 10;
  {
    std::lock_guard lock(mu_);
    written_.store(total_written, std::memory_order_release);
    if (waiters_.empty() || (!wake_now && total_written - woken_at_ < kWakeStep)) return;
    woken_at_ = total_written;
  }
  notify();
}

void BlobFill::publish_verified() {
  {
    std::lock_guard lock(mu_);  // orders the flag with wait_for_progress's check
    verified_.store(true, std::memory_order_release);
  }
  notify();
}

void BlobFill::publish_done() {
  {
    std::lock_guard lock(mu_);
    if (!length_) length_ = written_.load();
    state_.store(State::done, std::memory_order_release);
  }
  notify();
}

void BlobFill::publish_failed(Error e) {
  {
    std::lock_guard lock(mu_);
    error_ = std::move(e);
    state_.store(State::failed, std::memory_order_release);
  }
  notify();
}

FetchCoalescer::Joined FetchCoalescer::join(const std::string& store_repo, const oci::Digest& d) {
  std::string key = store_repo + "@" + d.str();
  std::lock_guard lock(mu_);
  auto it = fills_.find(key);
  if (it != fills_.end()) return {it->second, false};
  auto fill = std::make_shared<BlobFill>(d, store_repo);
  fills_.emplace(std::move(key), fill);
  return {std::move(fill), true};
}

std::shared_ptr<BlobFill> FetchCoalescer::find(const std::string& store_repo,
                                               const oci::Digest& d) const {
  std::lock_guard lock(mu_);
  auto it = fills_.find(store_repo + "@" + d.str());
  return it == fills_.end() ? nullptr : it->second;
}

void FetchCoalescer::finish(const BlobFill& fill) {
  std::string key = fill.store_repo() + "@" + fill.digest().str();
  std::lock_guard lock(mu_);
  auto it = fills_.find(key);
  if (it != fills_.end() && it->second.get() == &fill) fills_.erase(it);
}

std::size_t FetchCoalescer::in_flight() const {
  std::lock_guard lock(mu_);
  return fills_.size();
}

}  // namespace ocirelay::fetch
