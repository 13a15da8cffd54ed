// CodeStore: the durable home of collections of binary codes (RocksDB).
//
// A store is one directory holding many named collections. A collection has
// a fixed code length in bits, an index spec (which search structure the
// service builds over it) and a free-form JSON settings object. An item has
// a 64-bit id, its instance code, and optionally a label, a class code of
// the same length, and JSON metadata. The on-disk layout is documented in
// docs/storage.md and carries a format version; a store written with an
// unknown version is refused at Open.
//
// Durability: every write is one atomic RocksDB WriteBatch through the
// write-ahead log, which is always on. With WriteOptions::sync = true (the
// default) the call returns only after the WAL is fsync'ed, so an
// acknowledged batch survives a power loss. With sync = false it survives a
// killed process (the WAL is in the OS page cache) but not a machine crash.
// A batch is all-or-nothing: after any crash it is present whole or absent.
//
// Upsert: Put of an id that exists replaces the whole item (code, label,
// class code and metadata). Items without an id get fresh ids from a
// per-collection counter that is always above every id ever written to the
// collection, so assigned ids never collide with user ids and are never
// reused after a delete.
//
// Errors are Status values, never aborts or exceptions: invalid names, a code
// length that does not match the collection, a missing collection or item,
// corrupt stored values and I/O failures such as a full disk.
//
// Group commit: WriteGroup writes several independent requests as one
// RocksDB batch, so they share one WAL write and one fsync; each request is
// validated on its own and a bad one is refused without touching the rest.
//
// Thread safety: all methods may be called concurrently. Writes (Put,
// Delete, WriteGroup, collection create/drop) are serialised by an internal
// mutex; reads run in parallel with them and see each batch whole or not at
// all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace rocksdb {
class Env;
class FileSystem;
}  // namespace rocksdb

namespace hamdb {

// The layout version this build writes (docs/storage.md). Stores of version
// 1 (no change log), 2 (no scores) and 3 (no thumbnails) are upgraded in
// place at open.
inline constexpr int kStoreFormatVersion = 4;

struct CollectionSpec {
  std::string name;        // [A-Za-z0-9][A-Za-z0-9_.-]{0,63}
  int bits = 0;            // 1..kMaxCodeBits
  std::string index_spec = "MIH";  // see MakeIndex in index/binary_index.h
  std::string settings_json = "{}";  // a JSON object, free-form
};

struct CollectionInfo {
  std::string name;
  int bits = 0;
  std::string index_spec;
  std::string settings_json;
  uint32_t internal_id = 0;  // key prefix; never reused after a drop
};

struct Item {
  uint64_t id = 0;
  std::vector<uint8_t> code;                     // code_bytes(bits) bytes
  std::optional<float> score;                    // finite; higher = more confident
  std::optional<int64_t> label;
  std::optional<std::vector<uint8_t>> class_code;  // code_bytes(bits) bytes
  std::string metadata_json;                     // empty = none; else a JSON value
};

// An item to write. Without id, the store assigns one.
struct ItemInput {
  std::optional<uint64_t> id;
  std::vector<uint8_t> code;
  std::optional<float> score;  // must be finite
  std::optional<int64_t> label;
  std::optional<std::vector<uint8_t>> class_code;
  std::string metadata_json;
  // A small PNG or JPEG of the item's image (at most
  // store_format::kMaxThumbnailBytes); empty = none. An upsert replaces the
  // item's thumbnail (removes it when this is empty); a delete removes it.
  std::string thumbnail;
};

struct StoreWriteOptions {
  // fsync the WAL before returning (see the durability note above).
  bool sync = true;
  // Put / PutCodes: the largest id the batch may hold, given or assigned.
  // A batch with a larger id is refused (InvalidArgument, nothing written).
  // The collection layer sets it to what its index takes.
  uint64_t max_id = UINT64_MAX;
};

struct StoreOpenOptions {
  bool create_if_missing = true;
  // RocksDB block cache for item records, in bytes.
  size_t block_cache_bytes = 64u << 20;
  // The environment every file of the store goes through (RocksDB's and the
  // index snapshots'); null: the default. Tests pass a fault-injecting one.
  rocksdb::Env* env = nullptr;
  // Write-ahead-log damage at open. false (the default): a damaged record
  // anywhere but a torn tail fails the open with Corruption, so no
  // acknowledged batch after it is silently dropped. true: recover every
  // batch before the first damaged record and drop the rest (RocksDB's
  // point-in-time recovery), for a store with no backup to restore from.
  bool salvage_wal = false;
};

// One request of a grouped write (CodeStore::WriteGroup): the inputs of a
// Put, a PutCodes or a Delete, and what that call would return.
struct GroupedWrite {
  enum class Kind { kPut, kPutCodes, kDelete };
  Kind kind = Kind::kPut;
  const std::vector<ItemInput>* items = nullptr;  // kPut
  const uint64_t* ids = nullptr;    // kPutCodes (null: all assigned) and kDelete
  const uint8_t* codes = nullptr;   // kPutCodes: n * code_bytes bytes
  const float* scores = nullptr;    // kPutCodes: n finite scores, or null (none)
  size_t n = 0;                     // kPutCodes and kDelete
  uint64_t max_id = UINT64_MAX;     // as StoreWriteOptions::max_id
  // Outputs.
  Status status;
  std::vector<uint64_t> assigned_ids;  // puts: the id of every item, in order
  size_t deleted = 0;                  // deletes: how many of the ids existed

