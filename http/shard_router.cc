#include "http/shard_router.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <random>
#include <set>
#include <sstream>

#include "collection/settings.h"
#include "core/binary_code.h"
#include "http/call.h"
#include "http/client.h"
#include "index/parallel.h"

namespace hamdb::http {

namespace {

// What one call to a node (or to this node's own service) gave.
struct PeerReply {
  bool reached = false;  // false: the node was not reachable (error says why)
  int status = 0;
  json body = json::object();  // the parsed body; empty when it was not a JSON object
  std::string raw;
  std::string content_type;
  std::string error;

  bool ok() const { return reached && status >= 200 && status < 300; }
  // A failure the node itself decided (a client error), as opposed to
  // being unreachable or failing.
  bool client_error() const { return reached && status >= 400 && status < 500; }
};

// What this node's own service answered, as a peer's answer reads.
PeerReply FromResponse(Response resp) {
  PeerReply out;
  out.reached = true;
  out.status = resp.status;
  out.content_type = resp.content_type;
  out.raw = std::move(resp.body);
  out.body = json::parse(out.raw, nullptr, false);
  if (!out.body.is_object()) out.body = json::object();  // peers answer objects; anything else reads as empty
  return out;
}

// A request to this node's own service, as the router builds them.
Request LocalRequest(const std::string& method, const std::string& target, const std::string& body,
                     const std::string& key, const std::string& content_type) {
  Request r;
  r.method = method;
  r.target = target;
  r.content_type = body.empty() ? "" : content_type;
  r.api_key = key;
  r.body = body;
  return r;
}

Response Relay(const PeerReply& r) {
  Response out;
  out.status = r.status;
  out.body = r.raw;
  if (!r.content_type.empty()) out.content_type = r.content_type;
  return out;
}

// The key a request presented, to send on with the calls it causes.
std::string ClientKey(const Request& r) { return std::string(PresentedKey(r)); }

std::string ErrorMessage(const PeerReply& r) {
  if (!r.reached) return r.error;
  if (r.body.value("error", json()).is_object()) {
    return r.body["error"].value("message", std::string()) + " (HTTP " + std::to_string(r.status) + ")";
  }
  return "HTTP " + std::to_string(r.status);
}

bool WriteRoute(const std::string& route, const std::string& method) {
  return (method == "POST" && (route == "/collections/{name}/items" || route == "/collections/{name}/items/delete")) ||
         (method == "DELETE" && (route == "/collections/{name}/items/{id}" || route == "/collections/{name}"));
}

// Result order: (distance, id), or (distance, -score with unscored last, id).
bool ResultBefore(const json& a, const json& b, bool by_score) {
  const int64_t da = a.value("distance", int64_t{0}), db = b.value("distance", int64_t{0});
  if (da != db) return da < db;
  if (by_score) {
    const bool sa = a.contains("score"), sb = b.contains("score");
    if (sa != sb) return sa;
    if (sa) {
      const double xa = a["score"].get<double>(), xb = b["score"].get<double>();
      if (xa != xb) return xa > xb;
    }
  }
  return a.value("id", uint64_t{0}) < b.value("id", uint64_t{0});
}

}  // namespace

class ClusterRouter::Impl {
 public:
  Impl(const ClusterMember* member, CodeStore* store, ClusterRouterOptions options)
      : member_(member), store_(store), opt_(std::move(options)), self_(member->options().node_id) {}

  Status Start(Service* local);
  void Stop();
  std::optional<Response> Route(const Request& req, const std::string& route,
                                const std::vector<std::string>& segments,
                                const std::map<std::string, std::string>& query);
  ShardMap map() const {
    std::lock_guard<std::mutex> lock(mu_);
    return map_;
  }
  bool IsClusterCollection(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mu_);
    return map_.Find(name) != nullptr;
  }

 private:
  // ---- the map
  Status Refresh();
  Status RefreshLocked();
  std::vector<std::string> LiveNodes() const;
  bool Live(const std::string& node) const;
  std::optional<ShardState> CachedShard(const std::string& name, int k) const;
  // Caches a shard's state unless the cache holds a newer one.
  void CacheShard(const std::string& name, int k, const ShardState& s);
  // The shard's state as etcd has it now (and cached).
  StatusOr<ShardState> ReadShard(const std::string& name, int k);
  void Loop();
  void Tick();  // one pass of the loop: read the map, fail over, catch up
  void Failover(const std::string& name, int k, const ShardState& s);
  // As a primary, moves the copies of nodes gone for replace_after to live
  // nodes (they catch up by the usual path).
  void ReplaceLostCopies(const ShardMap& m, const std::vector<std::string>& live);
  // Drops this node's copies of shards that now list only other nodes.
  void DropUnlistedCopies(const ShardMap& m);
  void RequestCatchUp(const std::string& name, int k, const ShardState& s);

  // ---- calls
  PeerReply Call(const std::string& node, const std::string& method, const std::string& target,
                 const std::string& body, const std::string& key, std::chrono::seconds timeout,
                 const std::string& content_type = "application/json") const;
  PeerReply CallLocal(const std::string& method, const std::string& target, const std::string& body,
                      const std::string& key, const std::string& content_type = "application/json") const;
  // The in-sync copies of a shard in the order reads try them: this node's
  // own, then the primary, then the others.
  std::vector<std::string> ReadOrder(const ShardState& s) const;
  // A read of one shard from its first in-sync copy in ReadOrder that
  // answers.
  PeerReply ReadShardCopy(const std::string& name, int k, const std::string& method, const std::string& suffix,
                          const std::string& body, const std::string& key) const;
  // A write of one shard through its primary, retried over a failover.
  PeerReply WriteShard(const std::string& name, int k, const std::string& method, const std::string& suffix,
                       const std::string& body, const std::string& key);

  // ---- coordinator routes (a cluster collection by its name)
  Response Create(const Request& req);
  Response Drop(const std::string& name, const Request& req);
  json Describe(const ClusterCollection& c, const std::string& key);
  Response List(const Request& req);
  Response Insert(const ClusterCollection& c, const Request& req, const std::map<std::string, std::string>& query);
  // The "ids" array of a request body (400 unless unsigned integers), split
  // by shard; *where (optional) gets each input id's (shard, position in
  // its shard's part).
  std::vector<json> IdsByShard(const ClusterCollection& c, const Request& req,
                               std::vector<std::pair<int, size_t>>* where = nullptr);
  Response DeleteMany(const ClusterCollection& c, const Request& req);
  Response DeleteOne(const ClusterCollection& c, const std::string& id_text, const Request& req);
  Response ReadOne(const ClusterCollection& c, const std::string& id_text, const std::string& suffix,
                   const Request& req);
  Response Sample(const ClusterCollection& c, const Request& req);
  Response Exists(const ClusterCollection& c, const Request& req);
  Response Search(const ClusterCollection& c, const Request& req, const std::map<std::string, std::string>& query,
                  bool batch);
  // The merged answer of this node's own copies of `shards`; the shards
  // whose copy did not answer are listed in "missing_shards".
  PeerReply SearchOwnCopies(const ClusterCollection& c, const std::vector<int>& shards, const std::string& text,
                            bool batch, const std::string& key) const;
  std::vector<uint64_t> AssignIds(const std::string& name, size_t n);

  // ---- shard routes (one copy of a shard, called by another node)
  Response ShardWrite(const std::string& name, int k, int64_t epoch, bool replica, const Request& req,
                      const std::string& local_target, const std::map<std::string, std::string>& query = {});
  Response CatchUp(const std::string& name, int k, int64_t epoch, const std::string& node);
  Status CopyShardTo(const std::string& name, int k, int64_t epoch, const std::string& node);
  // Changes the shard's etcd state by compare-and-swap while this node is
  // its primary at `epoch`; `edit` changes the state. FailedPrecondition
  // when this node no longer is.
  Status EditShard(const std::string& name, int k, int64_t epoch, const std::function<void(ShardState*)>& edit);
  std::mutex& ShardLock(const std::string& name, int k);
  // The order of this primary's messages to its copies: increasing, also
  // across restarts (wall-clock nanoseconds, or one more than the last).
  uint64_t NextSeq();
  // Items as a copy gets them: whole from this node's store, codes
  // included, so that every copy holds the same bytes.
  StatusOr<json> StoredItems(const std::string& copy, int bits, const uint64_t* ids, size_t n) const;

  const ClusterMember* member_;
  CodeStore* store_;
  const ClusterRouterOptions opt_;
  const std::string self_;
  std::optional<EtcdClient> etcd_;
  Service* local_ = nullptr;
  mutable HttpPool pool_;  // kept connections to the other nodes
  // Runs the calls of one fan-out side by side (the caller takes part):
  // no thread is created per request.
  mutable ThreadPool fanout_{4};
  // fn(i) for i in [0, n) on the fan-out pool; the results in order.
  std::vector<PeerReply> FanOut(size_t n, const std::function<PeerReply(size_t)>& fn) const {
    std::vector<PeerReply> out(n);
    Status s = fanout_.ParallelFor(n, static_cast<int>(n), [&](size_t i) { out[i] = fn(i); });
    if (!s.ok()) Fail(500, "internal", s.message());
    return out;
  }

  std::mutex refresh_mu_;  // held across a whole Refresh
  mutable std::mutex mu_;
  ShardMap map_;
  std::map<std::string, std::string> nodes_;  // live node id -> advertise URL
  std::string last_refresh_error_;

  std::mutex ids_mu_;
  std::map<std::string, std::pair<uint64_t, uint64_t>> id_blocks_;  // [next, end) per collection

