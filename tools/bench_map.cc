// hamdb bench map: retrieval quality (MAP@k and friends) of binary codes.
//
// Scores query codes against database codes with labels (index/eval/
// retrieval_metrics.h): corrected MAP@k, the HashNet-copied formula labelled
// as such, precision@k, precision within a Hamming radius and the PR curve.
// Codes may come from anywhere (for example the reference HashNet or
// GreedyHash implementations): .npy files of packed uint8 codes
// (numpy.packbits(bitorder='little')) or of float codes (+-1, or any real
// values: bit = value > 0). Labels: 1-D integer .npy, or 2-D one-hot.
//
// --ranker index runs the ranking through an exact MIH index instead of a
// full sort, and --ranker both checks that the two give identical numbers.
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "index/core/binary_code.h"
#include "index/eval/retrieval_metrics.h"
#include "tools/cli_common.h"
#include "tools/codes_io.h"
#include "tools/commands.h"

namespace hamdb::tools {

namespace {

struct NpyArray {
  NpyHeader header;
  std::vector<char> data;
};

StatusOr<NpyArray> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open '" + path + "'");
  NpyArray a;
  HAMDB_ASSIGN_OR_RETURN(a.header, ReadNpyHeader(in, path));
  if (a.header.fortran_order) return Status::InvalidArgument("'" + path + "' must be C-ordered");
  uint64_t count = 1;
  for (uint64_t d : a.header.shape) count *= d;
  static const std::regex kType("[<|]([uif])([1248])|\\|b1");
  std::smatch m;
  if (!std::regex_match(a.header.dtype, m, kType))
    return Status::InvalidArgument("'" + path + "': unsupported dtype " + a.header.dtype);
  const uint64_t width = m[2].matched ? std::stoi(m[2].str()) : 1;
  a.data.resize(count * width);
  if (!in.read(a.data.data(), a.data.size()))
    return Status::InvalidArgument("'" + path + "' is truncated");
  return a;
}

double ElementAsDouble(const NpyArray& a, uint64_t i) {
  const std::string& t = a.header.dtype;
  const char kind = t == "|b1" ? 'u' : t[1];
  const int w = t == "|b1" ? 1 : t[2] - '0';
  const char* p = a.data.data() + i * w;
  if (kind == 'f') {
    if (w == 4) { float v; std::memcpy(&v, p, 4); return v; }
    if (w == 8) { double v; std::memcpy(&v, p, 8); return v; }
    return NAN;
  }
  uint64_t u = 0;
  std::memcpy(&u, p, w);
  if (kind == 'i' && w < 8 && ((u >> (8 * w - 1)) & 1)) u |= ~uint64_t{0} << (8 * w);
  return kind == 'i' ? static_cast<double>(static_cast<int64_t>(u)) : static_cast<double>(u);
}

// Packed codes from uint8 (already packed) or float (one column per bit).
StatusOr<std::vector<uint8_t>> LoadCodes(const std::string& path, int* bits, size_t* n) {
  HAMDB_ASSIGN_OR_RETURN(NpyArray a, ReadNpy(path));
  if (a.header.shape.size() != 2) return Status::InvalidArgument("'" + path + "' must be 2-D");
  *n = a.header.shape[0];
  const uint64_t cols = a.header.shape[1];
  const std::string& t = a.header.dtype;
  std::vector<uint8_t> out;
  if (t == "|u1" || t == "<u1") {
    if (*bits == 0) *bits = static_cast<int>(cols * 8);
    if (code_bytes(*bits) != cols)
      return Status::InvalidArgument("'" + path + "': " + std::to_string(cols) +
                                     " bytes per row do not hold " + std::to_string(*bits) + " bits");
    out.assign(a.data.begin(), a.data.end());
    for (size_t i = 0; i < *n; ++i) {
      Status s = CheckPadding(out.data() + i * cols, *bits);
      if (!s.ok()) return s.WithContext(path + " row " + std::to_string(i));
    }
    return out;
  }
  if (t[1] != 'f' && t[1] != 'i')
    return Status::InvalidArgument("'" + path + "': codes must be uint8 (packed) or float/int (one column per bit)");
  if (*bits != 0 && static_cast<uint64_t>(*bits) != cols)
    return Status::InvalidArgument("'" + path + "' has " + std::to_string(cols) + " columns, not " +
                                   std::to_string(*bits));
  *bits = static_cast<int>(cols);
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(*bits));
  const size_t cb = code_bytes(*bits);
  out.assign(*n * cb, 0);
  for (size_t i = 0; i < *n; ++i)
    for (uint64_t b = 0; b < cols; ++b)
      if (ElementAsDouble(a, i * cols + b) > 0) SetBit(out.data() + i * cb, static_cast<int>(b), true);
  return out;
}

