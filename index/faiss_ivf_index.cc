#include "index/faiss_ivf_index.h"

#include <faiss/IndexBinaryFlat.h>
#include <faiss/IndexBinaryIVF.h>
#include <faiss/invlists/InvertedLists.h>

#include <stdexcept>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <unordered_set>

#include "core/binary_code.h"
#include "index/scan.h"

namespace hamdb {
namespace {

using FaissId = faiss::IndexBinary::idx_t;
constexpr size_t kBlock = 1024;

// Runs a FAISS call, turning its exceptions into a Status.
template <typename Fn>
Status CatchFaiss(const char* what, Fn&& fn) {
  try {
    fn();
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted(std::string(what) + ": out of memory");
  } catch (const std::exception& e) {
    return Status::Internal(std::string(what) + ": FAISS: " + e.what());
  }
  return Status::OK();
}

// The lists of an IndexBinaryIVF, which makes them ArrayInvertedLists;
// checked (std::runtime_error) where an index is trained or loaded, so that
// the writes after it may take them as such.
faiss::ArrayInvertedLists* ArrayLists(faiss::IndexBinaryIVF* ivf) {
  auto* lists = dynamic_cast<faiss::ArrayInvertedLists*>(ivf->invlists);
  if (lists == nullptr) throw std::runtime_error("unexpected inverted-list type");
  return lists;
}
faiss::ArrayInvertedLists* CheckedLists(faiss::IndexBinaryIVF* ivf) {
  return static_cast<faiss::ArrayInvertedLists*>(ivf->invlists);
}

// An item's place in the lists: its list in the high half, its offset there
// in the low half.
uint64_t Place(size_t list, size_t offset) { return (uint64_t{list} << 32) | offset; }
size_t PlaceList(uint64_t place) { return static_cast<size_t>(place >> 32); }
size_t PlaceOffset(uint64_t place) { return static_cast<size_t>(place & 0xFFFFFFFFu); }

}  // namespace

StatusOr<std::unique_ptr<FaissIvfIndex>> FaissIvfIndex::Create(int bits, int nlist,
                                                               int default_nprobe) {
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(bits));
  if (bits % 8 != 0) {
    return Status::InvalidArgument("the FAISS IVF index needs bits to be a multiple of 8, got " +
                                   std::to_string(bits));
  }
  if (nlist < 1) return Status::InvalidArgument("IVF nlist must be at least 1");
  if (default_nprobe < 1) return Status::InvalidArgument("IVF nprobe must be at least 1");
  std::unique_ptr<FaissIvfIndex> index(new FaissIvfIndex(bits, nlist, default_nprobe));
  HAMDB_RETURN_IF_ERROR(CatchFaiss("IVF quantizer", [&] {
    index->quantizer_ = std::make_unique<faiss::IndexBinaryFlat>(bits);
  }));
  return index;
}

FaissIvfIndex::FaissIvfIndex(int bits, int nlist, int default_nprobe)
    : BinaryIndex(bits),
      kernel_(SelectHammingKernel(code_bytes())),
      nlist_(nlist),
      default_nprobe_(default_nprobe) {}

// ivf_ refers to quantizer_ and is declared after it, so it goes first.
FaissIvfIndex::~FaissIvfIndex() = default;

std::string FaissIvfIndex::spec() const {
  std::string s = "IVF" + std::to_string(nlist_);
  if (default_nprobe_ != 1) s += "_" + std::to_string(default_nprobe_);
  return s;
}

size_t FaissIvfIndex::size() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return ids_.size();
}

bool FaissIvfIndex::trained() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return ivf_ != nullptr;
}

double FaissIvfIndex::train_seconds() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return train_seconds_;
}

