// Service: the hamdb HTTP API as a pure request -> response function, with
// no networking (http/server.h puts it on a socket). Keeping the two apart
// lets the API be tested without sockets and keeps Beast out of this file.
//
// The service holds the live collections of one CodeStore, a LiveCollection
// each (collection/live_collection.h: the owner of a collection's state,
// encoder included); it is transport, a route table and JSON in and out.
// Routes, parameters and errors are documented in docs/api.md and
// docs/openapi.yaml; every error body is
// {"error": {"code": "<snake_case>", "message": "..."}}.
//
// Life cycle: construct, then LoadCollections() (slow: rebuilds every index
// from the store, logging progress through spdlog). Until it finishes, ready() is false and
// every collection route answers 503; /healthz and /metrics answer at once.
//
// Encoders are obtained through ServiceOptions::encoder_loader, so this
// library never links libtorch: `hamdb serve` passes Encoder::Load, tests
// pass a fake.
//
// Thread safety: Handle may be called from many threads at once and
// concurrently with LoadCollections. The CodeStore must outlive the service.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "collection/live_collection.h"
#include "db/code_store.h"
#include "http/metrics.h"
#include "core/status.h"

namespace hamdb::http {

class ClusterMember;  // http/cluster.h
class RequestRouter;  // below

struct ServiceOptions {
  // Loads an encoder artifact; unset means image requests are refused (422).
  EncoderLoader encoder_loader;
  // Where a collection create over HTTP may take its encoder from: only
  // regular files under this directory (symbolic links resolved), at most
  // max_model_bytes. Empty: creates that name an encoder are refused (422).
  // Collections created by the local CLI name any path and load as they are.
  std::string models_dir;
  uint64_t max_model_bytes = uint64_t{1} << 30;
  // API keys. With admin_key set, every route except /healthz and /readyz
  // needs a key ("Authorization: Bearer <key>" or "api-key: <key>"):
  // read_key grants GET routes and searches, admin_key grants everything.
  // Both empty: no authentication (the server then binds to loopback only
  // unless told otherwise; see ServerOptions).
  std::string read_key;
  std::string admin_key;
  // fsync the WAL before a write is acknowledged (see db/code_store.h).
  bool sync_writes = true;
  // Largest k and most queries in one batch search.
  int64_t max_k = 100000;
  size_t max_batch_queries = 10000;
  // Most results in one response: a radius search, or a batch summed over
  // its queries. Beyond it the response keeps the first results in
  // (distance, id) order and says "truncated": true.
  size_t max_results = 100000;
  // Deepest JSON nesting accepted (bodies are pre-scanned before parsing).
  int max_json_depth = 64;
  // Threads one search may use (SearchParams::num_threads); the server's
  // own threads already run requests in parallel, so 1 is best under load.
  int search_threads = 1;
  // Largest decoded image, in pixels.
  size_t max_image_pixels = 16u << 20;
  // Background rebuild back-off of degraded collections (LiveCollectionOptions).
  std::chrono::milliseconds rebuild_delay{1000};
  // Builds the collections' indexes; unset means MakeIndex. A test hook (an
  // index that fails on demand).
  IndexMaker index_maker;
  // Where POST /admin/backup writes (CodeStore::Backup); empty: the route
  // answers 422. Never a path a client chooses.
  std::string backup_dir;
  // Index snapshots (LiveCollectionOptions::snapshots and its thresholds).
  bool snapshots = false;
  uint64_t snapshot_after_items = LiveCollectionOptions{}.snapshot_after_items;
  std::chrono::milliseconds snapshot_interval = LiveCollectionOptions{}.snapshot_interval;
  // This node's cluster membership (http/cluster.h), owned by the caller
  // and outliving the service; null for a single node. GET /cluster shows it.
  const ClusterMember* cluster = nullptr;
  // Serves the collections sharded over the cluster (http/shard_router.h),
  // owned by the caller and outliving the service; null for a single node.
  RequestRouter* router = nullptr;
};

struct Request {
  std::string method;         // "GET", "POST", ...
  std::string target;         // path and query, as received
  std::string content_type;   // the Content-Type header, as received
  std::string authorization;  // the Authorization header
  std::string api_key;        // the api-key header
  std::string host;           // the Host header
  std::string if_none_match;  // the If-None-Match header
  std::string body;
  // Set by the cluster router for its calls into this node's own
  // collections, which it has already routed; never from the network.
  bool from_router = false;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  int retry_after_s = 0;  // > 0: sent as a Retry-After header
  std::vector<std::pair<std::string, std::string>> headers;  // more headers, as (name, value)
};

// Where the server runs a request (http/server.h). The lanes are layered so
// that nodes calling each other never wait in a circle: a request waits
// only on requests of a later lane, on other nodes.
enum class Lane {
  kIo,       // on the I/O thread that read it: local reads and searches
  kWrite,    // the write pool: writes, bulk reads, and a client's request that other nodes answer
  kPeer,     // the peer pool: a node's call to a shard's primary (which calls the copies)
  kReplica,  // the replica pool: a primary's call to a copy (which calls no one)
};

// Takes over routes that concern more than this node: in cluster mode, the
// collections sharded over the nodes (http/shard_router.h). The service asks
// it after a request's route, key and readiness have been checked.
class RequestRouter {
 public:
  virtual ~RequestRouter() = default;
  // The answer to `request`, which matched the route named `route` (as in
  // docs/api.md: "/collections/{name}/items"); nullopt: the service answers
  // it as a single node does. Never throws.
  virtual std::optional<Response> Route(const Request& request, const std::string& route,
                                        const std::vector<std::string>& segments,
                                        const std::map<std::string, std::string>& query) = 0;
  // The lane of a request it takes over; nullopt: the service's own rule.
  // Cheap: called on the I/O thread for every request.
  virtual std::optional<Lane> LaneOf(const std::string& method, const std::vector<std::string>& segments,
                                     const std::map<std::string, std::string>& query) const = 0;
};

class Service {
 public:
  Service(CodeStore* store, ServiceOptions options);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Opens every collection of the store and rebuilds its index, logging
  // progress; then marks the service ready. A collection that fails to open
  // is logged and answers 503 with the reason; the others serve. Returns the
  // first such error (the service is ready all the same), or a store error.
  Status LoadCollections();
  // Writes an index snapshot of every healthy collection that changed since
  // its last (at a clean shutdown, once requests have drained). The first
  // error, after trying them all.
  Status SaveSnapshots();
  bool ready() const { return ready_.load(std::memory_order_acquire); }

