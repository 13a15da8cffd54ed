#include "collection/live_collection.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "core/binary_code.h"
#include "core/hamming.h"
#include "collection/filter.h"
#include "collection/index_snapshot.h"
#include "index/scan.h"

namespace hamdb {

using Clock = std::chrono::steady_clock;

Status LiveCollection::Create(CodeStore* store, const std::string& name, int bits,
                              const std::string& index_spec, const CollectionSettings& settings,
                              const StoreWriteOptions& wo) {
  HAMDB_RETURN_IF_ERROR(ValidateCollectionName(name));
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(bits));
  if (settings.codebook && settings.codebook->bits() != bits) {
    return Status::InvalidArgument("the codebook has " + std::to_string(settings.codebook->bits()) +
                                   "-bit codes but the collection " + std::to_string(bits));
  }
  HAMDB_RETURN_IF_ERROR(CheckIndexSpec(index_spec, bits, settings.codebook.has_value()));
  HAMDB_RETURN_IF_ERROR(CheckIndexedFields(settings.indexed_fields));
  if (settings.tie_break == TieBreak::kScore) {
    HAMDB_ASSIGN_OR_RETURN(IndexSpecInfo info, DescribeIndexSpec(index_spec));
    if (!info.keeps_scores) {
      return Status::InvalidArgument("tie_break \"score\" needs an index that keeps scores, and " +
                                     index_spec + " does not (Flat, MIH and Bucket do)");
    }
  }
  CollectionSpec spec;
  spec.name = name;
  spec.bits = bits;
  spec.index_spec = index_spec;
  spec.settings_json = CollectionSettingsJson(settings);
  return store->CreateCollection(spec, wo);
}

LiveCollection::LiveCollection(CodeStore* store, CollectionInfo info, IndexSpecInfo spec,
                               LiveCollectionOptions options)
    : store_(store), info_(std::move(info)), spec_(std::move(spec)), options_(std::move(options)) {
  if (!options_.index_maker) {
    options_.index_maker = [](std::string_view s, int bits, const IndexOptions& o) {
      return MakeIndex(s, bits, o);
    };
  }
}

LiveCollection::~LiveCollection() {
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    stopping_ = true;
  }
  state_cv_.notify_all();
  if (rebuild_thread_.joinable()) rebuild_thread_.join();
}

