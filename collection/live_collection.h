// LiveCollection: the one owner of a collection's state. It opens a
// collection (settings, encoder binding, spec to index, index built from the
// store), writes to the store first and the index second, answers searches
// and the metadata lookups for hits, and owns the collection's health.
//
// Consistency contract (docs/storage.md):
//  - Everything an index can refuse that is known before a write (ids above
//    the spec's max_id, code lengths, padding) is checked by the store's
//    atomic batch before anything is written: a refused batch stores nothing.
//  - A write is acknowledged only once it is durable in the store. If the
//    index update then fails (out of memory, a FAISS exception), the write
//    still succeeds, with *warning set: the collection turns degraded, drops
//    its index and rebuilds it from the store on a background thread, with
//    exponential back-off between failed attempts (never a hot loop).
//  - While degraded, gets, writes and deletes work as usual, and every search
//    is answered by an exact scan of the store (slower, but exact), flagged by
//    *from_store_scan.
//  - Open never fails because of data the collection accepted: if the index
//    cannot be built at start the collection opens degraded, with the reason
//    in health(), and the background rebuild takes over.
//
// Group commit: writes queue in arrival order. The writer at the head of the
// queue takes everything queued behind it (up to kMaxGroupItems items),
// writes it to the store as one batch with one fsync (CodeStore::WriteGroup),
// applies each request to the index in that same order, and then answers
// every writer of the group. So concurrent writers share fsyncs, the index
// sees writes in commit order, and each is acknowledged only once durable.
//
// Thread safety: every method may be called from many threads at once.
// Write groups (and rebuilds) are serialised; searches run concurrently with
// them. The CodeStore must outlive the LiveCollection.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "collection/field_index.h"
#include "collection/filter.h"
#include "collection/settings.h"
#include "db/code_store.h"
#include "encoder/encoder.h"
#include "index/binary_index.h"
#include "index/index_factory.h"

namespace hamdb {

// Loads an encoder artifact (`hamdb serve` passes Encoder::Load; torch-free
// callers and tests pass their own).
using EncoderLoader =
    std::function<StatusOr<std::shared_ptr<const Encoder>>(const std::string& path)>;

// Builds an empty index; MakeIndex unless a test injects another.
using IndexMaker = std::function<StatusOr<std::unique_ptr<BinaryIndex>>(
    std::string_view spec, int bits, const IndexOptions& options)>;

struct LiveCollectionOptions {
  // Index spec; empty means the collection's own (CollectionInfo::index_spec).
  // A bad spec given here is an error of Open; the stored one never is.
  std::string index_spec;
  // Loads the encoder named in the settings. Unset: no encoder is loaded and
  // encoder_error() says why.
  EncoderLoader encoder_loader;
  // An encoder already loaded for this collection (a create that just loaded
  // it); used instead of calling encoder_loader.
  std::shared_ptr<const Encoder> encoder;
  // Called during the build with (codes read from the store so far, codes in
  // total); the index is then built from them in one bulk Add.
  std::function<void(uint64_t done, uint64_t total)> progress;
  // Items per scan chunk during the build and the store-scan searches.
  size_t scan_chunk = 65536;
  IndexMaker index_maker;
  // Back-off of the background rebuild: the first retry waits rebuild_delay,
  // each failure doubles the wait, up to max_rebuild_delay.
  std::chrono::milliseconds rebuild_delay{1000};
  std::chrono::milliseconds max_rebuild_delay{std::chrono::minutes(5)};
  // Index snapshots (collection/index_snapshot.h): when on, Open loads the
  // snapshot and replays the changes after it instead of rebuilding, and a
  // background thread writes a new snapshot once snapshot_after_items items
  // were written or deleted since the last, or snapshot_interval has passed
  // with any change (and SaveSnapshot writes one on demand, e.g. at a clean
  // shutdown).
  bool snapshots = false;
  uint64_t snapshot_after_items = 1000000;
  std::chrono::milliseconds snapshot_interval{std::chrono::minutes(10)};
  // How filtered searches are planned (collection/filter.h).
  FilterPlanning filter_planning;
  // Items per sealed block of the field index's posting lists
  // (collection/field_index.h); small values are for tests.
  size_t field_block_items = FieldIndex::kDefaultBlockItems;
};

// How Open obtained the index, for logs and the restart benchmark.
struct IndexOpenInfo {
  bool from_snapshot = false;
  std::string why_rebuilt;    // when not from a snapshot: why (no file, corrupt, ...)
  uint64_t replayed_ids = 0;  // ids re-read from the store after the snapshot
  double seconds = 0;         // to obtain the index
  // From a snapshot: reading and verifying the file, restoring the index
  // state, and replaying the changes after it.
  double read_seconds = 0, load_seconds = 0, replay_seconds = 0;
};

// What GET /collections/{name} shows of a collection's state.
struct CollectionHealth {
  bool degraded = false;
  std::string reason;            // why it is degraded; empty when healthy
  int failed_rebuilds = 0;       // since it turned degraded
  double next_rebuild_in_s = 0;  // when degraded: until the next attempt
};

class LiveCollection {
 public:
  // Checks, then creates a collection in the store: the name, bits, the
  // index spec against the table (a codebook is needed for bucket specs and
  // taken from settings.codebook), the settings. Nothing is written when a
  // check fails. InvalidArgument, FailedPrecondition, AlreadyExists.
  static Status Create(CodeStore* store, const std::string& name, int bits,
                       const std::string& index_spec, const CollectionSettings& settings,
                       const StoreWriteOptions& wo = {});

