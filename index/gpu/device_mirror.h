// DeviceMirror: the device-side copy of a GPU index's codes, and the one
// place that decides when to create, refresh, drop or give up on it.
//
// An index keeps its codes on the host and bumps a version on every write.
// Run(version, upload, scan):
//   1. creates the DeviceCodeSet on first use; NotSupported (no CUDA in the
//      build) or FailedPrecondition (no usable device) disables the mirror
//      for the rest of the process, and every later Run returns that status
//      at once;
//   2. calls upload(set) when `version` differs from the version last
//      uploaded (or the set was just created), and records `version` on
//      success;
//   3. calls scan(set).
// A failure in 2 or 3 is returned (the caller falls back to the CPU). A
// device failure (anything but NotSupported / FailedPrecondition, which are
// planning refusals and leave the copy valid) drops the set, so a later Run
// recreates it and uploads again. Exceptions thrown by the callbacks become
// ResourceExhausted (std::bad_alloc) or Internal; none escape.
//
// Thread safety: Run, status() and the used_gpu flag are safe to call
// concurrently; Runs are serialised by an internal mutex, so the callbacks
// may touch owner state that only they use without a lock of their own.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "core/status.h"
#include "index/gpu/gpu_scan.h"

namespace hamdb::gpu {

class DeviceMirror {
 public:
  using Step = std::function<Status(DeviceCodeSet* set)>;

  // `what` names the caller in error messages ("GPU search").
  DeviceMirror(int bits, std::string what) : bits_(bits), what_(std::move(what)) {}

  Status Run(uint64_t version, const Step& upload, const Step& scan);

  // The status of the last Run (OK when it ran on the device).
  Status status() const;
  // Whether the last completed search of the owner ran on the device; the
  // owner sets it after deciding between the device and the CPU.
  bool used_gpu() const { return used_gpu_.load(); }
  void set_used_gpu(bool v) { used_gpu_ = v; }

 private:
  const int bits_;
  const std::string what_;
  mutable std::mutex mu_;  // guards the fields below and serialises Run
  std::unique_ptr<DeviceCodeSet> set_;
  uint64_t uploaded_version_ = 0;
  bool uploaded_ = false;
  bool disabled_ = false;
  Status status_;
  std::atomic<bool> used_gpu_{false};
};

}  // namespace hamdb::gpu
