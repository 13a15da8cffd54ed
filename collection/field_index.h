// FieldIndex: the in-memory index of a collection's declared filter fields
// (CollectionSettings::indexed_fields), so that filtered searches evaluate
// conditions on those fields without reading the store, and list the items
// of a value when a filter is selective (docs/api.md#filtered-search).
//
// A field is "label" or "metadata.KEY" (a top-level field of an item's
// metadata object). A field's values are numbers, strings and booleans;
// an item whose field is missing, null, an array or an object has no value
// for it. Each distinct value of a field gets an ordinal (a dictionary
// entry, kept for the index's life); each item with at least one value has
// a dense slot holding, per field, its value's ordinal and its position in
// that value's posting list. A posting list holds its items' slots, codes
// and score keys side by side, so the items of a value are scanned as runs
// of contiguous codes (the selective path of filtered search), and a lookup
// by id is one hash probe.
//
// A posting list is a sequence of sealed blocks of block_items items and an
// unordered tail. A block is sealed when the tail reaches 1.25 times
// block_items (its first block_items items), and the last block goes back
// into the tail when an erase finds the tail empty: its pivot is the bitwise
// majority of its codes, and its items are sorted by their distance to the
// pivot ("rings"), so a scan reads only the rings that can hold an item
// within the current limit of the query (the triangle inequality). The tail
// keeps a ball: its first item's code and a radius. Costs: an append is
// O(1) amortised (sealing or unsealing a block is O(block_items), and
// between two of them come at least block_items / 4 appends or erases); an
// erase is O(bits) moves inside its block.
//
// Memory: about 16 bytes per item with a value, plus 14 + code bytes per
// item and field with a value, plus each distinct value once (with a pivot
// code), plus per sealed block a pivot and 2 * (bits + 2) bytes of ring
// offsets. Fields of a few distinct values (labels, folders,
// categories) are the intended use; a field unique to each item (a path)
// works but costs a dictionary entry per item, and a filter on it evaluates
// every entry.
//
// Snapshots: AppendState / LoadState save and restore the whole structure
// (positions, blocks and balls are rebuilt from the posting lists), beside the index's state in
// the collection's index snapshot.
//
// Thread safety: Set and Erase (writers) are serialised by the caller and
// take the write lock. Readers hold ReadLock() around the reads marked
// "requires ReadLock()" (a filter holds it for a whole search); size(),
// memory_bytes() and AppendState take it themselves. A thread that holds
// ReadLock() must not write.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/status.h"
#include "index/id_map.h"
#include "index/rw_lock.h"

namespace hamdb {

// A field's value, or a condition's operand.
struct FieldValue {
  enum Type { kNumber, kString, kBool } type = kNumber;
  bool is_int = false;  // a number held exactly in i (and approximately in d)
  int64_t i = 0;
  double d = 0;
  std::string s;
  bool b = false;

  static FieldValue Int(int64_t v);
  // A JSON number, string or boolean; nullopt for anything else.
  static std::optional<FieldValue> FromJson(const nlohmann::json& v);
  // The dictionary key: equal keys hold the same value of the same type
  // (an integer and a float never share one, so that grouping by key never
  // changes how a condition compares them).
  std::string Key() const;
};

// -1, 0, 1 for numbers; integers compare exactly.
int CompareNumbers(const FieldValue& a, const FieldValue& b);
// Same type and value (numbers by CompareNumbers).
bool Equal(const FieldValue& a, const FieldValue& b);

class FieldIndex {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;  // "no value" ordinal

  // InvalidArgument unless name is "label" or "metadata.KEY" with a
  // non-empty KEY.
  static Status CheckFieldName(std::string_view name);

  static constexpr size_t kDefaultBlockItems = 4096;
  static constexpr size_t kMaxBlockItems = 32768;

  // fields: distinct names that pass CheckFieldName; code_bytes: the size
  // of the codes Set is given; block_items: the items of a sealed posting
  // block, clamped to [1, kMaxBlockItems] (small values are for tests).
  FieldIndex(std::vector<std::string> fields, size_t code_bytes,
             size_t block_items = kDefaultBlockItems);
  FieldIndex(const FieldIndex&) = delete;
  FieldIndex& operator=(const FieldIndex&) = delete;

  const std::vector<std::string>& fields() const { return fields_; }
  // The position of a field in fields(), or -1 when it is not indexed.
  int FieldNumber(std::string_view name) const;

