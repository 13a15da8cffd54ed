#include "index/flat_index.h"

#include <cstring>
#include <mutex>
#include <new>

#include "index/parallel.h"

namespace hamdb {

FlatIndex::FlatIndex(int bits)
    : BinaryIndex(bits), kernel_(SelectHammingKernel(code_bytes())), slots_(code_bytes()) {}

size_t FlatIndex::size() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return slots_.size();
}

size_t FlatIndex::memory_bytes() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return slots_.memory_bytes();
}

SlotView FlatIndex::View(const IdFilter* filter) const {
  return MakeSlotView(slots_.codes(), slots_.ids(), slots_.scores().data(), bits(), kernel_, filter);
}

Status FlatIndex::AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t* scores,
                           size_t n) {
  HAMDB_RETURN_IF_ERROR(CheckAddArgs(ids, codes, n, bits()));
  std::lock_guard<std::mutex> writer(write_mu_);
  return slots_.UpsertGrowingOffLock(mu_, ids, codes, scores, n, "FlatIndex", [] {});
}

Status FlatIndex::Remove(const uint64_t* ids, size_t n, size_t* removed) {
  if (n > 0 && ids == nullptr) return Status::InvalidArgument("ids is null");
  std::lock_guard<std::mutex> writer(write_mu_);
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) count += slots_.Erase(ids[i]);
  if (removed != nullptr) *removed = count;
  return Status::OK();
}

StatusOr<SearchResult> FlatIndex::Search(const uint8_t* query, size_t k,
                                         const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckSearchArgs(query, k, bits()));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  SearchResult result;
  HAMDB_ASSIGN_OR_RETURN(result.neighbors,
                         ScanKnn(View(params.filter), query, k, params.num_threads, params.tie_break));
  return result;
}

Status FlatIndex::SearchBatch(const uint8_t* queries, size_t nq, size_t k, const SearchParams& params,
                              std::vector<SearchResult>* out) const {
  HAMDB_RETURN_IF_ERROR(CheckBatchArgs(queries, nq, k, bits(), out));
  const int threads = ThreadPool::Default().Resolve(params.num_threads);
  if (nq < static_cast<size_t>(threads)) return BinaryIndex::SearchBatch(queries, nq, k, params, out);
  std::vector<std::vector<Neighbor>> lists;
  {
    std::shared_lock<WriterPriorityMutex> lock(mu_);
    HAMDB_RETURN_IF_ERROR(ScanKnnBatch(View(params.filter), queries, nq, k, threads, params.tie_break, &lists));
  }
  out->assign(nq, SearchResult{});
  for (size_t i = 0; i < nq; ++i) (*out)[i].neighbors = std::move(lists[i]);
  return Status::OK();
}

StatusOr<SearchResult> FlatIndex::RangeSearch(const uint8_t* query, uint32_t radius,
                                              const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckRangeArgs(query, bits()));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  SearchResult result;
  HAMDB_ASSIGN_OR_RETURN(result.neighbors, ScanRange(View(params.filter), query, radius, params.num_threads, params.tie_break));
  return result;
}

Status FlatIndex::Lookup(const uint64_t* ids, size_t n, uint8_t* codes, uint16_t* scores,
                         uint8_t* found) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  const size_t nb = code_bytes();
  for (size_t i = 0; i < n; ++i) {
    const uint32_t slot = slots_.Find(ids[i]);
    found[i] = slot != IdSlotMap::kNoSlot;
    if (!found[i]) continue;
    std::memcpy(codes + i * nb, slots_.codes().data() + size_t{slot} * nb, nb);
    scores[i] = slots_.scores().Get(slot);
  }
  return Status::OK();
}

Status FlatIndex::ExportItems(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                              std::vector<uint16_t>* scores) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  *ids = slots_.ids();
  codes->assign(slots_.codes().begin(), slots_.codes().end());
  slots_.scores().Export(slots_.size(), scores);
  return Status::OK();
}

Status FlatIndex::SaveState(std::string* out) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  slots_.AppendState(out);
  return Status::OK();
}

Status FlatIndex::LoadState(std::string_view state) {
  std::lock_guard<std::mutex> writer(write_mu_);
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  if (slots_.size() != 0) return Status::FailedPrecondition("LoadState needs an empty index");
  HAMDB_RETURN_IF_ERROR(slots_.LoadState(&state));
  if (!state.empty()) return Status::Corruption("index state has trailing bytes");
  return Status::OK();
}

}  // namespace hamdb
