#include "cli/copy.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "adapters/credentials.h"
#include "adapters/prepare.h"
#include "adapters/registry_client.h"
#include "adapters/registry_kind.h"
#include "adapters/docker_config.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/registry_ref.h"
#include "cli/temporary_dir.h"
#include "fetch/fetcher.h"
#include "metrics/metrics.h"
#include "oci/reference.h"
#include "relay/copy.h"
#include "relay/layout_source.h"
#include "relay/replicator.h"
#include "store/store.h"

namespace ocirelay::cli {

namespace {

struct Destination {
  std::string url;   // scheme://host[:port]
  std::string repo;
  std::string tag;   // empty: the source's tag, or by digest
  const fetch::UpstreamConfig* configured = nullptr;  // a registry of the config, by name
  std::string name() const { return (configured ? configured->name : url) + "/" + repo; }
};

// The configured registry (upstreams: or registries:) whose name is the first component of
// `s`, with the rest of `s`; null when there is none.
const fetch::UpstreamConfig* configured_registry(const std::vector<fetch::UpstreamConfig>& registries,
                                                 const std::string& s, std::string& rest) {
  auto slash = s.find('/');
  if (slash == std::string::npos) return nullptr;
  for (const auto& r : registries)
    if (r.name == s.substr(0, slash)) {
      rest = s.substr(slash + 1);
      // Docker Hub's one-component names are library/ images.
      if (r.library_prefix && rest.find('/') == std::string::npos) rest = "library/" + rest;
      return &r;
    }
  return nullptr;
}

// "<repo>[:<tag>]" into its parts (a ':' after the last '/' starts the tag).
void split_tag(std::string& repo, std::string& tag) {
  auto colon = repo.rfind(':');
  if (colon != std::string::npos && repo.find('/', colon) == std::string::npos) {
    tag = repo.substr(colon + 1);
    repo = repo.substr(0, colon);
  }
}

std::optional<Destination> parse_destination(const std::vector<fetch::UpstreamConfig>& registries, std::string s) {
  Destination d;
  if (!s.starts_with("http://") && !s.starts_with("https://")) {
    if (auto* c = configured_registry(registries, s, d.repo)) {
      d.configured = c;
      d.url = c->endpoint.url;
      split_tag(d.repo, d.tag);
      if (d.repo.empty() || !oci::valid_repository(d.repo)) return std::nullopt;
      return d;
    }
  }
  const std::string scheme = take_scheme(s);
  auto slash = s.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == s.size()) return std::nullopt;
  d.url = scheme + s.substr(0, slash);
  d.repo = s.substr(slash + 1);
  split_tag(d.repo, d.tag);
  return d;
}

// A destination's client, from the flags (the same for every destination). Errors:
// invalid_argument for an unreadable --dest-password-file.
Result<std::unique_ptr<adapters::RegistryClient>> destination_client(const Destination& dest, const CopyCommand& cmd) {
  if (dest.configured) return adapters::RegistryClient::create(dest.configured->endpoint);  // its auth: and type:
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

// `source` with the bytes each blob body gives counted into `progress` (the bytes one
// destination has been sent).
class CountingSource final : public relay::ImageSource {
 public:
  CountingSource(relay::ImageSource& source, std::function<void(std::uint64_t)> progress)
      : source_(source), progress_(std::move(progress)) {}
  Result<Manifest> manifest(const oci::Digest& d) override { return source_.manifest(d); }
  Result<std::vector<oci::Digest>> referrers(const oci::Digest& subject) override { return source_.referrers(subject); }
  Result<std::unique_ptr<adapters::BodySource>> blob(const oci::Digest& d, std::uint64_t size) override {
    auto body = source_.blob(d, size);
    if (!body) return body.error();
    return std::unique_ptr<adapters::BodySource>(std::make_unique<Counted>(std::move(*body), progress_));
  }

 private:
  class Counted final : public adapters::BodySource {
   public:
    Counted(std::unique_ptr<adapters::BodySource> body, const std::function<void(std::uint64_t)>& progress)
        : body_(std::move(body)), progress_(progress) {}
    std::uint64_t size() const override { return body_->size(); }
    Result<std::size_t> read(std::uint64_t offset, char* buf, std::size_t n) override {
      auto got = body_->read(offset, buf, n);
      if (got && *got > 0) progress_(*got);
      return got;
    }
    Status wait_for_more(std::uint64_t offset, const std::atomic<bool>* cancel) override {
      return body_->wait_for_more(offset, cancel);
    }

   private:
    std::unique_ptr<adapters::BodySource> body_;
    const std::function<void(std::uint64_t)>& progress_;
  };
  relay::ImageSource& source_;
  std::function<void(std::uint64_t)> progress_;
};

// The bytes of the blobs a copy of `root` may send (each once): every selected child's
// config and layers. 0 when a manifest cannot be read (the copy will say why).
std::uint64_t image_bytes(relay::ImageSource& source, const oci::Digest& root, const relay::PlatformFilter& platforms) {
  std::map<oci::Digest, std::uint64_t> blobs;
  std::vector<oci::Digest> todo{root};
  for (int guard = 0; !todo.empty() && guard < 10000; ++guard) {
    auto d = todo.back();
    todo.pop_back();
    auto m = source.manifest(d);
    if (!m) return 0;
    auto parsed = oci::parse_manifest(m->bytes, m->media_type);
    if (!parsed) return 0;
    for (const auto& child : parsed->manifests)
      if (platforms.matches(child.platform)) todo.push_back(child.digest);
    if (parsed->config) blobs[parsed->config->digest] = static_cast<std::uint64_t>(parsed->config->size);
    for (const auto& l : parsed->layers) blobs[l.digest] = static_cast<std::uint64_t>(l.size);
  }
  std::uint64_t total = 0;
  for (const auto& [d, n] : blobs) total += n;
  return total;
}

// One image to every destination at once, each at its own pace, read from `source`.
// Returns how many failed.
int copy_to_all(relay::ImageSource& source, const std::string& what, const oci::Digest& root,
                const std::string& source_tag, const std::vector<Destination>& dests,
                std::vector<std::unique_ptr<adapters::RegistryClient>>& clients, const relay::CopyOptions& opts,
                ProgressBars& bars) {
  std::mutex mu;
  int failed = 0;
  const std::uint64_t total = bars.drawing() ? image_bytes(source, root, opts.platforms) : 0;
  std::vector<std::size_t> bar;
  for (const auto& dest : dests) bar.push_back(bars.add(dest.name(), total));
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < dests.size(); ++i)
    threads.emplace_back([&, i] {
      const auto& dest = dests[i];
      const std::string tag = dest.tag.empty() ? source_tag : dest.tag;
      CountingSource counted(source, [&](std::uint64_t n) { bars.advance(bar[i], n); });
      relay::CopyOptions o = opts;
      o.on_blob = [&](const oci::Digest& digest, std::uint64_t size, relay::BlobStep step) {
        if (bars.drawing()) {
          if (step != relay::BlobStep::uploaded) bars.advance(bar[i], size);  // nothing to send: done
          return;
        }
        std::string_view how = relay::to_string(step);
        bars.print("copy: " + dest.name() + ": blob " + digest.str() + " " + std::to_string(size) + " bytes " +
                   std::string(how));
      };
      auto report = relay::copy_image(counted, root, *clients[i], dest.repo, tag, o);
      std::lock_guard lock(mu);
      const std::string to = dest.name() + (tag.empty() ? "" : ":" + tag);
      if (!report) {
        bars.finish(bar[i], "FAILED");
        bars.print("ocirelay copy: FAILED " + what + " -> " + to + ": " + report.error().to_string());
        ++failed;
        return;
      }
      bars.finish(bar[i], "done");
      std::string line = "copy: " + what + " -> " + to + ": " + report->sent_digest + "; " +
                         std::to_string(report->manifests) + " manifests, blobs " +
                         std::to_string(report->blobs_uploaded) + " uploaded (" +
                         std::to_string(report->bytes_uploaded) + " bytes), " + std::to_string(report->blobs_mounted) +
                         " mounted, " + std::to_string(report->blobs_existed + report->blobs_known) + " already there";
      if (report->sent_digest != report->digest) line += " (index rewritten from " + report->digest + ")";
      bars.print(line);
    });
  for (auto& t : threads) t.join();
  return failed;
}

// What `ocirelay copy` reads from.
struct Source {
  enum class Kind { layout, store, remote } kind = Kind::store;
  std::string layout_dir, layout_tag;  // layout
  std::string repo, ref;               // store and remote: the repository and its tag or digest
  std::string registry;                // remote: the registry's name ("docker.io", a configured name)
  adapters::RegistryEndpoint endpoint; // remote
};

// Errors: a usage message (exit 2).
Result<Source> parse_source(const std::vector<fetch::UpstreamConfig>& registries, const CopyCommand& cmd) {
  Source src;
  const std::string& s = cmd.source;
  if (s.rfind("oci:", 0) == 0) {
    src.kind = Source::Kind::layout;
    src.layout_dir = s.substr(4);
    split_tag(src.layout_dir, src.layout_tag);
    if (src.layout_dir.empty() || (src.layout_tag.empty() && !cmd.all_tags) || (!src.layout_tag.empty() && cmd.all_tags))
      return Error{Errc::invalid_argument, "source '" + s + "': give oci:DIR:TAG, or oci:DIR with --all-tags"};
    return src;
  }
  if (cmd.all_tags)
    return Error{Errc::invalid_argument, "--all-tags is for an oci:DIR source (for a registry: ocirelay sync --from)"};
  std::string name = s;
  if (auto at = name.find('@'); at != std::string::npos) {
    src.ref = name.substr(at + 1);
    name = name.substr(0, at);
  } else {
    split_tag(name, src.ref);
  }
  if (src.ref.empty())
    return Error{Errc::invalid_argument, "source '" + s + "' names no tag or digest (<repository>:<tag>, "
                                         "<repository>@<digest>, or oci:DIR:TAG)"};
  const bool scheme = name.starts_with("http://") || name.starts_with("https://");
  std::string rest;
  if (!scheme) {
    if (auto* c = configured_registry(registries, name, rest)) {
      src.kind = Source::Kind::remote;
      src.registry = c->name;
      src.repo = rest;
      src.endpoint = c->endpoint;
      if (!oci::valid_repository(src.repo))
        return Error{Errc::invalid_argument, "source '" + s + "': '" + src.repo + "' is not a valid repository name"};
      return src;
    }
  }
  const std::string first = name.substr(0, name.find('/'));
  if (scheme || (name.find('/') != std::string::npos && looks_like_host(first))) {
    auto r = parse_registry_repository(name);
    if (!r) return Error{Errc::invalid_argument, "source '" + s + "': " + r.error().message};
    src.kind = Source::Kind::remote;
    src.registry = r->host;
    src.repo = r->repository;
    src.endpoint = endpoint_for(*r);
    return src;
  }
  src.repo = name;  // a repository of the store
  if (!oci::valid_repository(src.repo))
    return Error{Errc::invalid_argument, "source '" + s + "': '" + src.repo + "' is not a valid repository name"};
  return src;
}

// A remote image's blobs as they arrive, on one bar (its size is not known before).
class FetchProgress final : public fetch::ImageObserver {
 public:
  FetchProgress(ProgressBars& bars, std::size_t bar) : bars_(bars), bar_(bar) {}
  void blob_progress(const oci::Digest& d, std::uint64_t written, std::optional<std::uint64_t>) override {
    auto& seen = written_[d];
    if (written > seen) bars_.advance(bar_, written - seen);
    seen = std::max(seen, written);
  }
  void blob_done(const oci::Digest& d, std::uint64_t size, bool) override {
    blob_progress(d, size, size);
  }

