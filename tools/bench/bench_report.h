// What the benchmark drivers share when they hand a table to docs/: the
// markdown table appended to --out, after the command that produced it.
#pragma once

#include <fstream>
#include <string>

#include "core/status.h"

namespace hamdb::tools {

// Appends "\nCommand: `command`" with `note` after it, a blank line and the
// table to `path`. IOError when the file cannot be written.
inline Status AppendBenchTable(const std::string& path, const std::string& command,
                               const std::string& table, const std::string& note = "") {
  std::ofstream f(path, std::ios::app);
  f << "\nCommand: `" << command << "`" << note << "\n\n" << table;
  f.flush();
  if (!f) return Status::IOError("cannot append to " + path);
  return Status::OK();
}

}  // namespace hamdb::tools
