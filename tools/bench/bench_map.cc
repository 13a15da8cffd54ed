// hamdb bench map: retrieval quality (MAP@k and friends) of binary codes.
//
// Scores query codes against database codes with labels (eval/
// retrieval_metrics.h): corrected MAP@k, the HashNet-copied formula labelled
// as such, precision@k, precision within a Hamming radius and the PR curve.
// Codes may come from anywhere (for example the reference HashNet or
// GreedyHash implementations): .npy files of packed uint8 codes
// (numpy.packbits(bitorder='little')) or of float codes (+-1, or any real
// values: bit = value > 0). Labels: 1-D integer .npy, or 2-D one-hot.
//
// --ranker index runs the ranking through an exact MIH index instead of a
// full sort, and --ranker both checks that the two give identical numbers.
//
// Tie rules: every Hamming ranking is scored under tie_break "id" (distance,
// database index) and, where the items have scores, "score" (distance,
// -score key, index: the product's rule, core/score.h, on the same 16-bit
// keys). External mode takes the scores from --db-scores; training mode uses
// each method's own (LLC: its encoder's score; GreedyHash, DSNC, HashNet:
// HashingModel::Scores; the float baseline: not applicable).
//
// Training mode (--dataset fashion-mnist): trains every (method, bits, seed)
// of --methods (llc, hashnet, greedyhash, dsnc, float; see
// eval/hashing_methods.h) on the same backbone, optimiser, batch size and
// epoch budget (--epochs = LLC phase 1 + phase 2 = every other method's
// epochs), encodes the database (train split) and the queries (test split),
// scores them as above (the float baseline by cosine over its real-valued
// features) and prints mean +- std over seeds. --out-json / --out-csv keep
// every run; --out-csv is written run by run, and --resume skips the runs
// it already holds, so a long protocol can stop and go on later.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "encoder/dataset.h"
#include "eval/hashing_methods.h"
#include "encoder/trainer.h"
#include "core/binary_code.h"
#include "core/score.h"
#include "eval/retrieval_metrics.h"
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
  std::string db_scores;  // external mode: 1-D float .npy, one score per database row
  std::string out_json;
  std::vector<int> bits_list;  // external mode: at most one value (0/empty: from the data)
  int bits = 0;
  size_t map_at = 1000;
  uint32_t radius = 2;
  int threads = 0;

  // Training mode.
  std::string dataset;  // "fashion-mnist"; empty: external codes
  std::string data_dir = kDefaultFashionMnistDir;
  std::string methods = "llc,hashnet,greedyhash,dsnc,float";
  int seeds = 1;
  uint64_t first_seed = 1;
  int epochs = 4;
  size_t limit_train = 0, limit_db = 0, limit_queries = 0;
  int cnn_width = 16, feature_dim = 128, batch_size = 128;
  double lr = 2e-3;
  std::string out_csv;
  bool resume = false;
  double snap_margin = TrainConfig{}.snap_margin;  // LLC's artifact setting
  size_t rerank = 0;  // LLC: also re-rank a Hamming shortlist of this many by bit probabilities
};

