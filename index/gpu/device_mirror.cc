#include "index/gpu/device_mirror.h"

#include <exception>
#include <new>

namespace hamdb::gpu {

namespace {

// Refusals that say nothing about the device copy being stale or broken.
bool IsRefusal(Status::Code code) {
  return code == Status::Code::kNotSupported || code == Status::Code::kFailedPrecondition;
}

}  // namespace

Status DeviceMirror::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

Status DeviceMirror::Run(uint64_t version, const Step& upload, const Step& scan) {
  std::lock_guard<std::mutex> lock(mu_);
  if (disabled_) return status_;
  Status st;
  try {
    if (set_ == nullptr) {
      StatusOr<std::unique_ptr<DeviceCodeSet>> created = DeviceCodeSet::Create(bits_);
      if (!created.ok()) {
        // No CUDA in the build, or no device: permanent for this process.
        disabled_ = IsRefusal(created.status().code());
        status_ = created.status();
        return status_;
      }
      set_ = std::move(created).value();
      uploaded_ = false;
    }
    if (!uploaded_ || uploaded_version_ != version) {
      st = upload(set_.get());
      if (st.ok()) {
        uploaded_ = true;
        uploaded_version_ = version;
      }
    }
    if (st.ok()) st = scan(set_.get());
  } catch (const std::bad_alloc&) {
    st = Status::ResourceExhausted(what_ + ": host out of memory");
  } catch (const std::exception& e) {
    st = Status::Internal(what_ + ": " + e.what());
  }
  if (!st.ok() && !IsRefusal(st.code())) set_.reset();  // recreated by a later Run
  status_ = st;
  return st;
}

}  // namespace hamdb::gpu
