#include "db/code_store.h"

#include <unistd.h>

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iostats_context.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/slice.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/backup_engine.h>
#include <rocksdb/utilities/options_util.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "db/store_format.h"
#include "core/binary_code.h"
#include "core/score.h"

namespace hamdb {

namespace sf = store_format;
using json = nlohmann::json;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the store format assumes little-endian");

namespace {

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::OK();
  std::string msg(what);
  msg += ": ";
  if (s.IsNoSpace() || s.ToString().find("No space left") != std::string::npos ||
      s.ToString().find("File too large") != std::string::npos) {
    return Status::IOError(msg + "disk full or file size limit reached (" + s.ToString() + ")");
  }
  if (s.IsCorruption()) return Status::Corruption(msg + s.ToString());
  if (s.IsNotFound()) return Status::NotFound(msg + s.ToString());
  if (s.IsNotSupported()) return Status::NotSupported(msg + s.ToString());
  if (s.IsInvalidArgument()) return Status::InvalidArgument(msg + s.ToString());
  if (s.IsIOError()) return Status::IOError(msg + s.ToString());
  return Status::Internal(msg + s.ToString());
}

Status ValidateItemCode(const std::vector<uint8_t>& code, int bits, size_t index,
                        const char* what) {
  if (code.size() != code_bytes(bits)) {
    return Status::InvalidArgument("item " + std::to_string(index) + ": " + what + " has " +
                                   std::to_string(code.size()) + " bytes, the collection's " +
                                   std::to_string(bits) + "-bit codes need " +
                                   std::to_string(code_bytes(bits)));
  }
  return CheckPadding(code.data(), bits)
      .WithContext("item " + std::to_string(index) + ": " + what);
}

std::string EncodeItemRecord(const std::optional<int64_t>& label,
                             const std::optional<std::vector<uint8_t>>& class_code,
                             const std::string& metadata) {
  std::string rec;
  uint8_t flags = 0;
  if (label) flags |= sf::kHasLabel;
  if (class_code) flags |= sf::kHasClassCode;
  if (!metadata.empty()) flags |= sf::kHasMetadata;
  rec.push_back(static_cast<char>(sf::kItemRecordVersion));
  rec.push_back(static_cast<char>(flags));
  if (label) rec += sf::EncodeFixed64(static_cast<uint64_t>(*label));
  if (class_code) rec.append(reinterpret_cast<const char*>(class_code->data()), class_code->size());
  rec += metadata;
  return rec;
}

Status DecodeItemRecord(std::string_view rec, int bits, Item* item) {
  const std::string where = "item " + std::to_string(item->id) + " record";
  if (rec.size() < 2) return Status::Corruption(where + " is truncated");
  if (static_cast<uint8_t>(rec[0]) != sf::kItemRecordVersion) {
    return Status::Corruption(where + " has unknown record version " +
                              std::to_string(static_cast<uint8_t>(rec[0])));
  }
  const uint8_t flags = static_cast<uint8_t>(rec[1]);
  if (flags & ~(sf::kHasLabel | sf::kHasClassCode | sf::kHasMetadata)) {
    return Status::Corruption(where + " has unknown flags");
  }
  size_t pos = 2;
  if (flags & sf::kHasLabel) {
    if (rec.size() < pos + 8) return Status::Corruption(where + " is truncated (label)");
    uint64_t v;
    std::memcpy(&v, rec.data() + pos, 8);
    item->label = static_cast<int64_t>(v);
    pos += 8;
  }
  if (flags & sf::kHasClassCode) {
    const size_t nb = code_bytes(bits);
    if (rec.size() < pos + nb) return Status::Corruption(where + " is truncated (class code)");
    item->class_code = std::vector<uint8_t>(rec.begin() + pos, rec.begin() + pos + nb);
    pos += nb;
  }
  if (flags & sf::kHasMetadata) {
    item->metadata_json.assign(rec.data() + pos, rec.size() - pos);
    if (item->metadata_json.empty()) return Status::Corruption(where + " has empty metadata");
  } else if (pos != rec.size()) {
    return Status::Corruption(where + " has trailing bytes");
  }
  return Status::OK();
}

}  // namespace

Status ValidateCollectionName(std::string_view name) {
  auto ok_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
  };
  if (name.empty() || name.size() > 64) {
    return Status::InvalidArgument("collection name must be 1 to 64 characters, got " +
                                   std::to_string(name.size()));
  }
  if (!std::isalnum(static_cast<unsigned char>(name[0]))) {
    return Status::InvalidArgument("collection name '" + std::string(name) +
                                   "' must start with a letter or digit");
  }
  for (char c : name) {
    if (!ok_char(c)) {
      return Status::InvalidArgument("collection name '" + std::string(name) +
                                     "' may only use letters, digits, '_', '-' and '.'");
    }
  }
  return Status::OK();
}

struct CodeStore::Impl {
  std::string dir;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // owned; destroyed before db
  rocksdb::ColumnFamilyHandle* meta_cf = nullptr;
  rocksdb::ColumnFamilyHandle* codes_cf = nullptr;
  rocksdb::ColumnFamilyHandle* items_cf = nullptr;
  rocksdb::ColumnFamilyHandle* changes_cf = nullptr;
  rocksdb::ColumnFamilyHandle* thumbs_cf = nullptr;
  rocksdb::FileSystem* fs = nullptr;  // the env's; outlives the store

  // Held by TrimChanges and by Backup while it copies the index snapshots.
  std::mutex files_mu;
  // Serialises writers; guards the caches below.
  mutable std::mutex write_mu;
  std::unordered_map<std::string, CollectionInfo> collections;  // by name
  std::unordered_map<uint32_t, uint64_t> next_ids;               // by internal id
  std::unordered_map<uint32_t, uint64_t> change_seqs;            // by internal id
  // Internal ids of collections that may hold item records. A bare-code
  // upsert must delete an old record only there; skipping the tombstone
  // elsewhere halves the cost of bulk code ingest.
  std::unordered_set<uint32_t> may_have_records;
  // The same for thumbnails.
  std::unordered_set<uint32_t> may_have_thumbs;
  uint32_t next_collection_id = 1;

  ~Impl() {
    if (db) {
      for (auto* h : handles) {
        if (h != nullptr) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      }
      db->Close().PermitUncheckedError();
    }
  }

  rocksdb::WriteOptions Wo(const StoreWriteOptions& wo) const {
    rocksdb::WriteOptions o;
    o.sync = wo.sync;
    o.disableWAL = false;
    return o;
  }

  StatusOr<CollectionInfo> Lookup(std::string_view name) const {
    std::lock_guard<std::mutex> lock(write_mu);
    auto it = collections.find(std::string(name));
    if (it == collections.end()) {
      return Status::NotFound("collection '" + std::string(name) + "' does not exist");
    }
    return it->second;
  }

  // A u64 counter in the meta column family; 0 when absent.
  StatusOr<uint64_t> ReadCounter(const std::string& key,
                                 const rocksdb::ReadOptions& ro = {}) const {
    std::string v;
    rocksdb::Status s = db->Get(ro, meta_cf, key, &v);
    if (s.IsNotFound()) return uint64_t{0};
    HAMDB_RETURN_IF_ERROR(FromRocks(s, "read counter"));
    if (v.size() != 8) return Status::Corruption("counter record '" + key + "' is bad");
    uint64_t x;
    std::memcpy(&x, v.data(), 8);
    return x;
  }

