// FieldIndex: random writes and erases against a model map (values, posting
// lists, evaluation counts), value typing, and the snapshot state.
#include "collection/field_index.h"
#include "core/hamming.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>

namespace hamdb {
namespace {

struct ModelItem {
  std::optional<int64_t> label;
  std::optional<std::string> folder;
};

// The index answers as the model does: each id's ordinals decode to its
// values, and each value's posting list is exactly its items.
void ExpectMatchesModel(const FieldIndex& fx, const std::map<uint64_t, ModelItem>& model) {
  size_t with_value = 0;
  for (const auto& [id, m] : model) with_value += (m.label || m.folder) ? 1 : 0;
  EXPECT_EQ(fx.size(), with_value);
  auto lock = fx.ReadLock();
  for (int label = 0; label < 6; ++label) {
    std::vector<uint8_t> ok;
    uint64_t count = 0;
    fx.Evaluate(0, [&](const FieldValue& v) { return v.is_int && v.i == label; }, &ok, &count);
    std::vector<uint64_t> got;
    fx.AppendIds(0, ok, &got);
    std::set<uint64_t> want;
    for (const auto& [id, m] : model) {
      if (m.label == label) want.insert(id);
    }
    EXPECT_EQ(count, want.size()) << "label " << label;
    EXPECT_EQ(std::set<uint64_t>(got.begin(), got.end()), want) << "label " << label;
    EXPECT_EQ(got.size(), want.size()) << "label " << label;
    // The posting lists carry each item's code and score key.
    // and every item of a list is at least its bound away from the query.
    size_t scanned = 0;
    const uint8_t query = static_cast<uint8_t>(label * 37);
    for (const FieldIndex::PostingBound& b : fx.Bounds(0, ok, &query)) {
      fx.ScanPosting(0, b, [] { return 8u; }, [&](const uint32_t* slots, const uint8_t* codes, const uint16_t* scores, size_t n) {
        for (size_t i = 0; i < n; ++i, ++scanned) {
          const uint64_t id = fx.id_of_slot(slots[i]);
          EXPECT_EQ(codes[i], id % 251);
          EXPECT_EQ(scores[i], id % 7);
          EXPECT_EQ(want.count(id), 1u);
          EXPECT_GE(HammingDistance(&query, &codes[i], 1), b.bound);
        }
      });
    }
    EXPECT_EQ(scanned, want.size());
    // A scan with a limit reads at least every item within it: runs by
    // bound, rings by distance from the run's pivot.
    for (uint32_t limit = 0; limit <= 8; ++limit) {
      std::set<uint64_t> seen;
      for (const FieldIndex::PostingBound& b : fx.Bounds(0, ok, &query)) {
        if (b.bound > limit) break;
        fx.ScanPosting(0, b, [limit] { return limit; },
                       [&](const uint32_t* slots, const uint8_t*, const uint16_t*, size_t n) {
                         for (size_t i = 0; i < n; ++i) seen.insert(fx.id_of_slot(slots[i]));
                       });
      }
      for (uint64_t id : want) {
        const uint8_t code = static_cast<uint8_t>(id % 251);
        if (HammingDistance(&query, &code, 1) <= limit) {
          EXPECT_EQ(seen.count(id), 1u) << "label " << label << " limit " << limit;
        }
      }
    }
  }
  std::vector<uint8_t> ok;
  uint64_t count = 0;
  fx.Evaluate(1, [](const FieldValue& v) { return v.type == FieldValue::kString && v.s.rfind("a", 0) == 0; },
              &ok, &count);
  std::vector<uint64_t> got;
  fx.AppendIds(1, ok, &got);
  std::set<uint64_t> want;
  for (const auto& [id, m] : model) {
    if (m.folder && m.folder->rfind("a", 0) == 0) want.insert(id);
  }
  EXPECT_EQ(std::set<uint64_t>(got.begin(), got.end()), want);
  EXPECT_EQ(count, want.size());
}

// Posting blocks of the default size (every list a tail here), and small
// ones, so that appends seal blocks and erases move items between rings.
class FieldIndexBlocks : public ::testing::TestWithParam<size_t> {};

TEST_P(FieldIndexBlocks, RandomWritesMatchAModel) {
  FieldIndex fx({"label", "metadata.folder"}, 1, GetParam());
  EXPECT_EQ(fx.FieldNumber("label"), 0);
  EXPECT_EQ(fx.FieldNumber("metadata.folder"), 1);
  EXPECT_EQ(fx.FieldNumber("metadata.other"), -1);
  std::map<uint64_t, ModelItem> model;
  std::mt19937_64 rng(7);
  const char* folders[] = {"a1", "a2", "b1", "b2"};
  for (int step = 0; step < 4000; ++step) {
    const uint64_t id = rng() % 500 * 0x9E3779B97F4A7C15ull;  // sparse 64-bit ids
    if (rng() % 4 == 0) {
      fx.Erase(id);
      model.erase(id);
      continue;
    }
    ModelItem m;
    if (rng() % 5 != 0) m.label = static_cast<int64_t>(rng() % 6);
    std::string metadata;
    switch (rng() % 4) {
      case 0: break;  // no metadata
      case 1: metadata = R"({"folder": [1, 2]})"; break;  // not a scalar: no value
      default:
        m.folder = folders[rng() % 4];
        metadata = "{\"folder\": \"" + *m.folder + "\", \"n\": 3}";
    }
    const uint8_t code = static_cast<uint8_t>(id % 251);
    fx.Set(id, &code, static_cast<uint16_t>(id % 7), m.label, metadata);
    model[id] = m;
    if (step % 100 == 99) ExpectMatchesModel(fx, model);
  }
  ExpectMatchesModel(fx, model);

  // Values: one lookup per id, kNone where there is none.
  std::vector<uint64_t> ids;
  for (const auto& [id, m] : model) ids.push_back(id);
  ids.push_back(12345);  // never written
  std::vector<uint32_t> ords(ids.size() * 2);
  {
    auto lock = fx.ReadLock();
    fx.Values(ids.data(), ids.size(), ords.data());
  }
  EXPECT_EQ(ords[ords.size() - 2], FieldIndex::kNone);
  EXPECT_EQ(ords[ords.size() - 1], FieldIndex::kNone);
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    EXPECT_EQ(ords[2 * i] == FieldIndex::kNone, !model[ids[i]].label.has_value());
    EXPECT_EQ(ords[2 * i + 1] == FieldIndex::kNone, !model[ids[i]].folder.has_value());
  }

