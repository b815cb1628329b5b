#include "proxy/uploads.h"

#include <spdlog/spdlog.h>

namespace ocirelay::proxy {

namespace {
// A session idle this long gives its writer (and file descriptor) back; its next request
// reopens it from the store, hashing what it holds again.
constexpr auto kCloseIdleWriters = std::chrono::minutes(5);

Error unknown() {
  return Error{Errc::not_found, "blob upload unknown (expired, finished, or never started here)"};
}
}  // namespace

Result<std::shared_ptr<UploadSession>> UploadSessions::start(const std::string& repo,
                                                             const std::string& user) {
  // Checked before the file is made, so a flood of refused POSTs costs no disk work;
  // concurrent starts may pass the cap by the few that raced here.
  auto count = store_.upload_count();
  if (!count) return count.error();
  if (*count >= max_sessions_)
    return Error{Errc::too_many_requests, std::to_string(max_sessions_) +
                                              " uploads are in progress: finish or DELETE one, or retry later"};
  auto w = store_.begin_upload(repo, user);
  if (!w) return w.error();
  auto s = std::make_shared<UploadSession>();
  s->id = (*w)->id();
  s->repo = repo;
  s->writer = std::move(*w);
  s->busy = true;
  s->touched = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  open_[s->id] = s;
  return s;
}

Result<std::shared_ptr<UploadSession>> UploadSessions::take(const std::string& id, const std::string& repo) {
  {
    std::lock_guard lock(mu_);
    if (auto it = open_.find(id); it != open_.end()) {
      if (it->second->repo != repo) return unknown();
      if (it->second->busy) return Error{Errc::busy, "another request is writing this upload"};
      it->second->busy = true;
      return it->second;
    }
  }
  // Not open here (a restart, or idle): the store has it, or it is gone.
  auto w = store_.resume_upload(id);
  if (!w) return w.error();
  if ((*w)->repo() != repo) return unknown();  // the writer closes; the upload stays
  auto s = std::make_shared<UploadSession>();
  s->id = id;
  s->repo = repo;
  s->size = (*w)->size();
  s->writer = std::move(*w);
  s->busy = true;
  s->touched = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  auto [it, inserted] = open_.emplace(id, s);
  if (!inserted) return Error{Errc::busy, "another request is writing this upload"};
  return s;
}

Result<UploadStatus> UploadSessions::status(const std::string& id, const std::string& repo) {
  {
    std::lock_guard lock(mu_);
    if (auto it = open_.find(id); it != open_.end()) {
      if (it->second->repo != repo) return unknown();
      return UploadStatus{id, it->second->size.load()};
    }
  }
  auto info = store_.upload(id);
  if (!info) return info.error();
  if (!*info || (*info)->repo != repo) return unknown();
  return UploadStatus{id, (*info)->size};
}

void UploadSessions::give_back(const std::shared_ptr<UploadSession>& s) {
  s->size = s->writer->size();
  std::lock_guard lock(mu_);
  s->busy = false;
  s->touched = std::chrono::steady_clock::now();
}

void UploadSessions::finish(const std::shared_ptr<UploadSession>& s, bool committed) {
  {
    std::lock_guard lock(mu_);
    open_.erase(s->id);
  }
  s->writer.reset();  // gives the store's claim back
  if (committed) return;
  if (auto st = store_.cancel_upload(s->id); !st)
    spdlog::warn("uploads: removing {}: {}", s->id, st.error().to_string());  // expiry retries
}

Status UploadSessions::cancel(const std::string& id, const std::string& repo) {
  {
    std::lock_guard lock(mu_);
    if (auto it = open_.find(id); it != open_.end()) {
      if (it->second->repo != repo) return unknown();
      if (it->second->busy) return Error{Errc::busy, "another request is writing this upload"};
      auto s = it->second;
      open_.erase(it);
      s->writer.reset();
    } else {
      auto info = store_.upload(id);
      if (!info) return info.error();
      if (!*info || (*info)->repo != repo) return unknown();
    }
  }
  return store_.cancel_upload(id);
}

void UploadSessions::sweep() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<UploadSession>> idle;
  {
    std::lock_guard lock(mu_);
    for (auto it = open_.begin(); it != open_.end();) {
      // Idle past the expiry, too: the store then removes the upload.
      if (!it->second->busy && now - it->second->touched > std::min<std::chrono::seconds>(
                                                             kCloseIdleWriters, expiry_)) {
        idle.push_back(std::move(it->second));
        it = open_.erase(it);
      } else {
        ++it;
      }
    }
  }
  idle.clear();  // writers close outside the lock; the store keeps their bytes
  if (auto n = store_.expire_uploads(expiry_); !n)
    spdlog::warn("uploads: expiring abandoned sessions: {}", n.error().to_string());
}

}  // namespace ocirelay::proxy
