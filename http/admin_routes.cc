// /admin routes: a backup of the running store, and encoder artifacts
// uploaded into --models-dir.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "collection/settings.h"
#include "http/call.h"

namespace hamdb::http {

Response Service::Call::Backup() {
  if (svc_->options_.backup_dir.empty()) {
    Fail(422, "invalid_argument",
         "this server takes no backups; start it with --backup-dir DIR (backups are written "
         "only there, never to a path a request names)");
  }
  std::unique_lock<std::mutex> one(svc_->backup_mu_, std::try_to_lock);
  if (!one.owns_lock()) Fail(409, "backup_in_progress", "a backup is already running");
  const auto t0 = std::chrono::steady_clock::now();
  StatusOr<StoreBackupInfo> info = svc_->store_->Backup(svc_->options_.backup_dir);
  Check(info.status());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("backup {} written to '{}': {} files, {} bytes, {} index snapshots, {:.2f} s",
               info->id, svc_->options_.backup_dir, info->files, info->size_bytes,
               info->snapshot_files, seconds);
  return JsonResponse(200, {{"backup_id", info->id},
                            {"backup_dir", svc_->options_.backup_dir},
                            {"timestamp", info->timestamp},
                            {"files", info->files},
                            {"size_bytes", info->size_bytes},
                            {"snapshot_files", info->snapshot_files},
                            {"seconds", seconds}});
}

namespace {

// A model file name: letters, digits, '.', '_' and '-', not starting with
// '.', at most 200 bytes; never a path.
bool IsModelFileName(const std::string& name) {
  if (name.empty() || name.size() > 200 || name[0] == '.') return false;
  for (char ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '.' || ch == '_' || ch == '-';
    if (!ok) return false;
  }
  return true;
}

// Writes `bytes` to `path` and fsyncs it. IOError names what failed.
Status WriteFileSynced(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError("cannot create " + path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      return Status::IOError("cannot write " + path + ": " + why);
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const std::string why = synced ? "" : std::strerror(errno);
  ::close(fd);
  if (!synced) return Status::IOError("cannot sync " + path + ": " + why);
  return Status::OK();
}

void SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace

Response Service::Call::UploadModel() {
  const ServiceOptions& o = svc_->options_;
  if (o.models_dir.empty()) {
    Fail(422, "invalid_argument",
         "this server takes no encoder uploads; start it with --models-dir DIR");
  }
  if (!o.encoder_loader) Fail(422, "not_supported", "this server was started without encoder support");
  const std::string file = target_.segments[2];
  if (!IsModelFileName(file)) {
    Fail(422, "invalid_argument",
         "model name '" + file + "' must be letters, digits, '.', '_' and '-' (not starting with '.')");
  }
  if (req_.body.empty()) Fail(422, "invalid_argument", "the body (the artifact's bytes) is empty");
  if (req_.body.size() > o.max_model_bytes) {
    Fail(422, "invalid_encoder",
         "the artifact is larger than --max-model-mb (" + std::to_string(o.max_model_bytes >> 20) +
             " MiB)");
  }
  namespace fs = std::filesystem;
  const std::string checksum = ArtifactChecksum(req_.body.data(), req_.body.size());
  const std::string final_path = (fs::path(o.models_dir) / file).string();
  static std::atomic<uint64_t> upload_seq{0};
  const std::string tmp_path =
      (fs::path(o.models_dir) /
       (file + ".uploading-" + std::to_string(::getpid()) + "-" + std::to_string(upload_seq++)))
          .string();
  struct RemoveTmp {
    std::string path;
    ~RemoveTmp() {
      std::error_code ec;
      if (!path.empty()) fs::remove(path, ec);
    }
  } remove_tmp{tmp_path};  // also a partial file a failed write left
  Check(WriteFileSynced(tmp_path, req_.body));
  // Only an artifact this server can load is kept.
  StatusOr<std::shared_ptr<const Encoder>> enc = o.encoder_loader(tmp_path);
  if (!enc.ok()) {
    Fail(422, "invalid_encoder", "the upload is not a loadable encoder artifact: " + enc.status().ToString());
  }
  const int bits = (*enc)->bits();
  std::lock_guard<std::mutex> admin(svc_->admin_mu_);
  std::error_code ec;
  if (fs::exists(final_path, ec)) {
    StatusOr<std::string> existing = ArtifactFileChecksum(final_path);
    Check(existing.status());
    if (*existing != checksum) {
      Fail(409, "conflict",
           "a different artifact named '" + file + "' is already in --models-dir (checksum " + *existing +
               "; this upload is " + checksum + "); upload it under another name");
    }
    return JsonResponse(200, {{"name", file}, {"encoder_checksum", checksum}, {"bits", bits},
                              {"bytes", req_.body.size()}, {"created", false}});
  }
  fs::rename(tmp_path, final_path, ec);
  if (ec) Check(Status::IOError("cannot move the upload into --models-dir: " + ec.message()));
  remove_tmp.path.clear();
  SyncDir(o.models_dir);
  spdlog::info("encoder artifact '{}' uploaded: {} bytes, {}", file, req_.body.size(), checksum);
  return JsonResponse(201, {{"name", file}, {"encoder_checksum", checksum}, {"bits", bits},
                            {"bytes", req_.body.size()}, {"created", true}});
}

}  // namespace hamdb::http
