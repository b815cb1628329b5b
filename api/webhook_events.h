// What a registry's webhook delivery says changed: each vendor's documented payload read
// into the images it names. Pure functions over untrusted bytes: nothing here throws, a
// payload that is not the kind's shape is invalid_argument naming what is missing.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "api/webhook_config.h"
#include "oci/result.h"

namespace ocirelay::api {

struct RegistryEvent {
  enum class Action { push, remove };
  Action action = Action::push;
  std::string repository;  // at the registry ("team/app")
  std::string tag;         // empty: the repository as a whole (a manifest deleted by digest)
  std::string digest;      // when the payload gives one
  std::string id;          // the sender's event id; empty when it gives none
};

// The events of one delivery. Events that change no tag a rule could copy (a blob push, a
// pull, an untagged child manifest, a failed ECR action, GitHub's ping) are left out, so an
// empty list is a valid delivery. `github_event` is GitHub's X-GitHub-Event header.
Result<std::vector<RegistryEvent>> parse_webhook(WebhookKind kind, std::string_view body,
                                                 std::string_view github_event = {});

}  // namespace ocirelay::api
