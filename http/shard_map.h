// The shard map of a cluster (docs/cluster.md): what etcd holds about the
// collections that are sharded over the nodes, as plain values with their
// JSON form, and the pure rules built on it: where an id lives, where the
// shards of a new collection go, and which node takes over a shard.
//
// Keys in etcd:
//   /hamdb/collections/<name>   ClusterCollection: settings, shards, replication
//   /hamdb/shards/<name>/<k>    ShardState: epoch, primary, replicas, in-sync set
//   /hamdb/ids/<name>           the next id a node may lease (decimal)
//
// A shard k of collection `name` is held on each of its replicas as the
// node-local collection ShardCollectionName(name, k).
//
// Thread safety: values; the functions are pure.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace hamdb::http {

inline constexpr const char* kCollectionsPrefix = "/hamdb/collections/";
inline constexpr const char* kShardsPrefix = "/hamdb/shards/";
inline constexpr const char* kIdsPrefix = "/hamdb/ids/";

// Longest name of a cluster collection: its shards' local names add
// ".shard<k>" and must stay within the store's 64 characters.
inline constexpr size_t kMaxClusterNameLength = 52;
inline constexpr int kMaxShards = 1024;

struct ClusterCollection {
  std::string name;
  nlohmann::json settings;  // the create body's collection fields (bits, index, ...), name excluded
  int shards = 1;
  int replication_factor = 1;  // copies of each shard, the primary included
  // ArtifactChecksum of the encoder every copy was created with; "" when
  // the collection has none (settings["encoder"] names the artifact file).
  std::string encoder_checksum;
};

struct ShardState {
  int64_t epoch = 1;             // bumped by every change of primary
  std::string primary;           // node id
  std::vector<std::string> replicas;  // every node that holds a copy, the primary first
  std::vector<std::string> in_sync;   // the replicas that hold every acknowledged write
  int64_t mod_revision = 0;      // of its etcd key, for compare-and-swap (not in the JSON)

  bool InSync(const std::string& node) const;
  bool HasReplica(const std::string& node) const;
};

nlohmann::json ToJson(const ClusterCollection& c);
nlohmann::json ToJson(const ShardState& s);
StatusOr<ClusterCollection> CollectionFromJson(const std::string& text);
StatusOr<ShardState> ShardFromJson(const std::string& text);

std::string CollectionKey(const std::string& name);
std::string ShardKey(const std::string& name, int shard);
std::string IdsKey(const std::string& name);

// "<name>.shard<k>".
std::string ShardCollectionName(const std::string& name, int shard);
// The inverse: (name, k) when `local` has that form.
std::optional<std::pair<std::string, int>> ParseShardCollectionName(const std::string& local);

// The shard that holds an id: a 64-bit mix of the id, modulo shards, so
// that sequential ids spread evenly.
int ShardOf(uint64_t id, int shards);

// Places `shards` x `replication_factor` copies over `nodes` (node ids, in
// order): shard k's primary is nodes[k % n] and its replicas the next ones
// round the ring, so that primaries and copies spread evenly. Every copy is
// in sync (the shards are empty). InvalidArgument when replication_factor
// exceeds the number of nodes.
StatusOr<std::vector<ShardState>> PlaceShards(const std::vector<std::string>& nodes, int shards,
                                              int replication_factor);

// The node that takes a shard over when its primary is not among `live`
// nodes: the first live member of the in-sync set, or nullopt (no live copy
// holds every acknowledged write, so the shard waits for its primary).
std::optional<std::string> Successor(const ShardState& s, const std::vector<std::string>& live);

// The whole map, as one node caches it.
struct ShardMap {
  std::map<std::string, ClusterCollection> collections;
  std::map<std::string, std::vector<ShardState>> shards;  // by collection, indexed by shard

  const ClusterCollection* Find(const std::string& name) const;
  const ShardState* Shard(const std::string& name, int shard) const;
};

}  // namespace hamdb::http