  // Deletes what no collection will read from snapshots/: a snapshot whose
  // collection was dropped while it was being written, and a .tmp file a
  // crash left behind. Files it does not recognise stay. Best effort: a
  // file that cannot be listed or deleted stays too (it is never read).
  void RemoveStraySnapshots() {
    const std::string folder = (std::filesystem::path(dir) / sf::kSnapshotDir).string();
    std::vector<std::string> children;
    if (!fs->GetChildren(folder, rocksdb::IOOptions(), &children, nullptr).ok()) return;
    std::unordered_set<uint32_t> live;
    for (const auto& [name, info] : collections) live.insert(info.internal_id);
    for (const std::string& child : children) {
      bool stray = child.size() > 4 && child.compare(child.size() - 4, 4, ".tmp") == 0;
      const size_t dot = child.find(".hidx");
      if (!stray && child.size() > 6 && child[0] == 'c' && dot != std::string::npos &&
          dot + 5 == child.size() && dot > 1 &&
          child.find_first_not_of("0123456789", 1) == dot) {
        const uint64_t cid = std::stoull(child.substr(1, dot - 1));
        stray = cid > UINT32_MAX || live.count(static_cast<uint32_t>(cid)) == 0;
      }
      if (stray) {
        fs->DeleteFile(folder + "/" + child, rocksdb::IOOptions(), nullptr).PermitUncheckedError();
      }
    }
  }

