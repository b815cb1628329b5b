// BlobPipe: a blob streamed from upstream to one client without touching the store, for
// when the store cannot take it (disk full, quota unmeetable). The fill-pool thread pushes
// what arrives and hashes it; the client's coroutine takes it out. Memory is bounded: a
// push blocks while `capacity` bytes wait for the client, so the transfer runs at the
// client's pace. Thread-safe: one producer, one consumer.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "oci/result.h"

namespace ocirelay::fetch {

class BlobPipe {
 public:
  explicit BlobPipe(std::size_t capacity = std::size_t{4} << 20) : capacity_(capacity) {}
  BlobPipe(const BlobPipe&) = delete;
  BlobPipe& operator=(const BlobPipe&) = delete;

  // --- producer -------------------------------------------------------------------
  void publish_head(std::optional<std::uint64_t> length);
  // Blocks while the pipe is full. Errors: cancelled once the consumer abandoned it.
  Status push(const char* data, std::size_t n);
  // The transfer ended: ok once every byte arrived and hashed to the digest, else why not.
  // Readers hold back the blob's last byte until an ok outcome.
  void finish(Status outcome);

  // --- consumer -------------------------------------------------------------------
  struct Taken {
    bool has_head = false;
    std::optional<std::uint64_t> length;  // Content-Length, when the upstream sent one
    std::string bytes;                    // what arrived since the last take
    std::optional<Status> outcome;        // set once finished (after the last bytes)
  };
  Taken take();
  // Registers `wake` to run once at the next change; false (and `wake` dropped) when there
  // is something to take already.
  bool wait(std::function<void()> wake);
  // The client left: a blocked or later push fails, which aborts the transfer.
  void abandon();

 private:
  void notify_consumer(std::unique_lock<std::mutex>& lock);

  const std::size_t capacity_;
  std::mutex mu_;
  std::condition_variable space_;  // producer waits here
  bool has_head_ = false;
  std::optional<std::uint64_t> length_;
  std::string buffered_;
  std::optional<Status> outcome_;
  bool abandoned_ = false;
  bool head_taken_ = false;
  std::function<void()> waiter_;
};

}  // namespace ocirelay::fetch
