#include "core/prefetch.h"
#include "index/id_map.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <new>
#include <string>

#include "index/state_io.h"

namespace hamdb {

uint64_t IdSlotMap::Hash(uint64_t x) {
  // splitmix64 finaliser: ids are often sequential, so mix every bit.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

size_t IdSlotMap::FindCell(uint64_t id, const uint64_t* ids) const {
  const size_t n = cells_.size();
  if (n == 0) return 0;
  const size_t mask = n - 1;
  for (size_t c = Hash(id) & mask;; c = (c + 1) & mask) {
    const uint32_t v = cells_.Get(c);
    if (v == 0) return n;
    if (ids[v - 1] == id) return c;
  }
}

uint32_t IdSlotMap::Find(uint64_t id, const uint64_t* ids) const {
  const size_t c = FindCell(id, ids);
  return c < cells_.size() ? cells_.Get(c) - 1 : kNoSlot;
}

void IdSlotMap::FindMany(const uint64_t* keys, size_t n, const uint64_t* ids, uint32_t* slots) const {
  if (cells_.size() == 0) {
    std::fill(slots, slots + n, kNoSlot);
    return;
  }
  const size_t mask = cells_.size() - 1;
  for (size_t i = 0; i < n; ++i) cells_.Prefetch(Hash(keys[i]) & mask);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t v = cells_.Get(Hash(keys[i]) & mask);
    if (v != 0) PrefetchLine(&ids[v - 1]);
  }
  for (size_t i = 0; i < n; ++i) slots[i] = Find(keys[i], ids);
}

void IdSlotMap::Grow(const uint64_t* ids) { Rehash(std::max<size_t>(16, cells_.size() * 2), ids); }

void IdSlotMap::Rehash(size_t cells, const uint64_t* ids) { cells_ = Rehashed(cells, ids); }

PackedInts IdSlotMap::Rehashed(size_t cells, const uint64_t* ids) const {
  // Allocate first: if that throws, the map is unchanged. A cell holds
  // slot + 1 <= size < cells, so log2(cells) bits suffice.
  PackedInts fresh;
  fresh.Assign(cells, std::max(PackedInts::WidthFor(cells - 1), cells_.width()));
  const size_t mask = cells - 1;
  for (size_t i = 0; i < cells_.size(); ++i) {
    const uint32_t v = cells_.Get(i);
    if (v == 0) continue;
    size_t c = Hash(ids[v - 1]) & mask;
    while (fresh.Get(c) != 0) c = (c + 1) & mask;
    fresh.Set(c, v);
  }
  return fresh;
}

size_t IdSlotMap::CellsFor(size_t n) const {
  size_t cells = std::max<size_t>(16, cells_.size());
  while (n * 4 > cells * 3) cells *= 2;
  return cells;
}

void IdSlotMap::Reserve(size_t n, const uint64_t* ids) {
  const size_t cells = CellsFor(n);
  if (cells != cells_.size()) Rehash(cells, ids);
}

void IdSlotMap::PrepareReserve(size_t n, const uint64_t* ids, PackedInts* cells) const {
  const size_t want = CellsFor(n);
  if (want != cells_.size()) *cells = Rehashed(want, ids);
}

void IdSlotMap::AdoptCells(PackedInts* cells, size_t size_at_prepare) {
  if (cells->size() > cells_.size() && size_ == size_at_prepare) std::swap(cells_, *cells);
}

void IdSlotMap::Insert(uint64_t id, uint32_t slot, const uint64_t* ids) {
  while ((size_ + 1) * 4 > cells_.size() * 3 || slot + uint64_t{1} > cells_.max_value()) Grow(ids);
  const size_t mask = cells_.size() - 1;
  size_t c = Hash(id) & mask;
  while (cells_.Get(c) != 0) c = (c + 1) & mask;
  cells_.Set(c, slot + 1);
  ++size_;
}

uint32_t IdSlotMap::Erase(uint64_t id, const uint64_t* ids) {
  size_t hole = FindCell(id, ids);
  assert(hole < cells_.size());
  const uint32_t slot = cells_.Get(hole) - 1;
  const size_t mask = cells_.size() - 1;
  // Backward-shift deletion: pull later members of the probe run into the
  // hole when their home position allows it, so lookups never need
  // tombstones.
  for (size_t c = (hole + 1) & mask; cells_.Get(c) != 0; c = (c + 1) & mask) {
    const uint32_t v = cells_.Get(c);
    const size_t home = Hash(ids[v - 1]) & mask;
    // The entry at c may move to `hole` iff home is not in (hole, c].
    const bool movable = hole <= c ? (home <= hole || home > c) : (home <= hole && home > c);
    if (movable) {
      cells_.Set(hole, v);
      hole = c;
    }
  }
  cells_.Set(hole, 0);
  --size_;
  return slot;
}

void IdSlotMap::Move(uint64_t id, uint32_t old_slot, uint32_t new_slot, const uint64_t* ids) {
  while (new_slot + uint64_t{1} > cells_.max_value()) Grow(ids);
  const size_t c = FindCell(id, ids);
  assert(c < cells_.size() && cells_.Get(c) == old_slot + 1);
  (void)old_slot;
  cells_.Set(c, new_slot + 1);
}

void IdSlotMap::Rebuild(const uint64_t* ids, size_t n) {
  size_t cap = 16;
  while (cap * 3 < n * 4) cap *= 2;
  cells_.Assign(cap, PackedInts::WidthFor(cap - 1));
  size_ = 0;
  for (size_t i = 0; i < n; ++i) Insert(ids[i], static_cast<uint32_t>(i), ids);
}

void IdSlotMap::Clear() {
  cells_.Clear();
  size_ = 0;
}


Status DenseSlots::Upsert(const uint64_t* ids, const uint8_t* codes, const uint16_t* scores,
                          size_t n, const char* who) {
  if (ids_.size() + n >= IdSlotMap::kNoSlot) {
    return Status::ResourceExhausted(std::string(who) + " holds at most 2^32 - 2 items");
  }
  const size_t cb = code_bytes_;
  try {
    ReserveForAppend(&ids_, n);
    ReserveForAppend(&codes_, n * cb);
    // A first load sizes the id map once instead of doubling it log(n) times.
    if (ids_.empty()) slot_of_.Reserve(n, ids_.data());
    // The id lookups miss the cache at random places: each is requested a
    // few items ahead (as MihIndex::AddItems does), so that misses overlap.
    constexpr size_t kAhead = 8;
    for (size_t j = 0; j < std::min(n, kAhead); ++j) slot_of_.PrefetchHome(ids[j]);
    for (size_t i = 0; i < n; ++i) {
      if (i + kAhead < n) slot_of_.PrefetchHome(ids[i + kAhead]);
      if (i + kAhead / 2 < n) slot_of_.PrefetchCandidate(ids[i + kAhead / 2], ids_.data());
      const uint32_t slot = slot_of_.Find(ids[i], ids_.data());
      const uint16_t key = scores != nullptr ? scores[i] : kNoScore;
      if (slot != IdSlotMap::kNoSlot) {
        std::memcpy(codes_.data() + static_cast<size_t>(slot) * cb, codes + i * cb, cb);
        scores_.Set(slot, key, ids_.size());
        continue;
      }
      scores_.Append(key, ids_.size());
      ids_.push_back(ids[i]);
      codes_.insert(codes_.end(), codes + i * cb, codes + (i + 1) * cb);
      slot_of_.Insert(ids[i], static_cast<uint32_t>(ids_.size() - 1), ids_.data());
    }
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted(std::string(who) + ": out of memory");
  }
  return Status::OK();
}

void PrepareSlotGrowth(const std::vector<uint64_t>& ids, const CodeArray& codes,
                       const SlotScores& scores, const IdSlotMap& slot_of, size_t code_bytes,
                       size_t n, SlotGrowth* g) {
  g->size = ids.size();
  GrowForAppend(ids, n, &g->ids);
  GrowForAppend(codes, n * code_bytes, &g->codes);
  scores.GrowForAppend(n, &g->scores);
  slot_of.PrepareReserve(ids.size() + n, ids.data(), &g->id_cells);
}

void AdoptSlotGrowth(SlotGrowth* g, std::vector<uint64_t>* ids, CodeArray* codes,
                     SlotScores* scores, IdSlotMap* slot_of) {
  if (g->size != ids->size()) return;
  AdoptGrown(ids, &g->ids);
  AdoptGrown(codes, &g->codes);
  scores->AdoptGrown(&g->scores);
  slot_of->AdoptCells(&g->id_cells, g->size);
}

bool DenseSlots::Erase(uint64_t id) {
  if (slot_of_.Find(id, ids_.data()) == IdSlotMap::kNoSlot) return false;
  const size_t cb = code_bytes_;
  const uint32_t slot = slot_of_.Erase(id, ids_.data());
  const uint32_t last = static_cast<uint32_t>(ids_.size() - 1);
  if (slot != last) {
    slot_of_.Move(ids_[last], last, slot, ids_.data());
    ids_[slot] = ids_[last];
    std::memcpy(codes_.data() + static_cast<size_t>(slot) * cb,
                codes_.data() + static_cast<size_t>(last) * cb, cb);
  }
  scores_.MoveLast(slot);
  ids_.pop_back();
  codes_.resize(codes_.size() - cb);
  return true;
}

void DenseSlots::Clear() {
  ids_.clear();
  codes_.clear();
  scores_.Clear();
  slot_of_.Clear();
}

void SlotScores::AppendState(std::string* out) const { state_io::PutVector(out, keys_); }

Status SlotScores::LoadState(std::string_view* in, size_t n) {
  std::vector<uint16_t> keys;
  HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &keys));
  if (!keys.empty() && keys.size() != n) {
    return Status::Corruption("index state: scores do not match the items");
  }
  keys_ = std::move(keys);
  return Status::OK();
}

