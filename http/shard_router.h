// ClusterRouter: the collections of a cluster, sharded and replicated over
// its nodes, with etcd as the source of truth (docs/cluster.md; the map's
// keys and rules are in http/shard_map.h).
//
// Any node answers any route of a cluster collection:
//   - Writes (insert, delete) are split by shard (ShardOf the id; missing
//     ids are drawn from a block this node leases from etcd) and forwarded
//     to each shard's primary, tagged with the shard's epoch.
//   - A primary writes a batch durably to its local copy, sends it to every
//     other member of the in-sync set, and acknowledges only when each has
//     stored it or has been removed from the in-sync set by an etcd
//     transaction, and only after etcd confirms that the epoch is still the
//     one it wrote under. So an acknowledged write is on every in-sync copy,
//     and a deposed primary acknowledges nothing.
//   - A replica refuses a write of an older epoch than it knows.
//   - Reads go to one in-sync copy of each shard (this node's own first,
//     then the others in turn) and are merged exactly: (distance, id), or
//     (distance, -score, id) under the score rule. A shard that no copy
//     answers is named in "missing_shards" with "partial": true.
// A background loop reads the map every `sync_period`, and:
//   - fails a shard over when its primary's lease has expired: the first
//     live member of the in-sync set becomes primary by a transaction that
//     bumps the epoch and leaves itself the only in-sync copy;
//   - catches this node's out-of-sync copies up: the primary, holding its
//     shard's write lock, copies every item to it and adds it to the
//     in-sync set by transaction (writes to that shard wait meanwhile);
//   - as a primary, replaces a copy whose node has been gone for
//     `replace_after` by a copy on a live node that holds none of the
//     shard (the fewest copies first), which then catches up;
//   - drops this node's copies of shards that no longer list it.
//
// Thread safety: Route may be called from many threads; the loop runs on
// its own thread between Start and destruction.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "db/code_store.h"
#include "http/cluster.h"
#include "http/etcd_client.h"
#include "http/service.h"
#include "http/shard_map.h"

namespace hamdb::http {

struct ClusterRouterOptions {
  // The key this node sends to the others for its own calls (catch-up);
  // requests it forwards carry their client's key.
  std::string admin_key;
  // How often the map and the member list are read.
  std::chrono::milliseconds sync_period{500};
  // Timeout of one call to another node.
  std::chrono::seconds peer_timeout{10};
  // Timeout of a catch-up (a whole shard copied to a node).
  std::chrono::seconds catch_up_timeout{3600};
  // How long a node may be gone before its copies are made again on other
  // nodes; 0: never.
  std::chrono::seconds replace_after{60};
  // Ids leased from etcd at a time for items that come without one.
  uint64_t id_block = 4096;
};
// The limits of the service (max_results, max_json_depth, models_dir,
// max_model_bytes) are the local service's options (Service::options()).


class ClusterRouter : public RequestRouter {
 public:
  // `member`: this node's membership; `store`: the node's store (a primary
  // reads a shard from it to catch a copy up). Both outlive the router.
  ClusterRouter(const ClusterMember* member, CodeStore* store, ClusterRouterOptions options);
  ~ClusterRouter() override;
  ClusterRouter(const ClusterRouter&) = delete;
  ClusterRouter& operator=(const ClusterRouter&) = delete;

  // The service this node runs (its own shard copies are its collections);
  // then reads the map and starts the background loop.
  Status Start(Service* local);

  std::optional<Response> Route(const Request& request, const std::string& route,
                                const std::vector<std::string>& segments,
                                const std::map<std::string, std::string>& query) override;
  // A client's request on a cluster collection (or a create) waits on other
  // nodes: kWrite. A node's call to a primary (epoch): kPeer; a primary's
  // call to a copy (replica): kReplica; a node's search of another's copies
  // (shards): kIo, since it waits on no one.
  std::optional<Lane> LaneOf(const std::string& method, const std::vector<std::string>& segments,
                             const std::map<std::string, std::string>& query) const override;

  // The cached map (for GET /cluster and tests).
  ShardMap map() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace hamdb::http