  Status LoadRegistry() {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), meta_cf));
    const std::string prefix = sf::kCollectionPrefix;
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      const std::string name = it->key().ToString().substr(prefix.size());
      json j = json::parse(it->value().ToString(), nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j.contains("bits") ||
          !j["id"].is_number_unsigned() || !j["bits"].is_number_integer()) {
        return Status::Corruption("collection record for '" + name + "' does not decode");
      }
      CollectionInfo info;
      info.name = name;
      info.internal_id = j["id"].get<uint32_t>();
      info.bits = j["bits"].get<int>();
      info.index_spec = j.value("index", std::string("MIH"));
      info.settings_json = j.contains("settings") ? j["settings"].dump() : "{}";
      HAMDB_RETURN_IF_ERROR(ValidateCodeBits(info.bits).WithContext("collection '" + name + "'"));

      std::string v;
      rocksdb::Status s = db->Get(rocksdb::ReadOptions(), meta_cf, sf::NextIdKey(info.internal_id), &v);
      uint64_t next = 0;
      if (s.ok()) {
        if (v.size() != 8) return Status::Corruption("next-id record of '" + name + "' is bad");
        std::memcpy(&next, v.data(), 8);
      } else if (!s.IsNotFound()) {
        return FromRocks(s, "read next id");
      }
      // Belt and braces: never hand out an id at or below the largest stored one.
      std::unique_ptr<rocksdb::Iterator> ci(db->NewIterator(rocksdb::ReadOptions(), codes_cf));
      ci->SeekForPrev(sf::ItemKey(info.internal_id, std::numeric_limits<uint64_t>::max()));
      if (ci->Valid() && ci->key().size() == sf::kItemKeySize &&
          sf::GetBigEndian32(ci->key().data()) == info.internal_id) {
        const uint64_t max_id = sf::GetBigEndian64(ci->key().data() + 4);
        if (max_id != std::numeric_limits<uint64_t>::max()) next = std::max(next, max_id + 1);
      }
      next_ids[info.internal_id] = next;
      HAMDB_ASSIGN_OR_RETURN(change_seqs[info.internal_id],
                             ReadCounter(sf::ChangeSeqKey(info.internal_id)));
      std::unique_ptr<rocksdb::Iterator> ri(db->NewIterator(rocksdb::ReadOptions(), items_cf));
      ri->Seek(sf::CollectionPrefix(info.internal_id));
      if (ri->Valid() && ri->key().starts_with(sf::CollectionPrefix(info.internal_id))) {
        may_have_records.insert(info.internal_id);
      }
      HAMDB_RETURN_IF_ERROR(FromRocks(ri->status(), "read item records"));
      std::unique_ptr<rocksdb::Iterator> ti(db->NewIterator(rocksdb::ReadOptions(), thumbs_cf));
      ti->Seek(sf::CollectionPrefix(info.internal_id));
      if (ti->Valid() && ti->key().starts_with(sf::CollectionPrefix(info.internal_id))) {
        may_have_thumbs.insert(info.internal_id);
      }
      HAMDB_RETURN_IF_ERROR(FromRocks(ti->status(), "read thumbnails"));
      collections[name] = std::move(info);
    }
    return FromRocks(it->status(), "read collection registry");
  }

  // What a grouped write has done so far to one collection: the id counter
  // and the presence of the ids it wrote or deleted, which later requests of
  // the group must see instead of the database.
  struct GroupState {
    uint64_t next = 0;
    bool records = false;  // the collection may hold item records
    bool thumbs = false;   // ... and thumbnails
    std::unordered_map<uint64_t, bool> present;
    std::vector<uint64_t> touched;  // for the change log
  };

  // Appends one put request to the batch; ids resolved (assigned where
  // missing). On error the caller rolls the batch and *state back.
  Status AppendItems(const CollectionInfo& info, GroupedWrite* w, rocksdb::WriteBatch* batch,
                     GroupState* state) {
    const size_t nb = code_bytes(info.bits);
    const size_t n = w->size();
    auto item_at = [w](size_t i) -> const ItemInput* {
      return w->kind == GroupedWrite::Kind::kPut ? &(*w->items)[i] : nullptr;
    };
    auto given_id = [&](size_t i) -> std::optional<uint64_t> {
      if (const ItemInput* in = item_at(i)) return in->id;
      return w->ids ? std::optional<uint64_t>(w->ids[i]) : std::nullopt;
    };
    uint64_t next = state->next;
    w->assigned_ids.resize(n);
    // Explicit ids first: an id assigned to an earlier item of this batch must
    // not collide with an explicit id that comes later in it.
    for (size_t i = 0; i < n; ++i) {
      std::optional<uint64_t> id = given_id(i);
      if (id && *id >= next) next = *id == std::numeric_limits<uint64_t>::max() ? *id : *id + 1;
    }
    for (size_t i = 0; i < n; ++i) {
      const ItemInput* in = item_at(i);
      std::optional<uint64_t> id = given_id(i);
      const bool assigned = !id;
      if (!id) {
        if (next == std::numeric_limits<uint64_t>::max()) {
          return Status::ResourceExhausted("collection '" + info.name + "' has no ids left");
        }
        id = next++;
      }
      if (*id > w->max_id) {
        return Status::InvalidArgument(
            "item " + std::to_string(i) + ": id " + std::to_string(*id) +
            (assigned ? " (assigned)" : "") +
            " is above " + std::to_string(w->max_id) + ", the largest id this collection's index takes");
      }
      w->assigned_ids[i] = *id;
      if (in) {
        HAMDB_RETURN_IF_ERROR(ValidateItemCode(in->code, info.bits, i, "code"));
        if (in->class_code) {
          HAMDB_RETURN_IF_ERROR(ValidateItemCode(*in->class_code, info.bits, i, "class code"));
        }
        if (!in->metadata_json.empty() && !json::accept(in->metadata_json)) {
          return Status::InvalidArgument("item " + std::to_string(i) + ": metadata is not valid JSON");
        }
        if (in->score) {
          HAMDB_RETURN_IF_ERROR(CheckScore(*in->score, "item " + std::to_string(i) + ": score"));
        }
        if (!in->thumbnail.empty()) {
          if (in->thumbnail.size() > sf::kMaxThumbnailBytes) {
            return Status::InvalidArgument("item " + std::to_string(i) + ": the thumbnail has " +
                                           std::to_string(in->thumbnail.size()) + " bytes, over the " +
                                           std::to_string(sf::kMaxThumbnailBytes) + "-byte limit");
          }
          if (!sf::IsThumbnailFormat(in->thumbnail)) {
            return Status::InvalidArgument("item " + std::to_string(i) +
                                           ": the thumbnail is not a PNG or JPEG file");
          }
        }
      } else {
        const uint8_t* c = w->codes + i * nb;
        HAMDB_RETURN_IF_ERROR(CheckPadding(c, info.bits).WithContext("item " + std::to_string(i)));
        if (w->scores != nullptr) {
          HAMDB_RETURN_IF_ERROR(CheckScore(w->scores[i], "item " + std::to_string(i) + ": score"));
        }
      }
    }
    // Written in key order: each memtable insert then starts from where the
    // previous one ended (RocksDB's skip list keeps that splice), instead of
    // searching every level for a random key. A stable order keeps an id
    // given twice written twice in request order, so the later one wins.
    std::vector<uint32_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
    std::stable_sort(order.begin(), order.end(),
                     [&](uint32_t a, uint32_t b) { return w->assigned_ids[a] < w->assigned_ids[b]; });
    for (const uint32_t i : order) {
      const ItemInput* in = item_at(i);
      const std::string key = sf::ItemKey(info.internal_id, w->assigned_ids[i]);
      if (in) {
        batch->Put(codes_cf, key,
                   sf::CodeValue(in->code.data(), nb, in->score ? &*in->score : nullptr));
        if (in->label || in->class_code || !in->metadata_json.empty()) {
          batch->Put(items_cf, key, EncodeItemRecord(in->label, in->class_code, in->metadata_json));
          state->records = true;
        } else if (state->records) {
          batch->Delete(items_cf, key);
        }
        if (!in->thumbnail.empty()) {
          batch->Put(thumbs_cf, key, in->thumbnail);
          state->thumbs = true;
        } else if (state->thumbs) {
          batch->Delete(thumbs_cf, key);
        }
      } else {
        const float* score = w->scores != nullptr ? &w->scores[i] : nullptr;
        batch->Put(codes_cf, key, sf::CodeValue(w->codes + i * nb, nb, score));
        if (state->records) batch->Delete(items_cf, key);
        if (state->thumbs) batch->Delete(thumbs_cf, key);
      }
    }
    for (uint64_t id : w->assigned_ids) state->present[id] = true;
    state->touched.insert(state->touched.end(), w->assigned_ids.begin(), w->assigned_ids.end());
    state->next = next;
    return Status::OK();
  }

  // Appends one delete request: the ids present in the store, or written by
  // an earlier request of the group, are deleted and counted once each.
  Status AppendDelete(const CollectionInfo& info, GroupedWrite* w, rocksdb::WriteBatch* batch,
                      GroupState* state) {
    std::string unused;
    w->deleted = 0;
    for (size_t i = 0; i < w->n; ++i) {
      const uint64_t id = w->ids[i];
      const std::string key = sf::ItemKey(info.internal_id, id);
      auto it = state->present.find(id);
      bool present;
      if (it != state->present.end()) {
        present = it->second;
      } else {
        rocksdb::Status s = db->Get(rocksdb::ReadOptions(), codes_cf, key, &unused);
        if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "delete lookup");
        present = s.ok();
      }
      state->present[id] = false;
      if (!present) continue;
      ++w->deleted;
      state->touched.push_back(id);
      batch->Delete(codes_cf, key);
      batch->Delete(items_cf, key);
      if (state->thumbs) batch->Delete(thumbs_cf, key);
    }
    return Status::OK();
  }

  Status WriteGroup(std::string_view collection, const std::vector<GroupedWrite*>& writes,
                    bool sync, double* sync_seconds = nullptr) {
    if (sync_seconds != nullptr) *sync_seconds = 0;
    std::lock_guard<std::mutex> lock(write_mu);
    auto it = collections.find(std::string(collection));
    if (it == collections.end()) {
      Status missing =
          Status::NotFound("collection '" + std::string(collection) + "' does not exist");
      for (GroupedWrite* w : writes) w->status = missing;
      return missing;
    }
    const CollectionInfo& info = it->second;
    GroupState state;
    state.next = next_ids[info.internal_id];
    state.records = may_have_records.count(info.internal_id) > 0;
    state.thumbs = may_have_thumbs.count(info.internal_id) > 0;
    rocksdb::WriteBatch batch;
    for (GroupedWrite* w : writes) {
      const GroupState before = state;
      batch.SetSavePoint();
      if (w->kind == GroupedWrite::Kind::kPutCodes && w->n > 0 && w->codes == nullptr) {
        w->status = Status::InvalidArgument("codes must not be null");
      } else if (w->kind == GroupedWrite::Kind::kDelete && w->n > 0 && w->ids == nullptr) {
        w->status = Status::InvalidArgument("ids must not be null");
      } else {
        w->status = w->kind == GroupedWrite::Kind::kDelete ? AppendDelete(info, w, &batch, &state)
                                                          : AppendItems(info, w, &batch, &state);
      }
      if (w->status.ok()) {
        batch.PopSavePoint().PermitUncheckedError();
      } else {
        batch.RollbackToSavePoint().PermitUncheckedError();
        state = before;
        w->assigned_ids.clear();
        w->deleted = 0;
      }
    }
    const uint64_t start_next = next_ids[info.internal_id];
    if (state.next != start_next) {
      batch.Put(meta_cf, sf::NextIdKey(info.internal_id), sf::EncodeFixed64(state.next));
    }
    const uint64_t change_seq = change_seqs[info.internal_id] + (state.touched.empty() ? 0 : 1);
    if (!state.touched.empty()) {
      batch.Put(changes_cf, sf::ChangeKey(info.internal_id, change_seq),
                EncodeChange(state.touched));
      batch.Put(meta_cf, sf::ChangeSeqKey(info.internal_id), sf::EncodeFixed64(change_seq));
    }
    if (batch.Count() > 0) {
      StoreWriteOptions wo;
      wo.sync = sync;
      // RocksDB times its fsyncs only at this perf level, set per thread.
      const rocksdb::PerfLevel level = rocksdb::GetPerfLevel();
      const bool timed = sync && sync_seconds != nullptr;
      uint64_t sync_nanos = 0;
      if (timed) {
        if (level < rocksdb::PerfLevel::kEnableTimeExceptForMutex) {
          rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableTimeExceptForMutex);
        }
        sync_nanos = rocksdb::get_iostats_context()->fsync_nanos;
      }
      Status s = FromRocks(db->Write(Wo(wo), &batch), "write batch");
      if (timed) {
        *sync_seconds = static_cast<double>(rocksdb::get_iostats_context()->fsync_nanos - sync_nanos) * 1e-9;
        rocksdb::SetPerfLevel(level);
      }
      if (!s.ok()) {
        for (GroupedWrite* w : writes) {
          if (w->status.ok()) {
            w->status = s;
            w->assigned_ids.clear();
            w->deleted = 0;
          }
        }
        return s;
      }
    }
    next_ids[info.internal_id] = state.next;
    change_seqs[info.internal_id] = change_seq;
    if (state.records) may_have_records.insert(info.internal_id);
    if (state.thumbs) may_have_thumbs.insert(info.internal_id);
    return Status::OK();
  }

  // A change record: a run of consecutive ids as a range, else the list.
  static std::string EncodeChange(const std::vector<uint64_t>& ids) {
    bool run = true;
    for (size_t i = 1; i < ids.size() && run; ++i) run = ids[i] == ids[0] + i;
    std::string v(1, static_cast<char>(run ? sf::kChangeIdRange : sf::kChangeIdList));
    if (run) {
      v += sf::EncodeFixed64(ids[0]);
      v += sf::EncodeFixed64(ids.size());
    } else {
      v.append(reinterpret_cast<const char*>(ids.data()), ids.size() * 8);
    }
    return v;
  }

  // A bulk-read iterator over one collection's range of a column family (the
  // codes unless told), positioned at its first key. Block checksums are
  // verified (RocksDB's default). Owns the upper bound the iterator points to.
  struct Cursor {
    Cursor(const Impl* impl, uint32_t cid, rocksdb::ColumnFamilyHandle* cf = nullptr)
        : end(sf::CollectionPrefix(cid + 1)), upper(end) {
      rocksdb::ReadOptions ro;
      ro.iterate_upper_bound = &upper;
      ro.fill_cache = false;
      ro.readahead_size = 4u << 20;
      it.reset(impl->db->NewIterator(ro, cf != nullptr ? cf : impl->codes_cf));
      it->Seek(sf::CollectionPrefix(cid));
    }
    std::string end;
    rocksdb::Slice upper;
    std::unique_ptr<rocksdb::Iterator> it;
  };
};

