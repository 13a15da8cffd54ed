#include "index/binary_index.h"

#include <algorithm>
#include <mutex>
#include <string>

#include "index/parallel.h"

namespace hamdb {

Status BinaryIndex::SearchBatch(const uint8_t* queries, size_t nq, size_t k,
                                const SearchParams& params,
                                std::vector<SearchResult>* out) const {
  if (out == nullptr) return Status::InvalidArgument("SearchBatch: out is null");
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  if (nq > 0 && queries == nullptr) return Status::InvalidArgument("queries is null");
  out->assign(nq, SearchResult{});
  ThreadPool& pool = ThreadPool::Default();
  const int threads = pool.Resolve(params.num_threads);
  // Split across queries; a batch smaller than the thread count lets each
  // query split its own work among the leftover threads.
  SearchParams one = params;
  one.num_threads =
      static_cast<int>(std::max<size_t>(1, static_cast<size_t>(threads) / std::max<size_t>(nq, 1)));
  std::mutex error_mu;
  Status first_error;
  Status st = pool.ParallelFor(nq, threads, [&](size_t i) {
    StatusOr<SearchResult> r = Search(queries + i * code_bytes(), k, one);
    if (r.ok()) {
      (*out)[i] = std::move(r).value();
    } else {
      std::lock_guard<std::mutex> lock(error_mu);
      if (first_error.ok()) first_error = r.status().WithContext("query " + std::to_string(i));
    }
  });
  HAMDB_RETURN_IF_ERROR(st);
  return first_error;
}

}  // namespace hamdb
