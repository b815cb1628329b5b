// warm: routes each ref to its upstream like the mirror does and has fetch/ walk the image
// into the store bottom-up, so a tag only appears once everything it names is stored.
#include "cli/warm.h"

#include "cli/config.h"

#include <chrono>

#include "fetch/fetcher.h"
#include "metrics/metrics.h"
#include "oci/reference.h"
#include "proxy/router.h"
#include "store/store.h"

namespace ocirelay::cli {
namespace {

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

std::string short_digest(const oci::Digest& d) {
  return std::string(d.algorithm()) + ":" + std::string(d.hex().substr(0, 12));
}

// Progress of one image walk: a bar per blob on a TTY, a line per object.
class WalkProgress final : public fetch::ImageObserver {
 public:
  explicit WalkProgress(Progress& p) : p_(p) {}
  void blob_progress(const oci::Digest& d, std::uint64_t written,
                     std::optional<std::uint64_t> total) override {
    p_.bar("  blob " + short_digest(d), written, total);
  }
  void blob_done(const oci::Digest& d, std::uint64_t size, bool fetched) override {
    if (fetched) p_.line("  blob " + short_digest(d) + " " + human_bytes(size));
  }
  void manifest_stored(const oci::Digest& d, const std::optional<std::string>& tag) override {
    p_.line("  manifest " + short_digest(d) + (tag ? " (" + *tag + ")" : ""));
  }

 private:
  Progress& p_;
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

WarmReport warm(store::Store& store, fetch::RegistryClients& registries,
                const std::vector<fetch::UpstreamConfig>& upstreams,
                const std::vector<std::string>& refs, const WarmOptions& options) {
  WarmReport report;
  Progress progress(options);
  WalkProgress walk_progress(progress);
  metrics::Metrics metrics;  // nobody scrapes a one-shot command
  fetch::Fetcher fetcher(store, metrics, /*enforce_quota=*/false);

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
    auto* client = registries.find(route->upstream->name);
    if (client == nullptr) {
      report.failures.push_back({text, Error{Errc::internal, "no client for upstream " + route->upstream->name}});
      continue;
    }

    progress.line(ref->str());
    fetch::ImageOptions image_options;
    image_options.platform = options.platform;
    auto image = fetcher.fetch_image(fetch::Origin{client, route->repository, route->store_repo},
                                     ref->ref, image_options, &walk_progress);
    if (!image) {
      report.failures.push_back({text, image.error()});
      continue;
    }
    ++report.images;
    report.manifests += image->manifests;
    report.blobs_fetched += image->blobs_fetched;
    report.blobs_present += image->blobs_present;
    report.bytes_fetched += image->bytes_fetched;
  }
  return report;
}

}  // namespace ocirelay::cli
