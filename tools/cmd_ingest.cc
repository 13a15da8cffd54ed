// hamdb ingest: bulk-encode a folder (or a list) of images into a collection.
//
// Item ids are path keys: id = XXH3-64 of the file's key path, cut to 53 bits
// (so ids stay exact in JavaScript clients), probing id+1, id+2, ... when a
// different path already owns the id. The key path is the path relative to
// --images, or the path exactly as written in --list. Because the id of a path
// never changes, a re-run after Ctrl-C or kill -9 finds what is already
// stored (same id, same path) and ingests only what is missing; an item can
// never be stored twice. Every batch is one atomic, fsync'ed store write.
//
// Labels: "folder" (the first sub-folder under --images: the encoder's class
// index when the name is one of its classes, else the rank of the name among
// all sub-folder names), "csv:FILE" (lines `path,label`, label an integer or
// a class name; the path as the key path), or "none".
// Header-only use of Debian's xxHash (libxxhash-dev).
#define XXH_INLINE_ALL
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
#include <unordered_map>
#include <unordered_set>

#include "collection/live_collection.h"
#include "db/code_store.h"
#include "collection/image_items.h"
#include "encoder/encoder.h"
#include "encoder/inference_process.h"
#include "encoder/torch_threads.h"
#include "index/parallel.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace hamdb::tools {

namespace fs = std::filesystem;

uint64_t PathKeyId(std::string_view key_path) {
  const uint64_t h = XXH3_64bits(key_path.data(), key_path.size());
  const uint64_t id = h & ((uint64_t{1} << 53) - 1);
  return id == 0 ? 1 : id;
}

namespace {

struct IngestArgs {
  std::string db, collection, model, images, list, labels = "folder", index_spec = kDefaultIndexSpec;
  size_t batch = 512;
  int threads = 0;
  bool no_sync = false;
  bool quiet_failures = false;
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

// Whether the collection's stored item `id` came from `key`.
bool ItemHasPath(const Item& item, const std::string& key) {
  auto j = nlohmann::json::parse(item.metadata_json, nullptr, false);
  return j.is_object() && j.contains("path") && j["path"].is_string() && j["path"] == key;
}

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void OnInterrupt(int) { g_interrupted = 1; }

int RunIngest(const IngestArgs& a) {
  if (a.images.empty() == a.list.empty()) return Fail(Status::InvalidArgument("give one of --images or --list"));
  if (a.batch == 0) return Fail(Status::InvalidArgument("--batch must be >= 1"));
  auto enc_or = Encoder::Load(a.model);
  if (!enc_or.ok()) return Fail(enc_or.status().WithContext("--model"));
  TuneProcessForInference();
  SetTorchThreads(0);
  const Encoder& enc = **enc_or;
  const Codebook& codebook = enc.codebook();

  auto store_or = OpenStore(a.db, true);
  if (!store_or.ok()) return Fail(store_or.status());
  CodeStore& store = **store_or;

  // The collection: created on first use, else checked against the encoder.
  std::error_code ec;
  const std::string model_abs = fs::absolute(a.model, ec).string();
  auto info = store.GetCollection(a.collection);
  if (info.ok()) {
    if (info->bits != enc.bits())
      return Fail(Status::FailedPrecondition("collection '" + a.collection + "' holds " +
                                             std::to_string(info->bits) + "-bit codes; the encoder makes " +
                                             std::to_string(enc.bits())));
    auto settings = ParseCollectionSettings(info->settings_json, info->bits);
    const Codebook* cb = settings.ok() && settings->codebook ? &*settings->codebook : nullptr;
    bool same = cb && cb->num_classes() == codebook.num_classes();
    for (size_t c = 0; same && c < codebook.num_classes(); ++c)
      same = std::equal(codebook.class_code(c), codebook.class_code(c) + codebook.code_bytes(),
                        cb->class_code(c));
    if (!same)
      return Fail(Status::FailedPrecondition("collection '" + a.collection +
                                             "' was made with a different encoder codebook"));
  } else if (info.status().code() == Status::Code::kNotFound) {
    CollectionSettings settings;
    settings.encoder_path = model_abs;
    settings.codebook = codebook;
    Status s = LiveCollection::Create(&store, a.collection, enc.bits(), a.index_spec, settings);
    if (!s.ok()) return Fail(s);
    std::fprintf(stderr, "created collection '%s' (%d bits, index %s)\n", a.collection.c_str(),
                 enc.bits(), a.index_spec.c_str());
  } else {
    return Fail(info.status());
  }

  auto files_or = ListSources(a, enc);
  if (!files_or.ok()) return Fail(files_or.status());
  std::vector<SourceFile> files = std::move(files_or).value();

  std::signal(SIGINT, OnInterrupt);
  std::signal(SIGTERM, OnInterrupt);
  StoreWriteOptions wo;
  wo.sync = !a.no_sync;
  // Ids the collection's index could not take are refused before they are
  // stored (path-key ids have 53 bits, so this only guards the contract).
  if (auto spec = DescribeIndexSpec(store.GetCollection(a.collection)->index_spec); spec.ok()) {
    wo.max_id = spec->max_id;
  }
  ThreadPool& pool = ThreadPool::Default();

  uint64_t ingested = 0, present = 0, unsupported = 0, failed = 0;
  double t_check = 0, t_decode = 0, t_encode = 0, t_store = 0;
  std::map<std::string, uint64_t> reasons;
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };
  const auto t_start = now();
  Progress progress("ingest " + a.collection, files.size(), "files");

