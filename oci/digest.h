// Content digests ("sha256:<64 hex>") and an incremental SHA-256 hasher.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "oci/result.h"

namespace ocirelay::oci {

// A validated digest. Only sha256 is accepted (sha512 is in the OCI spec but no
// registry we talk to emits it; it is refused with a clear error rather than guessed).
class Digest {
 public:
  Digest() = default;
  // Parses "sha256:<64 lowercase hex>". Anything else is Errc::digest_invalid.
  static Result<Digest> parse(std::string_view s);
  static Digest of(std::string_view bytes);  // sha256 of bytes

  const std::string& str() const noexcept { return s_; }  // "sha256:<hex>"
  std::string_view algorithm() const noexcept { return std::string_view(s_).substr(0, 6); }
  std::string_view hex() const noexcept { return std::string_view(s_).substr(7); }
  bool empty() const noexcept { return s_.empty(); }

  friend bool operator==(const Digest&, const Digest&) = default;
  friend auto operator<=>(const Digest&, const Digest&) = default;

 private:
  friend class Sha256;
  explicit Digest(std::string s) : s_(std::move(s)) {}
  std::string s_;
};

// Incremental SHA-256. Not thread-safe; one per stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, std::size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  Digest finish();  // REQUIRES: called once

 private:
  struct State;
  std::unique_ptr<State> st_;
};

}  // namespace ocirelay::oci

template <>
struct std::hash<ocirelay::oci::Digest> {
  std::size_t operator()(const ocirelay::oci::Digest& d) const noexcept {
    return std::hash<std::string>()(d.str());
  }
};
