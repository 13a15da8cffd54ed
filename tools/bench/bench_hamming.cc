// hamdb bench hamming: single-thread throughput of every Hamming kernel.
#include <chrono>
#include <fstream>
#include <random>

#include "core/binary_code.h"
#include "core/hamming.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace hamdb::tools {

namespace {

struct BenchHammingArgs {
  std::vector<int> bits = {64, 96, 128, 256, 512, 1024};
  size_t n = 1000000;
  int reps = 5;
  std::string out;
};

int RunBenchHamming(const BenchHammingArgs& a) {
  std::string table =
      "| bits | bytes | kernel | isa | ns/code (median) | GB/s | speed-up vs generic |\n"
      "|---:|---:|---|---|---:|---:|---:|\n";
  std::mt19937_64 rng(1);
  for (int bits : a.bits) {
    if (!ValidateCodeBits(bits).ok()) return Fail(ValidateCodeBits(bits));
    const size_t nb = code_bytes(bits);
    std::vector<uint8_t> db(a.n * nb), q(nb);
    for (auto& b : db) b = rng() & 0xff;
    for (auto& b : q) b = rng() & 0xff;
    std::vector<uint16_t> out(a.n);
    double generic_ns = 0;
    for (HammingIsa isa :
         {HammingIsa::kGeneric, HammingIsa::kPopcnt, HammingIsa::kAvx2, HammingIsa::kAvx512}) {
      if (!HammingIsaSupported(isa)) continue;
      const HammingKernel k = SelectHammingKernel(nb, isa);
      if (k.isa != isa) continue;  // the same kernel as a row above
      std::vector<double> times;
      uint64_t sink = 0;
      for (int r = 0; r < a.reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        k.distances(q.data(), db.data(), a.n, nb, out.data());
        times.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count());
        sink += out[r % a.n];
      }
      std::sort(times.begin(), times.end());
      const double ns = times[times.size() / 2] / a.n;
      if (isa == HammingIsa::kGeneric) generic_ns = ns;
      char row[200];
      std::snprintf(row, sizeof row, "| %d | %zu | %s | %s | %.2f | %.1f | %.2fx |\n", bits, nb,
                    k.specialised_bytes ? ("fixed " + std::to_string(k.specialised_bytes)).c_str()
                                        : "generic",
                    HammingIsaName(isa), ns, nb / ns, generic_ns / ns);
      table += row;
      if (sink == 42) std::fprintf(stderr, " ");  // keep the results alive
    }
  }
  std::printf("%s", table.c_str());
  if (!a.out.empty()) {
    std::ofstream f(a.out, std::ios::app);
    f << table;
  }
  return 0;
}

}  // namespace

void AddBenchHammingCommand(CLI::App* bench, int* exit_code) {
  auto a = std::make_shared<BenchHammingArgs>();
  CLI::App* cmd = bench->add_subcommand(
      "hamming", "Single-thread throughput of each Hamming kernel (size x instruction set)");
  cmd->add_option("--bits", a->bits, "Code lengths")->delimiter(',')->capture_default_str();
  cmd->add_option("--n", a->n, "Codes scanned per repetition")->capture_default_str();
  cmd->add_option("--reps", a->reps, "Repetitions (the median is reported)")->capture_default_str();
  cmd->add_option("--out", a->out, "Append the markdown table to this file");
  cmd->callback([a, exit_code] { *exit_code = RunBenchHamming(*a); });
}

}  // namespace hamdb::tools
