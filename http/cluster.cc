#include "http/cluster.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace hamdb::http {

using nlohmann::json;

namespace {

Status CheckOptions(const ClusterOptions& o) {
  if (o.node_id.empty() || o.node_id.size() > 64 ||
      !std::all_of(o.node_id.begin(), o.node_id.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '-' || c == '_' || c == '.';
      })) {
    return Status::InvalidArgument("--node-id must be 1 to 64 letters, digits, '-', '_' or '.' (got '" +
                                   o.node_id + "')");
  }
  if (!ParseUrl(o.advertise).ok()) {
    return Status::InvalidArgument("--advertise must be the http://HOST:PORT other nodes reach this one at (got '" +
                                   o.advertise + "')");
  }
  if (o.lease_ttl_s < 2 || o.lease_ttl_s > 60) {
    return Status::InvalidArgument("the cluster lease TTL must be 2 to 60 seconds");
  }
  return Status::OK();
}

}  // namespace

ClusterMember::ClusterMember(ClusterOptions options, EtcdClient etcd)
    : options_(std::move(options)), etcd_(std::move(etcd)) {}

StatusOr<std::unique_ptr<ClusterMember>> ClusterMember::Join(const ClusterOptions& options) {
  HAMDB_RETURN_IF_ERROR(CheckOptions(options));
  HAMDB_ASSIGN_OR_RETURN(EtcdClient etcd, EtcdClient::Create(options.etcd));
  std::unique_ptr<ClusterMember> m(new ClusterMember(options, std::move(etcd)));
  HAMDB_RETURN_IF_ERROR(m->Register());
  HAMDB_RETURN_IF_ERROR(m->ReadNodes());
  m->renew_thread_ = std::thread([p = m.get()] { p->RenewLoop(); });
  return m;
}

ClusterMember::~ClusterMember() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (renew_thread_.joinable()) renew_thread_.join();
  const int64_t lease = view_.lease;
  if (lease != 0) {
    Status s = etcd_.RevokeLease(lease);
    if (!s.ok()) spdlog::warn("cluster: leaving: {} (the registration expires with its lease)", s.ToString());
  }
}

Status ClusterMember::Register() {
  HAMDB_ASSIGN_OR_RETURN(int64_t lease, etcd_.GrantLease(options_.lease_ttl_s));
  const std::string value = json{{"node_id", options_.node_id}, {"advertise", options_.advertise}}.dump();
  StatusOr<bool> put = etcd_.PutIfAbsent(kNodesPrefix + options_.node_id, value, lease);
  if (!put.ok() || !*put) {
    (void)etcd_.RevokeLease(lease);
    if (!put.ok()) return put.status();
    return Status::AlreadyExists("node id '" + options_.node_id +
                                 "' is held by a live node of the cluster at " + options_.etcd);
  }
  std::lock_guard<std::mutex> lock(mu_);
  view_.lease = lease;
  view_.etcd_reachable = true;
  view_.last_contact = std::chrono::steady_clock::now();
  return Status::OK();
}

Status ClusterMember::ReadNodes() {
  HAMDB_ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> kvs, etcd_.Range(kNodesPrefix));
  std::vector<ClusterNode> nodes;
  for (const EtcdKeyValue& kv : kvs) {
    const json j = json::parse(kv.value, nullptr, false);
    if (!j.is_object()) continue;  // not a node this version wrote
    nodes.push_back({j.value("node_id", kv.key.substr(std::string(kNodesPrefix).size())),
                     j.value("advertise", std::string())});
  }
  std::lock_guard<std::mutex> lock(mu_);
  view_.nodes = std::move(nodes);
  return Status::OK();
}

void ClusterMember::RenewLoop() {
  const auto period = std::chrono::milliseconds(options_.lease_ttl_s * 1000 / 3);
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, period, [&] { return stopping_; })) {
    const int64_t lease = view_.lease;
    lock.unlock();
    Status s = etcd_.KeepAlive(lease);
    if (s.code() == Status::Code::kNotFound) {
      spdlog::warn("cluster: the lease of node '{}' expired; registering again", options_.node_id);
      s = Register();
    }
    if (s.ok()) s = ReadNodes();
    lock.lock();
    view_.etcd_reachable = s.ok();
    if (s.ok()) {
      view_.last_contact = std::chrono::steady_clock::now();
    } else {
      spdlog::warn("cluster: {}", s.ToString());
    }
  }
}

ClusterMember::View ClusterMember::view() const {
  std::lock_guard<std::mutex> lock(mu_);
  return view_;
}

}  // namespace hamdb::http
