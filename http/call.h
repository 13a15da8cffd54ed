// Private to http/: one request in flight. The route table (service.cc)
// picks a handler; the handlers live one file per resource
// (collections_routes.cc, items_routes.cc, search_routes.cc) and share the
// parsing helpers declared here.
//
// Inside http/ a failed request is an ApiError thrown from the depth of the
// parsing code and caught in Service::Handle, the only entry point; it never
// crosses the Service API.
#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "collection/live_collection.h"
#include "http/http_util.h"
#include "http/service.h"

namespace hamdb::http {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct ApiError {
  int status;
  std::string code;
  std::string message;
};

[[noreturn]] void Fail(int status, std::string code, std::string message);
// The HTTP status for a Status from the layers below.
[[noreturn]] void FailStatus(const Status& s);
inline void Check(const Status& s) {
  if (!s.ok()) FailStatus(s);
}
template <typename T>
T ValueOr(StatusOr<T> s) {
  if (!s.ok()) FailStatus(s.status());
  return std::move(s).value();
}

double MsSince(Clock::time_point t0);
Response JsonResponse(int status, const json& body);
bool IsImageType(const std::string& media);
// The parameters of a raw image body, from the query string: k, radius,
// nprobe, label (integers), id (unsigned), mode, tie_break, with_metadata
// and thumbnails (booleans), filter (JSON text). 400 for a malformed value.
json QueryToJson(const std::map<std::string, std::string>& query);

// The body of a JSON request as an object: 415 for another media type, 400
// for JSON nested deeper than max_depth (checked before parsing), malformed
// or not an object, 422 for NaN / Infinity.
json ParseJsonObject(const Request& req, int max_depth);
// The API key a request presents: its api-key header, else the Bearer token
// of its Authorization header; empty when none.
std::string_view PresentedKey(const Request& r);

// Resolves a client-given encoder path inside `models_dir`: only regular
// files under it, at most max_bytes (422 otherwise). The error never tells
// whether a path outside the directory exists.
std::string ResolveModelPath(const std::string& requested, const std::string& models_dir, uint64_t max_bytes);
// The bytes of an artifact of at most max_bytes.
StatusOr<std::string> ReadArtifact(const std::string& path, uint64_t max_bytes);

// A collection as the service holds it.
struct Service::Collection {
  std::string name;
  std::unique_ptr<LiveCollection> live;  // null only when the store failed
  Status open_error;
  // Writers hold it shared; a drop takes it exclusively and sets `dropped`,
  // so no write lands in the store after (or during) the collection's drop.
  std::shared_mutex life_mu;
  bool dropped = false;
};

class Service::Call {
 public:
  Call(Service* s, const Request& r) : svc_(s), req_(r) {}

  enum class Access { kPublic, kRead, kAdmin };

  Response Run(std::string* route);

  // Handlers, one per route (see the route table in service.cc).
  // service.cc
  Response Healthz();
  Response Readyz();
  Response MetricsText();
  Response ClusterInfo();
  Response ClusterSync();
  // collections_routes.cc
  Response ListCollections();
  Response CreateCollection();
  Response DescribeCollection();
  Response DropCollection();
  Response DownloadEncoder();
  // items_routes.cc
  Response InsertItems();
  Response GetItem();
  Response DeleteItem();
  Response DeleteItems();
  Response ItemsExist();
  Response GetThumbnail();
  Response SampleItem();
  // ui_routes.cc
  Response Page();
  Response UiFile();
  // search_routes.cc
  Response Search();
  Response SearchBatch();
  // admin_routes.cc
  Response Backup();
  Response UploadModel();

 private:
  void CheckHost() const;
  void Authorize(Access level) const;
  void RequireReady() const;

  // Body helpers.
  json ParseJsonBody() const;
  // The collection named by the route; 404 / 503 when missing or unusable.
  std::shared_ptr<Collection> GetCollection() const;
  std::vector<uint8_t> ParseCodeField(const json& v, int bits, const std::string& what) const;
  // Decodes and encodes one image; *thumbnail (optional) gets its thumbnail.
  EncodedImage EncodeImage(const LiveCollection& c, const uint8_t* data, size_t n,
                           std::string* thumbnail = nullptr) const;
  json Describe(const Collection& c) const;
  // The route's {name} and {id} segments.
  const std::string& name() const { return target_.segments[1]; }
  const std::string& item_id() const { return target_.segments[3]; }
  // An ETag for `body`, and whether the request's If-None-Match holds it;
  // `r` gets the ETag and cache headers, and when it matches, status 304
  // with no content type (the caller then returns r as it is).
  bool NotModified(std::string_view body, Response* r) const;

  Service* svc_;
  const Request& req_;
  Target target_;
};

}  // namespace hamdb::http
