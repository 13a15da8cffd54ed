// hamdb collection create|list|drop, put, get, delete, count.
#include <nlohmann/json.hpp>

#include "collection/live_collection.h"
#include "core/binary_code.h"
#include "tools/cli_common.h"
#include "tools/codes_io.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace hamdb::tools {

namespace {

struct CollectionArgs {
  std::string db, name, index_spec = kDefaultIndexSpec, settings = "{}";
  int bits = 0;
};

struct PutArgs {
  std::string db, collection, file, format = "auto", ids, scores;
  size_t batch = 10000;
  bool no_sync = false;
};

struct ItemArgs {
  std::string db, collection;
  std::vector<uint64_t> ids;
  bool bit_strings = false;
};

int RunPut(const PutArgs& a) {
  auto store = OpenStore(a.db);
  if (!store.ok()) return Fail(store.status());
  auto info = (*store)->GetCollection(a.collection);
  if (!info.ok()) return Fail(info.status());
  auto reader = OpenCodeReader(a.file, a.format, info->bits, a.ids);
  if (!reader.ok()) return Fail(reader.status());
  // Scores are checked whole, against the number of codes, before anything
  // is written; a text file is counted (and its codes checked) first.
  std::vector<float> scores;
  if (!a.scores.empty()) {
    uint64_t total = (*reader)->total();
    if (total == 0) {
      auto counter = OpenCodeReader(a.file, a.format, info->bits, a.ids);
      if (!counter.ok()) return Fail(counter.status());
      CodeChunk c;
      for (;;) {
        Status s = (*counter)->Next(a.batch, &c);
        if (!s.ok()) return Fail(s.WithContext("nothing was written"));
        if (c.size() == 0) break;
        total += c.size();
      }
    }
    auto read = ReadNpyScores(a.scores, total);
    if (!read.ok()) return Fail(read.status().WithContext("--scores; nothing was written"));
    scores = std::move(read).value();
  }
  Progress progress("put " + a.collection, (*reader)->total(), "codes");
  StoreWriteOptions wo;
  wo.sync = !a.no_sync;
  CodeChunk chunk;
  uint64_t written = 0;
  for (;;) {
    Status s = (*reader)->Next(a.batch, &chunk);
    if (!s.ok()) {
      progress.Finish();
      std::fprintf(stderr, "%llu codes were written before the error\n",
                   static_cast<unsigned long long>(written));
      return Fail(s);
    }
    const size_t n = chunk.size();
    if (n == 0) break;
    if (!scores.empty() && written + n > scores.size()) {
      progress.Finish();
      return Fail(Status::InvalidArgument("'" + a.file + "' has more codes than --scores has scores"));
    }
    s = (*store)->PutCodes(a.collection, chunk.ids.empty() ? nullptr : chunk.ids.data(),
                           chunk.codes.data(), n, wo, nullptr,
                           scores.empty() ? nullptr : scores.data() + written);
    if (!s.ok()) {
      progress.Finish();
      std::fprintf(stderr, "%llu codes were written before the error\n",
                   static_cast<unsigned long long>(written));
      return Fail(s);
    }
    written += n;
    progress.Add(n);
  }
  progress.Finish();
  std::printf("put %llu codes into '%s' (%s)\n", static_cast<unsigned long long>(written),
              a.collection.c_str(), wo.sync ? "synced" : "not synced");
  return 0;
}

}  // namespace

