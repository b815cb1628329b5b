// Repository names, tags and image references ("docker.io/library/alpine:3.20").
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "oci/digest.h"
#include "oci/result.h"

namespace ocirelay::oci {

// Distribution-spec repository name: path components of [a-z0-9]+ joined by one of
// "." "_" "__" or "-"+, separated by "/", at most 255 characters. Rejects "..", "%2e",
// empty components and anything that could escape a directory.
bool valid_repository(std::string_view name);

// [A-Za-z0-9_][A-Za-z0-9._-]{0,127}
bool valid_tag(std::string_view tag);

// A repository glob: "*" matches within one path component, "**" across components
// ("apps/**" matches "apps/web" and "apps/a/b", not "apps"; "ci/*" matches "ci/x" only).
bool repository_glob_match(std::string_view pattern, std::string_view name);
// Whether `pattern` is a glob repository_glob_match understands: repository characters,
// "/" and "*" only, no empty components. Errors name the problem.
Status valid_repository_glob(std::string_view pattern);

// A manifest reference in a URL: a tag or a digest.
struct ManifestRef {
  std::string tag;               // set when the reference is a tag
  std::optional<Digest> digest;  // set when it is a digest
  bool is_digest() const noexcept { return digest.has_value(); }
  const std::string& str() const noexcept { return digest ? digest->str() : tag; }
};
Result<ManifestRef> parse_manifest_ref(std::string_view s);

// A full image reference as users type it. Docker's normalisation applies: a first
// component without '.' or ':' (and not "localhost") is a path on docker.io, and a
// one-component docker.io name gets "library/".
struct ImageRef {
  std::string registry;    // "docker.io", "ghcr.io", "localhost:5000"
  std::string repository;  // "library/alpine"
  ManifestRef ref;         // tag ("latest" when none is given) or digest
  std::string str() const;  // registry/repository:tag or @digest
};
Result<ImageRef> parse_image_ref(std::string_view s);

}  // namespace ocirelay::oci
