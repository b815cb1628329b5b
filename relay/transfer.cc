#include "relay/transfer.h"

#include <spdlog/spdlog.h>

#include "adapters/registry_client.h"
#include "fetch/registries.h"
#include "oci/media_types.h"
#include "relay/ledger.h"
#include "relay/queue.h"

namespace ocirelay::relay {

Result<Destination> find_destination(const RelayContext& ctx, const Rule& rule, std::string_view registry,
                                     std::string_view source_repository, std::string_view destination_repository) {
  Destination d;
  for (const auto& t : rule.to)
    if (t.registry == registry &&
        (destination_repository.empty() || t.repository.apply(source_repository) == destination_repository)) {
      d.target = &t;
      break;
    }
  if (!d.target)
    return Error{Errc::invalid_argument, "rule " + rule.name + " no longer sends " + std::string(source_repository) +
                                             " to " + std::string(registry) + "/" + std::string(destination_repository)};
  d.client = ctx.clients.find(d.target->registry);
  if (!d.client)
    return Error{Errc::invalid_argument, "rule " + rule.name + ": no registry named '" + d.target->registry + "'"};
  for (const auto& r : ctx.config.registries)
    if (r.name == d.target->registry) d.registry = &r;
  return d;
}

Status delete_destination_tag(RelayContext& ctx, const Destination& dest, const std::string& repo,
                              const std::string& tag, const oci::Digest& sent) {
  const std::string& registry = dest.target->registry;
  if (dest.client->delete_manifest(repo, tag)) return ctx.ledger.forget_destination_tag(registry, repo, tag);
  auto head = dest.client->head_manifest(repo, tag, oci::kDefaultManifestAccept);
  if (!head && head.error().code != Errc::not_found) return head.error();
  if (head) {
    auto there = oci::Digest::parse(head->docker_content_digest);
    if (!there || *there != sent)
      return Error{Errc::unsupported, "the tag points at another digest there now: left alone"};
    auto others = ctx.ledger.destination_tags(registry, repo);
    if (!others) return others.error();
    for (const auto& [other, entry] : *others)
      if (other != tag && entry.sent == sent)
        return Error{Errc::unsupported, "the registry deletes manifests, not tags, and tag " + other +
                                            " names the same manifest: left alone"};
    auto st = dest.client->delete_manifest(repo, sent.str());
    if (!st && st.error().code != Errc::not_found) return st;
  }
  return ctx.ledger.forget_destination_tag(registry, repo, tag);
}

Result<std::optional<Outcome>> check_destination_tag(RelayContext& ctx, const Rule& rule, const Destination& dest,
                                                     const TaskOutcome& o, const oci::Digest& digest, bool dry_run) {
  auto head = dest.client->head_manifest(o.destination_repository, o.tag, oci::kDefaultManifestAccept);
  if (!head) {
    if (head.error().code == Errc::not_found) return std::optional<Outcome>{};
    return Error{head.error().code, "HEAD " + o.destination_repository + ":" + o.tag + ": " + head.error().message};
  }
  auto there = oci::Digest::parse(head->docker_content_digest);
  if (there && *there == digest && rule.platforms.all()) {
    if (!dry_run) (void)ctx.ledger.record_destination_tag(o.destination, o.destination_repository, o.tag, digest, digest);
    return std::optional<Outcome>{Outcome::unchanged};
  }
  if (rule.override_tags) return std::optional<Outcome>{};
  return std::optional<Outcome>{Outcome::kept};
}

void BlobClaims::acquire(const oci::Digest& d) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !held_.contains(d); });
  held_.insert(d);
}

void BlobClaims::release(const oci::Digest& d) {
  {
    std::lock_guard lock(mu_);
    held_.erase(d);
  }
  cv_.notify_all();
}

