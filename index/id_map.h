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

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hamdb {

class IdSlotMap {
 public:
  static constexpr uint32_t kNoSlot = UINT32_MAX;

  // The slot of `id`, or kNoSlot when absent.
  uint32_t Find(uint64_t id, const uint64_t* ids) const;
  // Maps id -> slot. `id` must be absent and ids[slot] == id already.
  void Insert(uint64_t id, uint32_t slot, const uint64_t* ids);
  // Removes `id` (present, ids[its slot] == id). Returns its slot.
  uint32_t Erase(uint64_t id, const uint64_t* ids);
  // `id` (present, at old_slot == ids index) moves to new_slot. Call before
  // ids[] is updated: ids[old_slot] must still be `id`.
  void Move(uint64_t id, uint32_t old_slot, uint32_t new_slot, const uint64_t* ids);
  // Rebuilds the table for ids[0, n): slot i holds ids[i], all distinct.
  void Rebuild(const uint64_t* ids, size_t n);
  void Clear();

  size_t size() const { return size_; }
  size_t memory_bytes() const { return cells_.capacity() * sizeof(uint32_t); }

 private:
  static uint64_t Hash(uint64_t id);
  size_t FindCell(uint64_t id, const uint64_t* ids) const;  // cells_.size() if absent
  void Grow(const uint64_t* ids);

  std::vector<uint32_t> cells_;  // slot + 1; 0 = empty. Size is a power of two.
  size_t size_ = 0;
};

}  // namespace hamdb
