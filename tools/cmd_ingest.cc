// hamdb ingest: bulk-encode a folder (or a list) of images into a collection,
// of a local store (--db) or of a running server (--url).
//
// Item ids are path keys: id = XXH3-64 of the file's key path, cut to 53 bits
// (so ids stay exact in JavaScript clients), probing id+1, id+2, ... when a
// different path already owns the id. The key path is the path relative to
// --images, or the path exactly as written in --list. Because the id of a path
// never changes, a re-run after Ctrl-C or kill -9 finds what is already
// stored (same id, same path) and ingests only what is missing; an item can
// never be stored twice. Every batch is one atomic, fsync'ed store write.
//
// With --url the images are decoded and encoded here and the server only
// stores: each batch's ids are looked up (POST .../items/exists), and the
// new items are sent as codes, scores, metadata and thumbnails naming the encoder's
// checksum (POST .../items), which the server checks against the
// collection's. Without -m the collection's own encoder is downloaded
// (GET .../encoder) into a cache; with -m a missing collection is created,
// the artifact first uploaded to the server's --models-dir (PUT
// /admin/models/{file}).
//
// Each item keeps a thumbnail of its image (at most 96 px, encoder/image.h)
// unless --no-thumbnails.
//
// Labels: "folder" (the first sub-folder under --images: the encoder's class
// index when the name is one of its classes, else the rank of the name among
// all sub-folder names), "csv:FILE" (lines `path,label`, label an integer or
// a class name; the path as the key path), or "none".
// Header-only use of Debian's xxHash (libxxhash-dev).
#define XXH_INLINE_ALL
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "collection/live_collection.h"
#include "collection/settings.h"
#include "core/binary_code.h"
#include "db/code_store.h"
#include "collection/image_items.h"
#include "encoder/encoder.h"
#include "encoder/image.h"
#include "http/http_util.h"
#include "encoder/inference_process.h"
#include "encoder/torch_threads.h"
#include "http/client.h"
#include "index/parallel.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace hamdb::tools {

namespace fs = std::filesystem;

// Path-key ids have 53 bits, so that they stay exact in JavaScript clients.
constexpr uint64_t kPathKeyIdMask = (uint64_t{1} << 53) - 1;

uint64_t PathKeyId(std::string_view key_path) {
  const uint64_t h = XXH3_64bits(key_path.data(), key_path.size());
  const uint64_t id = h & kPathKeyIdMask;
  return id == 0 ? 1 : id;
}

namespace {

struct IngestArgs {
  std::string db, url, api_key, collection, model, images, list, labels = "folder",
                                                                 index_spec = kDefaultIndexSpec;
  bool db_given = false;  // --db (or HAMDB_DB) was set
  size_t batch = 512;
  int threads = 0;
  bool no_sync = false;
  bool quiet_failures = false;
  bool no_thumbnails = false;
  size_t kill_after_batches = 0;  // tests: SIGKILL itself after N stored batches
};

struct SourceFile {
  std::string path;      // to open
  std::string key;       // key path (id and metadata "path")
  std::optional<int64_t> label;
  std::string label_name;
};

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return s.substr(i);
}