size_t FaissIvfIndex::memory_bytes() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  size_t bytes = pending_codes_.capacity() + ids_.capacity() * sizeof(uint64_t) +
                 place_.capacity() * sizeof(uint64_t) + slot_of_.memory_bytes() +
                 quantizer_->xb.capacity();
  if (ivf_ != nullptr) {
    if (auto* lists = dynamic_cast<const faiss::ArrayInvertedLists*>(ivf_->invlists)) {
      for (size_t l = 0; l < lists->nlist; ++l) {
        bytes += lists->codes[l].capacity() + lists->ids[l].capacity() * sizeof(FaissId);
      }
      bytes += lists->nlist * (2 * sizeof(std::vector<uint8_t>));
    }
  }
  return bytes;
}

int FaissIvfIndex::ResolveNprobe(int requested) const {
  const int p = requested > 0 ? requested : default_nprobe_;
  return std::min(p, nlist_);
}

Status FaissIvfIndex::AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t*,
                               size_t n) {
  HAMDB_RETURN_IF_ERROR(CheckAddArgs(ids, codes, n, bits()));
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] > static_cast<uint64_t>(INT64_MAX)) {
      return Status::InvalidArgument("item " + std::to_string(i) +
                                     ": the FAISS IVF index takes ids below 2^63");
    }
  }
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  if (ids_.size() + n >= IdSlotMap::kNoSlot) {
    return Status::ResourceExhausted("FaissIvfIndex holds at most 2^32 - 2 items");
  }
  if (ivf_ != nullptr) return AddTrainedLocked(ids, codes, n);
  HAMDB_RETURN_IF_ERROR(AddPendingLocked(ids, codes, n));
  if (ids_.size() >= train_threshold()) return TrainLocked();
  return Status::OK();
}

Status FaissIvfIndex::AddPendingLocked(const uint64_t* ids, const uint8_t* codes, size_t n) {
  const size_t cb = code_bytes();
  try {
    ReserveForAppend(&ids_, n);
    ReserveForAppend(&pending_codes_, n * cb);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t slot = slot_of_.Find(ids[i], ids_.data());
      if (slot != IdSlotMap::kNoSlot) {
        std::memcpy(pending_codes_.data() + static_cast<size_t>(slot) * cb, codes + i * cb, cb);
        continue;
      }
      ids_.push_back(ids[i]);
      pending_codes_.insert(pending_codes_.end(), codes + i * cb, codes + (i + 1) * cb);
      slot_of_.Insert(ids[i], static_cast<uint32_t>(ids_.size() - 1), ids_.data());
    }
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("FaissIvfIndex::Add: out of memory");
  }
  return Status::OK();
}

Status FaissIvfIndex::TrainLocked() {
  const size_t cb = code_bytes();
  const size_t n = ids_.size();
  const size_t max_train = kMaxTrainPerList * static_cast<size_t>(nlist_);
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<faiss::IndexBinaryIVF> ivf;
  Status st = CatchFaiss("IVF training", [&] {
    // A strided sample: deterministic, and spread over the whole buffer
    // rather than its oldest items.
    std::vector<uint8_t> sample;
    const size_t ntrain = std::min(n, max_train);
    sample.reserve(ntrain * cb);
    for (size_t j = 0; j < ntrain; ++j) {
      const size_t i = j * n / ntrain;
      sample.insert(sample.end(), pending_codes_.data() + i * cb,
                    pending_codes_.data() + (i + 1) * cb);
    }
    ivf = std::make_unique<faiss::IndexBinaryIVF>(quantizer_.get(), bits(), nlist_);
    ivf->cp.verbose = false;
    ivf->train(static_cast<FaissId>(ntrain), sample.data());
    std::vector<FaissId> fids(ids_.begin(), ids_.end());
    ivf->add_with_ids(static_cast<FaissId>(n), pending_codes_.data(), fids.data());
    // Where add_with_ids put each item, so that a later delete finds it.
    const faiss::ArrayInvertedLists* lists = ArrayLists(ivf.get());
    place_.assign(n, 0);
    for (size_t l = 0; l < lists->nlist; ++l) {
      for (size_t off = 0; off < lists->ids[l].size(); ++off) {
        const uint32_t slot = slot_of_.Find(static_cast<uint64_t>(lists->ids[l][off]), ids_.data());
        if (slot == IdSlotMap::kNoSlot) throw std::runtime_error("an item in no slot after training");
        place_[slot] = Place(l, off);
      }
    }
  });
  if (!st.ok()) {
    // The buffer is intact and keeps answering exactly; the quantizer may
    // hold half-trained centroids, so it is replaced.
    ivf.reset();
    place_.clear();
    HAMDB_RETURN_IF_ERROR(CatchFaiss(
        "IVF quantizer", [&] { quantizer_ = std::make_unique<faiss::IndexBinaryFlat>(bits()); }));
    return st;
  }
  ivf_ = std::move(ivf);
  train_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<uint8_t>().swap(pending_codes_);
  return Status::OK();
}

