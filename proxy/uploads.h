// Blob upload sessions of the push API: an id, the repository it is for, and the store
// writer that hashes the bytes as they arrive. Thread-safe.
//
// Sessions live in memory: a restart loses them (clients start the blob again), and a
// session not touched for `expiry` is dropped with its temp file.
#pragma once

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
  std::unique_ptr<store::BlobWriter> writer;
  bool busy = false;  // a request is writing it; guarded by UploadSessions' mutex
  std::chrono::steady_clock::time_point touched;
};

class UploadSessions {
 public:
  UploadSessions(store::Store& store, std::chrono::seconds expiry, std::size_t max_sessions)
      : store_(store), expiry_(expiry), max_sessions_(max_sessions) {}

  // A new session for `repo`. Errors: too_many_requests (max_sessions open), the store
  // cannot take a blob (no_space, ...).
  Result<std::shared_ptr<UploadSession>> start(const std::string& repo);
  // The session `id` of `repo`, marked busy, or: not_found (unknown, expired, or another
  // repository's), busy (a request is writing it).
  Result<std::shared_ptr<UploadSession>> take(const std::string& id, const std::string& repo);
  // Ends a take(): the session stays for the next request.
  void give_back(const std::shared_ptr<UploadSession>& s);
  // Forgets the session (after its commit, a failure, or a DELETE); its writer, destroyed,
  // removes the temp file unless it was committed.
  void remove(const std::string& id);

 private:
  void expire_locked(std::chrono::steady_clock::time_point now);

  store::Store& store_;
  const std::chrono::seconds expiry_;
  const std::size_t max_sessions_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<UploadSession>> sessions_;
};

}  // namespace ocirelay::proxy
