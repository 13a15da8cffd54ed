// ThreadPool: a small reusable std::thread pool for index scans and batches.
//
// ParallelFor(n_tasks, max_threads, fn) runs fn(task) for every task in
// [0, n_tasks) on at most max_threads threads, the calling thread included,
// and returns when all tasks have finished. Tasks are claimed one at a time
// from a shared counter, so uneven tasks balance themselves.
//
// Errors: an exception thrown by fn never leaves a pool thread; the first one
// is turned into a Status (ResourceExhausted for std::bad_alloc, Internal for
// anything else), the tasks not yet started are skipped, and ParallelFor
// returns that Status.
//
// Thread safety: ParallelFor may be called concurrently from any number of
// threads, including from inside a task (nested calls): the caller always
// works on its own job, so a call never waits on a task that cannot run.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/status.h"

namespace hamdb {

class ThreadPool {
 public:
  // A pool with num_threads - 1 background workers (the caller is the
  // num_threads-th). num_threads < 1 is treated as 1.
  explicit ThreadPool(int num_threads);
  // Joins the workers. No ParallelFor may be running.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // The process-wide pool, sized by std::thread::hardware_concurrency().
  static ThreadPool& Default();

  // Threads a ParallelFor can use, the caller included.
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Resolves a per-call thread request: 0 (or less) means size(); anything
  // else is clamped to [1, size()].
  int Resolve(int requested) const;

  Status ParallelFor(size_t n_tasks, int max_threads, const std::function<void(size_t)>& fn);

 private:
  struct Job;
  void WorkerLoop();
  static void RunTasks(Job* job);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;  // jobs that still accept helpers; guarded by mu_
  bool stop_ = false;       // guarded by mu_
  std::vector<std::thread> workers_;
};

}  // namespace hamdb
