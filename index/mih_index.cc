#include "index/mih_index.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <thread>
#include <utility>

#include "index/state_io.h"
#include "core/binary_code.h"
#include "core/prefetch.h"
#include "index/parallel.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "MihIndex reads substrings with little-endian word loads"
#endif

namespace hamdb {
namespace {

constexpr uint32_t kHole = UINT32_MAX;  // no slot, bucket or node
// Direct-addressed tables (a bucket per possible substring value) up to this
// width, and only while 2^width is at most kDirectSlack * n (or
// kMinDirectBuckets): an empty bucket costs 1.5-5 bits (BucketStarts), but
// every possible value is a bucket.
constexpr int kMaxDirectBits = 26;
constexpr size_t kDirectSlack = 8;
constexpr size_t kMinDirectBuckets = 1024;
// Overflow entries plus stale entries that trigger a table rebuild: 1/8 of the
// items, at least this many.
constexpr size_t kMinRebuildChanges = 4096;
// A background rebuild replays the table changes logged while it built under
// shared locks, a pass at a time, until at most this many are left; those
// it replays under the exclusive lock of its swap. At most
// kMaxSharedReplayPasses such passes (writers may log faster than a pass
// replays; the rest is then replayed under the exclusive lock).
constexpr size_t kExclusiveReplayOps = 1024;
constexpr int kMaxSharedReplayPasses = 8;
// Below this size a search always scans.
constexpr size_t kMinProbeSize = 512;
// Cost model, in units of "one code of 8 bytes scanned by one thread"
// (about 2-3 ns including the top-k filter). A probed key costs a hash / offset lookup,
// usually a cache miss; a candidate costs a random code load and a check.
// Calibrated from forced-probe and forced-scan timings at 64 bits and
// 100k, 1M and 10M items, with the lookups prefetched in batches
// (Table::SlotStream); MissCostScale adds the growth with n.
constexpr double kKeyCost = 16.0;
constexpr double kCandidateCost = 10.0;
// Buckets holding up to this many times the uniform count per key are
// taken as a uniform neighbourhood, where ProbeKnn predicts its work, once
// it has probed at least kMinPredictKeys buckets: the first round's m
// buckets are too few to tell a sparse neighbourhood from a uniform one (a
// query near one stored item finds that item there and little else).
constexpr double kUniformDensity = 4.0;
constexpr double kMinPredictKeys = 64.0;
// Candidates buffered before one distances_indexed call.
constexpr size_t kFlushBatch = 256;
// While stale entries exist, a k-NN probe with k up to this checks a new
// item against its heap's ids; a larger k keeps a set of pushed slots.
constexpr size_t kHeapScanMax = 32;
// SaveState's layout (3: packed entries; bucket starts as occupancy and
// entry-end bits; 5: tables may hold stale entries, see Table). Version 4
// states (tables without stale entries) load too.
constexpr uint32_t kStateVersion = 5;
constexpr uint32_t kExactTablesStateVersion = 4;

uint64_t MixKey(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

// Bits [offset, offset + width) of an LSB-first code as an integer
// (bit offset -> bit 0). width is 1..64.
inline uint64_t ExtractBits(const uint8_t* code, size_t cb, int offset, int width) {
  const size_t byte = static_cast<size_t>(offset) >> 3;
  const int shift = offset & 7;
  uint64_t word = 0;
  std::memcpy(&word, code + byte, std::min<size_t>(8, cb - byte));
  uint64_t v = word >> shift;
  if (shift + width > 64) v |= static_cast<uint64_t>(code[byte + 8]) << (64 - shift);
  return width == 64 ? v : v & ((uint64_t{1} << width) - 1);
}

// Calls f(key ^ mask) for every mask of exactly `s` of the low `w` bits, in
// a fixed order, until f returns false. Returns false if stopped.
template <typename F>
bool ForEachAtDistance(uint64_t key, int w, int s, F&& f) {
  if (s == 0) return f(key);
  if (s > w) return true;
  int pos[64];
  for (int i = 0; i < s; ++i) pos[i] = i;
  for (;;) {
    uint64_t mask = 0;
    for (int i = 0; i < s; ++i) mask |= uint64_t{1} << pos[i];
    if (!f(key ^ mask)) return false;
    int i = s - 1;
    while (i >= 0 && pos[i] == w - s + i) --i;
    if (i < 0) return true;
    ++pos[i];
    for (int j = i + 1; j < s; ++j) pos[j] = pos[j - 1] + 1;
  }
}

// C(n, r) as a double (saturates harmlessly for the cost estimate).
double Binomial(int n, int r) {
  if (r < 0 || r > n) return 0.0;
  double c = 1.0;
  for (int i = 1; i <= r; ++i) c = c * (n - r + i) / i;
  return c;
}

// The k-th neighbour distance expected if the n codes were uniformly random
// relative to the query: the smallest r with n * P(Binomial(bits, 1/2) <= r)
// >= k. Terms are accumulated in log space (2^-bits underflows a double).
uint32_t ExpectedKthDistance(size_t n, size_t k, int bits) {
  double log_term = -bits * std::log(2.0);  // log P(d = 0)
  double cdf = 0.0;
  for (int r = 0; r < bits; ++r) {
    cdf += std::exp(log_term);
    if (cdf * static_cast<double>(n) >= static_cast<double>(k)) return static_cast<uint32_t>(r);
    log_term += std::log(static_cast<double>(bits - r) / (r + 1));
  }
  return static_cast<uint32_t>(bits);
}

// Random lookups get dearer as the tables outgrow the caches: calibrated as
// 1x at 1M items and 2x at 10M (64-bit codes, 2-core VM).
double MissCostScale(size_t n) {
  const double x = std::log2(std::max(1.0, static_cast<double>(n) / (1 << 20)));
  return std::clamp(1.0 + 0.3 * x, 1.0, 3.0);
}

// The slots a k-NN probe with a large k has put in its heap, where stale
// entries may bring an item twice: an open-addressing set (linear probing,
// at most half full).
class SlotSet {
 public:
  // Adds `slot`; false when it was there.
  bool Insert(uint32_t slot) {
    if ((size_ + 1) * 2 > cells_.size()) Grow();
    const size_t mask = cells_.size() - 1;
    for (size_t i = MixKey(slot) & mask;; i = (i + 1) & mask) {
      if (cells_[i] == slot) return false;
      if (cells_[i] == kHole) {
        cells_[i] = slot;
        ++size_;
        return true;
      }
    }
  }

 private:
  void Grow() {
    std::vector<uint32_t> old(std::max<size_t>(64, cells_.size() * 2), kHole);
    old.swap(cells_);
    size_ = 0;
    for (uint32_t slot : old) {
      if (slot != kHole) Insert(slot);
    }
  }
  std::vector<uint32_t> cells_;  // kHole = empty
  size_t size_ = 0;
};

}  // namespace

// Open-addressing map from substring value to CSR bucket, for tables too
// wide to address directly. Built once per table rebuild; never mutated.
class MihIndex::KeyMap {
 public:
  void Build(const std::vector<uint64_t>& keys) {
    size_t cap = 16;
    while (cap < keys.size() * 2) cap *= 2;
    keys_.assign(cap, 0);
    buckets_.assign(cap, kHole);
    const size_t mask = cap - 1;
    for (size_t b = 0; b < keys.size(); ++b) {
      size_t c = MixKey(keys[b]) & mask;
      while (buckets_[c] != kHole) c = (c + 1) & mask;
      keys_[c] = keys[b];
      buckets_[c] = static_cast<uint32_t>(b);
    }
  }
  uint32_t Find(uint64_t key) const {
    if (keys_.empty()) return kHole;
    const size_t mask = keys_.size() - 1;
    for (size_t c = MixKey(key) & mask;; c = (c + 1) & mask) {
      if (buckets_[c] == kHole) return kHole;
      if (keys_[c] == key) return buckets_[c];
    }
  }
  void Prefetch(uint64_t key) const {
    if (keys_.empty()) return;
    const size_t c = MixKey(key) & (keys_.size() - 1);
    PrefetchLine(&keys_[c]);
    PrefetchLine(&buckets_[c]);
  }
  void Clear() {
    std::vector<uint64_t>().swap(keys_);
    std::vector<uint32_t>().swap(buckets_);
  }
  size_t memory_bytes() const {
    return keys_.capacity() * sizeof(uint64_t) + buckets_.capacity() * sizeof(uint32_t);
  }
  void AppendState(std::string* out) const {
    state_io::PutVector(out, keys_);
    state_io::PutVector(out, buckets_);
  }
  Status LoadState(std::string_view* in, size_t num_buckets) {
    HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &keys_));
    HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &buckets_));
    if (keys_.size() != buckets_.size() || (keys_.size() & (keys_.size() - 1)) != 0) {
      return Status::Corruption("MIH state: a key map is malformed");
    }
    for (uint32_t b : buckets_) {
      if (b != kHole && b >= num_buckets) return Status::Corruption("MIH state: a key map points past its buckets");
    }
    return Status::OK();
  }

 private:
  std::vector<uint64_t> keys_;
  std::vector<uint32_t> buckets_;  // kHole = empty cell
};