// The ranking options of a tie rule: keys from `scores` (one per database
// item) for kScore.
RetrievalEvalOptions WithTieBreak(RetrievalEvalOptions o, TieBreak tie,
                                  const std::vector<float>& scores) {
  o.tie_break = tie;
  o.db_score_keys.clear();
  if (tie == TieBreak::kScore) {
    o.db_score_keys.reserve(scores.size());
    for (float s : scores) o.db_score_keys.push_back(ScoreKey(s));
  }
  return o;
}

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
  std::vector<float> db_scores;
  if (!a.db_scores.empty()) {
    auto read = ReadNpyScores(a.db_scores, ndb);
    if (!read.ok()) return Fail(read.status().WithContext("--db-scores"));
    db_scores = std::move(read).value();
  }

  RetrievalEvalOptions o;
  o.map_at = a.map_at;
  o.precision_radius = a.radius;
  o.num_threads = a.threads;
  std::vector<std::pair<std::string, HammingRanker>> rankers;
  if (a.ranker == "full" || a.ranker == "both") rankers.emplace_back("full-sort", HammingRanker::kFullSort);
  if (a.ranker == "index" || a.ranker == "both") rankers.emplace_back("mih-index", HammingRanker::kIndex);
  if (rankers.empty()) return Fail(Status::InvalidArgument("--ranker must be full, index or both"));

  std::vector<TieBreak> ties = {TieBreak::kId};
  if (!db_scores.empty()) ties.push_back(TieBreak::kScore);
  std::printf("# %s: %zu queries x %zu database codes, %d bits. tie_break id: (distance, database index); "
              "score: (distance, -score, index)%s.\n",
              a.name.c_str(), nq, ndb, bits, db_scores.empty() ? " (no --db-scores: not run)" : "");
  std::printf("| ranker | tie_break | MAP@%zu (corrected) | MAP@%zu (HashNet formula) | P@10 | P@100 | P@1000 | P@r<=%u | zero-hit queries | s |\n",
              a.map_at, a.map_at, a.radius);
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  nlohmann::json out = {{"name", a.name}, {"bits", bits}};
  std::vector<RetrievalMetrics> results;
  for (TieBreak tie : ties)
  for (const auto& [rname, ranker] : rankers) {
    const auto t0 = std::chrono::steady_clock::now();
    auto m = EvaluateHamming(q->data(), *ql, db->data(), *dbl, bits, WithTieBreak(o, tie, db_scores), ranker);
    if (!m.ok()) return Fail(m.status());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto p_at = [&](size_t k) -> double {
      for (const auto& [kk, p] : m->precision_at) if (kk == k) return p;
      return NAN;
    };
    std::printf("| %s | %s | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %zu | %.1f |\n", rname.c_str(),
                TieBreakName(tie), m->map_corrected, m->map_hashnet, p_at(10), p_at(100), p_at(1000),
                m->precision_within_radius, m->zero_hit_queries, s);
    out["tie_break"][TieBreakName(tie)]["rankers"][rname] = MetricsJson(*m);
    results.push_back(*m);
  }
  if (rankers.size() == 2) {
    bool same = true;
    for (size_t i = 0; i + 1 < results.size(); i += 2) {
      same = same && results[i].map_corrected == results[i + 1].map_corrected &&
             results[i].map_hashnet == results[i + 1].map_hashnet;
    }
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

// ------------------------------------------------------------ training mode

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    const size_t e = std::min(s.find(',', b), s.size());
    if (e > b) out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

LabeledImages Slice(const LabeledImages& d, size_t n) {
  LabeledImages out;
  n = std::min(n, d.size());
  out.images.assign(d.images.begin(), d.images.begin() + n);
  out.labels.assign(d.labels.begin(), d.labels.begin() + n);
  out.class_names = d.class_names;
  return out;
}

struct RunResult {
  std::string method;
  int bits = 0;
  uint64_t seed = 0;
  std::string error;  // non-empty: training or scoring failed
  RetrievalMetrics m;        // tie_break id
  bool has_score = false;    // the method scores its items (not the float baseline)
  RetrievalMetrics m_score;  // tie_break score
  bool resumed = false;      // read back from --out-csv, not run now
  bool has_rerank = false;   // --rerank: LLC's shortlist re-ranked by bit probabilities
  RetrievalMetrics m_rerank;
  double train_seconds = 0, encode_seconds = 0, eval_seconds = 0;
  double train_accuracy = -1;
  std::vector<double> epoch_loss;
  bool rankers_checked = false, rankers_identical = true;
};

double PrecisionAt(const RetrievalMetrics& m, size_t k) {
  for (const auto& [kk, p] : m.precision_at)
    if (kk == k) return p;
  return NAN;
}

// LLC codes and (optional) scores, the encoder's own as ingest stores them,
// and (optional) bit probabilities, bits per image.
StatusOr<std::vector<uint8_t>> LlcCodes(const Encoder& enc, const std::vector<Image>& images,
                                        std::vector<float>* scores = nullptr,
                                        std::vector<float>* probs = nullptr) {
  std::vector<uint8_t> out;
  out.reserve(images.size() * code_bytes(enc.bits()));
  for (size_t s = 0; s < images.size(); s += 1024) {
    const std::vector<Image> batch(images.begin() + s, images.begin() + std::min(images.size(), s + 1024));
    HAMDB_ASSIGN_OR_RETURN(std::vector<EncodedImage> r, enc.Encode(batch));
    for (const EncodedImage& e : r) {
      out.insert(out.end(), e.code.begin(), e.code.end());
      if (scores) scores->push_back(e.score);
      if (probs) probs->insert(probs->end(), e.bit_probs.begin(), e.bit_probs.end());
    }
  }
  return out;
}

// Trains and scores one (method, bits, seed).
Status RunOne(const MapArgs& a, const std::string& method, int bits, uint64_t seed, const LabeledImages& train,
              const LabeledImages& db, const LabeledImages& queries, const std::vector<int64_t>& dbl,
              const std::vector<int64_t>& ql, RunResult* r) {
  TrainConfig c;
  c.bits = bits;
  c.cnn_width = a.cnn_width;
  c.feature_dim = a.feature_dim;
  c.batch_size = a.batch_size;
  c.lr = a.lr;
  c.snap_margin = a.snap_margin;
  c.seed = seed;
  c.threads = a.threads;
  c.phase1_epochs = std::max(1, (a.epochs + 1) / 2);
  c.phase2_epochs = a.epochs - c.phase1_epochs;
  c.progress = [&](const std::string& line) {
    std::fprintf(stderr, "  [%s %d bits seed %llu] %s\n", method.c_str(), bits, static_cast<unsigned long long>(seed),
                 line.c_str());
  };
  c.progress_every = 0;
  RetrievalEvalOptions o;
  o.map_at = a.map_at;
  o.precision_radius = a.radius;
  o.num_threads = a.threads;
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };

  std::vector<uint8_t> dbc, qc;
  std::vector<float> db_scores, db_probs, q_probs;
  if (method == "llc") {
    TrainReport rep;
    HAMDB_ASSIGN_OR_RETURN(std::unique_ptr<Encoder> enc, TrainLlc(train, nullptr, c, &rep));
    r->train_seconds = rep.seconds;
    r->epoch_loss = rep.epoch_loss;
    r->train_accuracy = rep.phase1_train_accuracy;
    const auto t0 = Clock::now();
    HAMDB_ASSIGN_OR_RETURN(dbc, LlcCodes(*enc, db.images, &db_scores, a.rerank ? &db_probs : nullptr));
    HAMDB_ASSIGN_OR_RETURN(qc, LlcCodes(*enc, queries.images, nullptr, a.rerank ? &q_probs : nullptr));
    r->encode_seconds = since(t0);
  } else {
    HAMDB_ASSIGN_OR_RETURN(HashingMethod hm, ParseHashingMethod(method));
    HashingReport rep;
    HAMDB_ASSIGN_OR_RETURN(std::unique_ptr<HashingModel> model, TrainHashingMethod(hm, train, c, &rep));
    r->train_seconds = rep.seconds;
    r->epoch_loss = rep.epoch_loss;
    r->train_accuracy = rep.train_accuracy;
    const auto t0 = Clock::now();
    if (hm == HashingMethod::kFloat) {
      HAMDB_ASSIGN_OR_RETURN(std::vector<float> dbf, model->Features(db.images));
      HAMDB_ASSIGN_OR_RETURN(std::vector<float> qf, model->Features(queries.images));
      r->encode_seconds = since(t0);
      const auto t1 = Clock::now();
      HAMDB_ASSIGN_OR_RETURN(auto ranked, CosineTopK(qf, dbf, bits, a.map_at));
      HAMDB_ASSIGN_OR_RETURN(r->m, EvaluateRankedLists(ranked, ql, dbl, o));
      r->eval_seconds = since(t1);
      return Status::OK();
    }
    HAMDB_ASSIGN_OR_RETURN(dbc, model->Codes(db.images));
    HAMDB_ASSIGN_OR_RETURN(db_scores, model->Scores(db.images));
    HAMDB_ASSIGN_OR_RETURN(qc, model->Codes(queries.images));
    r->encode_seconds = since(t0);
  }
  const auto t1 = Clock::now();
  r->has_score = true;
  for (TieBreak tie : {TieBreak::kId, TieBreak::kScore}) {
    const RetrievalEvalOptions ot = WithTieBreak(o, tie, db_scores);
    RetrievalMetrics& m = tie == TieBreak::kId ? r->m : r->m_score;
    if (a.ranker != "index") {
      HAMDB_ASSIGN_OR_RETURN(m, EvaluateHamming(qc.data(), ql, dbc.data(), dbl, bits, ot, HammingRanker::kFullSort));
    }
    if (a.ranker != "full") {
      HAMDB_ASSIGN_OR_RETURN(RetrievalMetrics mi,
                             EvaluateHamming(qc.data(), ql, dbc.data(), dbl, bits, ot, HammingRanker::kIndex));
      if (a.ranker == "both") {
        r->rankers_checked = true;
        r->rankers_identical = r->rankers_identical && mi.map_corrected == m.map_corrected &&
                               mi.map_hashnet == m.map_hashnet;
      } else {
        m = mi;
      }
    }
  }
  if (!db_probs.empty()) {
    // The refined ranking: the score-rule shortlist of the first `rerank`
    // items re-ordered by sum_i |p_query,i - p_item,i|, the database
    // probabilities kept in 4 bits each (as an index would store them), ties
    // by shortlist rank; the rest of the list stays in Hamming order.
    const size_t depth = std::min(std::max(a.rerank, a.map_at), db.size());
    const RetrievalEvalOptions ot = WithTieBreak(o, TieBreak::kScore, db_scores);
    std::vector<uint8_t> p4(db_probs.size());
    for (size_t i = 0; i < db_probs.size(); ++i) p4[i] = static_cast<uint8_t>(std::lround(db_probs[i] * 15));
    std::vector<std::vector<uint32_t>> ranked(queries.size());
    for (size_t q = 0; q < queries.size(); ++q) {
      std::vector<uint32_t> list =
          HammingTopK(qc.data() + q * code_bytes(bits), dbc.data(), db.size(), bits, depth, ot.db_score_keys.data());
      const size_t r_n = std::min(a.rerank, list.size());
      std::vector<std::pair<float, uint32_t>> refined(r_n);
      for (size_t j = 0; j < r_n; ++j) {
        float d = 0;
        const float* pq = q_probs.data() + q * bits;
        const uint8_t* pd = p4.data() + static_cast<size_t>(list[j]) * bits;
        for (int b = 0; b < bits; ++b) d += std::fabs(pq[b] - pd[b] / 15.0f);
        refined[j] = {d, static_cast<uint32_t>(j)};
      }
      std::stable_sort(refined.begin(), refined.end(),
                       [](const auto& x, const auto& y) { return x.first < y.first; });
      std::vector<uint32_t> out;
      out.reserve(list.size());
      for (const auto& [d, j] : refined) out.push_back(list[j]);
      out.insert(out.end(), list.begin() + r_n, list.end());
      ranked[q] = std::move(out);
    }
    HAMDB_ASSIGN_OR_RETURN(r->m_rerank, EvaluateRankedLists(ranked, ql, dbl, o));
    r->has_rerank = true;
  }
  r->eval_seconds = since(t1);
  return Status::OK();
}