// Lists the inputs in a stable order (sorted by key path).
StatusOr<std::vector<SourceFile>> ListSources(const IngestArgs& a, const Encoder& enc) {
  std::vector<SourceFile> files;
  std::error_code ec;
  if (!a.images.empty()) {
    if (!fs::is_directory(a.images, ec)) return Status::NotFound("--images: not a directory: " + a.images);
    fs::recursive_directory_iterator it(a.images, fs::directory_options::skip_permission_denied, ec);
    if (ec) return Status::IOError("--images: " + ec.message());
    for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) return Status::IOError("walking " + a.images + ": " + ec.message());
      const std::string name = it->path().filename().string();
      if (!name.empty() && name[0] == '.') {
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      if (!it->is_regular_file(ec)) continue;
      SourceFile f;
      f.path = it->path().string();
      f.key = fs::relative(it->path(), a.images, ec).generic_string();
      if (ec || f.key.empty()) f.key = f.path;
      files.push_back(std::move(f));
    }
  } else {
    std::ifstream in(a.list);
    if (!in) return Status::NotFound("--list: cannot open " + a.list);
    std::string line;
    while (std::getline(in, line)) {
      line = Trim(line);
      if (line.empty() || line[0] == '#') continue;
      SourceFile f;
      f.path = f.key = line;
      files.push_back(std::move(f));
    }
  }
  std::sort(files.begin(), files.end(),
            [](const SourceFile& x, const SourceFile& y) { return x.key < y.key; });
  files.erase(std::unique(files.begin(), files.end(),
                          [](const SourceFile& x, const SourceFile& y) { return x.key == y.key; }),
              files.end());

  // Labels.
  const auto& names = enc.class_names();
  auto class_of = [&](const std::string& name) -> std::optional<int64_t> {
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == name) return static_cast<int64_t>(i);
    return std::nullopt;
  };
  if (a.labels == "none") return files;
  if (a.labels == "folder") {
    if (a.images.empty()) return Status::InvalidArgument("--labels folder needs --images");
    std::set<std::string> folders;
    for (SourceFile& f : files) {
      const size_t slash = f.key.find('/');
      if (slash != std::string::npos) folders.insert(f.label_name = f.key.substr(0, slash));
    }
    std::map<std::string, int64_t> rank;
    for (const std::string& d : folders) rank.emplace(d, static_cast<int64_t>(rank.size()));
    bool all_classes = true;
    for (const std::string& d : folders) all_classes &= class_of(d).has_value();
    for (SourceFile& f : files) {
      if (f.label_name.empty()) continue;
      f.label = all_classes ? class_of(f.label_name) : rank[f.label_name];
    }
    return files;
  }
  if (a.labels.rfind("csv:", 0) == 0) {
    const std::string csv = a.labels.substr(4);
    std::ifstream in(csv);
    if (!in) return Status::NotFound("--labels: cannot open " + csv);
    std::unordered_map<std::string, std::string> by_key;
    std::string line;
    size_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      line = Trim(line);
      if (line.empty() || line[0] == '#') continue;
      const size_t comma = line.rfind(',');
      if (comma == std::string::npos)
        return Status::InvalidArgument(csv + ":" + std::to_string(line_no) + ": expected path,label");
      by_key[Trim(line.substr(0, comma))] = Trim(line.substr(comma + 1));
    }
    for (SourceFile& f : files) {
      auto it = by_key.find(f.key);
      if (it == by_key.end()) continue;
      f.label_name = it->second;
      if (auto c = class_of(it->second)) {
        f.label = *c;
      } else {
        char* end = nullptr;
        const long long v = std::strtoll(it->second.c_str(), &end, 10);
        if (end == it->second.c_str() || *end != '\0')
          return Status::InvalidArgument("label '" + it->second + "' of " + f.key +
                                         " is neither an integer nor a class name");
        f.label = v;
      }
    }
    return files;
  }
  return Status::InvalidArgument("--labels must be folder, csv:FILE or none");
}

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void OnInterrupt(int) { g_interrupted = 1; }

// Where an ingest stores its items: a local store, or a running server.
class IngestTarget {
 public:
  virtual ~IngestTarget() = default;
  // For each id, the key path of the stored item with that id: nullopt when
  // there is none, "" when it has no path.
  virtual Status Lookup(const std::vector<uint64_t>& ids,
                        std::vector<std::optional<std::string>>* paths) = 0;
  // Stores one batch atomically and durably (an upsert: a batch sent again
  // changes nothing).
  virtual Status Store(const std::vector<ItemInput>& items) = 0;
};

// The key path recorded in an item's metadata; "" when it has none.
std::string PathOf(const std::string& metadata_json) {
  auto j = nlohmann::json::parse(metadata_json, nullptr, false);
  if (j.is_object() && j.contains("path") && j["path"].is_string()) return j["path"];
  return "";
}

class LocalTarget : public IngestTarget {
 public:
  LocalTarget(CodeStore* store, std::string collection, StoreWriteOptions wo)
      : store_(store), collection_(std::move(collection)), wo_(wo) {}
  Status Lookup(const std::vector<uint64_t>& ids, std::vector<std::optional<std::string>>* paths) override {
    paths->assign(ids.size(), std::nullopt);
    for (size_t i = 0; i < ids.size(); ++i) {
      StatusOr<Item> item = store_->Get(collection_, ids[i]);
      if (item.ok()) {
        (*paths)[i] = PathOf(item->metadata_json);
      } else if (item.status().code() != Status::Code::kNotFound) {
        return item.status();
      }
    }
    return Status::OK();
  }
  Status Store(const std::vector<ItemInput>& items) override {
    return items.empty() ? Status::OK() : store_->Put(collection_, items, wo_);
  }

 private:
  CodeStore* store_;
  std::string collection_;
  StoreWriteOptions wo_;
};

// The error a server answered with, as a Status.
Status ServerError(const std::string& what, const http::HttpReply& r) {
  std::string message = r.body.substr(0, 500);
  const auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    const nlohmann::json& e = j["error"];
    auto text = [&](const char* key) {
      auto it = e.find(key);
      return it == e.end() ? std::string() : it->is_string() ? it->get<std::string>() : it->dump();
    };
    message = text("code") + ": " + text("message");
  }
  const std::string text = what + ": HTTP " + std::to_string(r.status) + " " + message;
  if (r.status == 404) return Status::NotFound(text);
  if (r.status == 409) return Status::FailedPrecondition(text);
  if (r.status == 401 || r.status == 403) return Status::FailedPrecondition(text);
  if (r.status == 503) return Status::ResourceExhausted(text);
  return Status::InvalidArgument(text);
}