  std::mutex locks_mu_;
  std::map<std::string, std::unique_ptr<std::mutex>> shard_locks_;
  std::atomic<uint64_t> last_seq_{0};
  // Per copy this node holds: the seq of the catch-up that last reset it;
  // a replica write sent before it is refused.
  std::mutex reset_mu_;
  std::map<std::string, uint64_t> reset_seq_;

  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool stopping_ = false;
  std::thread loop_;
  std::future<void> catch_up_;  // the copy being caught up, run beside the loop
  // Nodes named in the map but not live, since when (the loop's own).
  std::map<std::string, std::chrono::steady_clock::time_point> absent_since_;
};

// ---------------------------------------------------------------------------
// The map

Status ClusterRouter::Impl::Start(Service* local) {
  local_ = local;
  HAMDB_ASSIGN_OR_RETURN(EtcdClient etcd, EtcdClient::Create(member_->options().etcd));
  etcd_.emplace(std::move(etcd));
  HAMDB_RETURN_IF_ERROR(Refresh());
  loop_ = std::thread([this] { Loop(); });
  return Status::OK();
}

void ClusterRouter::Impl::Stop() {
  {
    std::lock_guard<std::mutex> lock(loop_mu_);
    stopping_ = true;
  }
  loop_cv_.notify_all();
  if (loop_.joinable()) loop_.join();
  if (catch_up_.valid()) catch_up_.wait();
}

Status ClusterRouter::Impl::Refresh() {
  // One at a time, so that a slower, older read never replaces a newer one.
  std::lock_guard<std::mutex> one(refresh_mu_);
  try {
    return RefreshLocked();
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("etcd holds a value this node cannot read: ") + e.what());
  }
}

Status ClusterRouter::Impl::RefreshLocked() {
  HAMDB_ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> cols, etcd_->Range(kCollectionsPrefix));
  HAMDB_ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> shards, etcd_->Range(kShardsPrefix));
  HAMDB_ASSIGN_OR_RETURN(std::vector<EtcdKeyValue> nodes, etcd_->Range(ClusterMember::kNodesPrefix));
  ShardMap m;
  for (const EtcdKeyValue& kv : cols) {
    StatusOr<ClusterCollection> c = CollectionFromJson(kv.value);
    if (!c.ok()) {
      spdlog::warn("cluster: {}: {}", kv.key, c.status().ToString());
      continue;
    }
    m.shards[c->name].resize(c->shards);
    m.collections[c->name] = std::move(c).value();
  }
  for (const EtcdKeyValue& kv : shards) {
    const std::string rest = kv.key.substr(std::string(kShardsPrefix).size());
    const size_t slash = rest.rfind('/');
    int64_t k = -1;
    if (slash == std::string::npos || !ParseInt64(rest.substr(slash + 1), &k)) continue;
    auto it = m.shards.find(rest.substr(0, slash));
    if (it == m.shards.end() || k < 0 || static_cast<size_t>(k) >= it->second.size()) continue;
    StatusOr<ShardState> s = ShardFromJson(kv.value);
    if (!s.ok()) continue;
    s->mod_revision = kv.mod_revision;
    it->second[k] = std::move(s).value();
  }
  std::map<std::string, std::string> live;
  for (const EtcdKeyValue& kv : nodes) {
    const json j = json::parse(kv.value, nullptr, false);
    if (j.is_object() && j.value("node_id", json()).is_string() && j.value("advertise", json()).is_string()) {
      live[j["node_id"].get<std::string>()] = j["advertise"].get<std::string>();
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  // A shard state this node wrote or read after the range was taken is
  // newer: keep it.
  for (auto& [name, states] : m.shards) {
    auto old = map_.shards.find(name);
    if (old == map_.shards.end() || old->second.size() != states.size()) continue;
    for (size_t k = 0; k < states.size(); ++k) {
      if (old->second[k].mod_revision > states[k].mod_revision) states[k] = old->second[k];
    }
  }
  map_ = std::move(m);
  nodes_ = std::move(live);
  return Status::OK();
}

void ClusterRouter::Impl::CacheShard(const std::string& name, int k, const ShardState& s) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.shards.find(name);
  if (it == map_.shards.end() || static_cast<size_t>(k) >= it->second.size()) return;
  if (it->second[k].mod_revision <= s.mod_revision) it->second[k] = s;
}

std::vector<std::string> ClusterRouter::Impl::LiveNodes() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [id, url] : nodes_) out.push_back(id);
  return out;
}

bool ClusterRouter::Impl::Live(const std::string& node) const {
  std::lock_guard<std::mutex> lock(mu_);
  return nodes_.count(node) != 0;
}

std::optional<ShardState> ClusterRouter::Impl::CachedShard(const std::string& name, int k) const {
  std::lock_guard<std::mutex> lock(mu_);
  const ShardState* s = map_.Shard(name, k);
  if (s == nullptr) return std::nullopt;
  return *s;
}

StatusOr<ShardState> ClusterRouter::Impl::ReadShard(const std::string& name, int k) {
  HAMDB_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> kv, etcd_->Get(ShardKey(name, k)));
  if (!kv) return Status::NotFound("shard " + std::to_string(k) + " of '" + name + "' is not in etcd");
  HAMDB_ASSIGN_OR_RETURN(ShardState s, ShardFromJson(kv->value));
  s.mod_revision = kv->mod_revision;
  CacheShard(name, k, s);
  return s;
}

void ClusterRouter::Impl::Loop() {
  std::unique_lock<std::mutex> lock(loop_mu_);
  while (!loop_cv_.wait_for(lock, opt_.sync_period, [this] { return stopping_; })) {
    lock.unlock();
    try {
      Tick();
    } catch (const std::exception& e) {
      spdlog::error("cluster: the shard map loop: {}", e.what());
    }
    lock.lock();
  }
}

void ClusterRouter::Impl::Tick() {
  Status s = Refresh();
  if (!s.ok()) {
    if (s.message() != last_refresh_error_) spdlog::warn("cluster: reading the shard map: {}", s.ToString());
    last_refresh_error_ = s.message();
    return;
  }
  last_refresh_error_.clear();
  const std::vector<std::string> live = LiveNodes();
  const ShardMap m = map();
  ReplaceLostCopies(m, live);
  DropUnlistedCopies(m);
  for (const auto& [name, states] : m.shards) {
    for (size_t k = 0; k < states.size(); ++k) {
      const ShardState& st = states[k];
      if (st.primary.empty()) continue;
      const bool primary_live = std::find(live.begin(), live.end(), st.primary) != live.end();
      const bool catching_up =
          catch_up_.valid() && catch_up_.wait_for(std::chrono::seconds(0)) != std::future_status::ready;
      if (!primary_live && Successor(st, live) == self_) {
        Failover(name, static_cast<int>(k), st);
      } else if (primary_live && st.primary != self_ && st.HasReplica(self_) && !st.InSync(self_) &&
                 !catching_up) {
        // One copy at a time, beside the loop, so that a long copy delays
        // no failover.
        catch_up_ = std::async(std::launch::async, [this, name = name, k, st] {
          try {
            RequestCatchUp(name, static_cast<int>(k), st);
          } catch (const std::exception& e) {
            spdlog::error("cluster: catching up shard {} of '{}': {}", k, name, e.what());
          }
        });
      }
    }
  }
}

void ClusterRouter::Impl::ReplaceLostCopies(const ShardMap& m, const std::vector<std::string>& live) {
  const auto now = std::chrono::steady_clock::now();
  auto is_live = [&](const std::string& n) { return std::find(live.begin(), live.end(), n) != live.end(); };
  std::map<std::string, int> copies;  // per live node, for choosing where a new copy goes
  for (const std::string& n : live) copies[n] = 0;
  std::set<std::string> gone;
  for (const auto& [name, states] : m.shards) {
    for (const ShardState& st : states) {
      for (const std::string& n : st.replicas) {
        if (is_live(n)) {
          ++copies[n];
        } else {
          gone.insert(n);
        }
      }
    }
  }
  for (auto it = absent_since_.begin(); it != absent_since_.end();) {
    it = gone.count(it->first) ? std::next(it) : absent_since_.erase(it);
  }
  for (const std::string& n : gone) absent_since_.emplace(n, now);
  if (opt_.replace_after.count() <= 0) return;
  for (const auto& [name, states] : m.shards) {
    for (size_t k = 0; k < states.size(); ++k) {
      const ShardState& st = states[k];
      if (st.primary != self_) continue;
      for (const std::string& lost : st.replicas) {
        auto since = absent_since_.find(lost);
        if (since == absent_since_.end() || now - since->second < opt_.replace_after) continue;
        std::string target;
        for (const auto& [n, count] : copies) {
          if (!st.HasReplica(n) && (target.empty() || count < copies[target])) target = n;
        }
        if (target.empty()) continue;  // every live node holds a copy already
        Status s = EditShard(name, static_cast<int>(k), st.epoch, [&](ShardState* next) {
          std::replace(next->replicas.begin(), next->replicas.end(), lost, target);
          next->in_sync.erase(std::remove(next->in_sync.begin(), next->in_sync.end(), lost), next->in_sync.end());
        });
        if (s.ok()) {
          ++copies[target];
          spdlog::warn("cluster: node '{}' has been gone for {} s: its copy of shard {} of '{}' goes to node '{}'",
                       lost, std::chrono::duration_cast<std::chrono::seconds>(now - since->second).count(), k,
                       name, target);
        } else {
          spdlog::warn("cluster: replacing node '{}' in shard {} of '{}': {}", lost, k, name, s.ToString());
        }
        break;  // one change per shard and pass: the next pass sees the new state
      }
    }
  }
}

