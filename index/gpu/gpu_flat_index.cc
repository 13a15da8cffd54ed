#include "index/gpu/gpu_flat_index.h"

#include <cstring>

#include "index/parallel.h"
#include "index/scan.h"

namespace hamdb {

GpuFlatIndex::GpuFlatIndex(int bits)
    : BinaryIndex(bits),
      kernel_(SelectHammingKernel(code_bytes())),
      slots_(code_bytes()),
      mirror_(bits, "GPU search") {}
GpuFlatIndex::~GpuFlatIndex() = default;

size_t GpuFlatIndex::size() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return slots_.size();
}

size_t GpuFlatIndex::memory_bytes() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return slots_.memory_bytes();
}

Status GpuFlatIndex::AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t*,
                              size_t n) {
  HAMDB_RETURN_IF_ERROR(CheckAddArgs(ids, codes, n, bits()));
  std::lock_guard<std::mutex> writer(write_mu_);
  return slots_.UpsertGrowingOffLock(mu_, ids, codes, nullptr, n, "GpuFlatIndex", [this] { ++version_; });
}

Status GpuFlatIndex::Remove(const uint64_t* ids, size_t n, size_t* removed) {
  if (n > 0 && ids == nullptr) return Status::InvalidArgument("ids is null");
  std::lock_guard<std::mutex> writer(write_mu_);
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  ++version_;
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) count += slots_.Erase(ids[i]);
  if (removed != nullptr) *removed = count;
  return Status::OK();
}

Status GpuFlatIndex::ExportItems(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                                 std::vector<uint16_t>* scores) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  scores->clear();
  *ids = slots_.ids();
  codes->assign(slots_.codes().begin(), slots_.codes().end());
  return Status::OK();
}

Status GpuFlatIndex::SearchDevice(const uint8_t* queries, size_t nq, size_t k,
                                  std::vector<SearchResult>* out) const {
  auto upload = [this](gpu::DeviceCodeSet* set) {
    return set->Upload(slots_.codes().data(), slots_.size());
  };
  auto scan = [&](gpu::DeviceCodeSet* set) {
    // Every query scans the whole set: one segment each.
    std::vector<gpu::Segment> segs(nq, gpu::Segment{0, slots_.size()});
    std::vector<uint32_t> seg_begin(nq + 1);
    for (size_t i = 0; i <= nq; ++i) seg_begin[i] = static_cast<uint32_t>(i);
    std::vector<std::vector<gpu::Candidate>> candidates;
    HAMDB_RETURN_IF_ERROR(set->ThresholdScan(queries, nq, k, segs, seg_begin, &candidates));
    out->assign(nq, SearchResult{});
    for (size_t i = 0; i < nq; ++i) {
      (*out)[i].neighbors = gpu::AssembleTopK(candidates[i], slots_.ids().data(), k);
    }
    return Status::OK();
  };
  return mirror_.Run(version_, upload, scan);
}

StatusOr<SearchResult> GpuFlatIndex::Search(const uint8_t* query, size_t k,
                                            const SearchParams& params) const {
  return SearchOneByBatch(*this, query, k, params);
}

Status GpuFlatIndex::SearchBatch(const uint8_t* queries, size_t nq, size_t k,
                                 const SearchParams& params, std::vector<SearchResult>* out) const {
  HAMDB_RETURN_IF_ERROR(CheckBatchArgs(queries, nq, k, bits(), out));
  HAMDB_RETURN_IF_ERROR(CheckParamsSupported(params));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  if (SearchDevice(queries, nq, k, out).ok()) {
    mirror_.set_used_gpu(true);
    return Status::OK();
  }
  mirror_.set_used_gpu(false);
  // CPU fallback: the FlatIndex algorithm over the same slots.
  const SlotView view = MakeSlotView(slots_.codes(), slots_.ids(), nullptr, bits(), kernel_);
  out->assign(nq, SearchResult{});
  ThreadPool& pool = ThreadPool::Default();
  const int threads = pool.Resolve(params.num_threads);
  const int per_query =
      static_cast<int>(std::max<size_t>(1, static_cast<size_t>(threads) / std::max<size_t>(nq, 1)));
  std::mutex error_mu;
  Status first_error;
  HAMDB_RETURN_IF_ERROR(pool.ParallelFor(nq, threads, [&](size_t i) {
    StatusOr<std::vector<Neighbor>> r = ScanKnn(view, queries + i * code_bytes(), k, per_query, TieBreak::kId);
    if (r.ok()) {
      (*out)[i].neighbors = std::move(r).value();
    } else {
      std::lock_guard<std::mutex> guard(error_mu);
      if (first_error.ok()) first_error = r.status().WithContext("query " + std::to_string(i));
    }
  }));
  return first_error;
}

StatusOr<SearchResult> GpuFlatIndex::RangeSearch(const uint8_t* query, uint32_t radius,
                                                 const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckRangeArgs(query, bits()));
  HAMDB_RETURN_IF_ERROR(CheckParamsSupported(params));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  SearchResult result;
  HAMDB_ASSIGN_OR_RETURN(
      result.neighbors,
      ScanRange(MakeSlotView(slots_.codes(), slots_.ids(), nullptr, bits(), kernel_), query, radius,
                params.num_threads, TieBreak::kId));
  return result;
}

Status GpuFlatIndex::SaveState(std::string* out) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  slots_.AppendState(out);
  return Status::OK();
}

Status GpuFlatIndex::LoadState(std::string_view state) {
  std::lock_guard<std::mutex> writer(write_mu_);
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  if (slots_.size() != 0) return Status::FailedPrecondition("LoadState needs an empty index");
  ++version_;
  HAMDB_RETURN_IF_ERROR(slots_.LoadState(&state));
  if (!state.empty()) return Status::Corruption("index state has trailing bytes");
  return Status::OK();
}

}  // namespace hamdb
