// GpuListIndex: an inverted-file index (ClassBucketIndex or FaissIvfIndex)
// whose lists are scanned on a CUDA GPU. Specs "GPUBucket", "GPUBucket<p>",
// "GPUIVF<nlist>", "GPUIVF<nlist>_<p>" (MakeIndex wraps the inner spec).
//
// The wrapped index stays the owner of the items and of the search logic:
// for each query it plans the lists to visit (ListSource::PlanLists: the
// same buckets its own Search would scan, including automatic widening, or
// the IVF's probed lists), the device scans exactly those lists in one
// batched threshold scan (the kernel of gpu_scan.h, with the lists as
// segments of a device copy of all lists), and the host keeps the k smallest
// (distance, id) pairs and applies the index's exactness rule. So results
// equal the wrapped index's own results, visited_buckets and exact included.
//
// The device copy is re-exported and uploaded on the first search after a
// write. Fallback: without CUDA or a usable device, after a device error, for
// ClassBucketIndex's nprobe = -1 (decided bucket by bucket) and for an
// untrained IVF, the wrapped index searches on the CPU; gpu_status() and
// used_gpu() say what happened last. RangeSearch always runs on the CPU.
//
// Thread safety: as BinaryIndex. Writers take this wrapper's writer lock, so
// no write falls between a plan and the scan of the lists it names; device
// work is serialised by an internal mutex.
// Insert cost: the wrapped index's own. The device copy is not updated by
// the write: the first device search after any write exports all lists on
// the host (an O(n) copy) and uploads them, which that search pays, not the
// write.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "index/binary_index.h"
#include "index/gpu/device_mirror.h"
#include "index/gpu/gpu_scan.h"
#include "index/list_source.h"
#include "index/rw_lock.h"

namespace hamdb {

class GpuListIndex : public BinaryIndex {
 public:
  // InvalidArgument when `inner` is null or not a list index.
  static StatusOr<std::unique_ptr<GpuListIndex>> Create(std::unique_ptr<BinaryIndex> inner);
  ~GpuListIndex() override;

  std::string spec() const override { return "GPU" + inner_->spec(); }
  size_t size() const override;
  // The wrapped index's host bytes plus the exported id array.
  size_t memory_bytes() const override;
  const BinaryIndex& inner() const { return *inner_; }

  Status Remove(const uint64_t* ids, size_t n, size_t* removed) override;
  // The host index's items and state (the device side is rebuilt from them).
  Status ExportItems(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                     std::vector<uint16_t>* scores) const override {
    return inner_->ExportItems(ids, codes, scores);
  }
  Status SaveState(std::string* out) const override { return inner_->SaveState(out); }
  Status LoadState(std::string_view state) override;
  StatusOr<SearchResult> Search(const uint8_t* query, size_t k,
                                const SearchParams& params) const override;
  StatusOr<SearchResult> RangeSearch(const uint8_t* query, uint32_t radius,
                                     const SearchParams& params) const override;
  Status SearchBatch(const uint8_t* queries, size_t nq, size_t k, const SearchParams& params,
                     std::vector<SearchResult>* out) const override;

  Status gpu_status() const { return mirror_.status(); }
  bool used_gpu() const { return mirror_.used_gpu(); }

  // For tests without a GPU: the device path (plans, segments, assembly,
  // exactness) with gpu::ThresholdScanHost standing in for the device scan.
  // Errors as the device path (NotSupported / FailedPrecondition where the
  // wrapped index cannot plan).
  Status SearchBatchHostScan(const uint8_t* queries, size_t nq, size_t k,
                             const SearchParams& params, std::vector<SearchResult>* out) const;

 protected:
  // Scores are dropped (the device scan orders ties by id).
  Status AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t* scores,
                  size_t n) override;

 private:
  using ScanFn = std::function<Status(
      const uint8_t* queries, size_t nq, size_t k, const std::vector<gpu::Segment>& segs,
      const std::vector<uint32_t>& seg_begin, std::vector<std::vector<gpu::Candidate>>* out)>;
  GpuListIndex(std::unique_ptr<BinaryIndex> inner, const ListSource* source);
  // Plans every query, scans with `scan` over lists laid out by `begin`,
  // assembles with `ids`. Requires mu_ held.
  Status RunPlanned(const uint8_t* queries, size_t nq, size_t k, const SearchParams& params,
                    const std::vector<uint64_t>& ids, const std::vector<uint64_t>& begin,
                    const ScanFn& scan, std::vector<SearchResult>* out) const;
  Status SearchDevice(const uint8_t* queries, size_t nq, size_t k, const SearchParams& params,
                      std::vector<SearchResult>* out) const;

  std::unique_ptr<BinaryIndex> inner_;
  const ListSource* source_;  // inner_ seen as a ListSource
  mutable WriterPriorityMutex mu_;
  uint64_t version_ = 0;  // bumped by every write; guarded by mu_

  mutable gpu::DeviceMirror mirror_;
  // The layout of the device copy, written and read only inside mirror_.Run
  // (which serialises them); memory_bytes() reads their sizes under
  // layout_mu_.
  mutable std::mutex layout_mu_;
  mutable std::vector<uint64_t> device_ids_;    // slot -> id of the device copy
  mutable std::vector<uint64_t> device_begin_;  // list -> first slot
};

}  // namespace hamdb
