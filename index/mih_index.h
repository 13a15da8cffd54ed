// MihIndex: exact Hamming search by multi-index hashing (Norouzi, Punjani,
// Fleet, "Fast exact search in Hamming space with multi-index hashing",
// TPAMI 2014). See docs/index.md for the design and the cost model.
//
// Each code of bits() bits is cut into m contiguous substrings, as even as
// possible (the first bits % m are one bit wider); substring j has its own
// hash table from substring value to the slots holding it. By pigeonhole, an
// item at distance d from the query has some substring within floor(d / m)
// of the query's, so probing every table at substring radius 0, 1, 2, ...
// finds near items first; candidates are verified with the full distance.
// Searches are exact: the same lists as FlatIndex under either tie rule
// (the probe stops only once every item at or below the k-th distance has
// been seen, so ties are decided among all of them).
//
// Storage: ids, codes and score keys once, in dense slots (like FlatIndex; deletes move
// the last slot into the hole), plus per table a CSR bucket array (one
// packed slot per item and, for direct-addressed tables, compressed bucket
// starts) and a small overflow map for slots whose content changed since
// the last table rebuild, with a filter of one bit per item that spares a
// probe the map's lookup for the values it does not hold. A write never
// searches a table: a slot's old entries are left in place as stale ones
// (a probe verifies every candidate by its code, skips what points past
// the slots and drops what would come twice), and its new content is
// inserted into the overflow. Tables are rebuilt when the overflow and the
// stale entries exceed 1/8 of the items, and m is re-chosen (about
// bits / log2(n)) when the size has changed 4x since it was last chosen.
// memory_bytes() measures all of it.
//
// Search cost model: a search becomes an exhaustive scan (the FlatIndex
// algorithm over the same slots) when the collection is tiny, when k is a
// large fraction of it, when the predicted work to finish probing exceeds a
// scan (buckets left to reach the expected k-th distance, times the
// candidates per bucket seen so far), or when the work done exceeds a scan
// (a hard cap: a search costs at most about two scans).
// SearchParams::mih_mode forces either path (1 = probe, -1 = scan).
//
// Thread safety: as BinaryIndex (reader/writer lock). A single query probes
// on the calling thread; its scan fallback uses SearchParams::num_threads.
// Writes are serialised. Write cost: a write of b items (inserts, upserts
// or deletes) holds the exclusive lock for O(b * m) overflow inserts and
// O(b) slot changes, whatever n is (hamdb bench writes, docs/benchmarks.md).
// When the slot arrays, the id map or an overflow map must grow
// (geometrically), the O(n) copy is made first under the shared lock, while
// searches go on, and swapped in under the exclusive lock. A rebuild it
// triggers (m re-chosen, or a table compacted) runs on a background thread:
// it copies the codes under the shared lock, builds without a lock while
// later writes log their table changes, replays the log under shared locks,
// and replays the last few changes and swaps under a short exclusive lock
// (bounded by a constant number of changes unless writers log faster than
// the replay keeps up). Only a bulk write (the first load, or a batch larger
// than an eighth of the index) rebuilds under the exclusive lock, for a time
// proportional to the batch.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "index/binary_index.h"
#include "core/hamming.h"
#include "index/id_map.h"
#include "index/packed_ints.h"
#include "index/rw_lock.h"
#include "index/scan.h"

namespace hamdb {

class MihIndex : public BinaryIndex {
 public:
  // An empty index. num_substrings == 0 chooses m automatically (and
  // re-chooses it as the index grows or shrinks); otherwise m is fixed.
  // InvalidArgument when bits is invalid or a fixed m is outside
  // [ceil(bits / 64), bits] (a substring is at most 64 bits wide).
  static StatusOr<std::unique_ptr<MihIndex>> Create(int bits, int num_substrings);
  ~MihIndex() override;

  // The automatic m for n items of `bits` bits: round(bits / log2(max(n, 512))),
  // clamped to [ceil(bits / 64), bits].
  static int ChooseNumSubstrings(size_t n, int bits);

