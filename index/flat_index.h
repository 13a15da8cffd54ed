// FlatIndex: exact search by a multi-threaded scan of every code.
//
// Storage: codes contiguous in dense slots (size() * code_bytes() bytes),
// an id per slot and a compact id -> slot hash map. Remove swaps the last
// slot into the hole, so slots stay dense and a scan touches only live
// items. Memory per item: code_bytes + 8 (id) + 5..11 (map) bytes.
//
// Search: one query splits the slots across SearchParams::num_threads
// threads (0 = all); each thread computes distances in blocks into a uint16
// buffer and keeps its k best with a counting selection (TopKCollector), not
// a heap. SearchBatch streams the slots through groups of queries at once
// (ScanKnnBatch), so a block of codes is read once per group.
// Results are exact: the k first items by distance, ties by the call's rule
// (id, or score then id; every item's score key is kept, 2 bytes per item
// once any item has one). This is the oracle every other index is tested
// against.
//
// Thread safety: as BinaryIndex: searches share a reader lock, Add / Remove
// take the writer lock. Insert cost: a write of b items holds the writer
// lock for O(b) (dense slots that grow geometrically, an open-addressing id
// map); when the slots must grow, the O(n) copy is made first under the
// reader lock, so searches go on, and swapped in under the writer lock. A
// remove is O(1) per item (the last slot moves into the hole).
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "index/binary_index.h"
#include "core/hamming.h"
#include "index/id_map.h"
#include "index/rw_lock.h"
#include "index/scan.h"

namespace hamdb {

class FlatIndex : public BinaryIndex {
 public:
  // bits must be valid (1..kMaxCodeBits); MakeIndex checks it.
  explicit FlatIndex(int bits);

  std::string spec() const override { return "Flat"; }
  size_t size() const override;
  size_t memory_bytes() const override;

  bool keeps_scores() const override { return true; }
  Status Remove(const uint64_t* ids, size_t n, size_t* removed) override;
  StatusOr<SearchResult> Search(const uint8_t* query, size_t k,
                                const SearchParams& params) const override;
  StatusOr<SearchResult> RangeSearch(const uint8_t* query, uint32_t radius,
                                     const SearchParams& params) const override;
  // A batch of at least as many queries as threads is one query-blocked
  // scan (ScanKnnBatch); a smaller one splits each query's scan instead.
  Status SearchBatch(const uint8_t* queries, size_t nq, size_t k, const SearchParams& params,
                     std::vector<SearchResult>* out) const override;
  Status Lookup(const uint64_t* ids, size_t n, uint8_t* codes, uint16_t* scores,
                uint8_t* found) const override;
  Status ExportItems(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                     std::vector<uint16_t>* scores) const override;
  // The dense slots and their id map as they are: loading is copies.
  Status SaveState(std::string* out) const override;
  Status LoadState(std::string_view state) override;

 protected:
  // Errors: InvalidArgument (null arrays, padding bits set; nothing added),
  // ResourceExhausted (more than 2^32 - 2 items, or out of memory).
  Status AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t* scores,
                  size_t n) override;

 private:
  SlotView View(const IdFilter* filter = nullptr) const;  // requires mu_ held

  HammingKernel kernel_;
  // Writers hold write_mu_ throughout, and mu_ exclusively only to apply
  // their change: a write grows the slot arrays under the shared lock first
  // (DenseSlots::UpsertGrowingOffLock), so searches never wait on that copy.
  std::mutex write_mu_;
  mutable WriterPriorityMutex mu_;
  DenseSlots slots_;
};

}  // namespace hamdb