// Slots added to a table since its last rebuild, by substring value. An
// open-addressing map (linear probing, at most half full) from key to the
// head of that key's chain of nodes in one array, so that a search's lookup
// is one prefetched cell, and an insert is O(1) expected (the cells double
// as keys arrive, amortised). Entries are never removed: one whose slot has
// changed since is stale (see Table) and goes at the next rebuild.
class MihIndex::OverflowMap {
  struct Cell {
    uint64_t key;
    uint32_t head;  // first node, kHole when the chain is empty
    uint32_t used;  // 0: a free cell
  };
  struct Node {
    uint32_t slot;
    uint32_t next;  // kHole ends the chain
  };

 public:
  size_t num_entries() const { return entries_; }

  void Prefetch(uint64_t key) const {
    if (entries_ == 0) return;
    PrefetchLine(&cells_[MixKey(key) & (cells_.size() - 1)]);
  }
  // The first node of `key`'s chain, or kHole.
  uint32_t Head(uint64_t key) const {
    if (entries_ == 0) return kHole;
    const Cell* c = FindCell(key);
    return c == nullptr ? kHole : c->head;
  }
  // Sizes the key filter for a table of `items` (at least one bit per item:
  // the overflow holds at most about an eighth of them before the table is
  // rebuilt, so that a key that holds no entries passes with a probability
  // of about 1/8 or less) and empties it. Only an empty map may be sized.
  void SizeFilter(size_t items) {
    int b = 10;
    while (b < 32 && (size_t{1} << b) < items) ++b;
    filter_shift_ = 64 - b;
    filter_.assign((size_t{1} << b) / 64, 0);
  }
  // False when `key` holds no entries, true when it may. A probe checks it
  // before it touches the cells, where nearly every key it looks up holds
  // none. Unsized (a map that was never sized), every key passes.
  bool MayHold(uint64_t key) const {
    if (filter_.empty()) return true;
    const auto [word, bit] = FilterBit(key);
    return (filter_[word] & bit) != 0;
  }
  void PrefetchNode(uint32_t node) const {
    if (node != kHole) PrefetchLine(&nodes_[node]);
  }
  // Calls fn(slot) for each slot of the chain that starts at `node`.
  template <typename Fn>
  void ForEachFrom(uint32_t node, Fn&& fn) const {
    for (; node != kHole; node = nodes_[node].next) fn(nodes_[node].slot);
  }

  void Insert(uint64_t key, uint32_t slot) {
    if ((used_ + 1) * 2 > cells_.size()) Grow();
    Cell* c = nullptr;
    const size_t mask = cells_.size() - 1;
    for (size_t i = MixKey(key) & mask;; i = (i + 1) & mask) {
      c = &cells_[i];
      if (c->used == 0) {
        c->used = 1;
        c->key = key;
        c->head = kHole;
        ++used_;
        break;
      }
      if (c->key == key) break;
    }
    if (!filter_.empty()) {
      const auto [word, bit] = FilterBit(key);
      filter_[word] |= bit;
    }
    const uint32_t node = static_cast<uint32_t>(nodes_.size());
    nodes_.push_back({slot, c->head});
    c->head = node;
    ++entries_;
  }
  // Calls fn(key, slots) once for each key that holds entries.
  template <typename Fn>
  void ForEachKey(Fn&& fn) const {
    std::vector<uint32_t> slots;
    for (const Cell& c : cells_) {
      if (c.used == 0 || c.head == kHole) continue;
      slots.clear();
      ForEachFrom(c.head, [&](uint32_t s) { slots.push_back(s); });
      fn(c.key, slots);
    }
  }
  // Room for `extra` more inserts, off the exclusive lock (as
  // GrowForAppend, index/id_map.h): PrepareInsert copies into *g the cells
  // rehashed to a larger size and the nodes with room, when they would have
  // to grow; AdoptGrowth swaps them in when the map is unchanged since.
  struct Growth {
    size_t used = 0, num_cells = 0;  // at PrepareInsert
    size_t grown_used = 0;
    std::vector<Cell> cells;
    std::vector<Node> nodes;
  };
  void PrepareInsert(size_t extra, Growth* g) const {
    g->used = used_;
    g->num_cells = cells_.size();
    if ((used_ + extra) * 2 > cells_.size()) g->cells = Rehashed(CellsFor(used_ + extra), &g->grown_used);
    GrowForAppend(nodes_, extra, &g->nodes);
  }
  void AdoptGrowth(Growth* g) {
    if (g->used != used_ || g->num_cells != cells_.size()) return;
    if (!g->cells.empty()) {
      cells_.swap(g->cells);
      used_ = g->grown_used;
    }
    AdoptGrown(&nodes_, &g->nodes);
  }
  size_t num_keys() const {
    size_t keys = 0;
    for (const Cell& c : cells_) keys += c.used != 0 && c.head != kHole;
    return keys;
  }
  size_t memory_bytes() const {
    return cells_.capacity() * sizeof(Cell) + nodes_.capacity() * sizeof(Node) +
           filter_.capacity() * sizeof(uint64_t);
  }

 private:
  // `key`'s word in filter_ and its bit there.
  std::pair<size_t, uint64_t> FilterBit(uint64_t key) const {
    const uint64_t h = MixKey(key) >> filter_shift_;
    return {static_cast<size_t>(h >> 6), uint64_t{1} << (h & 63)};
  }
  const Cell* FindCell(uint64_t key) const {
    const size_t mask = cells_.size() - 1;
    for (size_t i = MixKey(key) & mask;; i = (i + 1) & mask) {
      const Cell& c = cells_[i];
      if (c.used == 0) return nullptr;
      if (c.key == key) return &c;
    }
  }
  Cell* FindCell(uint64_t key) {
    return const_cast<Cell*>(static_cast<const OverflowMap*>(this)->FindCell(key));
  }
  // A larger table (a power of two) that holds `keys` at most half full.
  size_t CellsFor(size_t keys) const {
    size_t cells = std::max<size_t>(16, cells_.size() * 2);
    while (keys * 2 > cells) cells *= 2;
    return cells;
  }
  void Grow() { cells_ = Rehashed(CellsFor(used_ + 1), &used_); }
  // The cells in a table of `size` (a power of two), emptied keys dropped.
  std::vector<Cell> Rehashed(size_t size, size_t* used) const {
    std::vector<Cell> fresh(size, Cell{0, kHole, 0});
    const size_t mask = size - 1;
    *used = 0;
    for (const Cell& c : cells_) {
      if (c.used == 0 || c.head == kHole) continue;
      size_t i = MixKey(c.key) & mask;
      while (fresh[i].used != 0) i = (i + 1) & mask;
      fresh[i] = c;
      ++*used;
    }
    return fresh;
  }

  std::vector<Cell> cells_;  // a power of two, or empty
  std::vector<Node> nodes_;
  size_t used_ = 0;        // cells in use
  size_t entries_ = 0;     // nodes, stale ones included
  std::vector<uint64_t> filter_;  // MayHold's bits, or empty
  int filter_shift_ = 64;
};

