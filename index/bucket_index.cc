#include "index/bucket_index.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>

#include "core/binary_code.h"
#include "index/parallel.h"
#include "index/scan.h"

namespace hamdb {
namespace {

// Members per kernel call: the uint16 distance buffer stays in L1.
constexpr size_t kBlock = 1024;
// Items decoded per parallel task in a bulk Add.
constexpr size_t kDecodeChunk = 4096;

// Classes ordered by key (ascending), ties by class index: a counting sort,
// since keys are small integers (<= bits). O(classes + bits).
template <typename Key>
std::vector<uint32_t> OrderByKey(const std::vector<Key>& key, int bits) {
  std::vector<uint32_t> start(static_cast<size_t>(bits) + 2, 0);
  for (uint32_t k : key) ++start[k + 1];
  for (size_t i = 1; i < start.size(); ++i) start[i] += start[i - 1];
  std::vector<uint32_t> order(key.size());
  for (uint32_t c = 0; c < key.size(); ++c) order[start[key[c]]++] = c;
  return order;
}

}  // namespace

StatusOr<std::unique_ptr<ClassBucketIndex>> ClassBucketIndex::Create(
    int bits, const std::vector<uint8_t>& codebook, int default_nprobe) {
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(bits));
  const size_t cb = hamdb::code_bytes(bits);
  if (codebook.empty()) {
    return Status::FailedPrecondition(
        "the Bucket index needs a codebook of class codes, and this collection has none "
        "(only collections with an encoder have one)");
  }
  if (codebook.size() % cb != 0) {
    return Status::InvalidArgument("codebook size " + std::to_string(codebook.size()) +
                                   " is not a multiple of the code size " + std::to_string(cb));
  }
  const size_t num_classes = codebook.size() / cb;
  if (num_classes > static_cast<size_t>(INT32_MAX)) {
    return Status::InvalidArgument("codebook has more than 2^31 - 1 classes");
  }
  HAMDB_RETURN_IF_ERROR(CheckCodes(codebook.data(), num_classes, bits, "class code"));
  if (default_nprobe < 1) return Status::InvalidArgument("Bucket nprobe must be at least 1");
  return std::unique_ptr<ClassBucketIndex>(new ClassBucketIndex(bits, codebook, default_nprobe));
}

ClassBucketIndex::ClassBucketIndex(int bits, std::vector<uint8_t> codebook, int default_nprobe)
    : BinaryIndex(bits),
      kernel_(SelectHammingKernel(code_bytes())),
      num_classes_(codebook.size() / code_bytes()),
      default_nprobe_(default_nprobe),
      codebook_(std::move(codebook)),
      buckets_(num_classes_) {}

std::string ClassBucketIndex::spec() const {
  return default_nprobe_ == 1 ? "Bucket" : "Bucket" + std::to_string(default_nprobe_);
}

size_t ClassBucketIndex::size() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return ids_.size();
}

size_t ClassBucketIndex::memory_bytes() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  size_t bytes = codebook_.capacity() + buckets_.capacity() * sizeof(Bucket) +
                 ids_.capacity() * sizeof(uint64_t) + bucket_of_.capacity() * sizeof(uint32_t) +
                 pos_.capacity() * sizeof(uint32_t) + slot_of_.memory_bytes();
  for (const Bucket& b : buckets_) {
    bytes += b.codes.capacity() + b.ids.capacity() * sizeof(uint64_t) + b.scores.memory_bytes() +
             b.gslots.capacity() * sizeof(uint32_t) + b.hist.capacity() * sizeof(uint32_t);
  }
  return bytes;
}

