// One image to one destination, as a rule asks for it: the step a dry run takes inline
// and the dispatcher's workers take for each queued task. Prepares the destination
// repository where the registry is configured to create repositories, copies bottom-up
// (copy.h) with the ledger's blob hints, resumes a chunked upload from its persisted
// session, and records what the destination now holds.
// Blocking: call from a worker thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <optional>
#include <string>
#include <string_view>

#include "oci/result.h"
#include "relay/replicator.h"

namespace ocirelay::relay {

class TaskQueue;

struct Destination {
  const RuleTarget* target = nullptr;
  const RelayRegistry* registry = nullptr;  // null for an upstream used as a destination
  adapters::RegistryClient* client = nullptr;
};

// `rule`'s destination on `registry`; with `destination_repository` set, the one of its
// targets there that names `source_repository` so (a rule may send to one registry under
// two rewrites). Errors: invalid_argument naming what is missing.
Result<Destination> find_destination(const RelayContext& ctx, const Rule& rule, std::string_view registry,
                                     std::string_view source_repository = {},
                                     std::string_view destination_repository = {});

// What a destination the ledger has no record of holds under o.tag, asked with one HEAD:
// nullopt when the image is to be sent; unchanged when the tag names `digest` there
// already (recorded in the ledger unless `dry_run`); kept when it names another digest
// and the rule does not move tags. Errors: the HEAD's, naming the tag.
Result<std::optional<Outcome>> check_destination_tag(RelayContext& ctx, const Rule& rule, const Destination& dest,
                                                     const TaskOutcome& o, const oci::Digest& digest, bool dry_run);

// Deletes `tag` of `repo` at `dest` and forgets it in the ledger. Registries without tag
// deletion (distribution answers 400/404/405) delete the manifest by digest instead, which
// takes every tag naming it: done only while the tag still names `sent` (what was sent
// there) and the ledger knows no other tag of that repository there at that digest
// (Errc::unsupported otherwise, saying why). A tag already gone is success.
Status delete_destination_tag(RelayContext& ctx, const Destination& dest, const std::string& repo,
                              const std::string& tag, const oci::Digest& sent);

// The blobs being sent to one destination right now, by digest: a task that needs a blob
// another task is uploading there waits for that upload and then mounts it (the ledger
// knows where it went) instead of sending the same bytes twice. Thread-safe.
class BlobClaims {
 public:
  // Blocks while another holder has `d`; then holds it.
  void acquire(const oci::Digest& d);
  void release(const oci::Digest& d);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<oci::Digest> held_;
};

// Thread-safe.
class PreparedRepositories {
 public:
  bool contains(const std::string& destination, const std::string& repository) const {
    std::lock_guard lock(mu_);
    return done_.contains(destination + "\n" + repository);
  }
  void insert(const std::string& destination, const std::string& repository) {
    std::lock_guard lock(mu_);
    done_.insert(destination + "\n" + repository);
  }

 private:
  mutable std::mutex mu_;
  std::set<std::string> done_;
};

struct TransferHooks {
  bool dry_run = false;
  // The (destination, repository) pairs prepared (created where missing) by this run or
  // process, so creation is asked once; one whose preparation failed is asked again.
  PreparedRepositories* prepared = nullptr;
  // Set: chunked uploads are resumable through its persisted sessions.
  TaskQueue* sessions = nullptr;
  // Set: the destination's blobs in flight, shared by every task sent there.
  BlobClaims* claims = nullptr;
  std::function<void(const TaskOutcome&, const oci::Digest&, std::uint64_t, BlobStep)> on_blob;
};

// Sends `root` from `source` to `dest` as `o` names it (o.destination_repository, o.tag;
// o.digest is the source's digest the ledger records). Sets o.outcome to copied (o.copy
// filled) or failed (o.error); returns the failure's error too, for the caller's retry.
Status transfer(RelayContext& ctx, const Rule& rule, const Destination& dest, TaskOutcome& o,
                ImageSource& source, const oci::Digest& root, const TransferHooks& hooks);

}  // namespace ocirelay::relay
