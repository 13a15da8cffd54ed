// Service: the hamdb HTTP API as a pure request -> response function, with
// no networking (http/server.h puts it on a socket). Keeping the two apart
// lets the API be tested without sockets and keeps Beast out of this file.
//
// The service owns the live collections of one CodeStore (a LiveCollection
// each: writes are durable in the store before the index changes and before
// the response is sent) and, for collections made from an image encoder, the
// loaded Encoder and its Codebook. Routes, parameters and errors are
// documented in docs/api.md and docs/openapi.yaml; every error body is
// {"error": {"code": "<snake_case>", "message": "..."}}.
//
// Life cycle: construct, then LoadCollections() (slow: rebuilds every index
// from the store, logging progress). Until it finishes, ready() is false and
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
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "db/code_store.h"
#include "db/live_collection.h"
#include "encoder/codebook.h"
#include "encoder/encoder.h"
#include "http/metrics.h"
#include "index/core/status.h"

namespace hamdb::http {

using EncoderLoader =
    std::function<StatusOr<std::shared_ptr<const Encoder>>(const std::string& path)>;

struct ServiceOptions {
  // Loads an encoder artifact; unset means image requests are refused (422).
  EncoderLoader encoder_loader;
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
  // Deepest JSON nesting accepted (bodies are pre-scanned before parsing).
  int max_json_depth = 64;
  // Threads one search may use (SearchParams::num_threads); the server's
  // own threads already run requests in parallel, so 1 is best under load.
  int search_threads = 1;
  // Largest decoded image, in pixels.
  size_t max_image_pixels = 16u << 20;
  // Log sink for start-up progress and failures; default: stderr.
  std::function<void(const std::string&)> log;
};

struct Request {
  std::string method;         // "GET", "POST", ...
  std::string target;         // path and query, as received
  std::string content_type;   // the Content-Type header, as received
  std::string authorization;  // the Authorization header
  std::string api_key;        // the api-key header
  std::string body;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
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
  bool ready() const { return ready_.load(std::memory_order_acquire); }

  // Answers one request. Never throws; every failure is an error response.
  Response Handle(const Request& request);

  // An error response in the common shape (also used by the server for
  // transport errors such as 413 and 408).
  static Response Error(int status, const std::string& code, const std::string& message);

  Metrics& metrics() { return metrics_; }

 private:
  struct Collection;
  struct Route;
  class Call;
  friend class Call;

  std::shared_ptr<Collection> FindCollection(const std::string& name) const;
  StatusOr<std::shared_ptr<Collection>> OpenCollection(const CollectionInfo& info);
  void Log(const std::string& line) const;

  CodeStore* store_;
  ServiceOptions options_;
  Metrics metrics_;
  std::atomic<bool> ready_{false};
  mutable std::shared_mutex collections_mu_;
  std::map<std::string, std::shared_ptr<Collection>> collections_;
  std::mutex admin_mu_;  // serialises create / drop
};

}  // namespace hamdb::http