  // Opens a collection and builds its index from the store. Errors: NotFound
  // (no such collection), InvalidArgument or FailedPrecondition for a bad
  // options.index_spec, a store read error. Anything else that prevents the
  // index from being built opens the collection degraded (see above).
  static StatusOr<std::unique_ptr<LiveCollection>> Open(CodeStore* store, std::string_view name,
                                                        const LiveCollectionOptions& options = {});
  ~LiveCollection();
  LiveCollection(const LiveCollection&) = delete;
  LiveCollection& operator=(const LiveCollection&) = delete;

  const CollectionInfo& info() const { return info_; }
  int bits() const { return info_.bits; }
  // The spec in use (options.index_spec or the stored one) and its table row.
  const IndexSpecInfo& spec() const { return spec_; }
  const CollectionSettings& settings() const { return settings_; }
  // Null when the collection has no encoder or it failed to load.
  const std::shared_ptr<const Encoder>& encoder() const { return encoder_; }
  // Why encoder() is null although the settings name an encoder.
  const Status& encoder_error() const { return encoder_error_; }

  CollectionHealth health() const;
  bool degraded() const { return health().degraded; }
  // Items and heap bytes of the index (0 while degraded: there is none).
  size_t index_size() const;
  size_t index_memory_bytes() const;
  // The in-memory index of settings().indexed_fields; null when there are
  // none, and while degraded (filters then read the store).
  std::shared_ptr<const FieldIndex> field_index() const;

  // Store first (durable, atomic), then the index. Same contracts as
  // CodeStore::Put / PutCodes / Delete, with ids above spec().max_id refused
  // before anything is written. *warning (optional) is set when the write is
  // durable but the index update failed (the collection is then degraded).
  Status Put(const std::vector<ItemInput>& items, const StoreWriteOptions& wo = {},
             std::vector<uint64_t>* assigned_ids = nullptr, std::string* warning = nullptr);
  Status PutCodes(const uint64_t* ids, const uint8_t* codes, size_t n,
                  const StoreWriteOptions& wo = {}, std::vector<uint64_t>* assigned_ids = nullptr,
                  std::string* warning = nullptr, const float* scores = nullptr);
  Status Delete(const std::vector<uint64_t>& ids, const StoreWriteOptions& wo = {},
                size_t* deleted = nullptr, std::string* warning = nullptr);

  // Write groups committed, the write requests they carried (refused ones
  // included), the items the store took from them (ids to delete count as
  // items; a refused request's items do not), and the time their commits
  // spent, by stage: the store batch (its WAL sync included, and that sync
  // alone) and the index updates. Commits run one at a time, so
  // (store_seconds + index_seconds) over a stretch of time is the share of
  // it the commit path was busy.
  struct WriteStats {
    uint64_t groups = 0;
    uint64_t writes = 0;
    uint64_t items = 0;
    double store_seconds = 0;
    double sync_seconds = 0;
    double index_seconds = 0;
  };
  WriteStats write_stats() const;
  // Write requests queued or being committed now.
  size_t pending_writes() const;

  // A group takes at most this many items, unless its first request alone
  // has more.
  static constexpr size_t kMaxGroupItems = 65536;

  // A stored item (the metadata lookup for hits). NotFound when absent.
  StatusOr<Item> Get(uint64_t id) const;
  // An item's thumbnail; NotFound when the item or its thumbnail is absent.
  StatusOr<std::string> Thumbnail(uint64_t id) const;
  // A stored item's id picked by r (CodeStore::SampleId). NotFound when empty.
  StatusOr<uint64_t> SampleId(uint64_t r) const;

  // The tie rule of a search that names none: settings().tie_break, or by
  // default "score" for a collection with an encoder and "id" otherwise;
  // always "id" when the index does not keep scores (spec().keeps_scores).
  TieBreak default_tie_break() const;

  // Searches (see BinaryIndex); queries are code_bytes(bits) bytes each.
  // p.tie_break = kScore is InvalidArgument when the index keeps no scores.
  // *from_store_scan (optional) tells whether a degraded collection answered
  // by an exact scan of the store.
  StatusOr<SearchResult> Search(const uint8_t* query, size_t k, const SearchParams& p = {},
                                bool* from_store_scan = nullptr) const;
  StatusOr<SearchResult> RangeSearch(const uint8_t* query, uint32_t radius,
                                     const SearchParams& p = {},
                                     bool* from_store_scan = nullptr) const;
  Status SearchBatch(const uint8_t* queries, size_t nq, size_t k, const SearchParams& p,
                     std::vector<SearchResult>* out, bool* from_store_scan = nullptr) const;

