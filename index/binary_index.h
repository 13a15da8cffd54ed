// BinaryIndex: the one interface every Hamming search structure implements.
//
// An index holds (id, code) pairs: ids are the store's 64-bit item ids, codes
// are packed LSB-first codes of bits() bits (docs/codes.md). An item may
// also carry a score (core/score.h), kept as its 16-bit key. Results are
// sorted by the call's tie rule (SearchParams::tie_break): (distance, id), or
// (distance, -score, id) with unscored items after scored ones at a distance.
// A radius is inclusive (distance <= radius). Exact indexes return exactly
// the k first items in that order; approximate ones say so in
// SearchResult::exact.
//
// Thread safety: every const method may run concurrently with other const
// methods and with one writer (Add / Remove) at a time; implementations
// guard their state with a reader/writer lock. Search parameters are passed
// per call and never stored, so concurrent queries cannot disturb each other.
//
// Ownership: callers keep ownership of the arrays they pass; indexes copy
// what they keep.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/score.h"
#include "core/status.h"

namespace hamdb {

struct Neighbor {
  uint64_t id;
  uint32_t distance;
  // The item's score key (core/score.h); kNoScore when it has none, or when
  // the index does not keep scores (BinaryIndex::keeps_scores()).
  uint16_t score = kNoScore;
  bool operator==(const Neighbor& o) const {
    return id == o.id && distance == o.distance && score == o.score;
  }
};

// Orders by (distance, id).
inline bool NeighborLess(const Neighbor& a, const Neighbor& b) {
  return a.distance != b.distance ? a.distance < b.distance : a.id < b.id;
}

// The order of a result list under a tie rule: by distance, then (kScore)
// by score key descending, then by id. kNoScore is the smallest key, so
// unscored items follow scored ones at equal distance.
struct NeighborOrder {
  TieBreak tie = TieBreak::kId;
  bool operator()(const Neighbor& a, const Neighbor& b) const {
    if (a.distance != b.distance) return a.distance < b.distance;
    if (tie == TieBreak::kScore && a.score != b.score) return a.score > b.score;
    return a.id < b.id;
  }
};

// Per-call knobs. Fields an index does not use are ignored.
// Which items a filtered search may return (SearchParams::filter). Allows is
// called from several search threads at once and must be thread-safe.
class IdFilter {
 public:
  virtual ~IdFilter() = default;
  virtual bool Allows(uint64_t id) const = 0;
  // allowed[i] = Allows(ids[i]) for i in [0, n). A filter whose check is a
  // lookup overrides it to overlap the lookups' cache misses.
  virtual void AllowsMany(const uint64_t* ids, size_t n, uint8_t* allowed) const {
    for (size_t i = 0; i < n; ++i) allowed[i] = Allows(ids[i]);
  }
  // A filter that can list a superset of the ids it allows, of at most
  // `limit` ids, puts them in *ids and returns true; a search may then look
  // at those items alone (LiveCollection's selective path). The default
  // cannot.
  virtual bool Candidates(size_t limit, std::vector<uint64_t>* ids) const {
    (void)limit;
    (void)ids;
    return false;
  }
};

struct SearchParams {
  // Threads for this call; 0 means the index default (all hardware threads).
  int num_threads = 0;
  // Inverted-file style indexes: lists / buckets to visit; 0 = index default.
  // ClassBucketIndex also takes -1: visit buckets until the answer is
  // provably exact.
  int nprobe = 0;
  // MIH: 0 = choose by cost model, 1 = always probe, -1 = always scan.
  int mih_mode = 0;
  // The order of ties on distance. kScore needs an index that keeps scores
  // (keeps_scores()); the others refuse it with InvalidArgument.
  TieBreak tie_break = TieBreak::kId;
  // Only items it allows are returned; null: every item. Exact indexes that
  // filter (IndexSpecInfo::filters) stay exact: the answer is the one a scan
  // of the allowed items alone gives; IVF keeps its approximate answer (and
  // may return fewer than k when few allowed items sit in the lists it
  // probes). The others refuse a filter (InvalidArgument).
  const IdFilter* filter = nullptr;
};

struct SearchResult {
  std::vector<Neighbor> neighbors;  // sorted by NeighborOrder{params.tie_break}
  // True when `neighbors` is provably the exact answer (the k first items in
  // the call's order, or every item within the radius). Exact indexes
  // always set it; approximate ones set it only when they can prove it
  // (ClassBucketIndex, by a triangle-inequality bound) and false otherwise.
  bool exact = true;
  // Inverted-file indexes: the buckets / lists scanned, in visiting order
  // (ClassBucketIndex: class indexes into the codebook). Empty for others.
  std::vector<int> visited_buckets;
};

// InvalidArgument when `tie` asks for an order that an index of spec `spec`
// cannot give: kScore where the index keeps no scores. The one wording of
// that error, for indexes and the collections over them.
Status CheckTieBreakSupported(const std::string& spec, bool keeps_scores, TieBreak tie);
// InvalidArgument when `filter` is set and an index of spec `spec` cannot
// filter (IndexSpecInfo::filters). The one wording of that error.
Status CheckFilterSupported(const std::string& spec, bool filters, const IdFilter* filter);

class BinaryIndex {
 public:
  virtual ~BinaryIndex() = default;

