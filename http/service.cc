// The service's life cycle, the route table and the request helpers shared
// by the handlers.
#include "http/service.h"

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <exception>
#include <string_view>
#include <utility>

#include "core/binary_code.h"
#include "encoder/image.h"
#include "http/call.h"
#include "http/cluster.h"

namespace hamdb::http {

// ---------------------------------------------------------------------------
// Helpers shared by the handlers (http/call.h).

void Fail(int status, std::string code, std::string message) {
  throw ApiError{status, std::move(code), std::move(message)};
}

void FailStatus(const Status& s) {
  switch (s.code()) {
    case Status::Code::kInvalidArgument:
      Fail(422, "invalid_argument", s.message());
    case Status::Code::kNotFound:
      Fail(404, "not_found", s.message());
    case Status::Code::kAlreadyExists:
      Fail(409, "conflict", s.message());
    case Status::Code::kFailedPrecondition:
      Fail(422, "failed_precondition", s.message());
    case Status::Code::kNotSupported:
      Fail(422, "not_supported", s.message());
    case Status::Code::kResourceExhausted:
      Fail(503, "resource_exhausted", s.message());
    default:
      Fail(500, "internal", s.ToString());
  }
}

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

Response JsonResponse(int status, const json& body) {
  Response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

bool IsImageType(const std::string& media) {
  return media == "image/png" || media == "image/jpeg" || media == "image/jpg";
}

json QueryToJson(const std::map<std::string, std::string>& query) {
  json j = json::object();
  for (const auto& [key, value] : query) {
    if (key == "mode" || key == "tie_break") {
      j[key] = value;
    } else if (key == "filter") {
      j[key] = json::parse(value, nullptr, false);
      if (j[key].is_discarded()) Fail(400, "bad_request", "'filter' is not valid JSON");
    } else if (key == "with_metadata" || key == "thumbnails") {
      if (value != "true" && value != "false" && value != "1" && value != "0") {
        Fail(400, "bad_request", "'" + key + "' must be true or false");
      }
      j[key] = value == "true" || value == "1";
    } else if (key == "k" || key == "radius" || key == "nprobe" || key == "label") {
      int64_t v = 0;
      if (!ParseInt64(value, &v)) Fail(400, "bad_request", "'" + key + "' must be an integer");
      j[key] = v;
    } else if (key == "id") {
      uint64_t v = 0;
      if (!ParseUint64(value, &v)) Fail(400, "bad_request", "'id' must be an unsigned integer");
      j[key] = v;
    }
  }
  return j;
}

// ---------------------------------------------------------------------------
// Life cycle

Service::Service(CodeStore* store, ServiceOptions options)
    : store_(store), options_(std::move(options)) {}

Service::~Service() = default;

Response Service::Error(int status, const std::string& code, const std::string& message) {
  return JsonResponse(status, json{{"error", {{"code", code}, {"message", message}}}});
}

void Service::SetListenEndpoint(const std::string& address, uint16_t port) {
  std::lock_guard<std::mutex> lock(listen_mu_);
  listen_address_ = address;
  std::transform(listen_address_.begin(), listen_address_.end(), listen_address_.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  listen_port_ = port;
}

std::shared_ptr<Service::Collection> Service::FindCollection(const std::string& name) const {
  std::shared_lock<std::shared_mutex> lock(collections_mu_);
  auto it = collections_.find(name);
  return it == collections_.end() ? nullptr : it->second;
}

std::shared_ptr<Service::Collection> Service::OpenCollection(
    const std::string& name, std::shared_ptr<const Encoder> encoder) {
  auto c = std::make_shared<Collection>();
  c->name = name;
  LiveCollectionOptions lo;
  lo.encoder_loader = options_.encoder_loader;
  lo.encoder = std::move(encoder);
  lo.rebuild_delay = options_.rebuild_delay;
  lo.index_maker = options_.index_maker;
  lo.snapshots = options_.snapshots;
  lo.snapshot_after_items = options_.snapshot_after_items;
  lo.snapshot_interval = options_.snapshot_interval;
  const Clock::time_point t0 = Clock::now();
  int last_decile = -1;
  lo.progress = [&](uint64_t done, uint64_t total) {
    if (total < 100000) return;
    const int decile = static_cast<int>(done * 10 / std::max<uint64_t>(total, 1));
    if (decile != last_decile) {
      last_decile = decile;
      spdlog::info("collection '{}': read {} / {} codes ({}%)", name, done, total, decile * 10);
    }
  };
  StatusOr<std::unique_ptr<LiveCollection>> live = LiveCollection::Open(store_, name, lo);
  if (!live.ok()) {
    c->open_error = live.status();
    spdlog::error("collection '{}' failed to open: {}", name, c->open_error.ToString());
    return c;
  }
  c->live = std::move(live).value();
  const LiveCollection& l = *c->live;
  if (!l.encoder_error().ok()) {
    spdlog::warn("collection '{}': encoder '{}' unavailable, image requests will be refused: {}",
                 name, l.settings().encoder_path, l.encoder_error().ToString());
  }
  if (!l.degraded()) {
    spdlog::info("collection '{}': index {} {}, {} items, {:.1f} MiB, {:.2f} s", name,
                 l.spec().spec, l.open_info().from_snapshot ? "loaded from its snapshot" : "built",
                 l.index_size(), l.index_memory_bytes() / 1048576.0, MsSince(t0) / 1000.0);
  }
  return c;
}

Status Service::SaveSnapshots() {
  std::vector<std::shared_ptr<Collection>> open;
  {
    std::shared_lock<std::shared_mutex> lock(collections_mu_);
    for (const auto& [name, c] : collections_) {
      if (c->live && !c->live->degraded()) open.push_back(c);
    }
  }
  Status first_error;
  for (const auto& c : open) {
    Status s = c->live->SaveSnapshot();
    if (!s.ok()) {
      spdlog::warn("collection '{}': index snapshot failed: {}", c->name, s.ToString());
      if (first_error.ok()) first_error = s.WithContext(c->name);
    }
  }
  return first_error;
}

Status Service::LoadCollections() {
  StatusOr<std::vector<CollectionInfo>> infos = store_->ListCollections();
  if (!infos.ok()) return infos.status();
  spdlog::info("loading {} collection(s)", infos->size());
  Status first_error;
  for (const CollectionInfo& info : *infos) {
    spdlog::info("collection '{}': building index {} ({} bits)", info.name, info.index_spec,
                 info.bits);
    std::shared_ptr<Collection> c = OpenCollection(info.name);
    if (first_error.ok()) {
      if (!c->open_error.ok()) {
        first_error = c->open_error.WithContext(info.name);
      } else if (c->live->degraded()) {
        first_error = Status::Internal(c->live->health().reason).WithContext(info.name);
      }
    }
    std::unique_lock<std::shared_mutex> lock(collections_mu_);
    collections_[info.name] = std::move(c);
  }
  ready_.store(true, std::memory_order_release);
  spdlog::info("ready");
  return first_error;
}

Response Service::Handle(const Request& request) {
  const Clock::time_point t0 = Clock::now();
  std::string route = "unmatched";
  Response r;
  try {
    Call call(this, request);
    r = call.Run(&route);
  } catch (const ApiError& e) {
    r = Error(e.status, e.code, e.message);
  } catch (const json::exception& e) {
    r = Error(400, "bad_request", std::string("malformed JSON value: ") + e.what());
  } catch (const std::bad_alloc&) {
    r = Error(503, "resource_exhausted", "out of memory");
  } catch (const std::exception& e) {
    r = Error(500, "internal", e.what());
  } catch (...) {
    r = Error(500, "internal", "unknown exception");
  }
  metrics_.Record(route, request.method, r.status,
                  std::chrono::duration<double>(Clock::now() - t0).count());
  return r;
}

// ---------------------------------------------------------------------------
// Routing

namespace {

using Access = Service::Call::Access;

struct Route {
  std::string_view method;
  std::vector<std::string_view> pattern;  // "{}" matches any one segment
  std::string_view name;                  // the metrics label
  Access access;
  bool needs_ready;
  Response (Service::Call::*handler)();
  bool bulk = false;  // a read that runs off the I/O threads all the same
};

// Checked in order: the first route whose pattern and method match serves
// the request; a path that matches only with another method is 405.
const std::vector<Route>& RouteTable() {
  using C = Service::Call;
  static const std::vector<Route> table = {
      // The page and its files: public, so that a browser can load it and
      // then ask for the key.
      {"GET", {}, "/", Access::kPublic, false, &C::Page},
      {"GET", {"ui", "{}"}, "/ui/{file}", Access::kPublic, false, &C::UiFile},
      {"GET", {"healthz"}, "/healthz", Access::kPublic, false, &C::Healthz},
      {"GET", {"readyz"}, "/readyz", Access::kPublic, false, &C::Readyz},
      {"GET", {"metrics"}, "/metrics", Access::kRead, false, &C::MetricsText},
      {"GET", {"cluster"}, "/cluster", Access::kRead, false, &C::ClusterInfo},
      {"GET", {"collections"}, "/collections", Access::kRead, true, &C::ListCollections},
      {"POST", {"admin", "backup"}, "/admin/backup", Access::kAdmin, true, &C::Backup},
      {"PUT", {"admin", "models", "{}"}, "/admin/models/{file}", Access::kAdmin, false,
       &C::UploadModel},
      {"POST", {"collections"}, "/collections", Access::kAdmin, true, &C::CreateCollection},
      {"GET", {"collections", "{}"}, "/collections/{name}", Access::kRead, true,
       &C::DescribeCollection},
      {"DELETE", {"collections", "{}"}, "/collections/{name}", Access::kAdmin, true,
       &C::DropCollection},
      {"POST", {"collections", "{}", "items"}, "/collections/{name}/items", Access::kAdmin, true,
       &C::InsertItems},
      {"POST", {"collections", "{}", "items", "delete"}, "/collections/{name}/items/delete",
       Access::kAdmin, true, &C::DeleteItems},
      {"POST", {"collections", "{}", "items", "exists"}, "/collections/{name}/items/exists",
       Access::kRead, true, &C::ItemsExist, /*bulk=*/true},
      {"GET", {"collections", "{}", "encoder"}, "/collections/{name}/encoder", Access::kRead, true,
       &C::DownloadEncoder, /*bulk=*/true},
      {"GET", {"collections", "{}", "items", "{}"}, "/collections/{name}/items/{id}",
       Access::kRead, true, &C::GetItem},
      {"GET", {"collections", "{}", "items", "{}", "thumbnail"},
       "/collections/{name}/items/{id}/thumbnail", Access::kRead, true, &C::GetThumbnail},
      {"GET", {"collections", "{}", "sample"}, "/collections/{name}/sample", Access::kRead, true,
       &C::SampleItem},
      {"DELETE", {"collections", "{}", "items", "{}"}, "/collections/{name}/items/{id}",
       Access::kAdmin, true, &C::DeleteItem},
      {"POST", {"collections", "{}", "search"}, "/collections/{name}/search", Access::kRead, true,
       &C::Search},
      {"POST", {"collections", "{}", "sync"}, "/collections/{name}/sync", Access::kAdmin, true,
       &C::ClusterSync},
      {"POST", {"collections", "{}", "search", "batch"}, "/collections/{name}/search/batch",
       Access::kRead, true, &C::SearchBatch},
  };
  return table;
}

bool PatternMatches(const std::vector<std::string_view>& pattern,
                    const std::vector<std::string>& segments) {
  if (pattern.size() != segments.size()) return false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != "{}" && pattern[i] != segments[i]) return false;
  }
  return true;
}

}  // namespace

Response Service::Call::Run(std::string* route) {
  StatusOr<Target> t = ParseTarget(req_.target);
  if (!t.ok()) Fail(400, "bad_request", t.status().message());
  target_ = std::move(t).value();
  // HEAD is GET without a body (the server drops it).
  const std::string_view method = req_.method == "HEAD" ? "GET" : std::string_view(req_.method);
  std::string allowed;
  for (const Route& r : RouteTable()) {
    if (!PatternMatches(r.pattern, target_.segments)) continue;
    if (r.method != method) {
      if (allowed.find(r.method) == std::string::npos) {
        allowed += (allowed.empty() ? "" : ", ") + std::string(r.method);
      }
      continue;
    }
    *route = std::string(r.name);
    CheckHost();
    Authorize(r.access);
    if (r.needs_ready) RequireReady();
    if (RequestRouter* router = svc_->options_.router; router != nullptr && !req_.from_router) {
      std::optional<Response> routed = router->Route(req_, *route, target_.segments, target_.query);
      if (routed) return std::move(*routed);
    }
    return (this->*r.handler)();
  }
  if (!allowed.empty()) {
    CheckHost();
    Fail(405, "method_not_allowed",
         "method " + req_.method + " is not allowed here; allowed: " + allowed);
  }
  Fail(404, "not_found", "no route for " + req_.method + " " + req_.target);
}

namespace {

// RunsOffIoThreads for a parsed target.
bool RunsOffIoThreadsAt(const std::string& method, const std::vector<std::string>& segments) {
  const std::string_view m = method == "HEAD" ? "GET" : std::string_view(method);
  for (const Route& r : RouteTable()) {
    if (r.method == m && PatternMatches(r.pattern, segments)) {
      return r.bulk || (r.access == Access::kAdmin && m != "GET");
    }
  }
  return false;
}

}  // namespace

Lane Service::LaneOf(const std::string& method, const std::string& target) const {
  // Parsed once, for the router and the route table alike.
  StatusOr<Target> t = ParseTarget(target);
  if (!t.ok()) return Lane::kIo;
  if (options_.router != nullptr) {
    if (std::optional<Lane> lane = options_.router->LaneOf(method, t->segments, t->query)) return *lane;
  }
  return RunsOffIoThreadsAt(method, t->segments) ? Lane::kWrite : Lane::kIo;
}

bool Service::RunsOffIoThreads(const std::string& method, const std::string& target) {
  StatusOr<Target> t = ParseTarget(target);
  return t.ok() && RunsOffIoThreadsAt(method, t->segments);
}

namespace {

// A dotted IPv4 address: four decimal octets.
bool IsIpv4Literal(std::string_view s) {
  int parts = 0;
  while (true) {
    size_t digits = 0;
    int value = 0;
    while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) {
      value = value * 10 + (s[digits] - '0');
      if (++digits > 3) return false;
    }
    if (digits == 0 || value > 255) return false;
    ++parts;
    s.remove_prefix(digits);
    if (s.empty()) return parts == 4;
    if (s[0] != '.' || parts == 4) return false;
    s.remove_prefix(1);
  }
}

// A bracketed IPv6 address as in a Host header: "[" hex digits, ':' and '.' "]".
bool IsIpv6Literal(std::string_view s) {
  if (s.size() < 4 || s.front() != '[' || s.back() != ']') return false;
  for (char c : s.substr(1, s.size() - 2)) {
    if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
  }
  return true;
}

}  // namespace

