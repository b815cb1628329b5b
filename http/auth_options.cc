#include "http/auth_options.h"

namespace ocirelay::http {

std::optional<Action> parse_action(std::string_view s) {
  if (s == "pull") return Action::pull;
  if (s == "push") return Action::push;
  if (s == "delete") return Action::delete_;
  if (s == "admin") return Action::admin;
  return std::nullopt;
}

std::string_view action_name(Action a) {
  switch (a) {
    case Action::pull: return "pull";
    case Action::push: return "push";
    case Action::delete_: return "delete";
    case Action::admin: return "admin";
  }
  return "pull";
}

bool is_admin(const std::vector<AccessRule>& rules, std::string_view user) {
  if (user.empty()) return false;
  for (const auto& r : rules) {
    if (!(r.actions & bit(Action::admin))) continue;
    for (const auto& u : r.users)
      if (u == user || u == "authenticated") return true;
  }
  return false;
}

}  // namespace ocirelay::http