uint32_t ClassBucketIndex::Decode(const uint8_t* code) const {
  const size_t cb = code_bytes();
  uint32_t best = 0;
  uint32_t best_d = UINT32_MAX;
  uint16_t dist[kBlock];
  for (size_t c0 = 0; c0 < num_classes_; c0 += kBlock) {
    const size_t len = std::min(kBlock, num_classes_ - c0);
    kernel_.distances(code, codebook_.data() + c0 * cb, len, cb, dist);
    for (size_t i = 0; i < len; ++i) {
      if (dist[i] < best_d) {  // strict: ties keep the lower class index
        best_d = dist[i];
        best = static_cast<uint32_t>(c0 + i);
      }
    }
  }
  return best;
}

size_t ClassBucketIndex::bucket_size(uint32_t c) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return c < num_classes_ ? buckets_[c].ids.size() : 0;
}

uint32_t ClassBucketIndex::bucket_radius(uint32_t c) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return c < num_classes_ ? buckets_[c].radius : 0;
}

std::vector<uint16_t> ClassBucketIndex::ClassDistances(const uint8_t* query) const {
  std::vector<uint16_t> d(num_classes_);
  kernel_.distances(query, codebook_.data(), num_classes_, code_bytes(), d.data());
  return d;
}

struct ClassBucketIndex::Growth {
  size_t size = 0;  // global slots at PrepareGrowth
  std::vector<uint64_t> ids;
  std::vector<uint32_t> bucket_of, pos;
  PackedInts id_cells;
  struct Members {
    uint32_t c = 0;
    std::vector<uint8_t> codes;
    std::vector<uint64_t> ids;
    std::vector<uint16_t> scores;
    std::vector<uint32_t> gslots;
  };
  std::vector<Members> buckets;  // the receiving buckets that grow
};

void ClassBucketIndex::PrepareGrowth(const uint32_t* classes, size_t n, Growth* g) const {
  g->size = ids_.size();
  GrowForAppend(ids_, n, &g->ids);
  GrowForAppend(bucket_of_, n, &g->bucket_of);
  GrowForAppend(pos_, n, &g->pos);
  slot_of_.PrepareReserve(ids_.size() + n, ids_.data(), &g->id_cells);
  std::vector<size_t> per_class(num_classes_, 0);
  for (size_t i = 0; i < n; ++i) ++per_class[classes[i]];
  const size_t cb = code_bytes();
  for (uint32_t c = 0; c < num_classes_; ++c) {
    if (per_class[c] == 0) continue;
    const Bucket& b = buckets_[c];
    Growth::Members m;
    m.c = c;
    GrowForAppend(b.codes, per_class[c] * cb, &m.codes);
    GrowForAppend(b.ids, per_class[c], &m.ids);
    b.scores.GrowForAppend(per_class[c], &m.scores);
    GrowForAppend(b.gslots, per_class[c], &m.gslots);
    if (m.codes.capacity() + m.ids.capacity() + m.scores.capacity() + m.gslots.capacity() > 0) {
      g->buckets.push_back(std::move(m));
    }
  }
}

void ClassBucketIndex::AdoptGrowth(Growth* g) {
  // Each array is adopted only if it still has the size it was copied at.
  AdoptGrown(&ids_, &g->ids);
  AdoptGrown(&bucket_of_, &g->bucket_of);
  AdoptGrown(&pos_, &g->pos);
  slot_of_.AdoptCells(&g->id_cells, g->size);
  for (Growth::Members& m : g->buckets) {
    Bucket& b = buckets_[m.c];
    AdoptGrown(&b.codes, &m.codes);
    AdoptGrown(&b.ids, &m.ids);
    b.scores.AdoptGrown(&m.scores);
    AdoptGrown(&b.gslots, &m.gslots);
  }
}

Status ClassBucketIndex::AddItems(const uint64_t* ids, const uint8_t* codes,
                                  const uint16_t* scores, size_t n) {
  return AddWithClasses(ids, codes, nullptr, n, scores);
}