struct MihIndex::Table {
  int offset = 0;  // first bit of the substring
  int width = 0;   // 1..64 bits
  bool direct = false;
  // Bucket b holds entries[starts.Range(b)]; direct tables use the substring
  // value as b, hashed ones look b up in `keys`. Entries are slots, packed
  // in bit_width(n at the last rebuild) bits, never changed until the next
  // rebuild (entries.max_value() marks a removed one in states saved before
  // stale entries).
  BucketStarts starts;
  PackedInts entries;
  KeyMap keys;
  // Slots whose content changed since the last rebuild, by substring value.
  OverflowMap overflow;
  // Entries made stale since the last rebuild. A write never looks for an
  // entry: when a slot's content changes (an upsert with a new code, a
  // delete, the last item moved into a deleted one's slot) its entries are
  // left where they are and counted here, and the slot's new content gets a
  // new entry in the overflow. So every live slot has one current entry
  // (under its own substring) per table, and possibly stale ones that point
  // at a slot holding other content, or past the last slot. A probe skips
  // the latter, and takes the others for candidates like any: a candidate's
  // distance comes from its code, and a stale entry's item is found by its
  // current entry too, so the probes drop what would come twice (ProbeKnn,
  // ProbeRange). The table is rebuilt when these and the overflow grow.
  size_t stale = 0;

  uint32_t hole() const { return entries.max_value(); }
  // The bucket of `key`, or kHole when it has none.
  uint32_t Bucket(uint64_t key) const {
    if (starts.num_buckets() == 0) return kHole;
    return direct ? static_cast<uint32_t>(key) : keys.Find(key);
  }
  // The CSR range of `key` as [*begin, *end); empty when absent.
  void Range(uint64_t key, size_t* begin, size_t* end) const {
    const uint32_t b = Bucket(key);
    if (b == kHole) {
      *begin = *end = 0;
      return;
    }
    starts.Range(b, begin, end);
  }
  // Streams the slots below `limit` (the live ones: a stale entry may point
  // past them) under a sequence of keys to emit(slot): Push
  // each key, then Finish. Lookups are software-pipelined kLag keys apart:
  // a key's group count and occupancy word (or hash cell) are prefetched
  // when it is pushed, its entry-end bits kLag keys later, its entries
  // 2 * kLag later, and its slots are emitted 3 * kLag later, in push
  // order. So the cache misses of nearby keys overlap, without a stall at
  // the end of each batch.
  template <typename Emit>
  class SlotStream {
   public:
    SlotStream(const Table& table, uint32_t limit, Emit& emit) : t_(table), limit_(limit), emit_(emit) {}

    void Push(uint64_t key) {
      const size_t i = pushed_++;
      ring_[i & kMask].key = key;
      StartLookup(ring_[i & kMask]);
      if (i >= kLag) FindBucket(ring_[(i - kLag) & kMask]);
      if (i >= 2 * kLag) OpenBucket(ring_[(i - 2 * kLag) & kMask]);
      if (i >= 3 * kLag) EmitSlots(ring_[(i - 3 * kLag) & kMask]);
    }
    // Emits the slots of every key pushed so far; the stream is then empty.
    void Finish() {
      const size_t n = pushed_;
      const size_t first = n > 3 * kLag ? n - 3 * kLag : 0;
      // Key i has been through stage s (0-based) when i + s * kLag < n.
      for (size_t i = first; i < n; ++i) {
        if (i + kLag >= n) FindBucket(ring_[i & kMask]);
      }
      for (size_t i = first; i < n; ++i) {
        if (i + 2 * kLag >= n) OpenBucket(ring_[i & kMask]);
      }
      for (size_t i = first; i < n; ++i) EmitSlots(ring_[i & kMask]);
      pushed_ = 0;
    }

   private:
    static constexpr size_t kLag = 8;
    static constexpr size_t kMask = 4 * kLag - 1;  // a ring of 4 * kLag keys
    struct Lookup {
      uint64_t key;
      uint32_t bucket;
      uint32_t extra;  // the key's first overflow node, or kHole
      bool may_overflow;  // the overflow's filter lets the key through
      size_t begin, end;
    };
    void StartLookup(Lookup& in) const {
      if (t_.direct) {
        if (t_.starts.num_buckets() != 0) t_.starts.PrefetchBase(in.key);
      } else {
        t_.keys.Prefetch(in.key);
      }
      in.may_overflow = t_.overflow.MayHold(in.key);
      if (in.may_overflow) t_.overflow.Prefetch(in.key);
    }
    void FindBucket(Lookup& in) const {
      in.bucket = t_.Bucket(in.key);
      if (in.bucket != kHole) t_.starts.PrefetchBits(in.bucket);
      in.extra = in.may_overflow ? t_.overflow.Head(in.key) : kHole;
      t_.overflow.PrefetchNode(in.extra);
    }
    void OpenBucket(Lookup& in) const {
      in.begin = in.end = 0;
      if (in.bucket != kHole) t_.starts.Range(in.bucket, &in.begin, &in.end);
      if (in.begin != in.end) t_.entries.Prefetch(in.begin);
    }
    void EmitSlots(const Lookup& in) {
      const uint32_t removed = t_.hole();
      for (size_t p = in.begin; p != in.end; ++p) {
        const uint32_t slot = t_.entries.Get(p);
        if (slot < limit_ && slot != removed) emit_(slot);
      }
      t_.overflow.ForEachFrom(in.extra, [this](uint32_t slot) {
        if (slot < limit_) emit_(slot);
      });
    }

    const Table& t_;
    const uint32_t limit_;
    Emit& emit_;
    Lookup ring_[kMask + 1];
    size_t pushed_ = 0;
  };
  template <typename Emit>
  SlotStream<Emit> Stream(uint32_t limit, Emit& emit) const {
    return SlotStream<Emit>(*this, limit, emit);
  }
  // Adds `slot` under `key` (in the overflow until the next rebuild).
  void Insert(uint64_t key, uint32_t slot) { overflow.Insert(key, slot); }
  size_t memory_bytes() const {
    return starts.memory_bytes() + entries.memory_bytes() + keys.memory_bytes() + overflow.memory_bytes();
  }
};

struct MihIndex::Growth {
  SlotGrowth slots;
  uint64_t table_swaps = 0;  // at PrepareGrowth
  std::vector<OverflowMap::Growth> overflow;  // per table; empty for a bulk write
};

void MihIndex::PrepareGrowth(size_t appends, size_t inserts, bool bulk, Growth* g) const {
  PrepareSlotGrowth(ids_, codes_, scores_, slot_of_, code_bytes(), appends, &g->slots);
  g->table_swaps = table_swaps_;
  if (bulk) return;  // the tables are rebuilt, not inserted into
  g->overflow.resize(tables_.size());
  for (size_t j = 0; j < tables_.size(); ++j) tables_[j].overflow.PrepareInsert(inserts, &g->overflow[j]);
}

void MihIndex::AdoptGrowth(Growth* g) {
  AdoptSlotGrowth(&g->slots, &ids_, &codes_, &scores_, &slot_of_);
  if (g->table_swaps != table_swaps_ || g->overflow.size() != tables_.size()) return;
  for (size_t j = 0; j < tables_.size(); ++j) tables_[j].overflow.AdoptGrowth(&g->overflow[j]);
}

MihIndex::MihIndex(int bits, int fixed_m)
    : BinaryIndex(bits), fixed_m_(fixed_m), kernel_(SelectHammingKernel(code_bytes())) {
  if (fixed_m_ > 0) Configure(fixed_m_);
}

MihIndex::~MihIndex() {
  if (rebuild_thread_.joinable()) rebuild_thread_.join();
}

StatusOr<std::unique_ptr<MihIndex>> MihIndex::Create(int bits, int num_substrings) {
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(bits));
  const int min_m = (bits + 63) / 64;
  if (num_substrings != 0 && (num_substrings < min_m || num_substrings > bits)) {
    return Status::InvalidArgument("MIH: m = " + std::to_string(num_substrings) +
                                   " substrings is outside [" + std::to_string(min_m) + ", " +
                                   std::to_string(bits) + "] for " + std::to_string(bits) +
                                   "-bit codes (substrings are 1..64 bits)");
  }
  return std::unique_ptr<MihIndex>(new MihIndex(bits, num_substrings));
}

int MihIndex::ChooseNumSubstrings(size_t n, int bits) {
  // Tiny collections are scanned anyway; do not build hundreds of 1-bit
  // tables for them.
  const double lg = std::log2(static_cast<double>(std::max<size_t>(n, kMinProbeSize)));
  const int m = static_cast<int>(std::lround(bits / lg));
  return std::clamp(m, std::max(1, (bits + 63) / 64), bits);
}

