#include "api/webhook_events.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

#include "oci/encoding.h"
#include "oci/json.h"
#include "oci/media_types.h"
#include "oci/reference.h"

namespace ocirelay::api {
namespace {

using oci::json::Json;

constexpr std::array<std::pair<WebhookKind, std::string_view>, 7> kKinds = {{
    {WebhookKind::ecr, "ecr"},
    {WebhookKind::artifact_registry, "artifact_registry"},
    {WebhookKind::distribution, "distribution"},
    {WebhookKind::harbor, "harbor"},
    {WebhookKind::acr, "acr"},
    {WebhookKind::dockerhub, "dockerhub"},
    {WebhookKind::github, "github"},
}};

Error invalid(std::string_view kind, std::string_view what) {
  return Error{Errc::invalid_argument, "not a " + std::string(kind) + " event: " + std::string(what)};
}

std::string str(const Json& obj, std::string_view key) { return oci::json::string_or(obj, key); }

const Json* object(const Json& obj, std::string_view key) { return oci::json::object_field(obj, key); }

// An event is kept only when its names could key a rule's run.
bool usable(const RegistryEvent& e) {
  if (!oci::valid_repository(e.repository)) return false;
  return e.tag.empty() || oci::valid_tag(e.tag);
}

void add(std::vector<RegistryEvent>& out, RegistryEvent e) {
  if (usable(e)) out.push_back(std::move(e));
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// EventBridge's "ECR Image Action", as an API destination delivers it, or the compact
// {"account","region","detail":{...}} form ECR-to-OCIR sync services accept.
Result<std::vector<RegistryEvent>> ecr(const Json& doc) {
  const Json* detail = object(doc, "detail");
  if (!detail) return invalid("ECR", "no detail object");
  if (auto type = str(doc, "detail-type"); !type.empty() && type != "ECR Image Action")
    return std::vector<RegistryEvent>{};  // another ECR event (a scan, a replication): nothing to copy
  std::vector<RegistryEvent> out;
  if (auto result = str(*detail, "result"); !result.empty() && result != "SUCCESS") return out;
  const std::string action = str(*detail, "action-type");
  if (action != "PUSH" && action != "DELETE") return invalid("ECR", "detail.action-type is neither PUSH nor DELETE");
  RegistryEvent e;
  e.action = action == "PUSH" ? RegistryEvent::Action::push : RegistryEvent::Action::remove;
  e.repository = str(*detail, "repository-name");
  e.tag = str(*detail, "image-tag");
  e.digest = str(*detail, "image-digest");
  e.id = str(doc, "id");
  if (e.repository.empty()) return invalid("ECR", "no detail.repository-name");
  if (e.action == RegistryEvent::Action::push && e.tag.empty()) return out;  // pushed by digest only
  add(out, std::move(e));
  return out;
}

// "host/project/repo/image:tag" or "...@sha256:..." -> the repository at the registry and
// the tag (or digest).
bool split_reference(std::string_view ref, std::string& repository, std::string& tag, std::string& digest) {
  const auto slash = ref.find('/');
  if (slash == std::string_view::npos) return false;
  std::string_view path = ref.substr(slash + 1);
  if (auto at = path.find('@'); at != std::string_view::npos) {
    digest = std::string(path.substr(at + 1));
    path = path.substr(0, at);
  }
  if (auto colon = path.rfind(':'); colon != std::string_view::npos && path.find('/', colon) == std::string_view::npos) {
    tag = std::string(path.substr(colon + 1));
    path = path.substr(0, colon);
  }
  repository = std::string(path);
  return !repository.empty();
}

// A Pub/Sub push of Artifact Registry's gcr topic: message.data is base64 JSON.
Result<std::vector<RegistryEvent>> artifact_registry(const Json& doc) {
  const Json* message = object(doc, "message");
  if (!message) return invalid("Pub/Sub push", "no message object");
  auto data = oci::base64_decode(str(*message, "data"));
  if (!data) return invalid("Pub/Sub push", "message.data is not base64");
  const Json inner = oci::json::parse(*data);
  if (!inner.is_object()) return invalid("Artifact Registry", "message.data is not a JSON object");
  const std::string action = str(inner, "action");
  if (action != "INSERT" && action != "DELETE") return invalid("Artifact Registry", "action is neither INSERT nor DELETE");
  RegistryEvent e;
  e.action = action == "INSERT" ? RegistryEvent::Action::push : RegistryEvent::Action::remove;
  e.id = str(*message, "messageId");
  if (e.id.empty()) e.id = str(*message, "message_id");
  std::string repo_from_digest, unused_tag;
  const std::string digest_ref = str(inner, "digest"), tag_ref = str(inner, "tag");
  if (!digest_ref.empty()) split_reference(digest_ref, repo_from_digest, unused_tag, e.digest);
  std::string unused_digest;
  if (!tag_ref.empty() && !split_reference(tag_ref, e.repository, e.tag, unused_digest))
    return invalid("Artifact Registry", "tag is not host/path:tag");
  if (e.repository.empty()) e.repository = repo_from_digest;
  std::vector<RegistryEvent> out;
  if (e.repository.empty()) return invalid("Artifact Registry", "neither digest nor tag names an image");
  if (e.action == RegistryEvent::Action::push && e.tag.empty()) return out;
  add(out, std::move(e));
  return out;
}

// The notification envelope (distribution, and ACR's which has the same event shape).
void envelope_event(const Json& ev, std::vector<RegistryEvent>& out) {
  const Json* target = object(ev, "target");
  if (!target) return;
  const std::string action = str(ev, "action");
  RegistryEvent e;
  if (action == "push") e.action = RegistryEvent::Action::push;
  else if (action == "delete") e.action = RegistryEvent::Action::remove;
  else return;  // pull, mount, chart events
  const std::string media_type = str(*target, "mediaType");
  // Blob pushes come as events too; only manifests move tags.
  if (e.action == RegistryEvent::Action::push && !media_type.empty() && !oci::is_manifest_type(media_type))
    return;
  e.repository = str(*target, "repository");
  e.tag = str(*target, "tag");
  e.digest = str(*target, "digest");
  e.id = str(ev, "id");
  if (e.action == RegistryEvent::Action::push && e.tag.empty()) return;  // an index child, a referrer
  add(out, std::move(e));
}

Result<std::vector<RegistryEvent>> distribution(const Json& doc) {
  const auto* events = oci::json::array_field(doc, "events");
  if (!events) return invalid("distribution", "no events list");
  std::vector<RegistryEvent> out;
  for (const auto& ev : *events)
    if (ev.is_object()) envelope_event(ev, out);
  return out;
}

Result<std::vector<RegistryEvent>> acr(const Json& doc) {
  if (!object(doc, "target")) return invalid("ACR", "no target object");
  std::vector<RegistryEvent> out;
  envelope_event(doc, out);
  return out;
}

Result<std::vector<RegistryEvent>> harbor(const Json& doc) {
  const std::string type = str(doc, "type");
  const Json* data = object(doc, "event_data");
  if (type.empty() || !data) return invalid("Harbor", "no type or event_data");
  std::vector<RegistryEvent> out;
  RegistryEvent base;
  if (type == "PUSH_ARTIFACT") base.action = RegistryEvent::Action::push;
  else if (type == "DELETE_ARTIFACT") base.action = RegistryEvent::Action::remove;
  else return out;  // pulls, scans, quota events
  const Json* repo = object(*data, "repository");
  if (!repo) return invalid("Harbor", "no event_data.repository");
  base.repository = str(*repo, "repo_full_name");
  if (base.repository.empty()) {
    const std::string ns = str(*repo, "namespace"), name = str(*repo, "name");
    if (!ns.empty() && !name.empty()) base.repository = ns + "/" + name;
  }
  const auto* resources = oci::json::array_field(*data, "resources");
  if (!resources || resources->empty()) {
    if (base.action == RegistryEvent::Action::remove) add(out, base);
    return out;
  }
  for (const auto& r : *resources) {
    if (!r.is_object()) continue;
    RegistryEvent e = base;
    e.tag = str(r, "tag");
    e.digest = str(r, "digest");
    if (e.action == RegistryEvent::Action::push && e.tag.empty()) continue;
    add(out, std::move(e));
  }
  return out;
}

// Docker Hub's repository webhook: pushes only.
Result<std::vector<RegistryEvent>> dockerhub(const Json& doc) {
  const Json* push = object(doc, "push_data");
  const Json* repo = object(doc, "repository");
  if (!push || !repo) return invalid("Docker Hub", "no push_data or repository");
  RegistryEvent e;
  e.repository = str(*repo, "repo_name");
  if (e.repository.empty()) {
    const std::string ns = str(*repo, "namespace"), name = str(*repo, "name");
    if (!ns.empty() && !name.empty()) e.repository = ns + "/" + name;
  }
  if (e.repository.find('/') == std::string::npos && !e.repository.empty()) e.repository = "library/" + e.repository;
  e.tag = str(*push, "tag");
  std::vector<RegistryEvent> out;
  if (!e.tag.empty()) add(out, std::move(e));
  return out;
}

// GitHub's `package` and `registry_package` events for container packages on ghcr.io.
Result<std::vector<RegistryEvent>> github(const Json& doc, std::string_view event) {
  std::vector<RegistryEvent> out;
  if (event == "ping") return out;
  const Json* pkg = object(doc, event == "registry_package" ? "registry_package" : "package");
  if (!pkg) pkg = object(doc, "package");
  if (!pkg) pkg = object(doc, "registry_package");
  if (!pkg) return invalid("GitHub", "no package or registry_package object");
  if (lower(str(*pkg, "package_type")) != "container") return out;
  const std::string action = str(doc, "action");
  if (action != "published" && action != "updated") return out;
  std::string owner = str(*pkg, "namespace");
  if (owner.empty())
    if (const Json* o = object(*pkg, "owner")) owner = str(*o, "login");
  const std::string name = str(*pkg, "name");
  if (owner.empty() || name.empty()) return invalid("GitHub", "no package owner or name");
  RegistryEvent e;
  e.repository = lower(owner + "/" + name);
  if (const Json* version = object(*pkg, "package_version")) {
    if (const Json* meta = object(*version, "container_metadata"))
      if (const Json* tag = object(*meta, "tag")) {
        e.tag = str(*tag, "name");
        e.digest = str(*tag, "digest");
      }
    if (e.digest.empty()) e.digest = str(*version, "version");
  }
  if (!e.tag.empty()) add(out, std::move(e));
  return out;
}

}  // namespace

std::optional<WebhookKind> parse_webhook_kind(std::string_view name) {
  for (const auto& [k, n] : kKinds)
    if (n == name) return k;
  return std::nullopt;
}

std::string_view webhook_kind_name(WebhookKind kind) {
  for (const auto& [k, n] : kKinds)
    if (k == kind) return n;
  return "?";
}

std::string_view webhook_kind_names() {
  return "ecr, artifact_registry, distribution, harbor, acr, dockerhub, github";
}

Result<std::vector<RegistryEvent>> parse_webhook(WebhookKind kind, std::string_view body, std::string_view github_event) {
  const Json doc = oci::json::parse(body);
  if (!doc.is_object()) return Error{Errc::invalid_argument, "the body is not a JSON object"};
  switch (kind) {
    case WebhookKind::ecr: return ecr(doc);
    case WebhookKind::artifact_registry: return artifact_registry(doc);
    case WebhookKind::distribution: return distribution(doc);
    case WebhookKind::harbor: return harbor(doc);
    case WebhookKind::acr: return acr(doc);
    case WebhookKind::dockerhub: return dockerhub(doc);
    case WebhookKind::github: return github(doc, github_event);
  }
  return Error{Errc::invalid_argument, "unknown webhook kind"};
}

}  // namespace ocirelay::api