void ClusterRouter::Impl::DropUnlistedCopies(const ShardMap& m) {
  StatusOr<std::vector<CollectionInfo>> local = store_->ListCollections();
  if (!local.ok()) return;
  for (const CollectionInfo& info : *local) {
    const auto shard = ParseShardCollectionName(info.name);
    if (!shard) continue;
    const ShardState* st = m.Shard(shard->first, shard->second);
    // Only a shard that lists other copies, none of them this node: its
    // data lives on them. A collection gone from the map is left alone
    // (a drop deletes its copies; one left behind is dropped by hand).
    if (st == nullptr || st->HasReplica(self_) || st->in_sync.empty()) continue;
    std::lock_guard<std::mutex> order(ShardLock(shard->first, shard->second));
    PeerReply r = CallLocal("DELETE", "/collections/" + info.name, "", opt_.admin_key);
    if (r.ok()) {
      spdlog::info("cluster: dropped this node's copy '{}': shard {} of '{}' is held by other nodes now", info.name,
                   shard->second, shard->first);
    }
  }
}

void ClusterRouter::Impl::Failover(const std::string& name, int k, const ShardState& s) {
  ShardState next = s;
  next.primary = self_;
  next.epoch = s.epoch + 1;
  // Only this copy is known to hold every acknowledged write and nothing
  // else; the others catch up from it.
  next.in_sync = {self_};
  int64_t revision = 0;
  StatusOr<bool> done =
      etcd_->Txn({{ShardKey(name, k), s.mod_revision}}, {{ShardKey(name, k), ToJson(next).dump()}}, {}, &revision);
  if (!done.ok()) {
    spdlog::warn("cluster: failing over shard {} of '{}': {}", k, name, done.status().ToString());
  } else if (*done) {
    spdlog::warn("cluster: node '{}' is the primary of shard {} of '{}' at epoch {} (node '{}' left)", self_, k,
                 name, next.epoch, s.primary);
    next.mod_revision = revision;
    CacheShard(name, k, next);
  }
}

void ClusterRouter::Impl::RequestCatchUp(const std::string& name, int k, const ShardState& s) {
  const std::string target = "/collections/" + ShardCollectionName(name, k) + "/sync?epoch=" +
                             std::to_string(s.epoch) + "&node=" + UrlEncode(self_);
  spdlog::info("cluster: catching up shard {} of '{}' from node '{}'", k, name, s.primary);
  PeerReply r = Call(s.primary, "POST", target, "{}", opt_.admin_key, opt_.catch_up_timeout);
  if (!r.ok()) {
    spdlog::warn("cluster: catching up shard {} of '{}' from node '{}': {}", k, name, s.primary, ErrorMessage(r));
    return;
  }
  spdlog::info("cluster: shard {} of '{}' is in sync on node '{}' ({} items)", k, name, self_,
               r.body.value("items", uint64_t{0}));
  (void)ReadShard(name, k);
}

// ---------------------------------------------------------------------------
// Calls

PeerReply ClusterRouter::Impl::CallLocal(const std::string& method, const std::string& target,
                                         const std::string& body, const std::string& key,
                                         const std::string& content_type) const {
  Request r = LocalRequest(method, target, body, key, content_type);
  r.from_router = true;
  return FromResponse(local_->Handle(r));
}

PeerReply ClusterRouter::Impl::Call(const std::string& node, const std::string& method, const std::string& target,
                                    const std::string& body, const std::string& key, std::chrono::seconds timeout,
                                    const std::string& content_type) const {
  PeerReply out;
  std::string url;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = nodes_.find(node);
    if (it != nodes_.end()) url = it->second;
  }
  if (url.empty()) {
    out.error = "node '" + node + "' is not live";
    return out;
  }
  StatusOr<Url> u = ParseUrl(url);
  if (!u.ok()) {
    out.error = "node '" + node + "' advertises a bad URL: " + u.status().message();
    return out;
  }
  StatusOr<HttpReply> r = pool_.Call(*u, method, target, body.empty() ? "" : content_type, body, key, timeout);
  if (!r.ok()) {
    out.error = "node '" + node + "': " + r.status().message();
    return out;
  }
  out.reached = true;
  out.status = r->status;
  out.content_type = r->content_type;
  out.raw = std::move(r->body);
  out.body = json::parse(out.raw, nullptr, false);
  if (!out.body.is_object()) out.body = json::object();  // peers answer objects; anything else reads as empty
  return out;
}

std::vector<std::string> ClusterRouter::Impl::ReadOrder(const ShardState& s) const {
  std::vector<std::string> order;
  if (s.InSync(self_)) order.push_back(self_);
  if (s.primary != self_ && s.InSync(s.primary)) order.push_back(s.primary);
  for (const std::string& n : s.in_sync) {
    if (std::find(order.begin(), order.end(), n) == order.end()) order.push_back(n);
  }
  return order;
}

PeerReply ClusterRouter::Impl::ReadShardCopy(const std::string& name, int k, const std::string& method,
                                             const std::string& suffix, const std::string& body,
                                             const std::string& key) const {
  PeerReply last;
  last.error = "shard " + std::to_string(k) + " of '" + name + "' is not in the map";
  const std::optional<ShardState> s = CachedShard(name, k);
  if (!s) return last;
  const std::vector<std::string> order = ReadOrder(*s);
  const std::string target = "/collections/" + ShardCollectionName(name, k) + suffix;
  std::vector<std::string> errors;
  for (const std::string& n : order) {
    PeerReply r = n == self_ ? CallLocal(method, target, body, key) : Call(n, method, target, body, key, opt_.peer_timeout);
    // A copy that is missing on its node (a 404 about the collection, not
    // an item) is as good as unreachable: the next copy answers.
    const bool copy_missing = r.reached && r.status == 404 && ErrorMessage(r).rfind("no collection", 0) == 0;
    if (r.reached && r.status < 500 && !copy_missing) return r;
    errors.push_back(ErrorMessage(r));
  }
  last.error = "no in-sync copy of shard " + std::to_string(k) + " answered";
  for (const std::string& e : errors) last.error += "; " + e;
  return last;
}

PeerReply ClusterRouter::Impl::WriteShard(const std::string& name, int k, const std::string& method,
                                          const std::string& suffix, const std::string& body,
                                          const std::string& key) {
  PeerReply r;
  // A primary that just died is replaced within the lease TTL; a stale
  // epoch means the map moved on. Both are retried on a fresh map.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(member_->options().lease_ttl_s * 2);
  for (int attempt = 0;; ++attempt) {
    std::optional<ShardState> s = CachedShard(name, k);
    if (!s) {
      r = PeerReply();
      r.error = "shard " + std::to_string(k) + " of '" + name + "' is not in the map";
      return r;
    }
    const std::string sep = suffix.find('?') == std::string::npos ? "?" : "&";
    const std::string target = "/collections/" + ShardCollectionName(name, k) + suffix + sep +
                               "epoch=" + std::to_string(s->epoch);
    if (s->primary == self_) {
      const Request local = LocalRequest(method, target, body, key, "application/json");
      Response resp;
      try {
        resp = ShardWrite(name, k, s->epoch, false, local, "/collections/" + ShardCollectionName(name, k) + suffix);
      } catch (const ApiError& e) {
        resp = Service::Error(e.status, e.code, e.message);
      }
      r = FromResponse(std::move(resp));
    } else {
      r = Call(s->primary, method, target, body, key, opt_.peer_timeout);
    }
    const bool stale = r.reached && r.status == 409 && r.body.is_object() &&
                       r.body.value("error", json::object()).value("code", std::string()) == "stale_epoch";
    const bool retry = stale || !r.reached || (r.reached && r.status == 503);
    if (!retry || std::chrono::steady_clock::now() > give_up) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(stale ? 50 : 250));
    (void)Refresh();
  }
}

// ---------------------------------------------------------------------------
// Routing

