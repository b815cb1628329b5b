// The admin API's credentials (`api_tokens: [{name, token_file}]`), as the config loader
// reads them for the control plane (control_plane.h).
#pragma once

#include <string>

namespace ocirelay::api {

struct ApiToken {
  std::string name;   // who holds it: logged with each request it authorizes
  std::string token;  // the secret: never logged, echoed or stored
};

}  // namespace ocirelay::api