StatusOr<std::unique_ptr<LiveCollection>> LiveCollection::Open(
    CodeStore* store, std::string_view name, const LiveCollectionOptions& options) {
  HAMDB_ASSIGN_OR_RETURN(CollectionInfo info, store->GetCollection(name));
  const bool override_spec = !options.index_spec.empty();
  const std::string spec_text = override_spec ? options.index_spec : info.index_spec;
  StatusOr<IndexSpecInfo> spec = DescribeIndexSpec(spec_text);
  if (!spec.ok() && override_spec) return spec.status();
  // A stored spec this build cannot read still opens, degraded.
  IndexSpecInfo described = spec.ok() ? *spec : IndexSpecInfo{};
  if (!spec.ok()) described.spec = spec_text;
  std::unique_ptr<LiveCollection> c(
      new LiveCollection(store, std::move(info), std::move(described), options));

  Status broken = spec.status();
  StatusOr<CollectionSettings> settings = ParseCollectionSettings(c->info_.settings_json, c->bits());
  if (settings.ok()) {
    c->settings_ = std::move(settings).value();
    if (c->settings_.codebook) c->index_options_.codebook = PackedClassCodes(*c->settings_.codebook);
  } else if (broken.ok()) {
    broken = settings.status().WithContext("collection settings");
  }
  if (broken.ok()) {
    Status check = CheckIndexSpec(c->spec_.spec, c->bits(), !c->index_options_.codebook.empty());
    if (!check.ok() && override_spec) return check;
    broken = check;
  }

  // The encoder binding: failures are kept and reported, never fatal.
  if (!c->settings_.encoder_path.empty()) {
    StatusOr<std::shared_ptr<const Encoder>> enc =
        Status::NotSupported("this process was started without encoder support");
    // The artifact's checksum is recorded by the first open that can read
    // the artifact; an artifact replaced since then is not used.
    const std::string& recorded = c->settings_.encoder_checksum;
    StatusOr<std::string> sum = ArtifactFileChecksum(c->settings_.encoder_path);
    if (sum.ok() && recorded.empty()) {
      c->settings_.encoder_checksum = *sum;
      const std::string json = CollectionSettingsJson(c->settings_);
      Status saved = store->UpdateCollectionSettings(c->info_.name, json);
      if (saved.ok()) {
        c->info_.settings_json = json;
      } else {
        spdlog::warn("collection '{}': cannot record the encoder checksum: {}", c->info_.name,
                     saved.ToString());
      }
    }
    if (sum.ok() && *sum != recorded && !recorded.empty()) {
      enc = Status::FailedPrecondition("the encoder artifact '" + c->settings_.encoder_path +
                                       "' has checksum " + *sum + ", but the collection's codes come from " +
                                       recorded + "; put that artifact back");
    } else if (options.encoder) {
      enc = options.encoder;
    } else if (options.encoder_loader) {
      enc = options.encoder_loader(c->settings_.encoder_path);
    }
    if (enc.ok() && *enc && (*enc)->bits() == c->bits()) {
      c->encoder_ = std::move(enc).value();
    } else {
      c->encoder_error_ =
          enc.ok() ? Status::InvalidArgument("the encoder's code length differs from the collection's")
                   : enc.status();
    }
  }

  if (broken.ok()) {
    std::lock_guard<std::mutex> write(c->write_mu_);
    const auto t0 = Clock::now();
    StatusOr<std::shared_ptr<BinaryIndex>> index = Status::NotFound("snapshots are off");
    std::shared_ptr<FieldIndex> fields;
    if (options.snapshots) {
      index = c->LoadSnapshot(&fields);
      if (index.ok()) {
        c->open_info_.from_snapshot = true;
      } else if (index.status().code() == Status::Code::kNotFound) {
        spdlog::info("collection '{}': no index snapshot, building the index from the store",
                     c->info_.name);
      } else {
        spdlog::warn("collection '{}': index snapshot not used, rebuilding from the store: {}",
                     c->info_.name, index.status().ToString());
      }
    }
    if (!index.ok()) {
      c->open_info_.why_rebuilt = index.status().ToString();
      index = c->BuildIndex(&fields);
    }
    c->open_info_.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (index.ok()) {
      c->index_ = std::move(index).value();
      c->fields_ = std::move(fields);
      if (options.snapshots) {
        std::lock_guard<std::mutex> lock(c->state_mu_);
        c->snapshot_missing_ = !c->open_info_.from_snapshot && c->index_->size() > 0;
        c->last_snapshot_ = Clock::now();
        c->rebuild_thread_ = std::thread([p = c.get()] { p->RebuildLoop(); });
      }
      return c;
    }
    // A failed store read is the store's error, not the index's.
    if (index.status().code() == Status::Code::kIOError) return index.status();
    broken = index.status();
  }
  c->MarkDegraded(broken.WithContext("index " + c->spec_.spec + " could not be built"));
  return c;
}

std::shared_ptr<FieldIndex> LiveCollection::NewFieldIndex() const {
  if (settings_.indexed_fields.empty()) return nullptr;
  return std::make_shared<FieldIndex>(settings_.indexed_fields, code_bytes(bits()), options_.field_block_items);
}

