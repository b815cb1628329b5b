// What a client sends the inbound authentication: a Bearer token (verified against the
// server's key: a token not signed by it never verifies, whatever its bytes), a token
// request's scope, and an htpasswd file's text. Nothing throws; a scope that parses names
// a repository and at least one action.
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <nlohmann/json.hpp>

#include "http/htpasswd.h"
#include "http/token_signer.h"
#include "oci/reference.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;

namespace {
const http::TokenSigner& signer() {
  static const http::TokenSigner s = [] {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    auto made = http::TokenSigner::from_pem(std::string_view(data, static_cast<std::size_t>(n)), "fuzz",
                                            "ocirelay", "ocirelay");
    BIO_free(bio);
    EVP_PKEY_free(key);
    if (!made) std::abort();
    return std::move(*made);
  }();
  return s;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in = fuzz::input(data, size);
  const auto& s = signer();
  auto claims = s.verify(in, 1'800'000'000);
  FUZZ_CHECK(!claims);  // only our own signature verifies
  FUZZ_CHECK(claims.error().code == Errc::unauthorized);
  // The refusal never echoes the token. Its messages are fixed words ("token is not a JWT"),
  // so an input made only of letters, digits and spaces may be part of one by chance; a
  // token has dots and base64url's '-' and '_', which no message has.
  const bool could_be_words = in.find_first_not_of(
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ") == std::string_view::npos;
  FUZZ_CHECK(claims.error().message.find(in) == std::string::npos || could_be_words);

  if (auto scope = http::parse_scope(in)) FUZZ_CHECK(oci::valid_repository(scope->name) && scope->actions != 0);

  // A token of ours carrying fuzzed repository names round-trips.
  http::TokenClaims c;
  c.subject = std::string(in.substr(0, 64));
  c.access.push_back({std::string(in), http::bit(http::Action::pull)});
  c.issued_at = 1'700'000'000;
  c.expires_at = 1'700'000'900;
  auto token = s.sign(c);
  FUZZ_CHECK(token.ok());
  auto back = s.verify(*token, 1'700'000'100);
  bool utf8 = true;  // other bytes are replaced in the token (U+FFFD), never thrown on
  try {
    (void)nlohmann::json(c.subject).dump();
  } catch (const std::exception&) {
    utf8 = false;
  }
  FUZZ_CHECK(back.ok() && (back->subject == c.subject || !utf8));

  (void)http::Htpasswd::parse(in, "fuzz");
  return 0;
}