  // Writers. Set records an item (replacing what it had): its code
  // (code_bytes) and score key, its label, and its metadata JSON (empty or
  // not an object: no metadata values); an item with no value of any field
  // is not kept. Erase forgets an item. May throw std::bad_alloc; the index
  // is then left consistent but may miss the item, so the owner must drop
  // it.
  void Set(uint64_t id, const uint8_t* code, uint16_t score, const std::optional<int64_t>& label,
           std::string_view metadata_json);
  void Erase(uint64_t id);
  // Many Sets (erase false) and Erases in order, under one write lock (the
  // values are found before it is taken), so that a write group waits once
  // for the searches that hold ReadLock(). Then, still under that lock,
  // `together` (when given) runs and its status is returned: a reader that
  // holds ReadLock() sees the updates and what `together` changed (the
  // collection's index) both or neither. The pointed-to data must live
  // through the call.
  struct Update {
    uint64_t id = 0;
    bool erase = false;
    const uint8_t* code = nullptr;
    uint16_t score = 0;
    std::optional<int64_t> label;
    std::string_view metadata_json;
  };
  Status Apply(const std::vector<Update>& updates, const std::function<Status()>& together = {});

  // Readers.
  std::shared_lock<WriterPriorityMutex> ReadLock() const {
    return std::shared_lock<WriterPriorityMutex>(mu_);
  }
  size_t code_bytes() const { return code_bytes_; }
  // Items with at least one value.
  size_t size() const;
  size_t memory_bytes() const;
  // For each ordinal o of field f: (*ok)[o] = pred(value o); *count (optional)
  // = the items whose value passes. Ordinals added later are not in *ok.
  // Requires ReadLock().
  template <typename Pred>
  void Evaluate(int f, Pred&& pred, std::vector<uint8_t>* ok, uint64_t* count) const {
    const Field& fd = by_field_[static_cast<size_t>(f)];
    ok->assign(fd.values.size(), 0);
    uint64_t c = 0;
    for (size_t o = 0; o < fd.values.size(); ++o) {
      if (fd.postings[o].empty() || !pred(fd.values[o])) continue;
      (*ok)[o] = 1;
      c += fd.postings[o].size();
    }
    if (count) *count = c;
  }
  // The ordinals of the values of n ids: ords[i * fields().size() + f] for
  // field f of ids[i] (kNone when it has none). Requires ReadLock().
  void Values(const uint64_t* ids, size_t n, uint32_t* ords) const;
  // Appends the ids of the items whose value of field f has ok[ordinal] set.
  // Requires ReadLock().
  void AppendIds(int f, const std::vector<uint8_t>& ok, std::vector<uint64_t>* out) const;
  // A run of a posting list to scan (its tail, or one sealed block) and the
  // least distance any of its items can have from the query. For the tail:
  // max(0, d(query, pivot) - radius). For a block whose items lie in rings
  // [lo, hi] around its pivot: the distance from center = d(query, pivot)
  // to that interval. Runs are scanned by increasing bound, and a k-NN scan
  // stops at the first run whose bound exceeds its k-th distance.
  struct PostingBound {
    uint32_t bound;
    uint32_t ordinal;
    uint32_t radius;  // of the run's ball (a block: its outermost ring)
    size_t items;
    uint32_t block;   // kNone: the tail
    uint32_t center;  // d(query, the run's pivot)
  };
  // The non-empty runs of the posting lists of the ordinals of field f with
  // ok set, with their bounds for `query`, sorted by bound. Requires
  // ReadLock().
  std::vector<PostingBound> Bounds(int f, const std::vector<uint8_t>& ok, const uint8_t* query) const;
  // The radius of the runs Bounds would list, averaged with their items as
  // weights (0 when there are none): how tight the values' items cluster,
  // whatever the query. Requires ReadLock().
  double MeanRadius(int f, const std::vector<uint8_t>& ok) const;
  // Calls visit(slots, codes, scores, n) on the items of run b (from Bounds
  // of field f) that can lie within limit() of the query: n items' slots,
  // codes (n * code_bytes()) and score keys, in one or more calls. A block
  // is read ring by ring outwards from b.center, re-reading limit() between
  // rings, and stops at the first ring distance past it; a tail is read
  // whole. Requires ReadLock().
  template <typename Limit, typename Visit>
  void ScanPosting(int f, const PostingBound& b, Limit&& limit, Visit&& visit) const {
    const Posting& p = by_field_[static_cast<size_t>(f)].postings[b.ordinal];
    auto run = [&](size_t begin, size_t end) {
      if (begin < end) {
        visit(p.slots.data() + begin, p.codes.data() + begin * code_bytes_, p.scores.data() + begin,
              end - begin);
      }
    };
    if (b.block == kNone) {
      run(p.blocks * block_items_, p.size());
      return;
    }
    const size_t base = size_t{b.block} * block_items_;
    const uint16_t* start = p.block_starts.data() + size_t{b.block} * (rings_ + 1);
    const uint32_t c = b.center;
    for (uint32_t delta = 0; delta <= limit(); ++delta) {
      const bool below = delta <= c;
      const bool above = delta > 0 && c + delta < rings_;
      if (!below && c + delta >= rings_) break;
      if (below) run(base + start[c - delta], base + start[c - delta + 1]);
      if (above) run(base + start[c + delta], base + start[c + delta + 1]);
    }
  }
  // The id of a slot ScanPosting gave. Requires ReadLock().
  uint64_t id_of_slot(uint32_t slot) const { return ids_[slot]; }