std::string MihIndex::spec() const {
  return fixed_m_ > 0 ? "MIH" + std::to_string(fixed_m_) : "MIH";
}

size_t MihIndex::size() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return ids_.size();
}

int MihIndex::num_substrings() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return static_cast<int>(tables_.size());
}

MihIndex::RebuildCounts MihIndex::rebuild_counts() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  RebuildCounts c;
  c.swaps = table_swaps_;
  c.replayed_shared = replayed_shared_;
  c.replayed_exclusive = replayed_exclusive_;
  return c;
}

MihIndex::PathCounts MihIndex::path_counts() const {
  PathCounts c;
  c.probed = probed_.load(std::memory_order_relaxed);
  c.scanned = scanned_.load(std::memory_order_relaxed);
  return c;
}

size_t MihIndex::memory_bytes() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  size_t bytes = codes_.capacity() + ids_.capacity() * sizeof(uint64_t) + slot_of_.memory_bytes() +
                 scores_.memory_bytes();
  for (const Table& t : tables_) bytes += t.memory_bytes();
  return bytes + tables_.capacity() * sizeof(Table);
}

SlotView MihIndex::View(const IdFilter* filter) const {
  return MakeSlotView(codes_, ids_, scores_.data(), bits(), kernel_, filter);
}

inline uint64_t MihIndex::SubstringOf(const uint8_t* code, const Table& t) const {
  return ExtractBits(code, code_bytes(), t.offset, t.width);
}

void MihIndex::Configure(int m) {
  tables_ = BuildTables(m, codes_.data(), ids_.size());
}

std::vector<MihIndex::Table> MihIndex::BuildTables(int m, const uint8_t* codes, size_t n) const {
  std::vector<Table> tables(m);
  const int base = bits() / m;
  const int wider = bits() % m;  // the first `wider` substrings get one more bit
  int offset = 0;
  for (int j = 0; j < m; ++j) {
    tables[j].offset = offset;
    tables[j].width = base + (j < wider ? 1 : 0);
    offset += tables[j].width;
    RebuildTable(&tables[j], codes, n);
  }
  return tables;
}

void MihIndex::RebuildAll() {
  for (Table& t : tables_) RebuildTable(&t, codes_.data(), ids_.size());
}

void MihIndex::RebuildTable(Table* t, const uint8_t* codes, size_t n) const {
  const size_t cb = code_bytes();
  t->overflow = {};
  t->overflow.SizeFilter(n);
  t->stale = 0;
  t->keys.Clear();
  t->starts.Clear();
  // Slots are below n, so n itself (all ones at this width) marks a hole.
  t->entries.Assign(n, PackedInts::WidthFor(n));
  t->direct = t->width <= kMaxDirectBits &&
              (size_t{1} << t->width) <= std::max<size_t>(kMinDirectBuckets, kDirectSlack * n);
  // CSR offsets, built in full here and then compressed into t->starts.
  std::vector<uint32_t> starts;
  if (t->direct) {
    // Counting sort by substring value; afterwards starts[b] is the end of
    // bucket b, shifted back by one place to become its beginning.
    // Both passes touch a random counter per slot, and the second a random
    // packed entry (a read-modify-write), so each is prefetched kAhead
    // slots ahead: keys[] holds the substrings of slots [s, s + kAhead).
    const size_t nb = size_t{1} << t->width;
    starts.assign(nb + 1, 0);
    constexpr size_t kAhead = 16;
    uint64_t keys[kAhead];
    auto prime = [&] {
      for (size_t s = 0; s < std::min(n, kAhead); ++s) keys[s] = SubstringOf(codes + s * cb, *t);
    };
    // Returns slot s's key and puts slot s + kAhead's in its place.
    auto advance = [&](size_t s) {
      const uint64_t key = keys[s % kAhead];
      if (s + kAhead < n) {
        const uint64_t ahead = SubstringOf(codes + (s + kAhead) * cb, *t);
        keys[s % kAhead] = ahead;
        PrefetchLine(&starts[ahead]);
      }
      return key;
    };
    prime();
    for (size_t s = 0; s < n; ++s) ++starts[advance(s)];
    uint32_t sum = 0;
    for (size_t b = 0; b < nb; ++b) {
      const uint32_t c = starts[b];
      starts[b] = sum;
      sum += c;
    }
    prime();
    for (size_t s = 0; s < n; ++s) {
      // The counter of slot s + kAhead / 2 was prefetched kAhead / 2 slots
      // ago: its value is where that slot's entry will (nearly always) go.
      if (s + kAhead / 2 < n) t->entries.Prefetch(starts[keys[(s + kAhead / 2) % kAhead]]);
      t->entries.Set(starts[advance(s)]++, static_cast<uint32_t>(s));
    }
    for (size_t b = nb; b > 0; --b) starts[b] = starts[b - 1];
    starts[0] = 0;
    t->starts.Build(starts.data(), nb);
    return;
  }
  std::vector<std::pair<uint64_t, uint32_t>> pairs(n);
  for (size_t s = 0; s < n; ++s) {
    pairs[s] = {SubstringOf(codes + s * cb, *t), static_cast<uint32_t>(s)};
  }
  std::sort(pairs.begin(), pairs.end());
  std::vector<uint64_t> distinct;
  for (size_t i = 0; i < n; ++i) {
    if (i == 0 || pairs[i].first != pairs[i - 1].first) {
      distinct.push_back(pairs[i].first);
      starts.push_back(static_cast<uint32_t>(i));
    }
    t->entries.Set(i, pairs[i].second);
  }
  starts.push_back(static_cast<uint32_t>(n));
  t->starts.Build(starts.data(), distinct.size());
  t->keys.Build(distinct);
}

void MihIndex::InsertSlot(uint32_t slot) {
  const uint8_t* code = &codes_[static_cast<size_t>(slot) * code_bytes()];
  for (Table& t : tables_) t.Insert(SubstringOf(code, t), slot);
  if (!logging_) return;
  log_.push_back(slot);
  log_codes_.insert(log_codes_.end(), code, code + code_bytes());
}

void MihIndex::RetireEntries() {
  for (Table& t : tables_) ++t.stale;
  if (logging_) ++log_stale_;
}

void MihIndex::ReplayLog(size_t begin, size_t end, size_t stale, std::vector<Table>* built) const {
  const size_t cb = code_bytes();
  for (Table& t : *built) {
    for (size_t i = begin; i < end; ++i) t.Insert(SubstringOf(log_codes_.data() + i * cb, t), log_[i]);
    t.stale += stale;
  }
}

MihIndex::RebuildPlan MihIndex::AfterWrite(bool bulk) {
  RebuildPlan plan;
  const size_t n = ids_.size();
  // A full in-place rebuild makes the tables being built in the background
  // (and their log) stale: they are discarded at the swap.
  if (bulk) {
    ++table_generation_;
    // A background rebuild may carry an m chosen for an earlier size; it is
    // discarded now, so choose m afresh for this one.
    if (rebuilding_) n_at_choice_ = 0;
  }
  // One background rebuild at a time; the tables stay correct meanwhile
  // (overflow and stale entries only cost search time), and a later write
  // plans again.
  if (!bulk && rebuilding_) return plan;
  if (fixed_m_ == 0 &&
      (tables_.empty() || n > 4 * n_at_choice_ || n * 4 < n_at_choice_)) {
    n_at_choice_ = n;
    const int m = ChooseNumSubstrings(n, bits());
    if (m != static_cast<int>(tables_.size())) {
      if (bulk || tables_.empty()) {
        Configure(m);
      } else {
        plan.m = m;
      }
      return plan;
    }
  }
  const size_t limit = std::max(kMinRebuildChanges, n / 8);
  for (size_t j = 0; j < tables_.size(); ++j) {
    Table& t = tables_[j];
    if (bulk) {
      RebuildTable(&t, codes_.data(), n);
    } else if (t.overflow.num_entries() + t.stale > limit) {
      plan.tables.push_back(j);
    }
  }
  return plan;
}

void MihIndex::FinishWrite(const RebuildPlan& plan) {
  if (plan.empty()) return;
  // Called by the writer with write_mu_ held and mu_ free; only one plan is
  // in flight (AfterWrite makes none while rebuilding_).
  if (rebuild_thread_.joinable()) rebuild_thread_.join();
  {
    std::unique_lock<WriterPriorityMutex> lock(mu_);
    rebuilding_ = true;
  }
  rebuild_thread_ = std::thread([this, plan] { RunRebuild(plan); });
}

