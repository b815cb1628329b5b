#include "adapters/rate.h"

#include <algorithm>
#include <thread>

namespace ocirelay::adapters {

std::chrono::steady_clock::time_point Rate::reserve(double n) {
  using namespace std::chrono;
  std::lock_guard lock(mu_);
  const auto now = steady_clock::now();
  next_ = std::max(next_, now - burst_);
  next_ += duration_cast<steady_clock::duration>(duration<double>(n / per_second_));
  return std::max(next_, now);
}

bool Rate::take(double n, const std::atomic<bool>* cancel) {
  using namespace std::chrono;
  const auto until = reserve(n);
  if (!cancel) {
    std::this_thread::sleep_until(until);
    return true;
  }
  for (auto now = steady_clock::now(); now < until; now = steady_clock::now()) {
    if (cancel->load()) return false;
    std::this_thread::sleep_until(std::min(until, now + milliseconds(100)));
  }
  return !cancel->load();
}

}  // namespace ocirelay::adapters
