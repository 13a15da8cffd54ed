// /collections/{name}/items: insert (codes or images), get, delete, the
// thumbnails, and a random item (/collections/{name}/sample).
#include <algorithm>
#include <random>

#include "collection/image_items.h"
#include "core/binary_code.h"
#include "encoder/image.h"
#include "http/call.h"

namespace hamdb::http {

namespace {

// 409 unless items encoded by the artifact `checksum` may be stored in `live`.
void CheckEncoderChecksum(const LiveCollection& live, const std::string& checksum) {
  const CollectionSettings& s = live.settings();
  const std::string& name = live.info().name;
  if (s.encoder_path.empty()) {
    Fail(409, "encoder_mismatch",
         "collection '" + name + "' has no encoder, but the items name encoder " + checksum +
             "; send them without 'encoder_checksum', or to a collection made with that encoder");
  }
  if (s.encoder_checksum.empty()) {
    Fail(409, "encoder_mismatch",
         "the items name encoder " + checksum + ", but the checksum of collection '" + name +
             "''s encoder is unknown (its artifact '" + s.encoder_path + "' is missing on the server)");
  }
  if (checksum != s.encoder_checksum) {
    Fail(409, "encoder_mismatch",
         "the items were encoded by encoder " + checksum + ", but collection '" + name +
             "' holds codes of encoder " + s.encoder_checksum +
             "; encode with its artifact (GET /collections/" + name + "/encoder)");
  }
}

}  // namespace

Response Service::Call::InsertItems() {
  std::shared_ptr<Collection> c = GetCollection();
  LiveCollection& live = *c->live;
  const int bits = live.bits();
  const std::string media = MediaType(req_.content_type);
  std::vector<ItemInput> items;
  std::vector<bool> from_image;  // per item: encoded here from an image
  bool bare_codes = true;  // only codes (and ids): the store's fast path
  bool thumbnails = true;  // keep a thumbnail of each image item

  auto add_image = [&](const uint8_t* data, size_t n, std::optional<uint64_t> id,
                       std::optional<int64_t> label, const std::string& extra_meta) {
    std::string thumbnail;
    EncodedImage e = EncodeImage(live, data, n, thumbnails ? &thumbnail : nullptr);
    const Codebook& book =
        live.settings().codebook ? *live.settings().codebook : live.encoder()->codebook();
    StatusOr<ItemInput> item = MakeImageItem(e, book, id, label, "", extra_meta);
    if (!item.ok()) Fail(422, "invalid_argument", item.status().message());
    item->thumbnail = std::move(thumbnail);
    items.push_back(std::move(item).value());
    from_image.resize(items.size(), false);
    from_image.back() = true;
    bare_codes = false;
  };

  if (media == "multipart/form-data" || IsImageType(media)) {
    thumbnails = QueryToJson(target_.query).value("thumbnails", true);
  }
  if (media == "multipart/form-data") {
    // A batch of images, one per part; the part's filename is kept as the
    // item's metadata "path". Ids are assigned by the collection.
    StatusOr<std::vector<FormPart>> parts = ParseMultipart(req_.content_type, req_.body);
    if (!parts.ok()) Fail(400, "bad_request", parts.status().message());
    if (parts->empty()) Fail(422, "invalid_argument", "the multipart body holds no images");
    for (size_t i = 0; i < parts->size(); ++i) {
      const FormPart& part = (*parts)[i];
      const std::string extra =
          part.filename.empty() ? std::string() : json{{"path", part.filename}}.dump();
      try {
        add_image(reinterpret_cast<const uint8_t*>(part.data.data()), part.data.size(), std::nullopt,
                  std::nullopt, extra);
      } catch (ApiError& e) {
        e.message = "part " + std::to_string(i) + " ('" + (part.filename.empty() ? part.name : part.filename) +
                    "'): " + e.message;
        throw;
      }
    }
  } else if (IsImageType(media)) {
    const json q = QueryToJson(target_.query);
    std::optional<uint64_t> id;
    std::optional<int64_t> label;
    if (q.contains("id")) id = q["id"].get<uint64_t>();
    if (q.contains("label")) label = q["label"].get<int64_t>();
    add_image(reinterpret_cast<const uint8_t*>(req_.body.data()), req_.body.size(), id, label, "");
  } else {
    const json j = ParseJsonBody();
    if (auto f = j.find("encoder_checksum"); f != j.end() && !f->is_null()) {
      if (!f->is_string()) Fail(400, "bad_request", "'encoder_checksum' must be a string");
      CheckEncoderChecksum(live, f->get_ref<const std::string&>());
    }
    if (auto f = j.find("thumbnails"); f != j.end() && !f->is_null()) {
      if (!f->is_boolean()) Fail(400, "bad_request", "'thumbnails' must be true or false");
      thumbnails = f->get<bool>();
    }
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
      std::optional<float> score;
      if (auto f = v.find("score"); f != v.end() && !f->is_null()) {
        if (!f->is_number()) Fail(422, "invalid_argument", where + ".score must be a finite number");
        const double d = f->get<double>();
        const float s = static_cast<float>(d);
        Check(CheckScore(d, where + ".score"));
        Check(CheckScore(s, where + ".score (as a 32-bit float)"));
        score = s;
      }
      const bool has_code = v.contains("code"), has_image = v.contains("image");
      if (has_code == has_image) {
        Fail(422, "invalid_argument", where + " needs exactly one of 'code' and 'image'");
      }
      if (has_code) {
        ItemInput item;
        item.id = id;
        item.label = label;
        item.score = score;
        item.metadata_json = std::move(meta);
        item.code = ParseCodeField(v["code"], bits, where + ".code");
        if (auto f = v.find("class_code"); f != v.end() && !f->is_null()) {
          item.class_code = ParseCodeField(*f, bits, where + ".class_code");
        }
        if (auto f = v.find("thumbnail"); f != v.end() && !f->is_null()) {
          std::vector<uint8_t> bytes;
          if (!f->is_string() || !Base64Decode(f->get_ref<const std::string&>(), &bytes)) {
            Fail(400, "bad_request", where + ".thumbnail must be a base64 string");
          }
          Status ok = CheckThumbnail(bytes.data(), bytes.size());
          if (!ok.ok()) Fail(422, "invalid_argument", where + ": " + ok.message());
          if (thumbnails) item.thumbnail.assign(bytes.begin(), bytes.end());
        }
        if (item.label || item.class_code || item.score || !item.metadata_json.empty() ||
            !item.thumbnail.empty()) {
          bare_codes = false;
        }
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
        if (score) items.back().score = score;  // the client's score over the encoder's
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
  if (c->dropped) Fail(404, "not_found", "no collection '" + name() + "'");
  const StoreWriteOptions wo{svc_->options_.sync_writes};
  std::vector<uint64_t> ids;
  std::string warning;
  const Clock::time_point t0 = Clock::now();
  if (bare_codes) {
    const size_t nb = code_bytes(bits);
    std::vector<uint8_t> codes(items.size() * nb);
    std::vector<uint64_t> given;
    for (size_t i = 0; i < items.size(); ++i) {
      std::copy(items[i].code.begin(), items[i].code.end(), codes.begin() + i * nb);
      if (items[i].id) given.push_back(*items[i].id);
    }
    Check(live.PutCodes(given.empty() ? nullptr : given.data(), codes.data(), items.size(), wo,
                        &ids, &warning));
  } else {
    Check(live.Put(items, wo, &ids, &warning));
  }
  json out = {{"ids", ids}, {"count", ids.size()}, {"took_ms", MsSince(t0)}};
  if (!warning.empty()) out["warning"] = warning;
  // Say what the encoder made of image items.
  json decoded = json::array();
  bool any_image = false;
  for (size_t i = 0; i < from_image.size(); ++i) {
    if (!from_image[i]) continue;
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

Response Service::Call::ItemsExist() {
  std::shared_ptr<Collection> c = GetCollection();
  const json j = ParseJsonBody();
  auto it = j.find("ids");
  if (it == j.end() || !it->is_array()) Fail(400, "bad_request", "'ids' (an array) is required");
  if (it->size() > svc_->options_.max_batch_queries) {
    Fail(422, "invalid_argument", "at most " + std::to_string(svc_->options_.max_batch_queries) +
                                      " ids per request");
  }
  json exists = json::array(), paths = json::array();
  for (const json& v : *it) {
    if (!v.is_number_unsigned()) Fail(400, "bad_request", "'ids' must hold unsigned integers");
    StatusOr<Item> item = c->live->Get(v.get<uint64_t>());
    if (!item.ok() && item.status().code() != Status::Code::kNotFound) FailStatus(item.status());
    exists.push_back(item.ok());
    json path = nullptr;
    if (item.ok()) {
      const json m = json::parse(item->metadata_json, nullptr, false);
      if (m.is_object() && m.contains("path") && m["path"].is_string()) path = m["path"];
    }
    paths.push_back(std::move(path));
  }
  return JsonResponse(200, {{"exists", exists}, {"paths", paths}});
}

namespace {

// An item as GET /collections/{name}/items/{id} shows it; 404 when absent.
Response ItemResponse(const LiveCollection& live, uint64_t id) {
  StatusOr<Item> item = live.Get(id);
  if (!item.ok()) {
    if (item.status().code() == Status::Code::kNotFound) {
      Fail(404, "not_found", "no item " + std::to_string(id) + " in collection '" + live.info().name + "'");
    }
    FailStatus(item.status());
  }
  const int bits = live.bits();
  json j = {{"id", item->id}, {"code", FormatHex(item->code.data(), bits)}};
  if (item->score) j["score"] = *item->score;
  if (item->label) j["label"] = *item->label;
  if (item->class_code) j["class_code"] = FormatHex(item->class_code->data(), bits);
  if (!item->metadata_json.empty()) {
    json m = json::parse(item->metadata_json, nullptr, false);
    j["metadata"] = m.is_discarded() ? json(item->metadata_json) : m;
  }
  return JsonResponse(200, j);
}

}  // namespace

Response Service::Call::GetItem() {
  std::shared_ptr<Collection> c = GetCollection();
  uint64_t id = 0;
  if (!ParseUint64(item_id(), &id)) Fail(400, "bad_request", "item id must be an unsigned integer");
  return ItemResponse(*c->live, id);
}

Response Service::Call::SampleItem() {
  std::shared_ptr<Collection> c = GetCollection();
  thread_local std::mt19937_64 rng(std::random_device{}());
  StatusOr<uint64_t> id = c->live->SampleId(rng());
  if (!id.ok()) {
    if (id.status().code() == Status::Code::kNotFound) {
      Fail(404, "not_found", "collection '" + name() + "' holds no items");
    }
    FailStatus(id.status());
  }
  return ItemResponse(*c->live, *id);
}

Response Service::Call::GetThumbnail() {
  std::shared_ptr<Collection> c = GetCollection();
  uint64_t id = 0;
  if (!ParseUint64(item_id(), &id)) Fail(400, "bad_request", "item id must be an unsigned integer");
  StatusOr<std::string> thumb = c->live->Thumbnail(id);
  if (!thumb.ok()) {
    if (thumb.status().code() == Status::Code::kNotFound) {
      Fail(404, "not_found", "item " + item_id() + " of collection '" + name() + "' has no thumbnail");
    }
    FailStatus(thumb.status());
  }
  Response r;
  if (NotModified(*thumb, &r)) return r;
  const uint8_t* p = reinterpret_cast<const uint8_t*>(thumb->data());
  r.content_type = DetectImageFormat(p, thumb->size()) == ImageFormat::kPng ? "image/png" : "image/jpeg";
  r.body = std::move(thumb).value();
  return r;
}

Response Service::Call::DeleteItem() {
  std::shared_ptr<Collection> c = GetCollection();
  uint64_t id = 0;
  if (!ParseUint64(item_id(), &id)) Fail(400, "bad_request", "item id must be an unsigned integer");
  std::shared_lock<std::shared_mutex> life(c->life_mu);
  if (c->dropped) Fail(404, "not_found", "no collection '" + name() + "'");
  size_t deleted = 0;
  std::string warning;
  Check(c->live->Delete({id}, StoreWriteOptions{svc_->options_.sync_writes}, &deleted, &warning));
  if (deleted == 0) {
    Fail(404, "not_found", "no item " + item_id() + " in collection '" + name() + "'");
  }
  json out = {{"deleted", deleted}};
  if (!warning.empty()) out["warning"] = warning;
  return JsonResponse(200, out);
}

Response Service::Call::DeleteItems() {
  std::shared_ptr<Collection> c = GetCollection();
  const json j = ParseJsonBody();
  auto it = j.find("ids");
  if (it == j.end() || !it->is_array()) Fail(400, "bad_request", "'ids' (an array) is required");
  std::vector<uint64_t> ids;
  for (const json& v : *it) {
    if (!v.is_number_unsigned()) Fail(400, "bad_request", "'ids' must hold unsigned integers");
    ids.push_back(v.get<uint64_t>());
  }
  std::shared_lock<std::shared_mutex> life(c->life_mu);
  if (c->dropped) Fail(404, "not_found", "no collection '" + name() + "'");
  size_t deleted = 0;
  std::string warning;
  Check(c->live->Delete(ids, StoreWriteOptions{svc_->options_.sync_writes}, &deleted, &warning));
  json out = {{"deleted", deleted}};
  if (!warning.empty()) out["warning"] = warning;
  return JsonResponse(200, out);
}

}  // namespace hamdb::http