  // "MIH" when m is automatic, "MIH<m>" when fixed.
  std::string spec() const override;
  size_t size() const override;
  size_t memory_bytes() const override;
  // The m currently in use (0 while an automatic index is empty and has
  // never held items).
  int num_substrings() const;
  // Queries answered since creation, by probing the tables and by the scan
  // (forced, or chosen by the cost model); k-NN and range, each query of a
  // batch once. For tuning and benchmarks: how often the model scans.
  struct PathCounts {
    uint64_t probed = 0;
    uint64_t scanned = 0;
  };
  PathCounts path_counts() const;
  // Background table rebuilds swapped in since creation, and the table
  // changes writers made while they built, which each replayed before its
  // swap: under shared locks (searches going on) or under the swap's
  // exclusive lock. For tuning and tests.
  struct RebuildCounts {
    uint64_t swaps = 0;
    uint64_t replayed_shared = 0;
    uint64_t replayed_exclusive = 0;
  };
  RebuildCounts rebuild_counts() const;

  bool keeps_scores() const override { return true; }
  Status Remove(const uint64_t* ids, size_t n, size_t* removed) override;
  Status Lookup(const uint64_t* ids, size_t n, uint8_t* codes, uint16_t* scores,
                uint8_t* found) const override;
  Status ExportItems(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                     std::vector<uint16_t>* scores) const override;
  // The slots, the id map and the tables as they are: loading is copies
  // (and checks), not a table build.
  Status SaveState(std::string* out) const override;
  Status LoadState(std::string_view state) override;
  StatusOr<SearchResult> Search(const uint8_t* query, size_t k,
                                const SearchParams& params) const override;
  StatusOr<SearchResult> RangeSearch(const uint8_t* query, uint32_t radius,
                                     const SearchParams& params) const override;
  // A batch of at least as many queries as threads probes each query on one
  // thread, and answers the queries whose probe gave up by one query-blocked
  // scan (ScanKnnBatch) instead of a scan each. A probe gives up when its
  // predicted work exceeds a scan split over all the threads, about what a
  // query costs in the blocked scan. A smaller batch runs Search per query.
  Status SearchBatch(const uint8_t* queries, size_t nq, size_t k, const SearchParams& params,
                     std::vector<SearchResult>* out) const override;

 protected:
  // Errors: InvalidArgument (null arrays, padding bits set; nothing added),
  // ResourceExhausted (more than 2^32 - 2 items, or out of memory).
  Status AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t* scores,
                  size_t n) override;

 private:
  struct Table;
  class KeyMap;
  class OverflowMap;
  // Room for a write of `appends` new slots and `inserts` overflow inserts
  // per table, made off the exclusive lock: PrepareGrowth (write_mu_ held,
  // mu_ shared) copies into larger arrays the slots, id map and (unless
  // bulk) overflow maps that would have to grow;
  // AdoptGrowth (mu_ exclusive) swaps them in, O(1), skipping the overflow
  // maps when a background rebuild swapped tables meanwhile.
  struct Growth;
  void PrepareGrowth(size_t appends, size_t inserts, bool bulk, Growth* g) const;
  void AdoptGrowth(Growth* g);

  MihIndex(int bits, int fixed_m);

  SlotView View(const IdFilter* filter = nullptr) const;
  // Defined inline in mih_index.cc, its only user (on the probe's hot path).
  inline uint64_t SubstringOf(const uint8_t* code, const Table& t) const;
  // Sets up m empty tables (substring bit ranges) and rebuilds them.
  void Configure(int m);
  // m tables over the n codes at `codes` (slot s at s * code_bytes()),
  // built without touching tables_.
  std::vector<Table> BuildTables(int m, const uint8_t* codes, size_t n) const;
  // Rebuilds *t over the n codes at `codes`.
  void RebuildTable(Table* t, const uint8_t* codes, size_t n) const;
  void RebuildAll();