StatusOr<std::shared_ptr<BinaryIndex>> LiveCollection::BuildIndex(
    std::shared_ptr<FieldIndex>* fields) const {
  HAMDB_ASSIGN_OR_RETURN(std::unique_ptr<BinaryIndex> index,
                         options_.index_maker(spec_.spec, bits(), index_options_));
  uint64_t total = 0;
  if (options_.progress) {
    HAMDB_ASSIGN_OR_RETURN(total, store_->Count(info_.name));
    options_.progress(0, total);
  }
  // The scan is gathered and handed to the index in one Add: a bulk build is
  // much cheaper for MIH than many incremental batches (each of which may
  // trigger a table rebuild), and the index keeps a copy of every code anyway.
  const size_t nb = code_bytes(bits());
  std::vector<uint64_t> ids;
  std::vector<uint8_t> codes;
  std::vector<uint16_t> scores;  // empty until some item has a score
  try {
    ids.reserve(total);
    codes.reserve(total * nb);
    HAMDB_RETURN_IF_ERROR(store_->ScanCodes(
        info_.name,
        [&](const uint64_t* chunk_ids, const uint8_t* chunk_codes, const float* chunk_scores,
            size_t n) {
          if (chunk_scores != nullptr || !scores.empty()) {
            scores.resize(ids.size(), kNoScore);
            for (size_t i = 0; i < n; ++i) {
              scores.push_back(chunk_scores != nullptr ? ScoreKeyOrNone(chunk_scores[i]) : kNoScore);
            }
          }
          ids.insert(ids.end(), chunk_ids, chunk_ids + n);
          codes.insert(codes.end(), chunk_codes, chunk_codes + n * nb);
          if (options_.progress) options_.progress(ids.size(), std::max<uint64_t>(total, ids.size()));
          return true;
        },
        options_.scan_chunk));
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("out of memory reading the codes of '" + info_.name + "'");
  }
  HAMDB_RETURN_IF_ERROR(
      index->Add(ids.data(), codes.data(), ids.size(), scores.empty() ? nullptr : scores.data()));
  *fields = NewFieldIndex();
  if (*fields) {
    try {
      // Both scans run in id order: each record finds its code by a merge.
      size_t at = 0;
      HAMDB_RETURN_IF_ERROR(store_->ScanRecords(info_.name, [&](const Item& item) {
        while (at < ids.size() && ids[at] < item.id) ++at;
        if (at == ids.size() || ids[at] != item.id) return true;  // a record without a code
        (*fields)->Set(item.id, codes.data() + at * nb, scores.empty() ? kNoScore : scores[at],
                       item.label, item.metadata_json);
        return true;
      }));
    } catch (const std::bad_alloc&) {
      return Status::ResourceExhausted("out of memory indexing the fields of '" + info_.name + "'");
    }
  }
  return std::shared_ptr<BinaryIndex>(std::move(index));
}

std::shared_ptr<BinaryIndex> LiveCollection::CurrentIndex() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return index_;
}

CollectionHealth LiveCollection::health() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  CollectionHealth h;
  h.degraded = index_ == nullptr;
  h.reason = degraded_reason_;
  h.failed_rebuilds = failed_rebuilds_;
  if (h.degraded) {
    h.next_rebuild_in_s =
        std::max(0.0, std::chrono::duration<double>(next_rebuild_ - Clock::now()).count());
  }
  return h;
}

size_t LiveCollection::index_size() const {
  std::shared_ptr<const BinaryIndex> index = CurrentIndex();
  return index ? index->size() : 0;
}

size_t LiveCollection::index_memory_bytes() const {
  std::shared_ptr<const BinaryIndex> index = CurrentIndex();
  std::shared_ptr<const FieldIndex> fields = field_index();
  return (index ? index->memory_bytes() : 0) + (fields ? fields->memory_bytes() : 0);
}

std::shared_ptr<const FieldIndex> LiveCollection::field_index() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return fields_;
}

void LiveCollection::MarkDegraded(const Status& why) {
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    index_.reset();
    fields_.reset();
    degraded_reason_ = why.ToString();
    failed_rebuilds_ = 0;
    next_rebuild_ = Clock::now() + options_.rebuild_delay;
    if (!rebuild_thread_.joinable()) rebuild_thread_ = std::thread([this] { RebuildLoop(); });
  }
  state_cv_.notify_all();
  spdlog::warn("collection '{}' is degraded (searches scan the store until the index is rebuilt): {}",
               info_.name, why.ToString());
}

void LiveCollection::UpdateIndex(const char* what, std::string* warning,
                                 const std::function<Status(BinaryIndex&)>& update,
                                 const std::function<std::vector<FieldIndex::Update>()>& field_updates) {
  std::shared_ptr<BinaryIndex> index;
  std::shared_ptr<FieldIndex> fields;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    index = index_;
    fields = fields_;
  }
  if (!index) return;  // degraded: the rebuild reads the store
  Status s;
  try {
    if (fields) {
      s = fields->Apply(field_updates(), [&] { return update(*index); });
    } else {
      s = update(*index);
    }
  } catch (const std::bad_alloc&) {
    s = Status::ResourceExhausted("out of memory");
  }
  if (s.ok()) return;
  MarkDegraded(s.WithContext(std::string("index update after a durable ") + what + " failed"));
  if (warning) {
    *warning = std::string(what) +
               " is durable, but the index update failed; the collection is degraded and its "
               "index is being rebuilt in the background: " +
               s.ToString();
  }
}

