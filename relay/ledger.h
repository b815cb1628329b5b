// The relay's memory of what is where, kept in the store's LMDB environment (its own named
// databases: pass ledger_databases() in StoreOptions::extra_databases):
//   - per (destination, repository, tag): the digest verified there (after its PUT, or a
//     HEAD that answered it), so a resync of an unchanged tag sends nothing to destinations;
//   - per (source, repository, tag): the digest last seen there, so a tag that disappears
//     is noticed (deletion propagation); the relay qualifies `source` with the rule that
//     looked, so each rule notices every deletion;
//   - per (destination, blob): the repositories there known to hold it (after an upload,
//     mount or HEAD), so a blob another repository holds is mounted instead of sent, and
//     one the repository holds is not even asked about.
// What the ledger says can go stale (someone deletes at a destination): the relay trusts
// it for planning, and a periodic sampled HEAD repairs drift. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "oci/digest.h"
#include "oci/result.h"

namespace ocirelay::store::lmdb {
class Env;
}

namespace ocirelay::relay {

// The relay's databases: the ledger's and the task queue's (queue.h).
const std::vector<std::string>& ledger_databases();

struct LedgerEntry {
  oci::Digest digest;     // the source's image digest
  std::int64_t time = 0;  // unix seconds it was recorded
  // Destination tags: the digest the destination holds (differs from `digest` when the
  // index was narrowed to some platforms).
  oci::Digest sent;
};

class Ledger {
 public:
  // REQUIRES: `env` was opened with ledger_databases(), and outlives the ledger.
  explicit Ledger(store::lmdb::Env& env) : env_(env) {}

  Result<std::optional<LedgerEntry>> destination_tag(std::string_view dest, std::string_view repo,
                                                     std::string_view tag) const;
  Status record_destination_tag(std::string_view dest, std::string_view repo, std::string_view tag,
                                const oci::Digest& source_digest, const oci::Digest& sent);
  Status forget_destination_tag(std::string_view dest, std::string_view repo, std::string_view tag);
  // Every tag of `repo` recorded at `dest`, sorted by tag.
  Result<std::vector<std::pair<std::string, LedgerEntry>>> destination_tags(std::string_view dest,
                                                                            std::string_view repo) const;

  Result<std::optional<LedgerEntry>> source_tag(std::string_view source, std::string_view repo,
                                                std::string_view tag) const;
  // Every tag of `repo` recorded at `source`, sorted by tag.
  Result<std::vector<std::pair<std::string, LedgerEntry>>> source_tags(std::string_view source,
                                                                       std::string_view repo) const;
  Status record_source_tag(std::string_view source, std::string_view repo, std::string_view tag,
                           const oci::Digest& d);
  Status forget_source_tag(std::string_view source, std::string_view repo, std::string_view tag);

  // Up to `n` of the tags recorded at `dest`, each row as likely as any other (one scan of
  // `dest`'s rows, a reservoir sample drawn with `seed`), as (repository, tag, entry).
  struct RecordedTag {
    std::string repository, tag;
    LedgerEntry entry;
  };
  Result<std::vector<RecordedTag>> sample_destination_tags(std::string_view dest, std::size_t n,
                                                           std::uint64_t seed) const;

  // Repositories of `dest` known to hold blob `d`, sorted.
  Result<std::vector<std::string>> blob_locations(std::string_view dest, const oci::Digest& d) const;
  Status record_blob_location(std::string_view dest, const oci::Digest& d, std::string_view repo);
  Status forget_blob_location(std::string_view dest, const oci::Digest& d, std::string_view repo);
  // Every blob location of `repo` at `dest` (the repository was found not to hold what the
  // ledger says: nothing is skipped there on the ledger's word any more). One transaction.
  Status forget_blob_locations(std::string_view dest, std::string_view repo);

  // Named progress markers: how far the event trigger has read the store's outbox, when a
  // cron rule last ran. 0 when never set.
  Result<std::uint64_t> marker(std::string_view name) const;
  Status set_marker(std::string_view name, std::uint64_t value);

 private:
  store::lmdb::Env& env_;
};

}  // namespace ocirelay::relay
