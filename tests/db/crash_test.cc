// Crash and failure tests for the store: a child process writes synced
// batches and is killed with SIGKILL at a random moment, or runs into a file
// size limit (the stand-in for a full disk). After reopening, every batch the
// child saw acknowledged must be present whole, and no batch may be present
// in part.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "db/code_store.h"
#include "tests/db/test_util.h"

namespace hamdb {
namespace {

constexpr int kBits = 64;
constexpr size_t kBatch = 64;

// The code of item `id`: a deterministic function, so the parent can check
// contents without talking to the child.
std::vector<uint8_t> CodeFor(uint64_t id) {
  std::mt19937_64 rng(id * 2654435761u + 1);
  return testing_util::RandomCode(rng, kBits);
}

std::vector<ItemInput> BatchFor(uint64_t batch) {
  std::vector<ItemInput> items(kBatch);
  for (size_t i = 0; i < kBatch; ++i) {
    const uint64_t id = batch * kBatch + i;
    items[i].id = id;
    items[i].code = CodeFor(id);
    items[i].label = static_cast<int64_t>(batch);
    items[i].metadata_json = R"({"batch":)" + std::to_string(batch) + "}";
  }
  return items;
}

// Child body: write batches from `first` on, acknowledging each on `fd`
// after Put returns OK. Returns (never normally) via _exit.
[[noreturn]] void ChildWriter(const std::string& dir, uint64_t first, int fd, uint64_t fsize_limit) {
  if (fsize_limit > 0) {
    signal(SIGXFSZ, SIG_IGN);  // get EFBIG from write() instead of a signal
    rlimit rl{fsize_limit, fsize_limit};
    setrlimit(RLIMIT_FSIZE, &rl);
  }
  auto store = CodeStore::Open(dir);
  if (!store.ok()) _exit(3);
  for (uint64_t b = first;; ++b) {
    Status s = (*store)->Put("crash", BatchFor(b), StoreWriteOptions{true});
    if (!s.ok()) {
      // Report the error text after a zero-length marker: 8 bytes of ~0.
      const uint64_t marker = ~0ull;
      (void)!write(fd, &marker, 8);
      const std::string msg = s.ToString();
      (void)!write(fd, msg.data(), msg.size());
      _exit(0);  // an error is a clean return, never an abort
    }
    (void)!write(fd, &b, 8);
  }
}

struct ChildOutcome {
  std::set<uint64_t> acked;
  std::string error;  // set when the child reported a write error
  int wait_status = 0;
};

ChildOutcome RunChild(const std::string& dir, uint64_t first, int kill_after_ms,
                      uint64_t fsize_limit) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    ChildWriter(dir, first, fds[1], fsize_limit);
  }
  close(fds[1]);
  ChildOutcome out;
  if (kill_after_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms));
    kill(pid, SIGKILL);
  }
  waitpid(pid, &out.wait_status, 0);
  // Everything the child wrote before dying is still in the pipe.
  std::string buf;
  char tmp[4096];
  ssize_t r;
  while ((r = read(fds[0], tmp, sizeof tmp)) > 0) buf.append(tmp, r);
  close(fds[0]);
  size_t pos = 0;
  for (; pos + 8 <= buf.size(); pos += 8) {
    uint64_t b;
    std::memcpy(&b, buf.data() + pos, 8);
    if (b == ~0ull) {
      out.error = buf.substr(pos + 8);
      break;
    }
    out.acked.insert(b);
  }
  return out;
}

// Checks the all-or-nothing rule and returns the set of batches present.
std::set<uint64_t> CheckBatchesWhole(CodeStore* store) {
  std::map<uint64_t, size_t> per_batch;
  Status s = store->ScanCodes("crash", [&](const uint64_t* ids, const uint8_t* codes, const float*, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(std::vector<uint8_t>(codes + i * 8, codes + i * 8 + 8), CodeFor(ids[i]));
      per_batch[ids[i] / kBatch]++;
    }
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::set<uint64_t> present;
  for (const auto& [b, n] : per_batch) {
    EXPECT_EQ(n, kBatch) << "batch " << b << " is present in part";
    present.insert(b);
  }
  return present;
}

TEST(CrashTest, KilledWriterLosesNoAcknowledgedBatchAndTearsNone) {
  testing_util::TempDir tmp;
  {
    auto store = CodeStore::Open(tmp.path());
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->CreateCollection({"crash", kBits}).ok());
  }
  std::mt19937 rng(2024);
  uint64_t next_batch = 0;
  size_t total_acked = 0;
  for (int round = 0; round < 6; ++round) {
    const int kill_ms = 150 + static_cast<int>(rng() % 400);
    ChildOutcome child = RunChild(tmp.path(), next_batch, kill_ms, 0);
    ASSERT_TRUE(WIFSIGNALED(child.wait_status)) << "child should have been killed";
    ASSERT_TRUE(child.error.empty()) << child.error;
    total_acked += child.acked.size();
    std::cout << "round " << round << ": killed after " << kill_ms << " ms, "
              << child.acked.size() << " batches acknowledged\n";

    auto store = CodeStore::Open(tmp.path());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    std::set<uint64_t> present = CheckBatchesWhole(store->get());
    for (uint64_t b : child.acked) EXPECT_TRUE(present.count(b)) << "acknowledged batch " << b << " lost";
    // At most one batch beyond the acknowledged ones (in flight when killed).
    const uint64_t last_acked = child.acked.empty() ? next_batch : *child.acked.rbegin() + 1;
    for (uint64_t b : present) EXPECT_LE(b, last_acked) << "batch " << b << " from nowhere";
    next_batch = present.empty() ? 0 : *present.rbegin() + 1;
  }
  EXPECT_GT(total_acked, 0u) << "the child never got a batch acknowledged";
}

TEST(CrashTest, FullDiskIsAnErrorValueAndKeepsAcknowledgedData) {
  testing_util::TempDir tmp;
  {
    auto store = CodeStore::Open(tmp.path());
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->CreateCollection({"crash", kBits}).ok());
  }
  // 1 MiB per file: the WAL runs into the limit after a few hundred batches.
  ChildOutcome child = RunChild(tmp.path(), 0, /*kill_after_ms=*/0, 1u << 20);
  ASSERT_TRUE(WIFEXITED(child.wait_status)) << "the writer must not crash on a full disk";
  EXPECT_EQ(WEXITSTATUS(child.wait_status), 0);
  ASSERT_FALSE(child.error.empty()) << "the writer never hit the limit";
  EXPECT_NE(child.error.find("IOError"), std::string::npos) << child.error;
  std::cout << child.acked.size() << " batches acknowledged before: " << child.error << "\n";

  auto store = CodeStore::Open(tmp.path());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  std::set<uint64_t> present = CheckBatchesWhole(store->get());
  for (uint64_t b : child.acked) EXPECT_TRUE(present.count(b)) << "acknowledged batch " << b << " lost";
  EXPECT_GT(child.acked.size(), 0u);
}

}  // namespace
}  // namespace hamdb
