#include "index/scan.h"

#include <algorithm>
#include <string>

#include "core/binary_code.h"
#include "index/parallel.h"

namespace hamdb {
namespace {

// Slots per kernel call: the uint16 distance buffer stays in L1.
constexpr size_t kBlock = 2048;
// Below this many slots per thread a scan is not worth splitting.
constexpr size_t kMinSlotsPerTask = 32768;

size_t TaskCount(size_t n, int threads) {
  const size_t by_size = std::max<size_t>(1, n / kMinSlotsPerTask);
  return std::min<size_t>(static_cast<size_t>(std::max(threads, 1)), by_size);
}

}  // namespace

TopKCollector::TopKCollector(size_t k, int bits)
    : k_(k),
      limit_(std::max<size_t>(2 * k, 64)),
      threshold_(static_cast<uint32_t>(bits)),
      hist_(static_cast<size_t>(bits) + 1, 0) {}

void TopKCollector::Compact() {
  if (buffer_.size() <= k_) {
    limit_ = std::max(limit_, 2 * buffer_.size());
    return;
  }
  std::fill(hist_.begin(), hist_.end(), 0);
  for (const Neighbor& nb : buffer_) ++hist_[nb.distance];
  // T: the smallest distance with at least k candidates at or below it.
  size_t below = 0;  // candidates with distance < t
  uint32_t t = 0;
  while (below + hist_[t] < k_) below += hist_[t++];
  const size_t need_at_t = k_ - below;
  auto mid = std::partition(buffer_.begin(), buffer_.end(),
                            [t](const Neighbor& nb) { return nb.distance < t; });
  auto ties_end = std::partition(mid, buffer_.end(),
                                 [t](const Neighbor& nb) { return nb.distance == t; });
  if (static_cast<size_t>(ties_end - mid) > need_at_t) {
    std::nth_element(mid, mid + need_at_t, ties_end,
                     [](const Neighbor& a, const Neighbor& b) { return a.id < b.id; });
  }
  buffer_.resize(k_);
  threshold_ = t;
}

void TopKCollector::Merge(TopKCollector&& other) {
  for (const Neighbor& nb : other.buffer_) {
    if (nb.distance <= threshold_) Offer(nb.distance, nb.id);
  }
  other.buffer_.clear();
}

std::vector<Neighbor> TopKCollector::Finish() {
  Compact();
  std::vector<Neighbor> out;
  out.swap(buffer_);
  std::sort(out.begin(), out.end(), NeighborLess);
  return out;
}

StatusOr<std::vector<Neighbor>> ScanKnn(const SlotView& view, const uint8_t* query, size_t k,
                                        int threads) {
  k = std::min(k, view.n);
  if (k == 0) return std::vector<Neighbor>();
  threads = ThreadPool::Default().Resolve(threads);
  const size_t tasks = TaskCount(view.n, threads);
  std::vector<TopKCollector> parts(tasks, TopKCollector(k, view.bits));
  const size_t per_task = (view.n + tasks - 1) / tasks;
  Status st = ThreadPool::Default().ParallelFor(tasks, threads, [&](size_t t) {
    const size_t begin = std::min(view.n, t * per_task);
    const size_t end = std::min(view.n, begin + per_task);
    TopKCollector& top = parts[t];
    uint16_t dist[kBlock];
    uint32_t threshold = top.threshold();
    for (size_t b = begin; b < end; b += kBlock) {
      const size_t len = std::min(kBlock, end - b);
      view.kernel.distances(query, view.codes + b * view.code_bytes, len, view.code_bytes, dist);
      for (size_t i = 0; i < len; ++i) {
        if (dist[i] <= threshold) {
          top.Offer(dist[i], view.ids[b + i]);
          threshold = top.threshold();
        }
      }
    }
  });
  HAMDB_RETURN_IF_ERROR(st);
  for (size_t t = 1; t < tasks; ++t) parts[0].Merge(std::move(parts[t]));
  return parts[0].Finish();
}

StatusOr<std::vector<Neighbor>> ScanRange(const SlotView& view, const uint8_t* query,
                                          uint32_t radius, int threads) {
  threads = ThreadPool::Default().Resolve(threads);
  const size_t tasks = TaskCount(view.n, threads);
  std::vector<std::vector<Neighbor>> parts(tasks);
  const size_t per_task = (view.n + tasks - 1) / tasks;
  Status st = ThreadPool::Default().ParallelFor(tasks, threads, [&](size_t t) {
    const size_t begin = std::min(view.n, t * per_task);
    const size_t end = std::min(view.n, begin + per_task);
    uint16_t dist[kBlock];
    for (size_t b = begin; b < end; b += kBlock) {
      const size_t len = std::min(kBlock, end - b);
      view.kernel.distances(query, view.codes + b * view.code_bytes, len, view.code_bytes, dist);
      for (size_t i = 0; i < len; ++i) {
        if (dist[i] <= radius) parts[t].push_back(Neighbor{view.ids[b + i], dist[i]});
      }
    }
  });
  HAMDB_RETURN_IF_ERROR(st);
  size_t total = 0;
  for (const auto& p : parts) total += p.size();
  std::vector<Neighbor> out;
  out.reserve(total);
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  std::sort(out.begin(), out.end(), NeighborLess);
  return out;
}

Status CheckCodes(const uint8_t* codes, size_t n, int bits, const char* what) {
  if (n > 0 && codes == nullptr) return Status::InvalidArgument(std::string(what) + " is null");
  if (bits % 8 == 0) return Status::OK();
  const size_t cb = code_bytes(bits);
  for (size_t i = 0; i < n; ++i) {
    Status st = CheckPadding(codes + i * cb, bits);
    if (!st.ok()) return st.WithContext(std::string(what) + " " + std::to_string(i));
  }
  return Status::OK();
}

Status CheckAddArgs(const uint64_t* ids, const uint8_t* codes, size_t n, int bits) {
  if (n > 0 && ids == nullptr) return Status::InvalidArgument("ids is null");
  return CheckCodes(codes, n, bits, "code");
}

Status CheckSearchArgs(const uint8_t* query, size_t k, int bits) {
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  return CheckCodes(query, 1, bits, "query");
}

Status CheckRangeArgs(const uint8_t* query, int bits) {
  return CheckCodes(query, 1, bits, "query");
}

Status CheckBatchArgs(const uint8_t* queries, size_t nq, size_t k, int bits,
                      const std::vector<SearchResult>* out) {
  if (out == nullptr) return Status::InvalidArgument("SearchBatch: out is null");
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  return CheckCodes(queries, nq, bits, "query");
}

StatusOr<SearchResult> SearchOneByBatch(const BinaryIndex& index, const uint8_t* query, size_t k,
                                        const SearchParams& params) {
  HAMDB_RETURN_IF_ERROR(CheckSearchArgs(query, k, index.bits()));
  std::vector<SearchResult> out;
  HAMDB_RETURN_IF_ERROR(index.SearchBatch(query, 1, k, params, &out));
  return std::move(out[0]);
}

}  // namespace hamdb
