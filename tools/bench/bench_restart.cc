// hamdb bench restart: how long a collection takes to open (start-to-ready
// of one collection) with a full rebuild from the store against loading its
// index snapshot, on the same store, in one run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "collection/live_collection.h"
#include "core/binary_code.h"
#include "index/synthetic.h"
#include "tools/bench/bench_report.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace hamdb::tools {

namespace {

struct BenchRestartArgs {
  uint64_t n = 10000000;
  int bits = 64;
  std::vector<std::string> specs = {"MIH", "Flat"};
  std::string data = "clustered";
  int repeats = 3;
  std::string dir;
  std::string out;
  uint64_t seed = 1;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int RunBenchRestart(const BenchRestartArgs& a, const std::string& cmdline) {
  SyntheticSpec ss;
  ss.kind = a.data;
  ss.seed = a.seed;
  std::fprintf(stderr, "generating %llu %s %d-bit codes...\n", static_cast<unsigned long long>(a.n),
               a.data.c_str(), a.bits);
  StatusOr<SyntheticCodes> gen = GenerateCodes(ss, a.n, a.bits);
  if (!gen.ok()) return Fail(gen.status());
  const size_t nb = code_bytes(a.bits);
  const std::string base = a.dir.empty()
                               ? (std::filesystem::temp_directory_path() / "hamdb-bench-restart").string()
                               : a.dir;
  std::string table =
      "| codes | spec | rebuild s (median) | snapshot load s (median) | rebuild / load | snapshot "
      "MiB | snapshot write s | index B/item |\n"
      "|---:|---|---:|---:|---:|---:|---:|---:|\n";
  for (const std::string& spec : a.specs) {
    std::filesystem::remove_all(base);
    auto store = OpenStore(base);
    if (!store.ok()) return Fail(store.status());
    Status s = LiveCollection::Create(store->get(), "bench", a.bits, spec, {});
    if (!s.ok()) return Fail(s);
    {
      Progress progress("ingest", a.n, "codes");
      StoreWriteOptions wo;
      wo.sync = false;
      for (uint64_t i = 0; i < a.n; i += 1000000) {
        const size_t m = static_cast<size_t>(std::min<uint64_t>(1000000, a.n - i));
        s = (*store)->PutCodes("bench", nullptr, gen->codes.data() + i * nb, m, wo);
        if (!s.ok()) return Fail(s);
        progress.Add(m);
      }
      progress.Finish();
      s = (*store)->Flush();
      if (!s.ok()) return Fail(s);
    }
    LiveCollectionOptions rebuild;
    LiveCollectionOptions with_snapshot;
    with_snapshot.snapshots = true;
    with_snapshot.snapshot_after_items = UINT64_MAX;
    std::vector<double> rebuild_s, load_s;
    double write_s = 0, snapshot_mib = 0, index_bytes = 0;
    for (int r = 0; r < a.repeats; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      auto live = LiveCollection::Open(store->get(), "bench", rebuild);
      if (!live.ok()) return Fail(live.status());
      rebuild_s.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      if (r == 0) {
        // The snapshot of the index just rebuilt.
        t0 = std::chrono::steady_clock::now();
        s = (*live)->SaveSnapshot();
        if (!s.ok()) return Fail(s);
        write_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        snapshot_mib =
            std::filesystem::file_size((*store)->SnapshotPath(*(*store)->GetCollection("bench"))) /
            1048576.0;
      }
    }
    for (int r = 0; r < a.repeats; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      auto live = LiveCollection::Open(store->get(), "bench", with_snapshot);
      if (!live.ok()) return Fail(live.status());
      load_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      if (!(*live)->open_info().from_snapshot) {
        return Fail(Status::Internal("the snapshot was not used: " + (*live)->open_info().why_rebuilt));
      }
      index_bytes = static_cast<double>((*live)->index_memory_bytes()) / a.n;
    }
    char row[512];
    std::snprintf(row, sizeof row,
                  "| %llu | %s | %.2f | %.2f | %.1fx | %.1f | %.2f | %.1f |\n",
                  static_cast<unsigned long long>(a.n), spec.c_str(), Median(rebuild_s),
                  Median(load_s), Median(rebuild_s) / std::max(Median(load_s), 1e-9), snapshot_mib,
                  write_s, index_bytes);
    EmitRow(&table, row);
  }
  std::filesystem::remove_all(base);
  Status s = FinishBenchTable(a.out, cmdline, table);
  return s.ok() ? 0 : Fail(s);
}

}  // namespace

void AddBenchRestartCommand(CLI::App* bench, int* exit_code) {
  auto a = std::make_shared<BenchRestartArgs>();
  CLI::App* cmd = bench->add_subcommand(
      "restart",
      "Collection open time: full index rebuild from the store against loading the index snapshot");
  cmd->add_option("--n", a->n, "Number of codes")->capture_default_str();
  cmd->add_option("--bits", a->bits, "Code length in bits")->capture_default_str();
  cmd->add_option("--specs", a->specs, "Index specs to measure")->delimiter(',')->capture_default_str();
  cmd->add_option("--data", a->data, "uniform or clustered")->capture_default_str();
  cmd->add_option("--repeats", a->repeats, "Opens of each kind (the median is reported)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_option("--dir", a->dir, "Scratch store directory (default: a temp dir, removed)");
  cmd->add_option("--out", a->out, "Append the markdown table to this file");
  cmd->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  cmd->callback([a, exit_code, cmd] {
    *exit_code = RunBenchRestart(*a, CommandLine("hamdb bench restart", cmd));
  });
}

}  // namespace hamdb::tools