  // Table work a write leaves behind: a new m, or tables to compact.
  struct RebuildPlan {
    int m = 0;                   // > 0: rebuild all tables with this m
    std::vector<size_t> tables;  // else: rebuild these tables
    bool empty() const { return m == 0 && tables.empty(); }
  };
  // After a write: re-chooses m when the size moved 4x, and finds tables
  // whose overflow and stale entries grew too large. A bulk write (tables not kept
  // up to date) rebuilds in place, under the caller's exclusive lock; an
  // incremental write leaves the tables consistent and returns the plan,
  // which FinishWrite carries out while searches go on.
  RebuildPlan AfterWrite(bool bulk);
  // Starts the planned rebuild on a background thread and returns: writes
  // and searches go on. The thread copies the slots' codes under a shared
  // lock, builds the new tables without a lock while writers log every
  // table change they make, replays the log into the new tables under
  // shared locks until little is left, then, under a short exclusive lock,
  // replays the rest and swaps them in. Requires the caller to be the
  // only writer (write_mu_) and to hold mu_ not at all. Out of memory, or a
  // bulk write meanwhile (which rebuilds the live tables in place), discards
  // the result; the live tables stay correct throughout.
  void FinishWrite(const RebuildPlan& plan);
  void RunRebuild(const RebuildPlan& plan);
  // Table changes, each O(m) and logged while a background rebuild runs:
  // InsertSlot gives `slot`'s content an entry in each table's overflow;
  // RetireEntries counts one slot's entries stale in each table, before its
  // content changes or goes (the entries stay; see Table in mih_index.cc).
  void InsertSlot(uint32_t slot);
  void RetireEntries();
  // Applies the logged inserts [begin, end) and `stale` retirements to the
  // tables being built.
  void ReplayLog(size_t begin, size_t end, size_t stale, std::vector<Table>* built) const;
  // Whether a table may hold stale entries (a probe then drops duplicates).
  bool HasStaleEntries() const;

  // Probing k-NN; returns false (out untouched) when `budget` work units
  // were exceeded and the caller should scan instead. filter: null, or only
  // the items it allows count and are returned.
  bool ProbeKnn(const uint8_t* query, size_t k, double budget, TieBreak tie, const IdFilter* filter,
                std::vector<Neighbor>* out) const;
  bool ProbeRange(const uint8_t* query, uint32_t radius, double budget, TieBreak tie,
                  const IdFilter* filter, std::vector<Neighbor>* out) const;
  // Work units of one exhaustive scan of all slots with `threads` threads.
  double ScanCost(int threads) const;
  // Whether a k-NN search should probe before it scans (mih_mode, the size
  // of the index, k against the scan), and the work *budget the probe may
  // spend: a scan on `threads` threads, or no limit when probing is forced.
  // Requires mu_ held.
  bool KnnProbeBudget(size_t k, const SearchParams& params, int threads, double* budget) const;

  const int fixed_m_;  // 0 = automatic
  HammingKernel kernel_;
  mutable WriterPriorityMutex mu_;
  mutable std::atomic<uint64_t> probed_{0}, scanned_{0};  // path_counts()
  // Serialises whole writes (Add / Remove, including FinishWrite's rebuild
  // outside mu_), so a rebuilt table always matches the slots it swaps into.
  std::mutex write_mu_;
  CodeArray codes_;  // size() * code_bytes(), dense slots
  std::vector<uint64_t> ids_;
  SlotScores scores_;
  IdSlotMap slot_of_;
  std::vector<Table> tables_;  // m tables, substring j = bits [offset, offset + width)
  size_t n_at_choice_ = 0;     // size when m was last chosen
  // The background rebuild (FinishWrite). Guarded by mu_, except
  // rebuild_thread_, which only the writer (write_mu_) starts and joins.
  bool rebuilding_ = false;
  bool logging_ = false;
  uint64_t table_generation_ = 0;  // bumped by every in-place full rebuild
  uint64_t table_swaps_ = 0;       // bumped by every background rebuild's swap
  uint64_t replayed_shared_ = 0, replayed_exclusive_ = 0;  // rebuild_counts()
  std::vector<uint32_t> log_;       // slots inserted while a rebuild runs
  std::vector<uint8_t> log_codes_;  // code_bytes() per insert: the slot's code then
  size_t log_stale_ = 0;            // RetireEntries calls while a rebuild runs
  std::thread rebuild_thread_;
};

}  // namespace hamdb