// A running server. Requests answered 503 (a full write queue, a server
// still loading) are retried after their Retry-After, for up to ten minutes;
// a lost connection is retried three times, then the run stops (a re-run
// resumes it). Ctrl-C ends the waiting.
class RemoteTarget : public IngestTarget {
 public:
  RemoteTarget(http::Url url, std::string api_key, std::string collection, std::string checksum)
      : url_(std::move(url)),
        api_key_(std::move(api_key)),
        collection_(std::move(collection)),
        checksum_(std::move(checksum)) {}

  StatusOr<http::HttpReply> Call(const std::string& method, const std::string& target,
                           const std::string& content_type, const std::string& body) const {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(10);
    int lost = 0;
    for (;;) {
      StatusOr<http::HttpReply> r = http::HttpCall(url_, method, target, content_type, body, api_key_,
                                       std::chrono::seconds(300));
      const bool retry = !r.ok() ? ++lost <= 3 : r->status == 503 && std::chrono::steady_clock::now() < give_up;
      if (!retry || g_interrupted) {
        if (!r.ok()) {
          return r.status().WithContext("no answer from the server after " + std::to_string(lost) +
                                        " attempts; once it is back, re-run the same command to resume");
        }
        return r;
      }
      const int wait_s = !r.ok() ? lost : std::clamp(r->retry_after_s, 1, 10);
      for (int i = 0; i < wait_s * 10 && !g_interrupted; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }

  Status Lookup(const std::vector<uint64_t>& ids, std::vector<std::optional<std::string>>* paths) override {
    paths->assign(ids.size(), std::nullopt);
    constexpr size_t kChunk = 1000;  // well under the server's limit per request
    for (size_t begin = 0; begin < ids.size(); begin += kChunk) {
      const std::vector<uint64_t> chunk(ids.begin() + begin, ids.begin() + std::min(ids.size(), begin + kChunk));
      HAMDB_ASSIGN_OR_RETURN(http::HttpReply r, Call("POST", ItemsPath() + "/exists", "application/json",
                                               nlohmann::json{{"ids", chunk}}.dump()));
      if (r.status != 200) return ServerError("looking up stored items", r);
      const auto j = nlohmann::json::parse(r.body, nullptr, false);
      const auto exists = j.is_object() ? j.find("exists") : j.end();
      const auto found = j.is_object() ? j.find("paths") : j.end();
      if (!j.is_object() || exists == j.end() || found == j.end() || !exists->is_array() ||
          !found->is_array() || exists->size() != chunk.size() || found->size() != chunk.size()) {
        return Status::Corruption("the server's answer to items/exists is malformed: " + r.body.substr(0, 200));
      }
      for (size_t i = 0; i < chunk.size(); ++i) {
        const nlohmann::json& e = (*exists)[i];
        if (!e.is_boolean()) return Status::Corruption("items/exists answered a non-boolean");
        if (!e.get<bool>()) continue;
        const nlohmann::json& p = (*found)[i];
        (*paths)[begin + i] = p.is_string() ? p.get<std::string>() : std::string();
      }
    }
    return Status::OK();
  }

  Status Store(const std::vector<ItemInput>& items) override {
    if (items.empty()) return Status::OK();
    // Written out by hand: the metadata is already JSON (MakeImageItem's),
    // and parsing it again only to print it would cost the encoder CPU.
    std::string body = "{\"encoder_checksum\":" + nlohmann::json(checksum_).dump() + ",\"items\":[";
    for (size_t i = 0; i < items.size(); ++i) {
      const ItemInput& it = items[i];
      const int bits = static_cast<int>(it.code.size() * 8);
      nlohmann::json v = {{"id", *it.id}, {"code", FormatHex(it.code.data(), bits)}};
      if (it.class_code) v["class_code"] = FormatHex(it.class_code->data(), bits);
      if (it.label) v["label"] = *it.label;
      if (it.score) v["score"] = *it.score;
      if (!it.thumbnail.empty()) {
        v["thumbnail"] = http::Base64Encode(reinterpret_cast<const uint8_t*>(it.thumbnail.data()),
                                            it.thumbnail.size());
      }
      std::string one = v.dump();
      if (!it.metadata_json.empty()) {
        one.pop_back();  // the closing brace
        one += ",\"metadata\":" + it.metadata_json + "}";
      }
      body += (i ? "," : "") + one;
    }
    body += "]}";
    HAMDB_ASSIGN_OR_RETURN(http::HttpReply r, Call("POST", ItemsPath(), "application/json", std::move(body)));
    if (r.status != 200) return ServerError("storing a batch", r);
    return Status::OK();
  }

 private:
  std::string ItemsPath() const { return "/collections/" + http::UrlEncode(collection_) + "/items"; }

  http::Url url_;
  std::string api_key_, collection_, checksum_;
};

// Checks that the collection `info` can take codes of `enc`.
Status CheckCollectionFitsEncoder(const CollectionInfo& info, const Encoder& enc) {
  if (info.bits != enc.bits()) {
    return Status::FailedPrecondition("collection '" + info.name + "' holds " + std::to_string(info.bits) +
                                      "-bit codes; the encoder makes " + std::to_string(enc.bits()));
  }
  const Codebook& codebook = enc.codebook();
  auto settings = ParseCollectionSettings(info.settings_json, info.bits);
  const Codebook* cb = settings.ok() && settings->codebook ? &*settings->codebook : nullptr;
  bool same = cb && cb->num_classes() == codebook.num_classes();
  for (size_t c = 0; same && c < codebook.num_classes(); ++c)
    same = std::equal(codebook.class_code(c), codebook.class_code(c) + codebook.code_bytes(), cb->class_code(c));
  if (!same) {
    return Status::FailedPrecondition("collection '" + info.name + "' was made with a different encoder codebook");
  }
  return Status::OK();
}

// Decodes, encodes and stores `files` through `target`, in batches; prints
// the summary. The exit code: 0, 3 when some files failed, 130 when
// interrupted, 1 on an error.
int IngestFiles(const IngestArgs& a, const Encoder& enc, const std::vector<SourceFile>& files,
                IngestTarget* target) {
  const Codebook& codebook = enc.codebook();
  std::signal(SIGINT, OnInterrupt);
  std::signal(SIGTERM, OnInterrupt);
  ThreadPool& pool = ThreadPool::Default();

  uint64_t ingested = 0, present = 0, unsupported = 0, failed = 0;
  double t_check = 0, t_decode = 0, t_encode = 0, t_store = 0;
  std::map<std::string, uint64_t> reasons;
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };
  const auto t_start = now();
  Progress progress("ingest " + a.collection, files.size(), "files");

  std::unordered_set<uint64_t> claimed;  // ids taken by earlier files of this run
  // A batch's durable write runs while the next batch is decoded and
  // encoded: it starts after that batch's check (whose lookups it would
  // slow down) and is awaited after its encode, so at most one write is in
  // flight and batches are stored in order.
  struct StoreBatch {
    std::vector<ItemInput> items;
    size_t begin = 0;  // index of the batch's first file
    size_t files = 0;  // 0: no batch
  };
  StoreBatch to_store;  // encoded, its write not started
  StoreBatch writing;   // its write in flight (items moved into the write)
  uint64_t writing_items = 0;
  std::future<Status> pending;
  auto start_store = [&] {
    if (to_store.files == 0) return;
    writing_items = to_store.items.size();
    pending = std::async(std::launch::async,
                         [target, items = std::move(to_store.items)] { return target->Store(items); });
    writing = std::move(to_store);
    to_store = StoreBatch();
  };
  auto await_store = [&]() -> Status {
    if (!pending.valid()) return Status::OK();
    const auto t0 = now();
    Status s = pending.get();
    t_store += secs(now() - t0);
    if (!s.ok()) return s.WithContext("storing batch at file " + std::to_string(writing.begin));
    ingested += writing_items;
    progress.SetNote(std::to_string(present) + " present, " + std::to_string(unsupported) + " skipped, " +
                     std::to_string(failed) + " failed");
    progress.Add(writing.files);
    if (a.kill_after_batches > 0 && writing.begin / a.batch + 1 >= a.kill_after_batches) {
      std::raise(SIGKILL);
    }
    return Status::OK();
  };
  // A run stopped by an error still stores the batches encoded before it.
  auto fail_after_store = [&](const Status& error) {
    start_store();
    Status s = await_store();
    return Fail(s.ok() ? error : s);
  };
  auto next_id = [&](uint64_t id) {
    id = (id + 1) & kPathKeyIdMask;
    return id == 0 ? 1 : id;
  };
  for (size_t begin = 0; begin < files.size() && !g_interrupted; begin += a.batch) {
    const size_t end = std::min(files.size(), begin + a.batch);
    // 1. Ids, and what is already stored: a file's id is the first id of
    // its probe sequence that no earlier file took and that is free or
    // holds the same path. Files are resolved one after another, in key
    // order, so the ids never depend on --batch; the stored paths of every
    // file's first candidate are looked up in one request.
    auto t0 = now();
    std::unordered_map<uint64_t, std::optional<std::string>> known;  // id -> stored path
    {
      std::vector<uint64_t> first;
      for (size_t i = begin; i < end; ++i) first.push_back(PathKeyId(files[i].key));
      std::vector<std::optional<std::string>> paths;
      if (Status s = target->Lookup(first, &paths); !s.ok()) return fail_after_store(s);
      for (size_t n = 0; n < first.size(); ++n) known[first[n]] = std::move(paths[n]);
    }
    std::vector<size_t> todo;
    std::vector<uint64_t> ids;
    for (size_t i = begin; i < end; ++i) {
      uint64_t id = PathKeyId(files[i].key);
      for (;; id = next_id(id)) {
        if (claimed.count(id)) continue;
        auto it = known.find(id);
        if (it == known.end()) {  // a probe past the first candidate: rare
          std::vector<std::optional<std::string>> one;
          if (Status s = target->Lookup({id}, &one); !s.ok()) return fail_after_store(s);
          it = known.emplace(id, std::move(one[0])).first;
        }
        if (!it->second || *it->second == files[i].key) break;
      }
      claimed.insert(id);
      if (known[id]) {
        ++present;
      } else {
        todo.push_back(i);
        ids.push_back(id);
      }
    }
    t_check += secs(now() - t0);
    start_store();  // the previous batch's write, beside this batch's decode and encode

    // 2. Read, decode and encode: the batch is cut into one slice per
    // thread, and each thread decodes its slice's files and encodes them
    // with one libtorch thread (UseOneTorchThreadHere). Slices run side by side
    // without meeting: no OpenMP team whose idle threads would spin while
    // one thread decodes, or while the store write and the server want
    // the CPU.
    t0 = now();
    // kUnsupported: not a JPEG or PNG (by magic bytes); kFailed: unreadable,
    // empty, or a JPEG/PNG that does not decode.
    enum Outcome : uint8_t { kOk, kUnsupported, kFailed };
    std::vector<Status> errors(todo.size(), Status::OK());
    std::vector<Outcome> outcome(todo.size(), kFailed);
    std::vector<std::string> thumbs(todo.size());
    std::vector<std::optional<EncodedImage>> codes(todo.size());
    const size_t slices = std::min(todo.size(), static_cast<size_t>(pool.Resolve(a.threads)));
    std::vector<Status> slice_errors(slices, Status::OK());
    std::vector<double> slice_decode_s(slices, 0.0);
    Status ps = pool.ParallelFor(slices, static_cast<int>(slices), [&](size_t sl) {
      UseOneTorchThreadHere();
      const size_t lo = todo.size() * sl / slices, hi = todo.size() * (sl + 1) / slices;
      const auto td = now();
      std::vector<Image> images;
      std::vector<size_t> good;  // indices into todo
      for (size_t j = lo; j < hi; ++j) {
        const std::string& path = files[todo[j]].path;
        std::ifstream in(path, std::ios::binary);
        std::vector<uint8_t> bytes;
        if (in) bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        if (!in && !in.eof()) {
          errors[j] = Status::IOError("cannot read file");
        } else if (bytes.empty()) {
          errors[j] = Status::InvalidArgument("empty file");
        } else if (DetectImageFormat(bytes.data(), bytes.size()) == ImageFormat::kUnknown) {
          errors[j] = Status::InvalidArgument("not a JPEG or PNG");
          outcome[j] = kUnsupported;
        } else {
          StatusOr<Image> image = DecodeImage(bytes.data(), bytes.size());
          if (!image.ok()) {
            errors[j] = image.status();
            continue;
          }
          outcome[j] = kOk;
          if (!a.no_thumbnails) {
            StatusOr<std::vector<uint8_t>> t = MakeThumbnail(*image, bytes.data(), bytes.size());
            if (t.ok()) thumbs[j].assign(t->begin(), t->end());
          }
          images.push_back(std::move(image).value());
          good.push_back(j);
        }
      }
      slice_decode_s[sl] = secs(now() - td);
      if (images.empty()) return;
      auto encoded = enc.Encode(images);
      if (!encoded.ok()) {
        slice_errors[sl] = encoded.status();
        return;
      }
      for (size_t g = 0; g < good.size(); ++g) codes[good[g]] = std::move((*encoded)[g]);
    });
    if (!ps.ok()) return fail_after_store(ps);
    for (const Status& s : slice_errors) {
      if (!s.ok()) return fail_after_store(s.WithContext("encoding"));
    }
    // The decode share of this step: the slowest slice's decode.
    const double decode_s = slices ? *std::max_element(slice_decode_s.begin(), slice_decode_s.end()) : 0.0;
    t_decode += decode_s;
    t_encode += secs(now() - t0) - decode_s;

    // 3. The batch's items, in file order.
    std::vector<ItemInput> items;
    for (size_t j = 0; j < todo.size(); ++j) {
      if (outcome[j] == kOk) {
        const SourceFile& f = files[todo[j]];
        std::string extra;
        if (!f.label_name.empty()) extra = nlohmann::json{{"label_name", f.label_name}}.dump();
        auto item = MakeImageItem(*codes[j], codebook, ids[j], f.label, f.key, extra);
        if (!item.ok()) return fail_after_store(item.status());
        item->thumbnail = std::move(thumbs[j]);
        items.push_back(std::move(item).value());
        continue;
      }
      const Status& s = errors[j];
      (outcome[j] == kUnsupported ? unsupported : failed)++;
      reasons[s.message()]++;
      if (!a.quiet_failures)
        std::fprintf(stderr, "%s %s: %s\n", outcome[j] == kUnsupported ? "skipped" : "failed",
                     files[todo[j]].path.c_str(), s.message().c_str());
    }

    // 4. One durable atomic write, started after the next batch's check.
    if (Status s = await_store(); !s.ok()) return Fail(s);
    to_store = StoreBatch{std::move(items), begin, end - begin};
  }
  start_store();
  if (Status s = await_store(); !s.ok()) return Fail(s);
  progress.Finish();
  const double total_s = secs(now() - t_start);

  std::printf("ingest %s: %zu files: %llu ingested, %llu already present, %llu unsupported, %llu failed\n",
              a.collection.c_str(), files.size(), (unsigned long long)ingested, (unsigned long long)present,
              (unsigned long long)unsupported, (unsigned long long)failed);
  for (const auto& [reason, n] : reasons) std::printf("  %6llu x %s\n", (unsigned long long)n, reason.c_str());
  std::printf("time %.2f s (%.0f images/s ingested): check %.2f s, decode %.2f s, encode %.2f s, "
              "store %.2f s (waited for; it overlaps the next batch)\n",
              total_s, total_s > 0 ? ingested / total_s : 0.0, t_check, t_decode, t_encode, t_store);
  if (g_interrupted) {
    std::printf("interrupted: re-run the same command to ingest the rest\n");
    return 130;
  }
  return failed > 0 ? 3 : 0;
}

StatusOr<std::unique_ptr<Encoder>> LoadEncoder(const std::string& path) {
  auto enc = Encoder::Load(path);
  if (!enc.ok()) return enc.status().WithContext("--model");
  TuneProcessForInference();  // libtorch's threads: one per decode-and-encode slice (IngestFiles)
  return enc;
}

int RunLocalIngest(const IngestArgs& a) {
  auto enc_or = LoadEncoder(a.model);
  if (!enc_or.ok()) return Fail(enc_or.status());
  const Encoder& enc = **enc_or;

  auto store_or = OpenStore(a.db, true);
  if (!store_or.ok()) return Fail(store_or.status());
  CodeStore& store = **store_or;

  // The collection: created on first use, else checked against the encoder.
  std::error_code ec;
  const std::string model_abs = fs::absolute(a.model, ec).string();
  auto info = store.GetCollection(a.collection);
  if (info.ok()) {
    if (Status s = CheckCollectionFitsEncoder(*info, enc); !s.ok()) return Fail(s);
  } else if (info.status().code() == Status::Code::kNotFound) {
    CollectionSettings settings;
    settings.encoder_path = model_abs;
    auto sum = ArtifactFileChecksum(model_abs);
    if (!sum.ok()) return Fail(sum.status());
    settings.encoder_checksum = *sum;
    settings.codebook = enc.codebook();
    Status s = LiveCollection::Create(&store, a.collection, enc.bits(), a.index_spec, settings);
    if (!s.ok()) return Fail(s);
    std::fprintf(stderr, "created collection '%s' (%d bits, index %s)\n", a.collection.c_str(), enc.bits(),
                 a.index_spec.c_str());
  } else {
    return Fail(info.status());
  }

  auto files_or = ListSources(a, enc);
  if (!files_or.ok()) return Fail(files_or.status());
  StoreWriteOptions wo;
  wo.sync = !a.no_sync;
  // Ids the collection's index could not take are refused before they are
  // stored (path-key ids have 53 bits, so this only guards the contract).
  if (auto spec = DescribeIndexSpec(store.GetCollection(a.collection)->index_spec); spec.ok()) {
    wo.max_id = spec->max_id;
  }
  LocalTarget target(&store, a.collection, wo);
  return IngestFiles(a, enc, *files_or, &target);
}

// Where a downloaded encoder is kept: $HAMDB_CACHE_DIR, else
// $XDG_CACHE_HOME/hamdb, else ~/.cache/hamdb, else the temp directory.
fs::path EncoderCacheDir() {
  if (const char* d = std::getenv("HAMDB_CACHE_DIR"); d && *d) return fs::path(d) / "encoders";
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return fs::path(d) / "hamdb" / "encoders";
  if (const char* d = std::getenv("HOME"); d && *d) return fs::path(d) / ".cache" / "hamdb" / "encoders";
  return fs::temp_directory_path() / "hamdb-encoders";
}

// The collection's description from the server; NotFound when missing.
StatusOr<nlohmann::json> DescribeRemote(const RemoteTarget& t, const std::string& collection) {
  HAMDB_ASSIGN_OR_RETURN(http::HttpReply r, t.Call("GET", "/collections/" + http::UrlEncode(collection), "", ""));
  if (r.status != 200) return ServerError("collection '" + collection + "'", r);
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (!j.is_object()) return Status::Corruption("the server's description of '" + collection + "' is not JSON");
  return j;
}

int RunRemoteIngest(const IngestArgs& a) {
  auto url = http::ParseUrl(a.url);
  if (!url.ok()) return Fail(url.status());
  const RemoteTarget probe(*url, a.api_key, a.collection, "");
  StatusOr<nlohmann::json> info = DescribeRemote(probe, a.collection);
  if (!info.ok() && info.status().code() != Status::Code::kNotFound) return Fail(info.status());

  std::string model_path = a.model;
  std::string local_sum;
  if (!model_path.empty()) {
    auto sum = ArtifactFileChecksum(model_path);
    if (!sum.ok()) return Fail(sum.status().WithContext("--model"));
    local_sum = *sum;
  }
  if (!info.ok()) {
    // A fresh collection: the artifact goes to the server's --models-dir
    // (unless it has it), then the collection is made with it.
    if (model_path.empty()) {
      return Fail(Status::NotFound("the server has no collection '" + a.collection +
                                   "'; give -m MODEL to create it with that encoder"));
    }
    std::ifstream in(model_path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in && !in.eof()) return Fail(Status::IOError("cannot read --model " + model_path));
    const std::string file = fs::path(model_path).filename().string();
    auto up = probe.Call("PUT", "/admin/models/" + http::UrlEncode(file), "application/octet-stream", bytes);
    if (!up.ok() || up->status == 413) {
      Status s = up.ok() ? ServerError("uploading the encoder", *up) : up.status();
      if (bytes.size() > (8u << 20)) {
        s = s.WithContext("the artifact is " + std::to_string(bytes.size() >> 20) +
                          " MiB: one over the server's --body-limit-mb is copied into its --models-dir by hand");
      }
      return Fail(s);
    }
    if (up->status != 200 && up->status != 201) return Fail(ServerError("uploading the encoder", *up));
    if (up->status == 201) std::fprintf(stderr, "uploaded encoder '%s' to the server\n", file.c_str());
    nlohmann::json create = {{"name", a.collection}, {"encoder", file}, {"index", a.index_spec}};
    auto made = probe.Call("POST", "/collections", "application/json", create.dump());
    if (!made.ok()) return Fail(made.status());
    if (made->status == 201) {
      std::fprintf(stderr, "created collection '%s' on the server (encoder %s, index %s)\n",
                   a.collection.c_str(), file.c_str(), a.index_spec.c_str());
    } else if (made->status != 409) {  // 409: another ingest made it first
      return Fail(ServerError("creating collection '" + a.collection + "'", *made));
    }
    info = DescribeRemote(probe, a.collection);
    if (!info.ok()) return Fail(info.status());
  }
  const nlohmann::json& d = *info;
  if (!d.contains("encoder_checksum") || !d["encoder_checksum"].is_string()) {
    return Fail(Status::FailedPrecondition(
        "collection '" + a.collection + "' on the server has no encoder" +
        (d.contains("encoder") && d["encoder"].is_string() ? " checksum (its artifact is missing there)" : "") +
        "; ingest images into a collection made with an encoder, or send codes with hamdb put"));
  }
  const std::string remote_sum = d["encoder_checksum"];
  if (!local_sum.empty() && local_sum != remote_sum) {
    return Fail(Status::FailedPrecondition("--model " + model_path + " is encoder " + local_sum +
                                           ", but collection '" + a.collection + "' holds codes of encoder " +
                                           remote_sum + "; drop -m to use the collection's own"));
  }
  if (model_path.empty()) {
    // The collection's own encoder, fetched once into the cache.
    const fs::path dir = EncoderCacheDir();
    const fs::path cached = dir / (remote_sum.substr(remote_sum.find(':') + 1) + ".hdbe");
    auto have = ArtifactFileChecksum(cached.string());
    if (!have.ok() || *have != remote_sum) {
      auto r = probe.Call("GET", "/collections/" + http::UrlEncode(a.collection) + "/encoder", "", "");
      if (!r.ok()) return Fail(r.status());
      if (r->status != 200) return Fail(ServerError("downloading the encoder", *r));
      const std::string got = ArtifactChecksum(r->body.data(), r->body.size());
      if (got != remote_sum) {
        return Fail(Status::Corruption("the downloaded encoder is " + got + ", expected " + remote_sum));
      }
      std::error_code ec;
      fs::create_directories(dir, ec);
      const fs::path tmp = cached.string() + ".tmp" + std::to_string(::getpid());
      {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out.write(r->body.data(), static_cast<std::streamsize>(r->body.size()));
        if (!out) return Fail(Status::IOError("cannot write " + tmp.string()));
      }
      fs::rename(tmp, cached, ec);
      if (ec) return Fail(Status::IOError("cannot write " + cached.string() + ": " + ec.message()));
      std::fprintf(stderr, "fetched encoder %s of collection '%s' into %s\n", remote_sum.c_str(),
                   a.collection.c_str(), cached.c_str());
    }
    model_path = cached.string();
  }
  auto enc_or = LoadEncoder(model_path);
  if (!enc_or.ok()) return Fail(enc_or.status());
  const Encoder& enc = **enc_or;

  auto files_or = ListSources(a, enc);
  if (!files_or.ok()) return Fail(files_or.status());
  RemoteTarget target(*url, a.api_key, a.collection, remote_sum);
  return IngestFiles(a, enc, *files_or, &target);
}

int RunIngest(const IngestArgs& a) {
  if (a.images.empty() == a.list.empty()) return Fail(Status::InvalidArgument("give one of --images or --list"));
  if (a.batch == 0) return Fail(Status::InvalidArgument("--batch must be >= 1"));
  if (!a.url.empty()) {
    if (a.db_given) {
      return Fail(Status::InvalidArgument("give --url (a running server) or --db (a local store), not both"));
    }
    return RunRemoteIngest(a);
  }
  if (a.model.empty()) return Fail(Status::InvalidArgument("a local ingest needs -m MODEL"));
  return RunLocalIngest(a);
}

}  // namespace

