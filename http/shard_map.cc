#include "http/shard_map.h"

#include <algorithm>

#include "http/http_util.h"

namespace hamdb::http {

using nlohmann::json;

namespace {

bool Contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

StatusOr<json> ParseObject(const std::string& text, const char* what) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return Status::Corruption(std::string("etcd holds a ") + what + " that is not a JSON object");
  return j;
}

StatusOr<std::vector<std::string>> NodeList(const json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_array()) return Status::Corruption(std::string("shard state without '") + field + "'");
  std::vector<std::string> out;
  for (const json& v : *it) {
    if (!v.is_string()) return Status::Corruption(std::string("shard state '") + field + "' holds a non-string");
    out.push_back(v.get<std::string>());
  }
  return out;
}

}  // namespace

bool ShardState::InSync(const std::string& node) const { return Contains(in_sync, node); }
bool ShardState::HasReplica(const std::string& node) const { return Contains(replicas, node); }

json ToJson(const ClusterCollection& c) {
  return json{{"name", c.name},
              {"settings", c.settings},
              {"shards", c.shards},
              {"replication_factor", c.replication_factor},
              {"encoder_checksum", c.encoder_checksum}};
}

json ToJson(const ShardState& s) {
  return json{{"epoch", s.epoch}, {"primary", s.primary}, {"replicas", s.replicas}, {"in_sync", s.in_sync}};
}

StatusOr<ClusterCollection> CollectionFromJson(const std::string& text) {
  HAMDB_ASSIGN_OR_RETURN(json j, ParseObject(text, "collection"));
  ClusterCollection c;
  if (!j.value("name", json()).is_string() || !j.value("shards", json()).is_number_integer() ||
      !j.value("replication_factor", json()).is_number_integer() || !j.value("settings", json()).is_object()) {
    return Status::Corruption("etcd holds a collection without name, settings, shards or replication_factor");
  }
  c.name = j["name"].get<std::string>();
  c.settings = j["settings"];
  c.shards = j["shards"].get<int>();
  c.replication_factor = j["replication_factor"].get<int>();
  if (j.value("encoder_checksum", json()).is_string()) c.encoder_checksum = j["encoder_checksum"].get<std::string>();
  if (c.shards < 1 || c.shards > kMaxShards || c.replication_factor < 1) {
    return Status::Corruption("etcd holds collection '" + c.name + "' with a bad shard count or replication");
  }
  return c;
}

StatusOr<ShardState> ShardFromJson(const std::string& text) {
  HAMDB_ASSIGN_OR_RETURN(json j, ParseObject(text, "shard state"));
  ShardState s;
  if (!j.value("epoch", json()).is_number_integer() || !j.value("primary", json()).is_string()) {
    return Status::Corruption("shard state without epoch or primary");
  }
  s.epoch = j["epoch"].get<int64_t>();
  s.primary = j["primary"].get<std::string>();
  HAMDB_ASSIGN_OR_RETURN(s.replicas, NodeList(j, "replicas"));
  HAMDB_ASSIGN_OR_RETURN(s.in_sync, NodeList(j, "in_sync"));
  return s;
}

std::string CollectionKey(const std::string& name) { return kCollectionsPrefix + name; }
std::string ShardKey(const std::string& name, int shard) {
  return kShardsPrefix + name + "/" + std::to_string(shard);
}
std::string IdsKey(const std::string& name) { return kIdsPrefix + name; }

std::string ShardCollectionName(const std::string& name, int shard) {
  return name + ".shard" + std::to_string(shard);
}

std::optional<std::pair<std::string, int>> ParseShardCollectionName(const std::string& local) {
  const size_t dot = local.rfind(".shard");
  if (dot == std::string::npos || dot == 0) return std::nullopt;
  const std::string digits = local.substr(dot + 6);
  int64_t k = 0;
  if (digits.empty() || digits.size() > 4 || !std::all_of(digits.begin(), digits.end(), ::isdigit) ||
      !ParseInt64(digits, &k) || k >= kMaxShards || std::to_string(k) != digits) {
    return std::nullopt;
  }
  return std::make_pair(local.substr(0, dot), static_cast<int>(k));
}

int ShardOf(uint64_t id, int shards) {
  // splitmix64's finaliser: every bit of the id moves every bit of the hash.
  uint64_t z = id + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<int>(z % static_cast<uint64_t>(shards));
}

StatusOr<std::vector<ShardState>> PlaceShards(const std::vector<std::string>& nodes, int shards,
                                              int replication_factor) {
  if (shards < 1 || shards > kMaxShards) {
    return Status::InvalidArgument("shards must be in 1.." + std::to_string(kMaxShards));
  }
  if (replication_factor < 1 || static_cast<size_t>(replication_factor) > nodes.size()) {
    return Status::InvalidArgument("replication_factor " + std::to_string(replication_factor) +
                                   " needs as many live nodes; the cluster has " + std::to_string(nodes.size()));
  }
  std::vector<ShardState> out(shards);
  for (int k = 0; k < shards; ++k) {
    ShardState& s = out[k];
    for (int r = 0; r < replication_factor; ++r) s.replicas.push_back(nodes[(k + r) % nodes.size()]);
    s.primary = s.replicas.front();
    s.in_sync = s.replicas;
  }
  return out;
}

std::optional<std::string> Successor(const ShardState& s, const std::vector<std::string>& live) {
  for (const std::string& n : s.in_sync) {
    if (n != s.primary && Contains(live, n)) return n;
  }
  return std::nullopt;
}

const ClusterCollection* ShardMap::Find(const std::string& name) const {
  auto it = collections.find(name);
  return it == collections.end() ? nullptr : &it->second;
}

const ShardState* ShardMap::Shard(const std::string& name, int shard) const {
  auto it = shards.find(name);
  if (it == shards.end() || shard < 0 || static_cast<size_t>(shard) >= it->second.size()) return nullptr;
  return &it->second[shard];
}

}  // namespace hamdb::http
