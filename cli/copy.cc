#include "cli/copy.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "adapters/credentials.h"
#include "adapters/prepare.h"
#include "adapters/registry_client.h"
#include "adapters/registry_kind.h"
#include "cli/commands.h"
#include "relay/copy.h"
#include "store/store.h"

namespace ocirelay::cli {

namespace {

struct Destination {
  std::string url;   // scheme://host[:port]
  std::string repo;
  std::string tag;   // empty: the source's tag, or by digest
};

std::optional<Destination> parse_destination(std::string s) {
  Destination d;
  std::string scheme = "https://";
  for (const char* p : {"http://", "https://"})
    if (s.rfind(p, 0) == 0) {
      scheme = p;
      s = s.substr(std::string(p).size());
    }
  auto slash = s.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == s.size()) return std::nullopt;
  d.url = scheme + s.substr(0, slash);
  std::string rest = s.substr(slash + 1);
  auto colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
    d.tag = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  d.repo = rest;
  return d;
}

// "<repo>:<tag>" or "<repo>@<digest>".
bool split_source(const std::string& s, std::string& repo, std::string& ref) {
  if (auto at = s.find('@'); at != std::string::npos) {
    repo = s.substr(0, at);
    ref = s.substr(at + 1);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos || s.find('/', colon) != std::string::npos) return false;
    repo = s.substr(0, colon);
    ref = s.substr(colon + 1);
  }
  return !repo.empty() && !ref.empty();
}

}  // namespace

int run_copy(const Config& config, const CopyCommand& cmd) {
  std::string src_repo, ref;
  if (!split_source(cmd.source, src_repo, ref)) {
    std::fprintf(stderr, "ocirelay copy: source '%s' is not <repository>:<tag> or <repository>@<digest>\n",
                 cmd.source.c_str());
    return 2;
  }
  auto dest = parse_destination(cmd.destination);
  if (!dest) {
    std::fprintf(stderr, "ocirelay copy: destination '%s' is not [http[s]://]host[:port]/<repository>[:<tag>]\n",
                 cmd.destination.c_str());
    return 2;
  }
  std::string tag = dest->tag;
  if (tag.empty() && ref.find(':') == std::string::npos) tag = ref;  // the source's tag

  adapters::RegistryEndpoint ep;
  ep.name = dest->url.substr(dest->url.find("//") + 2);
  ep.url = dest->url;
  ep.request_timeout = std::chrono::minutes(2);
  if (!cmd.dest_type.empty()) {
    auto kind = adapters::parse_registry_kind(cmd.dest_type);
    if (!kind) {
      std::fprintf(stderr, "ocirelay copy: unknown --dest-type '%s'\n", cmd.dest_type.c_str());
      return 2;
    }
    ep.kind = *kind;
  } else {
    ep.kind = adapters::infer_registry_kind(ep.name);
  }
  if (!cmd.creds.empty()) {
    adapters::Credentials c;
    auto colon = cmd.creds.find(':');
    c.username = cmd.creds.substr(0, colon);
    if (colon != std::string::npos) c.password = cmd.creds.substr(colon + 1);
    if (!cmd.password_file.empty()) {
      std::ifstream in(cmd.password_file);
      if (!in) {
        std::fprintf(stderr, "ocirelay copy: cannot read --dest-password-file %s\n", cmd.password_file.c_str());
        return 2;
      }
      std::getline(in, c.password);
    }
    ep.credentials = adapters::fixed_credentials(std::move(c));
  }
  auto client = adapters::RegistryClient::create(std::move(ep));
  if (!client) {
    std::fprintf(stderr, "ocirelay copy: %s\n", client.error().to_string().c_str());
    return 1;
  }

  if (cmd.create_repository)
    if (auto st = adapters::prepare_destination(**client, dest->repo, adapters::PrepareOptions{}); !st) {
      std::fprintf(stderr, "ocirelay copy: FAILED %s: %s\n", cmd.destination.c_str(), st.error().to_string().c_str());
      return 1;
    }

  store::StoreOptions so = config.store;
  so.read_only = true;  // beside a running `serve`, like fsck: the copy only reads
  auto store = store::Store::open(so);
  if (!store) {
    std::fprintf(stderr, "ocirelay copy: store: %s\n", store.error().to_string().c_str());
    return 1;
  }
  relay::CopyOptions opts;
  opts.mount_from = cmd.mount_from;
  opts.referrers = cmd.referrers;
  opts.on_blob = [](const oci::Digest& digest, std::uint64_t size, relay::BlobStep step) {
    std::string_view how = relay::to_string(step);
    std::fprintf(stderr, "copy: blob %s %llu bytes %.*s\n", digest.str().c_str(),
                 static_cast<unsigned long long>(size), static_cast<int>(how.size()), how.data());
  };
  auto report = relay::copy_image(**store, **client, src_repo, ref, dest->repo, tag, opts);
  if (!report) {
    std::fprintf(stderr, "ocirelay copy: FAILED %s -> %s: %s\n", cmd.source.c_str(), cmd.destination.c_str(),
                 report.error().to_string().c_str());
    return 1;
  }
  std::fprintf(stderr,
               "copy: %s -> %s/%s%s: %s; %llu manifests, blobs %llu uploaded (%llu bytes), %llu mounted, %llu already there\n",
               cmd.source.c_str(), dest->url.c_str(), dest->repo.c_str(), tag.empty() ? "" : (":" + tag).c_str(),
               report->digest.c_str(), static_cast<unsigned long long>(report->manifests),
               static_cast<unsigned long long>(report->blobs_uploaded),
               static_cast<unsigned long long>(report->bytes_uploaded),
               static_cast<unsigned long long>(report->blobs_mounted),
               static_cast<unsigned long long>(report->blobs_existed));
  return 0;
}

}  // namespace ocirelay::cli
