// Fixed credentials and the caching base for expiring ones.
#include "adapters/credentials.h"

#include <algorithm>

namespace ocirelay::adapters {
namespace {

class FixedCredentials final : public CredentialSource {
 public:
  explicit FixedCredentials(Credentials c) : c_(std::move(c)) {}
  std::string describe() const override {
    if (c_.empty()) return "anonymous";
    return c_.identity_token.empty() ? "basic" : "identity token";
  }
  Result<IssuedCredentials> get() override { return IssuedCredentials{c_, std::nullopt}; }
  bool anonymous() const override { return c_.empty(); }

 private:
  Credentials c_;
};

}  // namespace

std::shared_ptr<CredentialSource> fixed_credentials(Credentials credentials) {
  return std::make_shared<FixedCredentials>(std::move(credentials));
}

ExpiringCredentialSource::ExpiringCredentialSource(Now now)
    : now_(now ? std::move(now) : Now([] { return WallClock::now(); })) {}

Result<IssuedCredentials> ExpiringCredentialSource::get() {
  std::lock_guard lock(mu_);
  const auto now = now_();
  if (cached_ && (!cached_->expires || now < refresh_at_)) return *cached_;
  cached_.reset();
  auto fresh = fetch();
  if (!fresh) return fresh;
  if (fresh->expires) {
    const auto lifetime = *fresh->expires - now;
    const auto margin = std::min<WallClock::duration>(lifetime / 10, std::chrono::minutes(5));
    refresh_at_ = *fresh->expires - std::max<WallClock::duration>(margin, {});
  }
  cached_ = *fresh;
  return fresh;
}

void ExpiringCredentialSource::invalidate() {
  std::lock_guard lock(mu_);
  cached_.reset();
}

}  // namespace ocirelay::adapters
