// Host halves of the GPU scan: result assembly and the CPU reference.
#include <algorithm>

#include "core/binary_code.h"
#include "core/hamming.h"
#include "index/gpu/gpu_scan.h"

namespace hamdb::gpu {

std::vector<Neighbor> AssembleTopK(const std::vector<Candidate>& candidates,
                                   const uint64_t* slot_ids, size_t k) {
  std::vector<Neighbor> out;
  out.reserve(candidates.size());
  for (const Candidate& c : candidates) out.push_back(Neighbor{slot_ids[c.slot], c.distance});
  if (out.size() > k) {
    std::nth_element(out.begin(), out.begin() + k, out.end(), NeighborLess);
    out.resize(k);
  }
  std::sort(out.begin(), out.end(), NeighborLess);
  return out;
}

std::vector<Candidate> ThresholdScanHost(const uint8_t* codes, int bits, const uint8_t* query,
                                         size_t k, const std::vector<Segment>& segs) {
  const size_t cb = code_bytes(bits);
  const HammingKernel kernel = SelectHammingKernel(cb);
  // Pass 1: the histogram.
  std::vector<uint64_t> hist(static_cast<size_t>(bits) + 1, 0);
  for (const Segment& s : segs) {
    for (uint64_t i = s.begin; i < s.begin + s.size; ++i) {
      ++hist[kernel.distance(query, codes + i * cb, cb)];
    }
  }
  // Select: the smallest T with at least k slots at or below it.
  uint32_t t = 0;
  uint64_t cum = hist[0];
  while (cum < k && t < static_cast<uint32_t>(bits)) cum += hist[++t];
  // Pass 2: every slot at or below T.
  std::vector<Candidate> out;
  out.reserve(cum);
  for (const Segment& s : segs) {
    for (uint64_t i = s.begin; i < s.begin + s.size; ++i) {
      const uint32_t d = kernel.distance(query, codes + i * cb, cb);
      if (d <= t) out.push_back(Candidate{static_cast<uint32_t>(i), d});
    }
  }
  return out;
}

}  // namespace hamdb::gpu
