// ClassBucketIndex: an inverted file whose coarse quantizer is a learnt
// codebook of class codes (an LLC encoder's class codes), so no k-means
// training is needed. See docs/index.md.
//
// Every item belongs to the bucket of one class: the class given with it
// (AddWithClasses) or its predicted class, the minimum-Hamming decode of its
// code against the codebook (ties -> the lower class index). Each bucket
// keeps its members' codes contiguous, and its radius: the largest distance
// of a member to the bucket's class code (exact, maintained online from a
// per-bucket histogram of member distances).
//
// Search(q, k): the query's class distances d(q, c_b) order the buckets by
// (distance, class index); the first is the query's predicted class. The
// first nprobe buckets in that order are scanned (nprobe =
// SearchParams::nprobe, or the index default when 0) and ranked by instance
// distance; when they hold fewer than min(k, size()) items the search keeps
// going, bucket by bucket in the same order, until they do. nprobe = -1
// visits buckets in order of their lower bound (below) until the answer is
// provably exact.
//
// Exactness: an unvisited bucket b cannot hold an item closer to q than
// L_b = max(0, d(q, c_b) - radius_b) (triangle inequality). The answer is
// reported exact (SearchResult::exact) when it holds every item, or when the
// k-th found distance is strictly below min over unvisited non-empty buckets
// of L_b: with equality an unvisited item at that distance could have a
// smaller id and displace a tie, so equality is treated as not proven.
// SearchResult::visited_buckets lists the class indexes scanned, in order.
// Both tie rules are exact in the same way: a bound equal to the k-th
// distance is scanned, whatever decides the ties.
//
// RangeSearch(q, r) scans exactly the buckets with L_b <= r, so it is always
// exact.
//
// Storage per item: the code (in its bucket), the id twice (bucket copy for
// result assembly, dense global slots for the id map), two uint32 slot links
// and the id -> slot map (5..11 bytes): code_bytes + 28..34 bytes.
// Inserts, upserts and deletes are online; a delete swaps the last member of
// the bucket (and the last global slot) into the hole.
//
// Thread safety: as BinaryIndex: searches share a reader lock, writers take
// the writer lock. Insert cost: a write of b items is O(b * L) for decoding
// against L class codes (before any lock), plus O(b) appends to the global
// and bucket arrays under the writer lock; when those must grow
// (geometrically), the copy is made first under the reader lock, so searches
// go on, and swapped in under the writer lock. A single search runs on the
// calling thread; SearchBatch (inherited) spreads queries over threads.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "index/binary_index.h"
#include "core/hamming.h"
#include "index/id_map.h"
#include "index/list_source.h"
#include "index/rw_lock.h"

namespace hamdb {

class ClassBucketIndex : public BinaryIndex, public ListSource {
 public:
  // "No class given": AddWithClasses decodes the code instead.
  static constexpr uint32_t kDecodeClass = UINT32_MAX;

  // codebook: num_classes packed class codes (num_classes * code_bytes(bits)
  // bytes), copied. default_nprobe >= 1. Errors: InvalidArgument (bad bits,
  // codebook size not a multiple of code_bytes, padding bits set, more than
  // 2^31 - 1 classes, default_nprobe < 1), FailedPrecondition (empty
  // codebook: the collection has no encoder).
  static StatusOr<std::unique_ptr<ClassBucketIndex>> Create(int bits,
                                                            const std::vector<uint8_t>& codebook,
                                                            int default_nprobe = 1);

  // "Bucket" for default nprobe 1, else "Bucket<nprobe>".
  std::string spec() const override;
  size_t size() const override;
  size_t memory_bytes() const override;

  size_t num_classes() const { return num_classes_; }
  int default_nprobe() const { return default_nprobe_; }
  // The predicted class of `code`: argmin over classes of d(code, c),
  // ties -> lower index. Pure; thread-safe.
  uint32_t Decode(const uint8_t* code) const;
  // Members of class c and their radius (0 for an empty bucket). For tests
  // and statistics; c < num_classes().
  size_t bucket_size(uint32_t c) const;
  uint32_t bucket_radius(uint32_t c) const;