void Service::Call::CheckHost() const {
  const ServiceOptions& o = svc_->options_;
  if (!o.admin_key.empty() || !o.read_key.empty() || req_.host.empty()) return;
  std::string address;
  uint16_t port = 0;
  {
    std::lock_guard<std::mutex> lock(svc_->listen_mu_);
    if (svc_->listen_port_ == 0) return;  // not on a socket (tests of Handle alone)
    address = svc_->listen_address_;
    port = svc_->listen_port_;
  }
  std::string host = req_.host;
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  // Split "name[:port]"; an IPv6 name is bracketed.
  std::string_view name = host;
  std::string_view port_text;
  const size_t colon = host.rfind(':');
  if (colon != std::string::npos && host.find(']', colon) == std::string::npos) {
    name = std::string_view(host).substr(0, colon);
    port_text = std::string_view(host).substr(colon + 1);
  }
  uint64_t given_port = 0;
  const bool port_ok = port_text.empty() ||
                       (ParseUint64(port_text, &given_port) && given_port == port);
  // DNS rebinding reaches the server under the attacker's host name; an IP
  // literal or a loopback name cannot be rebound.
  const bool v6_listen = address.find(':') != std::string::npos;
  const bool name_ok = name == "localhost" || IsIpv4Literal(name) || IsIpv6Literal(name) ||
                       name == (v6_listen ? "[" + address + "]" : address);
  if (name_ok && port_ok) return;
  Fail(403, "forbidden",
       "Host '" + req_.host +
           "' is not this server: without an API key only localhost, the listen address and IP "
           "addresses (bare or with the port " + std::to_string(port) + ") are served");
}

