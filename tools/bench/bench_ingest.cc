// hamdb bench ingest: durable code-ingest throughput of the store.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "collection/live_collection.h"
#include "core/binary_code.h"
#include "tools/bench/bench_report.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace hamdb::tools {

namespace {

struct BenchIngestArgs {
  uint64_t n = 10000000;
  int bits = 64;
  std::vector<size_t> batches = {10000};
  std::vector<std::string> syncs = {"on", "off"};
  std::string dir;
  std::string out;
  uint64_t seed = 1;
};


int RunBenchIngest(const BenchIngestArgs& a, const std::string& cmdline) {
  if (!ValidateCodeBits(a.bits).ok()) return Fail(ValidateCodeBits(a.bits));
  const size_t nb = code_bytes(a.bits);
  std::fprintf(stderr, "generating %llu random %d-bit codes...\n",
               static_cast<unsigned long long>(a.n), a.bits);
  std::vector<uint8_t> codes(a.n * nb);
  std::mt19937_64 rng(a.seed);
  for (size_t i = 0; i + 8 <= codes.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(&codes[i], &v, 8);
  }
  for (size_t i = codes.size() & ~size_t{7}; i < codes.size(); ++i) codes[i] = rng() & 0xff;
  if (a.bits % 8) {
    const uint8_t mask = static_cast<uint8_t>((1u << (a.bits % 8)) - 1);
    for (uint64_t i = 0; i < a.n; ++i) codes[i * nb + nb - 1] &= mask;
  }

  const std::string base =
      a.dir.empty() ? (std::filesystem::temp_directory_path() / "hamdb-bench-ingest").string() : a.dir;
  std::string table =
      "| codes | bits | batch | sync | seconds | codes/s | MB/s (codes) | count check |\n"
      "|---:|---:|---:|---|---:|---:|---:|---|\n";
  for (size_t batch : a.batches) {
    for (const std::string& sync : a.syncs) {
      std::filesystem::remove_all(base);
      auto store = OpenStore(base);
      if (!store.ok()) return Fail(store.status());
      Status s = LiveCollection::Create(store->get(), "bench", a.bits, kDefaultIndexSpec, {});
      if (!s.ok()) return Fail(s);
      StoreWriteOptions wo;
      wo.sync = sync == "on";
      Progress progress("ingest batch=" + std::to_string(batch) + " sync=" + sync, a.n, "codes");
      const auto t0 = std::chrono::steady_clock::now();
      for (uint64_t i = 0; i < a.n; i += batch) {
        const size_t m = static_cast<size_t>(std::min<uint64_t>(batch, a.n - i));
        s = (*store)->PutCodes("bench", nullptr, codes.data() + i * nb, m, wo);
        if (!s.ok()) return Fail(s);
        progress.Add(m);
      }
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      progress.Finish();
      auto count = (*store)->Count("bench");
      if (!count.ok()) return Fail(count.status());
      const bool count_ok = *count == a.n;
      char row[256];
      std::snprintf(row, sizeof row, "| %llu | %d | %zu | %s | %.2f | %.0f | %.1f | %s |\n",
                    static_cast<unsigned long long>(a.n), a.bits, batch,
                    wo.sync ? "on (fsync WAL per batch)" : "off (WAL, no fsync)", secs, a.n / secs,
                    a.n * nb / secs / 1e6, count_ok ? "ok" : "MISMATCH");
      EmitRow(&table, row);
      if (!count_ok) return Fail(Status::Internal("count mismatch after ingest"));
    }
  }
  std::filesystem::remove_all(base);
  Status s = FinishBenchTable(a.out, cmdline, table);
  return s.ok() ? 0 : Fail(s);
}

}  // namespace

void AddBenchIngestCommand(CLI::App* bench, int* exit_code) {
  auto a = std::make_shared<BenchIngestArgs>();
  CLI::App* cmd = bench->add_subcommand(
      "ingest", "Durable code-ingest throughput: random codes through CodeStore::PutCodes, WAL on");
  cmd->add_option("--n", a->n, "Number of codes")->capture_default_str();
  cmd->add_option("--bits", a->bits, "Code length in bits")->capture_default_str();
  cmd->add_option("--batch", a->batches, "Batch sizes to try (items per atomic write)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--sync", a->syncs, "Sync policies to try: on, off")
      ->delimiter(',')
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  cmd->add_option("--dir", a->dir, "Scratch store directory (default: a temp dir, removed)");
  cmd->add_option("--out", a->out, "Append the markdown table to this file");
  cmd->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  cmd->callback([a, exit_code, cmd] {
    *exit_code = RunBenchIngest(*a, CommandLine("hamdb bench ingest", cmd));
  });
}

}  // namespace hamdb::tools
