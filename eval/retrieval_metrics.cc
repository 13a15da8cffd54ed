#include "eval/retrieval_metrics.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <numeric>
#include <unordered_map>

#include "index/binary_index.h"
#include "core/binary_code.h"
#include "core/hamming.h"
#include "index/parallel.h"
#include "index/index_factory.h"

namespace hamdb {

double AveragePrecisionAtK(const uint8_t* rel, size_t n, size_t k, size_t num_relevant,
                           ApFormula formula) {
  n = std::min(n, k);
  size_t hits = 0;
  double sum = 0;
  for (size_t j = 0; j < n; ++j) {
    if (!rel[j]) continue;
    ++hits;
    sum += static_cast<double>(hits) / static_cast<double>(j + 1);
  }
  if (hits == 0) return 0.0;
  const double denom = formula == ApFormula::kCorrected
                           ? static_cast<double>(std::min(num_relevant, k))
                           : static_cast<double>(hits);
  return denom > 0 ? sum / denom : 0.0;
}

std::vector<uint32_t> HammingTopK(const uint8_t* query, const uint8_t* db_codes, size_t ndb,
                                  int bits, size_t k, const uint16_t* score_keys) {
  const size_t cb = code_bytes(bits);
  const HammingKernel kernel = SelectHammingKernel(cb);
  std::vector<uint16_t> dist(ndb);
  kernel.distances(query, db_codes, ndb, cb, dist.data());
  k = std::min(k, ndb);
  // Counting sort by distance; scanning in index order keeps ties by index.
  std::vector<size_t> count(static_cast<size_t>(bits) + 2, 0);
  for (size_t i = 0; i < ndb; ++i) ++count[dist[i]];
  std::vector<size_t> start(count.size(), 0);
  size_t acc = 0;
  uint32_t threshold = 0;
  for (size_t d = 0; d < count.size(); ++d) {
    start[d] = acc;
    acc += count[d];
    if (acc < k) threshold = static_cast<uint32_t>(d + 1);
  }
  if (score_keys == nullptr) {
    std::vector<uint32_t> out(k);
    for (size_t i = 0; i < ndb; ++i) {
      const uint16_t d = dist[i];
      if (d > threshold) continue;
      const size_t pos = start[d]++;
      if (pos < k) out[pos] = static_cast<uint32_t>(i);
    }
    return out;
  }
  // By score: every item up to the threshold distance, in distance buckets
  // (index order inside each), each bucket then stably sorted by score key
  // descending, so equal keys keep index order.
  const size_t upto = threshold + 1 < count.size() ? start[threshold + 1] : acc;
  std::vector<uint32_t> all(upto);
  std::vector<size_t> begin(start.begin(), start.begin() + threshold + 2);
  for (size_t i = 0; i < ndb; ++i) {
    if (dist[i] <= threshold) all[begin[dist[i]]++] = static_cast<uint32_t>(i);
  }
  for (uint32_t d = 0; d <= threshold; ++d) {
    std::stable_sort(all.begin() + start[d], all.begin() + start[d] + count[d],
                     [&](uint32_t a, uint32_t b) { return score_keys[a] > score_keys[b]; });
  }
  all.resize(k);
  return all;
}

namespace {

// Per-label database counts (R_q lookups).
std::unordered_map<int64_t, size_t> CountLabels(const std::vector<int64_t>& labels) {
  std::unordered_map<int64_t, size_t> counts;
  for (int64_t l : labels) ++counts[l];
  return counts;
}

// Accumulates the ranking-based metrics of one query into per-query slots.
struct QueryScores {
  double ap_corrected = 0, ap_hashnet = 0;
  std::vector<double> precision_at;
  bool zero_hit = false;
};

QueryScores ScoreRanking(const uint32_t* ranked, size_t n, int64_t label,
                         const std::vector<int64_t>& db_labels, size_t num_relevant,
                         const RetrievalEvalOptions& o, std::vector<uint8_t>* rel_buf) {
  rel_buf->resize(n);
  for (size_t j = 0; j < n; ++j) (*rel_buf)[j] = db_labels[ranked[j]] == label;
  QueryScores s;
  s.ap_corrected =
      AveragePrecisionAtK(rel_buf->data(), n, o.map_at, num_relevant, ApFormula::kCorrected);
  s.ap_hashnet = AveragePrecisionAtK(rel_buf->data(), n, o.map_at, num_relevant, ApFormula::kHashNet);
  const size_t top = std::min(n, o.map_at);
  s.zero_hit = std::find(rel_buf->begin(), rel_buf->begin() + top, 1) == rel_buf->begin() + top;
  for (size_t k : o.precision_at) {
    // Precision@k divides by k; when the database is smaller than k it
    // divides by what exists (the whole database was retrieved).
    const size_t m = std::min(k, n);
    size_t hits = 0;
    for (size_t j = 0; j < m; ++j) hits += (*rel_buf)[j];
    s.precision_at.push_back(m ? static_cast<double>(hits) / static_cast<double>(m) : 0.0);
  }
  return s;
}

Status CheckLabels(size_t nq, size_t ndb, const RetrievalEvalOptions& o) {
  if (nq == 0) return Status::InvalidArgument("no queries");
  if (ndb == 0) return Status::InvalidArgument("empty database");
  if (ndb > UINT32_MAX) return Status::InvalidArgument("database larger than 2^32 items");
  if (o.map_at == 0) return Status::InvalidArgument("map_at must be >= 1");
  for (size_t k : o.precision_at)
    if (k == 0) return Status::InvalidArgument("precision_at values must be >= 1");
  return Status::OK();
}

void Finalise(const std::vector<QueryScores>& scores, const RetrievalEvalOptions& o,
              RetrievalMetrics* m) {
  const double nq = static_cast<double>(scores.size());
  m->precision_at.clear();
  for (size_t i = 0; i < o.precision_at.size(); ++i) m->precision_at.emplace_back(o.precision_at[i], 0.0);
  for (const QueryScores& s : scores) {
    m->map_corrected += s.ap_corrected;
    m->map_hashnet += s.ap_hashnet;
    m->zero_hit_queries += s.zero_hit;
    for (size_t i = 0; i < s.precision_at.size(); ++i) m->precision_at[i].second += s.precision_at[i];
  }
  m->map_corrected /= nq;
  m->map_hashnet /= nq;
  for (auto& p : m->precision_at) p.second /= nq;
}

}  // namespace

StatusOr<RetrievalMetrics> EvaluateRankedLists(const std::vector<std::vector<uint32_t>>& ranked,
                                               const std::vector<int64_t>& query_labels,
                                               const std::vector<int64_t>& db_labels,
                                               const RetrievalEvalOptions& options) {
  HAMDB_RETURN_IF_ERROR(CheckLabels(query_labels.size(), db_labels.size(), options));
  if (ranked.size() != query_labels.size())
    return Status::InvalidArgument("one ranked list per query is required");
  for (const auto& list : ranked)
    for (uint32_t idx : list)
      if (idx >= db_labels.size()) return Status::InvalidArgument("ranked index out of range");
  const auto counts = CountLabels(db_labels);
  std::vector<QueryScores> scores(ranked.size());
  std::vector<uint8_t> rel;
  for (size_t q = 0; q < ranked.size(); ++q) {
    auto it = counts.find(query_labels[q]);
    scores[q] = ScoreRanking(ranked[q].data(), ranked[q].size(), query_labels[q], db_labels,
                             it == counts.end() ? 0 : it->second, options, &rel);
  }
  RetrievalMetrics m;
  m.num_queries = ranked.size();
  m.num_database = db_labels.size();
  m.map_at = options.map_at;
  m.precision_radius = options.precision_radius;
  Finalise(scores, options, &m);
  return m;
}

StatusOr<RetrievalMetrics> EvaluateHamming(const uint8_t* query_codes,
                                           const std::vector<int64_t>& query_labels,
                                           const uint8_t* db_codes,
                                           const std::vector<int64_t>& db_labels, int bits,
                                           const RetrievalEvalOptions& options,
                                           HammingRanker ranker) {
  const size_t nq = query_labels.size(), ndb = db_labels.size();
  HAMDB_RETURN_IF_ERROR(CheckLabels(nq, ndb, options));
  if (bits < 1 || bits > kMaxCodeBits) return Status::InvalidArgument("bad code length");
  const size_t cb = code_bytes(bits);
  size_t depth = options.map_at;
  for (size_t k : options.precision_at) depth = std::max(depth, k);
  depth = std::min(depth, ndb);

  const bool by_score = options.tie_break == TieBreak::kScore;
  if (by_score && options.db_score_keys.size() != ndb) {
    return Status::InvalidArgument("tie_break score needs one score key per database item (" +
                                   std::to_string(options.db_score_keys.size()) + " for " +
                                   std::to_string(ndb) + ")");
  }
  const uint16_t* keys = by_score ? options.db_score_keys.data() : nullptr;
  std::unique_ptr<BinaryIndex> index;
  if (ranker == HammingRanker::kIndex) {
    HAMDB_ASSIGN_OR_RETURN(index, MakeIndex("MIH", bits));
    std::vector<uint64_t> ids(ndb);
    std::iota(ids.begin(), ids.end(), 0);
    HAMDB_RETURN_IF_ERROR(index->Add(ids.data(), db_codes, ndb, keys));
  }

  const auto counts = CountLabels(db_labels);
  const size_t nd = static_cast<size_t>(bits) + 1;
  std::vector<QueryScores> scores(nq);
  std::vector<double> radius_precision(nq, 0.0);
  std::vector<uint8_t> radius_empty(nq, 0);
  // PR accumulators: per radius, retrieved and relevant-retrieved pair counts.
  std::vector<uint64_t> pr_all(nd, 0), pr_rel(nd, 0);
  uint64_t total_relevant_pairs = 0;
  std::mutex pr_mu;
  std::atomic<bool> failed{false};
  Status first_error;
  std::mutex err_mu;
  const HammingKernel kernel = SelectHammingKernel(cb);

  ThreadPool& pool = ThreadPool::Default();
  const size_t kBlock = 64;
  Status st = pool.ParallelFor((nq + kBlock - 1) / kBlock, options.num_threads, [&](size_t b) {
    std::vector<uint8_t> rel;
    std::vector<uint16_t> dist(ndb);
    std::vector<uint64_t> all(nd), relc(nd), local_all(nd, 0), local_rel(nd, 0);
    uint64_t local_pairs = 0;
    for (size_t q = b * kBlock; q < std::min(nq, (b + 1) * kBlock); ++q) {
      const uint8_t* qc = query_codes + q * cb;
      const int64_t label = query_labels[q];
      auto it = counts.find(label);
      const size_t rq = it == counts.end() ? 0 : it->second;
      std::vector<uint32_t> ranked;
      if (index) {
        SearchParams params;
        params.num_threads = 1;  // parallel across queries instead
        params.tie_break = options.tie_break;
        auto r = index->Search(qc, depth, params);
        if (!r.ok()) {
          std::lock_guard<std::mutex> l(err_mu);
          if (!failed.exchange(true)) first_error = r.status();
          return;
        }
        ranked.reserve(r->neighbors.size());
        for (const Neighbor& nb : r->neighbors) ranked.push_back(static_cast<uint32_t>(nb.id));
      } else {
        ranked = HammingTopK(qc, db_codes, ndb, bits, depth, keys);
      }
      scores[q] = ScoreRanking(ranked.data(), ranked.size(), label, db_labels, rq, options, &rel);

      // Radius metrics from the full distance histogram.
      kernel.distances(qc, db_codes, ndb, cb, dist.data());
      std::fill(all.begin(), all.end(), 0);
      std::fill(relc.begin(), relc.end(), 0);
      for (size_t i = 0; i < ndb; ++i) {
        ++all[dist[i]];
        relc[dist[i]] += db_labels[i] == label;
      }
      uint64_t ca = 0, cr = 0;
      for (size_t d = 0; d < nd; ++d) {
        ca += all[d];
        cr += relc[d];
        local_all[d] += ca;
        local_rel[d] += cr;
        if (d == std::min<size_t>(options.precision_radius, nd - 1)) {
          radius_precision[q] = ca ? static_cast<double>(cr) / static_cast<double>(ca) : 0.0;
          radius_empty[q] = ca == 0;
        }
      }
      local_pairs += rq;
    }
    std::lock_guard<std::mutex> l(pr_mu);
    for (size_t d = 0; d < nd; ++d) {
      pr_all[d] += local_all[d];
      pr_rel[d] += local_rel[d];
    }
    total_relevant_pairs += local_pairs;
  });
  HAMDB_RETURN_IF_ERROR(st);
  if (failed) return first_error;

  RetrievalMetrics m;
  m.num_queries = nq;
  m.num_database = ndb;
  m.map_at = options.map_at;
  m.precision_radius = options.precision_radius;
  Finalise(scores, options, &m);
  for (size_t q = 0; q < nq; ++q) {
    m.precision_within_radius += radius_precision[q];
    m.queries_empty_within_radius += radius_empty[q];
  }
  m.precision_within_radius /= static_cast<double>(nq);
  if (options.pr_curve) {
    for (size_t d = 0; d < nd; ++d) {
      PrPoint p;
      p.radius = static_cast<uint32_t>(d);
      p.precision = pr_all[d] ? static_cast<double>(pr_rel[d]) / static_cast<double>(pr_all[d]) : 0.0;
      p.recall = total_relevant_pairs
                     ? static_cast<double>(pr_rel[d]) / static_cast<double>(total_relevant_pairs)
                     : 0.0;
      m.pr_curve.push_back(p);
    }
  }
  return m;
}

}  // namespace hamdb
