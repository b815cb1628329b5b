// A steady rate shared by threads (requests or bytes per second), with a small burst: an
// idle rate holds at most `burst` worth of credit. Used for a registry's
// `limits.requests_per_second` (the client paces every request it sends) and
// `limits.bytes_per_second` (relay uploads). Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>

namespace ocirelay::adapters {

class Rate {
 public:
  // REQUIRES: per_second > 0.
  explicit Rate(double per_second, std::chrono::milliseconds burst = std::chrono::milliseconds(100))
      : per_second_(per_second), burst_(burst) {}
  double per_second() const { return per_second_; }

  // Takes `n` units and returns when they are paid for (now or later); the caller waits
  // until then. Units taken are never given back.
  std::chrono::steady_clock::time_point reserve(double n);
  // reserve(n) and sleeps until then; with `cancel`, wakes every 100 ms and returns false
  // as soon as it reads true.
  bool take(double n, const std::atomic<bool>* cancel = nullptr);

 private:
  const double per_second_;
  const std::chrono::milliseconds burst_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point next_{};  // when everything taken so far is paid for
};

}  // namespace ocirelay::adapters