std::optional<Response> ClusterRouter::Impl::Route(const Request& req, const std::string& route,
                                                   const std::vector<std::string>& segments,
                                                   const std::map<std::string, std::string>& query) {
  if (segments.empty() || segments[0] != "collections") return std::nullopt;
  const bool internal = query.count("epoch") != 0;
  if (segments.size() == 1) {
    if (internal) return std::nullopt;  // a copy created or listed by another node
    if (req.method == "POST") return Create(req);
    return List(req);
  }
  const std::string& name = segments[1];
  auto find = [&]() -> std::optional<ClusterCollection> {
    std::lock_guard<std::mutex> lock(mu_);
    if (const ClusterCollection* found = map_.Find(name)) return *found;
    return std::nullopt;
  };
  std::optional<ClusterCollection> c = find();
  if (!c && !ParseShardCollectionName(name) && !store_->GetCollection(name).ok()) {
    // Perhaps created on another node since the last read of the map: one
    // key read tells, and only then is the whole map read again.
    StatusOr<std::optional<EtcdKeyValue>> key = etcd_->Get(CollectionKey(name));
    if (key.ok() && key->has_value() && Refresh().ok()) c = find();
  }
  if (c) {
    const std::string method = req.method == "HEAD" ? "GET" : req.method;
    if (route == "/collections/{name}") {
      if (method == "DELETE") return Drop(name, req);
      return JsonResponse(200, Describe(*c, ClientKey(req)));
    }
    if (route == "/collections/{name}/items") return Insert(*c, req, query);
    if (route == "/collections/{name}/items/delete") return DeleteMany(*c, req);
    if (route == "/collections/{name}/items/exists") return Exists(*c, req);
    if (route == "/collections/{name}/items/{id}") {
      if (method == "DELETE") return DeleteOne(*c, segments[3], req);
      return ReadOne(*c, segments[3], "", req);
    }
    if (route == "/collections/{name}/items/{id}/thumbnail") return ReadOne(*c, segments[3], "/thumbnail", req);
    if (route == "/collections/{name}/sample") return Sample(*c, req);
    if (route == "/collections/{name}/search") return Search(*c, req, query, false);
    if (route == "/collections/{name}/search/batch") return Search(*c, req, query, true);
    if (route == "/collections/{name}/encoder") {
      PeerReply r = ReadShardCopy(name, 0, "GET", "/encoder", "", ClientKey(req));
      if (!r.reached) Fail(503, "unavailable", r.error);
      return Relay(r);
    }
    if (route == "/collections/{name}/sync") {
      Fail(404, "not_found", "'/sync' is a route between the nodes of a cluster, for a shard's copies");
    }
    Fail(422, "invalid_argument", "'" + route + "' is not available for a cluster collection");
  }
  const auto shard = ParseShardCollectionName(name);
  if (!shard) {
    if (route == "/collections/{name}/sync") Fail(404, "not_found", "no cluster collection shard '" + name + "'");
    return std::nullopt;  // a node-local collection
  }
  const auto& [base, k] = *shard;
  const std::string method = req.method;
  if (!internal) {
    if (WriteRoute(route, method) || route == "/collections/{name}/sync") {
      Fail(409, "shard_copy",
           "'" + name + "' is this node's copy of shard " + std::to_string(k) + " of cluster collection '" + base +
               "'; write to /collections/" + base);
    }
    return std::nullopt;  // reading a copy directly
  }
  int64_t epoch = 0;
  if (!ParseInt64(query.at("epoch"), &epoch)) Fail(400, "bad_request", "'epoch' must be an integer");
  // The local target: the same route without the cluster's parameters.
  std::string local_target = "/collections/" + name;
  for (size_t i = 2; i < segments.size(); ++i) local_target += "/" + UrlEncode(segments[i]);
  if (route == "/collections/{name}/sync") {
    auto node = query.find("node");
    if (node == query.end()) Fail(400, "bad_request", "'node' is required");
    return CatchUp(base, k, epoch, node->second);
  }
  if (route == "/collections/{name}" && method == "DELETE") {
    // A drop by the cluster, or the reset of a catch-up (with its seq).
    std::lock_guard<std::mutex> order(ShardLock(base, k));
    if (auto q = query.find("seq"); q != query.end()) {
      uint64_t seq = 0;
      if (!ParseUint64(q->second, &seq)) Fail(400, "bad_request", "'seq' must be an unsigned integer");
      std::lock_guard<std::mutex> lock(reset_mu_);
      reset_seq_[name] = std::max(reset_seq_[name], seq);
    }
    Request local = req;
    local.target = local_target;
    local.from_router = true;
    return local_->Handle(local);
  }
  if (WriteRoute(route, method)) {
    return ShardWrite(base, k, epoch, query.count("replica") != 0, req, local_target, query);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Shard routes

std::mutex& ClusterRouter::Impl::ShardLock(const std::string& name, int k) {
  std::lock_guard<std::mutex> lock(locks_mu_);
  std::unique_ptr<std::mutex>& m = shard_locks_[ShardCollectionName(name, k)];
  if (!m) m = std::make_unique<std::mutex>();
  return *m;
}

uint64_t ClusterRouter::Impl::NextSeq() {
  const uint64_t now = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  uint64_t last = last_seq_.load();
  uint64_t next;
  do {
    next = std::max(now, last + 1);
  } while (!last_seq_.compare_exchange_weak(last, next));
  return next;
}

StatusOr<json> ClusterRouter::Impl::StoredItems(const std::string& copy, int bits, const uint64_t* ids,
                                                size_t n) const {
  json items = json::array();
  for (size_t i = 0; i < n; ++i) {
    HAMDB_ASSIGN_OR_RETURN(Item item, store_->Get(copy, ids[i]));
    json j{{"id", item.id}, {"code", FormatHex(item.code.data(), bits)}};
    if (item.label) j["label"] = *item.label;
    if (item.score) j["score"] = *item.score;
    if (item.class_code) j["class_code"] = FormatHex(item.class_code->data(), bits);
    if (!item.metadata_json.empty()) j["metadata"] = json::parse(item.metadata_json, nullptr, false);
    StatusOr<std::string> thumb = store_->GetThumbnail(copy, item.id);
    if (thumb.ok() && !thumb->empty()) {
      j["thumbnail"] = Base64Encode(reinterpret_cast<const uint8_t*>(thumb->data()), thumb->size());
    }
    items.push_back(std::move(j));
  }
  return items;
}

Status ClusterRouter::Impl::EditShard(const std::string& name, int k, int64_t epoch,
                                      const std::function<void(ShardState*)>& edit) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    HAMDB_ASSIGN_OR_RETURN(ShardState s, ReadShard(name, k));
    if (s.epoch != epoch || s.primary != self_) {
      return Status::FailedPrecondition("node '" + self_ + "' is no longer the primary of shard " + std::to_string(k) +
                                        " of '" + name + "' (epoch " + std::to_string(s.epoch) + ", primary '" +
                                        s.primary + "')");
    }
    ShardState next = s;
    edit(&next);
    int64_t revision = 0;
    HAMDB_ASSIGN_OR_RETURN(bool done, etcd_->Txn({{ShardKey(name, k), s.mod_revision}},
                                                 {{ShardKey(name, k), ToJson(next).dump()}}, {}, &revision));
    if (done) {
      next.mod_revision = revision;
      CacheShard(name, k, next);
      return Status::OK();
    }
  }
  return Status::IOError("shard " + std::to_string(k) + " of '" + name + "' kept changing in etcd");
}

Response ClusterRouter::Impl::ShardWrite(const std::string& name, int k, int64_t epoch, bool replica,
                                         const Request& req, const std::string& local_target,
                                         const std::map<std::string, std::string>& query) {
  std::optional<ShardState> s = CachedShard(name, k);
  auto stale = [&](const ShardState& st) {
    return replica ? (st.epoch != epoch || !st.HasReplica(self_)) : (st.epoch != epoch || st.primary != self_);
  };
  if (!s || stale(*s)) {
    StatusOr<ShardState> fresh = ReadShard(name, k);
    if (!fresh.ok()) Fail(503, "etcd_unavailable", "cannot read the shard map: " + fresh.status().message());
    s = *fresh;
  }
  if (stale(*s)) {
    Fail(409, "stale_epoch",
         "node '" + self_ + "' does not take this write of shard " + std::to_string(k) + " of '" + name +
             "' at epoch " + std::to_string(epoch) + ": the shard is at epoch " + std::to_string(s->epoch) +
             " with primary '" + s->primary + "'");
  }
  Request local = req;
  local.target = local_target;
  local.from_router = true;
  std::lock_guard<std::mutex> order(ShardLock(name, k));
  if (replica) {
    // A write the primary sent before this copy's last reset (and gave up
    // on) must not land on the fresh copy.
    uint64_t seq = 0;
    if (auto q = query.find("seq"); q != query.end() && !ParseUint64(q->second, &seq)) {
      Fail(400, "bad_request", "'seq' must be an unsigned integer");
    }
    {
      std::lock_guard<std::mutex> lock(reset_mu_);
      const uint64_t reset = reset_seq_[ShardCollectionName(name, k)];
      if (seq < reset) {
        Fail(409, "stale_epoch", "a write sent before this copy was last caught up (seq " + std::to_string(seq) +
                                     " < " + std::to_string(reset) + ")");
      }
    }
    return local_->Handle(local);
  }

  // A catch-up may have grown the in-sync set while this write waited.
  s = CachedShard(name, k);
  if (!s || stale(*s)) {
    Fail(409, "stale_epoch", "node '" + self_ + "' is no longer the primary of shard " + std::to_string(k) +
                                 " of '" + name + "' at epoch " + std::to_string(epoch));
  }
  Response resp = local_->Handle(local);
  if (resp.status < 200 || resp.status >= 300) return resp;
  // Replicate to every other in-sync copy, in parallel. A batch with
  // images goes to the copies as the items this copy stored (codes, not
  // images), so that every copy holds the same bytes.
  const std::string sep = req.target.find('?') == std::string::npos ? "?" : "&";
  const std::string target = req.target + sep + "replica=1&seq=" + std::to_string(NextSeq());
  const std::string key = ClientKey(req);
  std::string body = req.body;
  if (req.method == "POST" && local_target.size() > 6 &&
      local_target.compare(local_target.size() - 6, 6, "/items") == 0 &&
      (MediaType(req.content_type) != "application/json" || req.body.find("\"image\"") != std::string::npos)) {
    const json answer = json::parse(resp.body, nullptr, false);
    const std::string copy = ShardCollectionName(name, k);
    StatusOr<CollectionInfo> info = store_->GetCollection(copy);
    if (!answer.is_object() || !answer.value("ids", json()).is_array() || !info.ok()) {
      Fail(500, "internal", "cannot read back the items just stored in '" + copy + "'");
    }
    std::vector<uint64_t> ids = answer["ids"].get<std::vector<uint64_t>>();
    StatusOr<json> items = StoredItems(copy, info->bits, ids.data(), ids.size());
    if (!items.ok()) Fail(500, "internal", "reading back the items just stored: " + items.status().message());
    body = json{{"items", std::move(items).value()}}.dump();
  }
  std::vector<std::string> others;
  for (const std::string& n : s->in_sync) {
    if (n != self_) others.push_back(n);
  }
  std::vector<PeerReply> sent = FanOut(others.size(), [&](size_t i) {
    return Call(others[i], req.method, target, body, key, opt_.peer_timeout);
  });
  std::vector<std::string> failed;
  for (size_t i = 0; i < sent.size(); ++i) {
    const PeerReply& r = sent[i];
    // A delete of an item the copy lacks is the same outcome.
    const bool same = r.ok() || (r.reached && r.status == 404 && req.method == "DELETE");
    if (!same) {
      spdlog::warn("cluster: shard {} of '{}': copy on node '{}' did not take a write: {}; removing it from the "
                   "in-sync set", k, name, others[i], ErrorMessage(r));
      failed.push_back(others[i]);
    }
  }
  if (!failed.empty()) {
    Status st = EditShard(name, k, epoch, [&](ShardState* next) {
      next->in_sync.erase(std::remove_if(next->in_sync.begin(), next->in_sync.end(),
                                         [&](const std::string& n) {
                                           return std::find(failed.begin(), failed.end(), n) != failed.end();
                                         }),
                          next->in_sync.end());
    });
    if (!st.ok()) {
      Fail(503, "not_acknowledged",
           "the write is stored on node '" + self_ + "' but not acknowledged: a copy failed and could not be " +
               "removed from the in-sync set: " + st.message());
    }
  }
  // Acknowledge only while still the primary at this epoch: a deposed
  // primary's copies may already answer to a new one.
  StatusOr<ShardState> now = ReadShard(name, k);
  if (!now.ok()) {
    Fail(503, "not_acknowledged", "the write is stored but not acknowledged: cannot confirm the shard's epoch " +
                                      std::string("with etcd: ") + now.status().message());
  }
  if (now->epoch != epoch || now->primary != self_) {
    Fail(503, "not_acknowledged", "the write is stored but not acknowledged: node '" + self_ +
                                      "' is no longer the primary of shard " + std::to_string(k));
  }
  // And only when every copy in the set took it (an edit whose answer was
  // lost may have grown the set behind this node's back).
  for (const std::string& n : now->in_sync) {
    const bool took = n == self_ || (std::find(others.begin(), others.end(), n) != others.end() &&
                                     std::find(failed.begin(), failed.end(), n) == failed.end());
    if (!took) {
      Fail(503, "not_acknowledged", "the write is stored but not acknowledged: copy '" + n +
                                        "' joined the in-sync set without it; retry");
    }
  }
  return resp;
}

