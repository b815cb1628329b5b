// TokenCache: per-scope bearer tokens with expiry.
#include "adapters/token_cache.h"

#include <algorithm>

namespace ocirelay::adapters {

TokenCache::TokenCache(Now now) : now_(now ? std::move(now) : Now(&Clock::now)) {}

void TokenCache::put(const std::string& scope, std::string token,
                     std::chrono::seconds expires_in) {
  using namespace std::chrono;
  auto lifetime = duration_cast<milliseconds>(expires_in);
  auto margin = std::min<milliseconds>(lifetime / 10, seconds(30));
  std::lock_guard lock(mu_);
  entries_[scope] = Entry{std::move(token), now_() + lifetime - margin};
}

std::optional<std::string> TokenCache::get(const std::string& scope) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(scope);
  if (it == entries_.end()) return std::nullopt;
  if (now_() >= it->second.valid_until) {
    entries_.erase(it);
    return std::nullopt;
  }
  return it->second.token;
}

void TokenCache::drop(const std::string& scope) {
  std::lock_guard lock(mu_);
  entries_.erase(scope);
}

}  // namespace ocirelay::adapters