std::string MeanStd(const std::vector<double>& v, const char* fmt = "%.4f") {
  if (v.empty()) return "-";
  double mean = 0;
  for (double x : v) mean += x;
  mean /= v.size();
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  const double sd = v.size() > 1 ? std::sqrt(var / (v.size() - 1)) : 0;
  char m[64], s[64];
  std::snprintf(m, sizeof(m), fmt, mean);
  std::snprintf(s, sizeof(s), fmt, sd);
  return v.size() > 1 ? std::string(m) + " ± " + s : std::string(m);
}

// --out-csv: one row per (run, tie rule); the float baseline has only "id".
constexpr char kCsvHeader[] =
    "method,bits,seed,tie_break,map_corrected,map_hashnet_formula,p_at_1,p_at_10,p_at_100,p_at_1000,"
    "precision_within_radius,train_seconds,error";

std::string CsvRows(const RunResult& r) {
  std::string out;
  // The radius metric exists for Hamming rankings only (not for the float
  // baseline's cosine or the re-ranked lists).
  auto row = [&](const char* tie, const RetrievalMetrics& m, bool radius = true) {
    char buf[512];
    const bool ok = r.error.empty();
    std::snprintf(buf, sizeof(buf), "%s,%d,%llu,%s,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.1f,", r.method.c_str(),
                  r.bits, static_cast<unsigned long long>(r.seed), tie, ok ? m.map_corrected : NAN,
                  ok ? m.map_hashnet : NAN, PrecisionAt(m, 1), PrecisionAt(m, 10), PrecisionAt(m, 100),
                  PrecisionAt(m, 1000), ok && radius && r.method != "float" ? m.precision_within_radius : NAN,
                  r.train_seconds);
    std::string err = r.error;
    std::replace(err.begin(), err.end(), ',', ';');
    std::replace(err.begin(), err.end(), '\n', ' ');
    out += buf + err + "\n";
  };
  row("id", r.m);
  if (r.has_score) row("score", r.m_score);
  if (r.has_rerank) row("rerank", r.m_rerank, false);
  return out;
}