StatusOr<std::vector<int64_t>> LoadLabels(const std::string& path, size_t n) {
  HAMDB_ASSIGN_OR_RETURN(NpyArray a, ReadNpy(path));
  const auto& shape = a.header.shape;
  std::vector<int64_t> labels;
  if (shape.size() == 1) {
    for (uint64_t i = 0; i < shape[0]; ++i) labels.push_back(static_cast<int64_t>(ElementAsDouble(a, i)));
  } else if (shape.size() == 2) {  // one-hot
    for (uint64_t i = 0; i < shape[0]; ++i) {
      int64_t arg = -1, ones = 0;
      for (uint64_t c = 0; c < shape[1]; ++c)
        if (ElementAsDouble(a, i * shape[1] + c) > 0) { arg = static_cast<int64_t>(c); ++ones; }
      if (ones != 1)
        return Status::InvalidArgument("'" + path + "' row " + std::to_string(i) +
                                       " is not one-hot (multi-label relevance is not supported)");
      labels.push_back(arg);
    }
  } else {
    return Status::InvalidArgument("'" + path + "' must be 1-D labels or 2-D one-hot");
  }
  if (labels.size() != n)
    return Status::InvalidArgument("'" + path + "' has " + std::to_string(labels.size()) +
                                   " labels for " + std::to_string(n) + " codes");
  return labels;
}

struct MapArgs {
  std::string query_codes, db_codes, query_labels, db_labels, name = "external", ranker = "full";
  std::string out_json;
  int bits = 0;
  size_t map_at = 1000;
  uint32_t radius = 2;
  int threads = 0;
};

nlohmann::json MetricsJson(const RetrievalMetrics& m) {
  nlohmann::json j = {{"num_queries", m.num_queries},
                      {"num_database", m.num_database},
                      {"map_at", m.map_at},
                      {"map_corrected", m.map_corrected},
                      {"map_hashnet_formula", m.map_hashnet},
                      {"zero_hit_queries", m.zero_hit_queries},
                      {"precision_radius", m.precision_radius},
                      {"precision_within_radius", m.precision_within_radius},
                      {"queries_empty_within_radius", m.queries_empty_within_radius}};
  for (const auto& [k, p] : m.precision_at) j["precision_at"][std::to_string(k)] = p;
  for (const PrPoint& p : m.pr_curve)
    j["pr_curve"].push_back({{"radius", p.radius}, {"precision", p.precision}, {"recall", p.recall}});
  return j;
}