  int bits() const { return bits_; }
  size_t code_bytes() const { return (static_cast<size_t>(bits_) + 7) / 8; }

  // The spec string that recreates this kind of index (index/index_factory.h).
  virtual std::string spec() const = 0;
  // Number of items currently held.
  virtual size_t size() const = 0;
  // Heap bytes held by the index (codes, ids, tables), measured, not guessed.
  virtual size_t memory_bytes() const = 0;

  // Whether the index keeps item scores and orders ties by them
  // (SearchParams::tie_break = kScore). Those that do not drop the scores
  // Add is given and return every Neighbor::score as kNoScore.
  virtual bool keeps_scores() const { return false; }

  // Adds n items: ids[i] with code codes + i * code_bytes() and score key
  // scores[i] (kNoScore for none; scores null: none at all). An id already
  // present is replaced (upsert), score included, like the store.
  // InvalidArgument when a code has non-zero padding bits; nothing is added
  // then.
  Status Add(const uint64_t* ids, const uint8_t* codes, size_t n,
             const uint16_t* scores = nullptr) {
    return AddItems(ids, codes, scores, n);
  }
  // Removes the ids that are present; *removed (optional) gets their count.
  virtual Status Remove(const uint64_t* ids, size_t n, size_t* removed) = 0;

  // The k nearest items to `query` (code_bytes() bytes). k may exceed size();
  // then every item is returned. InvalidArgument for k == 0.
  virtual StatusOr<SearchResult> Search(const uint8_t* query, size_t k,
                                        const SearchParams& params) const = 0;
  // Every item with distance <= radius.
  virtual StatusOr<SearchResult> RangeSearch(const uint8_t* query, uint32_t radius,
                                             const SearchParams& params) const = 0;
  // nq queries (nq * code_bytes() bytes); out gets nq results. The default
  // runs Search per query, split across params.num_threads threads.
  virtual Status SearchBatch(const uint8_t* queries, size_t nq, size_t k,
                             const SearchParams& params, std::vector<SearchResult>* out) const;

  // Every item held: its id, code (ids->size() * code_bytes() bytes) and
  // score key (scores: one per id, or empty when no item has a score), in
  // the index's own order. NotSupported where an index does not offer it.
  virtual Status ExportItems(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                             std::vector<uint16_t>* scores) const;

  // The items of the listed ids, for a scan of a few chosen items: for each
  // i, found[i] = 1 and the code at codes + i * code_bytes() and score key
  // scores[i] when ids[i] is held, found[i] = 0 otherwise (its code and score
  // left as they were). NotSupported where an index does not offer it.
  virtual Status Lookup(const uint64_t* ids, size_t n, uint8_t* codes, uint16_t* scores,
                        uint8_t* found) const;
  // Snapshots (collection/index_snapshot.h). SaveState appends to *out what
  // LoadState needs to restore this index's contents into a fresh, empty
  // index of the same spec and bits. The default saves the items of
  // ExportItems (a count, the ids, the codes, the scores) and LoadState adds them in one
  // bulk Add; an index with trained state (FAISS IVF) adds that. LoadState:
  // Corruption when the state does not decode.
  virtual Status SaveState(std::string* out) const;
  virtual Status LoadState(std::string_view state);

 protected:
  explicit BinaryIndex(int bits) : bits_(bits) {}

  // Add's implementation; scores may be null.
  virtual Status AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t* scores,
                          size_t n) = 0;
  // For indexes that do not filter: InvalidArgument for a filter, and
  // CheckTieBreakSupported for the tie rule.
  Status CheckParamsSupported(const SearchParams& params) const;

 private:
  int bits_;
};

// The default snapshot state: item count (u64 LE), the ids (u64 LE each),
// the codes, then the score keys as a vector (u64 count: 0 or the item
// count, u16 LE each). Parse consumes it from the front of *state.
void AppendItemsState(const std::vector<uint64_t>& ids, const std::vector<uint8_t>& codes,
                      const std::vector<uint16_t>& scores, std::string* out);
Status ParseItemsState(std::string_view* state, size_t code_bytes, std::vector<uint64_t>* ids,
                       std::vector<uint8_t>* codes, std::vector<uint16_t>* scores);

}  // namespace hamdb