  // Answers one request. Never throws; every failure is an error response.
  Response Handle(const Request& request);

  // Whether (method, target) runs off the server's I/O threads, on its
  // write pool: the routes that change data (the admin routes of the route
  // table), and the bulk helpers of a client ingest (items/exists, the
  // encoder download), so that none of them delays a search.
  static bool RunsOffIoThreads(const std::string& method, const std::string& target);
  // The lane of a request: the router's (in cluster mode) for the requests
  // it takes over, else kWrite when RunsOffIoThreads, else kIo.
  Lane LaneOf(const std::string& method, const std::string& target) const;

  // An error response in the common shape (also used by the server for
  // transport errors such as 413 and 408).
  static Response Error(int status, const std::string& code, const std::string& message);

  Metrics& metrics() { return metrics_; }
  const ServiceOptions& options() const { return options_; }

  // The address and port the server listens on. Once set, and only when the
  // service has no API key, a request is refused (403 forbidden) unless its
  // Host header names localhost, the listen address or an IP address, bare
  // or with that port: a web page that reaches the API by DNS rebinding
  // sends its own host name, which never passes.
  void SetListenEndpoint(const std::string& address, uint16_t port);

  // Implementation types, defined in http/call.h (private to http/).
  struct Collection;
  class Call;

 private:
  friend class Call;

  std::shared_ptr<Collection> FindCollection(const std::string& name) const;
  // Opens a collection of the store; `encoder`: one already loaded for it.
  std::shared_ptr<Collection> OpenCollection(const std::string& name,
                                             std::shared_ptr<const Encoder> encoder = nullptr);

  CodeStore* store_;
  ServiceOptions options_;
  Metrics metrics_;
  std::atomic<bool> ready_{false};
  mutable std::shared_mutex collections_mu_;
  std::map<std::string, std::shared_ptr<Collection>> collections_;
  std::mutex backup_mu_;  // one backup at a time
  std::mutex admin_mu_;  // serialises create / drop
  mutable std::mutex listen_mu_;
  std::string listen_address_;  // lower case
  uint16_t listen_port_ = 0;    // 0: no Host check
};

}  // namespace hamdb::http