void IdSlotMap::AppendState(std::string* out) const {
  state_io::Put<uint64_t>(out, size_);
  cells_.AppendState(out);
}

Status IdSlotMap::LoadState(std::string_view* in, size_t n) {
  uint64_t size = 0;
  PackedInts cells;
  HAMDB_RETURN_IF_ERROR(state_io::Get(in, &size));
  HAMDB_RETURN_IF_ERROR(cells.LoadState(in));
  const bool pow2 = (cells.size() & (cells.size() - 1)) == 0;
  if (size != n || !pow2 || (n > 0 && cells.size() * 3 < n * 4)) {
    return Status::Corruption("index state: the id map does not match its items");
  }
  size_t used = 0;
  for (size_t c = 0; c < cells.size(); ++c) {
    const uint32_t v = cells.Get(c);
    if (v > n) return Status::Corruption("index state: the id map points past its items");
    used += v != 0;
  }
  if (used != n) return Status::Corruption("index state: the id map does not match its items");
  cells_ = std::move(cells);
  size_ = size;
  return Status::OK();
}

void DenseSlots::AppendState(std::string* out) const {
  state_io::PutVector(out, ids_);
  state_io::PutVector(out, codes_);
  slot_of_.AppendState(out);
  scores_.AppendState(out);
}

Status DenseSlots::LoadState(std::string_view* in) {
  std::vector<uint64_t> ids;
  CodeArray codes;
  HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &ids));
  HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &codes));
  if (codes.size() != ids.size() * code_bytes_) {
    return Status::Corruption("index state: codes do not match ids");
  }
  IdSlotMap map;
  HAMDB_RETURN_IF_ERROR(map.LoadState(in, ids.size()));
  SlotScores scores;
  HAMDB_RETURN_IF_ERROR(scores.LoadState(in, ids.size()));
  ids_ = std::move(ids);
  codes_ = std::move(codes);
  slot_of_ = std::move(map);
  scores_ = std::move(scores);
  return Status::OK();
}

}  // namespace hamdb
