// Registration of the `hamdb` subcommands. Each function adds its
// subcommands (with options and a callback) to the given CLI11 app; the
// callbacks set *exit_code. main.cc calls them all.
#pragma once

#include <CLI/CLI.hpp>

namespace hamdb::tools {

// collection create|list|drop, put, get, delete, count.
void AddCollectionCommands(CLI::App* app, int* exit_code);
// search, generate (tools/cmd_search.cc)
void AddSearchCommands(CLI::App* app, int* exit_code);
// bench ingest
void AddBenchIngestCommand(CLI::App* bench, int* exit_code);
void AddBenchRestartCommand(CLI::App* bench, int* exit_code);
void AddBenchFilterCommand(CLI::App* bench, int* exit_code);
// backup, restore, check (cmd_backup.cc).
void AddBackupCommands(CLI::App* app, int* exit_code);
// bench hamming
void AddBenchHammingCommand(CLI::App* bench, int* exit_code);
// bench index (tools/bench/bench_index.cc)
void AddBenchIndexCommand(CLI::App* bench, int* exit_code);
// bench writes (tools/bench/bench_writes.cc)
void AddBenchWritesCommand(CLI::App* bench, int* exit_code);
// bench map (tools/bench/bench_map.cc)
void AddBenchMapCommand(CLI::App* bench, int* exit_code);
// ingest (tools/cmd_ingest.cc)
void AddIngestCommand(CLI::App* app, int* exit_code);
// query: a client of a running server (tools/cmd_query.cc)
void AddQueryCommand(CLI::App* app, int* exit_code);
// train, evaluate-encoder (tools/cmd_train.cc)
void AddTrainCommands(CLI::App* app, int* exit_code);
// encode (tools/cmd_encode.cc)
void AddEncodeCommand(CLI::App* app, int* exit_code);
// export-dataset (tools/cmd_export.cc)
void AddExportCommand(CLI::App* app, int* exit_code);

// serve (tools/cmd_serve.cc)
void AddServeCommand(CLI::App* app, int* exit_code);

}  // namespace hamdb::tools
