// LiveCollection: one store collection plus its in-memory search index,
// kept consistent.
//
// Open() rebuilds the index from the store's code scan (reporting progress
// for large collections). Every write goes to the store first, as one
// durable atomic batch, and only then to the index, under one writer mutex,
// so the index never holds an item the store has not acknowledged, and two
// writers cannot apply their batches to store and index in different orders.
// If a process dies between the two steps nothing is lost: the next Open
// rebuilds the index from the store.
//
// Thread safety: searches may run concurrently with each other and with one
// write at a time (writes are serialised internally). The CodeStore must
// outlive the LiveCollection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "db/code_store.h"
#include "index/binary_index.h"

namespace hamdb {

struct LiveCollectionOptions {
  // Index spec; empty means the collection's own (CollectionInfo::index_spec).
  std::string index_spec;
  // Called during the rebuild with (codes read from the store so far, codes
  // in total); the index is then built from them in one bulk Add.
  std::function<void(uint64_t done, uint64_t total)> progress;
  // Items per scan chunk during the rebuild.
  size_t scan_chunk = 65536;
};

// The packed class codes of a collection's codebook, read from its settings
// JSON (docs/storage.md): {"codebook": {"bits": K, "codes": ["<hex>", ...],
// ...}} with K == bits; class i at offset i * code_bytes(bits). NotFound
// when the settings have no codebook; InvalidArgument when the settings or
// the codebook are malformed (not JSON, K != bits, a bad hex code).
StatusOr<std::vector<uint8_t>> CodebookCodesFromSettings(std::string_view settings_json, int bits);

class LiveCollection {
 public:
  // Errors: NotFound (no such collection), InvalidArgument (bad index spec),
  // FailedPrecondition (a "Bucket" spec on a collection without a codebook),
  // and whatever the scan or the index returns. For "Bucket" specs the
  // codebook comes from the collection's settings JSON and is handed to
  // MakeIndex (IndexOptions::codebook).
  static StatusOr<std::unique_ptr<LiveCollection>> Open(CodeStore* store, std::string_view name,
                                                        const LiveCollectionOptions& options = {});

  const CollectionInfo& info() const { return info_; }
  const BinaryIndex& index() const { return *index_; }
  int bits() const { return info_.bits; }

  // Store first (durable, atomic), then the index. Same contracts as
  // CodeStore::Put / PutCodes / Delete.
  Status Put(const std::vector<ItemInput>& items, const StoreWriteOptions& wo = {},
             std::vector<uint64_t>* assigned_ids = nullptr);
  Status PutCodes(const uint64_t* ids, const uint8_t* codes, size_t n,
                  const StoreWriteOptions& wo = {}, std::vector<uint64_t>* assigned_ids = nullptr);
  Status Delete(const std::vector<uint64_t>& ids, const StoreWriteOptions& wo = {},
                size_t* deleted = nullptr);

  // Index searches (see BinaryIndex); the query is code_bytes(bits) bytes.
  StatusOr<SearchResult> Search(const uint8_t* query, size_t k, const SearchParams& p = {}) const;
  StatusOr<SearchResult> RangeSearch(const uint8_t* query, uint32_t radius,
                                     const SearchParams& p = {}) const;

 private:
  LiveCollection(CodeStore* store, CollectionInfo info, std::unique_ptr<BinaryIndex> index)
      : store_(store), info_(std::move(info)), index_(std::move(index)) {}

  CodeStore* store_;
  CollectionInfo info_;
  std::unique_ptr<BinaryIndex> index_;
  std::mutex write_mu_;
};

}  // namespace hamdb