CodeStore::CodeStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CodeStore::~CodeStore() = default;
const std::string& CodeStore::dir() const { return impl_->dir; }

StatusOr<std::unique_ptr<CodeStore>> CodeStore::Open(const std::string& dir,
                                                     const StoreOpenOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;

  rocksdb::DBOptions db_opts;
  db_opts.create_if_missing = options.create_if_missing;
  if (options.env != nullptr) db_opts.env = options.env;
  impl->fs = db_opts.env->GetFileSystem().get();
  db_opts.create_missing_column_families = true;
  db_opts.paranoid_checks = true;
  // A torn last record (a write cut off by a crash before it was synced) is
  // the only WAL damage replayed past; anything else fails the open.
  db_opts.wal_recovery_mode = options.salvage_wal ? rocksdb::WALRecoveryMode::kPointInTimeRecovery
                                                  : rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  db_opts.max_background_jobs = 2;
  db_opts.bytes_per_sync = 1 << 20;
  db_opts.max_total_wal_size = 512u << 20;

  rocksdb::ColumnFamilyOptions meta_opts;
  rocksdb::ColumnFamilyOptions codes_opts;
  codes_opts.write_buffer_size = 128u << 20;
  codes_opts.max_write_buffer_number = 4;
  codes_opts.compression = rocksdb::kNoCompression;  // random bits do not compress
  {
    rocksdb::BlockBasedTableOptions t;
    t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    t.block_size = 16 << 10;
    codes_opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  }
  rocksdb::ColumnFamilyOptions items_opts;
  items_opts.write_buffer_size = 64u << 20;
  {
    rocksdb::BlockBasedTableOptions t;
    t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    t.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
    items_opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  }

  // A directory with an existing DB may hold column families we do not know
  // (a newer format); they must be named to open it, then the version check
  // refuses it with a clear message.
  std::vector<std::string> existing;
  rocksdb::Status ls = rocksdb::DB::ListColumnFamilies(db_opts, dir, &existing);
  const bool is_new = !ls.ok();
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, meta_opts},
      {sf::kCodesCf, codes_opts},
      {sf::kItemsCf, items_opts},
      {sf::kChangesCf, meta_opts},
      {sf::kThumbnailsCf, items_opts}};
  for (const std::string& name : existing) {
    if (name != rocksdb::kDefaultColumnFamilyName && name != sf::kCodesCf && name != sf::kItemsCf &&
        name != sf::kChangesCf && name != sf::kThumbnailsCf) {
      cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
  }
  if (!is_new && existing.size() == 1) {
    // A plain RocksDB: check before creating our column families in it.
    rocksdb::DB* raw = nullptr;
    rocksdb::Options plain(db_opts, meta_opts);
    plain.create_if_missing = false;
    rocksdb::Status s = rocksdb::DB::OpenForReadOnly(plain, dir, &raw);
    if (s.ok()) {
      std::unique_ptr<rocksdb::DB> probe(raw);
      std::unique_ptr<rocksdb::Iterator> it(probe->NewIterator(rocksdb::ReadOptions()));
      it->SeekToFirst();
      if (it->Valid()) {
        return Status::FailedPrecondition("'" + dir +
                                          "' holds a RocksDB database that is not a hamdb store");
      }
    }
  }

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_opts, dir, cfs, &impl->handles, &raw);
  if (!s.ok()) {
    if (s.ToString().find("lock") != std::string::npos) {
      return Status::FailedPrecondition("store '" + dir +
                                        "' is in use by another process (" + s.ToString() + ")");
    }
    if (!options.create_if_missing && is_new) {
      return Status::NotFound("no hamdb store at '" + dir + "'");
    }
    if (s.IsCorruption()) {
      return Status::Corruption(
          "open store '" + dir + "': " + s.ToString() +
          ". The store is damaged: restore it from a backup (hamdb restore)" +
          (options.salvage_wal ? std::string()
                               : std::string(", or, for a damaged write-ahead log, open it with "
                                             "--salvage-wal to keep every batch before the damage")));
    }
    return FromRocks(s, "open store '" + dir + "'");
  }
  impl->db.reset(raw);
  impl->meta_cf = impl->handles[0];
  impl->codes_cf = impl->handles[1];
  impl->items_cf = impl->handles[2];
  impl->changes_cf = impl->handles[3];
  impl->thumbs_cf = impl->handles[4];

  std::string version;
  s = impl->db->Get(rocksdb::ReadOptions(), impl->meta_cf, sf::kVersionKey, &version);
  if (s.IsNotFound()) {
    std::unique_ptr<rocksdb::Iterator> it(impl->db->NewIterator(rocksdb::ReadOptions(), impl->meta_cf));
    it->SeekToFirst();
    if (it->Valid()) {
      return Status::FailedPrecondition("'" + dir + "' has data but no hamdb format version");
    }
    rocksdb::WriteOptions wo;
    wo.sync = true;
    HAMDB_RETURN_IF_ERROR(FromRocks(
        impl->db->Put(wo, impl->meta_cf, sf::kVersionKey, std::to_string(kStoreFormatVersion)),
        "write format version"));
  } else if (!s.ok()) {
    return FromRocks(s, "read format version");
  } else if (version == "1" || version == "2" || version == "3") {
    // Version 1 had no change log, version 3 no thumbnails (their column
    // families now exist, empty) and version 2 no scores after codes; each
    // reads as version 4 as it is.
    // Setting the version keeps builds that cannot read scores away from it.
    rocksdb::WriteOptions wo;
    wo.sync = true;
    HAMDB_RETURN_IF_ERROR(FromRocks(
        impl->db->Put(wo, impl->meta_cf, sf::kVersionKey, std::to_string(kStoreFormatVersion)),
        "upgrade format version"));
  } else if (version != std::to_string(kStoreFormatVersion)) {
    return Status::NotSupported("store '" + dir + "' has format version " + version +
                                "; this build of hamdb reads versions 1 to " +
                                std::to_string(kStoreFormatVersion));
  }

  std::string ncid;
  s = impl->db->Get(rocksdb::ReadOptions(), impl->meta_cf, sf::kNextCollectionIdKey, &ncid);
  if (s.ok()) {
    if (ncid.size() != 4) return Status::Corruption("next collection id record is bad");
    std::memcpy(&impl->next_collection_id, ncid.data(), 4);
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "read next collection id");
  }
  HAMDB_RETURN_IF_ERROR(impl->LoadRegistry());
  impl->RemoveStraySnapshots();
  return std::unique_ptr<CodeStore>(new CodeStore(std::move(impl)));
}

