// FetchCoalescer: one upstream transfer per missing blob, however many clients ask for it
// (invariant 5). A BlobFill is the shared state of one transfer: its temp file (readers
// follow it as it grows), its progress, and its outcome.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "oci/digest.h"
#include "oci/result.h"
#include "store/file_system.h"

namespace ocirelay::fetch {

// Thread-safety: progress fields are atomics or under mu; any thread may read them.
// The fetch thread is the only writer.
class BlobFill {
 public:
  enum class State { starting, streaming, done, failed };

  BlobFill(oci::Digest digest, std::string store_repo);
  ~BlobFill();  // closes the temp file
  BlobFill(const BlobFill&) = delete;
  BlobFill& operator=(const BlobFill&) = delete;

  const oci::Digest& digest() const { return digest_; }
  const std::string& store_repo() const { return store_repo_; }

  State state() const { return state_.load(std::memory_order_acquire); }
  // Bytes appended to the temp file so far (readable through fd()).
  std::uint64_t written() const { return written_.load(std::memory_order_acquire); }
  // True once every byte is written and hashed to the digest (before the store commit):
  // from then on readers may send the last byte.
  bool verified() const { return verified_.load(std::memory_order_acquire); }
  // Content-Length from the upstream head, once state() != starting.
  std::optional<std::uint64_t> length() const;
  // A read-only descriptor of the temp file, valid once state() != starting and for the
  // life of this object (it survives the rename into blobs/). -1 when the fill failed early.
  int fd() const { return fd_; }
  // The error once state() == failed.
  Error error() const;

  // What a reader saw of the fill. progress() reads state and verified before written, so
  // `written` is final whenever `verified` is true or `state` is done.
  struct Progress {
    State state = State::starting;
    bool verified = false;
    std::uint64_t written = 0;
  };
  Progress progress() const { return {state(), verified(), written()}; }

  // Registers `wake` to run once, at the next progress (head, bytes, verified, done, failed). When
  // the fill moved on since `seen`, `wake` is not stored and false is returned: the caller
  // re-checks instead of waiting.
  bool wait_for_progress(const Progress& seen, std::function<void()> wake);

  // --- fetch thread only ----------------------------------------------------------
  // `file`: the temp file (or the stored blob) opened for reading; null in tests.
  void publish_head(std::unique_ptr<store::ReadableFile> file, std::optional<std::uint64_t> length);
  // Readers are woken per 256 KiB of progress, or at once with `wake_now` (a slow upstream's
  // small piece: nobody should wait for the next 256 KiB to see it).
  void publish_bytes(std::uint64_t total_written, bool wake_now = false);
  void publish_verified();
  void publish_done();
  void publish_failed(Error e);

 private:
  void notify();

  const oci::Digest digest_;
  const std::string store_repo_;
  std::atomic<State> state_{State::starting};
  std::atomic<std::uint64_t> written_{0};
  std::uint64_t woken_at_ = 0;  // written_ when readers were last woken; guarded by mu_
  std::atomic<bool> verified_{false};
  std::unique_ptr<store::ReadableFile> file_;
  int fd_ = -1;  // file_'s descriptor
  mutable std::mutex mu_;
  std::optional<std::uint64_t> length_;
  Error error_;
  std::vector<std::function<void()>> waiters_;
};

// Maps (store repository, digest) -> the fill in flight. Thread-safe.
class FetchCoalescer {
 public:
  struct Joined {
    std::shared_ptr<BlobFill> fill;
    bool started = false;  // true: the caller created the fill and must start it
  };
  // Joins the fill for `d` under `store_repo`, or creates one (started = true). The key
  // includes the repository: a client may only ride on a transfer made for its own
  // repository (invariant 2).
  Joined join(const std::string& store_repo, const oci::Digest& d);
  // The fill in flight for `d` under `store_repo`, if any; does not create one.
  std::shared_ptr<BlobFill> find(const std::string& store_repo, const oci::Digest& d) const;
  // Removes a finished fill. REQUIRES: called after the blob is committed (or failed), so a
  // request that misses here finds the blob in the store.
  void finish(const BlobFill& fill);
  std::size_t in_flight() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<BlobFill>> fills_;
};

}  // namespace ocirelay::fetch
