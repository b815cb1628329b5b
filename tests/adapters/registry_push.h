// Seeds a registry over plain libcurl, apart from RegistryClient's push side: blob uploads
// (POST then PUT ?digest=) and manifest PUTs. Test-only; throws on failure.
#pragma once

#include <string>
#include <string_view>

namespace ocirelay::testing {

struct PushTarget {
  std::string url;  // "http://127.0.0.1:<port>"
  std::string username;
  std::string password;
};

// Uploads `bytes` as a blob of `repo`; returns its digest ("sha256:...").
std::string push_blob(const PushTarget& t, std::string_view repo, std::string_view bytes);

// PUTs a manifest under `ref`; returns the registry's Docker-Content-Digest.
std::string push_manifest(const PushTarget& t, std::string_view repo, std::string_view ref,
                          std::string_view media_type, std::string_view body);

// A random byte string of length n (deterministic for a given seed).
std::string random_bytes(std::size_t n, unsigned seed);

}  // namespace ocirelay::testing