Status ClassBucketIndex::AddWithClasses(const uint64_t* ids, const uint8_t* codes,
                                        const uint32_t* classes, size_t n,
                                        const uint16_t* scores) {
  HAMDB_RETURN_IF_ERROR(CheckAddArgs(ids, codes, n, bits()));
  std::vector<uint32_t> cls;
  try {
    cls.assign(n, kDecodeClass);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("ClassBucketIndex::Add: out of memory");
  }
  if (classes != nullptr) {
    for (size_t i = 0; i < n; ++i) {
      if (classes[i] != kDecodeClass && classes[i] >= num_classes_) {
        return Status::InvalidArgument("item " + std::to_string(i) + ": class " +
                                       std::to_string(classes[i]) + " is outside the codebook (" +
                                       std::to_string(num_classes_) + " classes)");
      }
      cls[i] = classes[i];
    }
  }
  // Decoding is the expensive part of a bulk build (n * classes distances);
  // the codebook never changes, so it runs in parallel outside the lock.
  const size_t cb = code_bytes();
  const size_t chunks = (n + kDecodeChunk - 1) / kDecodeChunk;
  HAMDB_RETURN_IF_ERROR(ThreadPool::Default().ParallelFor(chunks, 0, [&](size_t t) {
    const size_t end = std::min(n, (t + 1) * kDecodeChunk);
    for (size_t i = t * kDecodeChunk; i < end; ++i) {
      if (cls[i] == kDecodeClass) cls[i] = Decode(codes + i * cb);
    }
  }));
  std::lock_guard<std::mutex> writer(write_mu_);
  Growth growth;  // outlives the lock: it ends up with the old arrays
  auto lock = LockAfterSharedPrepare(mu_, [&] { PrepareGrowth(cls.data(), n, &growth); });
  AdoptGrowth(&growth);
  return AddLocked(ids, codes, cls.data(), scores, n);
}

Status ClassBucketIndex::AddLocked(const uint64_t* ids, const uint8_t* codes,
                                   const uint32_t* classes, const uint16_t* scores, size_t n) {
  if (ids_.size() + n >= IdSlotMap::kNoSlot) {
    return Status::ResourceExhausted("ClassBucketIndex holds at most 2^32 - 2 items");
  }
  const size_t cb = code_bytes();
  try {
    ReserveForAppend(&ids_, n);
    ReserveForAppend(&bucket_of_, n);
    ReserveForAppend(&pos_, n);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t old = slot_of_.Find(ids[i], ids_.data());
      if (old != IdSlotMap::kNoSlot) RemoveSlotLocked(old);  // upsert: remove, then add
      const uint8_t* code = codes + i * cb;
      const uint32_t c = classes[i];
      Bucket& b = buckets_[c];
      const uint32_t d = kernel_.distance(code, codebook_.data() + c * cb, cb);
      if (b.hist.size() <= d) b.hist.resize(d + 1, 0);
      const uint32_t g = static_cast<uint32_t>(ids_.size());
      b.scores.Append(scores != nullptr ? scores[i] : kNoScore, b.ids.size());
      b.codes.insert(b.codes.end(), code, code + cb);
      b.ids.push_back(ids[i]);
      b.gslots.push_back(g);
      ++b.hist[d];
      b.radius = std::max(b.radius, d);
      ids_.push_back(ids[i]);
      bucket_of_.push_back(c);
      pos_.push_back(static_cast<uint32_t>(b.ids.size() - 1));
      slot_of_.Insert(ids[i], g, ids_.data());
    }
  } catch (const std::bad_alloc&) {
    // A half-appended item would break the slot links; vectors grow one
    // push_back at a time, so the failing push_back left its own vector
    // unchanged, but earlier vectors of the same item may already hold it.
    // Rebuilding the links from the buckets restores consistency.
    ids_.clear();
    bucket_of_.clear();
    pos_.clear();
    for (uint32_t c = 0; c < num_classes_; ++c) {
      Bucket& b = buckets_[c];
      const size_t members = std::min({b.ids.size(), b.gslots.size(), b.codes.size() / cb});
      b.ids.resize(members);
      b.scores.Truncate(members);
      b.gslots.resize(members);
      b.codes.resize(members * cb);
      for (size_t p = 0; p < members; ++p) {
        b.gslots[p] = static_cast<uint32_t>(ids_.size());
        ids_.push_back(b.ids[p]);
        bucket_of_.push_back(c);
        pos_.push_back(static_cast<uint32_t>(p));
      }
      std::fill(b.hist.begin(), b.hist.end(), 0);
      b.radius = 0;
      for (size_t p = 0; p < members; ++p) {
        const uint32_t d = kernel_.distance(b.codes.data() + p * cb, codebook_.data() + c * cb, cb);
        if (b.hist.size() <= d) b.hist.resize(d + 1, 0);
        ++b.hist[d];
        b.radius = std::max(b.radius, d);
      }
    }
    slot_of_.Rebuild(ids_.data(), ids_.size());
    return Status::ResourceExhausted("ClassBucketIndex::Add: out of memory");
  }
  return Status::OK();
}

