#include "http/service.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "encoder/collection_encoding.h"
#include "encoder/image.h"
#include "http/http_util.h"
#include "index/core/binary_code.h"

namespace hamdb::http {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// Inside this file a failed request is an ApiError thrown from the depth of
// the parsing code and caught in Service::Handle, the only entry point; it
// never crosses the Service API.
struct ApiError {
  int status;
  std::string code;
  std::string message;
};

[[noreturn]] void Fail(int status, std::string code, std::string message) {
  throw ApiError{status, std::move(code), std::move(message)};
}

// The HTTP status for a Status from db/, index/ or encoder/.
[[noreturn]] void FailStatus(const Status& s) {
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

template <typename T>
T ValueOr(StatusOr<T> s) {
  if (!s.ok()) FailStatus(s.status());
  return std::move(s).value();
}

void Check(const Status& s) {
  if (!s.ok()) FailStatus(s);
}

enum class Access { kPublic, kRead, kAdmin };

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

Response JsonResponse(int status, const json& body) {
  Response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

// The family of an index spec, which is what a request's `mode` selects.
std::string IndexFamily(const std::string& spec) {
  if (spec == "GPUFlat") return "gpu";
  if (spec.rfind("Bucket", 0) == 0) return "bucket";
  if (spec.rfind("IVF", 0) == 0) return "ivf";
  return "exact";  // Flat, MIH, MIH<m>
}

bool IsImageType(const std::string& media) {
  return media == "image/png" || media == "image/jpeg" || media == "image/jpg";
}

}  // namespace

struct Service::Collection {
  CollectionInfo info;
  std::unique_ptr<LiveCollection> live;  // null when the open failed
  Status open_error;
  std::string encoder_path;                // empty: not made by an encoder
  std::shared_ptr<const Encoder> encoder;  // null: none, or failed to load
  Status encoder_error;
  std::optional<Codebook> codebook;  // from the settings
  // Writers hold it shared; a drop takes it exclusively and sets `dropped`,
  // so no write lands in the store after (or during) the collection's drop.
  std::shared_mutex life_mu;
  bool dropped = false;
};

// One request in flight: parsing helpers and the route handlers.
class Service::Call {
 public:
  Call(Service* s, const Request& r) : svc_(s), req_(r) {}

  Response Run(std::string* route);

 private:
  // Routing and access.
  void Authorize(Access level) const;
  void RequireReady() const;
  [[noreturn]] void MethodNotAllowed(const char* allowed) const {
    Fail(405, "method_not_allowed",
         "method " + req_.method + " is not allowed here; allowed: " + allowed);
  }

  // Body helpers.
  json ParseJsonBody() const;
  std::shared_ptr<Collection> GetCollection(const std::string& name) const;
  std::vector<uint8_t> ParseCodeField(const json& v, int bits, const std::string& what) const;
  EncodedImage EncodeImage(const Collection& c, const uint8_t* data, size_t n) const;

  // Handlers.
  Response ListCollections();
  Response CreateCollection();
  Response DescribeCollection(const std::string& name);
  Response DropCollection(const std::string& name);
  Response InsertItems(const std::string& name);
  Response GetItem(const std::string& name, const std::string& id_text);
  Response DeleteItem(const std::string& name, const std::string& id_text);
  Response DeleteItems(const std::string& name);
  Response Search(const std::string& name);
  Response SearchBatch(const std::string& name);

  json Describe(const Collection& c) const;

  Service* svc_;
  const Request& req_;
  Target target_;
};

namespace {

struct SearchOptions {
  std::optional<size_t> k;
  std::optional<uint32_t> radius;
  std::string mode;  // "" = the collection's index as it is
  int nprobe = 0;
  bool with_metadata = false;
};

// Reads k / radius / mode / nprobe / with_metadata from a JSON object.
SearchOptions ParseSearchOptions(const json& j, int64_t max_k) {
  SearchOptions o;
  if (auto it = j.find("k"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) Fail(400, "bad_request", "'k' must be an integer");
    const int64_t k = it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(max_k)
                          ? max_k + 1
                          : it->get<int64_t>();
    if (k < 1 || k > max_k) {
      Fail(422, "invalid_argument",
           "'k' must be between 1 and " + std::to_string(max_k) + ", got " + it->dump());
    }
    o.k = static_cast<size_t>(k);
  }
  if (auto it = j.find("radius"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) Fail(400, "bad_request", "'radius' must be an integer");
    if (it->is_number_unsigned() ? false : it->get<int64_t>() < 0) {
      Fail(422, "invalid_argument", "'radius' must be >= 0, got " + it->dump());
    }
    const uint64_t r = it->get<uint64_t>();
    o.radius = static_cast<uint32_t>(std::min<uint64_t>(r, kMaxCodeBits));
  }
  if (auto it = j.find("mode"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) Fail(400, "bad_request", "'mode' must be a string");
    o.mode = it->get<std::string>();
  }
  if (auto it = j.find("nprobe"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) Fail(400, "bad_request", "'nprobe' must be an integer");
    const int64_t p = it->get<int64_t>();
    if (p < -1 || p > (1 << 24)) {
      Fail(422, "invalid_argument", "'nprobe' must be -1 (until exact), 0 (default) or positive");
    }
    o.nprobe = static_cast<int>(p);
  }
  if (auto it = j.find("with_metadata"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) Fail(400, "bad_request", "'with_metadata' must be true or false");
    o.with_metadata = it->get<bool>();
  }
  if (!o.k && !o.radius) o.k = 10;
  return o;
}

// The same parameters from a query string (raw image bodies).
json QueryToJson(const std::map<std::string, std::string>& query) {
  json j = json::object();
  for (const auto& [key, value] : query) {
    if (key == "mode") {
      j[key] = value;
    } else if (key == "with_metadata") {
      if (value != "true" && value != "false" && value != "1" && value != "0") {
        Fail(400, "bad_request", "'with_metadata' must be true or false");
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

}  // namespace

// ---------------------------------------------------------------------------

Service::Service(CodeStore* store, ServiceOptions options)
    : store_(store), options_(std::move(options)) {}

Service::~Service() = default;

void Service::Log(const std::string& line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

Response Service::Error(int status, const std::string& code, const std::string& message) {
  return JsonResponse(status, json{{"error", {{"code", code}, {"message", message}}}});
}

std::shared_ptr<Service::Collection> Service::FindCollection(const std::string& name) const {
  std::shared_lock<std::shared_mutex> lock(collections_mu_);
  auto it = collections_.find(name);
  return it == collections_.end() ? nullptr : it->second;
}

StatusOr<std::shared_ptr<Service::Collection>> Service::OpenCollection(const CollectionInfo& info) {
  auto c = std::make_shared<Collection>();
  c->info = info;
  StatusOr<std::string> path = EncoderPathFromSettingsJson(info.settings_json);
  if (path.ok()) c->encoder_path = *path;
  StatusOr<Codebook> codebook = CodebookFromSettingsJson(info.settings_json);
  if (codebook.ok()) c->codebook = std::move(codebook).value();
  if (!c->encoder_path.empty()) {
    if (!options_.encoder_loader) {
      c->encoder_error = Status::NotSupported("this server was started without encoder support");
    } else {
      StatusOr<std::shared_ptr<const Encoder>> enc = options_.encoder_loader(c->encoder_path);
      if (enc.ok() && *enc && (*enc)->bits() == info.bits) {
        c->encoder = std::move(enc).value();
      } else {
        c->encoder_error = enc.ok()
                               ? Status::InvalidArgument("encoder bits do not match the collection")
                               : enc.status();
        Log("collection '" + info.name + "': encoder '" + c->encoder_path +
            "' unavailable, image requests will be refused: " + c->encoder_error.ToString());
      }
    }
  }

  LiveCollectionOptions lo;
  const Clock::time_point t0 = Clock::now();
  int last_decile = -1;
  lo.progress = [&](uint64_t done, uint64_t total) {
    if (total < 100000) return;
    const int decile = static_cast<int>(done * 10 / std::max<uint64_t>(total, 1));
    if (decile != last_decile) {
      last_decile = decile;
      Log("collection '" + info.name + "': read " + std::to_string(done) + " / " +
          std::to_string(total) + " codes (" + std::to_string(decile * 10) + "%)");
    }
  };
  StatusOr<std::unique_ptr<LiveCollection>> live = LiveCollection::Open(store_, info.name, lo);
  if (!live.ok()) {
    c->open_error = live.status();
    return c;
  }
  c->live = std::move(live).value();
  char buf[256];
  std::snprintf(buf, sizeof(buf), "collection '%s': index %s built, %zu items, %.1f MiB, %.2f s",
                info.name.c_str(), c->live->index().spec().c_str(), c->live->index().size(),
                c->live->index().memory_bytes() / 1048576.0, MsSince(t0) / 1000.0);
  Log(buf);
  return c;
}

Status Service::LoadCollections() {
  StatusOr<std::vector<CollectionInfo>> infos = store_->ListCollections();
  if (!infos.ok()) return infos.status();
  Log("loading " + std::to_string(infos->size()) + " collection(s)");
  Status first_error;
  for (const CollectionInfo& info : *infos) {
    Log("collection '" + info.name + "': rebuilding index " + info.index_spec + " (" +
        std::to_string(info.bits) + " bits)");
    StatusOr<std::shared_ptr<Collection>> c = OpenCollection(info);
    if (!c.ok()) return c.status();
    if (!(*c)->open_error.ok()) {
      Log("collection '" + info.name + "' failed to open: " + (*c)->open_error.ToString());
      if (first_error.ok()) first_error = (*c)->open_error.WithContext(info.name);
    }
    std::unique_lock<std::shared_mutex> lock(collections_mu_);
    collections_[info.name] = std::move(c).value();
  }
  ready_.store(true, std::memory_order_release);
  Log("ready");
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

Response Service::Call::Run(std::string* route) {
  StatusOr<Target> t = ParseTarget(req_.target);
  if (!t.ok()) Fail(400, "bad_request", t.status().message());
  target_ = std::move(t).value();
  const std::vector<std::string>& seg = target_.segments;
  const std::string& m = req_.method;
  const size_t n = seg.size();

  if (n == 1 && seg[0] == "healthz") {
    *route = "/healthz";
    if (m != "GET" && m != "HEAD") MethodNotAllowed("GET");
    return JsonResponse(200, {{"status", "ok"}});
  }
  if (n == 1 && seg[0] == "readyz") {
    *route = "/readyz";
    if (m != "GET" && m != "HEAD") MethodNotAllowed("GET");
    if (!svc_->ready()) Fail(503, "not_ready", "indexes are still being built");
    return JsonResponse(200, {{"status", "ready"}});
  }
  if (n == 1 && seg[0] == "metrics") {
    *route = "/metrics";
    if (m != "GET") MethodNotAllowed("GET");
    Authorize(Access::kRead);
    std::vector<CollectionGauge> gauges;
    {
      std::shared_lock<std::shared_mutex> lock(svc_->collections_mu_);
      for (const auto& [name, c] : svc_->collections_) {
        if (!c->live) continue;
        gauges.push_back({name, c->live->index().spec(), c->live->index().size(),
                          c->live->index().memory_bytes()});
      }
    }
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = svc_->metrics_.Render(gauges, svc_->ready());
    return r;
  }
  if (n >= 1 && seg[0] == "collections") {
    if (n == 1) {
      *route = "/collections";
      if (m == "GET") {
        Authorize(Access::kRead);
        RequireReady();
        return ListCollections();
      }
      if (m == "POST") {
        Authorize(Access::kAdmin);
        RequireReady();
        return CreateCollection();
      }
      MethodNotAllowed("GET, POST");
    }
    const std::string& name = seg[1];
    if (n == 2) {
      *route = "/collections/{name}";
      if (m == "GET") {
        Authorize(Access::kRead);
        RequireReady();
        return DescribeCollection(name);
      }
      if (m == "DELETE") {
        Authorize(Access::kAdmin);
        RequireReady();
        return DropCollection(name);
      }
      MethodNotAllowed("GET, DELETE");
    }
    if (seg[2] == "items") {
      if (n == 3) {
        *route = "/collections/{name}/items";
        if (m != "POST") MethodNotAllowed("POST");
        Authorize(Access::kAdmin);
        RequireReady();
        return InsertItems(name);
      }
      if (n == 4 && seg[3] == "delete" && m == "POST") {
        *route = "/collections/{name}/items/delete";
        Authorize(Access::kAdmin);
        RequireReady();
        return DeleteItems(name);
      }
      if (n == 4) {
        *route = "/collections/{name}/items/{id}";
        if (m == "GET") {
          Authorize(Access::kRead);
          RequireReady();
          return GetItem(name, seg[3]);
        }
        if (m == "DELETE") {
          Authorize(Access::kAdmin);
          RequireReady();
          return DeleteItem(name, seg[3]);
        }
        MethodNotAllowed("GET, DELETE");
      }
    }
    if (seg[2] == "search") {
      if (n == 3) {
        *route = "/collections/{name}/search";
        if (m != "POST") MethodNotAllowed("POST");
        Authorize(Access::kRead);
        RequireReady();
        return Search(name);
      }
      if (n == 4 && seg[3] == "batch") {
        *route = "/collections/{name}/search/batch";
        if (m != "POST") MethodNotAllowed("POST");
        Authorize(Access::kRead);
        RequireReady();
        return SearchBatch(name);
      }
    }
  }
  Fail(404, "not_found", "no route for " + req_.method + " " + req_.target);
}

void Service::Call::Authorize(Access level) const {
  const ServiceOptions& o = svc_->options_;
  if (level == Access::kPublic || (o.admin_key.empty() && o.read_key.empty())) return;
  std::string_view key = req_.api_key;
  if (key.empty()) {
    std::string_view auth = req_.authorization;
    if (auth.size() > 7 && (auth.substr(0, 7) == "Bearer " || auth.substr(0, 7) == "bearer ")) {
      key = auth.substr(7);
    }
  }
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

json Service::Call::ParseJsonBody() const {
  const std::string media = MediaType(req_.content_type);
  if (media != "application/json") {
    Fail(415, "unsupported_media_type",
         "expected Content-Type application/json" +
             (media.empty() ? std::string() : ", got " + media));
  }
  if (!JsonDepthWithin(req_.body, svc_->options_.max_json_depth)) {
    Fail(400, "bad_request",
         "JSON nested deeper than " + std::to_string(svc_->options_.max_json_depth) + " levels");
  }
  json j = json::parse(req_.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) Fail(400, "bad_request", "the body is not valid JSON");
  if (!j.is_object()) Fail(400, "bad_request", "the body must be a JSON object");
  return j;
}

std::shared_ptr<Service::Collection> Service::Call::GetCollection(const std::string& name) const {
  std::shared_ptr<Collection> c = svc_->FindCollection(name);
  if (!c) Fail(404, "not_found", "no collection '" + name + "'");
  if (!c->live) {
    Fail(503, "collection_unavailable",
         "collection '" + name + "' failed to open: " + c->open_error.ToString());
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

EncodedImage Service::Call::EncodeImage(const Collection& c, const uint8_t* data, size_t n) const {
  if (!c.encoder) {
    if (c.encoder_path.empty()) {
      Fail(422, "no_encoder",
           "collection '" + c.info.name +
               "' was not created with an encoder; send codes instead of images");
    }
    Fail(422, "encoder_unavailable",
         "the encoder of collection '" + c.info.name +
             "' could not be loaded: " + c.encoder_error.ToString());
  }
  StatusOr<Image> image = DecodeImage(data, n, svc_->options_.max_image_pixels);
  if (!image.ok()) Fail(422, "invalid_image", image.status().message());
  StatusOr<std::vector<EncodedImage>> enc = c.encoder->Encode({std::move(image).value()});
  if (!enc.ok()) {
    if (enc.status().code() == Status::Code::kInvalidArgument) {
      Fail(422, "invalid_image", enc.status().message());
    }
    FailStatus(enc.status());
  }
  if (enc->size() != 1 || (*enc)[0].code.size() != code_bytes(c.info.bits)) {
    Fail(500, "internal", "the encoder returned a code of the wrong size");
  }
  return std::move((*enc)[0]);
}

// ---------------------------------------------------------------------------
// Collections

json Service::Call::Describe(const Collection& c) const {
  json j = {{"name", c.info.name}, {"bits", c.info.bits}, {"index", c.info.index_spec}};
  if (c.live) {
    j["status"] = "ready";
    j["index"] = c.live->index().spec();
    j["items"] = c.live->index().size();
    j["index_memory_bytes"] = c.live->index().memory_bytes();
    j["search_mode"] = IndexFamily(c.live->index().spec());
  } else {
    j["status"] = "error";
    j["error"] = c.open_error.ToString();
  }
  j["encoder"] = c.encoder_path.empty() ? json(nullptr) : json(c.encoder_path);
  if (!c.encoder_path.empty()) j["encoder_loaded"] = c.encoder != nullptr;
  if (c.codebook) {
    j["classes"] = c.codebook->num_classes();
    j["class_names"] = c.codebook->class_names();
  }
  return j;
}

Response Service::Call::ListCollections() {
  std::vector<std::shared_ptr<Collection>> all;
  {
    std::shared_lock<std::shared_mutex> lock(svc_->collections_mu_);
    for (const auto& [name, c] : svc_->collections_) all.push_back(c);
  }
  json list = json::array();
  for (const auto& c : all) list.push_back(Describe(*c));
  return JsonResponse(200, {{"collections", list}});
}

Response Service::Call::DescribeCollection(const std::string& name) {
  std::shared_ptr<Collection> c = svc_->FindCollection(name);
  if (!c) Fail(404, "not_found", "no collection '" + name + "'");
  return JsonResponse(200, Describe(*c));
}

Response Service::Call::CreateCollection() {
  const json j = ParseJsonBody();
  auto name_it = j.find("name");
  if (name_it == j.end() || !name_it->is_string()) {
    Fail(400, "bad_request", "'name' (a string) is required");
  }
  const std::string name = name_it->get<std::string>();
  Check(ValidateCollectionName(name));
  std::string index_spec = "MIH";
  if (auto it = j.find("index"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) Fail(400, "bad_request", "'index' must be a string such as \"MIH\"");
    index_spec = it->get<std::string>();
  }
  std::optional<int64_t> bits;
  if (auto it = j.find("bits"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) Fail(400, "bad_request", "'bits' must be an integer");
    bits = it->is_number_unsigned() && it->get<uint64_t>() > 1000000 ? 1000001 : it->get<int64_t>();
  }
  std::string settings = "{}";
  if (auto it = j.find("encoder"); it != j.end() && !it->is_null()) {
    if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
      Fail(400, "bad_request", "'encoder' must be the path of an encoder artifact");
    }
    const std::string path = it->get<std::string>();
    if (!svc_->options_.encoder_loader) {
      Fail(422, "not_supported", "this server was started without encoder support");
    }
    StatusOr<std::shared_ptr<const Encoder>> enc = svc_->options_.encoder_loader(path);
    if (!enc.ok()) {
      Fail(422, "invalid_encoder",
           "cannot load encoder '" + path + "': " + enc.status().ToString());
    }
    if (bits && *bits != (*enc)->bits()) {
      Fail(422, "invalid_argument",
           "'bits' is " + std::to_string(*bits) + " but the encoder makes " +
               std::to_string((*enc)->bits()) + "-bit codes");
    }
    bits = (*enc)->bits();
    settings = EncoderSettingsJson(path, (*enc)->codebook());
  }
  if (!bits) Fail(400, "bad_request", "'bits' is required (or 'encoder')");
  if (*bits < 1 || *bits > kMaxCodeBits) {
    Fail(422, "invalid_argument", "'bits' must be between 1 and " + std::to_string(kMaxCodeBits));
  }
  // Check the spec before anything is written, so a bad spec leaves no trace.
  {
    IndexOptions io;
    if (index_spec.rfind("Bucket", 0) == 0) {
      StatusOr<std::vector<uint8_t>> cb =
          CodebookCodesFromSettings(settings, static_cast<int>(*bits));
      if (cb.ok()) io.codebook = std::move(cb).value();
    }
    StatusOr<std::unique_ptr<BinaryIndex>> probe =
        MakeIndex(index_spec, static_cast<int>(*bits), io);
    if (!probe.ok()) Fail(422, "invalid_index", probe.status().message());
  }

  std::lock_guard<std::mutex> admin(svc_->admin_mu_);
  if (svc_->FindCollection(name)) Fail(409, "conflict", "collection '" + name + "' already exists");
  CollectionSpec spec;
  spec.name = name;
  spec.bits = static_cast<int>(*bits);
  spec.index_spec = index_spec;
  spec.settings_json = settings;
  Check(svc_->store_->CreateCollection(spec, StoreWriteOptions{svc_->options_.sync_writes}));
  CollectionInfo info = ValueOr(svc_->store_->GetCollection(name));
  std::shared_ptr<Collection> c = ValueOr(svc_->OpenCollection(info));
  if (!c->live) {
    // Should not happen after the probe above; undo so the name is reusable.
    Status undo = svc_->store_->DropCollection(name);
    (void)undo;
    FailStatus(c->open_error);
  }
  {
    std::unique_lock<std::shared_mutex> lock(svc_->collections_mu_);
    svc_->collections_[name] = c;
  }
  return JsonResponse(201, Describe(*c));
}

Response Service::Call::DropCollection(const std::string& name) {
  std::lock_guard<std::mutex> admin(svc_->admin_mu_);
  std::shared_ptr<Collection> c = svc_->FindCollection(name);
  if (!c) Fail(404, "not_found", "no collection '" + name + "'");
  {
    std::unique_lock<std::shared_mutex> life(c->life_mu);  // waits for writes in flight
    c->dropped = true;
    Status s = svc_->store_->DropCollection(name, StoreWriteOptions{svc_->options_.sync_writes});
    if (!s.ok() && s.code() != Status::Code::kNotFound) {
      c->dropped = false;
      FailStatus(s);
    }
  }
  {
    std::unique_lock<std::shared_mutex> lock(svc_->collections_mu_);
    svc_->collections_.erase(name);
  }
  return JsonResponse(200, {{"dropped", name}});
}

// ---------------------------------------------------------------------------
// Items

Response Service::Call::InsertItems(const std::string& name) {
  std::shared_ptr<Collection> c = GetCollection(name);
  const int bits = c->info.bits;
  const std::string media = MediaType(req_.content_type);
  std::vector<ItemInput> items;
  bool bare_codes = true;  // only codes (and ids): the store's fast path

  auto add_image = [&](const uint8_t* data, size_t n, std::optional<uint64_t> id,
                       std::optional<int64_t> label, const std::string& extra_meta) {
    EncodedImage e = EncodeImage(*c, data, n);
    const Codebook& book = c->codebook ? *c->codebook : c->encoder->codebook();
    StatusOr<ItemInput> item = MakeImageItem(e, book, id, label, "", extra_meta);
    if (!item.ok()) Fail(422, "invalid_argument", item.status().message());
    items.push_back(std::move(item).value());
    bare_codes = false;
  };

  if (IsImageType(media)) {
    const json q = QueryToJson(target_.query);
    std::optional<uint64_t> id;
    std::optional<int64_t> label;
    if (q.contains("id")) id = q["id"].get<uint64_t>();
    if (q.contains("label")) label = q["label"].get<int64_t>();
    add_image(reinterpret_cast<const uint8_t*>(req_.body.data()), req_.body.size(), id, label, "");
  } else {
    const json j = ParseJsonBody();
    auto it = j.find("items");
    if (it == j.end() || !it->is_array()) {
      Fail(400, "bad_request", "'items' (an array of item objects) is required");
    }
    if (it->empty()) Fail(422, "invalid_argument", "'items' is empty");
    items.reserve(it->size());
    for (size_t i = 0; i < it->size(); ++i) {
      const json& v = (*it)[i];
      const std::string where = "items[" + std::to_string(i) + "]";
      if (!v.is_object()) Fail(400, "bad_request", where + " must be an object");
      std::optional<uint64_t> id;
      std::optional<int64_t> label;
      std::string meta;
      if (auto f = v.find("id"); f != v.end() && !f->is_null()) {
        if (!f->is_number_integer()) Fail(400, "bad_request", where + ".id must be an integer");
        if (!f->is_number_unsigned()) Fail(422, "invalid_argument", where + ".id must be >= 0");
        id = f->get<uint64_t>();
      }
      if (auto f = v.find("label"); f != v.end() && !f->is_null()) {
        if (!f->is_number_integer()) Fail(400, "bad_request", where + ".label must be an integer");
        if (f->is_number_unsigned() && f->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
          Fail(422, "invalid_argument", where + ".label is out of range");
        }
        label = f->get<int64_t>();
      }
      if (auto f = v.find("metadata"); f != v.end() && !f->is_null()) meta = f->dump();
      const bool has_code = v.contains("code"), has_image = v.contains("image");
      if (has_code == has_image) {
        Fail(422, "invalid_argument", where + " needs exactly one of 'code' and 'image'");
      }
      if (has_code) {
        ItemInput item;
        item.id = id;
        item.label = label;
        item.metadata_json = std::move(meta);
        item.code = ParseCodeField(v["code"], bits, where + ".code");
        if (auto f = v.find("class_code"); f != v.end() && !f->is_null()) {
          item.class_code = ParseCodeField(*f, bits, where + ".class_code");
        }
        if (item.label || item.class_code || !item.metadata_json.empty()) bare_codes = false;
        items.push_back(std::move(item));
      } else {
        const json& img = v["image"];
        if (!img.is_string()) Fail(400, "bad_request", where + ".image must be a base64 string");
        std::vector<uint8_t> bytes;
        if (!Base64Decode(img.get_ref<const std::string&>(), &bytes)) {
          Fail(400, "bad_request", where + ".image is not valid base64");
        }
        if (!meta.empty() && meta.front() != '{') {
          Fail(422, "invalid_argument", where + ".metadata of an image item must be an object");
        }
        add_image(bytes.data(), bytes.size(), id, label, meta);
      }
    }
    if (bare_codes) {
      const bool all_ids = std::all_of(items.begin(), items.end(),
                                       [](const ItemInput& x) { return x.id.has_value(); });
      const bool no_ids = std::none_of(items.begin(), items.end(),
                                       [](const ItemInput& x) { return x.id.has_value(); });
      bare_codes = all_ids || no_ids;
    }
  }

  std::shared_lock<std::shared_mutex> life(c->life_mu);
  if (c->dropped) Fail(404, "not_found", "no collection '" + name + "'");
  const StoreWriteOptions wo{svc_->options_.sync_writes};
  std::vector<uint64_t> ids;
  const Clock::time_point t0 = Clock::now();
  if (bare_codes) {
    const size_t nb = code_bytes(bits);
    std::vector<uint8_t> codes(items.size() * nb);
    std::vector<uint64_t> given;
    for (size_t i = 0; i < items.size(); ++i) {
      std::copy(items[i].code.begin(), items[i].code.end(), codes.begin() + i * nb);
      if (items[i].id) given.push_back(*items[i].id);
    }
    Check(c->live->PutCodes(given.empty() ? nullptr : given.data(), codes.data(), items.size(), wo,
                            &ids));
  } else {
    Check(c->live->Put(items, wo, &ids));
  }
  json out = {{"ids", ids}, {"count", ids.size()}, {"took_ms", MsSince(t0)}};
  // Say what the encoder made of image items.
  json decoded = json::array();
  bool any_image = false;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].class_code) continue;
    json m = json::parse(items[i].metadata_json, nullptr, false);
    if (m.is_discarded() || !m.is_object() || !m.contains("class")) continue;
    any_image = true;
    m.erase("path");
    m["id"] = ids[i];
    m["code"] = FormatHex(items[i].code.data(), bits);
    decoded.push_back(std::move(m));
  }
  if (any_image) out["images"] = std::move(decoded);
  return JsonResponse(200, out);
}

Response Service::Call::GetItem(const std::string& name, const std::string& id_text) {
  std::shared_ptr<Collection> c = GetCollection(name);
  uint64_t id = 0;
  if (!ParseUint64(id_text, &id)) Fail(400, "bad_request", "item id must be an unsigned integer");
  StatusOr<Item> item = svc_->store_->Get(name, id);
  if (!item.ok()) {
    if (item.status().code() == Status::Code::kNotFound) {
      Fail(404, "not_found", "no item " + id_text + " in collection '" + name + "'");
    }
    FailStatus(item.status());
  }
  json j = {{"id", item->id}, {"code", FormatHex(item->code.data(), c->info.bits)}};
  if (item->label) j["label"] = *item->label;
  if (item->class_code) j["class_code"] = FormatHex(item->class_code->data(), c->info.bits);
  if (!item->metadata_json.empty()) {
    json m = json::parse(item->metadata_json, nullptr, false);
    j["metadata"] = m.is_discarded() ? json(item->metadata_json) : m;
  }
  return JsonResponse(200, j);
}

Response Service::Call::DeleteItem(const std::string& name, const std::string& id_text) {
  std::shared_ptr<Collection> c = GetCollection(name);
  uint64_t id = 0;
  if (!ParseUint64(id_text, &id)) Fail(400, "bad_request", "item id must be an unsigned integer");
  std::shared_lock<std::shared_mutex> life(c->life_mu);
  if (c->dropped) Fail(404, "not_found", "no collection '" + name + "'");
  size_t deleted = 0;
  Check(c->live->Delete({id}, StoreWriteOptions{svc_->options_.sync_writes}, &deleted));
  if (deleted == 0) Fail(404, "not_found", "no item " + id_text + " in collection '" + name + "'");
  return JsonResponse(200, {{"deleted", deleted}});
}

Response Service::Call::DeleteItems(const std::string& name) {
  std::shared_ptr<Collection> c = GetCollection(name);
  const json j = ParseJsonBody();
  auto it = j.find("ids");
  if (it == j.end() || !it->is_array()) Fail(400, "bad_request", "'ids' (an array) is required");
  std::vector<uint64_t> ids;
  for (const json& v : *it) {
    if (!v.is_number_unsigned()) Fail(400, "bad_request", "'ids' must hold unsigned integers");
    ids.push_back(v.get<uint64_t>());
  }
  std::shared_lock<std::shared_mutex> life(c->life_mu);
  if (c->dropped) Fail(404, "not_found", "no collection '" + name + "'");
  size_t deleted = 0;
  Check(c->live->Delete(ids, StoreWriteOptions{svc_->options_.sync_writes}, &deleted));
  return JsonResponse(200, {{"deleted", deleted}});
}

// ---------------------------------------------------------------------------
// Search

namespace {

// Resolves `mode` against the collection's index: "" (or "auto") takes the
// index as it is; a family name must match it, except that "exact" also
// runs a class-bucket index with nprobe -1 (visit until provably exact).
SearchParams ResolveMode(const SearchOptions& o, const std::string& spec, int threads,
                         std::string* mode_out) {
  SearchParams p;
  p.num_threads = threads;
  p.nprobe = o.nprobe;
  const std::string family = IndexFamily(spec);
  const std::string& mode = o.mode;
  if (mode.empty() || mode == "auto") {
    *mode_out = family;
    return p;
  }
  if (mode != "exact" && mode != "bucket" && mode != "ivf" && mode != "gpu") {
    Fail(422, "invalid_argument",
         "'mode' must be one of auto, exact, bucket, ivf, gpu; got '" + mode + "'");
  }
  if (mode == family || (mode == "exact" && family == "gpu")) {
    *mode_out = mode;
    return p;
  }
  if (mode == "exact" && family == "bucket") {
    p.nprobe = -1;
    *mode_out = mode;
    return p;
  }
  Fail(422, "mode_unavailable",
       "mode '" + mode + "' needs a " +
           (mode == "exact"    ? std::string("Flat/MIH/GPUFlat (or Bucket)")
            : mode == "bucket" ? std::string("Bucket")
            : mode == "ivf"    ? std::string("IVF<nlist>")
                               : std::string("GPUFlat")) +
           " index, but this collection's index is " + spec + " (mode '" + family + "')");
}

}  // namespace

namespace {

json NeighborsJson(const std::vector<Neighbor>& neighbors, CodeStore* store,
                   const std::string& collection, int bits, bool with_metadata) {
  json results = json::array();
  for (const Neighbor& nb : neighbors) {
    json r = {{"id", nb.id}, {"distance", nb.distance}};
    if (with_metadata) {
      StatusOr<Item> item = store->Get(collection, nb.id);
      if (item.ok()) {
        r["code"] = FormatHex(item->code.data(), bits);
        if (item->label) r["label"] = *item->label;
        if (!item->metadata_json.empty()) {
          json m = json::parse(item->metadata_json, nullptr, false);
          r["metadata"] = m.is_discarded() ? json(item->metadata_json) : m;
        }
      }
    }
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace

Response Service::Call::Search(const std::string& name) {
  std::shared_ptr<Collection> c = GetCollection(name);
  const int bits = c->info.bits;
  const std::string media = MediaType(req_.content_type);
  json j;
  std::vector<uint8_t> query;
  json query_info;  // what the encoder made of an image query
  auto encode = [&](const uint8_t* data, size_t n) {
    EncodedImage e = EncodeImage(*c, data, n);
    query = e.code;
    const Codebook& book = c->encoder->codebook();
    const DecodeResult& d = e.decode;
    query_info = {{"code", FormatHex(e.code.data(), bits)},
                  {"class", d.class_index},
                  {"distance_to_class", d.distance},
                  {"decoding", d.exact ? "ED" : "MHD"},
                  {"exact_decoding", d.exact},
                  {"ood", d.out_of_distribution},
                  {"confidence", e.confidence}};
    if (d.class_index >= 0 && static_cast<size_t>(d.class_index) < book.class_names().size()) {
      query_info["class_name"] = book.class_names()[d.class_index];
    }
  };
  if (IsImageType(media)) {
    j = QueryToJson(target_.query);
    encode(reinterpret_cast<const uint8_t*>(req_.body.data()), req_.body.size());
  } else {
    j = ParseJsonBody();
    const bool has_code = j.contains("code"), has_image = j.contains("image");
    if (has_code == has_image) Fail(400, "bad_request", "give exactly one of 'code' and 'image'");
    if (has_code) {
      query = ParseCodeField(j["code"], bits, "'code'");
    } else {
      const json& img = j["image"];
      if (!img.is_string()) Fail(400, "bad_request", "'image' must be a base64 string");
      std::vector<uint8_t> bytes;
      if (!Base64Decode(img.get_ref<const std::string&>(), &bytes)) {
        Fail(400, "bad_request", "'image' is not valid base64");
      }
      encode(bytes.data(), bytes.size());
    }
  }
  const SearchOptions o = ParseSearchOptions(j, svc_->options_.max_k);
  const std::string spec = c->live->index().spec();
  std::string mode;
  const SearchParams p = ResolveMode(o, spec, svc_->options_.search_threads, &mode);

  const Clock::time_point t0 = Clock::now();
  SearchResult r = o.radius ? ValueOr(c->live->RangeSearch(query.data(), *o.radius, p))
                            : ValueOr(c->live->Search(query.data(), *o.k, p));
  if (o.radius && o.k && r.neighbors.size() > *o.k) r.neighbors.resize(*o.k);
  const double took = MsSince(t0);
  json out = {{"results", NeighborsJson(r.neighbors, svc_->store_, name, bits, o.with_metadata)},
              {"exact", r.exact},
              {"took_ms", took},
              {"index", spec},
              {"mode", mode}};
  if (!r.visited_buckets.empty()) out["visited_buckets"] = r.visited_buckets;
  if (!query_info.is_null()) out["query"] = std::move(query_info);
  return JsonResponse(200, out);
}

Response Service::Call::SearchBatch(const std::string& name) {
  std::shared_ptr<Collection> c = GetCollection(name);
  const int bits = c->info.bits;
  const json j = ParseJsonBody();
  auto it = j.find("codes");
  if (it == j.end() || !it->is_array()) Fail(400, "bad_request", "'codes' (an array) is required");
  if (it->empty()) Fail(422, "invalid_argument", "'codes' is empty");
  if (it->size() > svc_->options_.max_batch_queries) {
    Fail(422, "invalid_argument",
         "at most " + std::to_string(svc_->options_.max_batch_queries) + " queries per batch");
  }
  const size_t nq = it->size(), nb = code_bytes(bits);
  std::vector<uint8_t> queries(nq * nb);
  for (size_t i = 0; i < nq; ++i) {
    std::vector<uint8_t> q = ParseCodeField((*it)[i], bits, "codes[" + std::to_string(i) + "]");
    std::copy(q.begin(), q.end(), queries.begin() + i * nb);
  }
  const SearchOptions o = ParseSearchOptions(j, svc_->options_.max_k);
  const std::string spec = c->live->index().spec();
  std::string mode;
  const SearchParams p = ResolveMode(o, spec, svc_->options_.search_threads, &mode);

  const Clock::time_point t0 = Clock::now();
  std::vector<SearchResult> results;
  if (o.radius) {
    results.reserve(nq);
    for (size_t i = 0; i < nq; ++i) {
      SearchResult r = ValueOr(c->live->RangeSearch(&queries[i * nb], *o.radius, p));
      if (o.k && r.neighbors.size() > *o.k) r.neighbors.resize(*o.k);
      results.push_back(std::move(r));
    }
  } else {
    Check(c->live->index().SearchBatch(queries.data(), nq, *o.k, p, &results));
  }
  const double took = MsSince(t0);
  json list = json::array();
  bool all_exact = true;
  for (const SearchResult& r : results) {
    all_exact = all_exact && r.exact;
    list.push_back(
        {{"results", NeighborsJson(r.neighbors, svc_->store_, name, bits, o.with_metadata)},
         {"exact", r.exact}});
  }
  return JsonResponse(200, {{"batches", list},
                            {"exact", all_exact},
                            {"took_ms", took},
                            {"index", spec},
                            {"mode", mode}});
}

}  // namespace hamdb::http
