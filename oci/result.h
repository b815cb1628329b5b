// Result<T>: a value or an Error, used on every data path instead of exceptions.
// Exceptions are reserved for startup (config loading); see ../shared/STYLE.md.
#pragma once

#include <exception>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>

namespace ocirelay {

// Outcomes the data path distinguishes. Each maps to one HTTP status and OCI error
// code at the edge (proxy/errors), and to retry/no-retry in the relay.
enum class Errc {
  ok = 0,
  invalid_argument,      // malformed input from a client or config: never retried
  name_invalid,          // repository name fails the distribution grammar
  digest_invalid,        // digest string malformed or algorithm unsupported
  not_found,             // the object does not exist (locally or upstream)
  unauthorized,          // credentials missing or rejected
  denied,                // authenticated but not allowed
  too_many_requests,     // 429 from upstream (rate limit)
  upstream_unavailable,  // connection refused, DNS, TLS, timeout, 5xx: retryable
  upstream_protocol,     // upstream answered something we cannot use
  digest_mismatch,       // bytes did not hash to the expected digest: data loss avoided
  size_mismatch,         // body length differs from the announced/expected size
  too_large,             // over a configured limit
  io_error,              // local disk error
  no_space,              // ENOSPC / EDQUOT
  corrupt,               // the store found bytes or metadata that do not verify
  unsupported,           // valid but not implemented / not allowed here
  cancelled,             // the operation was abandoned
  busy,                  // held by someone else (a store another process has open)
  internal,              // a broken invariant
};

const std::error_category& ocirelay_category() noexcept;
inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), ocirelay_category()};
}

// An error: a code plus human context ("fetch docker.io/library/alpine blob sha256:...:
// connection refused"). Context strings never hold secrets.
struct Error {
  Errc code = Errc::internal;
  std::string message;

  // Retryable errors may succeed if repeated later (network, 5xx, 429, disk full);
  // the others will fail the same way (bad input, not found, digest mismatch).
  bool retryable() const noexcept {
    return code == Errc::upstream_unavailable || code == Errc::too_many_requests ||
           code == Errc::no_space || code == Errc::io_error || code == Errc::cancelled;
  }
  // "digest_mismatch: <message>"
  std::string to_string() const;
};

Error error_from_errno(int err, std::string context);

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                 // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}             // NOLINT
  Result(Errc code, std::string msg) : v_(Error{code, std::move(msg)}) {}

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  // By value: `for (auto& x : f().value())` must not iterate a destroyed temporary.
  T value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)), ok_(false) {}  // NOLINT
  Result(Errc code, std::string msg) : err_{code, std::move(msg)}, ok_(false) {}

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const& { return err_; }
  Error&& error() && { return std::move(err_); }

 private:
  Error err_{Errc::ok, {}};
  bool ok_ = true;
};

using Status = Result<void>;

// Runs `fn` (returning a Result or Status) at a thread or pool entry point. Outside data
// must never throw, so an exception here is a bug; it becomes an internal error naming
// `where` instead of terminating the process from a worker thread.
template <class F>
auto guarded(std::string_view where, F&& fn) noexcept -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return Error{Errc::internal, std::string(where) + ": unexpected exception: " + e.what()};
  } catch (...) {
    return Error{Errc::internal, std::string(where) + ": unexpected exception"};
  }
}

}  // namespace ocirelay

namespace std {
template <>
struct is_error_code_enum<ocirelay::Errc> : true_type {};
}  // namespace std
