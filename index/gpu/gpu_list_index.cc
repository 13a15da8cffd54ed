#include "index/gpu/gpu_list_index.h"

#include <algorithm>

#include "index/scan.h"

namespace hamdb {

StatusOr<std::unique_ptr<GpuListIndex>> GpuListIndex::Create(std::unique_ptr<BinaryIndex> inner) {
  if (inner == nullptr) return Status::InvalidArgument("GpuListIndex: inner index is null");
  const auto* source = dynamic_cast<const ListSource*>(inner.get());
  if (source == nullptr) {
    return Status::InvalidArgument("index '" + inner->spec() +
                                   "' has no inverted lists for the GPU to scan");
  }
  return std::unique_ptr<GpuListIndex>(new GpuListIndex(std::move(inner), source));
}

GpuListIndex::GpuListIndex(std::unique_ptr<BinaryIndex> inner, const ListSource* source)
    : BinaryIndex(inner->bits()),
      inner_(std::move(inner)),
      source_(source),
      mirror_(bits(), "GPU list search") {}

GpuListIndex::~GpuListIndex() = default;

size_t GpuListIndex::size() const { return inner_->size(); }

size_t GpuListIndex::memory_bytes() const {
  std::lock_guard<std::mutex> lock(layout_mu_);
  return inner_->memory_bytes() + device_ids_.capacity() * sizeof(uint64_t) +
         device_begin_.capacity() * sizeof(uint64_t);
}

Status GpuListIndex::AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t*,
                              size_t n) {
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  ++version_;
  return inner_->Add(ids, codes, n);
}

Status GpuListIndex::LoadState(std::string_view state) {
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  ++version_;
  return inner_->LoadState(state);
}

Status GpuListIndex::Remove(const uint64_t* ids, size_t n, size_t* removed) {
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  ++version_;
  return inner_->Remove(ids, n, removed);
}

StatusOr<SearchResult> GpuListIndex::RangeSearch(const uint8_t* query, uint32_t radius,
                                                 const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckParamsSupported(params));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return inner_->RangeSearch(query, radius, params);
}

StatusOr<SearchResult> GpuListIndex::Search(const uint8_t* query, size_t k,
                                            const SearchParams& params) const {
  return SearchOneByBatch(*this, query, k, params);
}

Status GpuListIndex::RunPlanned(const uint8_t* queries, size_t nq, size_t k,
                                const SearchParams& params, const std::vector<uint64_t>& ids,
                                const std::vector<uint64_t>& begin, const ScanFn& scan,
                                std::vector<SearchResult>* out) const {
  const size_t cb = code_bytes();
  const size_t n = ids.size();
  std::vector<ListPlan> plans(nq);
  std::vector<gpu::Segment> segs;
  std::vector<uint32_t> seg_begin(1, 0);
  for (size_t i = 0; i < nq; ++i) {
    HAMDB_RETURN_IF_ERROR(source_->PlanLists(queries + i * cb, k, params, &plans[i]));
    for (int l : plans[i].lists) {
      if (l < 0 || static_cast<size_t>(l) + 1 >= begin.size()) {
        return Status::Internal("list plan names list " + std::to_string(l) +
                                " outside the export");
      }
      const uint64_t b = begin[l], e = begin[l + 1];
      if (e > b) segs.push_back(gpu::Segment{b, e - b});
    }
    seg_begin.push_back(static_cast<uint32_t>(segs.size()));
  }
  std::vector<std::vector<gpu::Candidate>> candidates;
  HAMDB_RETURN_IF_ERROR(scan(queries, nq, k, segs, seg_begin, &candidates));
  out->assign(nq, SearchResult{});
  const size_t kk = std::min(k, n);
  for (size_t i = 0; i < nq; ++i) {
    SearchResult& r = (*out)[i];
    r.neighbors = gpu::AssembleTopK(candidates[i], ids.data(), k);
    r.visited_buckets = plans[i].lists;
    r.exact = plans[i].covers_all || (!r.neighbors.empty() && r.neighbors.size() == kk &&
                                      r.neighbors.back().distance < plans[i].min_unvisited_bound);
  }
  return Status::OK();
}

Status GpuListIndex::SearchBatchHostScan(const uint8_t* queries, size_t nq, size_t k,
                                         const SearchParams& params,
                                         std::vector<SearchResult>* out) const {
  HAMDB_RETURN_IF_ERROR(CheckBatchArgs(queries, nq, k, bits(), out));
  HAMDB_RETURN_IF_ERROR(CheckParamsSupported(params));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  std::vector<uint8_t> codes;
  std::vector<uint64_t> ids, begin;
  HAMDB_RETURN_IF_ERROR(source_->ExportLists(&codes, &ids, &begin));
  const int b = bits();
  const size_t cb = code_bytes();
  ScanFn host = [&](const uint8_t* q, size_t n, size_t kq, const std::vector<gpu::Segment>& segs,
                    const std::vector<uint32_t>& seg_begin,
                    std::vector<std::vector<gpu::Candidate>>* cands) {
    cands->assign(n, {});
    for (size_t i = 0; i < n; ++i) {
      std::vector<gpu::Segment> mine(segs.begin() + seg_begin[i], segs.begin() + seg_begin[i + 1]);
      (*cands)[i] = gpu::ThresholdScanHost(codes.data(), b, q + i * cb, kq, mine);
    }
    return Status::OK();
  };
  return RunPlanned(queries, nq, k, params, ids, begin, host, out);
}

Status GpuListIndex::SearchDevice(const uint8_t* queries, size_t nq, size_t k,
                                  const SearchParams& params,
                                  std::vector<SearchResult>* out) const {
  auto upload = [this](gpu::DeviceCodeSet* set) {
    std::vector<uint8_t> codes;
    std::vector<uint64_t> ids, begin;
    HAMDB_RETURN_IF_ERROR(source_->ExportLists(&codes, &ids, &begin));
    HAMDB_RETURN_IF_ERROR(set->Upload(codes.data(), ids.size()));
    std::lock_guard<std::mutex> lock(layout_mu_);
    device_ids_ = std::move(ids);
    device_begin_ = std::move(begin);
    return Status::OK();
  };
  // Planning refusals (nprobe = -1, an untrained IVF) come back as
  // NotSupported / FailedPrecondition and keep the device copy.
  auto scan = [&](gpu::DeviceCodeSet* set) {
    ScanFn device_scan = [set](const uint8_t* q, size_t n, size_t kq,
                               const std::vector<gpu::Segment>& segs,
                               const std::vector<uint32_t>& seg_begin,
                               std::vector<std::vector<gpu::Candidate>>* cands) {
      return set->ThresholdScan(q, n, kq, segs, seg_begin, cands);
    };
    return RunPlanned(queries, nq, k, params, device_ids_, device_begin_, device_scan, out);
  };
  return mirror_.Run(version_, upload, scan);
}

Status GpuListIndex::SearchBatch(const uint8_t* queries, size_t nq, size_t k,
                                 const SearchParams& params, std::vector<SearchResult>* out) const {
  HAMDB_RETURN_IF_ERROR(CheckBatchArgs(queries, nq, k, bits(), out));
  HAMDB_RETURN_IF_ERROR(CheckParamsSupported(params));
  if (params.nprobe < -1) {
    return Status::InvalidArgument("nprobe must be >= 1, 0 (index default) or -1");
  }
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  if (SearchDevice(queries, nq, k, params, out).ok()) {
    mirror_.set_used_gpu(true);
    return Status::OK();
  }
  mirror_.set_used_gpu(false);
  return inner_->SearchBatch(queries, nq, k, params, out);
}

}  // namespace hamdb