  // Snapshots. LoadState needs an empty index with the same fields;
  // Corruption when the state does not decode or names other fields.
  void AppendState(std::string* out) const;
  Status LoadState(std::string_view* in);

 private:
  // The items of one value: slot, code and score key of each. Items
  // [b * block_items_, (b + 1) * block_items_) form sealed block b for
  // b < blocks: ring r of block b is its items [start[r], start[r + 1])
  // (offsets from the block's first item; start = block_starts + b *
  // (rings_ + 1)), the items at distance r from the block's pivot. The
  // rest is the tail, inside a ball: the code of the tail's first item
  // (pivot) and a radius at least its largest distance to any tail item.
  // An erase leaves the radius as it is (still an upper bound); an emptied
  // tail starts anew.
  struct Posting {
    std::vector<uint32_t> slots;
    std::vector<uint8_t> codes;  // code_bytes per item
    std::vector<uint16_t> scores;
    size_t blocks = 0;
    std::vector<uint8_t> block_pivots;   // code_bytes per block
    std::vector<uint16_t> block_starts;  // rings_ + 1 per block
    std::vector<uint8_t> pivot;          // the tail's; code_bytes
    uint32_t radius = 0;
    size_t size() const { return slots.size(); }
    bool empty() const { return slots.empty(); }
  };
  struct Field {
    std::vector<FieldValue> values;                   // by ordinal
    std::unordered_map<std::string, uint32_t> ordinal;  // FieldValue::Key -> ordinal
    std::vector<Posting> postings;                    // by ordinal
    std::vector<uint32_t> ord;                        // by slot
    std::vector<uint32_t> pos;                        // by slot: index in its posting list
  };
  uint32_t OrdinalFor(Field* fd, const FieldValue& v);  // adds a new value
  // An item's value of each field (nullopt: none).
  std::vector<std::optional<FieldValue>> ValuesOf(const std::optional<int64_t>& label,
                                                  std::string_view metadata_json) const;
  void SetLocked(uint64_t id, const uint8_t* code, uint16_t score,
                 const std::vector<std::optional<FieldValue>>& values);
  void EraseSlotLocked(uint32_t slot);
  void ClearLocked();

  // Appends slot's item to posting p (room reserved), and seals a block
  // when the tail reaches 1.25 block_items_. fd->pos of slot must exist.
  void AppendToPosting(Field* fd, Posting* p, uint32_t slot, const uint8_t* code, uint16_t score);
  // Removes entry i of posting p, keeping the blocks' ring order; fd->pos
  // follows every entry that moves.
  void RemoveFromPosting(Field* fd, Posting* p, size_t i);
  // Moves entry `from` of p to `to` (overwriting it); fd->pos follows when
  // fd is not null.
  void MoveEntry(Field* fd, Posting* p, size_t from, size_t to);
  // Seals the first block_items_ items of the tail as a block (the tail
  // must hold that many). Does nothing when the room for it cannot be had.
  void SealBlock(Field* fd, Posting* p);
  // The last block back into the tail, which must be empty.
  void UnsealLastBlock(Posting* p);
  // The tail's ball, measured anew.
  void MeasureTailBall(Posting* p) const;
  // The innermost and outermost rings of sealed block b of p that hold items.
  std::pair<uint32_t, uint32_t> RingSpan(const Posting& p, size_t b) const;

  std::vector<std::string> fields_;
  size_t code_bytes_;
  size_t block_items_;
  uint32_t rings_;  // distances 0..bits: code_bytes_ * 8 + 1
  int label_field_ = -1;
  std::vector<std::pair<std::string, int>> metadata_fields_;  // key, field number

  mutable WriterPriorityMutex mu_;
  std::vector<uint64_t> ids_;  // by slot
  IdSlotMap slot_of_;
  std::vector<Field> by_field_;
};

}  // namespace hamdb