void MihIndex::RunRebuild(const RebuildPlan& plan) {
  // 1. Under a shared lock (searches go on, writers wait a moment): copy the
  //    slots' codes and the geometry of the planned tables, and start logging
  //    every table change writers make from now on.
  std::vector<uint8_t> codes;
  size_t n = 0;
  uint64_t generation = 0;
  std::vector<Table> built;
  try {
    std::shared_lock<WriterPriorityMutex> lock(mu_);
    codes.assign(codes_.begin(), codes_.end());
    n = ids_.size();
    generation = table_generation_;
    if (plan.m == 0) {
      built.resize(plan.tables.size());
      for (size_t i = 0; i < plan.tables.size(); ++i) {
        if (plan.tables[i] >= tables_.size()) throw std::bad_alloc();  // tables replaced
        built[i].offset = tables_[plan.tables[i]].offset;
        built[i].width = tables_[plan.tables[i]].width;
      }
    }
    logging_ = true;
  } catch (const std::bad_alloc&) {
    std::unique_lock<WriterPriorityMutex> lock(mu_);
    logging_ = false;
    if (plan.m > 0) n_at_choice_ = 0;
    rebuilding_ = false;
    return;
  }
  // 2. Without any lock: build the tables from the copy.
  bool ok = true;
  try {
    if (plan.m > 0) {
      built = BuildTables(plan.m, codes.data(), n);
    } else {
      for (Table& t : built) RebuildTable(&t, codes.data(), n);
    }
  } catch (const std::bad_alloc&) {
    ok = false;
  }
  std::vector<uint8_t>().swap(codes);
  // 3. Under shared locks (searches go on; writers cannot log meanwhile, as
  //    they log under the exclusive lock): replay what writers logged so far,
  //    a pass at a time, while the passes shorten.
  size_t replayed = 0, stale_replayed = 0;
  try {
    for (int pass = 0; ok && pass < kMaxSharedReplayPasses; ++pass) {
      std::shared_lock<WriterPriorityMutex> lock(mu_);
      const size_t logged = log_.size();
      if (generation != table_generation_ || logged - replayed <= kExclusiveReplayOps) break;
      ReplayLog(replayed, logged, log_stale_ - stale_replayed, &built);
      replayed = logged;
      stale_replayed = log_stale_;
    }
  } catch (const std::bad_alloc&) {
    ok = false;
  }
  // 4. Under a short exclusive lock: replay the rest of the log, swap.
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  const bool current = ok && generation == table_generation_;
  // A discarded new m must be chosen again by a later write.
  if (!current && plan.m > 0) n_at_choice_ = 0;
  try {
    if (current) {
      ReplayLog(replayed, log_.size(), log_stale_ - stale_replayed, &built);
      replayed_shared_ += replayed;
      replayed_exclusive_ += log_.size() - replayed;
      if (plan.m > 0) {
        tables_.swap(built);
      } else {
        for (size_t i = 0; i < plan.tables.size(); ++i) {
          std::swap(tables_[plan.tables[i]], built[i]);
        }
      }
      ++table_swaps_;
    }
  } catch (const std::bad_alloc&) {
    // The live tables were not touched; they stay correct.
    if (plan.m > 0) n_at_choice_ = 0;
  }
  logging_ = false;
  std::vector<uint32_t>().swap(log_);
  log_stale_ = 0;
  std::vector<uint8_t>().swap(log_codes_);
  rebuilding_ = false;
}

Status MihIndex::AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t* scores,
                          size_t n) {
  HAMDB_RETURN_IF_ERROR(CheckAddArgs(ids, codes, n, bits()));
  std::lock_guard<std::mutex> writer(write_mu_);
  // A large batch skips the per-item table updates: the tables are rebuilt
  // from the slots once at the end, which is cheaper than n overflow inserts.
  // Only this writer changes the slots or empties the tables, so the choice
  // made under the shared lock, and what was prepared for it, still hold
  // under the exclusive lock (AdoptGrowth checks the sizes too).
  bool bulk = false;
  Growth growth;  // outlives the lock: it ends up with the old arrays
  auto lock = LockAfterSharedPrepare(mu_, [&] {
    bulk = tables_.empty() || n > std::max(kMinRebuildChanges, ids_.size() / 8);
    if (ids_.size() + n < IdSlotMap::kNoSlot) PrepareGrowth(n, n, bulk, &growth);
  });
  if (ids_.size() + n >= IdSlotMap::kNoSlot) {
    return Status::ResourceExhausted("MihIndex holds at most 2^32 - 2 items");
  }
  const size_t cb = code_bytes();
  AdoptGrowth(&growth);
  RebuildPlan plan;
  try {
    ReserveForAppend(&ids_, n);
    ReserveForAppend(&codes_, n * cb);
    // A first load sizes the id map once instead of doubling it log(n) times.
    if (ids_.empty()) slot_of_.Reserve(n, ids_.data());
    // Each item's id lookup and table inserts miss the cache at random
    // places. They are requested ahead (the id map's cell and the overflow
    // cells kAhead items ahead, the id the cell points at kAhead / 2 ahead),
    // so that the misses of several items overlap.
    constexpr size_t kAhead = 8;
    auto prefetch = [&](size_t j) {
      slot_of_.PrefetchHome(ids[j]);
      if (bulk) return;
      for (const Table& t : tables_) t.overflow.Prefetch(SubstringOf(codes + j * cb, t));
    };
    for (size_t j = 0; j < std::min(n, kAhead); ++j) prefetch(j);
    for (size_t i = 0; i < n; ++i) {
      if (i + kAhead < n) prefetch(i + kAhead);
      if (i + kAhead / 2 < n) slot_of_.PrefetchCandidate(ids[i + kAhead / 2], ids_.data());
      const uint8_t* code = codes + i * cb;
      const uint16_t key = scores != nullptr ? scores[i] : kNoScore;
      uint32_t slot = slot_of_.Find(ids[i], ids_.data());
      if (slot != IdSlotMap::kNoSlot) {
        scores_.Set(slot, key, ids_.size());
        if (std::memcmp(&codes_[static_cast<size_t>(slot) * cb], code, cb) == 0) continue;
        if (!bulk) RetireEntries();
        std::memcpy(&codes_[static_cast<size_t>(slot) * cb], code, cb);
      } else {
        scores_.Append(key, ids_.size());
        ids_.push_back(ids[i]);
        codes_.insert(codes_.end(), code, code + cb);
        slot = static_cast<uint32_t>(ids_.size() - 1);
        slot_of_.Insert(ids[i], slot, ids_.data());
      }
      if (!bulk) InsertSlot(slot);
    }
    plan = AfterWrite(bulk);
  } catch (const std::bad_alloc&) {
    // Slots are consistent; rebuild the tables from them if memory allows.
    ++table_generation_;
    try {
      RebuildAll();
    } catch (const std::bad_alloc&) {
      tables_.clear();
      n_at_choice_ = 0;
    }
    return Status::ResourceExhausted("MihIndex::Add: out of memory");
  }
  lock.unlock();
  FinishWrite(plan);
  return Status::OK();
}