  bool keeps_scores() const override { return true; }
  // Add with given classes: classes[i] < num_classes(), or kDecodeClass to
  // decode that item; scores may be null (Add). InvalidArgument for a class
  // out of range (nothing added).
  Status AddWithClasses(const uint64_t* ids, const uint8_t* codes, const uint32_t* classes,
                        size_t n, const uint16_t* scores = nullptr);
  Status Remove(const uint64_t* ids, size_t n, size_t* removed) override;
  Status Lookup(const uint64_t* ids, size_t n, uint8_t* codes, uint16_t* scores,
                uint8_t* found) const override;
  Status ExportItems(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                     std::vector<uint16_t>* scores) const override;
  StatusOr<SearchResult> Search(const uint8_t* query, size_t k,
                                const SearchParams& params) const override;
  StatusOr<SearchResult> RangeSearch(const uint8_t* query, uint32_t radius,
                                     const SearchParams& params) const override;

  // ListSource (for the GPU scanner): buckets in class order; the plan of
  // Search for nprobe >= 1 (NotSupported for nprobe = -1).
  Status ExportLists(std::vector<uint8_t>* codes, std::vector<uint64_t>* ids,
                     std::vector<uint64_t>* begin) const override;
  Status PlanLists(const uint8_t* query, size_t k, const SearchParams& params,
                   ListPlan* plan) const override;

 protected:
  // Add with decoded classes (many items are decoded in parallel).
  // Errors: InvalidArgument (null arrays, padding bits set; nothing added),
  // ResourceExhausted (more than 2^32 - 2 items, out of memory).
  Status AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t* scores,
                  size_t n) override;

 private:
  struct Bucket {
    std::vector<uint8_t> codes;    // members * code_bytes
    std::vector<uint64_t> ids;     // member ids
    SlotScores scores;             // member score keys
    std::vector<uint32_t> gslots;  // global slot of each member
    std::vector<uint32_t> hist;    // hist[d]: members at distance d from the class code
    uint32_t radius = 0;           // largest d with hist[d] > 0
  };

  ClassBucketIndex(int bits, std::vector<uint8_t> codebook, int default_nprobe);
  // Room for a write of n items of the given classes, made off the
  // exclusive lock as in FlatIndex (SlotGrowth, index/id_map.h): PrepareGrowth
  // (write_mu_ held, mu_ shared; may throw std::bad_alloc) copies into larger
  // arrays the global slots, the id map and each receiving bucket's members
  // where they would have to grow; AdoptGrowth (mu_ exclusive) swaps them in.
  struct Growth;
  void PrepareGrowth(const uint32_t* classes, size_t n, Growth* g) const;
  void AdoptGrowth(Growth* g);
  Status AddLocked(const uint64_t* ids, const uint8_t* codes, const uint32_t* classes,
                   const uint16_t* scores, size_t n);
  void RemoveSlotLocked(uint32_t gslot);
  // d(query, class c) for every class.
  std::vector<uint16_t> ClassDistances(const uint8_t* query) const;
  // The nprobe >= 1 visiting plan (requires mu_): the first nprobe buckets
  // by class distance, then more until they hold min(k, size()) items.
  ListPlan PlanLocked(const std::vector<uint16_t>& cd, size_t k, int nprobe) const;
  // Lower bound on the distance of any member of c: max(0, d - radius).
  static uint32_t LowerBound(uint32_t class_distance, uint32_t radius) {
    return class_distance > radius ? class_distance - radius : 0;
  }

  HammingKernel kernel_;
  size_t num_classes_;
  int default_nprobe_;
  std::vector<uint8_t> codebook_;  // num_classes_ * code_bytes

  // Writers hold write_mu_ throughout, and mu_ exclusively only to apply
  // their change.
  std::mutex write_mu_;
  mutable WriterPriorityMutex mu_;
  std::vector<Bucket> buckets_;      // one per class
  std::vector<uint64_t> ids_;        // global dense slots
  std::vector<uint32_t> bucket_of_;  // per global slot
  std::vector<uint32_t> pos_;        // per global slot: position in its bucket
  IdSlotMap slot_of_;
};

}  // namespace hamdb
