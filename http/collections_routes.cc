// /collections and /collections/{name}: list, create, describe, drop.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "core/binary_code.h"
#include "core/score.h"
#include "http/call.h"

namespace hamdb::http {

std::string ResolveModelPath(const std::string& requested, const std::string& models_dir,
                             uint64_t max_bytes) {
  if (models_dir.empty()) {
    Fail(422, "invalid_argument",
         "this server takes no encoder paths over HTTP; start it with --models-dir DIR and "
         "name a file under DIR, or create the collection with the local CLI (hamdb ingest -m)");
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path root = fs::weakly_canonical(models_dir, ec);
  const std::string refused = "encoder '" + requested + "' is not a model file under --models-dir";
  if (ec) Fail(422, "invalid_encoder", refused);
  const fs::path given(requested);
  const fs::path resolved = fs::weakly_canonical(given.is_absolute() ? given : root / given, ec);
  if (ec) Fail(422, "invalid_encoder", refused);
  // Inside the root: the resolved path starts with every component of it.
  auto r = root.begin(), p = resolved.begin();
  for (; r != root.end() && !r->empty(); ++r, ++p) {
    if (p == resolved.end() || *p != *r) Fail(422, "invalid_encoder", refused);
  }
  if (!fs::is_regular_file(resolved, ec) || ec) Fail(422, "invalid_encoder", refused);
  const uintmax_t size = fs::file_size(resolved, ec);
  if (ec) Fail(422, "invalid_encoder", refused);
  if (size > max_bytes) {
    Fail(422, "invalid_encoder",
         "encoder '" + requested + "' is larger than --max-model-mb (" +
             std::to_string(max_bytes >> 20) + " MiB)");
  }
  return resolved.string();
}

StatusOr<std::string> ReadArtifact(const std::string& path, uint64_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open '" + path + "'");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) return Status::IOError("cannot read '" + path + "'");
  if (static_cast<uint64_t>(size) > max_bytes) {
    return Status::InvalidArgument("'" + path + "' is larger than --max-model-mb");
  }
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(bytes.data(), size)) return Status::IOError("cannot read '" + path + "'");
  return bytes;
}

json Service::Call::Describe(const Collection& c) const {
  if (!c.live) {
    return {{"name", c.name}, {"status", "error"}, {"error", c.open_error.ToString()}};
  }
  const LiveCollection& l = *c.live;
  const CollectionHealth h = l.health();
  json j = {{"name", c.name},
            {"bits", l.bits()},
            {"index", l.spec().spec},
            {"status", h.degraded ? "degraded" : "ready"},
            {"items", l.index_size()},
            {"index_memory_bytes", l.index_memory_bytes()},
            {"search_mode", l.spec().family},
            {"exact", l.spec().exact},
            {"tie_break", TieBreakName(l.default_tie_break())}};
  if (h.degraded) {
    j["reason"] = h.reason;
    j["failed_rebuilds"] = h.failed_rebuilds;
    j["next_rebuild_in_s"] = h.next_rebuild_in_s;
    j.erase("items");
  }
  const CollectionSettings& s = l.settings();
  j["encoder"] = s.encoder_path.empty() ? json(nullptr) : json(s.encoder_path);
  if (!s.encoder_path.empty()) {
    j["encoder_checksum"] = s.encoder_checksum.empty() ? json(nullptr) : json(s.encoder_checksum);
    j["encoder_loaded"] = l.encoder() != nullptr;
    if (!l.encoder()) j["encoder_error"] = l.encoder_error().ToString();
  }
  j["indexed_fields"] = s.indexed_fields;
  if (s.codebook) {
    j["classes"] = s.codebook->num_classes();
    j["class_names"] = s.codebook->class_names();
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

Response Service::Call::DescribeCollection() {
  std::shared_ptr<Collection> c = svc_->FindCollection(name());
  if (!c) Fail(404, "not_found", "no collection '" + name() + "'");
  return JsonResponse(200, Describe(*c));
}

Response Service::Call::CreateCollection() {
  const ServiceOptions& o = svc_->options_;
  const json j = ParseJsonBody();
  auto name_it = j.find("name");
  if (name_it == j.end() || !name_it->is_string()) {
    Fail(400, "bad_request", "'name' (a string) is required");
  }
  const std::string name = name_it->get<std::string>();
  Check(ValidateCollectionName(name));
  std::string index_spec = kDefaultIndexSpec;
  if (auto it = j.find("index"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) Fail(400, "bad_request", "'index' must be a string such as \"MIH\"");
    index_spec = it->get<std::string>();
  }
  std::optional<int64_t> bits;
  if (auto it = j.find("bits"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) Fail(400, "bad_request", "'bits' must be an integer");
    bits = it->is_number_unsigned() && it->get<uint64_t>() > 1000000 ? 1000001 : it->get<int64_t>();
  }
  CollectionSettings settings;
  std::shared_ptr<const Encoder> encoder;
  if (auto it = j.find("encoder"); it != j.end() && !it->is_null()) {
    if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
      Fail(400, "bad_request", "'encoder' must be the path of an encoder artifact");
    }
    const std::string requested = it->get<std::string>();
    if (!o.encoder_loader) {
      Fail(422, "not_supported", "this server was started without encoder support");
    }
    const std::string path = ResolveModelPath(requested, o.models_dir, o.max_model_bytes);
    StatusOr<std::shared_ptr<const Encoder>> enc = o.encoder_loader(path);
    if (!enc.ok()) {
      Fail(422, "invalid_encoder",
           "cannot load encoder '" + requested + "': " + enc.status().ToString());
    }
    encoder = std::move(enc).value();
    if (bits && *bits != encoder->bits()) {
      Fail(422, "invalid_argument",
           "'bits' is " + std::to_string(*bits) + " but the encoder makes " +
               std::to_string(encoder->bits()) + "-bit codes");
    }
    bits = encoder->bits();
    settings.encoder_path = path;
    settings.encoder_checksum = ValueOr(ArtifactFileChecksum(path));
    settings.codebook = encoder->codebook();
  }
  if (auto it = j.find("tie_break"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) Fail(422, "invalid_argument", "'tie_break' must be \"id\" or \"score\"");
    settings.tie_break = ValueOr(ParseTieBreak(it->get_ref<const std::string&>()));
  }
  if (auto it = j.find("indexed_fields"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) Fail(400, "bad_request", "'indexed_fields' must be an array of field names");
    for (const json& f : *it) {
      if (!f.is_string()) Fail(400, "bad_request", "'indexed_fields' must be an array of field names");
      settings.indexed_fields.push_back(f.get<std::string>());
    }
    const Status fields = CheckIndexedFields(settings.indexed_fields);
    if (!fields.ok()) Fail(422, "invalid_argument", fields.message());
  }
  if (!bits) Fail(400, "bad_request", "'bits' is required (or 'encoder')");
  if (*bits < 1 || *bits > kMaxCodeBits) {
    Fail(422, "invalid_argument", "'bits' must be between 1 and " + std::to_string(kMaxCodeBits));
  }

  std::lock_guard<std::mutex> admin(svc_->admin_mu_);
  if (svc_->FindCollection(name)) Fail(409, "conflict", "collection '" + name + "' already exists");
  // Every check of the spec runs before anything is written.
  Status created = LiveCollection::Create(svc_->store_, name, static_cast<int>(*bits), index_spec,
                                          settings, StoreWriteOptions{o.sync_writes});
  if (!created.ok()) {
    if (created.code() == Status::Code::kInvalidArgument ||
        created.code() == Status::Code::kFailedPrecondition) {
      Fail(422, "invalid_index", created.message());
    }
    FailStatus(created);
  }
  std::shared_ptr<Collection> c = svc_->OpenCollection(name, encoder);
  if (!c->live) {
    // A store read failed right after the create; undo so the name is reusable.
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

Response Service::Call::DownloadEncoder() {
  std::shared_ptr<Collection> c = GetCollection();
  const CollectionSettings& s = c->live->settings();
  if (s.encoder_path.empty()) Fail(404, "not_found", "collection '" + name() + "' has no encoder");
  // Only the artifact the collection's codes come from is served.
  StatusOr<std::string> bytes = ReadArtifact(s.encoder_path, svc_->options_.max_model_bytes);
  if (!bytes.ok()) {
    Fail(404, "not_found",
         "the encoder of collection '" + name() + "' is not on the server: " + bytes.status().message());
  }
  const std::string sum = ArtifactChecksum(bytes->data(), bytes->size());
  if (s.encoder_checksum.empty() || sum != s.encoder_checksum) {
    Fail(409, "encoder_mismatch",
         "the artifact at the encoder path of collection '" + name() + "' is " + sum +
             ", not the collection's " + (s.encoder_checksum.empty() ? "(unknown)" : s.encoder_checksum));
  }
  Response r;
  r.status = 200;
  r.content_type = "application/octet-stream";
  r.body = std::move(bytes).value();
  return r;
}

Response Service::Call::DropCollection() {
  std::lock_guard<std::mutex> admin(svc_->admin_mu_);
  std::shared_ptr<Collection> c = svc_->FindCollection(name());
  if (!c) Fail(404, "not_found", "no collection '" + name() + "'");
  {
    std::unique_lock<std::shared_mutex> life(c->life_mu);  // waits for writes in flight
    c->dropped = true;
    Status s =
        svc_->store_->DropCollection(name(), StoreWriteOptions{svc_->options_.sync_writes});
    if (!s.ok() && s.code() != Status::Code::kNotFound) {
      c->dropped = false;
      FailStatus(s);
    }
  }
  {
    std::unique_lock<std::shared_mutex> lock(svc_->collections_mu_);
    svc_->collections_.erase(name());
  }
  return JsonResponse(200, {{"dropped", name()}});
}

}  // namespace hamdb::http
