// hamdb bench filter: filtered k-NN latency against unfiltered, by
// selectivity, on clustered codes with labels that are independent of the
// codes or equal to each code's centre. The label is an indexed field
// (collection/field_index.h); each filter is "label in a set of labels"
// chosen to match a given share of the items. Three ways, in one run on the
// same index and queries: the index filtering as it goes, a scan of the
// label's posting lists, and the plan a collection makes (SearchFiltered
// with the collection's default FilterPlanning); the last two once per
// posting block size asked for (--block-items).
#include <algorithm>
#include <chrono>
#include <map>
#include <cstdio>
#include <numeric>
#include <random>

#include "collection/filter.h"
#include "collection/live_collection.h"
#include "core/binary_code.h"
#include "index/index_factory.h"
#include "index/scan.h"
#include "index/synthetic.h"
#include "tools/bench/bench_report.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace hamdb::tools {

namespace {

struct BenchFilterArgs {
  uint64_t n = 10000000;
  int bits = 64;
  std::string spec = "MIH";
  size_t labels = 1000;
  size_t queries = 200;
  size_t index_queries = 30;
  size_t k = 10;
  int threads = 1;
  double flip_prob = 0.03;
  std::vector<double> selectivities = {50, 10, 1, 0.1};
  std::vector<std::string> cases = {"independent", "correlated"};
  std::vector<size_t> block_items = {FieldIndex::kDefaultBlockItems};
  std::string out;
  uint64_t seed = 1;
};

struct Latency {
  double median_ms = 0, p90_ms = 0;
};

Latency Summarise(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  Latency l;
  if (ms.empty()) return l;
  l.median_ms = ms[ms.size() / 2];
  l.p90_ms = ms[std::min(ms.size() - 1, ms.size() * 9 / 10)];
  return l;
}

// Runs `search` once per query and returns the latencies; fails the bench
// on an error.
template <typename Search>
StatusOr<std::vector<double>> Time(size_t nq, Search&& search) {
  std::vector<double> ms;
  for (size_t q = 0; q < nq; ++q) {
    const auto t0 = std::chrono::steady_clock::now();
    HAMDB_RETURN_IF_ERROR(search(q));
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return ms;
}

int RunBenchFilter(const BenchFilterArgs& a, const std::string& cmdline) {
  SyntheticSpec ss;
  ss.kind = "clustered";
  ss.num_centres = a.labels;
  ss.flip_prob = a.flip_prob;
  ss.seed = a.seed;
  std::fprintf(stderr, "generating %llu clustered %d-bit codes around %zu centres...\n",
               static_cast<unsigned long long>(a.n), a.bits, a.labels);
  // The queries come from the same distribution: the last codes generated.
  StatusOr<SyntheticCodes> gen = GenerateCodes(ss, a.n + a.queries, a.bits);
  if (!gen.ok()) return Fail(gen.status());
  const size_t nb = code_bytes(a.bits);
  const uint8_t* queries = gen->codes.data() + a.n * nb;
  std::vector<uint64_t> ids(a.n);
  std::iota(ids.begin(), ids.end(), uint64_t{1});

  StatusOr<std::unique_ptr<BinaryIndex>> index = MakeIndex(a.spec, a.bits);
  if (!index.ok()) return Fail(index.status());
  {
    std::fprintf(stderr, "building %s...\n", a.spec.c_str());
    const auto t0 = std::chrono::steady_clock::now();
    Status s = (*index)->Add(ids.data(), gen->codes.data(), a.n);
    if (!s.ok()) return Fail(s);
    std::fprintf(stderr, "built in %.1f s\n",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  SearchParams plain;
  plain.num_threads = a.threads;
  auto unfiltered = Time(a.queries, [&](size_t q) {
    return (*index)->Search(queries + q * nb, a.k, plain).status();
  });
  if (!unfiltered.ok()) return Fail(unfiltered.status());
  const Latency base = Summarise(*unfiltered);

  const LiveCollectionOptions defaults;
  std::string table =
      "| labels | block items | selectivity | matching items | unfiltered ms | index filters ms | posting scan ms "
      "| planned ms | planned paths (share of queries) | planned / unfiltered | p90 ms: unfiltered, planned |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|\n";
  std::mt19937_64 rng(a.seed + 7);
  for (const std::string& labels_case : a.cases) {
    if (labels_case != "independent" && labels_case != "correlated") {
      return Fail(Status::InvalidArgument("--cases: independent or correlated, not " + labels_case));
    }
    std::vector<int64_t> item_labels(a.n);
    for (uint64_t i = 0; i < a.n; ++i) {
      item_labels[i] = labels_case == "correlated" ? static_cast<int64_t>(gen->centres[i])
                                                   : static_cast<int64_t>(rng() % a.labels);
    }
    // The field index of the labels, once per posting block size.
    std::vector<std::shared_ptr<FieldIndex>> fields_by_block;
    for (size_t block : a.block_items) {
      auto fields = std::make_shared<FieldIndex>(std::vector<std::string>{"label"}, nb, block);
      Progress progress("label index (" + labels_case + ", blocks of " + std::to_string(block) + ")", a.n,
                        "items");
      for (uint64_t i = 0; i < a.n; ++i) {
        fields->Set(ids[i], gen->codes.data() + i * nb, kNoScore, item_labels[i], "");
        if (i % 1000000 == 999999) progress.Add(1000000);
      }
      progress.Finish();
      fields_by_block.push_back(std::move(fields));
    }
    const ItemReader no_items = [](uint64_t id) -> StatusOr<Item> {
      return Status::NotFound("item " + std::to_string(id) + " has no stored record in this benchmark");
    };
    for (double sel : a.selectivities) {
      // The first labels of a random order, as many as the share asks.
      const size_t want = std::max<size_t>(1, static_cast<size_t>(a.labels * sel / 100.0 + 0.5));
      std::vector<int64_t> order(a.labels);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      std::string text = "{\"field\": \"label\", \"in\": [";
      for (size_t i = 0; i < want; ++i) text += (i ? "," : "") + std::to_string(order[i]);
      text += "]}";
      StatusOr<ItemFilter> f = ItemFilter::Parse(text);
      if (!f.ok()) return Fail(f.status());
      // The index filtering as it goes (the same for every block size) can
      // take seconds a query: fewer.
      StatusOr<std::vector<double>> by_index = [&] {
        StoreFilter filter(&*f, fields_by_block[0], no_items);
        SearchParams p = plain;
        p.filter = &filter;
        return Time(std::min(a.queries, a.index_queries), [&](size_t q) {
          return (*index)->Search(queries + q * nb, a.k, p).status();
        });
      }();
      if (!by_index.ok()) return Fail(by_index.status());
      for (size_t bi = 0; bi < a.block_items.size(); ++bi) {
        StoreFilter filter(&*f, fields_by_block[bi], no_items);
        SearchParams p = plain;
        p.filter = &filter;
        FilterPlanning forced;  // the posting lists, whatever their size
        forced.posting_fraction = 1;
        forced.overfetch = 0;
        auto postings = Time(a.queries, [&](size_t q) -> Status {
          FilterPath path;
          Status st = SearchFiltered(**index, queries + q * nb, a.k, 0, false, p, forced, &path).status();
          if (st.ok() && path != FilterPath::kPostings) return Status::Internal("the posting scan did not run");
          return st;
        });
        if (!postings.ok()) return Fail(postings.status());
        std::map<std::string, size_t> paths;
        auto planned = Time(a.queries, [&](size_t q) -> Status {
          FilterPath path;
          Status st = SearchFiltered(**index, queries + q * nb, a.k, 0, false, p, defaults.filter_planning,
                                     &path).status();
          ++paths[FilterPathName(path)];
          return st;
        });
        if (!planned.ok()) return Fail(planned.status());
        std::string took;
        for (const auto& [name, count] : paths) {
          took += (took.empty() ? "" : ", ") + name + " " + std::to_string(count * 100 / a.queries) + "%";
        }
        const Latency li = Summarise(*by_index), ls = Summarise(*postings), lr = Summarise(*planned);
        char row[640];
        std::snprintf(row, sizeof row,
                      "| %s | %zu | %g%% | %llu | %.3f | %.3f | %.3f | %.3f | %s | %.2fx | %.3f, %.3f |\n",
                      labels_case.c_str(), a.block_items[bi], sel,
                      static_cast<unsigned long long>(filter.MatchBound()),
                      base.median_ms, li.median_ms, ls.median_ms, lr.median_ms, took.c_str(),
                      lr.median_ms / std::max(base.median_ms, 1e-9), base.p90_ms, lr.p90_ms);
        EmitRow(&table, row);
      }
    }
  }
  char flip[32];
  std::snprintf(flip, sizeof flip, "%g", a.flip_prob);
  const std::string note =
      "\n\n" + std::to_string(a.n) + " x " + std::to_string(a.bits) + "-bit clustered codes (" +
      std::to_string(a.labels) + " centres, flip " + flip + "), " +
      std::to_string(a.queries) + " queries (index filters: " +
      std::to_string(std::min(a.queries, a.index_queries)) + "), k=" + std::to_string(a.k) + ", " + a.spec + ", " +
      std::to_string(a.threads) + " search thread(s); medians of per-query latency.";
  Status s = FinishBenchTable(a.out, cmdline, table, note);
  return s.ok() ? 0 : Fail(s);
}

}  // namespace

void AddBenchFilterCommand(CLI::App* bench, int* exit_code) {
  auto a = std::make_shared<BenchFilterArgs>();
  CLI::App* cmd = bench->add_subcommand(
      "filter", "Filtered k-NN latency against unfiltered, by selectivity, with an indexed label field");
  cmd->add_option("--n", a->n, "Number of codes")->capture_default_str();
  cmd->add_option("--bits", a->bits, "Code length in bits")->capture_default_str();
  cmd->add_option("--spec", a->spec, "Index spec")->capture_default_str();
  cmd->add_option("--labels", a->labels, "Labels (and cluster centres)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--queries", a->queries, "Queries per measurement")->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--index-queries", a->index_queries,
                  "Queries for the index-filters column (the slowest)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--k", a->k, "Neighbours per query")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--threads", a->threads, "Search threads per query")->capture_default_str();
  cmd->add_option("--flip-prob", a->flip_prob, "Per-bit noise around the centres")->capture_default_str();
  cmd->add_option("--selectivities", a->selectivities, "Shares of items the filter matches, in percent")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--cases", a->cases, "independent (labels at random) and/or correlated (label = centre)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--block-items", a->block_items,
                  "Items per sealed posting block of the label index; several to compare them")
      ->delimiter(',')
      ->check(CLI::Range(size_t{1}, FieldIndex::kMaxBlockItems))
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Append the markdown table to this file");
  cmd->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  cmd->callback([a, exit_code, cmd] {
    *exit_code = RunBenchFilter(*a, CommandLine("hamdb bench filter", cmd));
  });
}

}  // namespace hamdb::tools
