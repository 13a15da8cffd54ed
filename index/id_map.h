// IdSlotMap: a compact id -> slot hash map for indexes that store items in
// dense slots (slot i holds ids[i] and code i).
//
// The table stores only slot numbers (4 bytes per cell, open addressing with
// linear probing, load factor <= 3/4, backward-shift deletion); the key of a
// cell is read from the caller's id array, so the map costs about 5-11 bytes
// per item instead of the ~40 of std::unordered_map. Every method therefore
// takes the current id array: `ids[slot]` must be the id of every slot the
// map holds.
//
// Thread safety: const methods may run concurrently; mutation needs external
// exclusion (the owning index's writer lock).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/huge_pages.h"
#include "core/prefetch.h"
#include "core/score.h"
#include "core/status.h"
#include "index/packed_ints.h"
#include "index/rw_lock.h"

namespace hamdb {

// Makes room in *v for `extra` more elements by at least 1.5x growth, so that
// a stream of small batches costs amortised O(batch) each. An exact-fit
// reserve (size() + extra) would reallocate and copy the whole vector on every
// batch: O(n) per write. A first bulk load reserves exactly what it needs.
template <typename Vector>
void ReserveForAppend(Vector* v, size_t extra) {
  const size_t need = v->size() + extra;
  if (need <= v->capacity()) return;
  v->reserve(std::max(need, v->capacity() + v->capacity() / 2));
}

// Growth prepared off the exclusive lock. A writer that excludes other
// writers (but not readers) calls GrowForAppend under the shared lock: when
// *v lacks room for `extra` more elements, *grown becomes a copy of it with
// room (as ReserveForAppend would make), O(n) while searches go on. Under the
// exclusive lock, AdoptGrown then swaps the copy in, O(1); a copy that no
// longer matches *v (another size) is dropped, and the append grows in place.
// The old buffer is left in *grown, to be freed after the lock is released.
template <typename Vector>
void GrowForAppend(const Vector& v, size_t extra, Vector* grown) {
  const size_t need = v.size() + extra;
  if (need <= v.capacity()) return;
  grown->reserve(std::max(need, v.capacity() + v.capacity() / 2));
  grown->assign(v.begin(), v.end());
}
template <typename Vector>
void AdoptGrown(Vector* v, Vector* grown) {
  if (grown->capacity() > v->capacity() && grown->size() == v->size()) v->swap(*grown);
}

class IdSlotMap {
 public:
  static constexpr uint32_t kNoSlot = UINT32_MAX;

  // The slot of `id`, or kNoSlot when absent.
  uint32_t Find(uint64_t id, const uint64_t* ids) const;
  // slots[i] = Find(keys[i], ids) for i in [0, n), with the cache misses of
  // all n lookups overlapped: every home cell is requested, then every
  // first candidate's id, before any probe reads them.
  void FindMany(const uint64_t* keys, size_t n, const uint64_t* ids, uint32_t* slots) const;
  // Cache hints for a coming Find or Insert of `id`, for writers that walk a
  // batch: PrefetchHome requests id's home cell; PrefetchCandidate, called
  // once that cell has arrived, requests the id its first occupant points at.
  void PrefetchHome(uint64_t id) const {
    if (cells_.size() != 0) cells_.Prefetch(Hash(id) & (cells_.size() - 1));
  }
  void PrefetchCandidate(uint64_t id, const uint64_t* ids) const {
    if (cells_.size() == 0) return;
    const uint32_t v = cells_.Get(Hash(id) & (cells_.size() - 1));
    if (v != 0) PrefetchLine(&ids[v - 1]);
  }
  // Maps id -> slot. `id` must be absent and ids[slot] == id already.
  void Insert(uint64_t id, uint32_t slot, const uint64_t* ids);
  // Removes `id` (present, ids[its slot] == id). Returns its slot.
  uint32_t Erase(uint64_t id, const uint64_t* ids);
  // `id` (present, at old_slot == ids index) moves to new_slot. Call before
  // ids[] is updated: ids[old_slot] must still be `id`.
  void Move(uint64_t id, uint32_t old_slot, uint32_t new_slot, const uint64_t* ids);
  // Makes room for n entries, so that Inserts up to that size cannot
  // allocate (or throw). Throws std::bad_alloc with the map unchanged.
  void Reserve(size_t n, const uint64_t* ids);
  // Reserve in two steps, for growth off the exclusive lock (GrowForAppend):
  // PrepareReserve (const) fills *cells with the table rehashed for n
  // entries when it needs to grow; AdoptCells swaps it in when the map has
  // not changed size since. May throw std::bad_alloc (the map unchanged).
  void PrepareReserve(size_t n, const uint64_t* ids, PackedInts* cells) const;
  void AdoptCells(PackedInts* cells, size_t size_at_prepare);
  // Rebuilds the table for ids[0, n): slot i holds ids[i], all distinct.
  void Rebuild(const uint64_t* ids, size_t n);
  void Clear();
  // Snapshots: the table as it is, so loading is a copy, not n inserts.
  // LoadState takes a map saved over exactly ids[0, n).
  void AppendState(std::string* out) const;
  Status LoadState(std::string_view* in, size_t n);