Response ClusterRouter::Impl::CatchUp(const std::string& name, int k, int64_t epoch, const std::string& node) {
  if (node == self_) Fail(422, "invalid_argument", "a primary does not catch itself up");
  auto check = [&](const ShardState& s) {
    if (s.epoch != epoch || s.primary != self_) {
      Fail(409, "stale_epoch", "node '" + self_ + "' is not the primary of shard " + std::to_string(k) +
                                   " at epoch " + std::to_string(epoch));
    }
    if (!s.HasReplica(node)) Fail(422, "invalid_argument", "node '" + node + "' holds no copy of this shard");
  };
  std::lock_guard<std::mutex> order(ShardLock(name, k));
  // Decided under the lock, on the state in etcd: a copy that an earlier
  // request has just caught up is left alone.
  StatusOr<ShardState> s = ReadShard(name, k);
  if (!s.ok()) Fail(503, "etcd_unavailable", s.status().message());
  check(*s);
  const std::string copy = ShardCollectionName(name, k);
  if (!s->InSync(node)) {
    Status st = CopyShardTo(name, k, epoch, node);
    if (st.ok()) {
      st = EditShard(name, k, epoch, [&](ShardState* next) {
        if (!next->InSync(node)) next->in_sync.push_back(node);
      });
    }
    if (!st.ok()) Fail(503, "catch_up_failed", st.message());
  }
  StatusOr<uint64_t> n = store_->Count(copy);
  return JsonResponse(200, {{"in_sync", true}, {"items", n.ok() ? *n : 0}});
}

Status ClusterRouter::Impl::CopyShardTo(const std::string& name, int k, int64_t epoch, const std::string& node) {
  const std::string copy = ShardCollectionName(name, k);
  // Every message of this catch-up carries one seq: the copy refuses any
  // replica write sent before its reset.
  const std::string e = std::to_string(epoch) + "&seq=" + std::to_string(NextSeq());
  std::optional<ClusterCollection> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (const ClusterCollection* f = map_.Find(name)) c = *f;
  }
  if (!c) return Status::NotFound("no cluster collection '" + name + "'");
  HAMDB_ASSIGN_OR_RETURN(CollectionInfo info, store_->GetCollection(copy));
  const auto timeout = opt_.peer_timeout;
  // Start the copy afresh: whatever it holds beyond the primary's items was
  // never acknowledged.
  PeerReply r = Call(node, "DELETE", "/collections/" + copy + "?epoch=" + e, "", opt_.admin_key, timeout);
  if (!r.reached || (r.status != 200 && r.status != 204 && r.status != 404)) {
    return Status::IOError("dropping the stale copy on '" + node + "': " + ErrorMessage(r));
  }
  json create = c->settings;
  create["name"] = copy;
  r = Call(node, "POST", "/collections?epoch=" + std::to_string(epoch), create.dump(), opt_.admin_key, timeout);
  if (!r.ok()) return Status::IOError("creating the copy on '" + node + "': " + ErrorMessage(r));
  json batch = json::array();
  Status sent;
  auto flush = [&]() {
    if (batch.empty()) return true;
    PeerReply w = Call(node, "POST", "/collections/" + copy + "/items?epoch=" + e + "&replica=1",
                       json{{"items", batch}}.dump(), opt_.admin_key, timeout);
    batch = json::array();
    if (!w.ok()) sent = Status::IOError("copying items to '" + node + "': " + ErrorMessage(w));
    return w.ok();
  };
  // Ids in chunks from the code column; each item whole from the store.
  Status scan = store_->ScanCodes(
      copy,
      [&](const uint64_t* ids, const uint8_t*, const float*, size_t n) {
        StatusOr<json> items = StoredItems(copy, info.bits, ids, n);
        if (!items.ok()) {
          sent = items.status();
          return false;
        }
        for (json& j : *items) batch.push_back(std::move(j));
        return flush();
      },
      1000);
  HAMDB_RETURN_IF_ERROR(scan);
  HAMDB_RETURN_IF_ERROR(sent);
  if (!flush()) return sent;
  return Status::OK();
}

// ---------------------------------------------------------------------------
// Coordinator routes

namespace {


uint64_t ParseId(const std::string& text) {
  uint64_t id = 0;
  if (!ParseUint64(text, &id)) Fail(400, "bad_request", "the id must be an unsigned integer, got '" + text + "'");
  return id;
}

}  // namespace