 private:
  ProgressBars& bars_;
  std::size_t bar_;
  std::map<oci::Digest, std::uint64_t> written_;
};

}  // namespace

int run_copy(const Config& config, const CopyCommand& cmd) {
  const auto registries = all_registries(config);
  auto parsed_source = parse_source(registries, cmd);
  if (!parsed_source) {
    std::fprintf(stderr, "ocirelay copy: %s\n", parsed_source.error().message.c_str());
    return 2;
  }
  const Source& src = *parsed_source;
  relay::PlatformFilter platforms;
  for (const auto& p : cmd.platforms) {
    auto platform = relay::PlatformFilter::parse_platform(p);
    if (!platform) {
      std::fprintf(stderr, "ocirelay copy: --platform '%s': %s\n", p.c_str(), platform.error().message.c_str());
      return 2;
    }
    platforms.only.push_back(std::move(*platform));
  }
  std::vector<Destination> dests;
  for (const auto& d : cmd.destinations) {
    auto dest = parse_destination(registries, d);
    if (!dest) {
      std::fprintf(stderr,
                   "ocirelay copy: destination '%s' is not [http[s]://]host[:port]/<repository>[:<tag>] or "
                   "<configured registry>/<repository>[:<tag>]\n",
                   d.c_str());
      return 2;
    }
    if (cmd.all_tags && !dest->tag.empty()) {
      std::fprintf(stderr, "ocirelay copy: destination '%s' names a tag: not with --all-tags\n", d.c_str());
      return 2;
    }
    if (dest->configured && (!cmd.creds.empty() || !cmd.dest_type.empty())) {
      std::fprintf(stderr,
                   "ocirelay copy: destination '%s' is the configured registry %s: its auth: and type: apply, "
                   "not --dest-creds or --dest-type\n",
                   d.c_str(), dest->configured->name.c_str());
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
        std::fprintf(stderr, "ocirelay copy: FAILED %s: %s\n", dest.name().c_str(), st.error().to_string().c_str());
        return 1;
      }
    clients.push_back(std::move(c));
  }

  relay::CopyOptions opts;
  opts.mount_from = cmd.mount_from;
  opts.referrers = cmd.referrers;
  opts.platforms = platforms;
  ProgressBars bars(cmd.progress && ::isatty(STDERR_FILENO) == 1);
  if (src.kind == Source::Kind::layout) {
    auto refs = relay::layout_refs(src.layout_dir);
    if (!refs) {
      std::fprintf(stderr, "ocirelay copy: %s\n", refs.error().to_string().c_str());
      return 1;
    }
    auto source = relay::layout_image_source(src.layout_dir);
    int failed = 0, found = 0;
    for (const auto& r : *refs) {
      if (r.tag.empty() || (!cmd.all_tags && r.tag != src.layout_tag)) continue;
      ++found;
      failed += copy_to_all(*source, "oci:" + src.layout_dir + ":" + r.tag, r.digest, r.tag, dests, clients, opts, bars);
    }
    if (found == 0) {
      std::fprintf(stderr, "ocirelay copy: FAILED %s: %s\n", cmd.source.c_str(),
                   cmd.all_tags ? "the layout has no tagged image"
                                : ("no image tagged " + src.layout_tag + " in the layout").c_str());
      return 1;
    }
    return failed == 0 ? 0 : 1;
  }

  auto parsed = oci::parse_manifest_ref(src.ref);
  if (!parsed) {
    std::fprintf(stderr, "ocirelay copy: source '%s': %s\n", cmd.source.c_str(), parsed.error().message.c_str());
    return 2;
  }
  store::StoreOptions so = config.store;
  TemporaryDirectory ephemeral;  // declared before the store: removed after it closed
  if (src.kind == Source::Kind::remote && !cmd.store_given) {
    // No daemon needed: the image is read once into a store of its own, removed at the end.
    auto made = TemporaryDirectory::create("ocirelay-copy");
    if (!made) {
      std::fprintf(stderr, "ocirelay copy: a store for the image: %s\n", made.error().message.c_str());
      return 2;
    }
    ephemeral = std::move(*made);
    so.root = ephemeral.path();
  }
  // A store source only reads (beside a running serve, like fsck); a remote one fills it.
  so.read_only = src.kind == Source::Kind::store;
  auto store = store::Store::open(so);
  if (!store) {
    std::fprintf(stderr, "ocirelay copy: store %s: %s\n", so.root.c_str(), store.error().to_string().c_str());
    return 1;
  }
  std::string store_repo = src.repo;
  oci::Digest root;
  if (src.kind == Source::Kind::remote) {
    auto client = adapters::RegistryClient::create(src.endpoint);
    if (!client) {
      std::fprintf(stderr, "ocirelay copy: %s\n", client.error().to_string().c_str());
      return 2;
    }
    metrics::Metrics metrics;  // nobody scrapes a one-shot command
    fetch::Fetcher fetcher(**store, metrics, /*enforce_quota=*/false);
    FetchProgress progress(bars, bars.add("fetch " + src.registry + "/" + src.repo, 0));
    auto fetched = relay::fetch_remote_image(fetcher, **client, src.registry, src.repo, *parsed, platforms,
                                             cmd.referrers, &progress);
    if (!fetched) {
      bars.print("ocirelay copy: FAILED " + cmd.source + ": " + fetched.error().to_string());
      return 1;
    }
    root = *fetched;
    store_repo = src.registry + "/" + src.repo;
  } else if (parsed->is_digest()) {
    root = *parsed->digest;
  } else {
    auto tag = (*store)->tag(src.repo, parsed->tag);
    if (!tag || !*tag) {
      std::fprintf(stderr, "ocirelay copy: FAILED %s: %s\n", cmd.source.c_str(),
                   !tag ? tag.error().to_string().c_str() : (src.repo + ":" + parsed->tag + " is not in the store").c_str());
      return 1;
    }
    root = (*tag)->digest;
  }
  auto linked = (*store)->repo_references(store_repo, root);
  if (!linked || !*linked) {
    std::fprintf(stderr, "ocirelay copy: FAILED %s: manifest %s is not in %s\n", cmd.source.c_str(), root.str().c_str(),
                 store_repo.c_str());
    return 1;
  }
  auto source = relay::store_image_source(**store, store_repo);
  const std::string source_tag = parsed->is_digest() ? std::string() : parsed->tag;
  return copy_to_all(*source, cmd.source, root, source_tag, dests, clients, opts, bars) == 0 ? 0 : 1;
}

}  // namespace ocirelay::cli
