// Process-wide logging: spdlog on stderr, text or JSON lines (ts, level, msg).
#pragma once

#include <string>

#include "cli/config.h"

namespace ocirelay::cli {

// Installs the default spdlog logger. REQUIRES: options validated (see parse_config).
void setup_logging(const LogOptions& options);

// Escapes `s` as the inside of a JSON string (no surrounding quotes).
std::string json_escape(std::string_view s);

}  // namespace ocirelay::cli