// The successful runs of an --out-csv written by CsvRows; NotFound when the
// file does not exist (nothing to resume is not an error: empty list).
StatusOr<std::vector<RunResult>> ReadCsvRuns(const std::string& path) {
  std::ifstream in(path);
  std::vector<RunResult> runs;
  if (!in) return runs;
  std::string line;
  if (!std::getline(in, line)) return runs;
  if (line != kCsvHeader) {
    return Status::InvalidArgument("'" + path + "' is not a CSV written by this version of bench map");
  }
  size_t line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) f.push_back(cell);
    if (f.size() < 12) return Status::InvalidArgument("'" + path + "' line " + std::to_string(line_no) + " is short");
    if (f.size() > 12 && !f[12].empty()) continue;  // a failed run: run it again
    RunResult* r = nullptr;
    const int bits = std::stoi(f[1]);
    const uint64_t seed = std::stoull(f[2]);
    for (RunResult& x : runs)
      if (x.method == f[0] && x.bits == bits && x.seed == seed) r = &x;
    if (r == nullptr) {
      runs.emplace_back();
      r = &runs.back();
      r->method = f[0];
      r->bits = bits;
      r->seed = seed;
      r->resumed = true;
      r->train_seconds = std::stod(f[11]);
    }
    RetrievalMetrics& m = f[3] == "score" ? r->m_score : f[3] == "rerank" ? r->m_rerank : r->m;
    if (f[3] == "score") r->has_score = true;
    if (f[3] == "rerank") r->has_rerank = true;
    m.map_corrected = std::stod(f[4]);
    m.map_hashnet = std::stod(f[5]);
    m.precision_at = {{1, std::stod(f[6])}, {10, std::stod(f[7])}, {100, std::stod(f[8])}, {1000, std::stod(f[9])}};
    m.precision_within_radius = std::stod(f[10]);
  }
  return runs;
}

