// ItemFilter: the predicate of a filtered search (docs/api.md#filtered-search),
// parsed from JSON and evaluated against stored items; StoreFilter adapts it
// to the indexes' IdFilter, answering conditions on indexed fields from the
// collection's FieldIndex and reading an item's label and metadata from the
// store for the others.
//
// Grammar: a filter is a JSON object of one of these shapes.
//   {"and": [F, ...]}  {"or": [F, ...]}  {"not": F}     combinators ("and" of
//                                                        nothing matches all,
//                                                        "or" of nothing none)
//   {"ids": [id, ...]}                                  the item's id is listed
//   {"field": NAME, OP: VALUE, ...}                     every OP holds
// NAME is "label" or "metadata.KEY" (a top-level field of the item's
// metadata object). OPs:
//   "eq"  a number, string or boolean      "in"  an array of those
//   "gt", "gte", "lt", "lte"  a number     "prefix"  a string (string fields)
// Numbers compare by value (3 equals 3.0); a value of another type than the
// field's never matches. An item without the field (no label, no such
// metadata key) fails every condition on it, so {"not": ...} matches it.
//
// Errors (Parse): SyntaxError (400 bad_request over HTTP) when the text is
// not JSON or not this grammar: a filter that is not an object, an object of
// no known shape or of two, "and"/"or" not an array, a condition without an
// operator, "ids" not an array. InvalidFilter (422 invalid_filter) for an
// unknown operator, a value of the wrong type, or a field that cannot be
// filtered on. The message names the bad part by its path, e.g.
// filter.and[1].gt.
//
// Thread safety: const methods may run concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "collection/field_index.h"
#include "db/code_store.h"
#include "index/binary_index.h"
#include "core/status.h"

namespace hamdb {

class LiveCollection;

class ItemFilter {
 public:
  enum class ErrorKind { kNone, kSyntax, kInvalid };
  // Parses the JSON text of a filter; *kind (optional) says which error.
  static StatusOr<ItemFilter> Parse(std::string_view json_text, ErrorKind* kind = nullptr);

  ItemFilter(ItemFilter&&) noexcept;
  ItemFilter& operator=(ItemFilter&&) noexcept;
  ~ItemFilter();

  // Whether evaluating needs the item's label or metadata (false: ids only).
  bool needs_item() const;
  // Whether the item matches; item is null for an item that is not stored
  // (then only id conditions can hold).
  bool Matches(uint64_t id, const Item* item) const;

  struct Node;

 private:
  friend class StoreFilter;
  explicit ItemFilter(std::unique_ptr<Node> root);
  std::unique_ptr<Node> root_;
};

// Reads a stored item for a filter (LiveCollection::Get).
using ItemReader = std::function<StatusOr<Item>(uint64_t id)>;

// An IdFilter that allows the items `filter` matches. Conditions on fields
// of the collection's field index (collection/field_index.h) are answered
// from it; the others read the item (through `read`) when they are reached,
// and an item that cannot be read is not allowed. The filter must outlive
// it. Made once per search: the field index's values are evaluated at
// construction, so a value first written after it never matches.
//
// Selectivity: when the field index, or an "ids" list, bounds the items the
// filter can allow, Candidates lists them, so that a search may look at
// those items alone (LiveCollection's selective path): an "and" lists its
// most selective child, an "or" all its children; a "not" or a condition on
// an unindexed field bounds nothing.
class StoreFilter : public IdFilter {
 public:
  // fields: the collection's field index, or null for none.
  StoreFilter(const ItemFilter* filter, std::shared_ptr<const FieldIndex> fields, ItemReader read);
  // `filter` over the items of `live` (which must outlive it).
  StoreFilter(const LiveCollection* live, const ItemFilter* filter);
  StoreFilter(StoreFilter&&) noexcept;
  ~StoreFilter() override;

  bool Allows(uint64_t id) const override;
  bool Candidates(size_t limit, std::vector<uint64_t>* ids) const override;
  // An upper bound of the items it allows; UINT64_MAX when it has none.
  uint64_t MatchBound() const;

  struct Plan;

 private:
  const ItemFilter* filter_;
  std::shared_ptr<const FieldIndex> fields_;
  ItemReader read_;
  std::unique_ptr<Plan> plan_;
};

// The selective path of a filtered search (docs/api.md#filtered-search):
// when p.filter can list its candidates (IdFilter::Candidates) and they are
// at most max(min_items, fraction * index.size()), the exact scan of those
// items alone (ScanListed, index/scan.h); nullopt when the index's own
// filtered search should run instead (no filter, too many candidates,
// fraction 0, or an index that cannot look items up).
std::optional<StatusOr<SearchResult>> SearchListedIfSelective(const BinaryIndex& index,
                                                              const uint8_t* query, size_t k,
                                                              uint32_t radius, bool is_range,
                                                              const SearchParams& p,
                                                              double fraction, size_t min_items);

}  // namespace hamdb