Status FaissIvfIndex::AddTrainedLocked(const uint64_t* ids, const uint8_t* codes, size_t n) {
  const size_t cb = code_bytes();
  // Atomic upsert: everything that can fail (allocation, the quantizer, a
  // FAISS exception) happens before the first change, and the changes after
  // it cannot allocate. Either every item is in the index or nothing changed.
  std::vector<size_t> keep;
  std::vector<FaissId> stale, kids, list_nos;
  std::vector<uint8_t> kcodes;
  HAMDB_RETURN_IF_ERROR(CatchFaiss("IVF add", [&] {
    // The last occurrence of each id wins; ids already held are removed
    // first (EraseLocked), which leaves every other id where it is.
    std::unordered_set<uint64_t> seen;
    for (size_t i = n; i-- > 0;) {
      if (!seen.insert(ids[i]).second) continue;
      keep.push_back(i);
      if (slot_of_.Find(ids[i], ids_.data()) != IdSlotMap::kNoSlot) {
        stale.push_back(static_cast<FaissId>(ids[i]));
      }
    }
    std::reverse(keep.begin(), keep.end());
    kcodes.resize(keep.size() * cb);
    kids.resize(keep.size());
    for (size_t j = 0; j < keep.size(); ++j) {
      std::memcpy(kcodes.data() + j * cb, codes + keep[j] * cb, cb);
      kids[j] = static_cast<FaissId>(ids[keep[j]]);
    }
    list_nos.resize(keep.size());
    ivf_->quantizer->assign(static_cast<FaissId>(keep.size()), kcodes.data(), list_nos.data());
    faiss::ArrayInvertedLists* lists = ArrayLists(ivf_.get());
    std::vector<size_t> per_list(static_cast<size_t>(nlist_), 0);
    for (FaissId l : list_nos) per_list[static_cast<size_t>(l)]++;
    for (size_t l = 0; l < per_list.size(); ++l) {
      if (per_list[l] == 0) continue;
      ReserveForAppend(&lists->ids[l], per_list[l]);
      ReserveForAppend(&lists->codes[l], per_list[l] * cb);
    }
    ReserveForAppend(&ids_, keep.size());
    ReserveForAppend(&place_, keep.size());
    slot_of_.Reserve(ids_.size() + keep.size(), ids_.data());
  }));
  // Within the capacity reserved above: nothing below allocates or throws.
  faiss::ArrayInvertedLists* lists = CheckedLists(ivf_.get());
  for (FaissId id : stale) EraseLocked(static_cast<uint64_t>(id));
  for (size_t j = 0; j < keep.size(); ++j) {
    const size_t l = static_cast<size_t>(list_nos[j]);
    const size_t offset = lists->ids[l].size();
    lists->ids[l].push_back(kids[j]);
    lists->codes[l].insert(lists->codes[l].end(), kcodes.data() + j * cb,
                           kcodes.data() + (j + 1) * cb);
    ids_.push_back(static_cast<uint64_t>(kids[j]));
    place_.push_back(Place(l, offset));
    slot_of_.Insert(ids_.back(), static_cast<uint32_t>(ids_.size() - 1), ids_.data());
  }
  ivf_->ntotal += static_cast<FaissId>(keep.size());
  return Status::OK();
}