void LiveCollection::RebuildLoop() {
  std::unique_lock<std::mutex> lock(state_mu_);
  while (!stopping_) {
    if (index_ != nullptr) {
      if (SnapshotDue()) {
        lock.unlock();
        Status s = SaveSnapshot();
        lock.lock();
        if (!s.ok()) {
          next_snapshot_try_ = Clock::now() + std::max<std::chrono::milliseconds>(
                                                  options_.rebuild_delay, std::chrono::seconds(10));
          spdlog::warn("collection '{}': index snapshot failed, next try in {} s: {}", info_.name,
                       std::chrono::duration<double>(next_snapshot_try_ - Clock::now()).count(),
                       s.ToString());
        }
        continue;
      }
      // Nothing due: sleep until the interval could make a snapshot due, or,
      // once that time has passed (no change since), until a write wakes us.
      const auto deadline =
          std::max(next_snapshot_try_, last_snapshot_ + options_.snapshot_interval);
      if (options_.snapshots && deadline > Clock::now()) {
        state_cv_.wait_until(lock, deadline);
      } else {
        state_cv_.wait(lock);
      }
      continue;
    }
    if (Clock::now() < next_rebuild_) {
      state_cv_.wait_until(lock, next_rebuild_);
      continue;
    }
    lock.unlock();
    StatusOr<std::shared_ptr<BinaryIndex>> built = Status::Internal("not run");
    std::shared_ptr<FieldIndex> fields;
    {
      // Writes wait while the index is rebuilt, so none is missed by it.
      std::lock_guard<std::mutex> write(write_mu_);
      try {
        built = BuildIndex(&fields);
      } catch (const std::exception& e) {
        built = Status::Internal(std::string("rebuild threw: ") + e.what());
      }
      lock.lock();
      if (built.ok()) {
        index_ = std::move(built).value();
        fields_ = std::move(fields);
        degraded_reason_.clear();
        failed_rebuilds_ = 0;
      }
    }
    if (built.ok()) {
      state_cv_.notify_all();
      spdlog::info("collection '{}': index {} rebuilt, {} items, healthy again", info_.name,
                   spec_.spec, index_->size());
      continue;
    }
    ++failed_rebuilds_;
    const auto wait = std::min<std::chrono::milliseconds>(
        options_.max_rebuild_delay,
        options_.rebuild_delay * (int64_t{1} << std::min(failed_rebuilds_, 20)));
    next_rebuild_ = Clock::now() + wait;
    degraded_reason_ = built.status().WithContext("index rebuild failed").ToString();
    spdlog::warn("collection '{}': index rebuild {} failed, next try in {} ms: {}", info_.name,
                 failed_rebuilds_, wait.count(), built.status().ToString());
  }
}

bool LiveCollection::SnapshotDue() const {
  if (!options_.snapshots || index_ == nullptr || stopping_) return false;
  const auto now = Clock::now();
  if (now < next_snapshot_try_) return false;
  if (snapshot_missing_ && index_->size() > 0) return true;
  if (items_since_snapshot_ >= options_.snapshot_after_items) return true;
  return items_since_snapshot_ > 0 && now >= last_snapshot_ + options_.snapshot_interval;
}

Status LiveCollection::SaveSnapshot() {
  std::lock_guard<std::mutex> one_at_a_time(snapshot_mu_);
  const auto t0 = Clock::now();
  std::string state, fields_state;
  IndexSnapshotHeader header;
  uint64_t counted = 0;
  {
    // No write group is in flight: the index is the store at `seq`.
    std::lock_guard<std::mutex> write(write_mu_);
    std::shared_ptr<BinaryIndex> index = CurrentIndex();
    if (!index) {
      return Status::FailedPrecondition("collection '" + info_.name +
                                        "' is degraded; no index to snapshot");
    }
    HAMDB_ASSIGN_OR_RETURN(header.change_seq, store_->ChangeSequence(info_.name));
    bool missing;
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      counted = items_since_snapshot_;
      missing = snapshot_missing_;
    }
    if (!missing && header.change_seq == snapshot_seq_) {
      std::lock_guard<std::mutex> lock(state_mu_);
      items_since_snapshot_ -= std::min(counted, items_since_snapshot_);
      last_snapshot_ = Clock::now();
      return Status::OK();
    }
    // The state is about the index's arrays: one allocation, no regrowth
    // copies while writes wait.
    state.reserve(index->memory_bytes() + (1u << 20));
    HAMDB_RETURN_IF_ERROR(index->SaveState(&state));
    header.items = index->size();
    if (std::shared_ptr<const FieldIndex> fields = field_index()) fields->AppendState(&fields_state);
  }
  const double copy_s = std::chrono::duration<double>(Clock::now() - t0).count();
  header.collection_id = info_.internal_id;
  header.collection = info_.name;
  header.spec = spec_.spec;
  header.bits = bits();
  HAMDB_RETURN_IF_ERROR(
      WriteIndexSnapshot(store_->file_system(), store_->SnapshotPath(info_), header, state, fields_state));
  HAMDB_RETURN_IF_ERROR(store_->TrimChanges(info_.name, header.change_seq));
  snapshot_seq_ = header.change_seq;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    items_since_snapshot_ -= std::min(counted, items_since_snapshot_);
    snapshot_missing_ = false;
    last_snapshot_ = Clock::now();
  }
  spdlog::info("collection '{}': index snapshot at change {}: {} items, {:.1f} MiB in {:.2f} s "
               "(writes paused {:.3f} s)",
               info_.name, header.change_seq, header.items, state.size() / 1048576.0,
               std::chrono::duration<double>(Clock::now() - t0).count(), copy_s);
  return Status::OK();
}