void ClassBucketIndex::RemoveSlotLocked(uint32_t g) {
  const size_t cb = code_bytes();
  const uint32_t c = bucket_of_[g];
  const uint32_t p = pos_[g];
  Bucket& b = buckets_[c];
  const uint32_t d =
      kernel_.distance(b.codes.data() + static_cast<size_t>(p) * cb, codebook_.data() + c * cb, cb);
  --b.hist[d];
  while (b.radius > 0 && b.hist[b.radius] == 0) --b.radius;
  const uint32_t last = static_cast<uint32_t>(b.ids.size() - 1);
  if (p != last) {
    std::memcpy(b.codes.data() + static_cast<size_t>(p) * cb,
                b.codes.data() + static_cast<size_t>(last) * cb, cb);
    b.ids[p] = b.ids[last];
    b.gslots[p] = b.gslots[last];
    pos_[b.gslots[p]] = p;
  }
  b.scores.MoveLast(p);
  b.ids.pop_back();
  b.gslots.pop_back();
  b.codes.resize(b.codes.size() - cb);

  slot_of_.Erase(ids_[g], ids_.data());
  const uint32_t glast = static_cast<uint32_t>(ids_.size() - 1);
  if (g != glast) {
    slot_of_.Move(ids_[glast], glast, g, ids_.data());
    ids_[g] = ids_[glast];
    bucket_of_[g] = bucket_of_[glast];
    pos_[g] = pos_[glast];
    buckets_[bucket_of_[g]].gslots[pos_[g]] = g;
  }
  ids_.pop_back();
  bucket_of_.pop_back();
  pos_.pop_back();
}

Status ClassBucketIndex::Remove(const uint64_t* ids, size_t n, size_t* removed) {
  if (n > 0 && ids == nullptr) return Status::InvalidArgument("ids is null");
  std::lock_guard<std::mutex> writer(write_mu_);
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t g = slot_of_.Find(ids[i], ids_.data());
    if (g == IdSlotMap::kNoSlot) continue;
    RemoveSlotLocked(g);
    ++count;
  }
  if (removed != nullptr) *removed = count;
  return Status::OK();
}

Status ClassBucketIndex::Lookup(const uint64_t* ids, size_t n, uint8_t* codes, uint16_t* scores,
                                uint8_t* found) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  const size_t nb = code_bytes();
  for (size_t i = 0; i < n; ++i) {
    const uint32_t g = slot_of_.Find(ids[i], ids_.data());
    found[i] = g != IdSlotMap::kNoSlot;
    if (!found[i]) continue;
    const Bucket& b = buckets_[bucket_of_[g]];
    std::memcpy(codes + i * nb, b.codes.data() + size_t{pos_[g]} * nb, nb);
    scores[i] = b.scores.Get(pos_[g]);
  }
  return Status::OK();
}

