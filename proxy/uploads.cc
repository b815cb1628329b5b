#include "proxy/uploads.h"

#include <random>

namespace ocirelay::proxy {

namespace {

std::string new_id() {
  static thread_local std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 4; ++i) {
    auto v = rd();
    for (int j = 0; j < 8; ++j, v >>= 4) id.push_back(kHex[v & 15]);
  }
  return id;
}

}  // namespace

Result<std::shared_ptr<UploadSession>> UploadSessions::start(const std::string& repo) {
  // Checked before the temp file is made, so a flood of refused POSTs costs no disk work;
  // concurrent starts may pass the cap by the few that raced here.
  {
    std::lock_guard lock(mu_);
    expire_locked(std::chrono::steady_clock::now());
    if (sessions_.size() >= max_sessions_)
      return Error{Errc::too_many_requests, std::to_string(max_sessions_) +
                                                " uploads are in progress: finish or DELETE one, or retry later"};
  }
  auto w = store_.begin_blob(std::nullopt, std::nullopt);
  if (!w) return w.error();
  auto s = std::make_shared<UploadSession>();
  s->id = new_id();
  s->repo = repo;
  s->writer = std::move(*w);
  s->touched = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  expire_locked(s->touched);
  sessions_[s->id] = s;
  return s;
}

Result<std::shared_ptr<UploadSession>> UploadSessions::take(const std::string& id, const std::string& repo) {
  std::lock_guard lock(mu_);
  expire_locked(std::chrono::steady_clock::now());
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->repo != repo)
    return Error{Errc::not_found, "blob upload unknown (expired, finished, or never started here)"};
  if (it->second->busy) return Error{Errc::busy, "another request is writing this upload"};
  it->second->busy = true;
  return it->second;
}

void UploadSessions::give_back(const std::shared_ptr<UploadSession>& s) {
  std::lock_guard lock(mu_);
  s->busy = false;
  s->touched = std::chrono::steady_clock::now();
}

void UploadSessions::remove(const std::string& id) {
  std::shared_ptr<UploadSession> gone;  // destroyed outside the lock (removes a file)
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  gone = std::move(it->second);
  sessions_.erase(it);
}

void UploadSessions::expire_locked(std::chrono::steady_clock::time_point now) {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (!it->second->busy && now - it->second->touched > expiry_) it = sessions_.erase(it);
    else ++it;
  }
}

}  // namespace ocirelay::proxy