StatusOr<std::shared_ptr<BinaryIndex>> LiveCollection::LoadSnapshot(
    std::shared_ptr<FieldIndex>* fields) {
  auto t0 = Clock::now();
  auto lap = [&t0] {
    const auto now = Clock::now();
    const double s = std::chrono::duration<double>(now - t0).count();
    t0 = now;
    return s;
  };
  IndexSnapshotHeader h;
  std::string state, fields_state;
  HAMDB_RETURN_IF_ERROR(ReadIndexSnapshot(store_->file_system(), store_->SnapshotPath(info_), &h,
                                          &state, &fields_state));
  open_info_.read_seconds = lap();
  if (h.collection_id != info_.internal_id || h.spec != spec_.spec || h.bits != bits()) {
    return Status::FailedPrecondition("the snapshot is of index " + h.spec + " over " +
                                      std::to_string(h.bits) + "-bit codes, not " + spec_.spec +
                                      " over " + std::to_string(bits()));
  }
  HAMDB_ASSIGN_OR_RETURN(std::unique_ptr<BinaryIndex> index,
                         options_.index_maker(spec_.spec, bits(), index_options_));
  HAMDB_RETURN_IF_ERROR(index->LoadState(state).WithContext("snapshot state"));
  std::string().swap(state);
  open_info_.load_seconds = lap();
  if (index->size() != h.items) {
    return Status::Corruption("the snapshot holds " + std::to_string(index->size()) +
                              " items, its header says " + std::to_string(h.items));
  }
  *fields = NewFieldIndex();
  if (*fields) {
    if (fields_state.empty()) {
      return Status::FailedPrecondition("the snapshot has no field index for indexed_fields");
    }
    std::string_view in = fields_state;
    HAMDB_RETURN_IF_ERROR((*fields)->LoadState(&in).WithContext("snapshot field index"));
    if (!in.empty()) return Status::Corruption("snapshot field index has trailing bytes");
  }
  // Bring it up to date: every id touched after the snapshot is re-read.
  std::vector<uint64_t> touched;
  HAMDB_RETURN_IF_ERROR(store_->ChangesSince(info_.name, h.change_seq,
                                             [&](const uint64_t* ids, size_t n) {
                                               touched.insert(touched.end(), ids, ids + n);
                                             }));
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  if (touched.size() > std::max<uint64_t>(100000, h.items / 2)) {
    return Status::FailedPrecondition(std::to_string(touched.size()) +
                                      " items changed since the snapshot; a rebuild is faster");
  }
  std::vector<uint64_t> add_ids, removed;
  std::vector<uint8_t> add_codes;
  std::vector<uint16_t> add_scores;
  try {
    for (uint64_t id : touched) {
      StatusOr<Item> item = store_->Get(info_.name, id);
      if (item.ok()) {
        if (*fields) {
          (*fields)->Set(id, item->code.data(), item->score ? ScoreKey(*item->score) : kNoScore,
                         item->label, item->metadata_json);
        }
        add_ids.push_back(id);
        add_codes.insert(add_codes.end(), item->code.begin(), item->code.end());
        add_scores.push_back(item->score ? ScoreKey(*item->score) : kNoScore);
      } else if (item.status().code() == Status::Code::kNotFound) {
        if (*fields) (*fields)->Erase(id);
        removed.push_back(id);
      } else {
        return item.status();
      }
    }
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("out of memory replaying the changes after the snapshot");
  }
  if (!removed.empty()) {
    HAMDB_RETURN_IF_ERROR(index->Remove(removed.data(), removed.size(), nullptr));
  }
  if (!add_ids.empty()) {
    HAMDB_RETURN_IF_ERROR(
        index->Add(add_ids.data(), add_codes.data(), add_ids.size(), add_scores.data()));
  }
  open_info_.replay_seconds = lap();
  snapshot_seq_ = h.change_seq;
  open_info_.replayed_ids = touched.size();
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    snapshot_missing_ = false;
    items_since_snapshot_ = touched.size();
  }
  spdlog::info("collection '{}': index {} loaded from its snapshot at change {} ({} items; read "
               "{:.3f} s, restore {:.3f} s), {} changed ids replayed in {:.3f} s",
               info_.name, spec_.spec, h.change_seq, h.items, open_info_.read_seconds,
               open_info_.load_seconds, touched.size(), open_info_.replay_seconds);
  return std::shared_ptr<BinaryIndex>(std::move(index));
}

