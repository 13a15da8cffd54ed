// Device-side Hamming scans (CUDA) and their host-side contract.
//
// A DeviceCodeSet holds codes in GPU memory and answers batched threshold
// scans: for each query, over a set of slot ranges ("segments": the whole
// set for brute force, the visited buckets or inverted lists otherwise),
//   pass 1  every block builds a distance histogram in shared memory (codes
//           are at most 4096 bits, so distances are small integers) and adds
//           it to the query's global histogram;
//   select  one thread per query walks its histogram to T, the smallest
//           distance with at least k slots at or below it (all slots when
//           the segments hold fewer than k), and the exact number of such
//           slots, which sizes the output;
//   pass 2  every slot with distance <= T is written out as (slot, distance).
// The host then keeps the k smallest (distance, id) pairs (AssembleTopK), so
// ties at T are resolved by id exactly like the CPU indexes, whatever order
// the device wrote them in.
//
// Storage on the device: codes padded to whole 32-bit words and laid out
// word-major (word w of slot s at w * capacity + s), so consecutive threads
// read consecutive addresses.
//
// Errors are Status values, never aborts: NotSupported when the build has no
// CUDA (the stub), FailedPrecondition when no device is usable,
// ResourceExhausted for device out-of-memory, Internal for other CUDA
// errors. A DeviceCodeSet whose call failed may be dropped and recreated.
//
// Thread safety: a DeviceCodeSet is not synchronised; its owner serialises
// calls (GpuFlatIndex holds a mutex around it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "index/binary_index.h"
#include "core/status.h"

namespace hamdb::gpu {

// Slots [begin, begin + size) of a DeviceCodeSet.
struct Segment {
  uint64_t begin = 0;
  uint64_t size = 0;
};

// One scan hit: a slot of the code set and its distance to the query.
struct Candidate {
  uint32_t slot;
  uint32_t distance;
};

// OK when this build has CUDA and a device can be used; otherwise why not.
Status DeviceStatus();

class DeviceCodeSet {
 public:
  // An empty set for `bits`-bit codes on the current device.
  static StatusOr<std::unique_ptr<DeviceCodeSet>> Create(int bits);
  ~DeviceCodeSet();
  DeviceCodeSet(const DeviceCodeSet&) = delete;
  DeviceCodeSet& operator=(const DeviceCodeSet&) = delete;

  // Replaces the contents with n packed codes (n * code_bytes(bits) host
  // bytes, LSB-first); slot i is code i. At most 2^32 - 1 slots.
  Status Upload(const uint8_t* codes, size_t n);
  size_t size() const;
  int bits() const;

  // nq queries (nq * code_bytes host bytes). Query i scans the segments
  // segs[seg_begin[i] .. seg_begin[i + 1]) (seg_begin has nq + 1 entries,
  // segments lie inside [0, size()) and do not overlap). out[i] gets every
  // slot of those segments with distance <= T_i (see above), unordered.
  Status ThresholdScan(const uint8_t* queries, size_t nq, size_t k,
                       const std::vector<Segment>& segs, const std::vector<uint32_t>& seg_begin,
                       std::vector<std::vector<Candidate>>* out);

 private:
  struct Impl;
  explicit DeviceCodeSet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Host side, no GPU needed: the k smallest (distance, id) pairs among the
// candidates, id = slot_ids[slot], sorted by (distance, id).
std::vector<Neighbor> AssembleTopK(const std::vector<Candidate>& candidates,
                                   const uint64_t* slot_ids, size_t k);

// Host reference of ThresholdScan for one query, the same three steps on
// the CPU: `codes` holds the set (n * code_bytes(bits) bytes, dense slots).
// Used by the tests to pin the algorithm down without a GPU.
std::vector<Candidate> ThresholdScanHost(const uint8_t* codes, int bits, const uint8_t* query,
                                         size_t k, const std::vector<Segment>& segs);

}  // namespace hamdb::gpu
