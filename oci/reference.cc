#include "oci/reference.h"

namespace ocirelay::oci {

namespace {
bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
bool valid_component(std::string_view c) {
  if (c.empty() || !lower_alnum(c.front()) || !lower_alnum(c.back())) return false;
  for (std::size_t i = 0; i < c.size();) {
    if (lower_alnum(c[i])) {
      ++i;
      continue;
    }
    // A separator run: ".", "_", "__" or one or more "-".
    std::size_t j = i;
    if (c[i] == '.') {
      j = i + 1;
    } else if (c[i] == '_') {
      j = i + 1;
      if (j < c.size() && c[j] == '_') ++j;
    } else if (c[i] == '-') {
      while (j < c.size() && c[j] == '-') ++j;
    } else {
      return false;
    }
    if (j >= c.size() || !lower_alnum(c[j])) return false;
    i = j;
  }
  return true;
}
}  // namespace

bool valid_repository(std::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  std::size_t start = 0;
  while (true) {
    auto slash = name.find('/', start);
    auto comp = name.substr(start, slash == std::string_view::npos ? name.npos : slash - start);
    if (!valid_component(comp)) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

bool valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) return false;
  auto ok = [](char c, bool first) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
      return true;
    return !first && (c == '.' || c == '-');
  };
  for (std::size_t i = 0; i < tag.size(); ++i)
    if (!ok(tag[i], i == 0)) return false;
  return true;
}

Result<ManifestRef> parse_manifest_ref(std::string_view s) {
  if (s.find(':') != std::string_view::npos) {
    auto d = Digest::parse(s);
    if (!d) return d.error();
    return ManifestRef{{}, *d};
  }
  if (!valid_tag(s)) return Error{Errc::invalid_argument, "invalid tag"};
  return ManifestRef{std::string(s), std::nullopt};
}

std::string ImageRef::str() const {
  std::string out = registry + "/" + repository;
  out += ref.is_digest() ? "@" + ref.digest->str() : ":" + ref.tag;
  return out;
}

Result<ImageRef> parse_image_ref(std::string_view s) {
  ImageRef out;
  std::string_view rest = s;
  std::optional<Digest> digest;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    auto d = Digest::parse(rest.substr(at + 1));
    if (!d) return d.error();
    digest = *d;
    rest = rest.substr(0, at);
  }
  std::string tag;
  auto last_slash = rest.rfind('/');
  auto colon = rest.rfind(':');
  if (colon != std::string_view::npos && (last_slash == std::string_view::npos || colon > last_slash)) {
    tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!valid_tag(tag)) return Error{Errc::invalid_argument, "invalid tag in '" + std::string(s) + "'"};
  }
  auto first_slash = rest.find('/');
  std::string_view first = rest.substr(0, first_slash);
  if (first_slash != std::string_view::npos &&
      (first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
       first == "localhost")) {
    out.registry = std::string(first);
    out.repository = std::string(rest.substr(first_slash + 1));
  } else {
    out.registry = "docker.io";
    out.repository = std::string(rest);
  }
  if (out.registry == "index.docker.io" || out.registry == "registry-1.docker.io")
    out.registry = "docker.io";
  if (out.registry == "docker.io" && out.repository.find('/') == std::string::npos)
    out.repository = "library/" + out.repository;
  if (!valid_repository(out.repository))
    return Error{Errc::name_invalid, "invalid repository name in '" + std::string(s) + "'"};
  if (digest)
    out.ref.digest = digest;
  else
    out.ref.tag = tag.empty() ? "latest" : tag;
  return out;
}

bool repository_glob_match(std::string_view pattern, std::string_view name) {
  // Backtracking over the last "*" and "**" seen, as in fnmatch without FNM_PATHNAME for
  // "**" and with it for "*".
  std::size_t p = 0, n = 0;
  std::size_t star_p = std::string_view::npos, star_n = 0;
  bool star_crosses = false;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star_crosses = p + 1 < pattern.size() && pattern[p + 1] == '*';
      p += star_crosses ? 2 : 1;
      star_p = p;
      star_n = n;
      continue;
    }
    if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
      continue;
    }
    // Mismatch: let the last star take one more character (a single star never takes '/').
    if (star_p != std::string_view::npos && (star_crosses || name[star_n] != '/')) {
      n = ++star_n;
      p = star_p;
      continue;
    }
    return false;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

Status valid_repository_glob(std::string_view pattern) {
  if (pattern.empty()) return Error{Errc::invalid_argument, "empty repository pattern"};
  std::string probe;  // the pattern with each star run as one letter: must be a valid name
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '*') {
      if (i + 2 < pattern.size() && pattern[i + 1] == '*' && pattern[i + 2] == '*')
        return Error{Errc::invalid_argument, "'" + std::string(pattern) + "': use * or **, not ***"};
      probe += 'x';
      while (i + 1 < pattern.size() && pattern[i + 1] == '*') ++i;
      continue;
    }
    probe += c;
  }
  if (!valid_repository(probe))
    return Error{Errc::invalid_argument,
                 "'" + std::string(pattern) +
                     "' is not a repository pattern (lowercase letters, digits, . _ - / and * or **)"};
  return {};
}

}  // namespace ocirelay::oci
