// PowerCutFileSystem: a RocksDB FileSystem for tests that simulates a power
// cut. It forwards to the real file system and records, for every file
// written through it, how many bytes were synced (Sync / Fsync) and whether
// the directory entry was made durable (an fsync of its directory after it
// was created or renamed into place). At a cut:
//   1. Kill(): every later write, sync, create, rename and delete fails, as
//      if the machine had stopped (the process then closes what it has open);
//   2. Cut(): each file created since tracking began loses what was never
//      synced, or keeps a random part of it (a torn write, with tear = true);
//      a file whose directory was never fsynced after its creation vanishes.
// Renames are taken as atomic (the file systems RocksDB runs on provide
// that); files that existed before tracking are durable.
#pragma once

#include <rocksdb/file_system.h>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>

namespace hamdb::testing_util {

class PowerCutFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit PowerCutFileSystem(const std::shared_ptr<rocksdb::FileSystem>& base)
      : rocksdb::FileSystemWrapper(base) {}
  static const char* kClassName() { return "PowerCutFileSystem"; }
  const char* Name() const override { return kClassName(); }

  struct Counts {
    size_t files_truncated = 0;
    size_t files_torn = 0;
    size_t files_dropped = 0;
    size_t bytes_dropped = 0;
  };

  void Kill() {
    std::lock_guard<std::mutex> lock(mu_);
    dead_ = true;
  }
  // Applies the cut to the files on disk and starts tracking afresh.
  Counts Cut(std::mt19937_64& rng, bool tear) {
    std::lock_guard<std::mutex> lock(mu_);
    Counts c;
    for (const auto& [name, f] : files_) {
      std::error_code ec;
      if (!std::filesystem::exists(name, ec)) continue;
      if (!f.entry_durable) {
        c.bytes_dropped += std::filesystem::file_size(name, ec);
        std::filesystem::remove(name, ec);
        ++c.files_dropped;
        continue;
      }
      const uint64_t size = std::filesystem::file_size(name, ec);
      if (size <= f.synced) continue;
      uint64_t keep = f.synced;
      if (tear) {
        keep += rng() % (size - f.synced + 1);
        if (keep > f.synced) ++c.files_torn;
      }
      c.bytes_dropped += size - keep;
      std::filesystem::resize_file(name, keep, ec);
      ++c.files_truncated;
    }
    files_.clear();
    dead_ = false;
    return c;
  }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    if (IsDead()) return Dead();
    std::unique_ptr<rocksdb::FSWritableFile> inner;
    rocksdb::IOStatus s = target()->NewWritableFile(f, o, &inner, dbg);
    if (!s.ok()) return s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      files_[f] = FileState{};
    }
    r->reset(new File(std::move(inner), this, f));
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override {
    if (IsDead()) return Dead();
    std::unique_ptr<rocksdb::FSWritableFile> inner;
    rocksdb::IOStatus s = target()->ReopenWritableFile(f, o, &inner, dbg);
    if (!s.ok()) return s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!files_.count(f)) {
        std::error_code ec;
        FileState st;
        st.synced = std::filesystem::file_size(f, ec);
        st.entry_durable = true;
        files_[f] = st;
      }
    }
    r->reset(new File(std::move(inner), this, f));
    return s;
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string&, const std::string&,
                                      const rocksdb::FileOptions&,
                                      std::unique_ptr<rocksdb::FSWritableFile>*,
                                      rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerCutFileSystem: no file reuse");
  }
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& io,
                                 std::unique_ptr<rocksdb::FSDirectory>* r,
                                 rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSDirectory> inner;
    rocksdb::IOStatus s = target()->NewDirectory(name, io, &inner, dbg);
    if (!s.ok()) return s;
    r->reset(new Directory(std::move(inner), this, name));
    return s;
  }
  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& dst,
                               const rocksdb::IOOptions& io, rocksdb::IODebugContext* dbg) override {
    if (IsDead()) return Dead();
    rocksdb::IOStatus s = target()->RenameFile(src, dst, io, dbg);
    if (s.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = files_.find(src);
      if (it != files_.end()) {
        files_[dst] = it->second;
        files_.erase(it);
      } else {
        files_.erase(dst);
      }
    }
    return s;
  }
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions& io,
                               rocksdb::IODebugContext* dbg) override {
    if (IsDead()) return Dead();
    rocksdb::IOStatus s = target()->DeleteFile(f, io, dbg);
    std::lock_guard<std::mutex> lock(mu_);
    files_.erase(f);
    return s;
  }

 private:
  struct FileState {
    uint64_t written = 0;
    uint64_t synced = 0;
    bool entry_durable = false;
  };

  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile>&& t, PowerCutFileSystem* fs, std::string name)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(t)), fs_(fs), name_(std::move(name)) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->IsDead()) return Dead();
      return target()->Append(data, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->IsDead()) return Dead();
      return target()->Append(data, o, v, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t off,
                                       const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* dbg) override {
      if (fs_->IsDead()) return Dead();
      return target()->PositionedAppend(data, off, o, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t off,
                                       const rocksdb::IOOptions& o,
                                       const rocksdb::DataVerificationInfo& v,
                                       rocksdb::IODebugContext* dbg) override {
      if (fs_->IsDead()) return Dead();
      return target()->PositionedAppend(data, off, o, v, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (fs_->IsDead()) return Dead();
      rocksdb::IOStatus s = target()->Sync(o, dbg);
      if (s.ok()) fs_->MarkSynced(name_, target()->GetFileSize(o, dbg));
      return s;
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (fs_->IsDead()) return Dead();
      rocksdb::IOStatus s = target()->Fsync(o, dbg);
      if (s.ok()) fs_->MarkSynced(name_, target()->GetFileSize(o, dbg));
      return s;
    }
    rocksdb::IOStatus Close(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      return target()->Close(o, dbg);  // closing makes nothing durable
    }

   private:
    PowerCutFileSystem* fs_;
    std::string name_;
  };

  class Directory : public rocksdb::FSDirectoryWrapper {
   public:
    Directory(std::unique_ptr<rocksdb::FSDirectory>&& t, PowerCutFileSystem* fs, std::string name)
        : rocksdb::FSDirectoryWrapper(std::move(t)), fs_(fs), name_(std::move(name)) {}
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (fs_->IsDead()) return Dead();
      rocksdb::IOStatus s = FSDirectoryWrapper::Fsync(o, dbg);
      if (s.ok()) fs_->MarkDirectorySynced(name_);
      return s;
    }
    rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg,
                                          const rocksdb::DirFsyncOptions& d) override {
      if (fs_->IsDead()) return Dead();
      rocksdb::IOStatus s = FSDirectoryWrapper::FsyncWithDirOptions(o, dbg, d);
      if (s.ok()) fs_->MarkDirectorySynced(name_);
      return s;
    }

   private:
    PowerCutFileSystem* fs_;
    std::string name_;
  };

  static rocksdb::IOStatus Dead() { return rocksdb::IOStatus::IOError("power cut"); }
  bool IsDead() {
    std::lock_guard<std::mutex> lock(mu_);
    return dead_;
  }
  void MarkSynced(const std::string& f, uint64_t size) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(f);
    if (it != files_.end()) it->second.synced = std::max(it->second.synced, size);
  }
  void MarkDirectorySynced(const std::string& dir) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::filesystem::path d = std::filesystem::path(dir).lexically_normal();
    for (auto& [name, f] : files_) {
      if (std::filesystem::path(name).parent_path().lexically_normal() == d) f.entry_durable = true;
    }
  }

  std::mutex mu_;
  bool dead_ = false;
  std::map<std::string, FileState> files_;
};

}  // namespace hamdb::testing_util