void FaissIvfIndex::EraseLocked(uint64_t id) {
  const size_t cb = code_bytes();
  const uint32_t slot = slot_of_.Erase(id, ids_.data());
  if (ivf_ != nullptr) {
    // In its list, the list's last entry takes its place.
    faiss::ArrayInvertedLists* lists = CheckedLists(ivf_.get());
    const size_t l = PlaceList(place_[slot]), offset = PlaceOffset(place_[slot]);
    std::vector<FaissId>& list_ids = lists->ids[l];
    std::vector<uint8_t>& list_codes = lists->codes[l];
    const size_t end = list_ids.size() - 1;
    if (offset != end) {
      list_ids[offset] = list_ids[end];
      std::memcpy(&list_codes[offset * cb], &list_codes[end * cb], cb);
      place_[slot_of_.Find(static_cast<uint64_t>(list_ids[offset]), ids_.data())] = Place(l, offset);
    }
    list_ids.pop_back();
    list_codes.resize(end * cb);
    ivf_->ntotal -= 1;
  }
  // In the dense slots, the last slot takes its place, with its place in the
  // lists (trained) or its buffered code (untrained).
  const uint32_t last = static_cast<uint32_t>(ids_.size() - 1);
  if (slot != last) {
    slot_of_.Move(ids_[last], last, slot, ids_.data());
    ids_[slot] = ids_[last];
    if (ivf_ != nullptr) {
      place_[slot] = place_[last];
    } else {
      std::memcpy(pending_codes_.data() + static_cast<size_t>(slot) * cb,
                  pending_codes_.data() + static_cast<size_t>(last) * cb, cb);
    }
  }
  ids_.pop_back();
  if (ivf_ != nullptr) {
    place_.pop_back();
  } else {
    pending_codes_.resize(pending_codes_.size() - cb);
  }
}

Status FaissIvfIndex::Remove(const uint64_t* ids, size_t n, size_t* removed) {
  if (n > 0 && ids == nullptr) return Status::InvalidArgument("ids is null");
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) {
    if (slot_of_.Find(ids[i], ids_.data()) == IdSlotMap::kNoSlot) continue;
    EraseLocked(ids[i]);
    ++count;
  }
  if (removed != nullptr) *removed = count;
  return Status::OK();
}

StatusOr<std::vector<int>> FaissIvfIndex::ProbeListsLocked(const uint8_t* query, int nprobe) const {
  std::vector<int> lists;
  if (ivf_ == nullptr) return lists;
  // The quantizer is a flat code list (nlist centroids); scanning it here
  // with our kernel is exact, orders ties by list number, and avoids an
  // OpenMP region per query (FAISS's single-query flat search was erratic:
  // p50 24 ms at nprobe 1 in hamdb bench index on the shared 2-core box).
  const size_t p = static_cast<size_t>(ResolveNprobe(nprobe));
  const size_t cb = code_bytes();
  const size_t centroids = quantizer_->xb.size() / cb;
  std::vector<uint16_t> dist(centroids);
  kernel_.distances(query, quantizer_->xb.data(), centroids, cb, dist.data());
  std::vector<uint64_t> keyed(centroids);
  for (size_t l = 0; l < centroids; ++l) keyed[l] = (uint64_t{dist[l]} << 32) | l;
  const size_t take = std::min(p, centroids);
  std::partial_sort(keyed.begin(), keyed.begin() + take, keyed.end());
  for (size_t j = 0; j < take; ++j) lists.push_back(static_cast<int>(keyed[j] & 0xFFFFFFFFu));
  return lists;
}

StatusOr<std::vector<int>> FaissIvfIndex::ProbeLists(const uint8_t* query, int nprobe) const {
  HAMDB_RETURN_IF_ERROR(CheckCodes(query, 1, bits(), "query"));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return ProbeListsLocked(query, nprobe);
}