Status MihIndex::Remove(const uint64_t* ids, size_t n, size_t* removed) {
  if (n > 0 && ids == nullptr) return Status::InvalidArgument("ids is null");
  std::lock_guard<std::mutex> writer(write_mu_);
  // Each delete but that of the last slot moves the last item into the
  // hole, an overflow insert per table: room for them is made as in AddItems.
  bool bulk = false;
  Growth growth;  // outlives the lock: it ends up with the old arrays
  auto lock = LockAfterSharedPrepare(mu_, [&] {
    bulk = n > std::max(kMinRebuildChanges, ids_.size() / 8);
    PrepareGrowth(0, std::min(n, ids_.size()), bulk, &growth);
  });
  AdoptGrowth(&growth);
  const size_t cb = code_bytes();
  size_t count = 0;
  RebuildPlan plan;
  try {
    for (size_t i = 0; i < n; ++i) {
      if (slot_of_.Find(ids[i], ids_.data()) == IdSlotMap::kNoSlot) continue;
      const uint32_t slot = slot_of_.Erase(ids[i], ids_.data());
      const uint32_t last = static_cast<uint32_t>(ids_.size() - 1);
      if (!bulk) RetireEntries();
      if (slot != last) {
        if (!bulk) RetireEntries();  // the last slot's, which move here
        slot_of_.Move(ids_[last], last, slot, ids_.data());
        ids_[slot] = ids_[last];
        std::memcpy(&codes_[static_cast<size_t>(slot) * cb],
                    &codes_[static_cast<size_t>(last) * cb], cb);
        if (!bulk) InsertSlot(slot);
      }
      scores_.MoveLast(slot);
      ids_.pop_back();
      codes_.resize(codes_.size() - cb);
      ++count;
    }
    plan = AfterWrite(bulk);
  } catch (const std::bad_alloc&) {
    ++table_generation_;
    try {
      RebuildAll();
    } catch (const std::bad_alloc&) {
      tables_.clear();
      n_at_choice_ = 0;
    }
    if (removed != nullptr) *removed = count;
    return Status::ResourceExhausted("MihIndex::Remove: out of memory");
  }
  if (removed != nullptr) *removed = count;
  lock.unlock();
  FinishWrite(plan);
  return Status::OK();
}

bool MihIndex::KnnProbeBudget(size_t k, const SearchParams& params, int threads,
                              double* budget) const {
  const size_t n = ids_.size();
  if (params.mih_mode < 0 || tables_.empty() || n == 0) return false;
  if (params.mih_mode > 0) {
    *budget = std::numeric_limits<double>::infinity();
    return true;
  }
  *budget = ScanCost(threads);
  return n >= kMinProbeSize && kCandidateCost * static_cast<double>(std::min(k, n)) < *budget;
}

double MihIndex::ScanCost(int threads) const {
  return ScanCodeCost(View(nullptr)) * static_cast<double>(ids_.size()) / std::max(threads, 1);
}

bool MihIndex::ProbeKnn(const uint8_t* query, size_t k, double budget, TieBreak tie, const IdFilter* filter,
                        std::vector<Neighbor>* out) const {
  const NeighborOrder order{tie};
  const size_t n = ids_.size();
  const int m = static_cast<int>(tables_.size());
  const size_t cb = code_bytes();
  k = std::min(k, n);
  std::vector<uint64_t> qkeys(m);
  for (int j = 0; j < m; ++j) qkeys[j] = SubstringOf(query, tables_[j]);
  int max_width = 0;
  for (const Table& t : tables_) max_width = std::max(max_width, t.width);

  std::vector<Neighbor> heap;  // max-heap in `order`: the k best so far
  heap.reserve(k + 1);
  double work = 0.0;
  uint32_t batch[kFlushBatch];
  uint16_t dist[kFlushBatch];
  size_t batch_size = 0;
  int cur_s = 0;
  int cur_j = 0;

  // Whether the candidate at `slot` is reported by probe (cur_s, cur_j): an
  // item is reported where it is first found, at the smallest substring
  // distance s* and the first table j with d_j == s*, so duplicates from
  // other tables need no visited set. A stale entry (one not under its
  // item's own substring, or a second under it) can bring an item again;
  // while a table holds any, a push first checks that its item is not in
  // the heap yet (one that was, and was dropped from it, is worse than the
  // heap's k and is not pushed again). Checking the entry's own table here
  // instead would cost every candidate a substring: about a fifth more time
  // per probe at 1M clustered codes.
  const bool stale = HasStaleEntries();
  SlotSet pushed;  // for a large k
  auto first_found_here = [&](uint32_t slot) {
    const uint8_t* code = &codes_[static_cast<size_t>(slot) * cb];
    if (cur_s == 0) {
      // Only an earlier table holding the query's own substring came first.
      for (int j = 0; j < cur_j; ++j) {
        if (SubstringOf(code, tables_[j]) == qkeys[j]) return false;
      }
      return true;
    }
    for (int j = 0; j < m; ++j) {
      if (j == cur_j) continue;
      const int d = static_cast<int>(PopCount64(SubstringOf(code, tables_[j]) ^ qkeys[j]));
      if (d < cur_s || (d == cur_s && j < cur_j)) return false;
    }
    return true;
  };
  auto flush = [&] {
    kernel_.distances_indexed(query, codes_.data(), batch, batch_size, cb, dist);
    work += kCandidateCost * static_cast<double>(batch_size);
    // The distance alone rejects most candidates, and a duplicate from an
    // earlier pass is rejected by its code (in cache), before the id (a
    // cache miss) is needed. The ids of the rest are all requested before
    // any is read, so that their misses overlap.
    const uint32_t bound = heap.size() == k ? heap.front().distance : UINT32_MAX;
    size_t kept = 0;
    for (size_t i = 0; i < batch_size; ++i) {
      if (dist[i] > bound || !first_found_here(batch[i])) continue;
      PrefetchLine(&ids_[batch[i]]);
      batch[kept] = batch[i];
      dist[kept++] = dist[i];
    }
    for (size_t i = 0; i < kept; ++i) {
      if (heap.size() == k && dist[i] > heap.front().distance) continue;
      const Neighbor nb{ids_[batch[i]], dist[i], scores_.Get(batch[i])};
      if (heap.size() == k && !order(nb, heap.front())) continue;
      // Rejected items never enter the heap, so the stop rule below (k held,
      // the k-th within the distance seen) counts only allowed ones.
      if (filter != nullptr && !filter->Allows(nb.id)) continue;
      if (stale) {
        if (k <= kHeapScanMax) {
          bool again = false;
          for (const Neighbor& h : heap) again |= h.id == nb.id;
          if (again) continue;
        } else if (!pushed.Insert(batch[i])) {
          continue;
        }
      }
      heap.push_back(nb);
      std::push_heap(heap.begin(), heap.end(), order);
      if (heap.size() > k) {
        std::pop_heap(heap.begin(), heap.end(), order);
        heap.pop_back();
      }
    }
    batch_size = 0;
  };
  auto emit = [&](uint32_t slot) {
    PrefetchLine(&codes_[static_cast<size_t>(slot) * cb]);
    batch[batch_size++] = slot;
    if (batch_size == kFlushBatch) flush();
  };

  // Work left to finish, predicted after pass (s, j): the passes needed to
  // reach a target distance, each costing its keys plus the candidates per
  // key seen so far in this query. Once the heap is full, the target is the
  // smaller of its k-th distance and the k-th distance expected for uniform
  // codes; the heap's bound alone would be far too pessimistic early on,
  // while it still holds the first, distant, finds.
  //
  // The prediction is made only where the buckets probed so far hold no
  // more than a few times what uniform codes put there, because that is the
  // data it models: around a cluster the first, dense buckets would predict
  // dense buckets all the way out, where the next rounds' buckets hold a
  // tenth as many or fewer, and a probe that ends within a round would be
  // given up for a scan. There (and where the data is sparser than uniform)
  // the hard cap on work ends a probe that runs too long.
  const uint32_t expected_kth = ExpectedKthDistance(n, k, bits());
  const double scale = MissCostScale(n);
  const double uniform_per_key = static_cast<double>(n) / std::ldexp(1.0, tables_[0].width);
  double total_keys = 0.0, total_candidates = 0.0;
  auto per_key = [&] { return total_keys > 0 ? total_candidates / total_keys : uniform_per_key; };
  auto looks_uniform = [&] { return per_key() <= kUniformDensity * uniform_per_key; };
  auto remaining_work = [&](int s, int j) {
    const uint32_t seen = static_cast<uint32_t>(m * s + j);
    uint32_t target;
    if (heap.size() == k) {
      target = std::min(heap.front().distance, std::max(expected_kth, seen + 1));
    } else {
      // Until the heap is full, nothing bounds the search: look one round
      // ahead. After a full round, the k-th distance expected for uniform
      // codes is the target, so that a large k gives up on probing after
      // that cheap round, not after the rounds that would fill its heap.
      target = seen + static_cast<uint32_t>(m);
      if (total_keys >= m) target = std::max(target, expected_kth);
    }
    double keys_left = 0.0;
    int s2 = s, j2 = j;
    for (;;) {
      if (++j2 == m) {
        j2 = 0;
        if (++s2 > max_width) break;
      }
      keys_left += Binomial(tables_[j2].width, s2);
      if (s2 >= tables_[j2].width || static_cast<uint32_t>(m * s2 + j2) >= target) break;
    }
    return scale * keys_left * (kKeyCost + per_key() * kCandidateCost);
  };

  bool aborted = false;
  bool done = false;
  for (int s = 0; s <= max_width && !done && !aborted; ++s) {
    for (int j = 0; j < m && !done; ++j) {
      const Table& t = tables_[j];
      cur_s = s;
      cur_j = j;
      const double candidates_before = work;
      const double keys_here = Binomial(t.width, s);
      auto stream = t.Stream(static_cast<uint32_t>(n), emit);
      ForEachAtDistance(qkeys[j], t.width, s, [&](uint64_t key) {
        stream.Push(key);
        work += kKeyCost;
        return work * scale <= budget;
      });
      stream.Finish();
      flush();
      if (work * scale > budget) {
        aborted = true;
        break;
      }
      total_keys += keys_here;
      total_candidates += (work - candidates_before - kKeyCost * keys_here) / kCandidateCost;
      // Every unseen item has d_i >= s + 1 in tables 0..j and d_i >= s in
      // the others, so all items at distance <= m * s + j have been seen; a
      // table probed to its full width has seen everything.
      const uint32_t seen_up_to =
          s >= t.width ? static_cast<uint32_t>(bits()) : static_cast<uint32_t>(m * s + j);
      if (seen_up_to >= static_cast<uint32_t>(bits())) done = true;
      if (heap.size() == k && heap.front().distance <= seen_up_to) done = true;
      if (!done && std::isfinite(budget) && total_keys >= kMinPredictKeys && looks_uniform() &&
          remaining_work(s, j) > budget) {
        aborted = true;
        break;
      }
    }
  }
  if (aborted) return false;
  std::sort_heap(heap.begin(), heap.end(), order);
  *out = std::move(heap);
  return true;
}