void Service::Call::Authorize(Access level) const {
  const ServiceOptions& o = svc_->options_;
  if (level == Access::kPublic || (o.admin_key.empty() && o.read_key.empty())) return;
  const std::string_view key = PresentedKey(req_);
  if (key.empty()) {
    Fail(401, "unauthorized", "an API key is required (Authorization: Bearer <key> or api-key)");
  }
  // Both comparisons always run, so timing does not tell which key matched.
  const bool admin = ConstantTimeEquals(key, o.admin_key);
  const bool read = ConstantTimeEquals(key, o.read_key);
  if (admin || (level == Access::kRead && read)) return;
  Fail(401, "unauthorized",
       read ? "the read-only key cannot do this; use the admin key" : "wrong API key");
}

void Service::Call::RequireReady() const {
  if (!svc_->ready()) Fail(503, "not_ready", "indexes are still being built; see /readyz");
}

Response Service::Call::ClusterSync() {
  // Answered by the cluster router (http/shard_router.h) when there is one.
  Fail(404, "not_found", "'/collections/{name}/sync' is a route between the nodes of a cluster");
}

Response Service::Call::Healthz() { return JsonResponse(200, {{"status", "ok"}}); }

Response Service::Call::Readyz() {
  if (!svc_->ready()) Fail(503, "not_ready", "indexes are still being built");
  return JsonResponse(200, {{"status", "ready"}});
}