Status CodeStore::CreateCollection(const CollectionSpec& spec, const StoreWriteOptions& wo) {
  HAMDB_RETURN_IF_ERROR(ValidateCollectionName(spec.name));
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(spec.bits));
  if (spec.index_spec.empty()) return Status::InvalidArgument("index spec must not be empty");
  json settings = json::parse(spec.settings_json.empty() ? "{}" : spec.settings_json, nullptr, false);
  if (settings.is_discarded() || !settings.is_object()) {
    return Status::InvalidArgument("collection settings must be a JSON object");
  }
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  if (impl_->collections.count(spec.name)) {
    return Status::AlreadyExists("collection '" + spec.name + "' already exists");
  }
  const uint32_t cid = impl_->next_collection_id;
  json rec = {{"id", cid}, {"bits", spec.bits}, {"index", spec.index_spec}, {"settings", settings}};
  rocksdb::WriteBatch batch;
  batch.Put(impl_->meta_cf, sf::kCollectionPrefix + spec.name, rec.dump());
  batch.Put(impl_->meta_cf, sf::kNextCollectionIdKey, sf::EncodeFixed32(cid + 1));
  batch.Put(impl_->meta_cf, sf::NextIdKey(cid), sf::EncodeFixed64(0));
  HAMDB_RETURN_IF_ERROR(
      FromRocks(impl_->db->Write(impl_->Wo(wo), &batch), "create collection '" + spec.name + "'"));
  impl_->next_collection_id = cid + 1;
  impl_->next_ids[cid] = 0;
  impl_->collections[spec.name] =
      CollectionInfo{spec.name, spec.bits, spec.index_spec, settings.dump(), cid};
  return Status::OK();
}

Status CodeStore::DropCollection(std::string_view name, const StoreWriteOptions& wo) {
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  auto it = impl_->collections.find(std::string(name));
  if (it == impl_->collections.end()) {
    return Status::NotFound("collection '" + std::string(name) + "' does not exist");
  }
  const uint32_t cid = it->second.internal_id;
  const std::string begin = sf::CollectionPrefix(cid), end = sf::CollectionPrefix(cid + 1);
  rocksdb::WriteBatch batch;
  batch.DeleteRange(impl_->codes_cf, begin, end);
  batch.DeleteRange(impl_->items_cf, begin, end);
  batch.DeleteRange(impl_->thumbs_cf, begin, end);
  batch.Delete(impl_->meta_cf, sf::kCollectionPrefix + std::string(name));
  batch.Delete(impl_->meta_cf, sf::NextIdKey(cid));
  batch.DeleteRange(impl_->changes_cf, begin, end);
  batch.Delete(impl_->meta_cf, sf::ChangeSeqKey(cid));
  batch.Delete(impl_->meta_cf, sf::ChangeTrimmedKey(cid));
  HAMDB_RETURN_IF_ERROR(FromRocks(impl_->db->Write(impl_->Wo(wo), &batch),
                                  "drop collection '" + std::string(name) + "'"));
  // A leftover file would be harmless (collection ids are never reused).
  impl_->fs->DeleteFile(SnapshotPath(it->second), rocksdb::IOOptions(), nullptr)
      .PermitUncheckedError();
  impl_->collections.erase(it);
  impl_->next_ids.erase(cid);
  impl_->change_seqs.erase(cid);
  return Status::OK();
}

StatusOr<std::vector<CollectionInfo>> CodeStore::ListCollections() const {
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  std::vector<CollectionInfo> out;
  for (const auto& [name, info] : impl_->collections) out.push_back(info);
  std::sort(out.begin(), out.end(),
            [](const CollectionInfo& a, const CollectionInfo& b) { return a.name < b.name; });
  return out;
}

StatusOr<CollectionInfo> CodeStore::GetCollection(std::string_view name) const {
  return impl_->Lookup(name);
}

Status CodeStore::UpdateCollectionSettings(std::string_view name, std::string_view settings_json,
                                           const StoreWriteOptions& wo) {
  json settings = json::parse(settings_json, nullptr, false);
  if (settings.is_discarded() || !settings.is_object()) {
    return Status::InvalidArgument("collection settings must be a JSON object");
  }
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  auto it = impl_->collections.find(std::string(name));
  if (it == impl_->collections.end()) {
    return Status::NotFound("collection '" + std::string(name) + "' does not exist");
  }
  CollectionInfo& info = it->second;
  json rec = {{"id", info.internal_id},
              {"bits", info.bits},
              {"index", info.index_spec},
              {"settings", settings}};
  HAMDB_RETURN_IF_ERROR(FromRocks(impl_->db->Put(impl_->Wo(wo), impl_->meta_cf,
                                                 sf::kCollectionPrefix + info.name, rec.dump()),
                                  "update settings"));
  info.settings_json = settings.dump();
  return Status::OK();
}

Status CodeStore::Put(std::string_view collection, const std::vector<ItemInput>& items,
                      const StoreWriteOptions& wo, std::vector<uint64_t>* assigned_ids) {
  GroupedWrite w;
  w.kind = GroupedWrite::Kind::kPut;
  w.items = &items;
  w.max_id = wo.max_id;
  (void)impl_->WriteGroup(collection, {&w}, wo.sync);  // its error is also w.status
  if (w.status.ok() && assigned_ids) *assigned_ids = std::move(w.assigned_ids);
  return w.status;
}

Status CodeStore::PutCodes(std::string_view collection, const uint64_t* ids, const uint8_t* codes,
                           size_t n, const StoreWriteOptions& wo,
                           std::vector<uint64_t>* assigned_ids, const float* scores) {
  GroupedWrite w;
  w.kind = GroupedWrite::Kind::kPutCodes;
  w.ids = ids;
  w.codes = codes;
  w.scores = scores;
  w.n = n;
  w.max_id = wo.max_id;
  (void)impl_->WriteGroup(collection, {&w}, wo.sync);  // its error is also w.status
  if (w.status.ok() && assigned_ids) *assigned_ids = std::move(w.assigned_ids);
  return w.status;
}

Status CodeStore::WriteGroup(std::string_view collection, const std::vector<GroupedWrite*>& writes,
                             bool sync, double* sync_seconds) {
  return impl_->WriteGroup(collection, writes, sync, sync_seconds);
}

StatusOr<Item> CodeStore::Get(std::string_view collection, uint64_t id) const {
  HAMDB_ASSIGN_OR_RETURN(CollectionInfo info, impl_->Lookup(collection));
  const std::string key = sf::ItemKey(info.internal_id, id);
  // One snapshot for both column families so a concurrent upsert is seen whole.
  const rocksdb::Snapshot* snap = impl_->db->GetSnapshot();
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  std::string code, rec;
  rocksdb::Status s1 = impl_->db->Get(ro, impl_->codes_cf, key, &code);
  rocksdb::Status s2 = s1.ok() ? impl_->db->Get(ro, impl_->items_cf, key, &rec) : rocksdb::Status();
  impl_->db->ReleaseSnapshot(snap);
  if (s1.IsNotFound()) {
    return Status::NotFound("item " + std::to_string(id) + " not found in collection '" +
                            std::string(collection) + "'");
  }
  HAMDB_RETURN_IF_ERROR(FromRocks(s1, "get item"));
  if (!s2.ok() && !s2.IsNotFound()) return FromRocks(s2, "get item record");
  Item item;
  item.id = id;
  const size_t nb = code_bytes(info.bits);
  if (!sf::IsCodeValueSize(code.size(), nb)) {
    return Status::Corruption("item " + std::to_string(id) + " has a " +
                              std::to_string(code.size()) + "-byte code value, expected " +
                              std::to_string(nb) + " or " + std::to_string(nb + sf::kScoreSize));
  }
  item.code.assign(code.begin(), code.begin() + nb);
  float score;
  if (sf::CodeValueScore(code.data(), code.size(), nb, &score)) item.score = score;
  if (s2.ok()) HAMDB_RETURN_IF_ERROR(DecodeItemRecord(rec, info.bits, &item));
  return item;
}

