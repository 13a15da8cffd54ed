#include "index/scan.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__x86_64__) || defined(__SSE2__)
#include <immintrin.h>
#endif

#include "core/binary_code.h"
#include "core/prefetch.h"
#include "index/parallel.h"

namespace hamdb {
namespace {

// Slots per kernel call: the uint16 distance buffer stays in L1.
constexpr size_t kBlock = 2048;
// A query-blocked batch scan: queries per group, and the bytes of codes a
// group passes over together (half of a 48 KiB L1, leaving room for the
// distances).
constexpr size_t kQueryGroup = 16;
constexpr size_t kBlockBytes = 16384;
// Below this many slots per thread a scan is not worth splitting.
constexpr size_t kMinSlotsPerTask = 32768;

size_t TaskCount(size_t n, int threads) {
  const size_t by_size = std::max<size_t>(1, n / kMinSlotsPerTask);
  return std::min<size_t>(static_cast<size_t>(std::max(threads, 1)), by_size);
}

// Offers slot i of (ids, scores) at distance d when d is at most the
// threshold, which `threshold` caches, and the filter (null: none) allows
// its id. scores may be null (none). The filter is asked last: most slots
// are rejected by their distance.
inline void OfferIfWithin(uint32_t d, const uint64_t* ids, const uint16_t* scores, size_t i,
                          const IdFilter* filter, TopKCollector* top, uint32_t* threshold) {
  if (d <= *threshold && (filter == nullptr || filter->Allows(ids[i]))) {
    top->Offer(d, ids[i], scores != nullptr ? scores[i] : kNoScore);
    *threshold = top->threshold();
  }
}

// The slots of one block (at most kBlock) found within the threshold, kept
// to be offered after the whole block is compared. An offer reads the slot's
// id (and score key), which for a block of codes in cache is a miss to
// memory, one per candidate; requested as the candidates are found, those
// misses overlap with the rest of the block instead of stalling one after
// another. The threshold a candidate passed may be stale by the time it is
// offered, so Offer compares again: the pairs offered, and their order, are
// those of offering each slot as it is found.
class BlockCandidates {
 public:
  BlockCandidates(const uint64_t* ids, const uint16_t* scores) : ids_(ids), scores_(scores) {}
  void Add(size_t slot, uint32_t distance) {
    PrefetchLine(ids_ + slot);
    if (scores_ != nullptr) PrefetchLine(scores_ + slot);
    slot_[n_] = static_cast<uint16_t>(slot);
    dist_[n_] = static_cast<uint16_t>(distance);
    ++n_;
  }
  void Offer(const IdFilter* filter, TopKCollector* top, uint32_t* threshold) {
    for (size_t c = 0; c < n_; ++c) OfferIfWithin(dist_[c], ids_, scores_, slot_[c], filter, top, threshold);
    n_ = 0;
  }

