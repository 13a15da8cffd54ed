// Item scores: a float per item where higher means more confident (an
// encoder's confidence, or whatever a client passes), used to order results
// that tie on distance.
//
// Indexes keep a score in 16 bits: the quantised score is the score rounded
// toward zero to bfloat16 (8 significant bits, the float's full range), then
// mapped to an unsigned key whose order is the order of the values, so that
// comparing keys compares scores. Key 0 means "no score"; every finite score
// maps to a key of at least 0x0080, so items without a score sort below every
// scored item. The ranking rule, the Flat oracle and the responses all use
// the quantised value (ScoreOfKey), so an order never disagrees with the
// scores shown. docs/codes.md states the rule.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace hamdb {

// "No score": the key of an item without one.
inline constexpr uint16_t kNoScore = 0;

// OK when `score` is finite; InvalidArgument otherwise, naming `what`.
Status CheckScore(double score, std::string_view what);
// The key of a finite score (see above); -0 and +0 share one key.
uint16_t ScoreKey(float score);
// ScoreKey, or kNoScore for NaN (how a store scan marks an item without a
// score).
inline uint16_t ScoreKeyOrNone(float score) {
  return score != score ? kNoScore : ScoreKey(score);
}
// The quantised score a key stands for. key must not be kNoScore.
float ScoreOfKey(uint16_t key);

// The score of a confidence c in [0, 1] (a probability of being right):
// its log-odds ln(c / (1 - c)), with 1 - c floored at 1e-12. Monotone in c,
// and spread where confidences crowd near 1, so that score keys keep them
// apart. Encoders and the benchmark's baselines score their items this way.
double ConfidenceLogOdds(double c);

// How results at equal distance are ordered.
enum class TieBreak : uint8_t {
  kId,     // (distance, id)
  kScore,  // (distance, -score, id); items without a score after scored ones
};

// "id" or "score".
const char* TieBreakName(TieBreak tie);
// Parses "id" or "score"; InvalidArgument names the accepted values.
StatusOr<TieBreak> ParseTieBreak(std::string_view name);

}  // namespace hamdb
