// A destination's `limits.bytes_per_second`: one token bucket shared by every upload to
// that registry, and an ImageSource whose blob bodies draw from it as they are read; and
// an ImageSource that a flag cancels (a stopped execution's upload). Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "adapters/rate.h"
#include "relay/copy.h"

namespace ocirelay::relay {

class ByteRate {
 public:
  // REQUIRES: per_second > 0. Up to a tenth of a second's worth may go at once.
  explicit ByteRate(std::uint64_t per_second) : per_second_(per_second), rate_(static_cast<double>(per_second)) {}
  std::uint64_t per_second() const { return per_second_; }
  // The most one read should take, so that a wait stays short (a cancelled transfer
  // notices within about that).
  std::size_t slice() const;
  // Blocks until `n` more bytes may go.
  void take(std::uint64_t n) { rate_.take(static_cast<double>(n)); }

 private:
  const std::uint64_t per_second_;
  adapters::Rate rate_;
};

// `source` with each blob body read at most as fast as `rate` allows (`rate` outlives it).
std::unique_ptr<ImageSource> rate_limited(std::unique_ptr<ImageSource> source, ByteRate& rate);

// `source` whose every read fails with Errc::cancelled once `cancel` reads true, so that
// an upload in flight ends at its next read (its confirmed offset stays resumable).
// `cancel` outlives it.
std::unique_ptr<ImageSource> cancellable(std::unique_ptr<ImageSource> source, const std::atomic<bool>& cancel);

}  // namespace ocirelay::relay