  // The snapshot state restores the same index.
  std::string state;
  fx.AppendState(&state);
  FieldIndex again({"label", "metadata.folder"}, 1, GetParam() + 1);  // blocks are rebuilt
  std::string_view in = state;
  ASSERT_TRUE(again.LoadState(&in).ok());
  EXPECT_TRUE(in.empty());
  ExpectMatchesModel(again, model);
  // And keeps working after it.
  again.Erase(ids[0]);
  model.erase(ids[0]);
  ExpectMatchesModel(again, model);

  // Other fields, or a cut state, are refused and leave the index empty.
  FieldIndex other({"label"}, 1);
  in = state;
  EXPECT_EQ(other.LoadState(&in).code(), Status::Code::kCorruption);
  FieldIndex cut({"label", "metadata.folder"}, 1);
  std::string_view short_state(state.data(), state.size() / 2);
  EXPECT_EQ(cut.LoadState(&short_state).code(), Status::Code::kCorruption);
  EXPECT_EQ(cut.size(), 0u);
}

INSTANTIATE_TEST_SUITE_P(BlockItems, FieldIndexBlocks,
                         ::testing::Values(FieldIndex::kDefaultBlockItems, size_t{3}, size_t{1}));

TEST(FieldIndex, NumbersKeepTheirTypeAndNamesAreChecked) {
  FieldIndex fx({"metadata.n"}, 1);
  const uint8_t one = 1;
  fx.Set(1, &one, kNoScore, std::nullopt, R"({"n": 3})");
  fx.Set(2, &one, kNoScore, std::nullopt, R"({"n": 3.0})");
  fx.Set(3, &one, kNoScore, std::nullopt, R"({"n": "3"})");
  fx.Set(4, &one, kNoScore, std::nullopt, R"({"n": true})");
  fx.Set(5, &one, kNoScore, std::nullopt, R"({"n": null})");
  fx.Set(6, &one, kNoScore, std::nullopt, "not json");
  EXPECT_EQ(fx.size(), 4u);
  std::vector<uint8_t> ok;
  uint64_t count = 0;
  const FieldValue three = FieldValue::Int(3);
  auto lock = fx.ReadLock();
  fx.Evaluate(0, [&](const FieldValue& v) { return Equal(v, three); }, &ok, &count);
  EXPECT_EQ(count, 2u);  // 3 and 3.0, not "3" or true
  EXPECT_TRUE(FieldIndex::CheckFieldName("label").ok());
  EXPECT_TRUE(FieldIndex::CheckFieldName("metadata.folder").ok());
  EXPECT_FALSE(FieldIndex::CheckFieldName("metadata.").ok());
  EXPECT_FALSE(FieldIndex::CheckFieldName("score").ok());
}

}  // namespace
}  // namespace hamdb
