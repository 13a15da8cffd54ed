// The shard map's pure rules: placement, the id hash, successors, local
// copy names and the JSON form etcd holds.
#include "http/shard_map.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace hamdb::http {
namespace {

TEST(ShardMap, IdsSpreadEvenlyOverShards) {
  for (int shards : {1, 3, 8}) {
    std::vector<int> count(shards);
    for (uint64_t id = 0; id < 30000; ++id) {
      const int k = ShardOf(id, shards);
      ASSERT_GE(k, 0);
      ASSERT_LT(k, shards);
      ++count[k];
    }
    for (int c : count) EXPECT_NEAR(c, 30000.0 / shards, 30000.0 / shards * 0.05) << shards;
  }
  EXPECT_EQ(ShardOf(12345, 7), ShardOf(12345, 7));  // a pure function of the id
}

TEST(ShardMap, PlacementSpreadsPrimariesAndCopies) {
  const std::vector<std::string> nodes = {"a", "b", "c"};
  auto placed = PlaceShards(nodes, 6, 2);
  ASSERT_TRUE(placed.ok()) << placed.status().ToString();
  std::map<std::string, int> primaries, copies;
  for (const ShardState& s : *placed) {
    ASSERT_EQ(s.replicas.size(), 2u);
    EXPECT_NE(s.replicas[0], s.replicas[1]);
    EXPECT_EQ(s.primary, s.replicas[0]);
    EXPECT_EQ(s.in_sync, s.replicas);
    EXPECT_EQ(s.epoch, 1);
    ++primaries[s.primary];
    for (const std::string& n : s.replicas) ++copies[n];
  }
  for (const std::string& n : nodes) {
    EXPECT_EQ(primaries[n], 2) << n;
    EXPECT_EQ(copies[n], 4) << n;
  }
  EXPECT_EQ(PlaceShards(nodes, 2, 4).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(PlaceShards(nodes, 0, 1).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(PlaceShards({}, 1, 1).status().code(), Status::Code::kInvalidArgument);
}

TEST(ShardMap, SuccessorIsTheFirstLiveInSyncCopy) {
  ShardState s;
  s.primary = "a";
  s.replicas = {"a", "b", "c"};
  s.in_sync = {"a", "c", "b"};
  EXPECT_EQ(Successor(s, {"b", "c"}), "c");
  EXPECT_EQ(Successor(s, {"b"}), "b");
  s.in_sync = {"a", "c"};  // b fell behind: never promoted
  EXPECT_EQ(Successor(s, {"b"}), std::nullopt);
  EXPECT_EQ(Successor(s, {}), std::nullopt);
}

TEST(ShardMap, CopyNamesRoundTrip) {
  EXPECT_EQ(ShardCollectionName("photos", 12), "photos.shard12");
  auto parsed = ParseShardCollectionName("my.photos.shard3");
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->first, "my.photos");
  EXPECT_EQ(parsed->second, 3);
  for (const char* bad : {"photos", "photos.shard", "photos.shard03", "photos.shardx", ".shard1",
                          "photos.shard99999", "photos.shard-1"}) {
    EXPECT_FALSE(ParseShardCollectionName(bad)) << bad;
  }
}

TEST(ShardMap, JsonRoundTripAndCorruptValues) {
  ShardState s;
  s.epoch = 7;
  s.primary = "b";
  s.replicas = {"b", "a"};
  s.in_sync = {"b"};
  auto back = ShardFromJson(ToJson(s).dump());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->epoch, 7);
  EXPECT_EQ(back->primary, "b");
  EXPECT_EQ(back->replicas, s.replicas);
  EXPECT_EQ(back->in_sync, s.in_sync);

  ClusterCollection c;
  c.name = "photos";
  c.settings = {{"bits", 64}, {"index", "MIH"}};
  c.shards = 4;
  c.replication_factor = 2;
  auto cb = CollectionFromJson(ToJson(c).dump());
  ASSERT_TRUE(cb.ok());
  EXPECT_EQ(cb->settings, c.settings);
  EXPECT_EQ(cb->shards, 4);

  for (const char* bad : {"", "[]", "{\"epoch\": 1}", "{\"epoch\": 1, \"primary\": \"a\", \"replicas\": [1], "
                                                        "\"in_sync\": []}"}) {
    EXPECT_EQ(ShardFromJson(bad).status().code(), Status::Code::kCorruption) << bad;
  }
  EXPECT_EQ(CollectionFromJson("{\"name\": \"x\", \"settings\": {}, \"shards\": 0, \"replication_factor\": 1}")
                .status()
                .code(),
            Status::Code::kCorruption);
}

}  // namespace
}  // namespace hamdb::http
