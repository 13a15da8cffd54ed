#include "index/parallel.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <new>
#include <string>

namespace hamdb {

struct ThreadPool::Job {
  const std::function<void(size_t)>* fn = nullptr;
  size_t n_tasks = 0;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  int helpers_wanted = 0;  // guarded by the pool's mu_
  int helpers_joined = 0;  // guarded by the pool's mu_
  std::mutex mu;           // guards active, error
  std::condition_variable cv;
  int active = 0;  // helpers that joined and have not left yet
  Status error;
};

ThreadPool::ThreadPool(int num_threads) {
  const int workers = std::max(num_threads, 1) - 1;
  workers_.reserve(workers);
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

ThreadPool& ThreadPool::Default() {
  // Leaked on purpose: worker threads must not be joined during static
  // destruction while another static destructor might still search.
  static ThreadPool* pool =
      new ThreadPool(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  return *pool;
}

int ThreadPool::Resolve(int requested) const {
  if (requested <= 0) return size();
  return std::min(requested, size());
}

void ThreadPool::RunTasks(Job* job) {
  for (;;) {
    const size_t i = job->next.fetch_add(1, std::memory_order_relaxed);
    if (i >= job->n_tasks) return;
    if (job->failed.load(std::memory_order_relaxed)) continue;
    Status error;
    try {
      (*job->fn)(i);
      continue;
    } catch (const std::bad_alloc&) {
      error = Status::ResourceExhausted("out of memory in a parallel task");
    } catch (const std::exception& e) {
      error = Status::Internal(std::string("exception in a parallel task: ") + e.what());
    } catch (...) {
      error = Status::Internal("unknown exception in a parallel task");
    }
    std::lock_guard<std::mutex> lock(job->mu);
    if (!job->failed.exchange(true)) job->error = error;
  }
}

void ThreadPool::WorkerLoop() {
  for (;;) {
    Job* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = queue_.front();
      if (++job->helpers_joined >= job->helpers_wanted) queue_.pop_front();
      std::lock_guard<std::mutex> job_lock(job->mu);
      ++job->active;
    }
    RunTasks(job);
    // Notify while holding the job's mutex: the owner may destroy the job as
    // soon as it observes active == 0, which it can only do after we unlock.
    std::lock_guard<std::mutex> job_lock(job->mu);
    if (--job->active == 0) job->cv.notify_all();
  }
}

Status ThreadPool::ParallelFor(size_t n_tasks, int max_threads,
                               const std::function<void(size_t)>& fn) {
  if (n_tasks == 0) return Status::OK();
  Job job;
  job.fn = &fn;
  job.n_tasks = n_tasks;
  const int threads = Resolve(max_threads);
  const size_t helpers = std::min<size_t>(static_cast<size_t>(threads - 1), n_tasks - 1);
  if (helpers > 0) {
    job.helpers_wanted = static_cast<int>(helpers);
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(&job);
    }
    if (helpers == 1) {
      cv_.notify_one();
    } else {
      cv_.notify_all();
    }
  }
  RunTasks(&job);
  if (helpers > 0) {
    {
      // No helper may join after this point; those that joined are counted.
      std::lock_guard<std::mutex> lock(mu_);
      auto it = std::find(queue_.begin(), queue_.end(), &job);
      if (it != queue_.end()) queue_.erase(it);
    }
    std::unique_lock<std::mutex> job_lock(job.mu);
    job.cv.wait(job_lock, [&job] { return job.active == 0; });
  }
  std::lock_guard<std::mutex> job_lock(job.mu);
  return job.failed.load() ? job.error : Status::OK();
}

}  // namespace hamdb
