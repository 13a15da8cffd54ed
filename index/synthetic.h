// Synthetic code sets for benchmarks, demos and tests.
//
//  uniform    every bit an independent fair coin
//  clustered  num_centres uniform centre codes; each item copies a random
//             centre and flips each bit with probability flip_prob (the shape
//             of an LLC encoder's output: class codes plus per-bit noise)
//
// Output is packed LSB-first with zero padding (docs/codes.md). Generation
// is deterministic for a seed and independent of the thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace hamdb {

struct SyntheticSpec {
  std::string kind = "uniform";  // "uniform" or "clustered"
  size_t num_centres = 256;
  double flip_prob = 0.03;
  uint64_t seed = 1;
};

struct SyntheticCodes {
  std::vector<uint8_t> codes;     // n * code_bytes(bits)
  std::vector<uint32_t> centres;  // clustered: the centre of each item; else empty
  std::vector<uint8_t> centre_codes;  // clustered: num_centres * code_bytes(bits)
};

// InvalidArgument for an unknown kind, bad bits or a flip_prob outside [0, 1].
StatusOr<SyntheticCodes> GenerateCodes(const SyntheticSpec& spec, size_t n, int bits);

}  // namespace hamdb