void AddCollectionCommands(CLI::App* app, int* exit_code) {
  // collection create|list|drop
  CLI::App* coll = app->add_subcommand("collection", "Create, list and drop collections");
  coll->require_subcommand(1);

  auto ca = std::make_shared<CollectionArgs>();
  CLI::App* create = coll->add_subcommand("create", "Create a collection");
  AddDbOption(create, &ca->db);
  create->add_option("name", ca->name, "Collection name ([A-Za-z0-9_.-], up to 64)")->required();
  create->add_option("--bits", ca->bits, "Code length in bits (1..4096)")->required();
  create->add_option("--index", ca->index_spec, "Index spec (docs/index.md): Flat, MIH, MIH<m>, Bucket, IVF<nlist>, GPUFlat, ...")
      ->capture_default_str();
  create->add_option("--settings", ca->settings, "Settings as a JSON object")
      ->capture_default_str();
  create->callback([ca, exit_code] {
    auto store = OpenStore(ca->db);
    if (!store.ok()) { *exit_code = Fail(store.status()); return; }
    StatusOr<CollectionSettings> settings = ParseCollectionSettings(ca->settings, ca->bits);
    if (!settings.ok()) { *exit_code = Fail(settings.status().WithContext("--settings")); return; }
    Status s = LiveCollection::Create(store->get(), ca->name, ca->bits, ca->index_spec, *settings);
    if (!s.ok()) { *exit_code = Fail(s); return; }
    std::printf("created collection '%s' (%d bits, index %s)\n", ca->name.c_str(), ca->bits,
                ca->index_spec.c_str());
  });

  auto la = std::make_shared<CollectionArgs>();
  CLI::App* list = coll->add_subcommand("list", "List collections with their item counts");
  AddDbOption(list, &la->db);
  list->callback([la, exit_code] {
    auto store = OpenStore(la->db, /*create=*/false);
    if (!store.ok()) { *exit_code = Fail(store.status()); return; }
    auto cols = (*store)->ListCollections();
    if (!cols.ok()) { *exit_code = Fail(cols.status()); return; }
    std::printf("%-24s %6s %10s %12s\n", "name", "bits", "index", "items");
    for (const auto& c : *cols) {
      auto n = (*store)->Count(c.name);
      std::printf("%-24s %6d %10s %12llu\n", c.name.c_str(), c.bits, c.index_spec.c_str(),
                  static_cast<unsigned long long>(n.ok() ? *n : 0));
    }
  });

  auto da = std::make_shared<CollectionArgs>();
  CLI::App* drop = coll->add_subcommand("drop", "Drop a collection and all its items");
  AddDbOption(drop, &da->db);
  drop->add_option("name", da->name, "Collection name")->required();
  drop->callback([da, exit_code] {
    auto store = OpenStore(da->db, false);
    if (!store.ok()) { *exit_code = Fail(store.status()); return; }
    Status s = (*store)->DropCollection(da->name);
    if (!s.ok()) { *exit_code = Fail(s); return; }
    std::printf("dropped collection '%s'\n", da->name.c_str());
  });

  // put
  auto pa = std::make_shared<PutArgs>();
  CLI::App* put = app->add_subcommand(
      "put", "Upsert codes from a file: hex/bit-string lines ('CODE' or 'ID CODE') or a packed "
             "uint8 .npy of shape (n, bytes)");
  AddDbOption(put, &pa->db);
  put->add_option("-c,--collection", pa->collection, "Collection name")->required();
  put->add_option("file", pa->file, "Input file (.npy, or text lines)")->required();
  put->add_option("--format", pa->format, "auto, hex or npy")
      ->check(CLI::IsMember({"auto", "hex", "npy"}))
      ->capture_default_str();
  put->add_option("--ids", pa->ids, "1-D integer .npy of ids for .npy input (else assigned)");
  put->add_option("--scores", pa->scores,
                  "1-D float32/float64 .npy of scores, one per code (higher = more confident; "
                  "orders ties under tie_break score)");
  put->add_option("--batch", pa->batch, "Items per atomic, durable write batch")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  put->add_flag("--no-sync", pa->no_sync,
                "Do not fsync the WAL per batch (survives a killed process, not a power loss)");
  put->callback([pa, exit_code] { *exit_code = RunPut(*pa); });

  // get
  auto ga = std::make_shared<ItemArgs>();
  CLI::App* get = app->add_subcommand("get", "Print items by id as JSON lines");
  AddDbOption(get, &ga->db);
  get->add_option("-c,--collection", ga->collection, "Collection name")->required();
  get->add_option("ids", ga->ids, "Item ids")->required();
  get->add_flag("--bit-strings", ga->bit_strings, "Print codes as '0'/'1' strings, not hex");
  get->callback([ga, exit_code] {
    auto store = OpenStore(ga->db, false);
    if (!store.ok()) { *exit_code = Fail(store.status()); return; }
    auto info = (*store)->GetCollection(ga->collection);
    if (!info.ok()) { *exit_code = Fail(info.status()); return; }
    auto fmt = [&](const std::vector<uint8_t>& c) {
      return ga->bit_strings ? FormatBitString(c.data(), info->bits) : FormatHex(c.data(), info->bits);
    };
    for (uint64_t id : ga->ids) {
      auto item = (*store)->Get(ga->collection, id);
      if (!item.ok()) { *exit_code = Fail(item.status()); continue; }
      nlohmann::json j = {{"id", item->id}, {"code", fmt(item->code)}};
      if (item->score) j["score"] = *item->score;
      if (item->label) j["label"] = *item->label;
      if (item->class_code) j["class_code"] = fmt(*item->class_code);
      if (!item->metadata_json.empty()) {
        auto meta = nlohmann::json::parse(item->metadata_json, nullptr, /*allow_exceptions=*/false);
        j["metadata"] = meta.is_discarded() ? nlohmann::json(item->metadata_json) : meta;
      }
      std::printf("%s\n", j.dump().c_str());
    }
  });

  // delete
  auto xa = std::make_shared<ItemArgs>();
  CLI::App* del = app->add_subcommand("delete", "Delete items by id (one atomic batch)");
  AddDbOption(del, &xa->db);
  del->add_option("-c,--collection", xa->collection, "Collection name")->required();
  del->add_option("ids", xa->ids, "Item ids")->required();
  del->callback([xa, exit_code] {
    auto store = OpenStore(xa->db, false);
    if (!store.ok()) { *exit_code = Fail(store.status()); return; }
    size_t deleted = 0;
    Status s = (*store)->Delete(xa->collection, xa->ids, {}, &deleted);
    if (!s.ok()) { *exit_code = Fail(s); return; }
    std::printf("deleted %zu of %zu ids\n", deleted, xa->ids.size());
  });

  // count
  auto na = std::make_shared<ItemArgs>();
  CLI::App* count = app->add_subcommand("count", "Print the number of items in a collection");
  AddDbOption(count, &na->db);
  count->add_option("-c,--collection", na->collection, "Collection name")->required();
  count->callback([na, exit_code] {
    auto store = OpenStore(na->db, false);
    if (!store.ok()) { *exit_code = Fail(store.status()); return; }
    auto n = (*store)->Count(na->collection);
    if (!n.ok()) { *exit_code = Fail(n.status()); return; }
    std::printf("%llu\n", static_cast<unsigned long long>(*n));
  });
}

}  // namespace hamdb::tools
