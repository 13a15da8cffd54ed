// ClusterMember: this node's membership of a hamdb cluster coordinated by
// etcd (docs/cluster.md). Join registers the node under
// /hamdb/nodes/<node_id> with {"node_id", "advertise"}, attached to an etcd
// lease; a background thread renews the lease every ttl / 3 and reads the
// member list, so that a node that dies leaves the list within ttl seconds
// and the list stays readable (the last one read) while etcd is down. When
// a renewal finds the lease expired (etcd was away longer than ttl), the
// node registers again under a new lease. Leaving (the destructor) revokes
// the lease, which deletes the registration at once.
//
// Node ids are unique among live nodes: Join is AlreadyExists while another
// live node holds the id (its lease has not expired).
//
// Thread safety: all methods may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "http/etcd_client.h"

namespace hamdb::http {

struct ClusterOptions {
  std::string etcd;       // "http://HOST:PORT" of an etcd member
  std::string node_id;    // letters, digits, '-', '_', '.'; at most 64
  std::string advertise;  // "http://HOST:PORT" where other nodes reach this one
  int lease_ttl_s = 5;    // 2..60
};

struct ClusterNode {
  std::string node_id;
  std::string advertise;
};

class ClusterMember {
 public:
  // The key prefix of the member list.
  static constexpr const char* kNodesPrefix = "/hamdb/nodes/";

  // InvalidArgument for bad options, IOError when etcd cannot be reached,
  // AlreadyExists when a live node holds node_id.
  static StatusOr<std::unique_ptr<ClusterMember>> Join(const ClusterOptions& options);
  ~ClusterMember();  // leaves the cluster
  ClusterMember(const ClusterMember&) = delete;
  ClusterMember& operator=(const ClusterMember&) = delete;

  const ClusterOptions& options() const { return options_; }

  struct View {
    std::vector<ClusterNode> nodes;  // by node id, as last read from etcd
    bool etcd_reachable = false;     // the last renewal reached etcd
    int64_t lease = 0;               // this node's current lease
    std::chrono::steady_clock::time_point last_contact;  // of the last renewal that reached etcd
  };
  View view() const;

 private:
  ClusterMember(ClusterOptions options, EtcdClient etcd);
  Status Register();  // grants a lease and puts this node's key
  Status ReadNodes();
  void RenewLoop();

  const ClusterOptions options_;
  EtcdClient etcd_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  View view_;
  std::thread renew_thread_;
};

}  // namespace hamdb::http