Response ClusterRouter::Impl::Create(const Request& req) {
  json body = ParseJsonObject(req, local_->options().max_json_depth);
  if (!body.value("name", json()).is_string()) Fail(400, "bad_request", "'name' (a string) is required");
  const std::string name = body["name"].get<std::string>();
  Check(ValidateCollectionName(name));
  if (name.size() > kMaxClusterNameLength || ParseShardCollectionName(name)) {
    Fail(422, "invalid_argument", "a cluster collection's name has at most " +
                                      std::to_string(kMaxClusterNameLength) + " characters and does not end in .shard<k>");
  }
  std::string artifact, artifact_name;  // the encoder's bytes and file name, sent to every node
  if (auto e = body.find("encoder"); e != body.end() && !e->is_null()) {
    if (!e->is_string()) Fail(400, "bad_request", "'encoder' must be a string");
    const std::string path = ResolveModelPath(e->get<std::string>(), local_->options().models_dir, local_->options().max_model_bytes);
    StatusOr<std::string> bytes = ReadArtifact(path, local_->options().max_model_bytes);
    if (!bytes.ok()) Fail(422, "invalid_encoder", bytes.status().message());
    artifact = std::move(bytes).value();
    artifact_name = std::filesystem::path(path).filename().string();
    body["encoder"] = artifact_name;  // every node takes it from its own --models-dir
  }
  if (Status r = Refresh(); !r.ok()) Fail(503, "etcd_unavailable", r.message());
  const std::vector<std::string> live = LiveNodes();
  int shards = 1, rf = std::min<int>(2, static_cast<int>(live.size()));
  for (auto [field, out] : {std::pair<const char*, int*>{"shards", &shards}, {"replication_factor", &rf}}) {
    if (auto it = body.find(field); it != body.end() && !it->is_null()) {
      if (!it->is_number_integer()) Fail(400, "bad_request", std::string("'") + field + "' must be an integer");
      const int64_t v = it->get<int64_t>();
      if (v < 1 || v > kMaxShards) {
        Fail(422, "invalid_argument", std::string("'") + field + "' must be in 1.." + std::to_string(kMaxShards));
      }
      *out = static_cast<int>(v);
    }
  }
  StatusOr<std::vector<ShardState>> placed = PlaceShards(live, shards, rf);
  if (!placed.ok()) Fail(422, "invalid_argument", placed.status().message());
  ClusterCollection c;
  c.name = name;
  c.shards = shards;
  c.replication_factor = rf;
  c.settings = body;
  for (const char* f : {"name", "shards", "replication_factor"}) c.settings.erase(f);
  const std::string key = ClientKey(req);
  if (!artifact.empty()) {
    // The artifact travels to every node that will hold a copy; each one
    // checks that it loads, and keeps it under the same name, or refuses
    // (409) when another artifact holds that name there.
    c.encoder_checksum = ArtifactChecksum(artifact.data(), artifact.size());
    std::set<std::string> holders;
    for (const ShardState& st : *placed) holders.insert(st.replicas.begin(), st.replicas.end());
    for (const std::string& node : holders) {
      const std::string target = "/admin/models/" + UrlEncode(artifact_name);
      PeerReply r = node == self_ ? CallLocal("PUT", target, artifact, key, "application/octet-stream")
                                  : Call(node, "PUT", target, artifact, key, opt_.peer_timeout * 6,
                                         "application/octet-stream");
      if (r.client_error()) {
        Fail(r.status, r.body.value("error", json::object()).value("code", std::string("invalid_encoder")),
             "node '" + node + "': " + ErrorMessage(r));
      }
      if (!r.ok()) Fail(503, "unavailable", "sending the encoder to node '" + node + "': " + ErrorMessage(r));
      if (r.body.value("encoder_checksum", std::string()) != c.encoder_checksum) {
        Fail(409, "encoder_mismatch", "node '" + node + "' holds the encoder as " +
                                          r.body.value("encoder_checksum", std::string("?")) + ", not " +
                                          c.encoder_checksum);
      }
    }
  }

  std::vector<std::pair<std::string, std::string>> puts = {{CollectionKey(name), ToJson(c).dump()}};
  std::vector<std::string> keys = {CollectionKey(name)};
  for (int k = 0; k < shards; ++k) {
    puts.push_back({ShardKey(name, k), ToJson((*placed)[k]).dump()});
    keys.push_back(ShardKey(name, k));
  }
  StatusOr<bool> created = etcd_->Txn({{CollectionKey(name), 0}}, puts);
  if (!created.ok()) Fail(503, "etcd_unavailable", created.status().message());
  if (!*created) Fail(409, "conflict", "cluster collection '" + name + "' exists");
  (void)Refresh();

  // Create every copy; the first refusal (bad settings) undoes the lot.
  std::vector<std::pair<std::string, std::string>> made;  // (node, copy)
  std::optional<PeerReply> refused;
  for (int k = 0; k < shards && !refused; ++k) {
    json create = c.settings;
    create["name"] = ShardCollectionName(name, k);
    for (const std::string& node : (*placed)[k].replicas) {
      PeerReply r = node == self_ ? CallLocal("POST", "/collections", create.dump(), key)
                                  : Call(node, "POST", "/collections?epoch=1", create.dump(), key, opt_.peer_timeout);
      if (r.ok() && r.body.value("encoder_checksum", json()).is_string() &&
          r.body["encoder_checksum"].get<std::string>() != c.encoder_checksum) {
        r.status = 409;
        r.raw = Service::Error(409, "encoder_mismatch",
                               "node '" + node + "' loaded encoder " + r.body["encoder_checksum"].get<std::string>() +
                                   ", not " + c.encoder_checksum)
                    .body;
      }
      if (!r.ok()) {
        refused = r;
        break;
      }
      made.push_back({node, create["name"]});
    }
  }
  if (refused) {
    for (const auto& [node, copy] : made) {
      if (node == self_) {
        CallLocal("DELETE", "/collections/" + copy, "", key);
      } else {
        Call(node, "DELETE", "/collections/" + copy + "?epoch=1", "", key, opt_.peer_timeout);
      }
    }
    (void)etcd_->Txn({}, {}, keys);
    (void)Refresh();
    if (refused->client_error()) return Relay(*refused);
    Fail(503, "unavailable", "creating the shards' copies: " + ErrorMessage(*refused));
  }
  return JsonResponse(201, Describe(c, key));
}

Response ClusterRouter::Impl::Drop(const std::string& name, const Request& req) {
  std::optional<ClusterCollection> c;
  std::vector<ShardState> states;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (const ClusterCollection* f = map_.Find(name)) c = *f;
    if (auto it = map_.shards.find(name); it != map_.shards.end()) states = it->second;
  }
  if (!c) Fail(404, "not_found", "no collection '" + name + "'");
  // The id counter stays: a collection created again under this name
  // never hands out an id of an earlier one (nodes may hold leased blocks).
  std::vector<std::string> keys = {CollectionKey(name)};
  for (int k = 0; k < c->shards; ++k) keys.push_back(ShardKey(name, k));
  StatusOr<bool> done = etcd_->Txn({}, {}, keys);
  if (!done.ok()) Fail(503, "etcd_unavailable", done.status().message());
  (void)Refresh();
  const std::string key = ClientKey(req);
  std::vector<std::string> left;
  for (size_t k = 0; k < states.size(); ++k) {
    const std::string copy = ShardCollectionName(name, static_cast<int>(k));
    for (const std::string& node : states[k].replicas) {
      PeerReply r = node == self_ ? CallLocal("DELETE", "/collections/" + copy, "", key)
                                  : Call(node, "DELETE", "/collections/" + copy + "?epoch=" +
                                                             std::to_string(states[k].epoch),
                                         "", key, opt_.peer_timeout);
      if (!r.ok() && !(r.reached && r.status == 404)) left.push_back(node + ":" + copy);
    }
  }
  json out{{"dropped", name}};
  if (!left.empty()) out["copies_left"] = left;  // on nodes that were down; drop them there by hand
  return JsonResponse(200, out);
}

json ClusterRouter::Impl::Describe(const ClusterCollection& c, const std::string& key) {
  std::vector<PeerReply> replies = FanOut(c.shards, [&](size_t k) {
    return ReadShardCopy(c.name, static_cast<int>(k), "GET", "", "", key);
  });
  json out;
  uint64_t items = 0, memory = 0;
  json missing = json::array(), shard_map = json::array();
  for (int k = 0; k < c.shards; ++k) {
    const PeerReply& r = replies[k];
    if (r.ok() && r.body.is_object()) {
      if (out.is_null()) out = r.body;
      items += r.body.value("items", uint64_t{0});
      memory += r.body.value("index_memory_bytes", uint64_t{0});
    } else {
      missing.push_back(k);
    }
    std::optional<ShardState> s = CachedShard(c.name, k);
    json sj = s ? ToJson(*s) : json::object();
    sj["shard"] = k;
    shard_map.push_back(sj);
  }
  if (out.is_null()) out = c.settings;
  out["name"] = c.name;
  out["items"] = items;
  out["index_memory_bytes"] = memory;
  out["shards"] = c.shards;
  out["replication_factor"] = c.replication_factor;
  out["shard_map"] = shard_map;
  if (!missing.empty()) {
    out["partial"] = true;
    out["missing_shards"] = missing;
  }
  return out;
}

Response ClusterRouter::Impl::List(const Request& req) {
  PeerReply local = CallLocal("GET", "/collections", "", ClientKey(req));
  json list = json::array();
  if (local.ok() && local.body.is_object()) {
    for (const json& c : local.body.value("collections", json::array())) {
      if (!ParseShardCollectionName(c.value("name", std::string()))) list.push_back(c);  // node-local ones
    }
  }
  const ShardMap m = map();
  for (const auto& [name, c] : m.collections) list.push_back(Describe(c, ClientKey(req)));
  return JsonResponse(200, {{"collections", list}});
}

std::vector<uint64_t> ClusterRouter::Impl::AssignIds(const std::string& name, size_t n) {
  std::vector<uint64_t> out;
  std::lock_guard<std::mutex> lock(ids_mu_);
  auto& [next, end] = id_blocks_[name];
  while (out.size() < n) {
    if (next == end) {
      // Lease the next block from the collection's counter in etcd.
      const uint64_t want = std::max<uint64_t>(opt_.id_block, n - out.size());
      for (int attempt = 0;; ++attempt) {
        StatusOr<std::optional<EtcdKeyValue>> kv = etcd_->Get(IdsKey(name));
        if (!kv.ok()) Fail(503, "etcd_unavailable", "cannot lease ids: " + kv.status().message());
        uint64_t first = 1;
        if (*kv && !ParseUint64((*kv)->value, &first)) Fail(500, "internal", "etcd holds a bad id counter");
        StatusOr<bool> done = etcd_->Txn({{IdsKey(name), *kv ? (*kv)->mod_revision : 0}},
                                         {{IdsKey(name), std::to_string(first + want)}});
        if (!done.ok()) Fail(503, "etcd_unavailable", "cannot lease ids: " + done.status().message());
        if (*done) {
          next = first;
          end = first + want;
          break;
        }
        if (attempt == 50) Fail(503, "unavailable", "the id counter kept changing");
      }
    }
    out.push_back(next++);
  }
  return out;
}