bool LiveCollection::WaitHealthy(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(state_mu_);
  return state_cv_.wait_for(lock, timeout, [this] { return index_ != nullptr; });
}

Status LiveCollection::Put(const std::vector<ItemInput>& items, const StoreWriteOptions& wo,
                           std::vector<uint64_t>* assigned_ids, std::string* warning) {
  PendingWrite w;
  w.op.kind = GroupedWrite::Kind::kPut;
  w.op.items = &items;
  w.op.max_id = std::min(wo.max_id, spec_.max_id);
  w.sync = wo.sync;
  w.warning = warning;
  HAMDB_RETURN_IF_ERROR(Commit(&w));
  if (assigned_ids) *assigned_ids = std::move(w.op.assigned_ids);
  return Status::OK();
}

Status LiveCollection::PutCodes(const uint64_t* ids, const uint8_t* codes, size_t n,
                                const StoreWriteOptions& wo, std::vector<uint64_t>* assigned_ids,
                                std::string* warning, const float* scores) {
  PendingWrite w;
  w.op.kind = GroupedWrite::Kind::kPutCodes;
  w.op.ids = ids;
  w.op.codes = codes;
  w.op.scores = scores;
  w.op.n = n;
  w.op.max_id = std::min(wo.max_id, spec_.max_id);
  w.sync = wo.sync;
  w.warning = warning;
  HAMDB_RETURN_IF_ERROR(Commit(&w));
  if (assigned_ids) *assigned_ids = std::move(w.op.assigned_ids);
  return Status::OK();
}

Status LiveCollection::Delete(const std::vector<uint64_t>& ids, const StoreWriteOptions& wo,
                              size_t* deleted, std::string* warning) {
  PendingWrite w;
  w.op.kind = GroupedWrite::Kind::kDelete;
  w.op.ids = ids.data();
  w.op.n = ids.size();
  w.sync = wo.sync;
  w.warning = warning;
  HAMDB_RETURN_IF_ERROR(Commit(&w));
  if (deleted) *deleted = w.op.deleted;
  return Status::OK();
}

namespace {

// Field index updates that erase these ids.
std::vector<FieldIndex::Update> EraseUpdates(const uint64_t* ids, size_t n) {
  std::vector<FieldIndex::Update> erase(n);
  for (size_t i = 0; i < n; ++i) {
    erase[i].id = ids[i];
    erase[i].erase = true;
  }
  return erase;
}

}  // namespace

