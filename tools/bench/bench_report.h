// What the benchmark drivers share when they hand a table to docs/: the
// markdown table appended to --out, after the command that produced it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

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

// The p-quantile (0 < p <= 1) of the values by nearest rank: the smallest
// value with at least p of them at or below it; 0 for none.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t at = std::min(v.size() - 1, static_cast<size_t>(std::ceil(p * v.size())) - 1);
  return v[at];
}

// Adds a row to the table and prints it at once, so that a long run shows
// its rows as they come.
inline void EmitRow(std::string* table, const std::string& row) {
  *table += row;
  std::printf("%s", row.c_str());
  std::fflush(stdout);
}

// Prints the whole table, then appends it to `out` when that is set
// (AppendBenchTable).
inline Status FinishBenchTable(const std::string& out, const std::string& command, const std::string& table,
                               const std::string& note = "") {
  std::printf("\n%s", table.c_str());
  return out.empty() ? Status::OK() : AppendBenchTable(out, command, table, note);
}

}  // namespace hamdb::tools
