#include "relay/throttle.h"

#include <algorithm>

#include "adapters/body_source.h"

namespace ocirelay::relay {

std::size_t ByteRate::slice() const {
  return static_cast<std::size_t>(std::clamp<std::uint64_t>(per_second_ / 10, 1, 1 << 20));
}

namespace {

class RateLimitedBody final : public adapters::BodySource {
 public:
  RateLimitedBody(std::unique_ptr<adapters::BodySource> body, ByteRate& rate) : body_(std::move(body)), rate_(rate) {}
  std::uint64_t size() const override { return body_->size(); }
  Result<std::size_t> read(std::uint64_t offset, char* buf, std::size_t n) override {
    auto got = body_->read(offset, buf, std::min(n, rate_.slice()));
    if (got && *got > 0) rate_.take(*got);
    return got;
  }
  Status wait_for_more(std::uint64_t offset, const std::atomic<bool>* cancel) override {
    return body_->wait_for_more(offset, cancel);
  }

 private:
  std::unique_ptr<adapters::BodySource> body_;
  ByteRate& rate_;
};

class RateLimitedSource final : public ImageSource {
 public:
  RateLimitedSource(std::unique_ptr<ImageSource> source, ByteRate& rate) : source_(std::move(source)), rate_(rate) {}
  Result<Manifest> manifest(const oci::Digest& d) override { return source_->manifest(d); }
  Result<std::vector<oci::Digest>> referrers(const oci::Digest& subject) override {
    return source_->referrers(subject);
  }
  Result<std::unique_ptr<adapters::BodySource>> blob(const oci::Digest& d, std::uint64_t size) override {
    auto body = source_->blob(d, size);
    if (!body) return body.error();
    return std::unique_ptr<adapters::BodySource>(std::make_unique<RateLimitedBody>(std::move(*body), rate_));
  }

 private:
  std::unique_ptr<ImageSource> source_;
  ByteRate& rate_;
};

Error cancelled() { return Error{Errc::cancelled, "stopped: its execution was stopped"}; }

class CancellableBody final : public adapters::BodySource {
 public:
  CancellableBody(std::unique_ptr<adapters::BodySource> body, const std::atomic<bool>& cancel)
      : body_(std::move(body)), cancel_(cancel) {}
  std::uint64_t size() const override { return body_->size(); }
  Result<std::size_t> read(std::uint64_t offset, char* buf, std::size_t n) override {
    if (cancel_.load()) return cancelled();
    return body_->read(offset, buf, n);
  }
  Status wait_for_more(std::uint64_t offset, const std::atomic<bool>* cancel) override {
    if (cancel_.load()) return cancelled();
    return body_->wait_for_more(offset, cancel ? cancel : &cancel_);
  }

 private:
  std::unique_ptr<adapters::BodySource> body_;
  const std::atomic<bool>& cancel_;
};

class CancellableSource final : public ImageSource {
 public:
  CancellableSource(std::unique_ptr<ImageSource> source, const std::atomic<bool>& cancel)
      : source_(std::move(source)), cancel_(cancel) {}
  Result<Manifest> manifest(const oci::Digest& d) override {
    if (cancel_.load()) return cancelled();
    return source_->manifest(d);
  }
  Result<std::vector<oci::Digest>> referrers(const oci::Digest& subject) override {
    if (cancel_.load()) return cancelled();
    return source_->referrers(subject);
  }
  Result<std::unique_ptr<adapters::BodySource>> blob(const oci::Digest& d, std::uint64_t size) override {
    if (cancel_.load()) return cancelled();
    auto body = source_->blob(d, size);
    if (!body) return body.error();
    return std::unique_ptr<adapters::BodySource>(std::make_unique<CancellableBody>(std::move(*body), cancel_));
  }

 private:
  std::unique_ptr<ImageSource> source_;
  const std::atomic<bool>& cancel_;
};

}  // namespace

std::unique_ptr<ImageSource> cancellable(std::unique_ptr<ImageSource> source, const std::atomic<bool>& cancel) {
  return std::make_unique<CancellableSource>(std::move(source), cancel);
}

std::unique_ptr<ImageSource> rate_limited(std::unique_ptr<ImageSource> source, ByteRate& rate) {
  return std::make_unique<RateLimitedSource>(std::move(source), rate);
}

}  // namespace ocirelay::relay
