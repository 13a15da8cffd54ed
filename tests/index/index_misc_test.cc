// MakeIndex spec parsing, the thread pool, the id -> slot map and dense slots.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "index/binary_index.h"
#include "index/id_map.h"
#include "index/mih_index.h"
#include "index/parallel.h"
#include "index/index_factory.h"

namespace hamdb {
namespace {

TEST(MakeIndexTest, ParsesKnownSpecs) {
  for (const char* spec : {"Flat", "MIH", "MIH1", "MIH4", "MIH64"}) {
    auto index = MakeIndex(spec, 64);
    ASSERT_TRUE(index.ok()) << spec << ": " << index.status().ToString();
    EXPECT_EQ((*index)->spec(), spec);
    EXPECT_EQ((*index)->bits(), 64);
    EXPECT_EQ((*index)->size(), 0u);
  }
  auto mih = MakeIndex("MIH4", 100);
  ASSERT_TRUE(mih.ok());
  EXPECT_EQ(dynamic_cast<MihIndex&>(**mih).num_substrings(), 4);
}

TEST(MakeIndexTest, RejectsUnknownSpecsAndBits) {
  for (const char* spec : {"", "flat", "FLAT", "MIH0", "MIH04", "MIHx", "MIH-1", "MIH 4", "MIH4x",
                           "MIH999999", "MIH65", "IVF", "Bucket0", "GPUflat", "Flat "}) {
    auto index = MakeIndex(spec, 64);
    EXPECT_FALSE(index.ok()) << "'" << spec << "'";
    if (!index.ok()) {
      EXPECT_EQ(index.status().code(), Status::Code::kInvalidArgument) << spec;
    }
  }
  // 256-bit codes need at least 4 substrings of <= 64 bits.
  EXPECT_EQ(MakeIndex("MIH3", 256).status().code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(MakeIndex("MIH4", 256).ok());
  EXPECT_EQ(MakeIndex("Flat", 0).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(MakeIndex("MIH", 5000).status().code(), Status::Code::kInvalidArgument);
  auto st = MakeIndex("Bogus", 64).status();
  EXPECT_NE(st.message().find("Bogus"), std::string::npos) << st.ToString();
}

TEST(ThreadPoolTest, RunsEveryTaskOnce) {
  ThreadPool pool(4);
  for (size_t n : {size_t{0}, size_t{1}, size_t{3}, size_t{1000}}) {
    std::vector<std::atomic<int>> hits(n);
    ASSERT_TRUE(pool.ParallelFor(n, 0, [&](size_t i) { ++hits[i]; }).ok());
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << i;
  }
}

TEST(ThreadPoolTest, RespectsMaxThreads) {
  ThreadPool pool(4);
  std::atomic<int> running{0}, peak{0};
  ASSERT_TRUE(pool.ParallelFor(64, 2, [&](size_t) {
                    const int now = ++running;
                    int p = peak.load();
                    while (now > p && !peak.compare_exchange_weak(p, now)) {
                    }
                    std::this_thread::sleep_for(std::chrono::microseconds(200));
                    --running;
                  }).ok());
  EXPECT_LE(peak.load(), 2);
  EXPECT_EQ(pool.Resolve(0), 4);
  EXPECT_EQ(pool.Resolve(99), 4);
  EXPECT_EQ(pool.Resolve(1), 1);
}

TEST(ThreadPoolTest, ExceptionsBecomeStatus) {
  ThreadPool pool(3);
  Status st = pool.ParallelFor(100, 0, [](size_t i) {
    if (i == 37) throw std::runtime_error("boom");
  });
  EXPECT_EQ(st.code(), Status::Code::kInternal);
  EXPECT_NE(st.message().find("boom"), std::string::npos);
  st = pool.ParallelFor(10, 0, [](size_t i) {
    if (i == 3) throw std::bad_alloc();
  });
  EXPECT_EQ(st.code(), Status::Code::kResourceExhausted);
  st = pool.ParallelFor(10, 0, [](size_t i) {
    if (i == 0) throw 42;
  });
  EXPECT_EQ(st.code(), Status::Code::kInternal);
  // The pool still works afterwards.
  std::atomic<int> count{0};
  EXPECT_TRUE(pool.ParallelFor(50, 0, [&](size_t) { ++count; }).ok());
  EXPECT_EQ(count.load(), 50);
}

TEST(ThreadPoolTest, NestedAndConcurrentCallsComplete) {
  ThreadPool pool(3);
  std::atomic<int> count{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      Status st = pool.ParallelFor(8, 0, [&](size_t) {
        Status inner = pool.ParallelFor(8, 0, [&](size_t) { ++count; });
        if (!inner.ok()) count += 100000;
      });
      if (!st.ok()) count += 100000;
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(count.load(), 4 * 8 * 8);
}

TEST(IdSlotMapTest, MatchesUnorderedMapUnderRandomOps) {
  IdSlotMap map;
  std::vector<uint64_t> ids;  // slot -> id, dense like an index
  std::unordered_map<uint64_t, uint32_t> model;
  std::mt19937_64 rng(1);
  for (int op = 0; op < 200000; ++op) {
    // Small id universe with colliding low bits so probe runs get long.
    const uint64_t id = (rng() % 3000) << 20;
    const uint32_t found = map.Find(id, ids.data());
    auto it = model.find(id);
    ASSERT_EQ(found, it == model.end() ? IdSlotMap::kNoSlot : it->second) << "op " << op;
    if (it == model.end()) {
      ids.push_back(id);
      map.Insert(id, static_cast<uint32_t>(ids.size() - 1), ids.data());
      model[id] = static_cast<uint32_t>(ids.size() - 1);
    } else if (rng() % 2 == 0) {
      // Swap-remove, as the indexes do.
      const uint32_t slot = map.Erase(id, ids.data());
      ASSERT_EQ(slot, it->second);
      model.erase(it);
      const uint32_t last = static_cast<uint32_t>(ids.size() - 1);
      if (slot != last) {
        map.Move(ids[last], last, slot, ids.data());
        model[ids[last]] = slot;
        ids[slot] = ids[last];
      }
      ids.pop_back();
    }
    ASSERT_EQ(map.size(), model.size());
  }
  map.Rebuild(ids.data(), ids.size());
  for (const auto& [id, slot] : model) EXPECT_EQ(map.Find(id, ids.data()), slot);
  // FindMany answers as Find does, for present and absent keys alike.
  std::vector<uint64_t> keys;
  for (int i = 0; i < 500; ++i) keys.push_back((rng() % 4000) << 20);
  std::vector<uint32_t> slots(keys.size(), 7);
  map.FindMany(keys.data(), keys.size(), ids.data(), slots.data());
  size_t absent = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto it = model.find(keys[i]);
    ASSERT_EQ(slots[i], it == model.end() ? IdSlotMap::kNoSlot : it->second) << "key " << keys[i];
    absent += it == model.end();
  }
  EXPECT_GT(absent, 0u);
  EXPECT_LT(absent, keys.size());
  IdSlotMap empty;
  empty.FindMany(keys.data(), 3, ids.data(), slots.data());
  EXPECT_EQ(slots[0], IdSlotMap::kNoSlot);
  EXPECT_EQ(slots[2], IdSlotMap::kNoSlot);
}

// Growth prepared off the exclusive lock: after AdoptGrowth, an Upsert of
// the prepared number of new items does not reallocate any array (so the
// O(n) copy was the preparation's), and the slots hold what they should.
// A preparation made before another write changed the size is not adopted.
TEST(DenseSlotsTest, PreparedGrowthIsAdoptedAndLeavesNoCopyToTheWrite) {
  const size_t cb = 8;
  DenseSlots slots(cb);
  std::mt19937_64 rng(3);
  std::vector<uint64_t> all_ids;
  std::vector<uint8_t> all_codes;
  auto batch = [&](size_t n, std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                   std::vector<uint16_t>* scores) {
    for (size_t i = 0; i < n; ++i) {
      ids->push_back(rng());
      scores->push_back(static_cast<uint16_t>(rng() % 1000));
      for (size_t b = 0; b < cb; ++b) codes->push_back(static_cast<uint8_t>(rng()));
    }
  };
  size_t adopted = 0;
  for (int round = 0; round < 60; ++round) {
    const size_t n = 1 + rng() % 300;
    std::vector<uint64_t> ids;
    std::vector<uint8_t> codes;
    std::vector<uint16_t> scores;
    batch(n, &ids, &codes, &scores);
    SlotGrowth growth;
    slots.PrepareGrowth(n, &growth);
    const bool grows = growth.ids.capacity() > 0;
    slots.AdoptGrowth(&growth);
    adopted += grows;
    const uint64_t* ids_before = slots.ids().data();
    const uint8_t* codes_before = slots.codes().data();
    const size_t id_map_bytes = slots.memory_bytes() - slots.codes().capacity() -
                                slots.ids().capacity() * sizeof(uint64_t) -
                                slots.scores().memory_bytes();
    ASSERT_TRUE(slots.Upsert(ids.data(), codes.data(), scores.data(), n, "test").ok());
    if (round > 0) {
      EXPECT_EQ(slots.ids().data(), ids_before) << "round " << round;
      EXPECT_EQ(slots.codes().data(), codes_before) << "round " << round;
      EXPECT_EQ(slots.memory_bytes() - slots.codes().capacity() -
                    slots.ids().capacity() * sizeof(uint64_t) - slots.scores().memory_bytes(),
                id_map_bytes)
          << "round " << round;
    }
    all_ids.insert(all_ids.end(), ids.begin(), ids.end());
    all_codes.insert(all_codes.end(), codes.begin(), codes.end());
  }
  EXPECT_GT(adopted, 5u);
  ASSERT_EQ(slots.size(), all_ids.size());
  for (size_t i = 0; i < all_ids.size(); ++i) {
    const uint32_t slot = slots.Find(all_ids[i]);
    ASSERT_NE(slot, IdSlotMap::kNoSlot);
    EXPECT_EQ(std::memcmp(slots.codes().data() + slot * cb, all_codes.data() + i * cb, cb), 0);
  }
  // A stale preparation (the slots changed size since) is dropped.
  SlotGrowth stale;
  slots.PrepareGrowth(slots.size() * 4, &stale);
  ASSERT_GT(stale.ids.capacity(), slots.ids().capacity());
  const uint64_t first = all_ids[0];
  ASSERT_TRUE(slots.Erase(first));
  const size_t capacity = slots.ids().capacity();
  slots.AdoptGrowth(&stale);
  EXPECT_EQ(slots.ids().capacity(), capacity);
  EXPECT_EQ(slots.Find(first), IdSlotMap::kNoSlot);
  EXPECT_NE(slots.Find(all_ids[1]), IdSlotMap::kNoSlot);
}

}  // namespace
}  // namespace hamdb
