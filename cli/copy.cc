#include "cli/copy.h"

#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "adapters/credentials.h"
#include "adapters/prepare.h"
#include "adapters/registry_client.h"
#include "adapters/registry_kind.h"
#include "cli/commands.h"
#include "adapters/docker_config.h"
#include "oci/reference.h"
#include "relay/copy.h"
#include "relay/layout_source.h"
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

// A destination's client, from the flags (the same for every destination). Errors:
// invalid_argument for an unreadable --dest-password-file.
Result<std::unique_ptr<adapters::RegistryClient>> destination_client(const Destination& dest, const CopyCommand& cmd) {
  adapters::RegistryEndpoint ep;
  ep.name = dest.url.substr(dest.url.find("//") + 2);
  ep.url = dest.url;
  ep.request_timeout = std::chrono::minutes(2);
  if (!cmd.dest_type.empty()) {
    ep.kind = *adapters::parse_registry_kind(cmd.dest_type);  // checked by run_copy
  } else {
    ep.kind = adapters::infer_registry_kind(ep.name.substr(0, ep.name.find(':')));
  }
  if (!cmd.creds.empty()) {
    adapters::Credentials c;
    auto colon = cmd.creds.find(':');
    c.username = cmd.creds.substr(0, colon);
    if (colon != std::string::npos) c.password = cmd.creds.substr(colon + 1);
    if (!cmd.password_file.empty()) {
      std::ifstream in(cmd.password_file);
      if (!in) return Error{Errc::invalid_argument, "cannot read --dest-password-file " + cmd.password_file};
      std::getline(in, c.password);
    }
    ep.credentials = adapters::fixed_credentials(std::move(c));
  } else {
    ep.credentials = adapters::docker_config_credentials(ep.name);  // as docker push would log in
  }
  return adapters::RegistryClient::create(std::move(ep));
}

// One image to every destination at once, each at its own pace, read from `source`.
// Returns how many failed.
int copy_to_all(relay::ImageSource& source, const std::string& what, const oci::Digest& root,
                const std::string& source_tag, const std::vector<Destination>& dests,
                std::vector<std::unique_ptr<adapters::RegistryClient>>& clients, const relay::CopyOptions& opts) {
  std::mutex mu;
  int failed = 0;
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < dests.size(); ++i)
    threads.emplace_back([&, i] {
      const auto& dest = dests[i];
      const std::string tag = dest.tag.empty() ? source_tag : dest.tag;
      relay::CopyOptions o = opts;
      o.on_blob = [&](const oci::Digest& digest, std::uint64_t size, relay::BlobStep step) {
        std::string_view how = relay::to_string(step);
        std::lock_guard lock(mu);
        std::fprintf(stderr, "copy: %s/%s: blob %s %llu bytes %.*s\n", dest.url.c_str(), dest.repo.c_str(),
                     digest.str().c_str(), static_cast<unsigned long long>(size), static_cast<int>(how.size()),
                     how.data());
      };
      auto report = relay::copy_image(source, root, *clients[i], dest.repo, tag, o);
      std::lock_guard lock(mu);
      const std::string to = dest.url + "/" + dest.repo + (tag.empty() ? "" : ":" + tag);
      if (!report) {
        std::fprintf(stderr, "ocirelay copy: FAILED %s -> %s: %s\n", what.c_str(), to.c_str(),
                     report.error().to_string().c_str());
        ++failed;
        return;
      }
      std::fprintf(stderr,
                   "copy: %s -> %s: %s; %llu manifests, blobs %llu uploaded (%llu bytes), %llu mounted, %llu already there\n",
                   what.c_str(), to.c_str(), report->digest.c_str(), static_cast<unsigned long long>(report->manifests),
                   static_cast<unsigned long long>(report->blobs_uploaded),
                   static_cast<unsigned long long>(report->bytes_uploaded),
                   static_cast<unsigned long long>(report->blobs_mounted),
                   static_cast<unsigned long long>(report->blobs_existed + report->blobs_known));
    });
  for (auto& t : threads) t.join();
  return failed;
}

}  // namespace

