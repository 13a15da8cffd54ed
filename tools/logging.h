// Log set-up of the `hamdb` command: every module logs through spdlog; this
// chooses the level and the line format of the default (stderr) logger.
//   text: 2026-11-29T19:22:04.123Z info  hamdb: <message>
//   json: {"time":"2026-11-29T19:22:04.123Z","level":"info","msg":"<message>"}
// (one object per line, the message JSON-escaped).
#pragma once

#include <string>

#include "core/status.h"

namespace hamdb::tools {

// format: "text" or "json"; level: trace, debug, info, warn, error, critical
// or off. InvalidArgument for anything else.
Status ConfigureLogging(const std::string& format, const std::string& level);

}  // namespace hamdb::tools