StatusOr<std::string> CodeStore::GetThumbnail(std::string_view collection, uint64_t id) const {
  HAMDB_ASSIGN_OR_RETURN(CollectionInfo info, impl_->Lookup(collection));
  std::string thumb;
  rocksdb::Status s =
      impl_->db->Get(rocksdb::ReadOptions(), impl_->thumbs_cf, sf::ItemKey(info.internal_id, id), &thumb);
  if (s.IsNotFound()) {
    return Status::NotFound("item " + std::to_string(id) + " of collection '" + std::string(collection) +
                            "' has no thumbnail");
  }
  HAMDB_RETURN_IF_ERROR(FromRocks(s, "get thumbnail"));
  return thumb;
}

StatusOr<uint64_t> CodeStore::SampleId(std::string_view collection, uint64_t r) const {
  HAMDB_ASSIGN_OR_RETURN(CollectionInfo info, impl_->Lookup(collection));
  const uint32_t cid = info.internal_id;
  rocksdb::ReadOptions ro;
  const rocksdb::Snapshot* snap = impl_->db->GetSnapshot();
  ro.snapshot = snap;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, impl_->codes_cf));
  auto id_here = [&]() -> std::optional<uint64_t> {
    if (!it->Valid() || it->key().size() != sf::kItemKeySize ||
        sf::GetBigEndian32(it->key().data()) != cid) {
      return std::nullopt;
    }
    return sf::GetBigEndian64(it->key().data() + 4);
  };
  std::optional<uint64_t> picked;
  it->Seek(sf::ItemKey(cid, 0));
  if (std::optional<uint64_t> lo = id_here()) {
    it->SeekForPrev(sf::ItemKey(cid, std::numeric_limits<uint64_t>::max()));
    const std::optional<uint64_t> hi = id_here();
    const uint64_t span = hi ? *hi - *lo : 0;
    const uint64_t target = *lo + (span == std::numeric_limits<uint64_t>::max() ? r : r % (span + 1));
    it->Seek(sf::ItemKey(cid, target));
    picked = id_here();
    if (!picked) picked = lo;
  }
  rocksdb::Status s = it->status();
  it.reset();
  impl_->db->ReleaseSnapshot(snap);
  HAMDB_RETURN_IF_ERROR(FromRocks(s, "sample an item"));
  if (!picked) return Status::NotFound("collection '" + std::string(collection) + "' is empty");
  return *picked;
}

Status CodeStore::Delete(std::string_view collection, const std::vector<uint64_t>& ids,
                         const StoreWriteOptions& wo, size_t* deleted) {
  GroupedWrite w;
  w.kind = GroupedWrite::Kind::kDelete;
  w.ids = ids.data();
  w.n = ids.size();
  (void)impl_->WriteGroup(collection, {&w}, wo.sync);  // its error is also w.status
  if (w.status.ok() && deleted) *deleted = w.deleted;
  return w.status;
}

Status CodeStore::ScanCodes(std::string_view collection, const ScanFn& fn, size_t chunk) const {
  HAMDB_ASSIGN_OR_RETURN(CollectionInfo info, impl_->Lookup(collection));
  if (chunk == 0) chunk = 65536;
  const size_t nb = code_bytes(info.bits);
  Impl::Cursor cursor(impl_.get(), info.internal_id);
  rocksdb::Iterator* it = cursor.it.get();
  std::vector<uint64_t> ids;
  std::vector<uint8_t> codes;
  std::vector<float> scores;  // empty until an item of the chunk has a score
  ids.reserve(chunk);
  codes.reserve(chunk * nb);
  auto emit = [&] {
    const bool more = fn(ids.data(), codes.data(), scores.empty() ? nullptr : scores.data(),
                         ids.size());
    ids.clear();
    codes.clear();
    scores.clear();
    return more;
  };
  for (; it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key(), v = it->value();
    if (k.size() != sf::kItemKeySize || !sf::IsCodeValueSize(v.size(), nb)) {
      return Status::Corruption("collection '" + info.name + "': stored code value of " +
                                std::to_string(v.size()) + " bytes, expected " +
                                std::to_string(nb) + " or " + std::to_string(nb + sf::kScoreSize));
    }
    float score;
    if (sf::CodeValueScore(v.data(), v.size(), nb, &score)) {
      if (scores.empty()) scores.assign(ids.size(), std::numeric_limits<float>::quiet_NaN());
      scores.push_back(score);
    } else if (!scores.empty()) {
      scores.push_back(std::numeric_limits<float>::quiet_NaN());
    }
    ids.push_back(sf::GetBigEndian64(k.data() + 4));
    codes.insert(codes.end(), v.data(), v.data() + nb);
    if (ids.size() == chunk && !emit()) return Status::OK();
  }
  HAMDB_RETURN_IF_ERROR(FromRocks(it->status(), "scan codes"));
  if (!ids.empty()) emit();
  return Status::OK();
}

Status CodeStore::ScanRecords(std::string_view collection, const RecordFn& fn) const {
  HAMDB_ASSIGN_OR_RETURN(CollectionInfo info, impl_->Lookup(collection));
  Impl::Cursor cursor(impl_.get(), info.internal_id, impl_->items_cf);
  rocksdb::Iterator* it = cursor.it.get();
  for (; it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key(), v = it->value();
    if (k.size() != sf::kItemKeySize) {
      return Status::Corruption("collection '" + info.name + "': item record key of " +
                                std::to_string(k.size()) + " bytes");
    }
    Item item;
    item.id = sf::GetBigEndian64(k.data() + 4);
    HAMDB_RETURN_IF_ERROR(DecodeItemRecord(std::string_view(v.data(), v.size()), info.bits, &item)
                              .WithContext("collection '" + info.name + "'"));
    if (!fn(item)) return Status::OK();
  }
  return FromRocks(it->status(), "scan item records");
}

StatusOr<uint64_t> CodeStore::Count(std::string_view collection) const {
  HAMDB_ASSIGN_OR_RETURN(CollectionInfo info, impl_->Lookup(collection));
  Impl::Cursor cursor(impl_.get(), info.internal_id);
  uint64_t n = 0;
  for (; cursor.it->Valid(); cursor.it->Next()) ++n;
  HAMDB_RETURN_IF_ERROR(FromRocks(cursor.it->status(), "count"));
  return n;
}

Status CodeStore::Flush() {
  rocksdb::FlushOptions fo;
  return FromRocks(impl_->db->Flush(fo, impl_->handles), "flush");
}

StatusOr<uint64_t> CodeStore::ChangeSequence(std::string_view collection) const {
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  auto it = impl_->collections.find(std::string(collection));
  if (it == impl_->collections.end()) {
    return Status::NotFound("collection '" + std::string(collection) + "' does not exist");
  }
  return impl_->change_seqs[it->second.internal_id];
}