Response Service::Call::ClusterInfo() {
  const ClusterMember* member = svc_->options_.cluster;
  if (member == nullptr) return JsonResponse(200, {{"mode", "single"}});
  const ClusterMember::View v = member->view();
  json nodes = json::array();
  for (const ClusterNode& n : v.nodes) nodes.push_back({{"node_id", n.node_id}, {"advertise", n.advertise}});
  const auto since = std::chrono::steady_clock::now() - v.last_contact;
  return JsonResponse(200, {{"mode", "cluster"},
                            {"node_id", member->options().node_id},
                            {"advertise", member->options().advertise},
                            {"etcd", member->options().etcd},
                            {"etcd_reachable", v.etcd_reachable},
                            {"last_etcd_contact_ms",
                             std::chrono::duration_cast<std::chrono::milliseconds>(since).count()},
                            {"nodes", nodes}});
}

Response Service::Call::MetricsText() {
  std::vector<CollectionGauge> gauges;
  {
    std::shared_lock<std::shared_mutex> lock(svc_->collections_mu_);
    for (const auto& [name, c] : svc_->collections_) {
      if (!c->live) continue;
      gauges.push_back({name, c->live->spec().spec, c->live->index_size(),
                        c->live->index_memory_bytes(), c->live->write_stats()});
    }
  }
  Response r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = svc_->metrics_.Render(gauges, svc_->ready());
  return r;
}

