// WriterPriorityMutex: a reader/writer mutex that does not starve writers.
//
// glibc's std::shared_mutex prefers readers: with searches arriving back to
// back, an Add can wait indefinitely. Here a writer first takes a gate
// mutex that every new reader must pass through, so once a writer is
// waiting, new readers queue behind it while the readers already inside
// finish. Meets the SharedMutex requirements (usable with std::shared_lock
// and std::unique_lock). Not recursive.
#pragma once

#include <mutex>
#include <new>
#include <shared_mutex>

namespace hamdb {

class WriterPriorityMutex {
 public:
  void lock() {
    gate_.lock();
    mu_.lock();
  }
  void unlock() {
    mu_.unlock();
    gate_.unlock();
  }
  void lock_shared() {
    std::lock_guard<std::mutex> pass(gate_);
    mu_.lock_shared();
  }
  void unlock_shared() { mu_.unlock_shared(); }

 private:
  std::mutex gate_;
  std::shared_mutex mu_;
};

// The start of a write whose O(n) preparation (copies into larger arrays,
// for example) runs under the shared lock, so searches go on, and whose
// change then runs under the exclusive lock this returns. The caller
// excludes other writers, so what `prepare` saw still holds once the lock is
// taken. A std::bad_alloc from `prepare` is dropped: the write must then do
// without what it prepared (grow in place, or report the failure).
template <typename SharedMutex, typename Prepare>
std::unique_lock<SharedMutex> LockAfterSharedPrepare(SharedMutex& mu, Prepare&& prepare) {
  try {
    std::shared_lock<SharedMutex> shared(mu);
    prepare();
  } catch (const std::bad_alloc&) {
  }
  return std::unique_lock<SharedMutex>(mu);
}

}  // namespace hamdb
