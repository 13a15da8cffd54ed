// /admin routes: a backup of the running store.
#include <spdlog/spdlog.h>

#include <chrono>

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

}  // namespace hamdb::http