  std::vector<std::string> errors;
  std::unordered_set<uint64_t> claimed;  // ids taken by earlier files of this run
  // A batch's durable write runs while the next batch is decoded and
  // encoded: it starts after that batch's check (whose store lookups it
  // would slow down) and is awaited after its encode, so at most one write
  // is in flight and batches are stored in order.
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
    pending = std::async(std::launch::async, [&store, &a, &wo, items = std::move(to_store.items)] {
      return items.empty() ? Status::OK() : store.Put(a.collection, items, wo);
    });
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
    progress.SetNote(std::to_string(present) + " present, " + std::to_string(unsupported) +
                     " skipped, " + std::to_string(failed) + " failed");
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
  for (size_t begin = 0; begin < files.size() && !g_interrupted; begin += a.batch) {
    const size_t end = std::min(files.size(), begin + a.batch);
    // 1. Ids, and what is already stored.
    auto t0 = now();
    std::vector<size_t> todo;
    std::vector<uint64_t> ids;
    for (size_t i = begin; i < end; ++i) {
      uint64_t id = PathKeyId(files[i].key);
      bool done = false;
      for (;; id = (id + 1) & ((uint64_t{1} << 53) - 1)) {
        if (id == 0) continue;
        if (claimed.count(id)) continue;
        auto item = store.Get(a.collection, id);
        if (item.ok()) {
          if (ItemHasPath(*item, files[i].key)) done = true; else continue;
        } else if (item.status().code() != Status::Code::kNotFound) {
          return fail_after_store(item.status());
        }
        break;
      }
      claimed.insert(id);
      if (done) {
        ++present;
      } else {
        todo.push_back(i);
        ids.push_back(id);
      }
    }
    t_check += secs(now() - t0);
    start_store();  // the previous batch's write, beside this batch's decode and encode

    // 2. Read and decode in parallel.
    t0 = now();
    // kUnsupported: not a JPEG or PNG (by magic bytes); kFailed: unreadable,
    // empty, or a JPEG/PNG that does not decode.
    enum Outcome : uint8_t { kOk, kUnsupported, kFailed };
    std::vector<StatusOr<Image>> decoded(todo.size(), Status::Internal("not decoded"));
    std::vector<Outcome> outcome(todo.size(), kFailed);
    Status ps = pool.ParallelFor(todo.size(), a.threads, [&](size_t j) {
      const std::string& path = files[todo[j]].path;
      std::ifstream in(path, std::ios::binary);
      std::vector<uint8_t> bytes;
      if (in) bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      if (!in && !in.eof()) {
        decoded[j] = Status::IOError("cannot read file");
      } else if (bytes.empty()) {
        decoded[j] = Status::InvalidArgument("empty file");
      } else if (DetectImageFormat(bytes.data(), bytes.size()) == ImageFormat::kUnknown) {
        decoded[j] = Status::InvalidArgument("not a JPEG or PNG");
        outcome[j] = kUnsupported;
      } else {
        decoded[j] = DecodeImage(bytes.data(), bytes.size());
        if (decoded[j].ok()) outcome[j] = kOk;
      }
    });
    if (!ps.ok()) return fail_after_store(ps);
    std::vector<Image> images;
    std::vector<size_t> good;  // indices into todo
    for (size_t j = 0; j < todo.size(); ++j) {
      if (outcome[j] == kOk) {
        images.push_back(std::move(decoded[j]).value());
        good.push_back(j);
        continue;
      }
      const Status& s = decoded[j].status();
      (outcome[j] == kUnsupported ? unsupported : failed)++;
      reasons[s.message()]++;
      if (!a.quiet_failures)
        std::fprintf(stderr, "%s %s: %s\n", outcome[j] == kUnsupported ? "skipped" : "failed",
                     files[todo[j]].path.c_str(), s.message().c_str());
    }
    t_decode += secs(now() - t0);

    // 3. Encode the batch.
    t0 = now();
    std::vector<ItemInput> items;
    if (!images.empty()) {
      auto encoded = enc.Encode(images);
      if (!encoded.ok()) return fail_after_store(encoded.status().WithContext("encoding"));
      for (size_t g = 0; g < good.size(); ++g) {
        const SourceFile& f = files[todo[good[g]]];
        std::string extra;
        if (!f.label_name.empty()) extra = nlohmann::json{{"label_name", f.label_name}}.dump();
        auto item = MakeImageItem((*encoded)[g], codebook, ids[good[g]], f.label, f.key, extra);
        if (!item.ok()) return fail_after_store(item.status());
        items.push_back(std::move(item).value());
      }
    }
    t_encode += secs(now() - t0);

    // 4. One durable atomic write, started after the next batch's check.
    if (Status s = await_store(); !s.ok()) return Fail(s);
    to_store = StoreBatch{std::move(items), begin, end - begin};
  }
  start_store();
  if (Status s = await_store(); !s.ok()) return Fail(s);
  progress.Finish();
  const double total_s = secs(now() - t_start);

