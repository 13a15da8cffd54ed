// DeviceCodeSet for builds without CUDA: every call reports NotSupported, so
// GPU indexes fall back to the CPU.
#include "index/gpu/gpu_scan.h"

namespace hamdb::gpu {

struct DeviceCodeSet::Impl {};

namespace {
Status NoCuda() {
  return Status::NotSupported("this build has no CUDA (nvcc was not found at configure time)");
}
}  // namespace

Status DeviceStatus() { return NoCuda(); }

StatusOr<std::unique_ptr<DeviceCodeSet>> DeviceCodeSet::Create(int bits) { return NoCuda(); }
DeviceCodeSet::DeviceCodeSet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DeviceCodeSet::~DeviceCodeSet() = default;
Status DeviceCodeSet::Upload(const uint8_t* codes, size_t n) { return NoCuda(); }
size_t DeviceCodeSet::size() const { return 0; }
int DeviceCodeSet::bits() const { return 0; }
Status DeviceCodeSet::ThresholdScan(const uint8_t* queries, size_t nq, size_t k,
                                    const std::vector<Segment>& segs,
                                    const std::vector<uint32_t>& seg_begin,
                                    std::vector<std::vector<Candidate>>* out) {
  return NoCuda();
}

}  // namespace hamdb::gpu
