// GpuFlatIndex: exact brute-force search on a CUDA GPU, with the CPU scan as
// fallback. Spec "GPUFlat".
//
// The host keeps the authoritative dense slots (codes, ids, id map), exactly
// like FlatIndex; the device holds a mirror of the codes (gpu_scan.h) that
// is re-uploaded on the first search after a write. Searches run the
// histogram threshold scan on the device and assemble (distance, id) results
// on the host, so they equal FlatIndex results exactly (same ties by id).
//
// Fallback: when the build has no CUDA, no device is usable, or a device
// call fails (out of device memory, a CUDA error), the search runs the CPU
// scan instead and still succeeds; gpu_status() reports the last device
// error and used_gpu() whether the last search ran on the device. A failed
// device set is dropped and recreated on a later search; "no CUDA" and "no
// device" are remembered and not retried.
//
// RangeSearch always runs on the CPU.
//
// Thread safety: as BinaryIndex. Device work is serialised by an internal
// mutex (one batch on the device at a time); CPU fallbacks run in parallel.
// Insert cost: on the host as FlatIndex (O(b) for b items, growth copied off
// the exclusive lock). The device copy is not updated by the write: the
// first device search after any write uploads all n codes again, an O(n)
// transfer that search pays (and the searches queued behind it on the
// device), not the write.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "index/binary_index.h"
#include "core/hamming.h"
#include "index/gpu/device_mirror.h"
#include "index/gpu/gpu_scan.h"
#include "index/id_map.h"
#include "index/rw_lock.h"

namespace hamdb {

class GpuFlatIndex : public BinaryIndex {
 public:
  // bits must be valid; MakeIndex checks it. Touches no device until the
  // first search.
  explicit GpuFlatIndex(int bits);
  ~GpuFlatIndex() override;

  std::string spec() const override { return "GPUFlat"; }
  size_t size() const override;
  // Host bytes only (the device mirror is code_bytes rounded up to 4 per item).
  size_t memory_bytes() const override;

  Status Remove(const uint64_t* ids, size_t n, size_t* removed) override;
  // Scores are not kept (keeps_scores() is false; the device scan orders
  // ties by id).
  Status ExportItems(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                     std::vector<uint16_t>* scores) const override;
  // The dense slots and their id map as they are: loading is copies.
  Status SaveState(std::string* out) const override;
  Status LoadState(std::string_view state) override;
  StatusOr<SearchResult> Search(const uint8_t* query, size_t k,
                                const SearchParams& params) const override;
  StatusOr<SearchResult> RangeSearch(const uint8_t* query, uint32_t radius,
                                     const SearchParams& params) const override;
  // One device pass for the whole batch (chunks of 256 queries).
  Status SearchBatch(const uint8_t* queries, size_t nq, size_t k, const SearchParams& params,
                     std::vector<SearchResult>* out) const override;

  // OK, or why the last search (or device setup) could not use the GPU.
  Status gpu_status() const { return mirror_.status(); }
  // Whether the last completed search ran on the device.
  bool used_gpu() const { return mirror_.used_gpu(); }

 protected:
  // Scores are dropped.
  Status AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t* scores,
                  size_t n) override;

 private:
  // Runs the batch on the device; a non-OK Status means "fall back".
  // Requires mu_ held shared.
  Status SearchDevice(const uint8_t* queries, size_t nq, size_t k,
                      std::vector<SearchResult>* out) const;

  HammingKernel kernel_;
  // Writers hold write_mu_ throughout and mu_ exclusively only to apply
  // their change (DenseSlots::UpsertGrowingOffLock).
  std::mutex write_mu_;
  mutable WriterPriorityMutex mu_;
  DenseSlots slots_;
  uint64_t version_ = 0;  // bumped by every write; guarded by mu_
  mutable gpu::DeviceMirror mirror_;
};

}  // namespace hamdb
