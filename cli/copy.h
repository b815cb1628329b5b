// `ocirelay copy`: sends an image from a registry (read once, into a temporary store unless
// --store), the store, or an OCI image layout directory to one or more registries at once
// (relay/copy.h does each transfer; every destination reads the same files at its own
// pace), the manual form of what the relay's rules do.
#pragma once

#include <string>
#include <vector>

#include "cli/config.h"

namespace ocirelay::cli {

struct CopyCommand {
  // A registry's image, [http[s]://]host[:port]/<repository>:<tag> or @<digest>, or
  // <configured registry>/<repository>...; a local repository of the store with :<tag> or
  // @<digest>; or oci:DIR:TAG (oci:DIR with all_tags).
  std::string source;
  // Each [http://|https://]host[:port]/<repository>[:<tag>], or <configured registry>/...
  std::vector<std::string> destinations;
  bool all_tags = false;    // every tagged image of an oci:DIR source
  // USER:PASSWORD for the destinations (or user only, with password_file); empty: docker's
  // config.json, as docker push would.
  std::string creds;
  std::string password_file;
  std::string dest_type;    // registry kind (ecr, gar, acr, ghcr, ...); empty: from the host
  std::string mount_from;   // a repository on the destination that holds the blobs already
  bool referrers = true;
  // Run the destination's prepare step first (adapters/prepare.h): prove the credentials,
  // create the ECR / Artifact Registry repository or Harbor project when missing.
  bool create_repository = false;
  // Only these platforms of an index ("linux/arm64"); the index is rewritten to list them.
  std::vector<std::string> platforms;
  // --store was given: a remote source fills that store (else a temporary one).
  bool store_given = false;
  bool progress = true;  // progress bars when stderr is a terminal
};

// Exit code: 0 copied, 1 the copy failed (the cause is printed), 2 bad arguments.
int run_copy(const Config& config, const CopyCommand& cmd);

}  // namespace ocirelay::cli
