// Blob upload sessions of the push API, over the store's uploads (store::UploadWriter):
// the store keeps each session's bytes on disk across restarts; this keeps the writers of
// recently active sessions open, so a chunk continues the hash instead of re-reading the
// bytes kept. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "oci/result.h"
#include "store/store.h"

namespace ocirelay::proxy {

struct UploadSession {
  std::string id;
  std::string repo;  // the store's key of the repository
  std::unique_ptr<store::UploadWriter> writer;
  // The bytes kept, for a GET while a request writes: set by whoever holds the session.
  std::atomic<std::uint64_t> size{0};
  bool busy = false;  // a request is writing it; guarded by UploadSessions' mutex
  std::chrono::steady_clock::time_point touched;
};

struct UploadStatus {
  std::string id;
  std::uint64_t size = 0;
};

class UploadSessions {
 public:
  // `expiry`: a session not continued for this long is removed with its bytes.
  UploadSessions(store::Store& store, std::chrono::seconds expiry, std::size_t max_sessions)
      : store_(store), expiry_(expiry), max_sessions_(max_sessions) {}

  // Blocking calls (store writes, a rehash after a restart): from a worker thread.

  // A new session for `repo`. Errors: too_many_requests (max_sessions open), the store
  // cannot take a blob (no_space, ...).
  Result<std::shared_ptr<UploadSession>> start(const std::string& repo, const std::string& user);
  // The session `id` of `repo`, marked busy (reopened from the store after a restart), or:
  // not_found (unknown, expired, or another repository's), busy (a request is writing it).
  Result<std::shared_ptr<UploadSession>> take(const std::string& id, const std::string& repo);
  // How much session `id` of `repo` holds, also while a request writes it. not_found as take.
  Result<UploadStatus> status(const std::string& id, const std::string& repo);
  // Ends a take(): `s->size` is brought up to date and the session stays for the next request.
  void give_back(const std::shared_ptr<UploadSession>& s);
  // Ends a taken session: after its commit, or a failure that leaves nothing worth
  // continuing (its bytes go then).
  void finish(const std::shared_ptr<UploadSession>& s, bool committed);
  // A client's DELETE of session `id`: not_found as take, busy while a request writes it.
  Status cancel(const std::string& id, const std::string& repo);
  // Removes sessions idle past the expiry (their files) and closes writers idle for a few
  // minutes (the store keeps their bytes). Called periodically.
  void sweep();

 private:
  store::Store& store_;
  const std::chrono::seconds expiry_;
  const std::size_t max_sessions_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<UploadSession>> open_;  // sessions with a live writer
};

}  // namespace ocirelay::proxy