bool MihIndex::ProbeRange(const uint8_t* query, uint32_t radius, double budget, TieBreak tie,
                          const IdFilter* filter,
                          std::vector<Neighbor>* out) const {
  const int m = static_cast<int>(tables_.size());
  const size_t cb = code_bytes();
  // Table j is probed to substring radius r_j: q for j <= rem, q - 1 after,
  // where radius = m * q + rem. An unseen item then has d_j >= r_j + 1 in
  // every table, so d >= sum(r_j + 1) = radius + 1.
  const int q = static_cast<int>(radius / m);
  const int rem = static_cast<int>(radius % m);
  std::vector<int> r(m);
  double probe_keys = 0.0;
  for (int j = 0; j < m; ++j) {
    r[j] = j <= rem ? q : q - 1;
    // One table probed to its full width sees every item: a scan is cheaper.
    if (r[j] >= tables_[j].width) return false;
    for (int s = 0; s <= r[j]; ++s) probe_keys += Binomial(tables_[j].width, s);
  }
  if (kKeyCost * probe_keys > budget) return false;
  std::vector<uint64_t> qkeys(m);
  for (int j = 0; j < m; ++j) qkeys[j] = SubstringOf(query, tables_[j]);

  std::vector<Neighbor> found;
  double work = kKeyCost * probe_keys;
  uint32_t batch[kFlushBatch];
  uint16_t dist[kFlushBatch];
  size_t batch_size = 0;
  int cur_j = 0;
  // Reported by the first table (in order) whose probe radius covers it.
  // What a stale entry brings again is dropped after the sort.
  const bool stale = HasStaleEntries();
  auto first_found_here = [&](uint32_t slot) {
    const uint8_t* code = &codes_[static_cast<size_t>(slot) * cb];
    for (int j = 0; j < cur_j; ++j) {
      const int d = static_cast<int>(PopCount64(SubstringOf(code, tables_[j]) ^ qkeys[j]));
      if (d <= r[j]) return false;
    }
    return true;
  };
  auto flush = [&] {
    kernel_.distances_indexed(query, codes_.data(), batch, batch_size, cb, dist);
    work += kCandidateCost * static_cast<double>(batch_size);
    for (size_t i = 0; i < batch_size; ++i) {
      if (dist[i] <= radius && first_found_here(batch[i]) &&
          (filter == nullptr || filter->Allows(ids_[batch[i]]))) {
        found.push_back(Neighbor{ids_[batch[i]], dist[i], scores_.Get(batch[i])});
      }
    }
    batch_size = 0;
  };
  auto emit = [&](uint32_t slot) {
    PrefetchLine(&codes_[static_cast<size_t>(slot) * cb]);
    batch[batch_size++] = slot;
    if (batch_size == kFlushBatch) flush();
  };
  for (int j = 0; j < m; ++j) {
    const Table& t = tables_[j];
    cur_j = j;
    auto stream = t.Stream(static_cast<uint32_t>(ids_.size()), emit);
    for (int s = 0; s <= r[j]; ++s) {
      const bool within = ForEachAtDistance(qkeys[j], t.width, s, [&](uint64_t key) {
        stream.Push(key);
        return work <= budget;
      });
      if (!within) return false;
    }
    stream.Finish();
    flush();
    if (work > budget) return false;
  }
  std::sort(found.begin(), found.end(), NeighborOrder{tie});
  if (stale) {
    found.erase(std::unique(found.begin(), found.end(),
                            [](const Neighbor& a, const Neighbor& b) { return a.id == b.id; }),
                found.end());
  }
  *out = std::move(found);
  return true;
}

bool MihIndex::HasStaleEntries() const {
  for (const Table& t : tables_) {
    if (t.stale != 0) return true;
  }
  return false;
}

StatusOr<SearchResult> MihIndex::Search(const uint8_t* query, size_t k,
                                        const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckSearchArgs(query, k, bits()));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  SearchResult result;
  const int threads = ThreadPool::Default().Resolve(params.num_threads);
  try {
    double budget = 0;
    if (KnnProbeBudget(k, params, threads, &budget) &&
        ProbeKnn(query, k, budget, params.tie_break, params.filter, &result.neighbors)) {
      probed_.fetch_add(1, std::memory_order_relaxed);
      return result;
    }
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("MihIndex::Search: out of memory");
  }
  scanned_.fetch_add(1, std::memory_order_relaxed);
  HAMDB_ASSIGN_OR_RETURN(result.neighbors, ScanKnn(View(params.filter), query, k, threads, params.tie_break));
  return result;
}

Status MihIndex::SearchBatch(const uint8_t* queries, size_t nq, size_t k, const SearchParams& params,
                             std::vector<SearchResult>* out) const {
  HAMDB_RETURN_IF_ERROR(CheckBatchArgs(queries, nq, k, bits(), out));
  ThreadPool& pool = ThreadPool::Default();
  const int threads = pool.Resolve(params.num_threads);
  if (nq < static_cast<size_t>(threads)) return BinaryIndex::SearchBatch(queries, nq, k, params, out);
  out->assign(nq, SearchResult{});
  const size_t cb = code_bytes();
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  // 1 where a query still needs the scan.
  std::vector<uint8_t> scan(nq, 1);
  // In a blocked scan a query costs about what a scan split over all the
  // threads does (the codes are read once per group of queries), so each
  // probe, though it runs on one thread, gets that budget.
  double budget = 0;
  if (KnnProbeBudget(k, params, threads, &budget)) {
    HAMDB_RETURN_IF_ERROR(pool.ParallelFor(nq, threads, [&](size_t i) {
      if (ProbeKnn(queries + i * cb, k, budget, params.tie_break, params.filter, &(*out)[i].neighbors)) {
        scan[i] = 0;
      }
    }));
  }
  std::vector<size_t> rest;
  for (size_t i = 0; i < nq; ++i) {
    if (scan[i]) rest.push_back(i);
  }
  probed_.fetch_add(nq - rest.size(), std::memory_order_relaxed);
  scanned_.fetch_add(rest.size(), std::memory_order_relaxed);
  if (rest.empty()) return Status::OK();
  std::vector<uint8_t> packed(rest.size() * cb);
  for (size_t j = 0; j < rest.size(); ++j) std::memcpy(&packed[j * cb], queries + rest[j] * cb, cb);
  std::vector<std::vector<Neighbor>> lists;
  HAMDB_RETURN_IF_ERROR(ScanKnnBatch(View(params.filter), packed.data(), rest.size(), k, threads, params.tie_break,
                                     &lists));
  for (size_t j = 0; j < rest.size(); ++j) (*out)[rest[j]].neighbors = std::move(lists[j]);
  return Status::OK();
}