// ---------------------------------------------------------------------------
// Request helpers

json ParseJsonObject(const Request& req, int max_depth) {
  const std::string media = MediaType(req.content_type);
  if (media != "application/json") {
    Fail(415, "unsupported_media_type",
         "expected Content-Type application/json" +
             (media.empty() ? std::string() : ", got " + media));
  }
  if (!JsonDepthWithin(req.body, max_depth)) {
    Fail(400, "bad_request",
         "JSON nested deeper than " + std::to_string(max_depth) + " levels");
  }
  json j;
  try {
    j = json::parse(req.body);
  } catch (const json::parse_error& e) {
    // NaN and Infinity are not JSON, but some encoders write them for
    // non-finite floats: say so, as for any other non-finite number.
    const size_t at = e.byte > 12 ? e.byte - 12 : 0;
    const std::string near = req.body.substr(at, 24);
    if (near.find("NaN") != std::string::npos || near.find("Infinity") != std::string::npos) {
      Fail(422, "invalid_argument",
           "numbers must be finite: NaN and Infinity (near byte " + std::to_string(e.byte) +
               ") are not JSON numbers");
    }
    Fail(400, "bad_request", "the body is not valid JSON");
  }
  if (!j.is_object()) Fail(400, "bad_request", "the body must be a JSON object");
  return j;
}

