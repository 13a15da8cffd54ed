// FaissIvfIndex: FAISS's binary inverted file (faiss::IndexBinaryIVF) behind
// the BinaryIndex interface, the k-means-trained baseline for
// ClassBucketIndex. Approximate: SearchResult::exact is false once trained.
//
// Lifecycle:
//  - Untrained: items are buffered in dense slots and searched by an exact
//    scan (results exact, visited_buckets empty). When an Add brings the
//    buffer to train_threshold() = 39 * nlist items (FAISS's own minimum
//    for k-means without a warning), the index trains: a deterministic
//    strided sample of at most 64 * nlist buffered codes goes to FAISS's
//    binary k-means (float k-means, centroids rounded to bits), then every
//    buffered item is added to the lists and the buffer is freed. A bulk Add
//    of many items therefore trains on a sample of them at once. Training
//    happens once; deleting items later never untrains.
//  - Trained: Add assigns items to their nearest centroid's list, with the
//    caller's ids (so ids are stable); Remove takes an entry out of its list
//    in O(1) (see Insert cost). Upsert = remove the old entry, then add; a
//    repeated id within one batch keeps its last code.
//
// Search: FAISS's quantizer picks the nprobe nearest lists (SearchParams::
// nprobe, or the index default when 0; clamped to nlist); the lists are then
// scanned here with the dispatched Hamming kernel, so results are sorted by
// (distance, id) with ties resolved by id within the scanned lists (FAISS's
// own heap would break ties arbitrarily). visited_buckets lists the scanned
// list numbers. RangeSearch scans the same nprobe lists (approximate).
//
// Ids must be below 2^63 (FAISS ids are int64): InvalidArgument otherwise.
// bits must be a multiple of 8 (FAISS binary dimension). FAISS exceptions
// are caught here and returned as Status (Internal, or ResourceExhausted for
// std::bad_alloc). FAISS's k-means uses its OpenMP threads.
//
// Memory: while trained, FAISS's lists (code + 8-byte id per item), the
// centroids, and here a dense id array, each item's place in the lists and
// an id map for upserts and deletes (code_bytes + 8 + 8 + 8 + 5..11 bytes
// per item).
//
// Thread safety: as BinaryIndex (reader/writer lock around FAISS).
//
// Insert cost: a write of b items, once trained, is O(b * nlist) for the
// quantizer assignment plus amortised O(b) appends to the lists and the id
// array (geometric growth); an upsert first removes the old entries, and a
// delete of b ids removes b entries, each in O(1): the index keeps every
// item's list and offset, and the last entry of the list takes the removed
// one's place (FAISS's own remove_ids would pass over every list, O(n)). An
// upsert batch is atomic: list capacity is reserved and lists assigned
// before the first change. Before training, writes append to a buffer; the
// one training run (at train_threshold() items) holds the writer lock for
// its k-means.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "index/binary_index.h"
#include "core/hamming.h"
#include "index/id_map.h"
#include "index/list_source.h"
#include "index/rw_lock.h"

namespace faiss {
struct IndexBinaryFlat;
struct IndexBinaryIVF;
}  // namespace faiss

namespace hamdb {

class FaissIvfIndex : public BinaryIndex, public ListSource {
 public:
  // FAISS asks for at least 39 training points per list.
  static constexpr size_t kMinTrainPerList = 39;
  // Training uses at most this many points per list.
  static constexpr size_t kMaxTrainPerList = 64;

  // InvalidArgument for bad bits, bits % 8 != 0, nlist < 1 or
  // default_nprobe < 1.
  static StatusOr<std::unique_ptr<FaissIvfIndex>> Create(int bits, int nlist,
                                                         int default_nprobe = 1);
  ~FaissIvfIndex() override;

  // "IVF<nlist>" for default nprobe 1, else "IVF<nlist>_<nprobe>".
  std::string spec() const override;
  size_t size() const override;
  size_t memory_bytes() const override;

  int nlist() const { return nlist_; }
  bool trained() const;
  size_t train_threshold() const { return kMinTrainPerList * static_cast<size_t>(nlist_); }
  // Seconds the k-means training took (0 while untrained).
  double train_seconds() const;

