// hamdb search: exact k-NN or radius search of a stored collection, and
// hamdb generate: synthetic code files.
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "collection/filter.h"
#include "collection/live_collection.h"
#include "core/binary_code.h"
#include "index/synthetic.h"
#include "tools/cli_common.h"
#include "tools/codes_io.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace hamdb::tools {

namespace {

struct SearchArgs {
  std::string db, collection, code, index_spec, tie_break, filter;
  int64_t id = -1;
  size_t k = 10;
  int64_t radius = -1;
  bool json = false;
};

int RunSearch(const SearchArgs& a) {
  auto store = OpenStore(a.db, false);
  if (!store.ok()) return Fail(store.status());
  auto info = (*store)->GetCollection(a.collection);
  if (!info.ok()) return Fail(info.status());

  std::vector<uint8_t> query;
  if (!a.code.empty()) {
    auto q = ParseCode(a.code, info->bits);
    if (!q.ok()) return Fail(q.status().WithContext("--code"));
    query = std::move(q).value();
  } else {
    auto item = (*store)->Get(a.collection, static_cast<uint64_t>(a.id));
    if (!item.ok()) return Fail(item.status().WithContext("--id"));
    query = item->code;
  }

  LiveCollectionOptions opts;
  opts.index_spec = a.index_spec;
  std::unique_ptr<Progress> progress;
  opts.progress = [&](uint64_t done, uint64_t total) {
    if (!progress) progress = std::make_unique<Progress>("index " + a.collection, total, "codes");
    progress->Add(done - progress->done());
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto live = LiveCollection::Open(store->get(), a.collection, opts);
  if (progress) progress->Finish();
  if (!live.ok()) return Fail(live.status());
  if ((*live)->degraded()) {
    std::fprintf(stderr, "warning: the index could not be built, searching by a scan of the store: %s\n",
                 (*live)->health().reason.c_str());
  }
  const double build_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  SearchParams p;
  p.tie_break = (*live)->default_tie_break();
  if (!a.tie_break.empty()) {
    auto tie = ParseTieBreak(a.tie_break);
    if (!tie.ok()) return Fail(tie.status().WithContext("--tie-break"));
    p.tie_break = *tie;
  }
  std::optional<ItemFilter> filter;
  std::optional<StoreFilter> store_filter;
  if (!a.filter.empty()) {
    auto f = ItemFilter::Parse(a.filter);
    if (!f.ok()) return Fail(f.status().WithContext("--filter"));
    filter = std::move(f).value();
    store_filter.emplace(live->get(), &*filter);
    p.filter = &*store_filter;
  }
  const auto t1 = std::chrono::steady_clock::now();
  StatusOr<SearchResult> r =
      a.radius >= 0 ? (*live)->RangeSearch(query.data(), static_cast<uint32_t>(a.radius), p)
                    : (*live)->Search(query.data(), a.k, p);
  const double query_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  if (!r.ok()) return Fail(r.status());

  if (a.json) {
    nlohmann::json j = {{"collection", a.collection},
                        {"index", (*live)->spec().spec},
                        {"exact", r->exact},
                        {"tie_break", TieBreakName(p.tie_break)},
                        {"took_ms", query_ms},
                        {"results", nlohmann::json::array()}};
    for (const Neighbor& nb : r->neighbors) {
      nlohmann::json row = {{"id", nb.id}, {"distance", nb.distance}};
      if (nb.score != kNoScore) row["score"] = ScoreOfKey(nb.score);
      j["results"].push_back(std::move(row));
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("collection '%s': %zu items, index %s built in %.2fs; query %.3f ms, %s, ties by %s\n",
              a.collection.c_str(), (*live)->index_size(), (*live)->spec().spec.c_str(),
              build_s, query_ms, r->exact ? "exact" : "approximate", TieBreakName(p.tie_break));
  std::printf("%5s %20s %8s %10s  %s\n", "rank", "id", "distance", "score", "code");
  for (size_t i = 0; i < r->neighbors.size(); ++i) {
    const Neighbor& nb = r->neighbors[i];
    auto item = (*store)->Get(a.collection, nb.id);
    std::string code = item.ok() ? FormatHex(item->code.data(), info->bits) : "?";
    std::string extra;
    if (item.ok() && item->label) extra = "  label=" + std::to_string(*item->label);
    const std::string score =
        nb.score != kNoScore ? std::to_string(ScoreOfKey(nb.score)) : std::string("-");
    std::printf("%5zu %20llu %8u %10s  %s%s\n", i + 1, static_cast<unsigned long long>(nb.id),
                nb.distance, score.c_str(), code.c_str(), extra.c_str());
  }
  return 0;
}

struct GenerateArgs {
  SyntheticSpec spec;
  size_t n = 100000;
  int bits = 64;
  std::string out;
};

int RunGenerate(const GenerateArgs& a) {
  auto codes = GenerateCodes(a.spec, a.n, a.bits);
  if (!codes.ok()) return Fail(codes.status());
  const size_t nb = code_bytes(a.bits);
  const bool npy = a.out.size() >= 4 && a.out.compare(a.out.size() - 4, 4, ".npy") == 0;
  if (npy) {
    Status s = WriteNpyU8(a.out, codes->codes.data(), a.n, nb);
    if (!s.ok()) return Fail(s);
  } else {
    std::ofstream f(a.out);
    if (!f) return Fail(Status::IOError("cannot create '" + a.out + "'"));
    for (size_t i = 0; i < a.n; ++i) f << FormatHex(&codes->codes[i * nb], a.bits) << '\n';
    if (!f) return Fail(Status::IOError("writing '" + a.out + "' failed"));
  }
  std::printf("wrote %zu %s %d-bit codes to %s\n", a.n, a.spec.kind.c_str(), a.bits, a.out.c_str());
  return 0;
}

}  // namespace

void AddSearchCommands(CLI::App* app, int* exit_code) {
  auto a = std::make_shared<SearchArgs>();
  CLI::App* cmd = app->add_subcommand(
      "search", "Exact k-NN (or radius) search of a collection by code or by a stored item's id. "
                "Builds the collection's index from the store first (the server keeps it live)");
  AddDbOption(cmd, &a->db);
  cmd->add_option("-c,--collection", a->collection, "Collection name")->required();
  auto* code = cmd->add_option("--code", a->code, "Query code, hex or '0'/'1' bit string");
  auto* id = cmd->add_option("--id", a->id, "Use the code of this stored item as the query");
  code->excludes(id);
  cmd->add_option("-k,--k", a->k, "Number of neighbours")
      ->check(CLI::Range(size_t{1}, size_t{1} << 32))
      ->capture_default_str();
  cmd->add_option("--radius", a->radius, "Radius search instead: all items with distance <= R")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--index", a->index_spec, "Index spec override: Flat, MIH, MIH<m>");
  cmd->add_option("--tie-break", a->tie_break,
                  "Order of equal distances: id, or score (higher first, unscored last); "
                  "default: the collection's")
      ->check(CLI::IsMember({"id", "score"}));
  cmd->add_option("--filter", a->filter,
                  "Only items matching this JSON filter, e.g. '{\"field\": \"label\", \"eq\": 8}' "
                  "(docs/api.md#filtered-search); needs a Flat, MIH, Bucket or IVF index");
  cmd->add_flag("--json", a->json, "Print JSON instead of a table");
  cmd->callback([a, exit_code, code, id] {
    if (code->count() == 0 && id->count() == 0) {
      *exit_code = Fail(Status::InvalidArgument("give a query: --code HEX or --id ID"));
      return;
    }
    *exit_code = RunSearch(*a);
  });

  auto g = std::make_shared<GenerateArgs>();
  CLI::App* gen = app->add_subcommand(
      "generate", "Write synthetic codes: a packed uint8 .npy, or hex lines for other extensions");
  gen->add_option("--n", g->n, "Number of codes")->capture_default_str();
  gen->add_option("--bits", g->bits, "Code length")->capture_default_str();
  gen->add_option("--kind", g->spec.kind, "uniform or clustered")
      ->check(CLI::IsMember({"uniform", "clustered"}))
      ->capture_default_str();
  gen->add_option("--centres", g->spec.num_centres, "clustered: number of centre codes")
      ->capture_default_str();
  gen->add_option("--flip", g->spec.flip_prob, "clustered: per-bit flip probability")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  gen->add_option("--seed", g->spec.seed, "Random seed")->capture_default_str();
  gen->add_option("-o,--out", g->out, "Output file (.npy or text)")->required();
  gen->callback([g, exit_code] { *exit_code = RunGenerate(*g); });
}

}  // namespace hamdb::tools