Status CodeStore::ChangesSince(std::string_view collection, uint64_t after, const ChangeFn& fn,
                               uint64_t* last) const {
  HAMDB_ASSIGN_OR_RETURN(CollectionInfo info, impl_->Lookup(collection));
  const uint32_t cid = info.internal_id;
  // One RocksDB snapshot for the counters and the log.
  const rocksdb::Snapshot* snap = impl_->db->GetSnapshot();
  struct Release {
    rocksdb::DB* db;
    const rocksdb::Snapshot* s;
    ~Release() { db->ReleaseSnapshot(s); }
  } release{impl_->db.get(), snap};
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  HAMDB_ASSIGN_OR_RETURN(uint64_t current, impl_->ReadCounter(sf::ChangeSeqKey(cid), ro));
  HAMDB_ASSIGN_OR_RETURN(uint64_t trimmed, impl_->ReadCounter(sf::ChangeTrimmedKey(cid), ro));
  if (after > current) {
    return Status::FailedPrecondition("change " + std::to_string(after) + " of '" + info.name +
                                      "' is ahead of the store's log, which ends at " +
                                      std::to_string(current));
  }
  if (after < trimmed) {
    return Status::FailedPrecondition("the changes of '" + info.name + "' after " +
                                      std::to_string(after) + " were trimmed (up to " +
                                      std::to_string(trimmed) + ")");
  }
  const std::string end = sf::CollectionPrefix(cid + 1);
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, impl_->changes_cf));
  uint64_t expect = after + 1;
  std::vector<uint64_t> ids;
  for (it->Seek(sf::ChangeKey(cid, after + 1)); it->Valid(); it->Next()) {
    const uint64_t seq = sf::GetBigEndian64(it->key().data() + 4);
    if (it->key().size() != sf::kItemKeySize || seq != expect) {
      return Status::Corruption("change log of '" + info.name + "' has a gap at " +
                                std::to_string(expect));
    }
    const rocksdb::Slice v = it->value();
    const uint8_t kind = v.size() > 0 ? static_cast<uint8_t>(v[0]) : 0xff;
    if (kind == sf::kChangeIdRange && v.size() == 17) {
      uint64_t first, count;
      std::memcpy(&first, v.data() + 1, 8);
      std::memcpy(&count, v.data() + 9, 8);
      ids.resize(count);
      for (uint64_t i = 0; i < count; ++i) ids[i] = first + i;
    } else if (kind == sf::kChangeIdList && (v.size() - 1) % 8 == 0) {
      ids.resize((v.size() - 1) / 8);
      std::memcpy(ids.data(), v.data() + 1, v.size() - 1);
    } else {
      return Status::Corruption("change " + std::to_string(seq) + " of '" + info.name +
                                "' does not decode");
    }
    fn(ids.data(), ids.size());
    ++expect;
  }
  HAMDB_RETURN_IF_ERROR(FromRocks(it->status(), "read change log"));
  if (expect != current + 1) {
    return Status::Corruption("change log of '" + info.name + "' ends at " +
                              std::to_string(expect - 1) + ", its counter at " +
                              std::to_string(current));
  }
  if (last) *last = current;
  return Status::OK();
}

Status CodeStore::TrimChanges(std::string_view collection, uint64_t upto) {
  std::lock_guard<std::mutex> files(impl_->files_mu);
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  auto it = impl_->collections.find(std::string(collection));
  if (it == impl_->collections.end()) {
    return Status::NotFound("collection '" + std::string(collection) + "' does not exist");
  }
  const uint32_t cid = it->second.internal_id;
  if (upto > impl_->change_seqs[cid]) {
    return Status::InvalidArgument("cannot trim changes beyond the last one");
  }
  HAMDB_ASSIGN_OR_RETURN(uint64_t trimmed, impl_->ReadCounter(sf::ChangeTrimmedKey(cid)));
  if (upto <= trimmed) return Status::OK();
  rocksdb::WriteBatch batch;
  batch.DeleteRange(impl_->changes_cf, sf::ChangeKey(cid, 0), sf::ChangeKey(cid, upto + 1));
  batch.Put(impl_->meta_cf, sf::ChangeTrimmedKey(cid), sf::EncodeFixed64(upto));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(impl_->db->Write(wo, &batch), "trim change log");
}

rocksdb::FileSystem* CodeStore::file_system() const { return impl_->fs; }

std::string CodeStore::SnapshotPath(const CollectionInfo& info) const {
  return (std::filesystem::path(impl_->dir) / sf::kSnapshotDir /
          sf::SnapshotFileName(info.internal_id))
      .string();
}

namespace {

constexpr char kBackupSnapshotDir[] = "hamdb-snapshots";

StatusOr<std::unique_ptr<rocksdb::BackupEngineReadOnly>> OpenBackups(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(std::filesystem::path(dir) / "meta", ec)) {
    return Status::NotFound("no backups in '" + dir + "'");
  }
  rocksdb::BackupEngineReadOnly* raw = nullptr;
  HAMDB_RETURN_IF_ERROR(FromRocks(rocksdb::BackupEngineReadOnly::Open(
                                      rocksdb::BackupEngineOptions(dir), rocksdb::Env::Default(), &raw),
                                  "open backups in '" + dir + "'"));
  return std::unique_ptr<rocksdb::BackupEngineReadOnly>(raw);
}

StoreBackupInfo ToInfo(const rocksdb::BackupInfo& b, const std::string& dir) {
  StoreBackupInfo info;
  info.id = b.backup_id;
  info.timestamp = b.timestamp;
  info.size_bytes = b.size;
  info.files = b.number_files;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(
           std::filesystem::path(dir) / kBackupSnapshotDir / std::to_string(b.backup_id), ec)) {
    if (e.is_regular_file(ec)) ++info.snapshot_files;
  }
  return info;
}

Status CopyDirFiles(const std::filesystem::path& from, const std::filesystem::path& to,
                    const std::string& suffix) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(to, ec);
  if (ec) return Status::IOError("create '" + to.string() + "': " + ec.message());
  if (!fs::is_directory(from, ec)) return Status::OK();
  for (const auto& e : fs::directory_iterator(from, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name.size() < suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    fs::copy_file(e.path(), to / name, fs::copy_options::overwrite_existing, ec);
    if (ec) return Status::IOError("copy '" + e.path().string() + "': " + ec.message());
  }
  if (ec) return Status::IOError("list '" + from.string() + "': " + ec.message());
  return Status::OK();
}

}  // namespace

StatusOr<StoreBackupInfo> CodeStore::Backup(const std::string& backup_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(backup_dir, ec);
  if (ec) return Status::IOError("create '" + backup_dir + "': " + ec.message());
  std::lock_guard<std::mutex> files(impl_->files_mu);
  const fs::path staging =
      fs::path(backup_dir) / kBackupSnapshotDir / ("incoming-" + std::to_string(::getpid()));
  fs::remove_all(staging, ec);
  HAMDB_RETURN_IF_ERROR(
      CopyDirFiles(fs::path(impl_->dir) / sf::kSnapshotDir, staging, ".hidx"));
  rocksdb::BackupEngine* raw = nullptr;
  Status s = FromRocks(rocksdb::BackupEngine::Open(rocksdb::BackupEngineOptions(backup_dir),
                                                   rocksdb::Env::Default(), &raw),
                       "open backups in '" + backup_dir + "'");
  std::unique_ptr<rocksdb::BackupEngine> engine(raw);
  rocksdb::BackupID id = 0;
  if (s.ok()) {
    rocksdb::CreateBackupOptions o;
    o.flush_before_backup = false;  // the WAL is backed up with the SST files
    const std::string meta = "{\"hamdb_format_version\": " + std::to_string(kStoreFormatVersion) + "}";
    s = FromRocks(engine->CreateNewBackupWithMetadata(o, impl_->db.get(), meta, &id),
                  "back up to '" + backup_dir + "'");
  }
  if (!s.ok()) {
    fs::remove_all(staging, ec);
    return s;
  }
  const fs::path final_dir = fs::path(backup_dir) / kBackupSnapshotDir / std::to_string(id);
  fs::remove_all(final_dir, ec);
  fs::rename(staging, final_dir, ec);
  if (ec) return Status::IOError("place the snapshots of backup " + std::to_string(id) + ": " + ec.message());
  rocksdb::BackupInfo b;
  HAMDB_RETURN_IF_ERROR(FromRocks(engine->GetBackupInfo(id, &b), "backup info"));
  return ToInfo(b, backup_dir);
}