int RunTrainedBenchMap(const MapArgs& a) {
  if (a.dataset != "fashion-mnist") return Fail(Status::InvalidArgument("--dataset must be fashion-mnist"));
  if (a.ranker != "full" && a.ranker != "index" && a.ranker != "both")
    return Fail(Status::InvalidArgument("--ranker must be full, index or both"));
  if (a.seeds < 1 || a.epochs < 1) return Fail(Status::InvalidArgument("--seeds and --epochs must be >= 1"));
  const std::vector<std::string> methods = SplitCommas(a.methods);
  if (methods.empty()) return Fail(Status::InvalidArgument("--methods is empty"));
  for (const std::string& m : methods)
    if (m != "llc" && !ParseHashingMethod(m).ok())
      return Fail(Status::InvalidArgument("unknown method '" + m + "' (llc, hashnet, greedyhash, dsnc, float)"));
  std::vector<int> bits_list = a.bits_list.empty() ? std::vector<int>{16, 32} : a.bits_list;
  for (int b : bits_list)
    if (b < 1 || b > 4096) return Fail(Status::InvalidArgument("--bits values must be in [1, 4096]"));

  // Database = the train split (--limit-db), training set = its first
  // --limit-train images, queries = the test split (--limit-queries).
  const size_t load = a.limit_db == 0 || a.limit_train == 0 ? 0 : std::max(a.limit_db, a.limit_train);
  auto all_train = LoadFashionMnist(a.data_dir, "train", load);
  if (!all_train.ok()) return Fail(all_train.status());
  auto queries = LoadFashionMnist(a.data_dir, "test", a.limit_queries);
  if (!queries.ok()) return Fail(queries.status());
  const LabeledImages train = Slice(*all_train, a.limit_train == 0 ? all_train->size() : a.limit_train);
  const LabeledImages db = Slice(*all_train, a.limit_db == 0 ? all_train->size() : a.limit_db);
  const std::vector<int64_t> dbl(db.labels.begin(), db.labels.end());
  const std::vector<int64_t> ql(queries->labels.begin(), queries->labels.end());
  const int p1 = std::max(1, (a.epochs + 1) / 2);

  std::printf("# hamdb bench map (training mode): Fashion-MNIST, database %zu train-split images, %zu test-split "
              "queries, trained on the first %zu train images\n",
              db.size(), queries->size(), train.size());
  std::printf("# backbone: built-in CNN (width %d, feature_dim %d) + linear projection to `bits`, the same for every "
              "method; Adam lr %g, cosine decay, batch %d, %d epochs each (LLC: %d phase 1 + %d phase 2); seeds %llu..%llu\n",
              a.cnn_width, a.feature_dim, a.lr, a.batch_size, a.epochs, p1, a.epochs - p1,
              static_cast<unsigned long long>(a.first_seed),
              static_cast<unsigned long long>(a.first_seed + a.seeds - 1));
  std::printf("# Hamming ties: tie_break id = (distance, database index), tie_break score = (distance, -score, "
              "index) with each method's own scores; float baseline: cosine over the projection output, ties by "
              "(similarity, index); ranker: %s\n",
              a.ranker.c_str());
  std::fflush(stdout);

  // Runs already in --out-csv (--resume) are not run again.
  std::vector<RunResult> runs;
  if (a.resume && !a.out_csv.empty()) {
    auto done = ReadCsvRuns(a.out_csv);
    if (!done.ok()) return Fail(done.status().WithContext("--resume"));
    runs = std::move(done).value();
    std::fprintf(stderr, "resuming: %zu runs already in %s\n", runs.size(), a.out_csv.c_str());
  }
  std::ofstream csv;
  if (!a.out_csv.empty()) {
    const bool fresh = !a.resume || runs.empty();
    csv.open(a.out_csv, fresh ? std::ios::trunc : std::ios::app);
    if (!csv) return Fail(Status::IOError("cannot write " + a.out_csv));
    if (fresh) csv << kCsvHeader << "\n" << std::flush;
  }
  auto have = [&](const std::string& method, int bits, uint64_t seed) {
    return std::any_of(runs.begin(), runs.end(), [&](const RunResult& r) {
      return r.method == method && r.bits == bits && r.seed == seed && r.error.empty();
    });
  };
  bool mismatch = false;
  for (int bits : bits_list) {
    for (const std::string& method : methods) {
      for (int s = 0; s < a.seeds; ++s) {
        if (have(method, bits, a.first_seed + s)) continue;
        RunResult r;
        r.method = method;
        r.bits = bits;
        r.seed = a.first_seed + s;
        Status st = RunOne(a, method, bits, r.seed, train, db, *queries, dbl, ql, &r);
        if (!st.ok()) r.error = st.ToString();
        std::fprintf(stderr, "%s %d bits seed %llu: %s\n", method.c_str(), bits,
                     static_cast<unsigned long long>(r.seed),
                     r.error.empty()
                         ? ("MAP@" + std::to_string(a.map_at) + " " + std::to_string(r.m.map_corrected) +
                            (r.has_score ? ", by score " + std::to_string(r.m_score.map_corrected) : "") +
                            (r.has_rerank ? ", re-ranked " + std::to_string(r.m_rerank.map_corrected) +
                                                " (P@10 " + std::to_string(PrecisionAt(r.m_rerank, 10)) + " vs " +
                                                std::to_string(PrecisionAt(r.m_score, 10)) + ")"
                                          : "") +
                            (r.rankers_checked ? (r.rankers_identical ? " (MIH = full sort)" : " (MIH DIFFERS)") : ""))
                               .c_str()
                         : r.error.c_str());
        if (r.rankers_checked && !r.rankers_identical) mismatch = true;
        if (csv.is_open()) {
          csv << CsvRows(r) << std::flush;
          if (!csv) return Fail(Status::IOError("cannot write " + a.out_csv));
        }
        runs.push_back(std::move(r));
      }
    }
  }

  std::printf("| method | bits | seeds ok | MAP@%zu id | MAP@%zu score | P@10 id | P@10 score | P@1000 id | "
              "P@1000 score | MAP@%zu (HashNet formula) id | train s |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|\n",
              a.map_at, a.map_at, a.map_at);
  nlohmann::json summary = nlohmann::json::array();
  for (int bits : bits_list) {
    for (const std::string& method : methods) {
      std::vector<double> map, map_s, p10, p10_s, p1000, p1000_s, maph, secs;
      std::vector<std::string> errors;
      for (const RunResult& r : runs) {
        if (r.method != method || r.bits != bits) continue;
        if (!r.error.empty()) { errors.push_back(r.error); continue; }
        map.push_back(r.m.map_corrected);
        maph.push_back(r.m.map_hashnet);
        p10.push_back(PrecisionAt(r.m, 10));
        p1000.push_back(PrecisionAt(r.m, 1000));
        if (r.has_score) {
          map_s.push_back(r.m_score.map_corrected);
          p10_s.push_back(PrecisionAt(r.m_score, 10));
          p1000_s.push_back(PrecisionAt(r.m_score, 1000));
        }
        secs.push_back(r.train_seconds);
      }
      auto or_na = [](const std::vector<double>& v) { return v.empty() ? std::string("n/a") : MeanStd(v); };
      std::printf("| %s | %d | %zu/%d | %s | %s | %s | %s | %s | %s | %s | %s |\n", method.c_str(), bits,
                  map.size(), a.seeds, MeanStd(map).c_str(), or_na(map_s).c_str(), MeanStd(p10).c_str(),
                  or_na(p10_s).c_str(), MeanStd(p1000).c_str(), or_na(p1000_s).c_str(), MeanStd(maph).c_str(),
                  MeanStd(secs, "%.1f").c_str());
      for (const std::string& e : errors) std::printf("  - %s %d bits failed: %s\n", method.c_str(), bits, e.c_str());
      summary.push_back({{"method", method}, {"bits", bits}, {"map_corrected", map}, {"map_corrected_score", map_s},
                         {"p_at_10", p10}, {"p_at_10_score", p10_s}, {"p_at_1000", p1000},
                         {"p_at_1000_score", p1000_s}, {"map_hashnet_formula", maph}, {"errors", errors}});
    }
  }
  if (a.ranker == "both")
    std::printf("full-sort and MIH-index MAP %s\n", mismatch ? "DIFFER" : "are identical for every binary run");

  if (!a.out_json.empty()) {
    nlohmann::json out = {
        {"dataset", a.dataset},
        {"database_size", db.size()},
        {"num_queries", queries->size()},
        {"train_size", train.size()},
        {"backbone", {{"type", "cnn"}, {"cnn_width", a.cnn_width}, {"feature_dim", a.feature_dim}}},
        {"budget", {{"epochs", a.epochs}, {"llc_phase1_epochs", p1}, {"llc_phase2_epochs", a.epochs - p1},
                    {"batch_size", a.batch_size}, {"optimizer", "adam"}, {"lr", a.lr}, {"lr_schedule", "cosine"}}},
        {"tie_break", {{"id", "(distance, database index)"},
                       {"score", "(distance, -score key, database index); the method's own scores"},
                       {"float", "(cosine similarity desc, index)"}}},
        {"map_at", a.map_at},
        {"ranker", a.ranker},
        {"summary", summary}};
    for (const RunResult& r : runs) {
      nlohmann::json j = {{"method", r.method}, {"bits", r.bits}, {"seed", r.seed}};
      if (!r.error.empty()) {
        j["error"] = r.error;
      } else {
        j["metrics"] = MetricsJson(r.m);
        if (r.has_score) j["metrics_tie_break_score"] = MetricsJson(r.m_score);
        if (r.has_rerank) j["metrics_rerank"] = MetricsJson(r.m_rerank);
        j["train_seconds"] = r.train_seconds;
        if (r.resumed) {
          j["resumed_from_csv"] = true;  // only the CSV's columns are known
        } else {
          j["encode_seconds"] = r.encode_seconds;
          j["eval_seconds"] = r.eval_seconds;
          j["epoch_loss"] = r.epoch_loss;
          j["train_accuracy"] = r.train_accuracy;
        }
        if (r.rankers_checked) j["rankers_identical"] = r.rankers_identical;
      }
      out["runs"].push_back(j);
    }
    std::ofstream f(a.out_json);
    f << out.dump(2) << "\n";
    if (!f) return Fail(Status::IOError("cannot write " + a.out_json));
  }
  return mismatch ? 2 : 0;
}

}  // namespace

