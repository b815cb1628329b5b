// `ocirelay copy`: sends an image from the store to another registry (relay/copy.h does
// the transfer), the manual form of what the relay's rules will do.
#pragma once

#include <string>

#include "cli/config.h"

namespace ocirelay::cli {

struct CopyCommand {
  std::string source;       // <repository>:<tag> or @<digest>, as the store names it
  std::string destination;  // [http://|https://]host[:port]/<repository>[:<tag>]
  std::string creds;        // USER:PASSWORD for the destination (or user only, with password_file)
  std::string password_file;
  std::string dest_type;    // registry kind (ecr, gar, acr, ghcr, ...); empty: from the host
  std::string mount_from;   // a repository on the destination that holds the blobs already
  bool referrers = true;
  // Run the destination's prepare step first (adapters/prepare.h): prove the credentials,
  // create the ECR / Artifact Registry repository or Harbor project when missing.
  bool create_repository = false;
};

// Exit code: 0 copied, 1 the copy failed (the cause is printed), 2 bad arguments.
int run_copy(const Config& config, const CopyCommand& cmd);

}  // namespace ocirelay::cli
