// hamdb bench writes: the cost of a write against the size of the index.
// For each index spec and each size n, one process: n clustered codes are
// loaded in one Add (the first load), then rounds of three timed batches of
// --batch items each: new ids (inserts), held ids with new codes (upserts)
// and held ids (deletes). A round waits --pause-ms after its batches, so
// that work an index leaves to a background thread (MIH's table rebuilds)
// runs beside the writes as it would under a stream of requests. After the
// rounds, --searches k-NN searches (k = 10, one thread) for codes of the
// load are timed one by one: what the writes left in the index (overflow
// entries, MIH's stale entries) costs reads there. (Searches between the
// rounds would evict the writes' working set: a scan of 10M codes makes
// Flat's next inserts 5x slower.) The table gives per spec and n the median
// and p99 time of a batch of each kind and of a search, and the index's
// memory per item after the run. A write whose cost does not grow with n
// shows the same times at every n.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "core/binary_code.h"
#include "index/index_factory.h"
#include "index/synthetic.h"
#include "tools/bench/bench_report.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace hamdb::tools {

namespace {

struct BenchWritesArgs {
  std::vector<uint64_t> sizes = {100000, 1000000};
  std::vector<std::string> specs = {"Flat", "MIH", "Bucket", "IVF1024"};
  int bits = 64;
  size_t batch = 100;
  size_t rounds = 200;
  double pause_ms = 1;
  size_t searches = 1000;
  std::string out;
  uint64_t seed = 1;
};

int RunBenchWrites(const BenchWritesArgs& a, const std::string& cmdline) {
  const size_t cb = code_bytes(a.bits);
  const uint64_t max_n = *std::max_element(a.sizes.begin(), a.sizes.end());
  // Codes for the largest load, then for every batch that brings new codes.
  const size_t extra = a.rounds * 2 * a.batch;
  SyntheticSpec ss;
  ss.kind = "clustered";
  ss.num_centres = 1000;
  ss.flip_prob = 0.05;
  ss.seed = a.seed;
  std::printf("generating %llu + %zu clustered %d-bit codes\n",
              static_cast<unsigned long long>(max_n), extra, a.bits);
  StatusOr<SyntheticCodes> gen = GenerateCodes(ss, max_n + extra, a.bits);
  if (!gen.ok()) return Fail(gen.status());
  const std::vector<uint8_t>& codes = gen->codes;
  IndexOptions options;
  options.codebook = gen->centre_codes;

  std::string table =
      "| index | n | load s | insert p50 ms | insert p99 ms | upsert p50 ms | upsert p99 ms "
      "| delete p50 ms | delete p99 ms | search p50 ms | search p99 ms | bytes/item |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  std::printf("\n%s", table.c_str());
  for (const std::string& spec : a.specs) {
    for (uint64_t n : a.sizes) {
      StatusOr<std::unique_ptr<BinaryIndex>> made = MakeIndex(spec, a.bits, options);
      if (!made.ok()) return Fail(made.status());
      std::unique_ptr<BinaryIndex> index = std::move(made).value();
      std::vector<uint64_t> live(n);
      for (uint64_t i = 0; i < n; ++i) live[i] = i;
      const auto t0 = std::chrono::steady_clock::now();
      Status st = index->Add(live.data(), codes.data(), n);
      if (!st.ok()) return Fail(st);
      const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

      std::mt19937_64 rng(a.seed + n);
      uint64_t next_id = n;
      size_t next_code = max_n;  // codes past every load
      std::vector<double> insert_ms, upsert_ms, delete_ms, search_ms;
      SearchParams one_thread;
      one_thread.num_threads = 1;
      std::vector<uint64_t> ids(a.batch);
      auto timed = [](std::vector<double>* into, auto&& write) {
        const auto s = std::chrono::steady_clock::now();
        Status result = write();
        into->push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
        return result;
      };
      for (size_t r = 0; r < a.rounds && st.ok(); ++r) {
        for (uint64_t& id : ids) {
          id = next_id++;
          live.push_back(id);
        }
        st = timed(&insert_ms, [&] { return index->Add(ids.data(), &codes[next_code * cb], a.batch); });
        next_code += a.batch;
        if (!st.ok()) break;
        for (uint64_t& id : ids) id = live[rng() % live.size()];
        st = timed(&upsert_ms, [&] { return index->Add(ids.data(), &codes[next_code * cb], a.batch); });
        next_code += a.batch;
        if (!st.ok()) break;
        for (uint64_t& id : ids) {
          const size_t at = rng() % live.size();
          id = live[at];
          live[at] = live.back();
          live.pop_back();
        }
        st = timed(&delete_ms, [&] { return index->Remove(ids.data(), a.batch, nullptr); });
        if (a.pause_ms > 0) {
          std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(a.pause_ms));
        }
      }
      for (size_t q = 0; q < a.searches && st.ok(); ++q) {
        const uint8_t* query = &codes[(rng() % n) * cb];
        st = timed(&search_ms, [&] { return index->Search(query, 10, one_thread).status(); });
      }
      if (!st.ok()) return Fail(st);
      if (index->size() != live.size()) {
        return Fail(Status::Internal(spec + " holds " + std::to_string(index->size()) +
                                     " items after the run, expected " + std::to_string(live.size())));
      }
      char row[512];
      std::snprintf(row, sizeof row,
                    "| %s | %llu | %.2f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f |\n",
                    spec.c_str(), static_cast<unsigned long long>(n), load_s,
                    Percentile(insert_ms, 0.5), Percentile(insert_ms, 0.99), Percentile(upsert_ms, 0.5),
                    Percentile(upsert_ms, 0.99), Percentile(delete_ms, 0.5), Percentile(delete_ms, 0.99),
                    Percentile(search_ms, 0.5), Percentile(search_ms, 0.99),
                    static_cast<double>(index->memory_bytes()) / static_cast<double>(index->size()));
      EmitRow(&table, row);
    }
  }
  char pause[32];
  std::snprintf(pause, sizeof pause, "%g", a.pause_ms);
  const std::string note = "\n\nClustered " + std::to_string(a.bits) + "-bit codes (1000 centres, flip 0.05), " +
                           std::to_string(a.rounds) + " rounds of " + std::to_string(a.batch) +
                           "-item insert, upsert and delete batches after the load, " + pause +
                           " ms between rounds; one writer thread; then " + std::to_string(a.searches) +
                           " k = 10 searches (one thread) for codes of the load.";
  Status s = FinishBenchTable(a.out, cmdline, table, note);
  return s.ok() ? 0 : Fail(s);
}

}  // namespace

