#include "db/live_collection.h"

#include <nlohmann/json.hpp>

#include "index/core/binary_code.h"

namespace hamdb {

StatusOr<std::vector<uint8_t>> CodebookCodesFromSettings(std::string_view settings_json, int bits) {
  const nlohmann::json settings = nlohmann::json::parse(settings_json, nullptr, false);
  if (settings.is_discarded() || !settings.is_object()) {
    return Status::InvalidArgument("collection settings are not a JSON object");
  }
  auto book = settings.find("codebook");
  if (book == settings.end() || book->is_null()) {
    return Status::NotFound("the collection settings have no codebook");
  }
  if (!book->is_object()) return Status::InvalidArgument("settings.codebook is not an object");
  auto k = book->find("bits");
  if (k == book->end() || !k->is_number_integer() || k->get<int64_t>() != bits) {
    return Status::InvalidArgument("settings.codebook.bits must equal the collection's " +
                                   std::to_string(bits) + " bits");
  }
  auto codes = book->find("codes");
  if (codes == book->end() || !codes->is_array() || codes->empty()) {
    return Status::InvalidArgument(
        "settings.codebook.codes must be a non-empty array of hex codes");
  }
  std::vector<uint8_t> packed;
  packed.reserve(codes->size() * code_bytes(bits));
  for (size_t i = 0; i < codes->size(); ++i) {
    const nlohmann::json& c = (*codes)[i];
    if (!c.is_string()) {
      return Status::InvalidArgument("settings.codebook.codes[" + std::to_string(i) +
                                     "] is not a string");
    }
    StatusOr<std::vector<uint8_t>> code = ParseHexCode(c.get<std::string>(), bits);
    if (!code.ok()) {
      return code.status().WithContext("settings.codebook.codes[" + std::to_string(i) + "]");
    }
    packed.insert(packed.end(), code->begin(), code->end());
  }
  return packed;
}

StatusOr<std::unique_ptr<LiveCollection>> LiveCollection::Open(
    CodeStore* store, std::string_view name, const LiveCollectionOptions& options) {
  HAMDB_ASSIGN_OR_RETURN(CollectionInfo info, store->GetCollection(name));
  const std::string spec = options.index_spec.empty() ? info.index_spec : options.index_spec;
  IndexOptions index_options;
  if (spec.rfind("Bucket", 0) == 0) {
    // Class buckets need the encoder's codebook, kept in the settings.
    StatusOr<std::vector<uint8_t>> codebook =
        CodebookCodesFromSettings(info.settings_json, info.bits);
    if (codebook.ok()) {
      index_options.codebook = std::move(codebook).value();
    } else if (codebook.status().code() == Status::Code::kNotFound) {
      return Status::FailedPrecondition("collection '" + info.name +
                                        "' has no codebook (it was not "
                                        "made by an encoder), so it cannot use index '" +
                                        spec + "'");
    } else {
      return codebook.status().WithContext("collection '" + info.name + "'");
    }
  }
  HAMDB_ASSIGN_OR_RETURN(std::unique_ptr<BinaryIndex> index,
                         MakeIndex(spec, info.bits, index_options));
  uint64_t total = 0;
  if (options.progress) {
    HAMDB_ASSIGN_OR_RETURN(total, store->Count(name));
    options.progress(0, total);
  }
  // The scan is gathered and handed to the index in one Add: a bulk build is
  // much cheaper for MIH than many incremental batches (each of which may
  // trigger a table rebuild), and the index keeps a copy of every code anyway.
  const size_t nb = code_bytes(info.bits);
  std::vector<uint64_t> ids;
  std::vector<uint8_t> codes;
  ids.reserve(total);
  codes.reserve(total * nb);
  HAMDB_RETURN_IF_ERROR(store->ScanCodes(
      name,
      [&](const uint64_t* chunk_ids, const uint8_t* chunk_codes, size_t n) {
        ids.insert(ids.end(), chunk_ids, chunk_ids + n);
        codes.insert(codes.end(), chunk_codes, chunk_codes + n * nb);
        if (options.progress) options.progress(ids.size(), std::max<uint64_t>(total, ids.size()));
        return true;
      },
      options.scan_chunk));
  HAMDB_RETURN_IF_ERROR(index->Add(ids.data(), codes.data(), ids.size())
                            .WithContext("rebuild index of '" + info.name + "'"));
  return std::unique_ptr<LiveCollection>(
      new LiveCollection(store, std::move(info), std::move(index)));
}

Status LiveCollection::Put(const std::vector<ItemInput>& items, const StoreWriteOptions& wo,
                           std::vector<uint64_t>* assigned_ids) {
  std::lock_guard<std::mutex> lock(write_mu_);
  std::vector<uint64_t> ids;
  HAMDB_RETURN_IF_ERROR(store_->Put(info_.name, items, wo, &ids));
  // The store validated every code; gather them for one index call. A
  // repeated id in one batch ends with its last code, in both places.
  const size_t nb = code_bytes(info_.bits);
  std::vector<uint8_t> codes(items.size() * nb);
  for (size_t i = 0; i < items.size(); ++i) {
    std::copy(items[i].code.begin(), items[i].code.end(), codes.begin() + i * nb);
  }
  Status s = index_->Add(ids.data(), codes.data(), ids.size());
  if (assigned_ids) *assigned_ids = std::move(ids);
  return s.WithContext("stored durably, but the index update failed (reopen to rebuild)");
}

Status LiveCollection::PutCodes(const uint64_t* ids, const uint8_t* codes, size_t n,
                                const StoreWriteOptions& wo, std::vector<uint64_t>* assigned_ids) {
  std::lock_guard<std::mutex> lock(write_mu_);
  std::vector<uint64_t> out_ids;
  HAMDB_RETURN_IF_ERROR(store_->PutCodes(info_.name, ids, codes, n, wo, &out_ids));
  Status s = index_->Add(out_ids.data(), codes, n);
  if (assigned_ids) *assigned_ids = std::move(out_ids);
  return s.WithContext("stored durably, but the index update failed (reopen to rebuild)");
}

Status LiveCollection::Delete(const std::vector<uint64_t>& ids, const StoreWriteOptions& wo,
                              size_t* deleted) {
  std::lock_guard<std::mutex> lock(write_mu_);
  HAMDB_RETURN_IF_ERROR(store_->Delete(info_.name, ids, wo, deleted));
  return index_->Remove(ids.data(), ids.size(), nullptr)
      .WithContext("deleted durably, but the index update failed (reopen to rebuild)");
}

StatusOr<SearchResult> LiveCollection::Search(const uint8_t* query, size_t k,
                                              const SearchParams& p) const {
  return index_->Search(query, k, p);
}

StatusOr<SearchResult> LiveCollection::RangeSearch(const uint8_t* query, uint32_t radius,
                                                   const SearchParams& p) const {
  return index_->RangeSearch(query, radius, p);
}

}  // namespace hamdb
