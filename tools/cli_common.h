// Shared helpers for the `hamdb` subcommands.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "db/code_store.h"
#include "core/status.h"

namespace hamdb::tools {

// Adds the common `--db DIR` option (env HAMDB_DB, default ./hamdb-data).
inline void AddDbOption(CLI::App* cmd, std::string* db) {
  *db = "hamdb-data";
  cmd->add_option("--db", *db, "Database directory (created if missing)")
      ->envname("HAMDB_DB")
      ->capture_default_str();
}

// Prints "error: <status>" to stderr and returns exit code 1.
inline int Fail(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
  return 1;
}

// The command as given, for the tables a benchmark writes: `prefix` and
// each option the user set, with its values (joined by the option's
// delimiter when it has one, so that `--sizes 1000,2000` reads as typed).
inline std::string CommandLine(const std::string& prefix, const CLI::App* cmd) {
  std::string line = prefix;
  for (const auto& r : cmd->get_options()) {
    if (r->count() == 0 || r->get_name() == "--help") continue;
    const char delimiter = r->get_delimiter();
    if (delimiter != '\0' && !r->results().empty()) {
      std::string joined;
      for (const auto& v : r->results()) joined += (joined.empty() ? "" : std::string(1, delimiter)) + v;
      line += " " + r->get_name() + " " + joined;
      continue;
    }
    for (const auto& v : r->results()) line += " " + r->get_name() + " " + v;
  }
  return line;
}

// salvage_wal: see StoreOpenOptions (the --salvage-wal flag of serve and check).
inline StatusOr<std::unique_ptr<CodeStore>> OpenStore(const std::string& dir, bool create = true,
                                                      bool salvage_wal = false) {
  StoreOpenOptions o;
  o.create_if_missing = create;
  o.salvage_wal = salvage_wal;
  return CodeStore::Open(dir, o);
}

}  // namespace hamdb::tools
