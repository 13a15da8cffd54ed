// HugePageAllocator: large arrays are 2 MiB aligned and behave as ordinary
// vectors; small ones come from operator new.
#include "core/huge_pages.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

namespace hamdb {
namespace {

TEST(HugePageAllocator, LargeArraysAreAlignedAndHoldTheirData) {
  CodeArray small(1000, 7);
  EXPECT_EQ(small.size(), 1000u);
  EXPECT_EQ(small[999], 7);

  CodeArray large(kHugePageMinBytes + 12345);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(large.data()) % kHugePageBytes, 0u);
  std::iota(large.begin(), large.end(), uint8_t{0});
  EXPECT_EQ(large[kHugePageMinBytes + 12344], static_cast<uint8_t>(kHugePageMinBytes + 12344));

  // Growth across the threshold keeps the contents (allocate, copy, deallocate).
  CodeArray grown;
  for (size_t i = 0; i < kHugePageMinBytes + 100; ++i) grown.push_back(static_cast<uint8_t>(i * 31));
  for (size_t i = 0; i < grown.size(); i += 4093) ASSERT_EQ(grown[i], static_cast<uint8_t>(i * 31)) << i;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(grown.data()) % kHugePageBytes, 0u);
  grown.resize(10);
  grown.shrink_to_fit();  // back below the threshold: operator new again
  EXPECT_EQ(grown.size(), 10u);
  EXPECT_EQ(grown[9], static_cast<uint8_t>(9 * 31));

  // Wider elements count bytes, not elements.
  std::vector<uint64_t, HugePageAllocator<uint64_t>> words(kHugePageMinBytes / 8, 5);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(words.data()) % kHugePageBytes, 0u);
  EXPECT_EQ(words.back(), 5u);
}

}  // namespace
}  // namespace hamdb
