#include "oci/errors.h"

#include <cstring>
#include "oci/json.h"

namespace ocirelay {

namespace {
class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ocirelay"; }
  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::ok: return "ok";
      case Errc::invalid_argument: return "invalid_argument";
      case Errc::name_invalid: return "name_invalid";
      case Errc::digest_invalid: return "digest_invalid";
      case Errc::not_found: return "not_found";
      case Errc::unauthorized: return "unauthorized";
      case Errc::denied: return "denied";
      case Errc::too_many_requests: return "too_many_requests";
      case Errc::upstream_unavailable: return "upstream_unavailable";
      case Errc::upstream_protocol: return "upstream_protocol";
      case Errc::digest_mismatch: return "digest_mismatch";
      case Errc::size_mismatch: return "size_mismatch";
      case Errc::too_large: return "too_large";
      case Errc::io_error: return "io_error";
      case Errc::no_space: return "no_space";
      case Errc::corrupt: return "corrupt";
      case Errc::unsupported: return "unsupported";
      case Errc::cancelled: return "cancelled";
      case Errc::busy: return "busy";
      case Errc::internal: return "internal";
    }
    return "unknown";
  }
};
}  // namespace

const std::error_category& ocirelay_category() noexcept {
  static const Category c;
  return c;
}

std::string Error::to_string() const {
  return ocirelay_category().message(static_cast<int>(code)) + ": " + message;
}

Error error_from_errno(int err, std::string context) {
  Errc code = (err == ENOSPC || err == EDQUOT) ? Errc::no_space : Errc::io_error;
  return Error{code, std::move(context) + ": " + std::strerror(err)};
}

namespace oci {

DistributionError to_distribution_error(const Error& e, ObjectKind what) {
  switch (e.code) {
    case Errc::invalid_argument: return {400, "UNSUPPORTED"};
    case Errc::name_invalid: return {400, "NAME_INVALID"};
    case Errc::digest_invalid: return {400, "DIGEST_INVALID"};
    case Errc::not_found:
      switch (what) {
        case ObjectKind::manifest: return {404, "MANIFEST_UNKNOWN"};
        case ObjectKind::blob: return {404, "BLOB_UNKNOWN"};
        default: return {404, "NAME_UNKNOWN"};
      }
    case Errc::unauthorized: return {401, "UNAUTHORIZED"};
    case Errc::denied: return {403, "DENIED"};
    case Errc::too_many_requests: return {429, "TOOMANYREQUESTS"};
    case Errc::upstream_unavailable: return {503, "UNAVAILABLE"};
    case Errc::upstream_protocol: return {502, "UNAVAILABLE"};
    case Errc::digest_mismatch: return {502, "DIGEST_INVALID"};
    case Errc::size_mismatch: return {502, "SIZE_INVALID"};
    case Errc::too_large: return {413, "SIZE_INVALID"};
    case Errc::unsupported: return {405, "UNSUPPORTED"};
    case Errc::no_space: return {507, "UNAVAILABLE"};
    default: return {500, "UNKNOWN"};
  }
}

std::string error_body(std::string_view code, std::string_view message) {
  // The message may quote what a client sent (a ?ns= value): dumped without throwing.
  json::Json j = {{"errors", json::Json::array({{{"code", code}, {"message", message}}})}};
  return json::dump(j);
}

}  // namespace oci
}  // namespace ocirelay