  size_t size() const { return size_; }
  size_t memory_bytes() const { return cells_.memory_bytes(); }

 private:
  static uint64_t Hash(uint64_t id);
  size_t FindCell(uint64_t id, const uint64_t* ids) const;  // cells_.size() if absent
  void Grow(const uint64_t* ids);
  void Rehash(size_t cells, const uint64_t* ids);
  size_t CellsFor(size_t n) const;
  PackedInts Rehashed(size_t cells, const uint64_t* ids) const;

  // slot + 1; 0 = empty. A power of two of cells, each log2(cells) bits wide
  // (a cell's value is below the number of cells, at most 3/4 full).
  PackedInts cells_;
  size_t size_ = 0;
};

// SlotScores: the score key (core/score.h) of every slot of a dense slot
// array, allocated only once some item has a score: until then it holds
// nothing and every slot reads kNoScore. Its owner keeps it in step with its
// slots: Append per new slot, MoveLast when the last slot fills a hole.
//
// Thread safety: as IdSlotMap.
class SlotScores {
 public:
  // The key of `slot`.
  uint16_t Get(size_t slot) const { return keys_.empty() ? kNoScore : keys_[slot]; }
  // The keys of slots [0, n), or null when no slot has a score.
  const uint16_t* data() const { return keys_.empty() ? nullptr : keys_.data(); }
  // Sets `slot` of `n` slots. May throw std::bad_alloc (first allocation).
  void Set(size_t slot, uint16_t key, size_t n) {
    if (keys_.empty()) {
      if (key == kNoScore) return;
      keys_.assign(n, kNoScore);
    }
    keys_[slot] = key;
  }
  // A new last slot, after `n` existing ones. May throw std::bad_alloc.
  void Append(uint16_t key, size_t n) {
    if (keys_.empty()) {
      if (key == kNoScore) return;
      keys_.assign(n, kNoScore);
    }
    ReserveForAppend(&keys_, 1);
    keys_.push_back(key);
  }
  // Off-lock growth of the keys for `extra` more slots (GrowForAppend).
  void GrowForAppend(size_t extra, std::vector<uint16_t>* grown) const {
    if (!keys_.empty()) hamdb::GrowForAppend(keys_, extra, grown);
  }
  void AdoptGrown(std::vector<uint16_t>* grown) { hamdb::AdoptGrown(&keys_, grown); }
  // The last slot moves into `slot` (or is simply dropped when it is `slot`).
  void MoveLast(size_t slot) {
    if (keys_.empty()) return;
    keys_[slot] = keys_.back();
    keys_.pop_back();
  }
  // The keys of slots [0, n) into *out; empty when no slot has a score.
  void Export(size_t n, std::vector<uint16_t>* out) const {
    if (keys_.empty()) {
      out->clear();
    } else {
      out->assign(keys_.begin(), keys_.begin() + static_cast<std::ptrdiff_t>(n));
    }
  }
  // Keeps the first n slots (when allocated and longer).
  void Truncate(size_t n) {
    if (keys_.size() > n) keys_.resize(n);
  }
  void Clear() { std::vector<uint16_t>().swap(keys_); }
  size_t memory_bytes() const { return keys_.capacity() * sizeof(uint16_t); }
  // Snapshots: the keys as a vector (empty when none). LoadState takes the
  // keys of exactly n slots.
  void AppendState(std::string* out) const;
  Status LoadState(std::string_view* in, size_t n);