Status ClassBucketIndex::ExportItems(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                                     std::vector<uint16_t>* scores) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  ids->clear();
  codes->clear();
  scores->clear();
  ids->reserve(ids_.size());
  codes->reserve(ids_.size() * code_bytes());
  bool any_score = false;
  for (const Bucket& b : buckets_) any_score = any_score || b.scores.data() != nullptr;
  for (const Bucket& b : buckets_) {
    ids->insert(ids->end(), b.ids.begin(), b.ids.end());
    codes->insert(codes->end(), b.codes.begin(), b.codes.end());
    if (any_score) {
      for (size_t p = 0; p < b.ids.size(); ++p) scores->push_back(b.scores.Get(p));
    }
  }
  return Status::OK();
}

StatusOr<SearchResult> ClassBucketIndex::Search(const uint8_t* query, size_t k,
                                                const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckSearchArgs(query, k, bits()));
  if (params.nprobe < -1) {
    return Status::InvalidArgument("nprobe must be >= 1, 0 (index default) or -1 (until exact)");
  }
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  SearchResult result;
  const size_t n = ids_.size();
  if (n == 0) return result;
  const size_t kk = std::min(k, n);
  const size_t cb = code_bytes();
  const std::vector<uint16_t> cd = ClassDistances(query);
  TopKCollector top(kk, bits(), params.tie_break);
  const IdFilter* filter = params.filter;
  size_t found = 0;
  uint16_t dist[kBlock];
  auto scan = [&](uint32_t c) {
    result.visited_buckets.push_back(static_cast<int>(c));
    const Bucket& b = buckets_[c];
    const size_t members = b.ids.size();
    uint32_t threshold = top.threshold();
    for (size_t at = 0; at < members; at += kBlock) {
      const size_t len = std::min(kBlock, members - at);
      kernel_.distances(query, b.codes.data() + at * cb, len, cb, dist);
      for (size_t i = 0; i < len; ++i) {
        if (dist[i] <= threshold && (filter == nullptr || filter->Allows(b.ids[at + i]))) {
          top.Offer(dist[i], b.ids[at + i], b.scores.Get(at + i));
          threshold = top.threshold();
        }
      }
    }
    found += members;
  };

  if (params.nprobe != -1) {
    ListPlan plan = PlanLocked(cd, kk, params.nprobe);
    for (const int c : plan.lists) scan(static_cast<uint32_t>(c));
    if (filter != nullptr) {
      // The plan counted every member; widen, nearest buckets first, until
      // k allowed items are held, and bound only the buckets left.
      std::vector<char> visited(num_classes_, 0);
      for (const int c : plan.lists) visited[c] = 1;
      uint32_t kth;
      for (const uint32_t c : OrderByKey(cd, bits())) {
        if (top.Settle(&kth)) break;
        if (visited[c] || buckets_[c].ids.empty()) continue;
        scan(c);
        visited[c] = 1;
      }
      plan.covers_all = found == n;
      plan.min_unvisited_bound = UINT32_MAX;
      for (size_t c = 0; c < num_classes_; ++c) {
        if (!visited[c] && !buckets_[c].ids.empty()) {
          plan.min_unvisited_bound = std::min(plan.min_unvisited_bound, LowerBound(cd[c], buckets_[c].radius));
        }
      }
    }
    result.neighbors = top.Finish();
    result.exact = plan.covers_all || (result.neighbors.size() == kk &&
                                       result.neighbors.back().distance < plan.min_unvisited_bound);
    return result;
  }
  // Until exact: buckets by lower bound; stop once the next bound exceeds
  // the k-th distance (a bound equal to it could still hold a tie that comes
  // first in the tie order, so that bucket is scanned). Stopping there proves the rest:
  // every later bucket has a bound at least as large.
  std::vector<uint32_t> bound(num_classes_);
  for (size_t c = 0; c < num_classes_; ++c) bound[c] = LowerBound(cd[c], buckets_[c].radius);
  for (const uint32_t c : OrderByKey(bound, bits())) {
    if (buckets_[c].ids.empty()) continue;
    uint32_t kth;
    if (top.Settle(&kth) && bound[c] > kth) break;
    scan(c);
  }
  result.neighbors = top.Finish();
  result.exact = true;
  return result;
}

