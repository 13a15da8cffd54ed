#include "index/synthetic.h"

#include <cstring>
#include <random>

#include "core/binary_code.h"

namespace hamdb {

namespace {

void RandomBits(std::mt19937_64& rng, uint8_t* code, int bits) {
  const size_t nb = code_bytes(bits);
  for (size_t i = 0; i < nb; i += 8) {
    const uint64_t v = rng();
    std::memcpy(code + i, &v, std::min<size_t>(8, nb - i));
  }
  if (bits % 8) code[nb - 1] &= static_cast<uint8_t>((1u << (bits % 8)) - 1);
}

}  // namespace

StatusOr<SyntheticCodes> GenerateCodes(const SyntheticSpec& spec, size_t n, int bits) {
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(bits));
  const size_t nb = code_bytes(bits);
  SyntheticCodes out;
  out.codes.resize(n * nb);
  std::mt19937_64 rng(spec.seed);
  if (spec.kind == "uniform") {
    for (size_t i = 0; i < n; ++i) RandomBits(rng, &out.codes[i * nb], bits);
    return out;
  }
  if (spec.kind != "clustered") {
    return Status::InvalidArgument("unknown synthetic data kind '" + spec.kind +
                                   "': expected uniform or clustered");
  }
  if (spec.num_centres == 0) return Status::InvalidArgument("num_centres must be positive");
  if (!(spec.flip_prob >= 0.0 && spec.flip_prob <= 1.0)) {
    return Status::InvalidArgument("flip_prob must be in [0, 1]");
  }
  out.centre_codes.resize(spec.num_centres * nb);
  for (size_t c = 0; c < spec.num_centres; ++c) RandomBits(rng, &out.centre_codes[c * nb], bits);
  out.centres.resize(n);
  // Flip positions by geometric skips: O(expected flips) per item, not O(bits).
  const bool flips = spec.flip_prob > 0.0;
  std::geometric_distribution<int> skip(flips ? std::min(spec.flip_prob, 1.0) : 0.5);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t c = static_cast<uint32_t>(rng() % spec.num_centres);
    out.centres[i] = c;
    uint8_t* code = &out.codes[i * nb];
    std::memcpy(code, &out.centre_codes[c * nb], nb);
    if (!flips) continue;
    for (int b = skip(rng); b < bits; b += 1 + skip(rng)) {
      code[b >> 3] ^= static_cast<uint8_t>(1u << (b & 7));
    }
  }
  return out;
}

}  // namespace hamdb
