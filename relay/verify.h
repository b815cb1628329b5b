// Sampled re-verification of the ledger. What the ledger says a destination holds can go
// stale: someone deletes a tag or a whole repository there, or moves a tag. A pass HEADs a
// random sample of the tags the ledger records at one destination; a tag that is gone or
// names another digest has drifted: its record and the blob locations of its repository
// are forgotten (nothing is skipped there on the ledger's word any more), and the rules
// that sent it are told which image to run again (`senders`).
// Blocking (network): call from a worker thread.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "relay/replicator.h"

namespace ocirelay::relay {

struct Drift {
  std::string repository, tag;  // at the destination
  oci::Digest recorded;         // what the ledger said it holds
  std::string found;            // "missing", or the digest it names now
};

struct VerifyReport {
  std::size_t checked = 0;   // tags whose HEAD answered
  std::vector<Drift> drift;  // forgotten, to be sent again
  std::string error;         // set: the pass stopped early (the destination did not answer)
};

// Checks up to `sample` tags recorded at `destination` (drawn with `seed`), and forgets
// what drifted. A HEAD that fails for another reason than a missing tag ends the pass
// (a destination that is down is not asked a hundred times) with `error` set.
VerifyReport verify_destination(RelayContext& ctx, const std::string& destination, std::size_t sample,
                                std::uint64_t seed);

// The enabled rules, with the source repository, whose runs put `d` at `destination`: those
// sending to it under a rewrite that names d.repository, and whose view of their source
// (the ledger) has d.tag in that repository.
std::vector<std::pair<const Rule*, std::string>> senders(const RelayContext& ctx, const std::string& destination,
                                                         const Drift& d);

}  // namespace ocirelay::relay