ListPlan ClassBucketIndex::PlanLocked(const std::vector<uint16_t>& cd, size_t k,
                                      int nprobe_param) const {
  ListPlan plan;
  const size_t n = ids_.size();
  if (n == 0) {
    plan.covers_all = true;
    return plan;
  }
  const size_t kk = std::min(k, n);
  const size_t nprobe = static_cast<size_t>(nprobe_param > 0 ? nprobe_param : default_nprobe_);
  std::vector<char> visited(num_classes_, 0);
  size_t probes = 0, found = 0;
  for (const uint32_t c : OrderByKey(cd, bits())) {
    // After nprobe buckets, widen only while the shortlist is short.
    if (probes >= nprobe && found >= kk) break;
    plan.lists.push_back(static_cast<int>(c));
    visited[c] = 1;
    found += buckets_[c].ids.size();
    ++probes;
  }
  plan.covers_all = found == n;
  plan.min_unvisited_bound = UINT32_MAX;
  for (size_t c = 0; c < num_classes_; ++c) {
    if (!visited[c] && !buckets_[c].ids.empty()) {
      plan.min_unvisited_bound =
          std::min(plan.min_unvisited_bound, LowerBound(cd[c], buckets_[c].radius));
    }
  }
  return plan;
}

Status ClassBucketIndex::PlanLists(const uint8_t* query, size_t k, const SearchParams& params,
                                   ListPlan* plan) const {
  HAMDB_RETURN_IF_ERROR(CheckSearchArgs(query, k, bits()));
  if (params.nprobe < 0) {
    return Status::NotSupported("nprobe = -1 decides bucket by bucket; no plan up front");
  }
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  *plan = PlanLocked(ClassDistances(query), k, params.nprobe);
  return Status::OK();
}

Status ClassBucketIndex::ExportLists(std::vector<uint8_t>* codes, std::vector<uint64_t>* ids,
                                     std::vector<uint64_t>* begin) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  try {
    codes->clear();
    ids->clear();
    begin->assign(1, 0);
    codes->reserve(ids_.size() * code_bytes());
    ids->reserve(ids_.size());
    for (const Bucket& b : buckets_) {
      codes->insert(codes->end(), b.codes.begin(), b.codes.end());
      ids->insert(ids->end(), b.ids.begin(), b.ids.end());
      begin->push_back(ids->size());
    }
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("ClassBucketIndex::ExportLists: out of memory");
  }
  return Status::OK();
}

StatusOr<SearchResult> ClassBucketIndex::RangeSearch(const uint8_t* query, uint32_t radius,
                                                     const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckRangeArgs(query, bits()));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  SearchResult result;
  const size_t cb = code_bytes();
  const std::vector<uint16_t> cd = ClassDistances(query);
  uint16_t dist[kBlock];
  try {
    for (const uint32_t c : OrderByKey(cd, bits())) {
      const Bucket& b = buckets_[c];
      if (b.ids.empty() || LowerBound(cd[c], b.radius) > radius) continue;
      result.visited_buckets.push_back(static_cast<int>(c));
      for (size_t at = 0; at < b.ids.size(); at += kBlock) {
        const size_t len = std::min(kBlock, b.ids.size() - at);
        kernel_.distances(query, b.codes.data() + at * cb, len, cb, dist);
        for (size_t i = 0; i < len; ++i) {
          if (dist[i] <= radius && (params.filter == nullptr || params.filter->Allows(b.ids[at + i]))) {
            result.neighbors.push_back(Neighbor{b.ids[at + i], dist[i], b.scores.Get(at + i)});
          }
        }
      }
    }
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("ClassBucketIndex::RangeSearch: out of memory");
  }
  std::sort(result.neighbors.begin(), result.neighbors.end(), NeighborOrder{params.tie_break});
  result.exact = true;
  return result;
}

}  // namespace hamdb