 private:
  std::vector<uint16_t> keys_;  // empty, or one per slot
};

// Room for a write of up to n new items into dense slot arrays (ids, codes,
// score keys and their id map), made in two steps so that the O(size)
// copies of growth run off the exclusive lock: PrepareSlotGrowth (under a
// shared lock, with other writers excluded) copies into larger arrays
// whatever would have to grow; AdoptSlotGrowth (under the exclusive lock,
// before the write) swaps them in, O(1). Destroy the SlotGrowth after
// releasing the lock: it then holds the old arrays. Either step may be
// skipped; the write grows in place what was not prepared.
struct SlotGrowth {
  size_t size = 0;  // slots at PrepareSlotGrowth
  std::vector<uint64_t> ids;
  CodeArray codes;
  std::vector<uint16_t> scores;
  PackedInts id_cells;
};
// May throw std::bad_alloc; nothing is changed.
void PrepareSlotGrowth(const std::vector<uint64_t>& ids, const CodeArray& codes,
                       const SlotScores& scores, const IdSlotMap& slot_of, size_t code_bytes,
                       size_t n, SlotGrowth* g);
// Adopts nothing when the slots changed size since the preparation.
void AdoptSlotGrowth(SlotGrowth* g, std::vector<uint64_t>* ids, CodeArray* codes,
                     SlotScores* scores, IdSlotMap* slot_of);

// DenseSlots: (id, code, score) items in dense slots, as parallel arrays:
// slot i holds ids()[i], the code at codes() + i * code_bytes and the score
// key scores().Get(i), with an IdSlotMap to find an id's slot. Upsert
// overwrites an existing id's code and score in place;
// Erase moves the last slot into the hole, so other items' slots can change.
// This is the storage of the scanning indexes (Flat, GPUFlat, the IVF's
// untrained buffer).
//
// Thread safety: as IdSlotMap; the owning index's lock guards mutation.
class DenseSlots {
 public:
  explicit DenseSlots(size_t code_bytes) : code_bytes_(code_bytes) {}

  // Upserts n items; scores: n keys, or null for none. ResourceExhausted
  // when the slots would reach IdSlotMap::kNoSlot or memory runs out; the
  // items before the failure are in and the structure stays consistent.
  // `who` prefixes the message.
  Status Upsert(const uint64_t* ids, const uint8_t* codes, const uint16_t* scores, size_t n,
                const char* who);
  // Room for an Upsert of up to n new items, off the exclusive lock
  // (SlotGrowth). PrepareGrowth may throw std::bad_alloc; nothing changes.
  void PrepareGrowth(size_t n, SlotGrowth* g) const {
    PrepareSlotGrowth(ids_, codes_, scores_, slot_of_, code_bytes_, n, g);
  }
  void AdoptGrowth(SlotGrowth* g) { AdoptSlotGrowth(g, &ids_, &codes_, &scores_, &slot_of_); }
  // The write of an index that keeps its items here, guarded by `mu`: the
  // growth is prepared under a shared lock, then, under the exclusive lock,
  // `locked()` runs, the growth is adopted and the items upserted. The
  // caller holds its writer mutex, so no other write comes in between.
  template <typename SharedMutex, typename Locked>
  Status UpsertGrowingOffLock(SharedMutex& mu, const uint64_t* ids, const uint8_t* codes,
                              const uint16_t* scores, size_t n, const char* who, Locked&& locked) {
    SlotGrowth growth;  // outlives the lock: it ends up with the old arrays
    auto lock = LockAfterSharedPrepare(mu, [&] { PrepareGrowth(n, &growth); });
    locked();
    AdoptGrowth(&growth);
    return Upsert(ids, codes, scores, n, who);
  }
  // Removes `id` when present; returns whether it was.
  bool Erase(uint64_t id);
  void Clear();
  // Snapshots: ids, codes and the id map, restored by copies.
  void AppendState(std::string* out) const;
  Status LoadState(std::string_view* in);

  uint32_t Find(uint64_t id) const { return slot_of_.Find(id, ids_.data()); }
  size_t size() const { return ids_.size(); }
  size_t code_bytes() const { return code_bytes_; }
  const std::vector<uint64_t>& ids() const { return ids_; }
  const CodeArray& codes() const { return codes_; }
  const SlotScores& scores() const { return scores_; }
  size_t memory_bytes() const {
    return codes_.capacity() + ids_.capacity() * sizeof(uint64_t) + slot_of_.memory_bytes() +
           scores_.memory_bytes();
  }

 private:
  size_t code_bytes_;
  std::vector<uint64_t> ids_;
  CodeArray codes_;  // size() * code_bytes_
  SlotScores scores_;
  IdSlotMap slot_of_;
};

}  // namespace hamdb