Status FaissIvfIndex::ExportLists(std::vector<uint8_t>* codes, std::vector<uint64_t>* ids,
                                  std::vector<uint64_t>* begin) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  if (ivf_ == nullptr) return Status::FailedPrecondition("the IVF index is not trained yet");
  return ExportListsLocked(codes, ids, begin);
}

Status FaissIvfIndex::ExportListsLocked(std::vector<uint8_t>* codes, std::vector<uint64_t>* ids,
                                        std::vector<uint64_t>* begin) const {
  const size_t cb = code_bytes();
  try {
    codes->clear();
    ids->clear();
    if (begin != nullptr) begin->assign(1, 0);
    for (int l = 0; l < nlist_; ++l) {
      const ListView v = list(l);
      codes->insert(codes->end(), v.codes, v.codes + v.size * cb);
      for (size_t i = 0; i < v.size; ++i) ids->push_back(static_cast<uint64_t>(v.ids[i]));
      if (begin != nullptr) begin->push_back(ids->size());
    }
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("FaissIvfIndex: out of memory exporting the lists");
  }
  return Status::OK();
}

Status FaissIvfIndex::PlanLists(const uint8_t* query, size_t k, const SearchParams& params,
                                ListPlan* plan) const {
  HAMDB_RETURN_IF_ERROR(CheckSearchArgs(query, k, bits()));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  if (ivf_ == nullptr) return Status::FailedPrecondition("the IVF index is not trained yet");
  HAMDB_ASSIGN_OR_RETURN(plan->lists, ProbeListsLocked(query, params.nprobe));
  plan->covers_all = false;
  plan->min_unvisited_bound = 0;
  return Status::OK();
}

Status FaissIvfIndex::ExportItemsLocked(std::vector<uint64_t>* ids,
                                        std::vector<uint8_t>* codes) const {
  if (ivf_ != nullptr) return ExportListsLocked(codes, ids, nullptr);
  *ids = ids_;
  *codes = pending_codes_;
  return Status::OK();
}

Status FaissIvfIndex::ExportItems(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                                  std::vector<uint16_t>* scores) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  scores->clear();
  return ExportItemsLocked(ids, codes);
}

Status FaissIvfIndex::SaveState(std::string* out) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  out->push_back(ivf_ != nullptr ? 1 : 0);
  if (ivf_ != nullptr) {
    const std::vector<uint8_t>& centroids = quantizer_->xb;
    out->append(reinterpret_cast<const char*>(centroids.data()), centroids.size());
  }
  std::vector<uint64_t> ids;
  std::vector<uint8_t> codes;
  HAMDB_RETURN_IF_ERROR(ExportItemsLocked(&ids, &codes));
  AppendItemsState(ids, codes, {}, out);
  return Status::OK();
}

Status FaissIvfIndex::LoadState(std::string_view state) {
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  if (!ids_.empty() || ivf_ != nullptr) {
    return Status::FailedPrecondition("LoadState needs an empty, untrained index");
  }
  if (state.empty() || static_cast<uint8_t>(state[0]) > 1) {
    return Status::Corruption("IVF state has no valid trained flag");
  }
  const bool trained = state[0] == 1;
  state.remove_prefix(1);
  const size_t centroid_bytes = static_cast<size_t>(nlist_) * code_bytes();
  std::unique_ptr<faiss::IndexBinaryIVF> ivf;
  if (trained) {
    if (state.size() < centroid_bytes) return Status::Corruption("IVF state is truncated (centroids)");
    HAMDB_RETURN_IF_ERROR(CatchFaiss("IVF load", [&] {
      auto quantizer = std::make_unique<faiss::IndexBinaryFlat>(bits());
      quantizer->add(nlist_, reinterpret_cast<const uint8_t*>(state.data()));
      ivf = std::make_unique<faiss::IndexBinaryIVF>(quantizer.get(), bits(), nlist_);
      ivf->cp.verbose = false;
      ivf->is_trained = true;
      quantizer_ = std::move(quantizer);
    }));
    state.remove_prefix(centroid_bytes);
  }
  std::vector<uint64_t> ids;
  std::vector<uint8_t> codes;
  std::vector<uint16_t> scores;
  HAMDB_RETURN_IF_ERROR(ParseItemsState(&state, code_bytes(), &ids, &codes, &scores));
  if (!state.empty()) return Status::Corruption("IVF state has trailing bytes");
  if (!trained) return AddPendingLocked(ids.data(), codes.data(), ids.size());
  ivf_ = std::move(ivf);
  return AddTrainedLocked(ids.data(), codes.data(), ids.size());
}

