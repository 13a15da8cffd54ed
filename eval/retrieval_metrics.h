// Retrieval quality metrics for ranked lists: MAP@k (corrected and the
// HashNet-copied formula), precision@k, precision within a Hamming radius,
// and the precision-recall curve over Hamming radii.
//
// Relevance is label equality: database item j is relevant to a query with
// label y when db_labels[j] == y. R_q is the number of relevant items in the
// whole database.
//
// Average precision at k of one ranked list rel(1..n), n <= k:
//   P(j)        = (relevant among the first j) / j
//   corrected   = sum_j P(j) rel(j) / min(R_q, k)          (LLC, Appendix B)
//   hashnet     = sum_j P(j) rel(j) / (relevant among the first n)
// The HashNet formula is the one in the code HashNet published and many
// papers copied; it divides by the relevant items *retrieved*, which rewards
// poor recall. Both are 0 for a query with no relevant item retrieved (or
// with R_q = 0), and every query is averaged in, including those.
//
// Hamming rankings order database items by (distance, index): ties are broken
// by the lower database index, never by chance, so results are reproducible
// and identical whether they come from a full sort or an exact index. With
// RetrievalEvalOptions::tie_break = kScore they order by (distance, -score
// key, index) instead, the product's score rule (core/score.h), on the same
// 16-bit keys the indexes keep.
//
// Precision within radius r: retrieved = items at distance <= r; a query
// retrieving nothing scores precision 0 (the convention of the HashNet/DPSH
// evaluation code), and the number of such queries is reported.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/score.h"
#include "core/status.h"

namespace hamdb {

enum class ApFormula { kCorrected, kHashNet };

// AP@k of one ranked list. rel: n flags (n is clipped to k). num_relevant:
// R_q. Returns 0 when nothing relevant is retrieved.
double AveragePrecisionAtK(const uint8_t* rel, size_t n, size_t k, size_t num_relevant,
                           ApFormula formula);

struct RetrievalEvalOptions {
  size_t map_at = 1000;                       // k of MAP@k
  std::vector<size_t> precision_at = {1, 10, 100, 1000};
  uint32_t precision_radius = 2;              // precision within this radius
  bool pr_curve = true;                       // precision/recall per radius
  int num_threads = 0;                        // 0 = all hardware threads
  // Hamming rankings: the tie rule, and for kScore one score key per
  // database item (ScoreKey of its score, kNoScore for none).
  TieBreak tie_break = TieBreak::kId;
  std::vector<uint16_t> db_score_keys;
};

struct PrPoint {
  uint32_t radius;
  double precision;  // micro-averaged: relevant within radius / retrieved within radius
  double recall;     // relevant within radius / all relevant pairs
};

struct RetrievalMetrics {
  size_t num_queries = 0;
  size_t num_database = 0;
  size_t map_at = 0;
  double map_corrected = 0;
  double map_hashnet = 0;
  std::vector<std::pair<size_t, double>> precision_at;  // (k, mean precision@k)
  uint32_t precision_radius = 0;
  double precision_within_radius = 0;   // mean over queries, empty ones count 0
  size_t queries_empty_within_radius = 0;
  std::vector<PrPoint> pr_curve;         // radius 0..bits (Hamming evaluations only)
  size_t zero_hit_queries = 0;           // queries with no relevant item in the top map_at
};

// Scores externally ranked lists (for example a float baseline ranked by
// cosine). ranked[q] holds database indices in rank order (at least
// min(map_at, ndb) of them, or fewer when the ranking is truncated on
// purpose). PR and radius metrics are left empty.
StatusOr<RetrievalMetrics> EvaluateRankedLists(const std::vector<std::vector<uint32_t>>& ranked,
                                               const std::vector<int64_t>& query_labels,
                                               const std::vector<int64_t>& db_labels,
                                               const RetrievalEvalOptions& options = {});

// How the Hamming ranking of each query is produced.
enum class HammingRanker {
  kFullSort,  // every database distance, ordered by (distance, index)
  kIndex,     // an exact MIH index's k-NN search (results must coincide)
};

// Scores binary codes: queries (nq codes) against the database (ndb codes),
// packed LSB-first, code_bytes(bits) bytes each.
StatusOr<RetrievalMetrics> EvaluateHamming(const uint8_t* query_codes,
                                           const std::vector<int64_t>& query_labels,
                                           const uint8_t* db_codes,
                                           const std::vector<int64_t>& db_labels, int bits,
                                           const RetrievalEvalOptions& options = {},
                                           HammingRanker ranker = HammingRanker::kFullSort);

// The top-k database indices of one query by (distance, index), computed by
// a counting sort over distances: O(ndb + bits). With score_keys (one per
// database item): by (distance, -key, index), sorting only the distance
// buckets that reach the top k.
std::vector<uint32_t> HammingTopK(const uint8_t* query, const uint8_t* db_codes, size_t ndb,
                                  int bits, size_t k, const uint16_t* score_keys = nullptr);

}  // namespace hamdb
