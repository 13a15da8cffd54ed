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
// that value's posting list (the slots holding the value). So a lookup by id
// is one hash probe, and the items of a value are its posting list.
//
// Memory: about 16 + 8 * fields bytes per item with a value, plus each
// distinct value once. Fields of a few distinct values (labels, folders,
// categories) are the intended use; a field unique to each item (a path)
// works but costs a dictionary entry per item, and a filter on it evaluates
// every entry.
//
// Snapshots: AppendState / LoadState save and restore the whole structure
// (posting lists are rebuilt from the slots), beside the index's state in
// the collection's index snapshot.
//
// Thread safety: Set and Erase (writers) are serialised by the caller; every
// method takes the index's reader/writer lock for its own duration, so
// readers run concurrently with each other and with a writer's other work.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
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

  // fields: distinct names that pass CheckFieldName.
  explicit FieldIndex(std::vector<std::string> fields);
  FieldIndex(const FieldIndex&) = delete;
  FieldIndex& operator=(const FieldIndex&) = delete;

  const std::vector<std::string>& fields() const { return fields_; }
  // The position of a field in fields(), or -1 when it is not indexed.
  int FieldNumber(std::string_view name) const;

  // Writers. Set records an item's values (replacing any it had): its label,
  // and its metadata JSON (empty or not an object: no metadata values).
  // Erase forgets an item. May throw std::bad_alloc; the index is then left
  // consistent but may miss the item's new values, so the owner must drop
  // it.
  void Set(uint64_t id, const std::optional<int64_t>& label, std::string_view metadata_json);
  void Erase(uint64_t id);

  // Readers.
  // Items with at least one value.
  size_t size() const;
  size_t memory_bytes() const;
  // For each ordinal o of field f: (*ok)[o] = pred(value o); *count (optional)
  // = the items whose value passes. Ordinals added later are not in *ok.
  template <typename Pred>
  void Evaluate(int f, Pred&& pred, std::vector<uint8_t>* ok, uint64_t* count) const {
    std::shared_lock<WriterPriorityMutex> lock(mu_);
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
  // field f of ids[i] (kNone when it has none).
  void Values(const uint64_t* ids, size_t n, uint32_t* ords) const;
  // Appends the ids of the items whose value of field f has ok[ordinal] set.
  void AppendIds(int f, const std::vector<uint8_t>& ok, std::vector<uint64_t>* out) const;

  // Snapshots. LoadState needs an empty index with the same fields;
  // Corruption when the state does not decode or names other fields.
  void AppendState(std::string* out) const;
  Status LoadState(std::string_view* in);

 private:
  struct Field {
    std::vector<FieldValue> values;                   // by ordinal
    std::unordered_map<std::string, uint32_t> ordinal;  // FieldValue::Key -> ordinal
    std::vector<std::vector<uint32_t>> postings;      // by ordinal: slots
    std::vector<uint32_t> ord;                        // by slot
    std::vector<uint32_t> pos;                        // by slot: index in its posting list
  };
  uint32_t OrdinalFor(Field* fd, const FieldValue& v);  // adds a new value
  void EraseSlotLocked(uint32_t slot);
  void ClearLocked();

  std::vector<std::string> fields_;
  int label_field_ = -1;
  std::vector<std::pair<std::string, int>> metadata_fields_;  // key, field number

  mutable WriterPriorityMutex mu_;
  std::vector<uint64_t> ids_;  // by slot
  IdSlotMap slot_of_;
  std::vector<Field> by_field_;
};

}  // namespace hamdb
