#include "index/flat_index.h"

#include <cstring>
#include <mutex>
#include <new>

namespace hamdb {

FlatIndex::FlatIndex(int bits) : BinaryIndex(bits), kernel_(SelectHammingKernel(code_bytes())) {}

size_t FlatIndex::size() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return ids_.size();
}

size_t FlatIndex::memory_bytes() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return codes_.capacity() + ids_.capacity() * sizeof(uint64_t) + slot_of_.memory_bytes();
}

SlotView FlatIndex::View() const {
  return MakeSlotView(codes_, ids_, bits(), kernel_);
}

Status FlatIndex::Add(const uint64_t* ids, const uint8_t* codes, size_t n) {
  HAMDB_RETURN_IF_ERROR(CheckAddArgs(ids, codes, n, bits()));
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  if (ids_.size() + n >= IdSlotMap::kNoSlot) {
    return Status::ResourceExhausted("FlatIndex holds at most 2^32 - 2 items");
  }
  const size_t cb = code_bytes();
  try {
    ids_.reserve(ids_.size() + n);
    codes_.reserve(codes_.size() + n * cb);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t slot = slot_of_.Find(ids[i], ids_.data());
      if (slot != IdSlotMap::kNoSlot) {
        std::memcpy(codes_.data() + slot * cb, codes + i * cb, cb);
        continue;
      }
      ids_.push_back(ids[i]);
      codes_.insert(codes_.end(), codes + i * cb, codes + (i + 1) * cb);
      slot_of_.Insert(ids[i], static_cast<uint32_t>(ids_.size() - 1), ids_.data());
    }
  } catch (const std::bad_alloc&) {
    // The items before the failure are in; the index stays consistent.
    return Status::ResourceExhausted("FlatIndex::Add: out of memory");
  }
  return Status::OK();
}

Status FlatIndex::Remove(const uint64_t* ids, size_t n, size_t* removed) {
  if (n > 0 && ids == nullptr) return Status::InvalidArgument("ids is null");
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  const size_t cb = code_bytes();
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) {
    if (slot_of_.Find(ids[i], ids_.data()) == IdSlotMap::kNoSlot) continue;
    const uint32_t slot = slot_of_.Erase(ids[i], ids_.data());
    const uint32_t last = static_cast<uint32_t>(ids_.size() - 1);
    if (slot != last) {
      slot_of_.Move(ids_[last], last, slot, ids_.data());
      ids_[slot] = ids_[last];
      std::memcpy(codes_.data() + static_cast<size_t>(slot) * cb,
                  codes_.data() + static_cast<size_t>(last) * cb, cb);
    }
    ids_.pop_back();
    codes_.resize(codes_.size() - cb);
    ++count;
  }
  if (removed != nullptr) *removed = count;
  return Status::OK();
}

StatusOr<SearchResult> FlatIndex::Search(const uint8_t* query, size_t k,
                                         const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckSearchArgs(query, k, bits()));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  SearchResult result;
  HAMDB_ASSIGN_OR_RETURN(result.neighbors, ScanKnn(View(), query, k, params.num_threads));
  return result;
}

StatusOr<SearchResult> FlatIndex::RangeSearch(const uint8_t* query, uint32_t radius,
                                              const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckRangeArgs(query, bits()));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  SearchResult result;
  HAMDB_ASSIGN_OR_RETURN(result.neighbors, ScanRange(View(), query, radius, params.num_threads));
  return result;
}

}  // namespace hamdb
