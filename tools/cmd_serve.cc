// hamdb serve: the HTTP service (http/server.h) over a store directory.
//
// Start-up order: open the store, listen (so /healthz answers at once),
// rebuild every collection's index with progress in the log, then report
// ready on /readyz. SIGINT / SIGTERM shut down gracefully: stop accepting,
// finish the requests in flight, exit 0.
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "collection/settings.h"
#include "encoder/encoder.h"
#include "encoder/inference_process.h"
#include "encoder/torch_threads.h"
#include "http/cluster.h"
#include "http/shard_router.h"
#include "http/server.h"
#include "http/service.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/logging.h"

namespace hamdb::tools {

namespace {

struct ServeArgs {
  std::string db;
  std::string host = "127.0.0.1";
  int port = 8080;
  int threads = 0;
  int write_threads = http::ServerOptions{}.write_threads;
  size_t write_queue = http::ServerOptions{}.write_queue;
  std::string api_key;
  std::string read_api_key;
  bool allow_remote_without_key = false;
  size_t body_limit_mb = 32;
  double read_timeout_s = 30;
  double drain_timeout_s = 30;
  bool no_sync = false;
  int64_t max_k = 100000;
  size_t max_results = 100000;
  std::string models_dir;
  uint64_t max_model_mb = 1024;
  std::string log_format = "text";
  std::string log_level = "info";
  std::string backup_dir;
  bool no_snapshots = false;
  bool salvage_wal = false;
  uint64_t snapshot_after_items = LiveCollectionOptions{}.snapshot_after_items;
  double snapshot_interval_s =
      std::chrono::duration<double>(LiveCollectionOptions{}.snapshot_interval).count();
  http::ClusterOptions cluster;
  int cluster_replace_after_s = 60;
};

int RunServe(const ServeArgs& a) {
  Status logging = ConfigureLogging(a.log_format, a.log_level);
  if (!logging.ok()) return Fail(logging);
  // A models directory that does not exist yet is made now, so that the
  // first upload to it works; one that cannot be is an error at start-up,
  // not a failed upload later.
  if (!a.models_dir.empty()) {
    std::error_code made, is_dir;
    std::filesystem::create_directories(a.models_dir, made);
    if (!std::filesystem::is_directory(a.models_dir, is_dir)) {
      const std::error_code& why = made ? made : is_dir;
      return Fail(Status::InvalidArgument("--models-dir '" + a.models_dir + "' is not a directory and cannot be made one" +
                                          (why ? ": " + why.message() : std::string())));
    }
  }
  auto store = OpenStore(a.db, /*create=*/true, a.salvage_wal);
  if (!store.ok()) return Fail(store.status());

  http::ServiceOptions so;
  so.admin_key = a.api_key;
  so.read_key = a.read_api_key;
  so.sync_writes = !a.no_sync;
  so.max_k = a.max_k;
  so.max_results = a.max_results;
  so.models_dir = a.models_dir;
  so.max_model_bytes = a.max_model_mb << 20;
  so.backup_dir = a.backup_dir;
  so.snapshots = !a.no_snapshots;
  so.snapshot_after_items = a.snapshot_after_items;
  so.snapshot_interval =
      std::chrono::milliseconds(static_cast<int64_t>(a.snapshot_interval_s * 1000));
  // Artifacts are loaded once per content (encoder checksum) and shared by
  // the collections using them: a file replaced under the same path is
  // loaded afresh, never served from the cache.
  auto cache = std::make_shared<std::map<std::string, std::shared_ptr<const Encoder>>>();
  auto cache_mu = std::make_shared<std::mutex>();
  so.encoder_loader =
      [cache, cache_mu](const std::string& path) -> StatusOr<std::shared_ptr<const Encoder>> {
    StatusOr<std::string> sum = ArtifactFileChecksum(path);
    if (!sum.ok()) return sum.status();
    std::lock_guard<std::mutex> lock(*cache_mu);
    auto it = cache->find(*sum);
    if (it != cache->end()) return it->second;
    StatusOr<std::unique_ptr<Encoder>> enc = Encoder::Load(path);
    if (!enc.ok()) return enc.status();
    StatusOr<std::string> after = ArtifactFileChecksum(path);
    if (!after.ok() || *after != *sum) {
      return Status::FailedPrecondition("encoder artifact '" + path + "' changed while it was loaded");
    }
    if (cache->empty()) {
      // The server encodes one image per call, on the thread that serves
      // the request, and concurrent requests encode side by side: an
      // OpenMP team per call would only add its fork and join, and idle
      // team threads that spin on the cores the searches need.
      spdlog::info("encoding images: {}, libtorch threads per request: {}", TuneProcessForInference(),
                   SetTorchThreads(1));
    }
    std::shared_ptr<const Encoder> shared(std::move(enc).value());
    (*cache)[*sum] = shared;
    return shared;
  };
  if (!a.read_api_key.empty() && a.api_key.empty()) {
    return Fail(Status::InvalidArgument("--read-api-key needs --api-key (the admin key) as well"));
  }
  // Cluster membership: joined before the service starts, left after it
  // stops (the member outlives the service).
  std::unique_ptr<http::ClusterMember> member;
  if (a.cluster.etcd.empty() && (!a.cluster.node_id.empty() || !a.cluster.advertise.empty())) {
    return Fail(Status::InvalidArgument("--node-id and --advertise need --cluster"));
  }
  if (!a.cluster.etcd.empty()) {
    StatusOr<std::unique_ptr<http::ClusterMember>> joined = http::ClusterMember::Join(a.cluster);
    if (!joined.ok()) return Fail(joined.status().WithContext("cannot join the cluster"));
    member = std::move(joined).value();
    spdlog::info("joined the cluster at {} as node '{}' ({})", a.cluster.etcd, a.cluster.node_id,
                 a.cluster.advertise);
    so.cluster = member.get();
  }
  // The collections sharded over the cluster: any node answers for them.
  std::unique_ptr<http::ClusterRouter> router;
  if (member) {
    http::ClusterRouterOptions ro;
    ro.admin_key = a.api_key;
    ro.replace_after = std::chrono::seconds(a.cluster_replace_after_s);
    router = std::make_unique<http::ClusterRouter>(member.get(), store->get(), ro);
    so.router = router.get();
  }
  http::Service service(store->get(), so);
  if (router) {
    Status started = router->Start(&service);
    if (!started.ok()) return Fail(started.WithContext("cannot read the cluster's shard map"));
  }

  http::ServerOptions o;
  o.address = a.host;
  o.port = static_cast<uint16_t>(a.port);
  o.threads = a.threads > 0 ? a.threads : std::max(1u, std::thread::hardware_concurrency());
  o.write_threads = a.write_threads;
  o.write_queue = a.write_queue;
  o.allow_remote_without_key = a.allow_remote_without_key;
  o.has_api_key = !a.api_key.empty();
  o.body_limit = a.body_limit_mb << 20;
  o.read_timeout = std::chrono::milliseconds(static_cast<int64_t>(a.read_timeout_s * 1000));
  o.drain_timeout = std::chrono::milliseconds(static_cast<int64_t>(a.drain_timeout_s * 1000));
  o.handle_signals = true;
  http::HttpServer server(&service, o);
  Status s = server.Start();
  if (!s.ok()) return Fail(s);
  spdlog::info("listening on http://{}:{} with {} threads ({}, {})", a.host, server.port(),
               o.threads, a.api_key.empty() ? "no API key" : "API keys required",
               a.no_sync ? "writes not fsynced" : "writes fsynced");
  Status load = service.LoadCollections();
  if (!load.ok()) spdlog::warn("some collections are degraded or failed to open: {}", load.ToString());
  server.Wait();
  router.reset();  // its loop calls into the service
  if (so.snapshots) {
    spdlog::info("writing index snapshots");
    (void)service.SaveSnapshots();  // each failure is logged; the next start rebuilds
  }
  spdlog::info("shut down");
  return 0;
}

}  // namespace

void AddServeCommand(CLI::App* app, int* exit_code) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* cmd = app->add_subcommand(
      "serve",
      "Run the HTTP service (docs/api.md). Listens on 127.0.0.1 by default; without an API key it "
      "refuses other addresses unless --allow-remote-without-key is given");
  AddDbOption(cmd, &a->db);
  cmd->add_option("--host", a->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", a->port, "TCP port (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--threads", a->threads, "I/O and request threads (0: one per core)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_option("--write-threads", a->write_threads,
                  "Threads that run write requests (inserts, deletes, creates, drops), so that the "
                  "I/O threads keep answering searches while writes wait on the disk; writes "
                  "waiting together share one fsync")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--write-queue", a->write_queue,
                  "Writes that may wait or run at once; beyond it a write is 503 with Retry-After")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--api-key", a->api_key,
                  "Admin API key: required for every route but /healthz and /readyz")
      ->envname("HAMDB_API_KEY");
  cmd->add_option("--read-api-key", a->read_api_key,
                  "Read-only API key: GET routes, searches and /metrics")
      ->envname("HAMDB_READ_API_KEY");
  cmd->add_flag("--allow-remote-without-key", a->allow_remote_without_key,
                "Allow a non-loopback --host without an API key (anyone who can reach the port "
                "can then read, write and drop collections)");
  cmd->add_option("--body-limit-mb", a->body_limit_mb, "Largest request body, MiB")
      ->check(CLI::Range(size_t{1}, size_t{4096}))
      ->capture_default_str();
  cmd->add_option("--read-timeout", a->read_timeout_s,
                  "Seconds a client may take to send one request (or idle between requests)")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  cmd->add_option("--drain-timeout", a->drain_timeout_s,
                  "Seconds to wait for requests in flight at shutdown")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  cmd->add_flag("--no-sync", a->no_sync,
                "Acknowledge writes without fsyncing the WAL (survives a killed process, not a "
                "power loss)");
  cmd->add_option("--max-k", a->max_k, "Largest k a search may ask for")
      ->check(CLI::Range(int64_t{1}, int64_t{100000000}))
      ->capture_default_str();
  cmd->add_option("--max-results", a->max_results,
                  "Most results in one response (a radius search, or a batch summed over its "
                  "queries); beyond it the response says \"truncated\": true")
      ->check(CLI::Range(size_t{1}, size_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--models-dir", a->models_dir,
                  "Directory whose regular files a collection create over HTTP may name as its "
                  "encoder (without it, such creates are refused); made at start-up when missing");
  cmd->add_option("--max-model-mb", a->max_model_mb, "Largest encoder file a create may name, MiB")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--backup-dir", a->backup_dir,
                  "Directory that POST /admin/backup (hamdb backup --url) writes backups to; "
                  "without it the route is refused");
  cmd->add_flag("--salvage-wal", a->salvage_wal,
                "Open a store whose write-ahead log is damaged: keep every batch before the "
                "damage and drop the rest (without it such a store refuses to open)");
  cmd->add_flag("--no-snapshots", a->no_snapshots,
                "Do not load or write index snapshots: every start rebuilds each index from the "
                "store");
  cmd->add_option("--snapshot-after-items", a->snapshot_after_items,
                  "Write a collection's index snapshot after this many items were written or "
                  "deleted since its last one")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 50))
      ->capture_default_str();
  cmd->add_option("--snapshot-interval", a->snapshot_interval_s,
                  "Seconds after which a changed collection's index is snapshotted anyway")
      ->check(CLI::Range(1.0, 1e7))
      ->capture_default_str();
  cmd->add_option("--cluster", a->cluster.etcd,
                  "Join the cluster coordinated by the etcd at this http://HOST:PORT (docs/cluster.md)");
  cmd->add_option("--node-id", a->cluster.node_id, "This node's id in the cluster (unique among live nodes)");
  cmd->add_option("--advertise", a->cluster.advertise,
                  "The http://HOST:PORT where the other nodes reach this one");
  cmd->add_option("--cluster-replace-after", a->cluster_replace_after_s,
                  "Seconds a node may be gone before the primaries make its shard copies again on other nodes "
                  "(0: never)")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  cmd->add_option("--cluster-lease-ttl", a->cluster.lease_ttl_s,
                  "Seconds after which a node that stopped renewing leaves the cluster")
      ->check(CLI::Range(2, 60))
      ->capture_default_str();
  cmd->add_option("--log-format", a->log_format, "Log lines as text or json (one object a line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->add_option("--log-level", a->log_level,
                  "trace, debug, info, warn, error, critical or off")
      ->capture_default_str();
  cmd->callback([a, exit_code] { *exit_code = RunServe(*a); });
}

}  // namespace hamdb::tools
