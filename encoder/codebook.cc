#include "encoder/codebook.h"

#include <cmath>
#include <set>

#include "core/binary_code.h"

namespace hamdb {

StatusOr<Codebook> Codebook::Create(int bits, std::vector<uint8_t> codes,
                                    std::vector<std::string> class_names) {
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(bits));
  const size_t nb = hamdb::code_bytes(bits);
  if (codes.empty() || codes.size() % nb != 0) {
    return Status::InvalidArgument("codebook needs a positive multiple of " + std::to_string(nb) +
                                   " bytes for " + std::to_string(bits) + "-bit codes, got " +
                                   std::to_string(codes.size()));
  }
  const size_t n = codes.size() / nb;
  if (!class_names.empty() && class_names.size() != n) {
    return Status::InvalidArgument("codebook has " + std::to_string(n) + " codes but " +
                                   std::to_string(class_names.size()) + " class names");
  }
  for (size_t c = 0; c < n; ++c) {
    HAMDB_RETURN_IF_ERROR(CheckPadding(&codes[c * nb], bits).WithContext("class " + std::to_string(c)));
  }
  Codebook cb;
  cb.bits_ = bits;
  cb.num_classes_ = n;
  cb.codes_ = std::move(codes);
  cb.class_names_ = std::move(class_names);
  cb.kernel_ = SelectHammingKernel(nb);
  return cb;
}

size_t Codebook::NumUniqueCodes() const {
  std::set<std::vector<uint8_t>> unique;
  for (size_t c = 0; c < num_classes_; ++c) {
    unique.emplace(class_code(c), class_code(c) + code_bytes());
  }
  return unique.size();
}

int Codebook::DecodeExact(const uint8_t* code) const {
  for (size_t c = 0; c < num_classes_; ++c) {
    if (kernel_.distance(code, class_code(c), code_bytes()) == 0) return static_cast<int>(c);
  }
  return -1;
}

DecodeResult Codebook::Decode(const uint8_t* code, const float* bit_probs,
                              uint32_t ood_radius) const {
  std::vector<uint16_t> dist(num_classes_);
  kernel_.distances(code, codes_.data(), num_classes_, code_bytes(), dist.data());
  DecodeResult r;
  uint32_t best = UINT32_MAX;
  for (size_t c = 0; c < num_classes_; ++c) {
    if (dist[c] < best) {
      best = dist[c];
      r.class_index = static_cast<int>(c);
      r.num_tied = 1;
    } else if (dist[c] == best) {
      ++r.num_tied;
    }
  }
  if (r.num_tied > 1 && bit_probs != nullptr) {
    // Among the tied classes, the one whose code is most likely under the
    // independent per-bit probabilities; the first index wins exact ties.
    double best_ll = -INFINITY;
    const double eps = 1e-7;
    for (size_t c = 0; c < num_classes_; ++c) {
      if (dist[c] != best) continue;
      double ll = 0;
      for (int i = 0; i < bits_; ++i) {
        const double p = std::min(1.0 - eps, std::max(eps, static_cast<double>(bit_probs[i])));
        ll += GetBit(class_code(c), i) ? std::log(p) : std::log(1.0 - p);
      }
      if (ll > best_ll) {
        best_ll = ll;
        r.class_index = static_cast<int>(c);
      }
    }
  }
  r.distance = best;
  r.exact = best == 0;
  r.out_of_distribution = best > ood_radius;
  return r;
}

}  // namespace hamdb
