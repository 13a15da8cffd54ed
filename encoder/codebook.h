// Codebook: the class codes learnt by an LLC encoder, and decoding against
// them.
//
// A codebook holds L class codes of bits() bits (packed LSB-first, see
// docs/codes.md) and optional class names. Decoding an instance code:
//  - exact decoding (ED): the class whose code equals the instance code;
//  - minimum Hamming decoding (MHD): the class whose code is nearest. Ties
//    are broken by the instance's per-bit probabilities when given (the tied
//    class whose bits are most likely under them), else by the lower class
//    index;
//  - out of distribution: the nearest class code is farther than
//    `ood_radius` (0 by default: the code matches no class code exactly).
//
// Immutable after Create; all methods are const and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/hamming.h"
#include "core/status.h"

namespace hamdb {

struct DecodeResult {
  int class_index = -1;       // MHD class (never -1 for a non-empty codebook)
  uint32_t distance = 0;      // Hamming distance to that class code
  bool exact = false;         // ED succeeded: distance == 0
  bool out_of_distribution = false;  // distance > ood_radius
  int num_tied = 1;           // classes at the minimum distance
};

class Codebook {
 public:
  // codes: num_classes * code_bytes(bits) bytes. class_names: empty or one
  // per class. Errors: InvalidArgument for bad bits, sizes or padding.
  static StatusOr<Codebook> Create(int bits, std::vector<uint8_t> codes,
                                   std::vector<std::string> class_names = {});

  int bits() const { return bits_; }
  size_t code_bytes() const { return (static_cast<size_t>(bits_) + 7) / 8; }
  size_t num_classes() const { return num_classes_; }
  const uint8_t* class_code(size_t c) const { return codes_.data() + c * code_bytes(); }
  const std::vector<std::string>& class_names() const { return class_names_; }

  // Number of distinct class codes; less than num_classes() means some
  // classes collapsed onto the same code (an error for LLC training to report).
  size_t NumUniqueCodes() const;

  // The class whose code equals `code` exactly (the lowest such index when
  // codes collide), or -1.
  int DecodeExact(const uint8_t* code) const;

  // MHD decoding as described above. bit_probs: null, or bits() values in
  // [0, 1], the probability that each bit is 1.
  DecodeResult Decode(const uint8_t* code, const float* bit_probs = nullptr,
                      uint32_t ood_radius = 0) const;

 private:
  Codebook() = default;
  int bits_ = 0;
  size_t num_classes_ = 0;
  std::vector<uint8_t> codes_;
  std::vector<std::string> class_names_;
  HammingKernel kernel_{};
};

}  // namespace hamdb