 private:
  static_assert(kBlock <= 65536, "block slots must fit 16 bits");
  const uint64_t* ids_;
  const uint16_t* scores_;
  size_t n_ = 0;
  uint16_t slot_[kBlock];
  uint16_t dist_[kBlock];
};

// Offers top the slots i of a block (len <= kBlock), at distance dist[i],
// with dist[i] at most its threshold. Most of a scan's slots are above it, so
// 8 distances are compared at a time (SSE2, part of every x86-64) and a group
// that is all above costs one compare; `threshold` caches top.threshold().
void OfferBlock(const uint16_t* dist, const uint64_t* ids, const uint16_t* scores, size_t len,
                const IdFilter* filter, TopKCollector* top, uint32_t* threshold) {
  BlockCandidates found(ids, scores);
  size_t i = 0;
#if defined(__SSE2__)
  // Signed 16-bit compares: distances are at most kMaxCodeBits < 2^15.
  static_assert(kMaxCodeBits < 32768, "distances must fit a signed 16-bit compare");
  const __m128i t = _mm_set1_epi16(static_cast<int16_t>(*threshold));
  for (; i + 8 <= len; i += 8) {
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(dist + i));
    if (_mm_movemask_epi8(_mm_cmpgt_epi16(d, t)) == 0xffff) continue;
    for (size_t j = i; j < i + 8; ++j) {
      if (dist[j] <= *threshold) found.Add(j, dist[j]);
    }
  }
#endif
  for (; i < len; ++i) {
    if (dist[i] <= *threshold) found.Add(i, dist[i]);
  }
  found.Offer(filter, top, threshold);
}

// How scans of `view` compute and compare distances: 8-byte codes on AVX2
// or AVX-512 (the best instruction set, as the kernels choose it) take a
// fused path that compares the distances in the registers that count them;
// everything else a kernel call into a distance buffer, then OfferBlock.
enum class Fused8 { kNone, kAvx2, kAvx512 };
Fused8 FusedPathFor(const SlotView& view) {
#if defined(__x86_64__)
  static const HammingIsa best = BestHammingIsa();
  if (view.code_bytes != 8) return Fused8::kNone;
  if (best == HammingIsa::kAvx512) return Fused8::kAvx512;
  if (best == HammingIsa::kAvx2) return Fused8::kAvx2;
#else
  (void)view;
#endif
  return Fused8::kNone;
}

#if defined(__x86_64__)
// The slots before the first whose code starts on a multiple of `align`
// bytes: the fused paths take those one at a time, so that their vector
// loads do not straddle cache lines (a std::vector's data is only 16-byte
// aligned).
inline size_t HeadTo(const uint8_t* codes, size_t align, size_t len) {
  const size_t misalign = reinterpret_cast<uintptr_t>(codes) & (align - 1);
  return std::min(len, ((align - misalign) & (align - 1)) / 8);
}

// The fused paths' first slots before an aligned one and last slots [i, len),
// fewer than one step: one at a time.
inline void FindTail8(const uint8_t* codes, size_t i, size_t len, uint64_t q, uint32_t threshold,
                      BlockCandidates* found) {
  for (; i < len; ++i) {
    uint64_t c;
    std::memcpy(&c, codes + i * 8, 8);
    const uint32_t d = PopCount64(c ^ q);
    if (d <= threshold) found->Add(i, d);
  }
}

// OfferBlock for 8-byte codes without a distance buffer: 4 codes per
// vector, popcount by nibble lookup (vpshufb) and per-lane byte sums
// (vpsadbw), compared with the threshold 4 at a time. Scalar POPCNT runs at
// about the machine's streaming rate, so a blocked batch gains nothing from
// reading less memory unless the popcount itself is wider; this is about
// 2x. Offers exactly the pairs OfferBlock would, in the same order.
__attribute__((target("avx2,popcnt"))) void OfferBlock8Avx2(const uint8_t* codes, const uint64_t* ids,
                                                            const uint16_t* scores, size_t len,
                                                            const uint8_t* query, const IdFilter* filter,
                                                            TopKCollector* top, uint32_t* threshold) {
  uint64_t q;
  std::memcpy(&q, query, 8);
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  const __m256i qv = _mm256_set1_epi64x(static_cast<int64_t>(q));
  const __m256i tv = _mm256_set1_epi64x(*threshold);
  BlockCandidates found(ids, scores);
  size_t i = HeadTo(codes, 32, len);
  FindTail8(codes, 0, i, q, *threshold, &found);
  for (; i + 4 <= len; i += 4) {
    const __m256i x =
        _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + i * 8)), qv);
    const __m256i counts =
        _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(x, nibble)),
                        _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble)));
    const __m256i d = _mm256_sad_epu8(counts, _mm256_setzero_si256());  // 4 x 64-bit distances
    if (_mm256_movemask_epi8(_mm256_cmpgt_epi64(d, tv)) == -1) continue;
    alignas(32) uint64_t dist[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(dist), d);
    for (size_t j = 0; j < 4; ++j) {
      if (dist[j] <= *threshold) found.Add(i + j, static_cast<uint32_t>(dist[j]));
    }
  }
  FindTail8(codes, i, len, q, *threshold, &found);
  found.Offer(filter, top, threshold);
}

// The same with VPOPCNTQ: 16 codes per step, their distances compared with
// the threshold as a mask, and stored only when one of them is within it.
// Offers exactly the pairs OfferBlock would, in the same order.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vpopcntdq,popcnt"))) void OfferBlock8Avx512(
    const uint8_t* codes, const uint64_t* ids, const uint16_t* scores, size_t len, const uint8_t* query,
    const IdFilter* filter, TopKCollector* top, uint32_t* threshold) {
  uint64_t q;
  std::memcpy(&q, query, 8);
  const __m512i qv = _mm512_set1_epi64(static_cast<long long>(q));
  const __m512i t = _mm512_set1_epi64(static_cast<long long>(*threshold));
  BlockCandidates found(ids, scores);
  size_t i = HeadTo(codes, 64, len);
  FindTail8(codes, 0, i, q, *threshold, &found);
  for (; i + 16 <= len; i += 16) {
    const __m512i a = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(codes + i * 8), qv));
    const __m512i b = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(codes + i * 8 + 64), qv));
    uint32_t within = static_cast<uint32_t>(_mm512_cmple_epu64_mask(a, t)) |
                      static_cast<uint32_t>(_mm512_cmple_epu64_mask(b, t)) << 8;
    if (within == 0) continue;
    alignas(64) uint64_t dist[16];
    _mm512_store_si512(dist, a);
    _mm512_store_si512(dist + 8, b);
    for (; within != 0; within &= within - 1) {
      const int j = __builtin_ctz(within);
      found.Add(i + j, static_cast<uint32_t>(dist[j]));
    }
  }
  FindTail8(codes, i, len, q, *threshold, &found);
  found.Offer(filter, top, threshold);
}
#endif

