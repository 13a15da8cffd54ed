// The `hamdb` command: store management, search and benchmarks.
#include <CLI/CLI.hpp>

#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "hamdb: a Hamming-space retrieval database.\n"
      "Codes are packed LSB-first (docs/codes.md); a store is a directory (--db or HAMDB_DB)."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "hamdb 0.1.0");
  int exit_code = 0;
  hamdb::tools::AddCollectionCommands(&app, &exit_code);
  hamdb::tools::AddSearchCommands(&app, &exit_code);
  hamdb::tools::AddServeCommand(&app, &exit_code);
  hamdb::tools::AddTrainCommands(&app, &exit_code);
  hamdb::tools::AddEncodeCommand(&app, &exit_code);
  hamdb::tools::AddExportCommand(&app, &exit_code);
  hamdb::tools::AddIngestCommand(&app, &exit_code);
  hamdb::tools::AddQueryCommand(&app, &exit_code);
  hamdb::tools::AddBackupCommands(&app, &exit_code);
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks (results go to docs/benchmarks.md)");
  bench->require_subcommand(1);
  hamdb::tools::AddBenchIngestCommand(bench, &exit_code);
  hamdb::tools::AddBenchRestartCommand(bench, &exit_code);
  hamdb::tools::AddBenchFilterCommand(bench, &exit_code);
  hamdb::tools::AddBenchHammingCommand(bench, &exit_code);
  hamdb::tools::AddBenchIndexCommand(bench, &exit_code);
  hamdb::tools::AddBenchWritesCommand(bench, &exit_code);
  hamdb::tools::AddBenchMapCommand(bench, &exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
