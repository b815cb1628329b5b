// An htpasswd file of bcrypt entries (`htpasswd -B`), checked with libxcrypt. Other hash
// kinds (MD5 apr1, SHA-1, crypt) are refused when the file is read: they are weak.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "oci/result.h"

namespace ocirelay::http {

class Htpasswd {
 public:
  // Lines "user:$2y$..." ($2a$, $2b$ and $2y$); blank lines and lines starting with '#'
  // are skipped. Errors name `source` and the line, never the hash.
  static Result<Htpasswd> parse(std::string_view text, std::string_view source);
  static Result<Htpasswd> load(const std::string& file);

  bool has_user(std::string_view user) const { return entries_.find(user) != entries_.end(); }
  std::size_t size() const { return entries_.size(); }

  // Blocking: one bcrypt (tens of milliseconds at cost 10), for an unknown user too, so
  // the time taken does not tell which users exist. Thread-safe.
  bool verify(std::string_view user, std::string_view password) const;

 private:
  std::map<std::string, std::string, std::less<>> entries_;  // user -> bcrypt hash
};

}  // namespace ocirelay::http
