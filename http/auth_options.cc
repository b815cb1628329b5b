#include "http/auth_options.h"

namespace ocirelay::http {

std::optional<Action> parse_action(std::string_view s) {
  if (s == "pull") return Action::pull;
  if (s == "push") return Action::push;
  if (s == "delete") return Action::delete_;
  return std::nullopt;
}

std::string_view action_name(Action a) {
  switch (a) {
    case Action::pull: return "pull";
    case Action::push: return "push";
    case Action::delete_: return "delete";
  }
  return "pull";
}

}  // namespace ocirelay::http
