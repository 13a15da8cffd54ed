#include "core/score.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace hamdb {

Status CheckScore(double score, std::string_view what) {
  if (std::isfinite(score)) return Status::OK();
  return Status::InvalidArgument(std::string(what) + " must be a finite number (got " +
                                 (std::isnan(score) ? "NaN" : score > 0 ? "inf" : "-inf") + ")");
}

uint16_t ScoreKey(float score) {
  if (score == 0.f) score = 0.f;  // -0 -> +0
  uint32_t bits;
  std::memcpy(&bits, &score, 4);
  // bfloat16 rounded toward zero: the high half of the float.
  const uint16_t bf = static_cast<uint16_t>(bits >> 16);
  // Negative values order backwards by their bits: flip them below the
  // positive ones, which get the top bit.
  return (bf & 0x8000) ? static_cast<uint16_t>(~bf) : static_cast<uint16_t>(bf | 0x8000);
}

float ScoreOfKey(uint16_t key) {
  const uint16_t bf = (key & 0x8000) ? static_cast<uint16_t>(key & 0x7fff)
                                     : static_cast<uint16_t>(~key);
  const uint32_t bits = static_cast<uint32_t>(bf) << 16;
  float v;
  std::memcpy(&v, &bits, 4);
  return v;
}

double ConfidenceLogOdds(double c) {
  constexpr double kFloor = 1e-12;
  const double p = std::min(std::max(c, kFloor), 1.0 - kFloor);
  return std::log(p / (1.0 - p));
}

const char* TieBreakName(TieBreak tie) { return tie == TieBreak::kScore ? "score" : "id"; }

StatusOr<TieBreak> ParseTieBreak(std::string_view name) {
  if (name == "id") return TieBreak::kId;
  if (name == "score") return TieBreak::kScore;
  return Status::InvalidArgument("tie_break must be \"id\" or \"score\" (got \"" +
                                 std::string(name) + "\")");
}

}  // namespace hamdb
