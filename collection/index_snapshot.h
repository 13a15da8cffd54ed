// Index snapshots: a collection's index saved to one checksummed, versioned
// file, so that a restart loads it instead of rebuilding from the store.
//
// File layout (little-endian), written by WriteIndexSnapshot:
//   "hamdbidx"                  8-byte magic
//   u32 format version          kIndexSnapshotVersion
//   u32 H, then H bytes         header JSON: collection_id, collection, spec,
//                               bits, change_seq, items
//   u64 S, then S bytes         the index's state (BinaryIndex::SaveState)
//   u64 F, then F bytes         the field index's state (FieldIndex::
//                               AppendState); F = 0 when the collection
//                               indexes no fields
//   u64 checksum                XXH3-64 of every byte before it
// Version 4 files (this layout without the field index's state) are read
// too, with no field state.
// A snapshot reflects the store up to its change sequence number
// (CodeStore::ChangeSequence); the changes after it are replayed from the
// store's change log at open.
//
// Writes are atomic: the file is written beside its final name, fsynced,
// renamed over it, and the directory fsynced, all through the store's
// FileSystem (so fault-injection tests see every step). A reader sees the
// old snapshot or the new one, never a mix.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace rocksdb {
class FileSystem;
}  // namespace rocksdb

namespace hamdb {

inline constexpr uint32_t kIndexSnapshotVersion = 5;

struct IndexSnapshotHeader {
  uint32_t collection_id = 0;  // CollectionInfo::internal_id
  std::string collection;      // the name, for people reading logs
  std::string spec;            // the index spec the state belongs to
  int bits = 0;
  uint64_t change_seq = 0;  // the store's change sequence number it reflects
  uint64_t items = 0;
};

// Writes header and state to `path` atomically (see above). IOError on any
// file-system failure; the previous snapshot, if any, is then untouched.
Status WriteIndexSnapshot(rocksdb::FileSystem* fs, const std::string& path,
                          const IndexSnapshotHeader& header, std::string_view state,
                          std::string_view fields_state = {});

// Reads and verifies a snapshot; *fields_state (optional) gets the field
// index's state (empty when it has none). NotFound when there is no file; Corruption
// for a bad magic, a short file, a checksum mismatch or a header that does
// not decode; NotSupported for another format version.
Status ReadIndexSnapshot(rocksdb::FileSystem* fs, const std::string& path,
                         IndexSnapshotHeader* header, std::string* state,
                         std::string* fields_state = nullptr);

}  // namespace hamdb