  // Writes an index snapshot now if anything changed since the last one,
  // then trims the store's change log up to it. Writes wait while the index
  // state is copied (a memcpy of the items), not while the file is written.
  // FailedPrecondition while degraded; IOError from the file system.
  Status SaveSnapshot();
  const IndexOpenInfo& open_info() const { return open_info_; }

  // Blocks until the collection is healthy or `timeout` passes; true when
  // healthy. For tests and tools that need the rebuilt index.
  bool WaitHealthy(std::chrono::milliseconds timeout) const;

 private:
  LiveCollection(CodeStore* store, CollectionInfo info, IndexSpecInfo spec,
                 LiveCollectionOptions options);

  // A write request waiting in the queue for its group to commit.
  struct PendingWrite {
    GroupedWrite op;
    bool sync = true;
    std::string* warning = nullptr;
    bool done = false;  // committed by another writer's group; op.status is final
    std::condition_variable cv;
  };
  // Queues w and returns once it is committed (by this thread as the group's
  // leader, or by another).
  Status Commit(PendingWrite* w);

  // Builds a fresh index, and the field index when fields are declared
  // (*fields; else null), from the store. Caller holds write_mu_.
  StatusOr<std::shared_ptr<BinaryIndex>> BuildIndex(std::shared_ptr<FieldIndex>* fields) const;
  // An empty field index of the declared fields, or null for none.
  std::shared_ptr<FieldIndex> NewFieldIndex() const;
  std::shared_ptr<BinaryIndex> CurrentIndex() const;
  // Drops the index, records why and wakes the rebuild thread.
  void MarkDegraded(const Status& why);
  // Applies a durable write (`what`: "write" or "delete") to the index, if
  // there is one. A failure degrades the collection and sets *warning.
  // Caller holds write_mu_.
  // field_updates gives the same write for the field index, if there is
  // one; both are applied under the field index's write lock, so that a
  // filtered search sees the write in both or in neither.
  void UpdateIndex(const char* what, std::string* warning,
                   const std::function<Status(BinaryIndex&)>& update,
                   const std::function<std::vector<FieldIndex::Update>()>& field_updates);
  void RebuildLoop();
  // Open's fast path: the snapshot plus the changes after it. Caller holds
  // write_mu_. An error says why the index must be rebuilt instead.
  StatusOr<std::shared_ptr<BinaryIndex>> LoadSnapshot(std::shared_ptr<FieldIndex>* fields);
  bool SnapshotDue() const;  // requires state_mu_
  StatusOr<SearchResult> ScanStore(const uint8_t* query, size_t k, uint32_t radius,
                                   bool is_range, TieBreak tie, const IdFilter* filter) const;
  // InvalidArgument when p asks for score ties from an index without scores,
  // or for a filter from an index that cannot filter.
  Status CheckTieBreak(const SearchParams& p) const;

  CodeStore* store_;
  CollectionInfo info_;
  IndexSpecInfo spec_;
  LiveCollectionOptions options_;
  CollectionSettings settings_;
  IndexOptions index_options_;
  std::shared_ptr<const Encoder> encoder_;
  Status encoder_error_;

  std::mutex write_mu_;  // serialises write groups and rebuilds

  mutable std::mutex queue_mu_;  // guards the write queue and stats
  std::deque<PendingWrite*> queue_;
  WriteStats write_stats_;

  mutable std::mutex state_mu_;  // guards the fields below
  mutable std::condition_variable state_cv_;
  std::shared_ptr<BinaryIndex> index_;  // null while degraded
  std::shared_ptr<FieldIndex> fields_;  // null while degraded or with no fields
  std::string degraded_reason_;
  int failed_rebuilds_ = 0;
  std::chrono::steady_clock::time_point next_rebuild_;
  bool stopping_ = false;
  std::thread rebuild_thread_;  // the rebuild after degradation, and snapshots
  // Snapshots: items written since the last one, when it was taken, and
  // the change sequence number it reflects (guarded by state_mu_).
  uint64_t items_since_snapshot_ = 0;
  // Set at open when the index was rebuilt from a non-empty store: the next
  // start would rebuild again, so a snapshot is written soon.
  bool snapshot_missing_ = false;
  std::chrono::steady_clock::time_point last_snapshot_;
  std::chrono::steady_clock::time_point next_snapshot_try_;  // after a failure
  std::mutex snapshot_mu_;  // one snapshot write at a time
  uint64_t snapshot_seq_ = 0;  // guarded by snapshot_mu_
  IndexOpenInfo open_info_;
};

}  // namespace hamdb