StatusOr<std::vector<StoreBackupInfo>> CodeStore::ListBackups(const std::string& backup_dir) {
  HAMDB_ASSIGN_OR_RETURN(auto engine, OpenBackups(backup_dir));
  std::vector<rocksdb::BackupInfo> infos;
  engine->GetBackupInfo(&infos);
  if (infos.empty()) return Status::NotFound("no backups in '" + backup_dir + "'");
  std::vector<StoreBackupInfo> out;
  for (const auto& b : infos) out.push_back(ToInfo(b, backup_dir));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

Status CodeStore::RestoreBackup(const std::string& backup_dir, uint32_t id,
                                const std::string& db_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(db_dir, ec) && !fs::is_empty(db_dir, ec)) {
    return Status::InvalidArgument("restore target '" + db_dir + "' is not empty");
  }
  HAMDB_ASSIGN_OR_RETURN(std::vector<StoreBackupInfo> backups, ListBackups(backup_dir));
  if (id == 0) id = backups.back().id;
  if (std::none_of(backups.begin(), backups.end(), [&](const auto& b) { return b.id == id; })) {
    return Status::NotFound("no backup " + std::to_string(id) + " in '" + backup_dir + "'");
  }
  HAMDB_ASSIGN_OR_RETURN(auto engine, OpenBackups(backup_dir));
  HAMDB_RETURN_IF_ERROR(FromRocks(
      engine->RestoreDBFromBackup(rocksdb::RestoreOptions(), id, db_dir, db_dir),
      "restore backup " + std::to_string(id)));
  return CopyDirFiles(fs::path(backup_dir) / kBackupSnapshotDir / std::to_string(id),
                      fs::path(db_dir) / sf::kSnapshotDir, ".hidx");
}

Status CodeStore::VerifyBackup(const std::string& backup_dir, uint32_t id) {
  HAMDB_ASSIGN_OR_RETURN(std::vector<StoreBackupInfo> backups, ListBackups(backup_dir));
  HAMDB_ASSIGN_OR_RETURN(auto engine, OpenBackups(backup_dir));
  bool found = false;
  for (const StoreBackupInfo& b : backups) {
    if (id != 0 && b.id != id) continue;
    found = true;
    HAMDB_RETURN_IF_ERROR(FromRocks(engine->VerifyBackup(b.id, /*verify_with_checksum=*/true),
                                    "backup " + std::to_string(b.id)));
  }
  if (!found) return Status::NotFound("no backup " + std::to_string(id) + " in '" + backup_dir + "'");
  return Status::OK();
}

std::string CodeStore::BackupSnapshotDir(const std::string& backup_dir, uint32_t id) {
  return (std::filesystem::path(backup_dir) / kBackupSnapshotDir / std::to_string(id)).string();
}

Status CodeStore::Check(uint64_t* items) const {
  HAMDB_RETURN_IF_ERROR(FromRocks(impl_->db->VerifyChecksum(), "verify SST checksums"));
  HAMDB_ASSIGN_OR_RETURN(std::vector<CollectionInfo> infos, ListCollections());
  uint64_t n = 0;
  for (const CollectionInfo& info : infos) {
    const size_t nb = code_bytes(info.bits);
    Impl::Cursor code_cursor(impl_.get(), info.internal_id);
    rocksdb::Iterator* codes = code_cursor.it.get();
    for (; codes->Valid(); codes->Next()) {
      if (codes->key().size() != sf::kItemKeySize ||
          !sf::IsCodeValueSize(codes->value().size(), nb)) {
        return Status::Corruption("collection '" + info.name + "': item " +
                                  std::to_string(sf::GetBigEndian64(codes->key().data() + 4)) +
                                  " has a " + std::to_string(codes->value().size()) +
                                  "-byte code value, expected " + std::to_string(nb) + " or " +
                                  std::to_string(nb + sf::kScoreSize));
      }
      float score;
      if (sf::CodeValueScore(codes->value().data(), codes->value().size(), nb, &score)) {
        if (!std::isfinite(score)) {
          return Status::Corruption("collection '" + info.name + "': item " +
                                    std::to_string(sf::GetBigEndian64(codes->key().data() + 4)) +
                                    " has a stored score that is not finite");
        }
      }
      HAMDB_RETURN_IF_ERROR(CheckPadding(reinterpret_cast<const uint8_t*>(codes->value().data()),
                                         info.bits)
                                .WithContext("collection '" + info.name + "'"));
      ++n;
    }
    HAMDB_RETURN_IF_ERROR(FromRocks(codes->status(), "read codes of '" + info.name + "'"));
    Impl::Cursor record_cursor(impl_.get(), info.internal_id, impl_->items_cf);
    rocksdb::Iterator* recs = record_cursor.it.get();
    for (; recs->Valid(); recs->Next()) {
      Item item;
      item.id = recs->key().size() == sf::kItemKeySize ? sf::GetBigEndian64(recs->key().data() + 4) : 0;
      const std::string_view rec(recs->value().data(), recs->value().size());
      HAMDB_RETURN_IF_ERROR(
          DecodeItemRecord(rec, info.bits, &item).WithContext("collection '" + info.name + "'"));
    }
    HAMDB_RETURN_IF_ERROR(FromRocks(recs->status(), "read item records of '" + info.name + "'"));
    Impl::Cursor thumb_cursor(impl_.get(), info.internal_id, impl_->thumbs_cf);
    rocksdb::Iterator* thumbs = thumb_cursor.it.get();
    for (; thumbs->Valid(); thumbs->Next()) {
      const std::string_view t(thumbs->value().data(), thumbs->value().size());
      if (t.size() > sf::kMaxThumbnailBytes || !sf::IsThumbnailFormat(t)) {
        return Status::Corruption(
            "collection '" + info.name + "': the thumbnail of item " +
            std::to_string(thumbs->key().size() == sf::kItemKeySize
                               ? sf::GetBigEndian64(thumbs->key().data() + 4) : 0) +
            " is not a PNG or JPEG of at most " + std::to_string(sf::kMaxThumbnailBytes) + " bytes");
      }
    }
    HAMDB_RETURN_IF_ERROR(FromRocks(thumbs->status(), "read thumbnails of '" + info.name + "'"));
    HAMDB_ASSIGN_OR_RETURN(uint64_t trimmed,
                           impl_->ReadCounter(sf::ChangeTrimmedKey(info.internal_id)));
    HAMDB_RETURN_IF_ERROR(ChangesSince(info.name, trimmed, [](const uint64_t*, size_t) {})
                              .WithContext("change log"));
  }
  if (items) *items = n;
  return Status::OK();
}

}  // namespace hamdb