// Offers top the slots [b, b + len) of `view` against `query`.
void ScanBlock(const SlotView& view, Fused8 fused, const uint8_t* query, size_t b, size_t len,
               uint16_t* dist, TopKCollector* top, uint32_t* threshold) {
  const uint16_t* scores = view.scores != nullptr ? view.scores + b : nullptr;
#if defined(__x86_64__)
  if (fused == Fused8::kAvx512) {
    OfferBlock8Avx512(view.codes + b * 8, view.ids + b, scores, len, query, view.filter, top, threshold);
    return;
  }
  if (fused == Fused8::kAvx2) {
    OfferBlock8Avx2(view.codes + b * 8, view.ids + b, scores, len, query, view.filter, top, threshold);
    return;
  }
#endif
  (void)fused;
  view.kernel.distances(query, view.codes + b * view.code_bytes, len, view.code_bytes, dist);
  OfferBlock(dist, view.ids + b, scores, len, view.filter, top, threshold);
}

}  // namespace

double ScanCodeCost(const SlotView& view) {
  const double per_word = std::max(1.0, static_cast<double>(view.code_bytes) / 8.0);
  return FusedPathFor(view) == Fused8::kAvx512 ? 0.3 * per_word : per_word;
}

TopKCollector::TopKCollector(size_t k, int bits, TieBreak tie)
    : order_{tie},
      k_(k),
      limit_(std::max<size_t>(2 * k, 64)),
      threshold_(static_cast<uint32_t>(bits)),
      hist_(static_cast<size_t>(bits) + 1, 0) {}

void TopKCollector::Compact() {
  if (buffer_.size() < k_) return;
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
    // All at distance t: the tie order decides.
    std::nth_element(mid, mid + need_at_t, ties_end, order_);
  }
  buffer_.resize(k_);
  threshold_ = t;
}

bool TopKCollector::Settle(uint32_t* kth) {
  Compact();
  if (buffer_.size() < k_) return false;
  *kth = threshold_;
  return true;
}

void TopKCollector::Merge(TopKCollector&& other) {
  for (const Neighbor& nb : other.buffer_) {
    if (nb.distance <= threshold_) Offer(nb.distance, nb.id, nb.score);
  }
  other.buffer_.clear();
}

std::vector<Neighbor> TopKCollector::Finish() {
  Compact();
  std::vector<Neighbor> out;
  out.swap(buffer_);
  std::sort(out.begin(), out.end(), order_);
  return out;
}

StatusOr<std::vector<Neighbor>> ScanKnn(const SlotView& view, const uint8_t* query, size_t k,
                                        int threads, TieBreak tie) {
  k = std::min(k, view.n);
  if (k == 0) return std::vector<Neighbor>();
  threads = ThreadPool::Default().Resolve(threads);
  const size_t tasks = TaskCount(view.n, threads);
  std::vector<TopKCollector> parts(tasks, TopKCollector(k, view.bits, tie));
  const size_t per_task = (view.n + tasks - 1) / tasks;
  Status st = ThreadPool::Default().ParallelFor(tasks, threads, [&](size_t t) {
    const size_t begin = std::min(view.n, t * per_task);
    const size_t end = std::min(view.n, begin + per_task);
    TopKCollector& top = parts[t];
    uint16_t dist[kBlock];
    uint32_t threshold = top.threshold();
    const Fused8 fused = FusedPathFor(view);
    for (size_t b = begin; b < end; b += kBlock) {
      ScanBlock(view, fused, query, b, std::min(kBlock, end - b), dist, &top, &threshold);
    }
  });
  HAMDB_RETURN_IF_ERROR(st);
  for (size_t t = 1; t < tasks; ++t) parts[0].Merge(std::move(parts[t]));
  return parts[0].Finish();
}