StatusOr<SearchResult> MihIndex::RangeSearch(const uint8_t* query, uint32_t radius,
                                             const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckRangeArgs(query, bits()));
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  SearchResult result;
  const int threads = ThreadPool::Default().Resolve(params.num_threads);
  const size_t n = ids_.size();
  try {
    if (params.mih_mode >= 0 && !tables_.empty() && n > 0 &&
        (params.mih_mode > 0 || n >= kMinProbeSize)) {
      const double budget = params.mih_mode > 0 ? std::numeric_limits<double>::infinity()
                                                : ScanCost(threads);
      if (ProbeRange(query, radius, budget, params.tie_break, params.filter, &result.neighbors)) {
        probed_.fetch_add(1, std::memory_order_relaxed);
        return result;
      }
    }
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("MihIndex::RangeSearch: out of memory");
  }
  scanned_.fetch_add(1, std::memory_order_relaxed);
  HAMDB_ASSIGN_OR_RETURN(result.neighbors,
                         ScanRange(View(params.filter), query, radius, threads, params.tie_break));
  return result;
}

Status MihIndex::Lookup(const uint64_t* ids, size_t n, uint8_t* codes, uint16_t* scores,
                        uint8_t* found) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  const size_t nb = code_bytes();
  for (size_t i = 0; i < n; ++i) {
    const uint32_t slot = slot_of_.Find(ids[i], ids_.data());
    found[i] = slot != IdSlotMap::kNoSlot;
    if (!found[i]) continue;
    std::memcpy(codes + i * nb, codes_.data() + size_t{slot} * nb, nb);
    scores[i] = scores_.Get(slot);
  }
  return Status::OK();
}

Status MihIndex::ExportItems(std::vector<uint64_t>* ids, std::vector<uint8_t>* codes,
                             std::vector<uint16_t>* scores) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  *ids = ids_;
  codes->assign(codes_.begin(), codes_.begin() + ids_.size() * code_bytes());
  scores_.Export(ids_.size(), scores);
  return Status::OK();
}

// State layout: version, n_at_choice, ids, codes, the id map, the score
// keys, then each
// table's geometry, CSR arrays, key map and overflow lists, as they are.
Status MihIndex::SaveState(std::string* out) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  state_io::Put<uint32_t>(out, kStateVersion);
  state_io::Put<uint64_t>(out, n_at_choice_);
  state_io::PutVector(out, ids_);
  state_io::PutVector(out, codes_.data(), ids_.size() * code_bytes());
  slot_of_.AppendState(out);
  scores_.AppendState(out);
  state_io::Put<uint32_t>(out, static_cast<uint32_t>(tables_.size()));
  for (const Table& t : tables_) {
    state_io::Put<int32_t>(out, t.offset);
    state_io::Put<int32_t>(out, t.width);
    state_io::Put<uint8_t>(out, t.direct ? 1 : 0);
    t.starts.AppendState(out);
    t.entries.AppendState(out);
    t.keys.AppendState(out);
    state_io::Put<uint64_t>(out, t.overflow.num_keys());
    t.overflow.ForEachKey([out](uint64_t key, const std::vector<uint32_t>& slots) {
      state_io::Put<uint64_t>(out, key);
      state_io::PutVector(out, slots);
    });
    state_io::Put<uint64_t>(out, t.overflow.num_entries());
    state_io::Put<uint64_t>(out, t.stale);
  }
  return Status::OK();
}

Status MihIndex::LoadState(std::string_view in) {
  std::lock_guard<std::mutex> writer(write_mu_);
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  if (!ids_.empty()) return Status::FailedPrecondition("LoadState needs an empty index");
  uint32_t version = 0, m = 0;
  uint64_t n_at_choice = 0;
  std::vector<uint64_t> ids;
  CodeArray codes;
  IdSlotMap slot_of;
  HAMDB_RETURN_IF_ERROR(state_io::Get(&in, &version));
  if (version != kStateVersion && version != kExactTablesStateVersion) {
    return Status::Corruption("MIH state version " + std::to_string(version));
  }
  // Stale entries may point past the items; a version 4 entry may not.
  const bool exact = version == kExactTablesStateVersion;
  HAMDB_RETURN_IF_ERROR(state_io::Get(&in, &n_at_choice));
  HAMDB_RETURN_IF_ERROR(state_io::GetVector(&in, &ids));
  HAMDB_RETURN_IF_ERROR(state_io::GetVector(&in, &codes));
  const size_t n = ids.size();
  if (codes.size() != n * code_bytes()) return Status::Corruption("MIH state: codes do not match ids");
  HAMDB_RETURN_IF_ERROR(slot_of.LoadState(&in, n));
  SlotScores scores;
  HAMDB_RETURN_IF_ERROR(scores.LoadState(&in, n));
  HAMDB_RETURN_IF_ERROR(state_io::Get(&in, &m));
  if (m > static_cast<uint32_t>(bits()) || (fixed_m_ != 0 && m != 0 && m != static_cast<uint32_t>(fixed_m_))) {
    return Status::Corruption("MIH state has " + std::to_string(m) + " tables");
  }
  std::vector<Table> tables(m);
  for (Table& t : tables) {
    uint8_t direct = 0;
    uint64_t overflow = 0;
    HAMDB_RETURN_IF_ERROR(state_io::Get(&in, &t.offset));
    HAMDB_RETURN_IF_ERROR(state_io::Get(&in, &t.width));
    HAMDB_RETURN_IF_ERROR(state_io::Get(&in, &direct));
    t.direct = direct != 0;
    if (t.width < 1 || t.width > 64 || t.offset < 0 || t.offset + t.width > bits()) {
      return Status::Corruption("MIH state: a table's substring is out of range");
    }
    HAMDB_RETURN_IF_ERROR(t.starts.LoadState(&in));
    HAMDB_RETURN_IF_ERROR(t.entries.LoadState(&in));
    if (t.starts.num_entries() != t.entries.size()) {
      return Status::Corruption("MIH state: bucket starts do not match the entries");
    }
    if (t.direct && t.starts.num_buckets() != 0 &&
        (t.width > kMaxDirectBits || t.starts.num_buckets() != (size_t{1} << t.width))) {
      return Status::Corruption("MIH state: a direct table has the wrong number of buckets");
    }
    for (size_t i = 0; i < t.entries.size(); ++i) {
      const uint32_t s = t.entries.Get(i);
      if (exact && s != t.hole() && s >= n) return Status::Corruption("MIH state: an entry points past the items");
    }
    HAMDB_RETURN_IF_ERROR(t.keys.LoadState(&in, t.direct ? 0 : t.starts.num_buckets()));
    HAMDB_RETURN_IF_ERROR(state_io::Get(&in, &overflow));
    t.overflow.SizeFilter(n);
    for (uint64_t i = 0; i < overflow; ++i) {
      uint64_t key = 0;
      std::vector<uint32_t> slots;
      HAMDB_RETURN_IF_ERROR(state_io::Get(&in, &key));
      HAMDB_RETURN_IF_ERROR(state_io::GetVector(&in, &slots));
      // Each chain was saved head first; inserting from the back keeps its order.
      for (auto s = slots.rbegin(); s != slots.rend(); ++s) {
        if (*s == kHole || (exact && *s >= n)) {
          return Status::Corruption("MIH state: an overflow entry points past the items");
        }
        t.overflow.Insert(key, *s);
      }
    }
    uint64_t overflow_entries = 0, stale = 0;
    HAMDB_RETURN_IF_ERROR(state_io::Get(&in, &overflow_entries));
    HAMDB_RETURN_IF_ERROR(state_io::Get(&in, &stale));
    if (overflow_entries != t.overflow.num_entries()) {
      return Status::Corruption("MIH state: the overflow count does not match its entries");
    }
    t.stale = stale;
  }
  if (!in.empty()) return Status::Corruption("MIH state has trailing bytes");
  ids_ = std::move(ids);
  codes_ = std::move(codes);
  slot_of_ = std::move(slot_of);
  scores_ = std::move(scores);
  tables_ = std::move(tables);
  n_at_choice_ = n_at_choice;
  return Status::OK();
}

}  // namespace hamdb