Response ClusterRouter::Impl::Insert(const ClusterCollection& c, const Request& req,
                                     const std::map<std::string, std::string>& query) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string media = MediaType(req.content_type);
  json body;
  if (media == "multipart/form-data" || IsImageType(media)) {
    // Images as JSON items: the shards' primaries encode them.
    body = json{{"items", json::array()}};
    const json q = QueryToJson(query);
    if (q.contains("thumbnails")) body["thumbnails"] = q["thumbnails"];
    auto image_item = [](std::string_view bytes) {
      return json{{"image", Base64Encode(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())}};
    };
    if (IsImageType(media)) {
      json item = image_item(req.body);
      for (const char* f : {"id", "label"}) {
        if (q.contains(f)) item[f] = q[f];
      }
      body["items"].push_back(std::move(item));
    } else {
      StatusOr<std::vector<FormPart>> parts = ParseMultipart(req.content_type, req.body);
      if (!parts.ok()) Fail(400, "bad_request", parts.status().message());
      if (parts->empty()) Fail(422, "invalid_argument", "the multipart body holds no images");
      for (const FormPart& part : *parts) {
        json item = image_item(part.data);
        if (!part.filename.empty()) item["metadata"] = {{"path", part.filename}};
        body["items"].push_back(std::move(item));
      }
    }
  } else {
    body = ParseJsonObject(req, local_->options().max_json_depth);
  }
  auto it = body.find("items");
  if (it == body.end() || !it->is_array()) Fail(400, "bad_request", "'items' (an array of item objects) is required");
  if (it->empty()) Fail(422, "invalid_argument", "'items' is empty");
  json items = std::move(*it);
  body.erase("items");
  size_t missing = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const json& v = items[i];
    const std::string where = "items[" + std::to_string(i) + "]";
    if (!v.is_object()) Fail(400, "bad_request", where + " must be an object");
    if (v.contains("code") == v.contains("image")) {
      Fail(422, "invalid_argument", where + " needs exactly one of 'code' and 'image'");
    }
    if (v.contains("image") && c.encoder_checksum.empty()) {
      Fail(422, "invalid_argument", where + ": collection '" + c.name + "' has no encoder; send codes");
    }
    if (auto f = v.find("id"); f != v.end() && !f->is_null()) {
      if (!f->is_number_integer()) Fail(400, "bad_request", where + ".id must be an integer");
      if (!f->is_number_unsigned()) Fail(422, "invalid_argument", where + ".id must be >= 0");
    } else {
      ++missing;
    }
  }
  if (missing > 0) {
    std::vector<uint64_t> ids = AssignIds(c.name, missing);
    size_t next = 0;
    for (json& v : items) {
      if (!v.contains("id") || v["id"].is_null()) v["id"] = ids[next++];
    }
  }
  std::vector<json> parts(c.shards, json::array());
  std::vector<uint64_t> ids;
  for (const json& v : items) {
    ids.push_back(v["id"].get<uint64_t>());
    parts[ShardOf(ids.back(), c.shards)].push_back(v);
  }
  const std::string key = ClientKey(req);
  std::vector<int> shards;
  std::vector<std::string> texts;
  for (int k = 0; k < c.shards; ++k) {
    if (parts[k].empty()) continue;
    json part = body;
    part["items"] = std::move(parts[k]);
    shards.push_back(k);
    texts.push_back(part.dump());
  }
  std::vector<PeerReply> replies = FanOut(shards.size(), [&](size_t i) {
    return WriteShard(c.name, shards[i], "POST", "/items", texts[i], key);
  });
  std::vector<int> stored;
  std::optional<std::pair<int, PeerReply>> failure;
  std::map<uint64_t, json> images;  // what the encoders made of image items, by id
  for (size_t i = 0; i < shards.size(); ++i) {
    const int k = shards[i];
    PeerReply& r = replies[i];
    if (r.ok()) {
      stored.push_back(k);
      for (const json& im : r.body.value("images", json::array())) images[im.value("id", uint64_t{0})] = im;
    } else if (!failure) {
      failure = {k, std::move(r)};
    }
  }
  if (failure) {
    const auto& [k, r] = *failure;
    std::string stored_text;
    for (int s : stored) stored_text += (stored_text.empty() ? "" : ", ") + std::to_string(s);
    const std::string msg = "shard " + std::to_string(k) + ": " + ErrorMessage(r) +
                            (stored.empty() ? std::string("; no shard acknowledged its items")
                                            : "; shards " + stored_text + " acknowledged their items") +
                            " (retrying the batch is safe: items are upserted by id)";
    if (r.client_error()) {
      Fail(r.status, r.body.value("error", json::object()).value("code", std::string("invalid_argument")), msg);
    }
    Response out = Service::Error(503, "unavailable", msg);
    out.retry_after_s = 1;
    return out;
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  json out{{"ids", ids}, {"count", ids.size()}, {"took_ms", ms}};
  if (!images.empty()) {
    json list = json::array();
    for (uint64_t id : ids) {
      if (auto f = images.find(id); f != images.end()) list.push_back(f->second);
    }
    out["images"] = std::move(list);
  }
  return JsonResponse(200, out);
}

std::vector<json> ClusterRouter::Impl::IdsByShard(const ClusterCollection& c, const Request& req,
                                                  std::vector<std::pair<int, size_t>>* where) {
  json body = ParseJsonObject(req, local_->options().max_json_depth);
  auto it = body.find("ids");
  if (it == body.end() || !it->is_array()) Fail(400, "bad_request", "'ids' (an array of ids) is required");
  std::vector<json> parts(c.shards, json::array());
  for (const json& v : *it) {
    if (!v.is_number_unsigned()) Fail(400, "bad_request", "'ids' must hold unsigned integers");
    const int k = ShardOf(v.get<uint64_t>(), c.shards);
    if (where != nullptr) where->push_back({k, parts[k].size()});
    parts[k].push_back(v);
  }
  return parts;
}

Response ClusterRouter::Impl::DeleteMany(const ClusterCollection& c, const Request& req) {
  std::vector<json> parts = IdsByShard(c, req);
  const std::string key = ClientKey(req);
  std::vector<int> shards;
  for (int k = 0; k < c.shards; ++k) {
    if (!parts[k].empty()) shards.push_back(k);
  }
  std::vector<PeerReply> replies = FanOut(shards.size(), [&](size_t i) {
    return WriteShard(c.name, shards[i], "POST", "/items/delete", json{{"ids", parts[shards[i]]}}.dump(), key);
  });
  uint64_t deleted = 0;
  std::optional<PeerReply> failure;
  for (PeerReply& r : replies) {
    if (r.ok()) {
      deleted += r.body.value("deleted", uint64_t{0});
    } else if (!failure) {
      failure = std::move(r);
    }
  }
  if (failure) {
    if (failure->client_error()) return Relay(*failure);
    Fail(503, "unavailable", "deleting: " + ErrorMessage(*failure) + " (retrying is safe)");
  }
  return JsonResponse(200, {{"deleted", deleted}});
}

Response ClusterRouter::Impl::DeleteOne(const ClusterCollection& c, const std::string& id_text, const Request& req) {
  const uint64_t id = ParseId(id_text);
  PeerReply r = WriteShard(c.name, ShardOf(id, c.shards), "DELETE", "/items/" + std::to_string(id), "", ClientKey(req));
  if (!r.reached) Fail(503, "unavailable", r.error);
  return Relay(r);
}

Response ClusterRouter::Impl::ReadOne(const ClusterCollection& c, const std::string& id_text,
                                      const std::string& suffix, const Request& req) {
  const uint64_t id = ParseId(id_text);
  PeerReply r = ReadShardCopy(c.name, ShardOf(id, c.shards), "GET", "/items/" + std::to_string(id) + suffix, "",
                              ClientKey(req));
  if (!r.reached) Fail(503, "unavailable", r.error);
  return Relay(r);
}

Response ClusterRouter::Impl::Sample(const ClusterCollection& c, const Request& req) {
  std::vector<int> order(c.shards);
  for (int k = 0; k < c.shards; ++k) order[k] = k;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(std::random_device{}()));
  for (int k : order) {
    PeerReply r = ReadShardCopy(c.name, k, "GET", "/sample", "", ClientKey(req));
    if (r.ok()) return Relay(r);
  }
  Fail(404, "not_found", "collection '" + c.name + "' holds no items (or no shard answered)");
}

Response ClusterRouter::Impl::Exists(const ClusterCollection& c, const Request& req) {
  std::vector<std::pair<int, size_t>> where;
  const std::vector<json> parts = IdsByShard(c, req, &where);
  const std::string key = ClientKey(req);
  // The shards are asked together, as every fan-out is; replies[k] for
  // shard k (none for a shard no id falls in).
  std::vector<PeerReply> replies = FanOut(c.shards, [&](size_t k) {
    if (parts[k].empty()) return PeerReply{};
    return ReadShardCopy(c.name, static_cast<int>(k), "POST", "/items/exists", json{{"ids", parts[k]}}.dump(), key);
  });
  for (int k = 0; k < c.shards; ++k) {
    if (parts[k].empty() || replies[k].ok()) continue;
    if (replies[k].client_error()) return Relay(replies[k]);
    Fail(503, "unavailable", ErrorMessage(replies[k]));
  }
  for (int k = 0; k < c.shards; ++k) {
    if (parts[k].empty()) continue;
    const json& b = replies[k].body;
    if (!b.is_object() || !b.value("exists", json()).is_array() || !b.value("paths", json()).is_array() ||
        b["exists"].size() != parts[k].size() || b["paths"].size() != parts[k].size()) {
      Fail(503, "unavailable", "shard " + std::to_string(k) + " gave an answer this node cannot read");
    }
  }
  json exists = json::array(), paths = json::array();
  for (const auto& [k, i] : where) {
    exists.push_back(replies[k].body["exists"][i]);
    paths.push_back(replies[k].body["paths"][i]);
  }
  return JsonResponse(200, {{"exists", exists}, {"paths", paths}});
}

