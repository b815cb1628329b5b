#include "http/failure_limiter.h"

namespace ocirelay::http {

FailureLimiter::FailureLimiter(unsigned max_failures, std::chrono::seconds window,
                               std::chrono::seconds lockout, std::size_t max_tracked)
    : max_failures_(max_failures ? max_failures : 1),
      window_(window),
      lockout_(lockout),
      max_tracked_(max_tracked ? max_tracked : 1) {}

std::chrono::seconds FailureLimiter::blocked(std::string_view address, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(address);
  if (it == entries_.end() || it->second.locked_until <= now) return std::chrono::seconds(0);
  auto left = std::chrono::ceil<std::chrono::seconds>(it->second.locked_until - now);
  return left.count() > 0 ? left : std::chrono::seconds(1);
}

void FailureLimiter::record_failure(std::string_view address, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(address);
  if (it == entries_.end()) {
    make_room(now);
    it = entries_.emplace(std::string(address), Entry{}).first;
  }
  Entry& e = it->second;
  if (e.locked_until > now) return;  // already locked: the lockout does not grow
  if (e.failures == 0 || now - e.window_start >= window_) {
    e.window_start = now;
    e.failures = 0;
  }
  if (++e.failures >= max_failures_) {
    e.locked_until = now + lockout_;
    e.failures = 0;
  }
}

void FailureLimiter::make_room(Clock::time_point now) {
  if (entries_.size() < max_tracked_) return;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const Entry& e = it->second;
    if (e.locked_until <= now && now - e.window_start >= window_) it = entries_.erase(it);
    else ++it;
  }
  while (entries_.size() >= max_tracked_) {
    auto oldest = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->second.window_start < oldest->second.window_start) oldest = it;
    entries_.erase(oldest);
  }
}

}  // namespace ocirelay::http