Status transfer(RelayContext& ctx, const Rule& rule, const Destination& dest, TaskOutcome& o,
                ImageSource& source, const oci::Digest& root, const TransferHooks& hooks) {
  auto failed = [&](const Error& e) -> Status {
    o.outcome = Outcome::failed;
    o.error = e.message;
    return e;
  };
  if (dest.registry && dest.registry->create_repositories && !hooks.dry_run &&
      (!hooks.prepared || !hooks.prepared->contains(o.destination, o.destination_repository))) {
    auto st = adapters::prepare_destination(*dest.client, o.destination_repository, *dest.registry->create_repositories);
    if (!st) return failed(st.error());
    if (hooks.prepared) hooks.prepared->insert(o.destination, o.destination_repository);
  }
  CopyOptions co;
  co.referrers = rule.referrers;
  co.platforms = rule.platforms;
  co.dry_run = hooks.dry_run;
  // The one blob this task holds a claim on (copy_image sends one blob at a time): given
  // up after the blob, or when the transfer ends whatever happened.
  std::optional<oci::Digest> claimed;
  struct Unclaim {
    BlobClaims* claims;
    std::optional<oci::Digest>& d;
    ~Unclaim() {
      if (claims && d) claims->release(*d);
    }
  } unclaim{hooks.claims, claimed};
  co.blob_hint = [&](const oci::Digest& d) {
    if (hooks.claims && !hooks.dry_run) {
      hooks.claims->acquire(d);  // after another task's upload of it: the ledger knows where it went
      claimed = d;
    }
    BlobHint hint;
    auto where = ctx.ledger.blob_locations(o.destination, d);
    if (!where) return hint;
    for (const auto& r : *where) {
      if (r == o.destination_repository) hint.present = true;
      else hint.mount_from.push_back(r);
    }
    return hint;
  };
  co.on_blob = [&](const oci::Digest& d, std::uint64_t size, BlobStep step) {
    if (!hooks.dry_run && step != BlobStep::known)
      (void)ctx.ledger.record_blob_location(o.destination, d, o.destination_repository);
    if (claimed && *claimed == d) {
      hooks.claims->release(d);
      claimed.reset();
    }
    if (hooks.on_blob) hooks.on_blob(o, d, size, step);
  };
  if (hooks.sessions && !hooks.dry_run) {
    co.resume = [&](const oci::Digest& d) {
      auto s = hooks.sessions->upload_session(o.destination, o.destination_repository, d);
      return s ? *s : adapters::UploadSession{};
    };
    co.on_session = [&](const oci::Digest& d, const adapters::UploadSession& s) {
      if (auto st = hooks.sessions->save_upload_session(o.destination, o.destination_repository, d, s); !st)
        spdlog::warn("relay: recording the upload of {} to {}/{}: {}", d.str(), o.destination,
                     o.destination_repository, st.error().message);
    };
  }
  const bool by_digest = oci::Digest::parse(o.tag).ok();  // an untagged referrer
  auto copied = copy_image(source, root, *dest.client, o.destination_repository, by_digest ? "" : o.tag, co);
  if (!copied && !hooks.dry_run && copied.error().message.find("BLOB_UNKNOWN") != std::string::npos) {
    // The registry lacks a blob the ledger says this repository holds (deleted there since):
    // what the ledger says of the repository is forgotten, and every blob asked about again.
    spdlog::warn("relay: {}/{} lacks blobs the ledger recorded there ({}); sending them again", o.destination,
                 o.destination_repository, copied.error().message);
    (void)ctx.ledger.forget_blob_locations(o.destination, o.destination_repository);
    copied = copy_image(source, root, *dest.client, o.destination_repository, by_digest ? "" : o.tag, co);
  }
  if (!copied) return failed(copied.error());
  o.copy = *copied;
  o.outcome = Outcome::copied;
  if (!hooks.dry_run && !by_digest) {
    auto src = oci::Digest::parse(o.digest);
    auto sent = oci::Digest::parse(copied->sent_digest);
    auto st = ctx.ledger.record_destination_tag(o.destination, o.destination_repository, o.tag, src ? *src : root,
                                                sent ? *sent : root);
    if (!st)
      spdlog::warn("relay: recording {}/{}:{}: {}", o.destination, o.destination_repository, o.tag, st.error().message);
  }
  return {};
}

}  // namespace ocirelay::relay
