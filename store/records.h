// The LMDB record formats of the store: key layout (byte strings joined by NUL, which no
// repository name, tag or digest can contain) and small JSON values.
//
//   meta        "schema_version" -> "2", "evicted_blobs" -> decimal count,
//               "blob_bytes" -> decimal sum of every blobs row's size, moved in the same
//               transaction as the rows (new in 2; opening a version 1 store counts them)
//   blobs       <digest> -> {"size","created","last_access"}
//   repo_blobs  <repo>\0<digest> -> "" or the decimal size a manifest of <repo> gives the
//               blob in its descriptor         blob_repos <digest>\0<repo> -> ""
//   tags        <repo>\0<tag> -> {"digest","media_type","fetched_at","etag","pinned"}
//   manifests   <digest> -> ManifestInfo as JSON
//   referrers   <repo>\0<subject>\0<digest> -> ""
//   uploads     <upload id> -> {"repo","user","started","touched"}     (new in 3)
//   events      <seq as 16 hex digits> -> Event as JSON: the outbox   (new in 3)
//   blobs rows gain "pinned" in 3: pushed content, never evicted
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "oci/digest.h"
#include "store/store.h"

namespace ocirelay::store::records {

inline constexpr std::string_view kSchemaVersion = "3";
inline constexpr std::string_view kBlobBytesKey = "blob_bytes";
inline constexpr std::string_view kEvictedBlobsKey = "evicted_blobs";
inline constexpr std::string_view kEventSeqKey = "event_seq";  // the last event's seq

struct BlobRow {
  std::uint64_t size = 0;
  std::int64_t created = 0;
  std::int64_t last_access = 0;
  bool pinned = false;  // pushed (or referenced by pushed content): never evicted
};

struct TagRow {
  oci::Digest digest;
  std::string media_type;
  std::int64_t fetched_at = 0;
  std::string etag;
  bool pinned = false;
};

struct UploadRow {
  std::string repo;
  std::string user;
  std::int64_t started = 0;
  std::int64_t touched = 0;  // unix seconds of the last checkpoint
};

std::string key(std::string_view a, std::string_view b);
std::string key(std::string_view a, std::string_view b, std::string_view c);
// Splits a NUL-joined key into its parts.
std::vector<std::string_view> split(std::string_view key);

std::string encode(const BlobRow& r);
std::optional<BlobRow> decode_blob(std::string_view v);
std::string encode(const TagRow& r);
std::optional<TagRow> decode_tag(std::string_view v);
std::string encode(const ManifestInfo& m);
std::optional<ManifestInfo> decode_manifest(std::string_view v);
std::string encode(const UploadRow& r);
std::optional<UploadRow> decode_upload(std::string_view v);
std::string encode(const Event& e);
std::optional<Event> decode_event(std::string_view v);
// Event keys sort by sequence number: 16 lower-case hex digits.
std::string event_key(std::uint64_t seq);

}  // namespace ocirelay::store::records