Status LiveCollection::Commit(PendingWrite* w) {
  std::unique_lock<std::mutex> queue_lock(queue_mu_);
  queue_.push_back(w);
  w->cv.wait(queue_lock, [&] { return w->done || queue_.front() == w; });
  if (w->done) return w->op.status;

  // This writer leads a group: itself and the writers queued behind it.
  std::vector<PendingWrite*> group;
  std::vector<GroupedWrite*> ops;
  size_t items = 0;
  bool sync = false;
  for (PendingWrite* p : queue_) {
    if (!group.empty() && items + p->op.size() > kMaxGroupItems) break;
    group.push_back(p);
    ops.push_back(&p->op);
    items += p->op.size();
    sync = sync || p->sync;
  }
  queue_lock.unlock();
  using Seconds = std::chrono::duration<double>;
  double store_seconds = 0, sync_seconds = 0, index_seconds = 0;
  size_t written = 0;  // the items (or ids to delete) of the requests the store took
  {
    std::lock_guard<std::mutex> write(write_mu_);
    const auto t0 = std::chrono::steady_clock::now();
    // Each request's own status says what became of it.
    (void)store_->WriteGroup(info_.name, ops, sync, &sync_seconds);
    const auto t1 = std::chrono::steady_clock::now();
    store_seconds = Seconds(t1 - t0).count();
    const size_t nb = code_bytes(bits());
    for (PendingWrite* p : group) {
      GroupedWrite& op = p->op;
      if (!op.status.ok()) continue;
      written += op.size();
      if (op.kind == GroupedWrite::Kind::kDelete) {
        UpdateIndex(
            "delete", p->warning, [&](BinaryIndex& index) { return index.Remove(op.ids, op.n, nullptr); },
            [&] { return EraseUpdates(op.ids, op.n); });
      } else if (op.kind == GroupedWrite::Kind::kPutCodes) {
        UpdateIndex("write", p->warning, [&](BinaryIndex& index) {
          std::vector<uint16_t> keys;
          if (op.scores != nullptr) {
            keys.resize(op.n);
            for (size_t i = 0; i < op.n; ++i) keys[i] = ScoreKey(op.scores[i]);
          }
          return index.Add(op.assigned_ids.data(), op.codes, op.n,
                           keys.empty() ? nullptr : keys.data());
        }, [&] {
          // Bare codes replace whole items: no label, no metadata.
          return EraseUpdates(op.assigned_ids.data(), op.assigned_ids.size());
        });
      } else {
        UpdateIndex("write", p->warning, [&](BinaryIndex& index) {
          // The store validated every code; gather them for one index call. A
          // repeated id in one request ends with its last code, in both places.
          std::vector<uint8_t> codes(op.items->size() * nb);
          std::vector<uint16_t> keys(op.items->size(), kNoScore);
          for (size_t i = 0; i < op.items->size(); ++i) {
            const ItemInput& in = (*op.items)[i];
            std::copy(in.code.begin(), in.code.end(), codes.begin() + i * nb);
            if (in.score) keys[i] = ScoreKey(*in.score);
          }
          return index.Add(op.assigned_ids.data(), codes.data(), op.assigned_ids.size(),
                           keys.data());
        }, [&] {
          std::vector<FieldIndex::Update> set(op.items->size());
          for (size_t i = 0; i < set.size(); ++i) {
            const ItemInput& in = (*op.items)[i];
            set[i].id = op.assigned_ids[i];
            set[i].code = in.code.data();
            set[i].score = in.score ? ScoreKey(*in.score) : kNoScore;
            set[i].label = in.label;
            set[i].metadata_json = in.metadata_json;
          }
          return set;
        });
      }
    }
    index_seconds = Seconds(std::chrono::steady_clock::now() - t1).count();
  }
  if (options_.snapshots) {
    bool due;
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      items_since_snapshot_ += written;
      due = SnapshotDue();
    }
    if (due) state_cv_.notify_all();
  }
  queue_lock.lock();
  write_stats_.groups++;
  write_stats_.writes += group.size();
  write_stats_.items += written;
  write_stats_.store_seconds += store_seconds;
  write_stats_.sync_seconds += sync_seconds;
  write_stats_.index_seconds += index_seconds;
  for (PendingWrite* p : group) {
    queue_.pop_front();
    if (p != w) {
      p->done = true;
      p->cv.notify_one();  // under queue_mu_: p stays alive until it is released
    }
  }
  if (!queue_.empty()) queue_.front()->cv.notify_one();
  return w->op.status;
}

LiveCollection::WriteStats LiveCollection::write_stats() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return write_stats_;
}

size_t LiveCollection::pending_writes() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return queue_.size();
}

StatusOr<Item> LiveCollection::Get(uint64_t id) const { return store_->Get(info_.name, id); }

StatusOr<std::string> LiveCollection::Thumbnail(uint64_t id) const {
  return store_->GetThumbnail(info_.name, id);
}

StatusOr<uint64_t> LiveCollection::SampleId(uint64_t r) const {
  return store_->SampleId(info_.name, r);
}