  std::printf("ingest %s: %zu files: %llu ingested, %llu already present, %llu unsupported, %llu failed\n",
              a.collection.c_str(), files.size(), (unsigned long long)ingested,
              (unsigned long long)present, (unsigned long long)unsupported, (unsigned long long)failed);
  for (const auto& [reason, n] : reasons)
    std::printf("  %6llu x %s\n", (unsigned long long)n, reason.c_str());
  std::printf("time %.2f s (%.0f images/s ingested): check %.2f s, decode %.2f s, encode %.2f s, "
              "store %.2f s (waited for; it overlaps the next batch)\n",
              total_s, total_s > 0 ? ingested / total_s : 0.0, t_check, t_decode, t_encode, t_store);
  if (g_interrupted) {
    std::printf("interrupted: re-run the same command to ingest the rest\n");
    return 130;
  }
  return failed > 0 ? 3 : 0;
}

}  // namespace

void AddIngestCommand(CLI::App* app, int* exit_code) {
  auto a = std::make_shared<IngestArgs>();
  CLI::App* cmd = app->add_subcommand(
      "ingest",
      "Encode a folder or list of images into a collection (resumable: re-run to finish an "
      "interrupted ingest)");
  AddDbOption(cmd, &a->db);
  cmd->add_option("--collection,-c", a->collection, "Collection (created with the encoder's codebook if missing)")
      ->required();
  cmd->add_option("--model,-m", a->model, "Encoder artifact (hamdb train)")->required();
  cmd->add_option("--images", a->images, "Folder of images, walked recursively");
  cmd->add_option("--list", a->list, "File listing one image path per line");
  cmd->add_option("--labels", a->labels, "folder | csv:FILE | none")->capture_default_str();
  cmd->add_option("--index-spec", a->index_spec, "Index spec of a new collection")->capture_default_str();
  cmd->add_option("--batch", a->batch, "Images per encode batch and store write")->capture_default_str();
  cmd->add_option("--threads", a->threads, "Decode threads (0 = all cores)")->capture_default_str();
  cmd->add_flag("--no-sync", a->no_sync, "Do not fsync each batch (survives a killed process, not a power loss)");
  cmd->add_flag("--quiet-failures", a->quiet_failures, "Only summarise failed files");
  cmd->add_option("--kill-after-batches", a->kill_after_batches,
                  "Testing: kill -9 this process after N batches are stored")
      ->group("");
  cmd->callback([a, exit_code] { *exit_code = RunIngest(*a); });
}

}  // namespace hamdb::tools