void AddBenchMapCommand(CLI::App* bench, int* exit_code) {
  auto a = std::make_shared<MapArgs>();
  CLI::App* cmd = bench->add_subcommand(
      "map", "MAP@k of binary codes (.npy) against labels, or of methods trained here (--dataset)");
  cmd->add_option("--query-codes", a->query_codes, "Query codes (.npy: packed uint8 or float +-1)");
  cmd->add_option("--db-codes", a->db_codes, "Database codes (.npy)");
  cmd->add_option("--query-labels", a->query_labels, "Query labels (.npy, 1-D ints or one-hot)");
  cmd->add_option("--db-labels", a->db_labels, "Database labels (.npy)");
  cmd->add_option("--bits", a->bits_list,
                  "External codes: code length of packed codes (default 8 x bytes). Training mode: comma-separated "
                  "list (default 16,32)")
      ->delimiter(',');
  cmd->add_option("--map-at", a->map_at, "k of MAP@k")->capture_default_str();
  cmd->add_option("--radius", a->radius, "Hamming radius for precision within radius")->capture_default_str();
  cmd->add_option("--ranker", a->ranker, "full | index | both")->capture_default_str();
  cmd->add_option("--name", a->name, "Label for the output")->capture_default_str();
  cmd->add_option("--threads", a->threads, "Threads (0 = all)");
  cmd->add_option("--json,--out-json", a->out_json, "Write the metrics as JSON here");
  // Training mode.
  cmd->add_option("--dataset", a->dataset, "Train and score methods on this dataset (fashion-mnist)");
  cmd->add_option("--data-dir", a->data_dir, "Fashion-MNIST directory")->capture_default_str();
  cmd->add_option("--methods", a->methods, "Comma-separated: llc,hashnet,greedyhash,dsnc,float")->capture_default_str();
  cmd->add_option("--seeds", a->seeds, "Seeds per (method, bits): first-seed, first-seed+1, ...")->capture_default_str();
  cmd->add_option("--first-seed", a->first_seed, "First seed")->capture_default_str();
  cmd->add_option("--epochs", a->epochs, "Epoch budget of every method (LLC: ceil(N/2) phase 1 + rest phase 2)")
      ->capture_default_str();
  cmd->add_option("--limit-train", a->limit_train, "Train on the first N train images (0 = all)");
  cmd->add_option("--limit-db", a->limit_db, "Database = the first N train images (0 = all 60,000)");
  cmd->add_option("--limit-queries", a->limit_queries, "Queries = the first N test images (0 = all 10,000)");
  cmd->add_option("--cnn-width", a->cnn_width, "Backbone CNN width")->capture_default_str();
  cmd->add_option("--feature-dim", a->feature_dim, "Backbone feature dimension")->capture_default_str();
  cmd->add_option("--batch-size", a->batch_size, "Batch size")->capture_default_str();
  cmd->add_option("--lr", a->lr, "Adam learning rate")->capture_default_str();
  cmd->add_option("--snap-margin", a->snap_margin,
                  "LLC: bits with |logit| below this take the decoded class code's bit (0 = raw codes)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--out-csv", a->out_csv,
                  "Training mode: write one CSV row per (run, tie rule) here, as each run finishes");
  cmd->add_option("--rerank", a->rerank,
                  "Training mode, LLC: also score a re-ranking of the first R of each score-rule list by the "
                  "L1 distance of bit probabilities (4 bits each), as the rerank rows");
  cmd->add_flag("--resume", a->resume,
                "Training mode: keep the runs already in --out-csv and run only the missing ones");
  cmd->add_option("--db-scores", a->db_scores,
                  "External mode: 1-D float32 .npy, one score per database row; adds tie_break score rows");
  cmd->callback([a, exit_code] {
    if (!a->dataset.empty()) {
      *exit_code = RunTrainedBenchMap(*a);
      return;
    }
    if (a->query_codes.empty() || a->db_codes.empty() || a->query_labels.empty() || a->db_labels.empty()) {
      *exit_code = Fail(Status::InvalidArgument(
          "give --query-codes, --db-codes, --query-labels and --db-labels, or --dataset to train methods"));
      return;
    }
    if (a->bits_list.size() > 1) {
      *exit_code = Fail(Status::InvalidArgument("--bits takes one value for external codes"));
      return;
    }
    a->bits = a->bits_list.empty() ? 0 : a->bits_list[0];
    *exit_code = RunBenchMap(*a);
  });
}

}  // namespace hamdb::tools