namespace {

// A search answer this node can merge: its result lists where they belong.
bool WellFormedAnswer(const json& a, bool batch) {
  if (!a.is_object()) return false;
  if (!batch) return a.value("results", json()).is_array();
  const json b = a.value("batches", json());
  if (!b.is_array()) return false;
  for (const json& x : b) {
    if (!x.is_object() || !x.value("results", json()).is_array()) return false;
  }
  return true;
}

// The merge of per-shard (or per-node) answers of one search: each list cut
// to k (none for a plain radius search) under the tie rule of the answers,
// at most max_results results in all; exact, truncated and degraded
// combined. `answers` is not empty and well formed, with equal batch counts.
json MergeAnswers(const std::vector<json>& answers, bool batch, std::optional<uint64_t> k_cut,
                  size_t max_results) {
  json out = answers.front();
  const bool by_score = out.value("tie_break", std::string("id")) == "score";
  bool exact = true, truncated = false, degraded = false;
  for (const json& a : answers) {
    exact = exact && a.value("exact", true);
    truncated = truncated || a.value("truncated", false);
    degraded = degraded || a.value("degraded", false);
  }
  size_t budget = max_results;
  auto merge = [&](const std::vector<const json*>& lists) {
    json all = json::array();
    for (const json* l : lists) {
      for (const json& x : *l) all.push_back(x);
    }
    std::sort(all.begin(), all.end(), [&](const json& a, const json& b) { return ResultBefore(a, b, by_score); });
    size_t keep = all.size();
    if (k_cut) keep = std::min<size_t>(keep, *k_cut);
    if (keep > budget) {
      keep = budget;
      truncated = true;
    }
    budget -= keep;
    all.erase(all.begin() + static_cast<std::ptrdiff_t>(keep), all.end());
    return all;
  };
  if (batch) {
    const size_t nq = out["batches"].size();
    json batches = json::array();
    for (size_t q = 0; q < nq; ++q) {
      std::vector<const json*> lists;
      bool q_exact = true;
      for (const json& a : answers) {
        const json& b = a["batches"][q];
        lists.push_back(&b["results"]);
        q_exact = q_exact && b.value("exact", true);
      }
      json b = answers.front()["batches"][q];
      b["results"] = merge(lists);
      b["exact"] = q_exact;
      batches.push_back(std::move(b));
    }
    out["batches"] = std::move(batches);
  } else {
    std::vector<const json*> lists;
    for (const json& a : answers) lists.push_back(&a["results"]);
    out["results"] = merge(lists);
  }
  out["exact"] = exact;
  out.erase("truncated");
  out.erase("degraded");
  if (truncated) out["truncated"] = true;
  if (degraded) out["degraded"] = true;
  return out;
}

// The cut of a merged list: k (10 unless a radius is given).
std::optional<uint64_t> KCut(const json& body) {
  if (auto it = body.find("k"); it != body.end() && it->is_number_integer() && it->get<int64_t>() >= 0) {
    return it->get<uint64_t>();
  }
  if (!body.contains("radius") || body["radius"].is_null()) return 10;
  return std::nullopt;
}

std::string JoinInts(const std::vector<int>& v) {
  std::string out;
  for (int x : v) out += (out.empty() ? "" : ",") + std::to_string(x);
  return out;
}

}  // namespace

PeerReply ClusterRouter::Impl::SearchOwnCopies(const ClusterCollection& c, const std::vector<int>& shards,
                                               const std::string& text, bool batch, const std::string& key) const {
  const json body = json::parse(text, nullptr, false);
  // The copies are searched side by side on this node's cores.
  std::vector<PeerReply> replies(shards.size());
  Status ran = ThreadPool::Default().ParallelFor(shards.size(), 0, [&](size_t i) {
    replies[i] = CallLocal("POST",
                           "/collections/" + ShardCollectionName(c.name, shards[i]) + (batch ? "/search/batch" : "/search"),
                           text, key);
  });
  if (!ran.ok()) Fail(500, "internal", ran.message());
  std::vector<json> answers;
  std::vector<int> missing;
  for (size_t i = 0; i < shards.size(); ++i) {
    const int k = shards[i];
    PeerReply& r = replies[i];
    if (r.client_error() && ErrorMessage(r).rfind("no collection", 0) != 0) return r;  // bad at every shard
    if (r.ok() && WellFormedAnswer(r.body, batch) &&
        (answers.empty() || !batch || r.body["batches"].size() == answers.front()["batches"].size())) {
      answers.push_back(std::move(r.body));
    } else {
      missing.push_back(k);
    }
  }
  PeerReply out;
  out.reached = true;
  out.status = 200;
  out.body = answers.empty() ? json{{"results", json::array()}}
                             : MergeAnswers(answers, batch, KCut(body), local_->options().max_results);
  if (answers.empty()) out.body["no_answer"] = true;
  out.body["missing_shards"] = missing;
  return out;
}

Response ClusterRouter::Impl::Search(const ClusterCollection& c, const Request& req,
                                     const std::map<std::string, std::string>& query, bool batch) {
  const auto t0 = std::chrono::steady_clock::now();
  json body;
  if (!batch && IsImageType(MediaType(req.content_type))) {
    // A raw image: the same search as JSON, for every shard to encode.
    body = QueryToJson(query);
    body["image"] = Base64Encode(reinterpret_cast<const uint8_t*>(req.body.data()), req.body.size());
  } else {
    body = ParseJsonObject(req, local_->options().max_json_depth);
  }
  const std::string key = ClientKey(req);
  const std::string text = body.dump();
  const std::string route = batch ? "/search/batch" : "/search";

  // Another node asks this one for its own copies of some shards.
  if (auto own = query.find("shards"); own != query.end()) {
    std::vector<int> shards;
    std::string item;
    std::stringstream list(own->second);
    while (std::getline(list, item, ',')) {
      int64_t k = -1;
      if (!ParseInt64(item, &k) || k < 0 || k >= c.shards) Fail(400, "bad_request", "'shards' must list shards");
      shards.push_back(static_cast<int>(k));
    }
    PeerReply r = SearchOwnCopies(c, shards, text, batch, key);
    if (!r.ok()) return Relay(r);
    return JsonResponse(200, r.body);
  }

  // One request per node: each shard goes to its first copy in read order
  // (this node's, the primary, the others), grouped by node.
  std::map<std::string, std::vector<int>> plan;
  std::vector<int> unplaced;
  for (int k = 0; k < c.shards; ++k) {
    const std::optional<ShardState> s = CachedShard(c.name, k);
    std::string node;
    if (s) {
      for (const std::string& n : ReadOrder(*s)) {
        if (n == self_ || Live(n)) {
          node = n;
          break;
        }
      }
    }
    if (node.empty()) {
      unplaced.push_back(k);
    } else {
      plan[node].push_back(k);
    }
  }
  const std::vector<std::pair<std::string, std::vector<int>>> groups(plan.begin(), plan.end());
  std::vector<PeerReply> replies = FanOut(groups.size(), [&](size_t i) {
    const auto& [node, shards] = groups[i];
    return node == self_ ? SearchOwnCopies(c, shards, text, batch, key)
                         : Call(node, "POST", "/collections/" + UrlEncode(c.name) + route + "?shards=" + JoinInts(shards),
                                text, key, opt_.peer_timeout);
  });
  std::vector<json> answers;
  std::vector<int> retry = unplaced;  // shards to ask copy by copy
  for (size_t i = 0; i < groups.size(); ++i) {
    const std::vector<int>& shards = groups[i].second;
    PeerReply& r = replies[i];
    if (r.client_error()) return Relay(r);  // a bad request is bad at every shard
    if (r.ok() && WellFormedAnswer(r.body, batch) && !r.body.value("no_answer", false) &&
        (answers.empty() || !batch || r.body["batches"].size() == answers.front()["batches"].size())) {
      for (const json& k : r.body.value("missing_shards", json::array())) {
        if (k.is_number_integer()) retry.push_back(k.get<int>());
      }
      answers.push_back(std::move(r.body));
    } else {
      retry.insert(retry.end(), shards.begin(), shards.end());
    }
  }
  // Shards whose first copy failed: every in-sync copy in turn.
  json missing = json::array();
  std::vector<std::string> errors;
  for (int k : retry) {
    PeerReply r = ReadShardCopy(c.name, k, "POST", route, text, key);
    if (r.client_error()) return Relay(r);
    if (r.ok() && WellFormedAnswer(r.body, batch) &&
        (answers.empty() || !batch || r.body["batches"].size() == answers.front()["batches"].size())) {
      answers.push_back(std::move(r.body));
    } else {
      missing.push_back(k);
      errors.push_back("shard " + std::to_string(k) + ": " + (r.ok() ? "an answer this node cannot merge" : ErrorMessage(r)));
    }
  }
  if (answers.empty()) {
    std::string why;
    for (const std::string& e : errors) why += (why.empty() ? "" : "; ") + e;
    Response out = Service::Error(503, "unavailable", "no shard of '" + c.name + "' answered: " + why);
    out.retry_after_s = 1;
    return out;
  }
  json out = MergeAnswers(answers, batch, KCut(body), local_->options().max_results);
  out.erase("missing_shards");
  out["shards"] = c.shards;
  if (!missing.empty()) {
    std::vector<int> m = missing.get<std::vector<int>>();
    std::sort(m.begin(), m.end());
    out["partial"] = true;
    out["missing_shards"] = m;
  }
  out["took_ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return JsonResponse(200, out);
}

// ---------------------------------------------------------------------------

ClusterRouter::ClusterRouter(const ClusterMember* member, CodeStore* store, ClusterRouterOptions options)
    : impl_(std::make_unique<Impl>(member, store, std::move(options))) {}

ClusterRouter::~ClusterRouter() { impl_->Stop(); }

Status ClusterRouter::Start(Service* local) { return impl_->Start(local); }

std::optional<Response> ClusterRouter::Route(const Request& request, const std::string& route,
                                             const std::vector<std::string>& segments,
                                             const std::map<std::string, std::string>& query) {
  return impl_->Route(request, route, segments, query);
}

ShardMap ClusterRouter::map() const { return impl_->map(); }

std::optional<Lane> ClusterRouter::LaneOf(const std::string& method, const std::vector<std::string>& segments,
                                          const std::map<std::string, std::string>& query) const {
  if (segments.empty() || segments[0] != "collections") return std::nullopt;
  if (query.count("replica")) return Lane::kReplica;
  if (query.count("epoch")) return Lane::kPeer;
  if (query.count("shards")) return Lane::kIo;
  if (segments.size() == 1) return Lane::kWrite;  // a create, or a list that describes every collection
  if (impl_->IsClusterCollection(segments[1])) return Lane::kWrite;
  return std::nullopt;
}

}  // namespace hamdb::http
