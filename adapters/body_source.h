// BodySource: where an upload's bytes come from (a stored blob, or one whose fill is still
// running), read at an offset so a chunk can be resent and an upload resumed without
// holding the blob in memory.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "oci/result.h"

namespace ocirelay::adapters {

// Thread-compatible: one upload reads a source at a time.
class BodySource {
 public:
  virtual ~BodySource() = default;
  // The body's full length, known up front (a descriptor's size).
  virtual std::uint64_t size() const = 0;
  // Copies up to `n` bytes at `offset` into `buf`; returns how many. Fewer than asked (0
  // included) means the bytes past them are not there yet: call wait_for_more().
  // REQUIRES: offset < size().
  virtual Result<std::size_t> read(std::uint64_t offset, char* buf, std::size_t n) = 0;
  // Blocks until bytes past `offset` can be read, the source failed (its error), or
  // `cancel` reads true (Errc::cancelled). A complete source returns at once.
  virtual Status wait_for_more(std::uint64_t offset, const std::atomic<bool>* cancel) {
    (void)offset;
    (void)cancel;
    return {};
  }
};

// A file's bytes [0, length). Follows a growing file (a fill still writing it): a read
// past its current end waits, through `wait` when given (the writer's notification, which
// returns once more bytes exist or the fill failed), else by looking at the file's size a
// few times a second, for at most `stall` without growth (then Errc::upstream_unavailable).
struct FileBodyOptions {
  std::function<Status(std::uint64_t have, const std::atomic<bool>* cancel)> wait;
  std::chrono::milliseconds stall{30000};
};
Result<std::unique_ptr<BodySource>> open_file_body(const std::string& path, std::uint64_t length,
                                                   FileBodyOptions options = {});

}  // namespace ocirelay::adapters
