// hamdb backup / restore / check: backups of a running server (through it)
// or of a stopped store, restores into a new directory, and verification of
// stores and backups (docs/storage.md).
#include <filesystem>
#include <nlohmann/json.hpp>

#include "collection/index_snapshot.h"
#include "http/client.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

#include <rocksdb/file_system.h>

namespace hamdb::tools {

namespace {

struct BackupArgs {
  std::string db, to, url, api_key;
};

struct RestoreArgs {
  std::string from, db;
  uint32_t id = 0;
};

struct CheckArgs {
  std::string db, backup;
  uint32_t id = 0;
  bool salvage_wal = false;
};

void PrintBackup(const StoreBackupInfo& b) {
  std::printf("backup %u: %u files, %llu bytes, %u index snapshots\n", b.id, b.files,
              static_cast<unsigned long long>(b.size_bytes), b.snapshot_files);
}

int RunBackup(const BackupArgs& a) {
  if (!a.url.empty() == !a.db.empty()) {
    return Fail(Status::InvalidArgument(
        "give either --url (a running server backs itself up into its --backup-dir) or --db with "
        "--to (a stopped store)"));
  }
  if (!a.url.empty()) {
    StatusOr<http::Url> url = http::ParseUrl(a.url);
    if (!url.ok()) return Fail(url.status());
    auto resp = http::HttpPost(*url, "/admin/backup", "application/json", "{}", a.api_key,
                         std::chrono::hours(24));
    if (!resp.ok()) return Fail(resp.status());
    if (resp->first != 200) {
      std::fprintf(stderr, "error: the server answered %d: %s\n", resp->first, resp->second.c_str());
      return 1;
    }
    std::printf("%s\n", resp->second.c_str());
    return 0;
  }
  if (a.to.empty()) return Fail(Status::InvalidArgument("--db needs --to BACKUP_DIR"));
  auto store = OpenStore(a.db, /*create=*/false);
  if (!store.ok()) return Fail(store.status());
  StatusOr<StoreBackupInfo> info = (*store)->Backup(a.to);
  if (!info.ok()) return Fail(info.status());
  PrintBackup(*info);
  return 0;
}

int RunRestore(const RestoreArgs& a) {
  Status s = CodeStore::RestoreBackup(a.from, a.id, a.db);
  if (!s.ok()) return Fail(s);
  auto store = OpenStore(a.db, /*create=*/false);
  if (!store.ok()) return Fail(store.status());
  auto infos = (*store)->ListCollections();
  if (!infos.ok()) return Fail(infos.status());
  std::printf("restored %s into %s: %zu collection(s)\n",
              a.id ? ("backup " + std::to_string(a.id)).c_str() : "the latest backup",
              a.db.c_str(), infos->size());
  return 0;
}

// Verifies every index snapshot file in `dir`; returns how many are bad.
int CheckSnapshots(const std::string& dir) {
  int bad = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".hidx") continue;
    IndexSnapshotHeader h;
    std::string state;
    Status s = ReadIndexSnapshot(rocksdb::FileSystem::Default().get(), e.path().string(), &h, &state);
    if (s.ok()) {
      std::printf("ok    snapshot %s: collection '%s', %s, %llu items, change %llu\n",
                  e.path().filename().c_str(), h.collection.c_str(), h.spec.c_str(),
                  static_cast<unsigned long long>(h.items),
                  static_cast<unsigned long long>(h.change_seq));
    } else {
      std::printf("BAD   snapshot %s: %s (the index will be rebuilt from the store)\n",
                  e.path().filename().c_str(), s.ToString().c_str());
      ++bad;
    }
  }
  return bad;
}

int RunCheck(const CheckArgs& a) {
  if (!a.backup.empty() == !a.db.empty()) {
    return Fail(Status::InvalidArgument("give either --db (a stopped store) or --backup DIR"));
  }
  int bad = 0;
  if (!a.backup.empty()) {
    auto backups = CodeStore::ListBackups(a.backup);
    if (!backups.ok()) return Fail(backups.status());
    for (const StoreBackupInfo& b : *backups) {
      if (a.id != 0 && b.id != a.id) continue;
      Status s = CodeStore::VerifyBackup(a.backup, b.id);
      std::printf("%s backup %u: %u files, %llu bytes%s%s\n", s.ok() ? "ok   " : "BAD  ", b.id,
                  b.files, static_cast<unsigned long long>(b.size_bytes), s.ok() ? "" : ": ",
                  s.ok() ? "" : s.ToString().c_str());
      bad += !s.ok();
      bad += CheckSnapshots(CodeStore::BackupSnapshotDir(a.backup, b.id));
    }
  } else {
    auto store = OpenStore(a.db, /*create=*/false, a.salvage_wal);
    uint64_t items = 0;
    Status s = store.ok() ? (*store)->Check(&items) : store.status();
    if (s.ok()) {
      std::printf("ok    store %s: every SST block checksum, %llu items and records decode\n",
                  a.db.c_str(), static_cast<unsigned long long>(items));
    } else {
      std::printf("BAD   store %s: %s\n", a.db.c_str(), s.ToString().c_str());
      ++bad;
    }
    bad += CheckSnapshots((std::filesystem::path(a.db) / "snapshots").string());
  }
  if (bad) {
    std::fprintf(stderr, "error: %d problem(s) found\n", bad);
    return 1;
  }
  return 0;
}

}  // namespace

void AddBackupCommands(CLI::App* app, int* exit_code) {
  auto b = std::make_shared<BackupArgs>();
  CLI::App* backup = app->add_subcommand(
      "backup",
      "Back up a running server (--url: into its --backup-dir) or a stopped store (--db --to); "
      "writes go on during a server backup");
  backup->add_option("--url", b->url, "Server URL, e.g. http://127.0.0.1:8080")->envname("HAMDB_URL");
  backup->add_option("--api-key", b->api_key, "Admin API key of the server")->envname("HAMDB_API_KEY");
  backup->add_option("--db", b->db, "A stopped store's directory");
  backup->add_option("--to", b->to, "Backup directory for --db (created; earlier backups are kept)");
  backup->callback([b, exit_code] { *exit_code = RunBackup(*b); });

  auto r = std::make_shared<RestoreArgs>();
  CLI::App* restore = app->add_subcommand("restore", "Restore a backup into a new store directory");
  restore->add_option("--from", r->from, "Backup directory")->required();
  restore->add_option("--db", r->db, "New store directory (must not exist or be empty)")->required();
  restore->add_option("--backup-id", r->id, "Backup to restore (default: the latest)");
  restore->callback([r, exit_code] { *exit_code = RunRestore(*r); });

  auto c = std::make_shared<CheckArgs>();
  CLI::App* check = app->add_subcommand(
      "check", "Verify the checksums of a stopped store or of backups, and their index snapshots");
  check->add_option("--db", c->db, "A stopped store's directory");
  check->add_option("--backup", c->backup, "A backup directory");
  check->add_option("--backup-id", c->id, "Only this backup (default: all)");
  check->add_flag("--salvage-wal", c->salvage_wal,
                  "With --db: recover a store whose write-ahead log is damaged (keep every batch "
                  "before the damage, drop the rest), then check it");
  check->callback([c, exit_code] { *exit_code = RunCheck(*c); });
}

}  // namespace hamdb::tools
