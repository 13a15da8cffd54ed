#include "index/gpu/gpu_list_index.h"

#include <algorithm>
#include <exception>
#include <new>

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
    : BinaryIndex(inner->bits()), inner_(std::move(inner)), source_(source) {}

GpuListIndex::~GpuListIndex() = default;

size_t GpuListIndex::size() const { return inner_->size(); }

size_t GpuListIndex::memory_bytes() const {
  std::lock_guard<std::mutex> lock(device_mu_);
  return inner_->memory_bytes() + device_ids_.capacity() * sizeof(uint64_t) +
         device_begin_.capacity() * sizeof(uint64_t);
}

Status GpuListIndex::gpu_status() const {
  std::lock_guard<std::mutex> lock(device_mu_);
  return gpu_status_;
}

Status GpuListIndex::Add(const uint64_t* ids, const uint8_t* codes, size_t n) {
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  ++version_;
  return inner_->Add(ids, codes, n);
}

Status GpuListIndex::Remove(const uint64_t* ids, size_t n, size_t* removed) {
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  ++version_;
  return inner_->Remove(ids, n, removed);
}

StatusOr<SearchResult> GpuListIndex::RangeSearch(const uint8_t* query, uint32_t radius,
                                                 const SearchParams& params) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return inner_->RangeSearch(query, radius, params);
}

StatusOr<SearchResult> GpuListIndex::Search(const uint8_t* query, size_t k,
                                            const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckSearchArgs(query, k, bits()));
  std::vector<SearchResult> out;
  HAMDB_RETURN_IF_ERROR(SearchBatch(query, 1, k, params, &out));
  return std::move(out[0]);
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
  if (out == nullptr) return Status::InvalidArgument("SearchBatch: out is null");
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  HAMDB_RETURN_IF_ERROR(CheckCodes(queries, nq, bits(), "query"));
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
  std::lock_guard<std::mutex> lock(device_mu_);
  if (device_disabled_) return gpu_status_;
  Status st;
  try {
    if (device_ == nullptr) {
      StatusOr<std::unique_ptr<gpu::DeviceCodeSet>> created = gpu::DeviceCodeSet::Create(bits());
      if (!created.ok()) {
        const Status::Code code = created.status().code();
        device_disabled_ =
            code == Status::Code::kNotSupported || code == Status::Code::kFailedPrecondition;
        gpu_status_ = created.status();
        return gpu_status_;
      }
      device_ = std::move(created).value();
      device_version_ = UINT64_MAX;
    }
    if (device_version_ != version_) {
      std::vector<uint8_t> codes;
      st = source_->ExportLists(&codes, &device_ids_, &device_begin_);
      if (st.ok()) st = device_->Upload(codes.data(), device_ids_.size());
      if (st.ok()) device_version_ = version_;
    }
    if (st.ok()) {
      gpu::DeviceCodeSet* device = device_.get();
      ScanFn scan = [device](const uint8_t* q, size_t n, size_t kq,
                             const std::vector<gpu::Segment>& segs,
                             const std::vector<uint32_t>& seg_begin,
                             std::vector<std::vector<gpu::Candidate>>* cands) {
        return device->ThresholdScan(q, n, kq, segs, seg_begin, cands);
      };
      st = RunPlanned(queries, nq, k, params, device_ids_, device_begin_, scan, out);
    }
  } catch (const std::bad_alloc&) {
    st = Status::ResourceExhausted("GPU list search: host out of memory");
  } catch (const std::exception& e) {
    st = Status::Internal(std::string("GPU list search: ") + e.what());
  }
  const Status::Code code = st.code();
  // Planning refusals (nprobe = -1, untrained IVF) are not device failures:
  // keep the device copy.
  if (!st.ok() && code != Status::Code::kNotSupported &&
      code != Status::Code::kFailedPrecondition) {
    device_.reset();
  }
  gpu_status_ = st;
  return st;
}

Status GpuListIndex::SearchBatch(const uint8_t* queries, size_t nq, size_t k,
                                 const SearchParams& params, std::vector<SearchResult>* out) const {
  if (out == nullptr) return Status::InvalidArgument("SearchBatch: out is null");
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  HAMDB_RETURN_IF_ERROR(CheckCodes(queries, nq, bits(), "query"));
  if (params.nprobe < -1) {
    return Status::InvalidArgument("nprobe must be >= 1, 0 (index default) or -1");
  }
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  if (SearchDevice(queries, nq, k, params, out).ok()) {
    used_gpu_ = true;
    return Status::OK();
  }
  used_gpu_ = false;
  return inner_->SearchBatch(queries, nq, k, params, out);
}

}  // namespace hamdb