  // Items the request writes or deletes.
  size_t size() const { return kind == Kind::kPut ? items->size() : n; }
};

// One backup in a backup directory (CodeStore::Backup).
struct StoreBackupInfo {
  uint32_t id = 0;
  int64_t timestamp = 0;         // seconds since the epoch
  uint64_t size_bytes = 0;       // RocksDB files of this backup (shared ones included)
  uint32_t files = 0;            // RocksDB files
  uint32_t snapshot_files = 0;   // index snapshots copied with it
};

class CodeStore {
 public:
  // Opens (or creates) the store in `dir`. Errors: NotSupported for an
  // unknown format version, FailedPrecondition when the directory is a
  // RocksDB that is not a hamdb store or is locked by another process,
  // IOError for file-system failures.
  static StatusOr<std::unique_ptr<CodeStore>> Open(const std::string& dir,
                                                   const StoreOpenOptions& options = {});
  ~CodeStore();
  CodeStore(const CodeStore&) = delete;
  CodeStore& operator=(const CodeStore&) = delete;

  const std::string& dir() const;

  // Collections. Create: InvalidArgument (bad name, bits, settings not a JSON
  // object), AlreadyExists. Drop: NotFound. Drop removes every item.
  Status CreateCollection(const CollectionSpec& spec, const StoreWriteOptions& wo = {});
  Status DropCollection(std::string_view name, const StoreWriteOptions& wo = {});
  StatusOr<std::vector<CollectionInfo>> ListCollections() const;
  StatusOr<CollectionInfo> GetCollection(std::string_view name) const;
  // Replaces a collection's settings JSON (must be an object).
  Status UpdateCollectionSettings(std::string_view name, std::string_view settings_json,
                                  const StoreWriteOptions& wo = {});

  // Atomic batch upsert. On success *assigned_ids (optional) receives the id
  // of every input item, in order. On any error nothing is written:
  // InvalidArgument names the first bad item (wrong code or class-code length,
  // non-zero padding, a score that is not finite, metadata that is not JSON,
  // a thumbnail that is not a PNG or JPEG or is too large).
  Status Put(std::string_view collection, const std::vector<ItemInput>& items,
             const StoreWriteOptions& wo = {}, std::vector<uint64_t>* assigned_ids = nullptr);

  // Fast path for bare codes: n codes of code_bytes(bits) bytes each
  // (n * code_bytes bytes, LSB-first). ids may be null (all assigned) or hold
  // n ids; scores may be null (no scores) or hold n finite scores. Replaces
  // any existing item with the same id, metadata and thumbnail included.
  Status PutCodes(std::string_view collection, const uint64_t* ids, const uint8_t* codes, size_t n,
                  const StoreWriteOptions& wo = {}, std::vector<uint64_t>* assigned_ids = nullptr,
                  const float* scores = nullptr);

  // NotFound when the collection or the item is missing; Corruption when the
  // stored bytes do not decode.
  StatusOr<Item> Get(std::string_view collection, uint64_t id) const;

  // The thumbnail of an item (ItemInput::thumbnail). NotFound when the
  // collection or the item is missing, or the item has no thumbnail.
  StatusOr<std::string> GetThumbnail(std::string_view collection, uint64_t id) const;

  // The id of a stored item picked by `r`: the first id at or after
  // min + r % (max - min + 1), where min and max are the collection's
  // smallest and largest ids. Uniform over ids spread evenly, biased
  // towards items after gaps otherwise. NotFound for an empty collection.
  StatusOr<uint64_t> SampleId(std::string_view collection, uint64_t r) const;

  // Atomically deletes the ids that exist; *deleted (optional) gets how many
  // did. Missing ids are not an error.
  Status Delete(std::string_view collection, const std::vector<uint64_t>& ids,
                const StoreWriteOptions& wo = {}, size_t* deleted = nullptr);

  // Writes the requests that pass validation as one atomic batch, in order:
  // a later request sees the earlier ones (an upsert then a delete of the
  // same id in one group leaves it deleted, and the delete counts it). A
  // request that fails validation gets its error in its status and writes
  // nothing; the others go on. The return value is the batch write's status;
  // when it fails, no request was written and each carries that error.
  // *sync_seconds (optional) gets the time this write spent in fsync (the
  // WAL's, and any other file RocksDB synced on the way; 0 without sync),
  // from RocksDB's per-thread I/O timers.
  Status WriteGroup(std::string_view collection, const std::vector<GroupedWrite*>& writes,
                    bool sync = true, double* sync_seconds = nullptr);

