// `hamdb-bench`: the index and Hamming-kernel benchmarks on their own.
//
// The same `bench index`, `bench writes` and `bench hamming` commands as
// `hamdb`, in a binary that does not link libtorch or the encoder, so it runs
// on a machine that has only the index's own libraries (a GPU box, a minimal
// container).
#include <CLI/CLI.hpp>

#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "hamdb-bench: the index, index-write and Hamming-kernel benchmarks of `hamdb bench`, "
      "without the encoder"};
  app.require_subcommand(1);
  int exit_code = 0;
  hamdb::tools::AddBenchHammingCommand(&app, &exit_code);
  hamdb::tools::AddBenchIndexCommand(&app, &exit_code);
  hamdb::tools::AddBenchWritesCommand(&app, &exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