json Service::Call::ParseJsonBody() const { return ParseJsonObject(req_, svc_->options_.max_json_depth); }

std::string_view PresentedKey(const Request& r) {
  if (!r.api_key.empty()) return r.api_key;
  std::string_view auth = r.authorization;
  if (auth.size() > 7 && (auth.substr(0, 7) == "Bearer " || auth.substr(0, 7) == "bearer ")) return auth.substr(7);
  return {};
}

std::shared_ptr<Service::Collection> Service::Call::GetCollection() const {
  std::shared_ptr<Collection> c = svc_->FindCollection(name());
  if (!c) Fail(404, "not_found", "no collection '" + name() + "'");
  if (!c->live) {
    Fail(503, "collection_unavailable",
         "collection '" + name() + "' failed to open: " + c->open_error.ToString());
  }
  return c;
}

std::vector<uint8_t> Service::Call::ParseCodeField(const json& v, int bits,
                                                   const std::string& what) const {
  if (!v.is_string()) Fail(400, "bad_request", what + " must be a hex or 0/1 string");
  StatusOr<std::vector<uint8_t>> code = ParseCode(v.get_ref<const std::string&>(), bits);
  if (!code.ok()) {
    Fail(422, "invalid_code",
         what + ": " + code.status().message() + " (the collection has " + std::to_string(bits) +
             "-bit codes)");
  }
  return std::move(code).value();
}

bool Service::Call::NotModified(std::string_view body, Response* r) const {
  char tag[24];
  std::snprintf(tag, sizeof tag, "\"%016llx\"",
                static_cast<unsigned long long>(XXH3_64bits(body.data(), body.size())));
  r->headers.emplace_back("ETag", tag);
  // Cached, but checked with the server before each use: an upsert may
  // replace what a URL names.
  r->headers.emplace_back("Cache-Control", "private, no-cache");
  const std::string_view match = req_.if_none_match;
  if (match != "*" && match.find(tag) == std::string_view::npos) return false;
  r->status = 304;
  r->content_type.clear();
  return true;
}

EncodedImage Service::Call::EncodeImage(const LiveCollection& c, const uint8_t* data, size_t n,
                                        std::string* thumbnail) const {
  if (!c.encoder()) {
    if (c.settings().encoder_path.empty()) {
      Fail(422, "no_encoder",
           "collection '" + c.info().name +
               "' was not created with an encoder; send codes instead of images");
    }
    Fail(422, "encoder_unavailable",
         "the encoder of collection '" + c.info().name +
             "' could not be loaded: " + c.encoder_error().ToString());
  }
  StatusOr<Image> image = DecodeImage(data, n, svc_->options_.max_image_pixels);
  if (!image.ok()) Fail(422, "invalid_image", image.status().message());
  if (thumbnail != nullptr) {
    StatusOr<std::vector<uint8_t>> t = MakeThumbnail(*image, data, n);
    if (!t.ok()) Fail(422, "invalid_image", t.status().message());
    thumbnail->assign(t->begin(), t->end());
  }
  StatusOr<std::vector<EncodedImage>> enc = c.encoder()->Encode({std::move(image).value()});
  if (!enc.ok()) {
    if (enc.status().code() == Status::Code::kInvalidArgument) {
      Fail(422, "invalid_image", enc.status().message());
    }
    FailStatus(enc.status());
  }
  if (enc->size() != 1 || (*enc)[0].code.size() != code_bytes(c.bits())) {
    Fail(500, "internal", "the encoder returned a code of the wrong size");
  }
  return std::move((*enc)[0]);
}

}  // namespace hamdb::http
