// warm: manifest -> (children ->) blobs -> manifests bottom-up, so a tag only appears in the
// store once everything it names is stored (the same order a destination push uses).
#include "cli/warm.h"

#include "cli/config.h"

#include <chrono>
#include <map>
#include <memory>

#include "adapters/registry_client.h"
#include "oci/reference.h"
#include "proxy/router.h"
#include "store/store.h"

namespace ocirelay::cli {
namespace {

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class Progress {
 public:
  explicit Progress(const WarmOptions& o) : out_(o.progress), tty_(o.progress_is_tty) {}

  void line(const std::string& s) {
    if (out_ == nullptr) return;
    if (tty_) std::fprintf(out_, "\r\033[K");
    std::fprintf(out_, "%s\n", s.c_str());
    std::fflush(out_);
  }
  // Updates the current blob's bar (TTY only; plain output gets one line when done).
  void bar(std::string_view what, std::uint64_t done, std::optional<std::uint64_t> total) {
    if (out_ == nullptr || !tty_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(100) && (!total || done < *total)) return;
    last_ = now;
    std::string s = "\r\033[K" + std::string(what) + " ";
    if (total && *total > 0) {
      int width = 30;
      int filled = static_cast<int>(static_cast<double>(done) / static_cast<double>(*total) * width);
      if (filled > width) filled = width;
      s += "[" + std::string(filled, '#') + std::string(width - filled, ' ') + "] ";
      s += human_bytes(done) + " / " + human_bytes(*total);
    } else {
      s += human_bytes(done);
    }
    std::fprintf(out_, "%s", s.c_str());
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point last_{};
};

// Writes an upstream blob body into a store BlobWriter, reporting progress.
class WriterSink final : public adapters::BodySink {
 public:
  WriterSink(store::BlobWriter& w, Progress& p, std::string label, std::optional<std::uint64_t> total)
      : w_(w), p_(p), label_(std::move(label)), total_(total) {}
  Status on_head(const adapters::ResponseHead& head) override {
    if (!total_ && head.content_length) total_ = head.content_length;
    return {};
  }
  Status on_data(const char* data, std::size_t n) override {
    auto st = w_.append(data, n);
    if (!st) return st;
    p_.bar(label_, w_.size(), total_);
    return {};
  }

 private:
  store::BlobWriter& w_;
  Progress& p_;
  std::string label_;
  std::optional<std::uint64_t> total_;
};

std::string short_digest(const oci::Digest& d) {
  return std::string(d.algorithm()) + ":" + std::string(d.hex().substr(0, 12));
}

bool platform_matches(const std::optional<oci::Platform>& want, const oci::Descriptor& d) {
  if (!want) return true;
  if (!d.platform) return false;
  if (d.platform->os != want->os || d.platform->architecture != want->architecture) return false;
  return want->variant.empty() || d.platform->variant == want->variant;
}

class ImageWarmer {
 public:
  ImageWarmer(store::Store& store, adapters::RegistryClient& client, std::string repo,
              std::string store_repo, const WarmOptions& options, WarmReport& report,
              Progress& progress)
      : store_(store), client_(client), repo_(std::move(repo)), store_repo_(std::move(store_repo)),
        options_(options), report_(report), progress_(progress) {}

  // Fetches `ref` (tag or digest); `tag` is set for the top-level tagged manifest only.
  Status fetch_manifest(std::string_view ref, std::optional<std::string> tag, bool top_level) {
    auto resp = client_.get_manifest(repo_, ref, oci::kDefaultManifestAccept);
    if (!resp) return resp.error();
    const std::string& bytes = resp->body;
    const oci::Digest& actual = resp->digest;  // verified against `ref` by get_manifest
    auto m = oci::parse_manifest(bytes, resp->head.content_type);
    if (!m) return m.error();

    if (m->is_index()) {
      std::size_t picked = 0;
      for (const auto& child : m->manifests) {
        if (!platform_matches(options_.platform, child)) continue;
        ++picked;
        auto held = store_.manifest(child.digest);
        if (!held) return held.error();
        if (*held) {
          // Already held: its blobs were stored before it was (warm and proxy both store
          // bottom-up); just make sure this repository references it.
          if (auto st = store_.link(store_repo_, child.digest); !st) return st;
          continue;
        }
        auto st = fetch_manifest(child.digest.str(), std::nullopt, false);
        if (!st) return st;
      }
      if (options_.platform && picked == 0)
        return Error{Errc::not_found, "no manifest for platform " + options_.platform->str() +
                                          " in index " + actual.str()};
    } else {
      if (m->config) {
        auto st = fetch_blob(m->config->digest, m->config->size);
        if (!st) return st;
      }
      for (const auto& layer : m->layers) {
        auto st = fetch_blob(layer.digest, layer.size);
        if (!st) return st;
      }
    }

    auto content_type = resp->head.content_type.empty() ? m->media_type : resp->head.content_type;
    // With --platform only part of an index is held: store the index (clients resolve the
    // tag through it) but it is the platform child they will pull.
    auto put = store_.put_manifest(store_repo_, bytes, content_type, actual, tag, now_unix(),
                                   resp->head.etag);
    if (!put) return put.error();
    ++report_.manifests;
    progress_.line("  manifest " + short_digest(actual) + (top_level && tag ? " (" + *tag + ")" : ""));
    return {};
  }

 private:
  Status fetch_blob(const oci::Digest& d, std::int64_t size) {
    auto held = store_.blob(d);
    if (!held) return held.error();
    if (*held) {
      ++report_.blobs_present;
      return store_.link(store_repo_, d);
    }
    std::optional<std::uint64_t> expected_size;
    if (size > 0) expected_size = static_cast<std::uint64_t>(size);
    auto writer = store_.begin_blob(d, expected_size);
    if (!writer) return writer.error();
    std::string label = "  blob " + short_digest(d);
    WriterSink sink(**writer, progress_, label, expected_size);
    auto head = client_.get_blob(repo_, d, sink);
    if (!head) return head.error();
    auto info = (*writer)->commit(store_repo_);
    if (!info) return info.error();
    ++report_.blobs_fetched;
    report_.bytes_fetched += info->size;
    progress_.line(label + " " + human_bytes(info->size));
    return {};
  }

  store::Store& store_;
  adapters::RegistryClient& client_;
  std::string repo_, store_repo_;
  const WarmOptions& options_;
  WarmReport& report_;
  Progress& progress_;
};

}  // namespace

Result<oci::Platform> parse_platform(std::string_view s) {
  oci::Platform p;
  auto slash = s.find('/');
  if (slash == std::string_view::npos || slash == 0)
    return Error{Errc::invalid_argument, "invalid platform '" + std::string(s) + "' (use os/arch[/variant], e.g. linux/arm64)"};
  p.os = std::string(s.substr(0, slash));
  auto rest = s.substr(slash + 1);
  auto slash2 = rest.find('/');
  p.architecture = std::string(rest.substr(0, slash2));
  if (slash2 != std::string_view::npos) p.variant = std::string(rest.substr(slash2 + 1));
  if (p.architecture.empty() || (slash2 != std::string_view::npos && p.variant.empty()))
    return Error{Errc::invalid_argument, "invalid platform '" + std::string(s) + "' (use os/arch[/variant], e.g. linux/arm64)"};
  return p;
}

WarmReport warm(store::Store& store, const std::vector<proxy::UpstreamConfig>& upstreams,
                const std::vector<std::string>& refs, const WarmOptions& options) {
  WarmReport report;
  Progress progress(options);
  std::map<std::string, std::unique_ptr<adapters::RegistryClient>> clients;

  for (const auto& text : refs) {
    auto ref = oci::parse_image_ref(text);
    if (!ref) {
      report.failures.push_back({text, ref.error()});
      continue;
    }
    // The same routing as the mirror's ?ns=, so warmed content lands under the store key
    // the mirror will look up.
    auto route = proxy::select_upstream(upstreams, ref->repository, ref->registry);
    if (!route && route.error().code == Errc::not_found) {
      std::string names;
      for (const auto& u : upstreams) names += (names.empty() ? "" : ", ") + u.name;
      report.failures.push_back(
          {text, Error{Errc::invalid_argument, "no upstream named '" + ref->registry +
                                                   "' in the config (upstreams: " + names + ")"}});
      continue;
    }
    if (!route) {
      report.failures.push_back({text, route.error()});
      continue;
    }
    const proxy::UpstreamConfig* up = route->upstream;
    auto& client = clients[up->name];
    if (!client) client = adapters::RegistryClient::create(up->endpoint);

    progress.line(ref->str());
    ImageWarmer warmer(store, *client, route->repository, route->store_repo, options, report,
                       progress);
    std::optional<std::string> tag;
    if (!ref->ref.is_digest()) tag = ref->ref.tag;
    auto st = warmer.fetch_manifest(ref->ref.str(), tag, true);
    if (!st) {
      report.failures.push_back({text, st.error()});
      continue;
    }
    ++report.images;
  }
  return report;
}

}  // namespace ocirelay::cli
