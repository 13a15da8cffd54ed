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

}  // namespace hamdb