  Status Remove(const uint64_t* ids, size_t n, size_t* removed) override;
  // Scores are not kept (keeps_scores() is false): an approximate index
  // orders ties by id only, and ExportItems gives no scores.
  Status ExportItems(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                     std::vector<uint16_t>* scores) const override;
  // The state holds whether the index is trained and its centroids, then
  // the items; LoadState puts each item back in the list of its nearest
  // centroid, so the lists are the same as when saved.
  Status SaveState(std::string* out) const override;
  Status LoadState(std::string_view state) override;
  StatusOr<SearchResult> Search(const uint8_t* query, size_t k,
                                const SearchParams& params) const override;
  StatusOr<SearchResult> RangeSearch(const uint8_t* query, uint32_t radius,
                                     const SearchParams& params) const override;

  // Read-only view of one inverted list, for scanners of the trained lists
  // (the GPU bucket scan). Valid while the caller holds no writer and the
  // index is not modified; empty when untrained or list >= nlist.
  // The k nearest (or, is_range, all within radius) among the items of
  // the lists probe_lists picks for query: the trained path of Search and
  // RangeSearch. Requires mu_ held.
  StatusOr<SearchResult> SearchProbedLists(const uint8_t* query, size_t k, uint32_t radius, bool is_range,
                                           const SearchParams& params) const;
  struct ListView {
    const uint8_t* codes = nullptr;  // size * code_bytes
    const int64_t* ids = nullptr;    // size ids
    size_t size = 0;
  };
  ListView list(int l) const;
  // The nprobe lists nearest `query` in order (empty when untrained).
  StatusOr<std::vector<int>> ProbeLists(const uint8_t* query, int nprobe) const;

  // ListSource (for the GPU scanner): FailedPrecondition while untrained.
  // Plans are the probed lists, never exact.
  Status ExportLists(std::vector<uint8_t>* codes, std::vector<uint64_t>* ids,
                     std::vector<uint64_t>* begin) const override;
  Status PlanLists(const uint8_t* query, size_t k, const SearchParams& params,
                   ListPlan* plan) const override;

 protected:
  // Scores are dropped (keeps_scores() is false).
  Status AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t* scores,
                  size_t n) override;

 private:
  FaissIvfIndex(int bits, int nlist, int default_nprobe);
  Status AddTrainedLocked(const uint64_t* ids, const uint8_t* codes, size_t n);
  Status AddPendingLocked(const uint64_t* ids, const uint8_t* codes, size_t n);
  // Removes the held id: from its list when trained (the list's last entry
  // moves into its place), and from the dense slots (the last slot moves
  // into its place). O(1); does not allocate.
  void EraseLocked(uint64_t id);
  Status TrainLocked();
  Status ExportItemsLocked(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes) const;
  // Every list's codes and ids in list order; *begin (optional) gets each
  // list's first position and the end. Requires mu_ held and a trained index.
  Status ExportListsLocked(std::vector<uint8_t>* codes, std::vector<uint64_t>* ids,
                           std::vector<uint64_t>* begin) const;
  StatusOr<std::vector<int>> ProbeListsLocked(const uint8_t* query, int nprobe) const;
  int ResolveNprobe(int requested) const;

  HammingKernel kernel_;
  int nlist_;
  int default_nprobe_;

  mutable WriterPriorityMutex mu_;
  std::unique_ptr<faiss::IndexBinaryFlat> quantizer_;
  std::unique_ptr<faiss::IndexBinaryIVF> ivf_;  // null until trained
  double train_seconds_ = 0;
  // Untrained: the buffered items (dense slots).
  std::vector<uint8_t> pending_codes_;
  // Untrained: ids of the buffered items; trained: ids held by FAISS.
  std::vector<uint64_t> ids_;
  // Trained: per slot, the item's list (high 32 bits) and its offset there.
  std::vector<uint64_t> place_;
  IdSlotMap slot_of_;
};

}  // namespace hamdb
