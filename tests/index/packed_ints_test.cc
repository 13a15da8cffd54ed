// PackedInts and BucketStarts against plain arrays: every width, buckets
// empty, tiny and spanning many words, and their snapshot states, including
// damaged ones.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "index/packed_ints.h"

namespace hamdb {
namespace {

TEST(PackedInts, WidthForIsTheBitLength) {
  EXPECT_EQ(PackedInts::WidthFor(0), 1);
  EXPECT_EQ(PackedInts::WidthFor(1), 1);
  EXPECT_EQ(PackedInts::WidthFor(2), 2);
  EXPECT_EQ(PackedInts::WidthFor(1000000), 20);
  EXPECT_EQ(PackedInts::WidthFor(1048575), 20);
  EXPECT_EQ(PackedInts::WidthFor(1048576), 21);
  EXPECT_EQ(PackedInts::WidthFor(UINT32_MAX), 32);
}

TEST(PackedInts, EveryWidthStoresWhatWasSet) {
  std::mt19937_64 rng(7);
  for (int width = 1; width <= 32; ++width) {
    const size_t n = 1 + rng() % 300;
    PackedInts p;
    p.Assign(n, width);
    EXPECT_EQ(p.max_value(), static_cast<uint32_t>((uint64_t{1} << width) - 1));
    std::vector<uint32_t> ref(n, 0);
    for (int round = 0; round < 3; ++round) {
      for (size_t i = 0; i < n; ++i) {
        // Extremes and random values, set in random order over earlier ones.
        const size_t j = rng() % n;
        const uint32_t v = (rng() % 4 == 0) ? p.max_value() : static_cast<uint32_t>(rng()) & p.max_value();
        p.Set(j, v);
        ref[j] = v;
      }
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(p.Get(i), ref[i]) << "width " << width << " i " << i;
    }
    std::string state;
    p.AppendState(&state);
    std::string_view in(state);
    PackedInts q;
    ASSERT_TRUE(q.LoadState(&in).ok());
    EXPECT_TRUE(in.empty());
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(q.Get(i), ref[i]);
  }
}

TEST(PackedInts, DamagedStatesAreRejected) {
  PackedInts p;
  p.Assign(10, 5);
  std::string state;
  p.AppendState(&state);
  {
    std::string_view in(state.data(), state.size() - 1);
    PackedInts q;
    EXPECT_EQ(q.LoadState(&in).code(), Status::Code::kCorruption);
  }
  {
    std::string bad = state;
    bad[8] = 40;  // width 40
    std::string_view in(bad);
    PackedInts q;
    EXPECT_EQ(q.LoadState(&in).code(), Status::Code::kCorruption);
  }
  {
    std::string bad = state;
    bad[bad.size() - 1] = 1;  // a bit in the spare word
    std::string_view in(bad);
    PackedInts q;
    EXPECT_EQ(q.LoadState(&in).code(), Status::Code::kCorruption);
  }
}

// Random bucket sizes: mostly empty or small, some spanning many words.
std::vector<uint32_t> RandomStarts(std::mt19937_64& rng, size_t nb) {
  std::vector<uint32_t> starts(nb + 1, 0);
  for (size_t b = 0; b < nb; ++b) {
    const uint64_t r = rng() % 100;
    const uint32_t size = r < 60 ? 0 : r < 95 ? rng() % 4 : r < 99 ? rng() % 70 : rng() % 1000;
    starts[b + 1] = starts[b] + size;
  }
  return starts;
}

void ExpectSameRanges(const BucketStarts& s, const std::vector<uint32_t>& starts) {
  const size_t nb = starts.size() - 1;
  ASSERT_EQ(s.num_buckets(), nb);
  ASSERT_EQ(s.num_entries(), starts[nb]);
  for (size_t b = 0; b < nb; ++b) {
    size_t begin = 99, end = 99;
    s.Range(b, &begin, &end);
    if (starts[b] == starts[b + 1]) {
      ASSERT_EQ(begin, end) << "empty bucket " << b;
      continue;
    }
    ASSERT_EQ(begin, starts[b]) << "bucket " << b;
    ASSERT_EQ(end, starts[b + 1]) << "bucket " << b;
  }
}

TEST(BucketStarts, RangesEqualTheOffsets) {
  std::mt19937_64 rng(11);
  for (size_t nb : {1, 2, 63, 64, 65, 127, 128, 129, 1000, 5000, 70000}) {
    const std::vector<uint32_t> starts = RandomStarts(rng, nb);
    BucketStarts s;
    s.Build(starts.data(), nb);
    ExpectSameRanges(s, starts);
    std::string state;
    s.AppendState(&state);
    std::string_view in(state);
    BucketStarts t;
    ASSERT_TRUE(t.LoadState(&in).ok());
    EXPECT_TRUE(in.empty());
    ExpectSameRanges(t, starts);
  }
  // Full buckets (a few entries each, so groups of fewer than 64 buckets).
  for (uint32_t mean : {2u, 5u, 12u, 40u}) {
    std::vector<uint32_t> dense(3001, 0);
    for (size_t b = 0; b < 3000; ++b) dense[b + 1] = dense[b] + static_cast<uint32_t>(rng() % (2 * mean + 1));
    BucketStarts d;
    d.Build(dense.data(), 3000);
    ExpectSameRanges(d, dense);
  }
  // All entries in one bucket; all buckets empty.
  const std::vector<uint32_t> one = {0, 0, 5000, 5000};
  BucketStarts s;
  s.Build(one.data(), 3);
  ExpectSameRanges(s, one);
  const std::vector<uint32_t> none(300, 0);
  s.Build(none.data(), 299);
  ExpectSameRanges(s, none);
  s.Build(nullptr, 0);
  EXPECT_EQ(s.num_buckets(), 0u);
}

TEST(BucketStarts, DamagedStatesAreRejected) {
  std::mt19937_64 rng(3);
  const std::vector<uint32_t> starts = RandomStarts(rng, 500);
  BucketStarts s;
  s.Build(starts.data(), 500);
  std::string state;
  s.AppendState(&state);
  // A flipped bit changes the count of occupied buckets or of runs, or sets
  // a padding bit.
  for (size_t at : {size_t{24}, state.size() / 2, state.size() - 9}) {
    std::string bad = state;
    bad[at] ^= 0x10;
    std::string_view in(bad);
    BucketStarts t;
    EXPECT_EQ(t.LoadState(&in).code(), Status::Code::kCorruption) << "byte " << at;
  }
  std::string_view in(state.data(), state.size() - 8);
  BucketStarts t;
  EXPECT_EQ(t.LoadState(&in).code(), Status::Code::kCorruption);
}

}  // namespace
}  // namespace hamdb
