// Backup while writing, restore, and the checks of stores and backups: a
// backup taken while writers stream batches holds every batch acknowledged
// before it began, each whole, and nothing that was never written; the
// restored collection opens from its snapshot and searches exactly; damaged
// files are named by Check and VerifyBackup.
#include <gtest/gtest.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "collection/index_snapshot.h"
#include "collection/live_collection.h"
#include "tests/collection/collection_test_util.h"
#include "tests/db/test_util.h"

namespace hamdb {
namespace {

using testing_util::CodeOfId;
using testing_util::Oracle;
using testing_util::RandomCode;
using testing_util::StoreContents;
using testing_util::TempDir;

constexpr int kBits = 64;
constexpr uint64_t kBatch = 10;

std::vector<uint8_t> CodeOf(uint64_t id) { return CodeOfId(id, kBits); }

// Flips the bits of the byte at `offset` of file `p`.
void FlipByte(const std::filesystem::path& p, uint64_t offset) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c;
  f.read(&c, 1);
  c ^= 0x5a;
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

TEST(Backup, TakenDuringWritesRestoresExactlyTheAcknowledgedBatches) {
  TempDir tmp;
  const std::string backups = tmp.sub("backups");
  auto store = std::move(CodeStore::Open(tmp.sub("db"))).value();
  ASSERT_TRUE(store->CreateCollection({"c", kBits, "MIH"}).ok());
  LiveCollectionOptions lo;
  lo.snapshots = true;
  lo.snapshot_after_items = 2000;
  auto live = std::move(LiveCollection::Open(store.get(), "c", lo)).value();

  constexpr int kWriters = 3;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> acked[kWriters], attempted[kWriters];
  for (int w = 0; w < kWriters; ++w) acked[w] = attempted[w] = 0;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (uint64_t b = 0; !stop; ++b) {
        std::vector<uint64_t> ids;
        std::vector<uint8_t> codes;
        for (uint64_t i = 0; i < kBatch; ++i) {
          ids.push_back((w << 24) + b * kBatch + i);
          const std::vector<uint8_t> c = CodeOf(ids.back());
          codes.insert(codes.end(), c.begin(), c.end());
        }
        attempted[w] = b + 1;
        ASSERT_TRUE(live->PutCodes(ids.data(), codes.data(), ids.size()).ok());
        acked[w] = b + 1;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  uint64_t before[kWriters];
  for (int w = 0; w < kWriters; ++w) before[w] = acked[w];
  StatusOr<StoreBackupInfo> info = store->Backup(backups);
  uint64_t after[kWriters];
  for (int w = 0; w < kWriters; ++w) after[w] = attempted[w];
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop = true;
  for (auto& t : writers) t.join();
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->id, 1u);
  EXPECT_GT(info->files, 0u);

  // A second, incremental backup; both verify.
  StatusOr<StoreBackupInfo> second = store->Backup(backups);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->id, 2u);
  EXPECT_EQ(CodeStore::ListBackups(backups)->size(), 2u);
  EXPECT_TRUE(CodeStore::VerifyBackup(backups, 0).ok());

  const std::string restored_dir = tmp.sub("restored");
  ASSERT_TRUE(CodeStore::RestoreBackup(backups, info->id, restored_dir).ok());
  EXPECT_EQ(CodeStore::RestoreBackup(backups, info->id, restored_dir).code(),
            Status::Code::kInvalidArgument);  // not into a non-empty directory
  EXPECT_EQ(CodeStore::RestoreBackup(backups, 9, tmp.sub("nine")).code(), Status::Code::kNotFound);
  auto restored = std::move(CodeStore::Open(restored_dir)).value();
  uint64_t checked = 0;
  EXPECT_TRUE(restored->Check(&checked).ok());
  const auto model = StoreContents(*restored, "c");
  EXPECT_EQ(checked, model.size());
  uint64_t whole = 0;
  for (int w = 0; w < kWriters; ++w) {
    for (uint64_t b = 0; b < after[w]; ++b) {
      uint64_t here = 0;
      for (uint64_t i = 0; i < kBatch; ++i) here += model.count((w << 24) + b * kBatch + i);
      EXPECT_TRUE(here == 0 || here == kBatch) << "writer " << w << " batch " << b << " torn";
      if (b < before[w]) {
        EXPECT_EQ(here, kBatch) << "writer " << w << " batch " << b << " lost";
      }
      whole += here == kBatch;
    }
  }
  EXPECT_EQ(model.size(), whole * kBatch);  // nothing else
  for (const auto& [id, code] : model) EXPECT_EQ(code, CodeOf(id));
  std::printf("backup 1: %llu batches whole (>= %llu acknowledged before it began), %u snapshot files\n",
              static_cast<unsigned long long>(whole),
              static_cast<unsigned long long>(before[0] + before[1] + before[2]),
              info->snapshot_files);