StatusOr<SearchResult> LiveCollection::ScanStore(const uint8_t* query, size_t k, uint32_t radius,
                                                 bool is_range, TieBreak tie,
                                                 const IdFilter* filter) const {
  // The same argument checks and the same top-k selection as the exact scans
  // of index/, so a degraded collection answers exactly what Flat would.
  HAMDB_RETURN_IF_ERROR(is_range ? CheckRangeArgs(query, bits()) : CheckSearchArgs(query, k, bits()));
  const size_t nb = code_bytes(bits());
  const HammingKernel kernel = SelectHammingKernel(nb);
  ExactScanResult result(k, radius, is_range, bits(), tie);
  std::vector<uint16_t> dist;
  HAMDB_RETURN_IF_ERROR(store_->ScanCodes(
      info_.name,
      [&](const uint64_t* ids, const uint8_t* codes, const float* scores, size_t n) {
        dist.resize(n);
        kernel.distances(query, codes, n, nb, dist.data());
        for (size_t i = 0; i < n; ++i) {
          // The filter is asked last: most items are rejected by distance.
          if (dist[i] > result.limit() || (filter != nullptr && !filter->Allows(ids[i]))) continue;
          result.Offer(dist[i], ids[i], scores != nullptr ? ScoreKeyOrNone(scores[i]) : kNoScore);
        }
        return true;
      },
      options_.scan_chunk));
  return result.Finish();
}

TieBreak LiveCollection::default_tie_break() const {
  if (!spec_.keeps_scores) return TieBreak::kId;
  if (settings_.tie_break) return *settings_.tie_break;
  return settings_.encoder_path.empty() ? TieBreak::kId : TieBreak::kScore;
}

Status LiveCollection::CheckTieBreak(const SearchParams& p) const {
  HAMDB_RETURN_IF_ERROR(CheckFilterSupported(spec_.spec, spec_.filters, p.filter)
                            .WithContext("collection '" + info_.name + "'"));
  return CheckTieBreakSupported(spec_.spec, spec_.keeps_scores, p.tie_break);
}

StatusOr<SearchResult> LiveCollection::Search(const uint8_t* query, size_t k,
                                              const SearchParams& p, bool* from_store_scan) const {
  HAMDB_RETURN_IF_ERROR(CheckTieBreak(p));
  std::shared_ptr<const BinaryIndex> index = CurrentIndex();
  if (from_store_scan) *from_store_scan = index == nullptr;
  if (!index) return ScanStore(query, k, 0, false, p.tie_break, p.filter);
  return SearchFiltered(*index, query, k, 0, false, p, options_.filter_planning);
}

StatusOr<SearchResult> LiveCollection::RangeSearch(const uint8_t* query, uint32_t radius,
                                                   const SearchParams& p,
                                                   bool* from_store_scan) const {
  HAMDB_RETURN_IF_ERROR(CheckTieBreak(p));
  std::shared_ptr<const BinaryIndex> index = CurrentIndex();
  if (from_store_scan) *from_store_scan = index == nullptr;
  if (!index) return ScanStore(query, 0, radius, true, p.tie_break, p.filter);
  return SearchFiltered(*index, query, 0, radius, true, p, options_.filter_planning);
}

Status LiveCollection::SearchBatch(const uint8_t* queries, size_t nq, size_t k,
                                   const SearchParams& p, std::vector<SearchResult>* out,
                                   bool* from_store_scan) const {
  HAMDB_RETURN_IF_ERROR(CheckTieBreak(p));
  std::shared_ptr<const BinaryIndex> index = CurrentIndex();
  if (from_store_scan) *from_store_scan = index == nullptr;
  if (index && p.filter != nullptr && options_.filter_planning.plan) {
    // Each query planned on its own: the best path depends on where it is.
    HAMDB_RETURN_IF_ERROR(CheckBatchArgs(queries, nq, k, bits(), out));
    const size_t nb = code_bytes(bits());
    std::vector<SearchResult> results(nq);
    for (size_t q = 0; q < nq; ++q) {
      HAMDB_ASSIGN_OR_RETURN(results[q], SearchFiltered(*index, queries + q * nb, k, 0, false, p,
                                                        options_.filter_planning));
    }
    *out = std::move(results);
    return Status::OK();
  }
  if (index) return index->SearchBatch(queries, nq, k, p, out);
  out->clear();
  const size_t nb = code_bytes(bits());
  for (size_t q = 0; q < nq; ++q) {
    HAMDB_ASSIGN_OR_RETURN(SearchResult r, ScanStore(queries + q * nb, k, 0, false, p.tie_break, p.filter));
    out->push_back(std::move(r));
  }
  return Status::OK();
}

}  // namespace hamdb