  // Streams every (id, code, score) in ascending id order, in chunks of up to
  // `chunk` items: fn(ids, codes, scores, n) gets n ids, n * code_bytes code
  // bytes and, when any item of the chunk has a score, n scores (NaN for an
  // item without one; null when none has), valid only during the call;
  // returning false stops the scan early. Reads a consistent snapshot. Only
  // the code column family is read, so this is the fast path for rebuilding
  // an index.
  using ScanFn = std::function<bool(const uint64_t* ids, const uint8_t* codes,
                                    const float* scores, size_t n)>;
  Status ScanCodes(std::string_view collection, const ScanFn& fn, size_t chunk = 65536) const;

  // Streams the label, class code and metadata of every item that has any,
  // in ascending id order: fn(item) gets an Item whose code and score are
  // empty, valid only during the call; returning false stops the scan. Only
  // the item record column family is read (for building in-memory indexes
  // of labels and metadata fields).
  using RecordFn = std::function<bool(const Item& item)>;
  Status ScanRecords(std::string_view collection, const RecordFn& fn) const;

  // Exact number of items (a key scan of the code column family: O(n)).
  StatusOr<uint64_t> Count(std::string_view collection) const;

  // Flushes memtables to SST files (WAL already makes writes durable).
  Status Flush();

  // The change log. Every write that changes a collection's items (Put,
  // PutCodes, Delete, WriteGroup) records the ids it touched under the
  // collection's next change sequence number, in the same atomic batch. An
  // index snapshot tagged with sequence number s is brought up to date by
  // re-reading the items touched after s.
  //
  // The collection's last change sequence number (0 before any change).
  StatusOr<uint64_t> ChangeSequence(std::string_view collection) const;
  // Calls fn(ids, n) for each change after `after`, oldest first; *last
  // (optional) gets the last sequence number read. FailedPrecondition when
  // the log no longer reaches back to `after` (trimmed, or `after` is ahead
  // of the log: a snapshot that does not belong to this store's history).
  using ChangeFn = std::function<void(const uint64_t* ids, size_t n)>;
  Status ChangesSince(std::string_view collection, uint64_t after, const ChangeFn& fn,
                      uint64_t* last = nullptr) const;
  // Drops the changes up to and including `upto`, once a snapshot that
  // reflects them is durable.
  Status TrimChanges(std::string_view collection, uint64_t upto);
  // Where the collection's index snapshot lives: DIR/snapshots/c<id>.hidx.
  // DropCollection removes it.
  std::string SnapshotPath(const CollectionInfo& info) const;
  // The file system of StoreOpenOptions::env, for files kept beside the
  // store's (index snapshots).
  rocksdb::FileSystem* file_system() const;

  // Backup and restore (docs/storage.md). Backup copies the index snapshots,
  // then takes a RocksDB backup (BackupEngine, incremental: files already in
  // backup_dir are shared) of the whole store while writes go on; the
  // backup holds every batch acknowledged before it began, each whole or
  // absent. The change log is not trimmed while the snapshots are copied,
  // so they always fit the backed-up log. IOError on file-system failures
  // (a full disk leaves earlier backups intact).
  StatusOr<StoreBackupInfo> Backup(const std::string& backup_dir);
  // The backups in backup_dir, oldest first. NotFound when there are none.
  static StatusOr<std::vector<StoreBackupInfo>> ListBackups(const std::string& backup_dir);
  // Restores backup `id` (0: the latest) into db_dir, which must not exist
  // or be empty: the store's files and its index snapshots. InvalidArgument
  // for a non-empty db_dir, NotFound for an unknown id, Corruption when a
  // file fails its checksum.
  static Status RestoreBackup(const std::string& backup_dir, uint32_t id,
                              const std::string& db_dir);
  // Verifies backup `id` (0: every backup): each RocksDB file's size and
  // checksum, and each index snapshot's checksum. Corruption names the
  // first bad file.
  static Status VerifyBackup(const std::string& backup_dir, uint32_t id);
  // Where backup `id` keeps its copies of the index snapshots.
  static std::string BackupSnapshotDir(const std::string& backup_dir, uint32_t id);

  // Verifies a store: the checksum of every block of every SST file, and
  // that every code and item record of every collection decodes. Corruption
  // names what is wrong; *items (optional) gets the number checked.
  Status Check(uint64_t* items = nullptr) const;

 private:
  struct Impl;
  explicit CodeStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Validates a collection name: 1..64 characters from [A-Za-z0-9_.-], starting
// with a letter or digit.
Status ValidateCollectionName(std::string_view name);

}  // namespace hamdb