  LiveCollectionOptions reopen;
  reopen.snapshots = true;
  auto rlive = std::move(LiveCollection::Open(restored.get(), "c", reopen)).value();
  EXPECT_EQ(rlive->open_info().from_snapshot, info->snapshot_files > 0) << rlive->open_info().why_rebuilt;
  EXPECT_EQ(rlive->index_size(), model.size());
  std::mt19937_64 rng(4);
  for (int q = 0; q < 20; ++q) {
    const std::vector<uint8_t> query = RandomCode(rng, kBits);
    EXPECT_EQ(rlive->Search(query.data(), 10)->neighbors, Oracle(model, query, 10));
  }
}

// Flipped bytes in an SST file are named by Check; in a backup, by
// VerifyBackup; in a backed-up snapshot, by its checksum.
TEST(Backup, DamagedFilesAreReported) {
  TempDir tmp;
  const std::string db = tmp.sub("db"), backups = tmp.sub("backups");
  {
    auto store = std::move(CodeStore::Open(db)).value();
    ASSERT_TRUE(store->CreateCollection({"c", kBits, "Flat"}).ok());
    std::vector<uint8_t> codes;
    for (uint64_t i = 0; i < 5000; ++i) {
      const auto c = CodeOf(i);
      codes.insert(codes.end(), c.begin(), c.end());
    }
    ASSERT_TRUE(store->PutCodes("c", nullptr, codes.data(), 5000).ok());
    ASSERT_TRUE(store->Flush().ok());
    LiveCollectionOptions lo;
    lo.snapshots = true;
    auto live = std::move(LiveCollection::Open(store.get(), "c", lo)).value();
    ASSERT_TRUE(live->SaveSnapshot().ok());
    live.reset();
    ASSERT_TRUE(store->Backup(backups).ok());
    EXPECT_TRUE(store->Check().ok());
  }
  auto flip = [](const std::filesystem::path& p) { FlipByte(p, std::filesystem::file_size(p) / 2); };
  // The backed-up snapshot.
  const std::filesystem::path snap_dir = CodeStore::BackupSnapshotDir(backups, 1);
  ASSERT_TRUE(std::filesystem::exists(snap_dir / "c1.hidx"));
  flip(snap_dir / "c1.hidx");
  IndexSnapshotHeader h;
  std::string state;
  EXPECT_EQ(ReadIndexSnapshot(rocksdb::FileSystem::Default().get(), (snap_dir / "c1.hidx").string(),
                              &h, &state)
                .code(),
            Status::Code::kCorruption);
  // A backed-up SST file.
  std::filesystem::path sst;
  for (const auto& e : std::filesystem::recursive_directory_iterator(backups)) {
    if (e.path().extension() == ".sst" && std::filesystem::file_size(e.path()) > 20000) sst = e.path();
  }
  ASSERT_FALSE(sst.empty());
  std::filesystem::permissions(sst, std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::add);
  flip(sst);
  Status v = CodeStore::VerifyBackup(backups, 0);
  EXPECT_FALSE(v.ok());
  EXPECT_NE(v.ToString().find("backup 1"), std::string::npos) << v.ToString();
  // The store's own SST file.
  for (const auto& e : std::filesystem::directory_iterator(db)) {
    if (e.path().extension() == ".sst" && std::filesystem::file_size(e.path()) > 20000) sst = e.path();
  }
  flip(sst);
  auto store = CodeStore::Open(db);
  Status c = store.ok() ? (*store)->Check() : store.status();
  EXPECT_EQ(c.code(), Status::Code::kCorruption) << c.ToString();
}

// A flipped byte inside the write-ahead log (not a torn tail) fails the open
// with a clear Corruption rather than silently dropping the acknowledged
// batches after it; a restore from a backup recovers every batch, and
// salvage_wal opens the damaged store with a whole-batch prefix.
TEST(Backup, DamagedWalFailsTheOpenAndRestoreRecoversIt) {
  TempDir tmp;
  const std::string db = tmp.sub("db"), backups = tmp.sub("backups"), restored = tmp.sub("restored");
  constexpr uint64_t kBatches = 40;
  std::map<uint64_t, std::vector<uint8_t>> written;
  {
    auto store = std::move(CodeStore::Open(db)).value();
    ASSERT_TRUE(store->CreateCollection({"c", kBits, "Flat"}).ok());
    for (uint64_t b = 0; b < kBatches; ++b) {
      std::vector<uint64_t> ids;
      std::vector<uint8_t> codes;
      for (uint64_t i = 0; i < kBatch; ++i) {
        ids.push_back(b * kBatch + i + 1);
        const auto c = CodeOf(ids.back());
        codes.insert(codes.end(), c.begin(), c.end());
        written[ids.back()] = c;
      }
      ASSERT_TRUE(store->PutCodes("c", ids.data(), codes.data(), kBatch).ok());
    }
    ASSERT_TRUE(store->Backup(backups).ok());
  }
  std::filesystem::path wal;
  for (const auto& e : std::filesystem::directory_iterator(db)) {
    if (e.path().extension() == ".log" &&
        (wal.empty() || std::filesystem::file_size(e.path()) > std::filesystem::file_size(wal))) {
      wal = e.path();
    }
  }
  ASSERT_FALSE(wal.empty());
  const uint64_t wal_size = std::filesystem::file_size(wal);
  ASSERT_GT(wal_size, kBatches * kBatch * 8) << "the batches should still be in the WAL";
  FlipByte(wal, wal_size / 3);

  auto damaged = CodeStore::Open(db);
  ASSERT_FALSE(damaged.ok());
  EXPECT_EQ(damaged.status().code(), Status::Code::kCorruption);
  EXPECT_NE(damaged.status().ToString().find("hamdb restore"), std::string::npos)
      << damaged.status().ToString();
  EXPECT_NE(damaged.status().ToString().find("--salvage-wal"), std::string::npos);

  ASSERT_TRUE(CodeStore::RestoreBackup(backups, 0, restored).ok());
  {
    auto store = std::move(CodeStore::Open(restored)).value();
    EXPECT_TRUE(store->Check().ok());
    EXPECT_EQ(StoreContents(*store, "c"), written);
  }

  StoreOpenOptions salvage;
  salvage.salvage_wal = true;
  auto store = CodeStore::Open(db, salvage);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  const auto kept = StoreContents(**store, "c");
  EXPECT_LT(kept.size(), written.size()) << "the batches after the damage are dropped";
  // Whole batches, a prefix of the acknowledged ones, with their codes.
  for (uint64_t b = 0; b < kBatches; ++b) {
    const bool present = kept.count(b * kBatch + 1) > 0;
    const bool expected = b * kBatch < kept.size();
    EXPECT_EQ(present, expected) << "batch " << b;
    for (uint64_t i = 0; i < kBatch; ++i) {
      const uint64_t id = b * kBatch + i + 1;
      EXPECT_EQ(kept.count(id) > 0, present) << "id " << id;
      if (present && kept.count(id)) {
        EXPECT_EQ(kept.at(id), written.at(id));
      }
    }
  }
}

}  // namespace
}  // namespace hamdb