int run_copy(const Config& config, const CopyCommand& cmd) {
  // The source: an OCI layout directory, or the store.
  const bool layout = cmd.source.rfind("oci:", 0) == 0;
  std::string src_repo, ref, layout_dir, layout_tag;
  if (layout) {
    layout_dir = cmd.source.substr(4);
    if (auto colon = layout_dir.rfind(':'); colon != std::string::npos && layout_dir.find('/', colon) == std::string::npos) {
      layout_tag = layout_dir.substr(colon + 1);
      layout_dir = layout_dir.substr(0, colon);
    }
    if (layout_dir.empty() || (layout_tag.empty() && !cmd.all_tags) || (!layout_tag.empty() && cmd.all_tags)) {
      std::fprintf(stderr, "ocirelay copy: source '%s': give oci:DIR:TAG, or oci:DIR with --all-tags\n",
                   cmd.source.c_str());
      return 2;
    }
  } else {
    if (cmd.all_tags) {
      std::fprintf(stderr, "ocirelay copy: --all-tags is for an oci:DIR source (for a registry: ocirelay sync --from)\n");
      return 2;
    }
    if (!split_source(cmd.source, src_repo, ref)) {
      std::fprintf(stderr, "ocirelay copy: source '%s' is not <repository>:<tag>, <repository>@<digest> or oci:DIR:TAG\n",
                   cmd.source.c_str());
      return 2;
    }
  }
  std::vector<Destination> dests;
  for (const auto& d : cmd.destinations) {
    auto dest = parse_destination(d);
    if (!dest) {
      std::fprintf(stderr, "ocirelay copy: destination '%s' is not [http[s]://]host[:port]/<repository>[:<tag>]\n",
                   d.c_str());
      return 2;
    }
    if (cmd.all_tags && !dest->tag.empty()) {
      std::fprintf(stderr, "ocirelay copy: destination '%s' names a tag: not with --all-tags\n", d.c_str());
      return 2;
    }
    dests.push_back(std::move(*dest));
  }
  if (!cmd.dest_type.empty() && !adapters::parse_registry_kind(cmd.dest_type)) {
    std::fprintf(stderr, "ocirelay copy: unknown --dest-type '%s'\n", cmd.dest_type.c_str());
    return 2;
  }
  std::vector<std::unique_ptr<adapters::RegistryClient>> clients;
  for (const auto& dest : dests) {
    auto made = destination_client(dest, cmd);
    if (!made) {
      std::fprintf(stderr, "ocirelay copy: %s\n", made.error().to_string().c_str());
      return made.error().code == Errc::invalid_argument ? 2 : 1;
    }
    auto c = std::move(*made);
    if (cmd.create_repository)
      if (auto st = adapters::prepare_destination(*c, dest.repo, adapters::PrepareOptions{}); !st) {
        std::fprintf(stderr, "ocirelay copy: FAILED %s: %s\n", (dest.url + "/" + dest.repo).c_str(),
                     st.error().to_string().c_str());
        return 1;
      }
    clients.push_back(std::move(c));
  }

  relay::CopyOptions opts;
  opts.mount_from = cmd.mount_from;
  opts.referrers = cmd.referrers;
  if (layout) {
    auto refs = relay::layout_refs(layout_dir);
    if (!refs) {
      std::fprintf(stderr, "ocirelay copy: %s\n", refs.error().to_string().c_str());
      return 1;
    }
    auto source = relay::layout_image_source(layout_dir);
    int failed = 0, found = 0;
    for (const auto& r : *refs) {
      if (r.tag.empty() || (!cmd.all_tags && r.tag != layout_tag)) continue;
      ++found;
      failed += copy_to_all(*source, "oci:" + layout_dir + ":" + r.tag, r.digest, r.tag, dests, clients, opts);
    }
    if (found == 0) {
      std::fprintf(stderr, "ocirelay copy: FAILED %s: %s\n", cmd.source.c_str(),
                   cmd.all_tags ? "the layout has no tagged image" : ("no image tagged " + layout_tag + " in the layout").c_str());
      return 1;
    }
    return failed == 0 ? 0 : 1;
  }

  store::StoreOptions so = config.store;
  so.read_only = true;  // beside a running `serve`, like fsck: the copy only reads
  auto store = store::Store::open(so);
  if (!store) {
    std::fprintf(stderr, "ocirelay copy: store: %s\n", store.error().to_string().c_str());
    return 1;
  }
  auto parsed = oci::parse_manifest_ref(ref);
  if (!parsed) {
    std::fprintf(stderr, "ocirelay copy: source '%s': %s\n", cmd.source.c_str(), parsed.error().message.c_str());
    return 2;
  }
  oci::Digest root;
  if (parsed->is_digest()) {
    root = *parsed->digest;
  } else {
    auto tag = (*store)->tag(src_repo, parsed->tag);
    if (!tag || !*tag) {
      std::fprintf(stderr, "ocirelay copy: FAILED %s: %s\n", cmd.source.c_str(),
                   !tag ? tag.error().to_string().c_str() : (src_repo + ":" + parsed->tag + " is not in the store").c_str());
      return 1;
    }
    root = (*tag)->digest;
  }
  auto linked = (*store)->repo_references(src_repo, root);
  if (!linked || !*linked) {
    std::fprintf(stderr, "ocirelay copy: FAILED %s: manifest %s is not in %s\n", cmd.source.c_str(), root.str().c_str(),
                 src_repo.c_str());
    return 1;
  }
  auto source = relay::store_image_source(**store, src_repo);
  const std::string source_tag = parsed->is_digest() ? std::string() : parsed->tag;
  return copy_to_all(*source, cmd.source, root, source_tag, dests, clients, opts) == 0 ? 0 : 1;
}

}  // namespace ocirelay::cli
