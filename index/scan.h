// Exhaustive-scan building blocks shared by FlatIndex, the scan fallback of
// MihIndex and the store-scan fallback of a degraded LiveCollection, plus the
// argument checks every index applies.
//
// Not part of the BinaryIndex interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "index/binary_index.h"
#include "core/hamming.h"
#include "core/status.h"

namespace hamdb {

class ThreadPool;

// A read-only view of dense slots: n codes of code_bytes bytes, contiguous,
// their ids and their score keys. Borrowed; the owner keeps it alive and
// unchanged during use.
struct SlotView {
  const uint8_t* codes = nullptr;  // n * code_bytes bytes
  const uint64_t* ids = nullptr;   // n ids
  const uint16_t* scores = nullptr;  // n score keys, or null: no item has one
  size_t n = 0;
  size_t code_bytes = 0;
  int bits = 0;
  HammingKernel kernel{};
  const IdFilter* filter = nullptr;  // scans return only the items it allows; null: all
};

// The view of dense slot arrays as the indexes keep them; scores may be null.
template <typename CodeVector>
inline SlotView MakeSlotView(const CodeVector& codes, const std::vector<uint64_t>& ids,
                             const uint16_t* scores, int bits, const HammingKernel& kernel,
                             const IdFilter* filter = nullptr) {
  SlotView v;
  v.codes = codes.data();
  v.ids = ids.data();
  v.scores = scores;
  v.n = ids.size();
  v.code_bytes = (static_cast<size_t>(bits) + 7) / 8;
  v.bits = bits;
  v.kernel = kernel;
  v.filter = filter;
  return v;
}

// Collects the k first items of a stream in NeighborOrder{tie}, by counting
// selection rather than a heap: candidates go into a buffer; when it holds
// 2k of them, a histogram over the small integer distances gives the k-th
// distance T, and the buffer keeps the items with d < T plus the first ones
// at d == T in the tie order. Offer() callers may skip any item with
// distance > threshold().
class TopKCollector {
 public:
  TopKCollector(size_t k, int bits, TieBreak tie = TieBreak::kId);
  // Distances above this can no longer enter the result.
  uint32_t threshold() const { return threshold_; }
  void Offer(uint32_t distance, uint64_t id, uint16_t score = kNoScore) {
    buffer_.push_back(Neighbor{id, distance, score});
    if (buffer_.size() >= limit_) Compact();
  }
  // True when k items are held; *kth then gets the k-th distance, which no
  // later offer can raise.
  bool Settle(uint32_t* kth);
  // Moves every candidate of `other` into this collector.
  void Merge(TopKCollector&& other);
  // The k first items (fewer if fewer were offered), sorted by
  // NeighborOrder{tie}. Leaves the collector empty.
  std::vector<Neighbor> Finish();

 private:
  void Compact();

  NeighborOrder order_;
  size_t k_;
  size_t limit_;
  uint32_t threshold_;
  std::vector<uint32_t> hist_;  // scratch, bits + 1 entries
  std::vector<Neighbor> buffer_;
};

// The answer of an exact scan that is either a k-NN (the k first items in
// NeighborOrder{tie}, by a TopKCollector) or a range search (every item
// within radius, sorted), for scans that stream items through one place:
// the store scan of a degraded collection, the field index's posting lists,
// IVF's probed lists. Finish says exact; a caller that read only part of
// the items (IVF) says otherwise. Callers skip items with distance >
// limit() before any costlier test.
class ExactScanResult {
 public:
  ExactScanResult(size_t k, uint32_t radius, bool is_range, int bits, TieBreak tie)
      : is_range_(is_range), radius_(radius), tie_(tie), top_(is_range ? 1 : k, bits, tie) {}
  // Distances above this cannot enter the answer.
  uint32_t limit() const { return is_range_ ? radius_ : top_.threshold(); }
  // Offers an item with distance <= limit().
  void Offer(uint32_t distance, uint64_t id, uint16_t score) {
    if (is_range_) {
      in_range_.push_back({id, distance, score});
    } else {
      top_.Offer(distance, id, score);
    }
  }
  // The answer, sorted, exact. Leaves the collector empty.
  SearchResult Finish();

 private:
  bool is_range_;
  uint32_t radius_;
  TieBreak tie_;
  TopKCollector top_;
  std::vector<Neighbor> in_range_;
};

// The cost of scanning one code of `view` relative to one 8-byte code on
// the kernel-and-buffer path, by the path its scans take here: 8-byte codes
// on AVX-512 compare their distances in the registers that count them
// (measured about 0.3 of that path), everything else 1. For cost models
// that weigh a scan against other work (MIH's probe).
double ScanCodeCost(const SlotView& view);

// Exact k-NN by a scan of `view`, split over up to `threads` threads of the
// default pool (contiguous ranges of slots). Sorted by NeighborOrder{tie};
// each Neighbor carries its slot's score key.
StatusOr<std::vector<Neighbor>> ScanKnn(const SlotView& view, const uint8_t* query, size_t k,
                                        int threads, TieBreak tie);
// Exact k-NN of nq queries (contiguous codes) by one query-blocked scan of
// `view`: up to `threads` tasks each take a group of queries and stream the
// slots through the whole group a block at a time, so a block is read from
// memory once per group instead of once per query, and the scan is bound by
// computation rather than memory bandwidth. (*out)[i] is what ScanKnn gives
// for query i. For a batch smaller than the thread count, ScanKnn per query
// (which splits the slots) is the better choice.
Status ScanKnnBatch(const SlotView& view, const uint8_t* queries, size_t nq, size_t k, int threads,
                    TieBreak tie, std::vector<std::vector<Neighbor>>* out);
// Every slot with distance <= radius, sorted by NeighborOrder{tie}.
StatusOr<std::vector<Neighbor>> ScanRange(const SlotView& view, const uint8_t* query,
                                          uint32_t radius, int threads, TieBreak tie);

// Exact k-NN (is_range false) or every item within radius (is_range true)
// among the listed ids that `index` holds and p.filter allows: the items
// are looked up (BinaryIndex::Lookup) and scanned as ScanKnn / ScanRange
// scan, on p.num_threads threads, in order NeighborOrder{p.tie_break}. The
// result is exact. NotSupported when the index cannot look items up.
StatusOr<SearchResult> ScanListed(const BinaryIndex& index, const std::vector<uint64_t>& ids,
                                  const uint8_t* query, size_t k, uint32_t radius, bool is_range,
                                  const SearchParams& p);

// Argument checks shared by all indexes; InvalidArgument with a message that
// names the offending item. `what` names the array ("query", "code").
Status CheckCodes(const uint8_t* codes, size_t n, int bits, const char* what);
Status CheckAddArgs(const uint64_t* ids, const uint8_t* codes, size_t n, int bits);
Status CheckSearchArgs(const uint8_t* query, size_t k, int bits);
Status CheckRangeArgs(const uint8_t* query, int bits);
// SearchBatch arguments: out not null, k >= 1, nq valid query codes.
Status CheckBatchArgs(const uint8_t* queries, size_t nq, size_t k, int bits,
                      const std::vector<SearchResult>* out);
// Search for an index whose SearchBatch is its real search path (the GPU
// indexes): checks the arguments and runs a batch of one.
StatusOr<SearchResult> SearchOneByBatch(const BinaryIndex& index, const uint8_t* query, size_t k,
                                        const SearchParams& params);

}  // namespace hamdb