Status ScanKnnBatch(const SlotView& view, const uint8_t* queries, size_t nq, size_t k, int threads,
                    TieBreak tie, std::vector<std::vector<Neighbor>>* out) {
  out->assign(nq, std::vector<Neighbor>());
  k = std::min(k, view.n);
  if (k == 0 || nq == 0) return Status::OK();
  threads = ThreadPool::Default().Resolve(threads);
  // Groups of up to kQueryGroup queries, at least one group per thread.
  const size_t per_thread = (nq + threads - 1) / static_cast<size_t>(threads);
  const size_t group = std::max<size_t>(1, std::min(kQueryGroup, per_thread));
  const size_t groups = (nq + group - 1) / group;
  // Slots per block: the block's codes stay in L1 / L2 while every query
  // of the group passes over them.
  const size_t block = std::clamp<size_t>(kBlockBytes / view.code_bytes, 64, kBlock);
  return ThreadPool::Default().ParallelFor(groups, threads, [&](size_t g) {
    const size_t q0 = g * group;
    const size_t qn = std::min(group, nq - q0);
    std::vector<TopKCollector> tops(qn, TopKCollector(k, view.bits, tie));
    std::vector<uint32_t> thresholds(qn);
    for (size_t q = 0; q < qn; ++q) thresholds[q] = tops[q].threshold();
    uint16_t dist[kBlock];
    const Fused8 fused = FusedPathFor(view);
    for (size_t b = 0; b < view.n; b += block) {
      const size_t len = std::min(block, view.n - b);
      for (size_t q = 0; q < qn; ++q) {
        ScanBlock(view, fused, queries + (q0 + q) * view.code_bytes, b, len, dist, &tops[q],
                  &thresholds[q]);
      }
    }
    for (size_t q = 0; q < qn; ++q) (*out)[q0 + q] = tops[q].Finish();
  });
}

SearchResult ExactScanResult::Finish() {
  SearchResult r;
  if (is_range_) {
    std::sort(in_range_.begin(), in_range_.end(), NeighborOrder{tie_});
    r.neighbors = std::move(in_range_);
    in_range_.clear();
  } else {
    r.neighbors = top_.Finish();
  }
  r.exact = true;
  return r;
}

StatusOr<SearchResult> ScanListed(const BinaryIndex& index, const std::vector<uint64_t>& ids,
                                  const uint8_t* query, size_t k, uint32_t radius, bool is_range,
                                  const SearchParams& p) {
  const int bits = index.bits();
  HAMDB_RETURN_IF_ERROR(is_range ? CheckRangeArgs(query, bits) : CheckSearchArgs(query, k, bits));
  HAMDB_RETURN_IF_ERROR(CheckTieBreakSupported(index.spec(), index.keeps_scores(), p.tie_break));
  const size_t nb = index.code_bytes();
  std::vector<uint8_t> codes(ids.size() * nb), found(ids.size());
  std::vector<uint16_t> scores(ids.size(), kNoScore);
  HAMDB_RETURN_IF_ERROR(index.Lookup(ids.data(), ids.size(), codes.data(), scores.data(), found.data()));
  // The items held, packed to the front.
  std::vector<uint64_t> held(ids.size());
  size_t n = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!found[i]) continue;
    if (n != i) {
      std::memcpy(codes.data() + n * nb, codes.data() + i * nb, nb);
      scores[n] = scores[i];
    }
    held[n++] = ids[i];
  }
  held.resize(n);
  codes.resize(n * nb);
  SlotView view = MakeSlotView(codes, held, index.keeps_scores() ? scores.data() : nullptr, bits,
                               SelectHammingKernel(nb), p.filter);
  SearchResult r;
  if (is_range) {
    HAMDB_ASSIGN_OR_RETURN(r.neighbors, ScanRange(view, query, radius, p.num_threads, p.tie_break));
  } else {
    HAMDB_ASSIGN_OR_RETURN(r.neighbors, ScanKnn(view, query, k, p.num_threads, p.tie_break));
  }
  r.exact = true;
  return r;
}

StatusOr<std::vector<Neighbor>> ScanRange(const SlotView& view, const uint8_t* query,
                                          uint32_t radius, int threads, TieBreak tie) {
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
        if (dist[i] <= radius && (view.filter == nullptr || view.filter->Allows(view.ids[b + i]))) {
          parts[t].push_back(Neighbor{view.ids[b + i], dist[i],
                                      view.scores != nullptr ? view.scores[b + i] : kNoScore});
        }
      }
    }
  });
  HAMDB_RETURN_IF_ERROR(st);
  size_t total = 0;
  for (const auto& p : parts) total += p.size();
  std::vector<Neighbor> out;
  out.reserve(total);
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  std::sort(out.begin(), out.end(), NeighborOrder{tie});
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