void AddBenchWritesCommand(CLI::App* bench, int* exit_code) {
  auto a = std::make_shared<BenchWritesArgs>();
  CLI::App* cmd = bench->add_subcommand(
      "writes", "Insert, upsert and delete batch latency of each index at several sizes");
  cmd->add_option("--sizes", a->sizes, "Items loaded before the timed writes, one run each")
      ->delimiter(',')
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 31))
      ->capture_default_str();
  cmd->add_option("--specs", a->specs, "Index specs (the bucket family uses the clusters' centres as codebook)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--bits", a->bits, "Code length in bits")->capture_default_str();
  cmd->add_option("--batch", a->batch, "Items per write")->check(CLI::Range(1, 1000000))->capture_default_str();
  cmd->add_option("--rounds", a->rounds, "Rounds of one insert, one upsert and one delete batch")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--pause-ms", a->pause_ms, "Pause after each round")
      ->check(CLI::Range(0.0, 10000.0))
      ->capture_default_str();
  cmd->add_option("--searches", a->searches, "Timed k = 10 searches after the rounds")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Append the markdown table to this file");
  cmd->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  cmd->callback([a, exit_code, cmd] {
    *exit_code = RunBenchWrites(*a, CommandLine("hamdb bench writes", cmd));
  });
}

}  // namespace hamdb::tools
