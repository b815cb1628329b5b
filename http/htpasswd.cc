// htpasswd parsing and bcrypt verification through libxcrypt's crypt_rn (never our own
// bcrypt), compared in constant time.
#include "http/htpasswd.h"

#include <crypt.h>
#include <openssl/crypto.h>

#include <fstream>
#include <memory>
#include <sstream>

namespace ocirelay::http {

namespace {

bool is_bcrypt(std::string_view h) {
  // "$2y$10$" + 22 salt characters + 31 hash characters.
  return h.size() == 60 && (h.starts_with("$2a$") || h.starts_with("$2b$") || h.starts_with("$2y$")) &&
         h[6] == '$';
}

// crypt_rn of `password` with the setting in `hash`; true when it reproduces `hash`.
bool bcrypt_matches(std::string_view password, const std::string& hash) {
  if (password.find('\0') != std::string_view::npos) return false;
  auto data = std::make_unique<crypt_data>();  // ~32 KiB: not on the stack
  const std::string phrase(password);
  const char* out = crypt_rn(phrase.c_str(), hash.c_str(), data.get(), sizeof(crypt_data));
  bool ok = out != nullptr && out[0] != '*' && std::char_traits<char>::length(out) == hash.size() &&
            CRYPTO_memcmp(out, hash.data(), hash.size()) == 0;
  OPENSSL_cleanse(data.get(), sizeof(crypt_data));
  return ok;
}

}  // namespace

Result<Htpasswd> Htpasswd::parse(std::string_view text, std::string_view source) {
  Htpasswd out;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    const std::string where = std::string(source) + ":" + std::to_string(line_no);
    auto colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos)
      return Error{Errc::invalid_argument, where + ": expected user:hash"};
    std::string user(line.substr(0, colon));
    std::string_view hash = line.substr(colon + 1);
    if (!is_bcrypt(hash))
      return Error{Errc::invalid_argument,
                   where + ": the entry of user '" + user +
                       "' is not a bcrypt hash (create entries with htpasswd -B)"};
    if (!out.entries_.emplace(user, std::string(hash)).second)
      return Error{Errc::invalid_argument, where + ": user '" + user + "' is listed twice"};
  }
  return out;
}

Result<Htpasswd> Htpasswd::load(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return Error{Errc::io_error, "cannot read htpasswd file '" + file + "'"};
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  auto parsed = parse(text, file);
  OPENSSL_cleanse(text.data(), text.size());
  return parsed;
}

bool Htpasswd::verify(std::string_view user, std::string_view password) const {
  auto it = entries_.find(user);
  if (it == entries_.end()) {
    // The same work against some entry, so unknown users take as long as known ones.
    if (!entries_.empty()) (void)bcrypt_matches(password, entries_.begin()->second);
    return false;
  }
  return bcrypt_matches(password, it->second);
}

}  // namespace ocirelay::http
