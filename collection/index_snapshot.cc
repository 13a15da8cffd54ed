#include "collection/index_snapshot.h"

#include <rocksdb/file_system.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "index/state_io.h"

namespace hamdb {

namespace {

constexpr char kMagic[8] = {'h', 'a', 'm', 'd', 'b', 'i', 'd', 'x'};

Status FromIO(const rocksdb::IOStatus& s, const std::string& what) {
  if (s.ok()) return Status::OK();
  if (s.IsNotFound()) return Status::NotFound(what + ": " + s.ToString());
  return Status::IOError(what + ": " + s.ToString());
}

}  // namespace

Status WriteIndexSnapshot(rocksdb::FileSystem* fs, const std::string& path,
                          const IndexSnapshotHeader& header, std::string_view state,
                          std::string_view fields_state) {
  const nlohmann::json h = {{"collection_id", header.collection_id},
                            {"collection", header.collection},
                            {"spec", header.spec},
                            {"bits", header.bits},
                            {"change_seq", header.change_seq},
                            {"items", header.items}};
  const std::string head_json = h.dump();
  std::string head(kMagic, sizeof(kMagic));
  state_io::Put<uint32_t>(&head, kIndexSnapshotVersion);
  state_io::Put<uint32_t>(&head, static_cast<uint32_t>(head_json.size()));
  head += head_json;
  state_io::Put<uint64_t>(&head, state.size());
  XXH3_state_t* xx = XXH3_createState();
  if (xx == nullptr) return Status::ResourceExhausted("snapshot checksum: out of memory");
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> xx_owner(xx, &XXH3_freeState);
  XXH3_64bits_reset(xx);
  XXH3_64bits_update(xx, head.data(), head.size());
  XXH3_64bits_update(xx, state.data(), state.size());
  std::string fields_len;
  state_io::Put<uint64_t>(&fields_len, fields_state.size());
  XXH3_64bits_update(xx, fields_len.data(), fields_len.size());
  XXH3_64bits_update(xx, fields_state.data(), fields_state.size());
  std::string tail;
  state_io::Put<uint64_t>(&tail, XXH3_64bits_digest(xx));

  const std::string dir = std::filesystem::path(path).parent_path().string();
  const std::string tmp = path + ".tmp";
  const rocksdb::IOOptions io;
  HAMDB_RETURN_IF_ERROR(FromIO(fs->CreateDirIfMissing(dir, io, nullptr), "create " + dir));
  std::unique_ptr<rocksdb::FSWritableFile> file;
  HAMDB_RETURN_IF_ERROR(
      FromIO(fs->NewWritableFile(tmp, rocksdb::FileOptions(), &file, nullptr), "create " + tmp));
  Status st = FromIO(file->Append(head, io, nullptr), "write " + tmp);
  // Large states go in 64 MiB pieces.
  auto append = [&](std::string_view bytes) {
    for (size_t pos = 0; st.ok() && pos < bytes.size(); pos += 64u << 20) {
      const size_t len = std::min<size_t>(64u << 20, bytes.size() - pos);
      st = FromIO(file->Append(rocksdb::Slice(bytes.data() + pos, len), io, nullptr), "write " + tmp);
    }
  };
  append(state);
  append(fields_len);
  append(fields_state);
  if (st.ok()) st = FromIO(file->Append(tail, io, nullptr), "write " + tmp);
  if (st.ok()) st = FromIO(file->Sync(io, nullptr), "fsync " + tmp);
  Status closed = FromIO(file->Close(io, nullptr), "close " + tmp);
  if (st.ok()) st = closed;
  if (st.ok()) st = FromIO(fs->RenameFile(tmp, path, io, nullptr), "rename " + tmp);
  if (!st.ok()) {
    fs->DeleteFile(tmp, io, nullptr).PermitUncheckedError();
    return st;
  }
  std::unique_ptr<rocksdb::FSDirectory> d;
  HAMDB_RETURN_IF_ERROR(FromIO(fs->NewDirectory(dir, io, &d, nullptr), "open " + dir));
  return FromIO(d->Fsync(io, nullptr), "fsync " + dir);
}

Status ReadIndexSnapshot(rocksdb::FileSystem* fs, const std::string& path,
                         IndexSnapshotHeader* header, std::string* state,
                         std::string* fields_state) {
  rocksdb::IOStatus exists = fs->FileExists(path, rocksdb::IOOptions(), nullptr);
  if (exists.IsNotFound()) return Status::NotFound("no index snapshot at '" + path + "'");
  HAMDB_RETURN_IF_ERROR(FromIO(exists, "look up " + path));
  // One read into a buffer of the file's size (RocksDB's ReadFileToString
  // reads in small pieces).
  const rocksdb::IOOptions io;
  uint64_t size = 0;
  HAMDB_RETURN_IF_ERROR(FromIO(fs->GetFileSize(path, io, &size, nullptr), "size of " + path));
  std::unique_ptr<rocksdb::FSSequentialFile> file;
  HAMDB_RETURN_IF_ERROR(
      FromIO(fs->NewSequentialFile(path, rocksdb::FileOptions(), &file, nullptr), "open " + path));
  std::string data;
  data.resize(size);
  size_t got = 0;
  while (got < size) {
    rocksdb::Slice piece;
    const size_t want = std::min<size_t>(size - got, 64u << 20);
    HAMDB_RETURN_IF_ERROR(
        FromIO(file->Read(want, io, &piece, data.data() + got, nullptr), "read " + path));
    if (piece.empty()) break;
    if (piece.data() != data.data() + got) std::memmove(data.data() + got, piece.data(), piece.size());
    got += piece.size();
  }
  data.resize(got);
  const std::string where = "index snapshot '" + path + "'";
  if (data.size() < sizeof(kMagic) + 4 + 4 + 8 + 8 ||
      std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) {
    return Status::Corruption(where + " is too short or not a snapshot");
  }
  uint64_t stored_sum;
  std::memcpy(&stored_sum, data.data() + data.size() - 8, 8);
  if (XXH3_64bits(data.data(), data.size() - 8) != stored_sum) {
    return Status::Corruption(where + " fails its checksum");
  }
  std::string_view in(data.data() + sizeof(kMagic), data.size() - sizeof(kMagic) - 8);
  uint32_t version = 0, head_len = 0;
  if (!state_io::Get(&in, &version).ok()) return Status::Corruption(where + " is too short");
  if (version != kIndexSnapshotVersion && version != 4) {
    return Status::NotSupported(where + " has format version " + std::to_string(version) +
                                "; this build reads version " +
                                std::to_string(kIndexSnapshotVersion));
  }
  if (!state_io::Get(&in, &head_len).ok() || in.size() < head_len) {
    return Status::Corruption(where + " has a truncated header");
  }
  const nlohmann::json h = nlohmann::json::parse(in.substr(0, head_len), nullptr, false);
  in.remove_prefix(head_len);
  uint64_t state_len = 0;
  if (h.is_discarded() || !h.is_object() || !state_io::Get(&in, &state_len).ok() ||
      in.size() < state_len) {
    return Status::Corruption(where + " has a header or length that does not decode");
  }
  std::string_view fields = in.substr(state_len);
  in = in.substr(0, state_len);
  uint64_t fields_len = 0;
  if (version >= 5 && (!state_io::Get(&fields, &fields_len).ok() || fields.size() != fields_len)) {
    return Status::Corruption(where + " has a field index length that does not decode");
  }
  if (version == 4 && !fields.empty()) return Status::Corruption(where + " has trailing bytes");
  if (fields_state != nullptr) fields_state->assign(fields.data(), fields.size());
  try {
    header->collection_id = h.at("collection_id").get<uint32_t>();
    header->collection = h.at("collection").get<std::string>();
    header->spec = h.at("spec").get<std::string>();
    header->bits = h.at("bits").get<int>();
    header->change_seq = h.at("change_seq").get<uint64_t>();
    header->items = h.at("items").get<uint64_t>();
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(where + " header: " + e.what());
  }
  // The state, in place: drop everything after it and before it.
  const size_t state_begin = static_cast<size_t>(in.data() - data.data());
  data.resize(state_begin + in.size());
  data.erase(0, state_begin);
  *state = std::move(data);
  return Status::OK();
}

}  // namespace hamdb