int RunBenchMap(const MapArgs& a) {
  int bits = a.bits, qbits = a.bits;
  size_t nq = 0, ndb = 0;
  auto db = LoadCodes(a.db_codes, &bits, &ndb);
  if (!db.ok()) return Fail(db.status());
  qbits = bits;
  auto q = LoadCodes(a.query_codes, &qbits, &nq);
  if (!q.ok()) return Fail(q.status());
  auto dbl = LoadLabels(a.db_labels, ndb);
  if (!dbl.ok()) return Fail(dbl.status());
  auto ql = LoadLabels(a.query_labels, nq);
  if (!ql.ok()) return Fail(ql.status());

  RetrievalEvalOptions o;
  o.map_at = a.map_at;
  o.precision_radius = a.radius;
  o.num_threads = a.threads;
  std::vector<std::pair<std::string, HammingRanker>> rankers;
  if (a.ranker == "full" || a.ranker == "both") rankers.emplace_back("full-sort", HammingRanker::kFullSort);
  if (a.ranker == "index" || a.ranker == "both") rankers.emplace_back("mih-index", HammingRanker::kIndex);
  if (rankers.empty()) return Fail(Status::InvalidArgument("--ranker must be full, index or both"));

  std::printf("# %s: %zu queries x %zu database codes, %d bits. Ties ordered by (distance, database index).\n",
              a.name.c_str(), nq, ndb, bits);
  std::printf("| ranker | MAP@%zu (corrected) | MAP@%zu (HashNet formula) | P@10 | P@100 | P@r<=%u | zero-hit queries | s |\n",
              a.map_at, a.map_at, a.radius);
  std::printf("|---|---|---|---|---|---|---|---|\n");
  nlohmann::json out = {{"name", a.name}, {"bits", bits}, {"tie_policy", "(distance, database index)"}};
  std::vector<RetrievalMetrics> results;
  for (const auto& [rname, ranker] : rankers) {
    const auto t0 = std::chrono::steady_clock::now();
    auto m = EvaluateHamming(q->data(), *ql, db->data(), *dbl, bits, o, ranker);
    if (!m.ok()) return Fail(m.status());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto p_at = [&](size_t k) -> double {
      for (const auto& [kk, p] : m->precision_at) if (kk == k) return p;
      return NAN;
    };
    std::printf("| %s | %.4f | %.4f | %.4f | %.4f | %.4f | %zu | %.1f |\n", rname.c_str(), m->map_corrected,
                m->map_hashnet, p_at(10), p_at(100), m->precision_within_radius, m->zero_hit_queries, s);
    out["rankers"][rname] = MetricsJson(*m);
    results.push_back(*m);
  }
  if (results.size() == 2) {
    const bool same = results[0].map_corrected == results[1].map_corrected &&
                      results[0].map_hashnet == results[1].map_hashnet;
    std::printf("full-sort and MIH-index MAP %s\n", same ? "are identical" : "DIFFER");
    out["rankers_identical"] = same;
    if (!same) return 2;
  }
  if (!a.out_json.empty()) {
    std::ofstream f(a.out_json);
    f << out.dump(2) << "\n";
    if (!f) return Fail(Status::IOError("cannot write " + a.out_json));
  }
  return 0;
}

}  // namespace

void AddBenchMapCommand(CLI::App* bench, int* exit_code) {
  auto a = std::make_shared<MapArgs>();
  CLI::App* cmd = bench->add_subcommand("map", "MAP@k of binary codes (.npy) against labels");
  cmd->add_option("--query-codes", a->query_codes, "Query codes (.npy: packed uint8 or float +-1)")->required();
  cmd->add_option("--db-codes", a->db_codes, "Database codes (.npy)")->required();
  cmd->add_option("--query-labels", a->query_labels, "Query labels (.npy, 1-D ints or one-hot)")->required();
  cmd->add_option("--db-labels", a->db_labels, "Database labels (.npy)")->required();
  cmd->add_option("--bits", a->bits, "Code length for packed codes (default 8 x bytes)");
  cmd->add_option("--map-at", a->map_at, "k of MAP@k")->capture_default_str();
  cmd->add_option("--radius", a->radius, "Hamming radius for precision within radius")->capture_default_str();
  cmd->add_option("--ranker", a->ranker, "full | index | both")->capture_default_str();
  cmd->add_option("--name", a->name, "Label for the output")->capture_default_str();
  cmd->add_option("--threads", a->threads, "Threads (0 = all)");
  cmd->add_option("--json", a->out_json, "Write the metrics as JSON here");
  cmd->callback([a, exit_code] { *exit_code = RunBenchMap(*a); });
}

}  // namespace hamdb::tools