void AddIngestCommand(CLI::App* app, int* exit_code) {
  auto a = std::make_shared<IngestArgs>();
  CLI::App* cmd = app->add_subcommand(
      "ingest",
      "Encode a folder or list of images into a collection (resumable: re-run to finish an "
      "interrupted ingest)");
  AddDbOption(cmd, &a->db);
  CLI::Option* db_opt = cmd->get_option("--db");
  cmd->add_option("--url", a->url,
                  "A running server to ingest into (http://HOST:PORT) instead of --db (env HAMDB_URL, "
                  "used unless --db is given)");
  cmd->add_option("--api-key", a->api_key, "With --url: the server's admin API key")->envname("HAMDB_API_KEY");
  cmd->add_option("--collection,-c", a->collection, "Collection (created with the encoder's codebook if missing)")
      ->required();
  cmd->add_option("--model,-m", a->model,
                  "Encoder artifact (hamdb train); with --url optional for an existing collection, whose "
                  "own encoder is then fetched from the server");
  cmd->add_option("--images", a->images, "Folder of images, walked recursively");
  cmd->add_option("--list", a->list, "File listing one image path per line");
  cmd->add_option("--labels", a->labels, "folder | csv:FILE | none")->capture_default_str();
  cmd->add_option("--index-spec", a->index_spec, "Index spec of a new collection")->capture_default_str();
  cmd->add_option("--batch", a->batch, "Images per encode batch and store write")->capture_default_str();
  cmd->add_option("--threads", a->threads, "Decode and encode threads (0 = all cores)")->capture_default_str();
  cmd->add_flag("--no-sync", a->no_sync, "Do not fsync each batch (survives a killed process, not a power loss)");
  cmd->add_flag("--quiet-failures", a->quiet_failures, "Only summarise failed files");
  cmd->add_flag("--no-thumbnails", a->no_thumbnails,
                "Do not keep a thumbnail of each image (the web page then shows none)");
  cmd->add_option("--kill-after-batches", a->kill_after_batches,
                  "Testing: kill -9 this process after N batches are stored")
      ->group("");
  cmd->callback([a, exit_code, db_opt] {
    // Flags choose; the environment only fills in what no flag chose.
    const char* env_db = std::getenv("HAMDB_DB");
    a->db_given = db_opt->count() > 0 && !(env_db != nullptr && a->db == env_db);
    const char* env_url = std::getenv("HAMDB_URL");
    if (a->url.empty() && !a->db_given && env_url != nullptr) a->url = env_url;
    *exit_code = RunIngest(*a);
  });
}

}  // namespace hamdb::tools