FaissIvfIndex::ListView FaissIvfIndex::list(int l) const {
  ListView v;
  if (ivf_ == nullptr || l < 0 || l >= nlist_) return v;
  const faiss::InvertedLists* lists = ivf_->invlists;
  v.size = lists->list_size(l);
  v.codes = lists->get_codes(l);
  static_assert(sizeof(FaissId) == sizeof(int64_t), "FAISS ids are 64-bit");
  v.ids = reinterpret_cast<const int64_t*>(lists->get_ids(l));
  return v;
}

StatusOr<SearchResult> FaissIvfIndex::Search(const uint8_t* query, size_t k,
                                             const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckSearchArgs(query, k, bits()));
  HAMDB_RETURN_IF_ERROR(CheckTieBreakSupported(spec(), keeps_scores(), params.tie_break));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  SearchResult result;
  if (ivf_ == nullptr) {
    HAMDB_ASSIGN_OR_RETURN(result.neighbors,
                           ScanKnn(MakeSlotView(pending_codes_, ids_, nullptr, bits(), kernel_, params.filter),
                                   query, k, params.num_threads, TieBreak::kId));
    return result;
  }
  // At most the items held: k only sizes the collector.
  return SearchProbedLists(query, std::max<size_t>(1, std::min(k, ids_.size())), 0, false, params);
}

StatusOr<SearchResult> FaissIvfIndex::RangeSearch(const uint8_t* query, uint32_t radius,
                                                  const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckRangeArgs(query, bits()));
  HAMDB_RETURN_IF_ERROR(CheckTieBreakSupported(spec(), keeps_scores(), params.tie_break));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  SearchResult result;
  if (ivf_ == nullptr) {
    HAMDB_ASSIGN_OR_RETURN(result.neighbors,
                           ScanRange(MakeSlotView(pending_codes_, ids_, nullptr, bits(), kernel_, params.filter),
                                     query, radius, params.num_threads, TieBreak::kId));
    return result;
  }
  return SearchProbedLists(query, 0, radius, true, params);
}

StatusOr<SearchResult> FaissIvfIndex::SearchProbedLists(const uint8_t* query, size_t k, uint32_t radius,
                                                        bool is_range, const SearchParams& params) const {
  HAMDB_ASSIGN_OR_RETURN(std::vector<int> probe, ProbeListsLocked(query, params.nprobe));
  ExactScanResult collect(k, radius, is_range, bits(), TieBreak::kId);
  std::vector<int> visited;
  const size_t cb = code_bytes();
  uint16_t dist[kBlock];
  for (int l : probe) {
    visited.push_back(l);
    const ListView v = list(l);
    for (size_t at = 0; at < v.size; at += kBlock) {
      const size_t len = std::min(kBlock, v.size - at);
      kernel_.distances(query, v.codes + at * cb, len, cb, dist);
      for (size_t i = 0; i < len; ++i) {
        const uint64_t id = static_cast<uint64_t>(v.ids[at + i]);
        if (dist[i] <= collect.limit() && (params.filter == nullptr || params.filter->Allows(id))) {
          collect.Offer(dist[i], id, kNoScore);
        }
      }
    }
  }
  SearchResult result = collect.Finish();
  result.exact = false;  // only the probed lists were read
  result.visited_buckets = std::move(visited);
  return result;
}

}  // namespace hamdb
