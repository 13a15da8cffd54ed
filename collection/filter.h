// ItemFilter: the predicate of a filtered search (docs/api.md#filtered-search),
// parsed from JSON and evaluated against stored items; StoreFilter adapts it
// to the indexes' IdFilter, reading an item's label and metadata from the
// store when the predicate needs them.
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
#include <memory>
#include <string>
#include <string_view>

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
  explicit ItemFilter(std::unique_ptr<Node> root);
  std::unique_ptr<Node> root_;
};

// An IdFilter that allows the items of `live` that `filter` matches. Items
// are read from the store only when the filter needs them; an item that
// cannot be read is not allowed. Both must outlive it.
class StoreFilter : public IdFilter {
 public:
  StoreFilter(const LiveCollection* live, const ItemFilter* filter) : live_(live), filter_(filter) {}
  bool Allows(uint64_t id) const override;

 private:
  const LiveCollection* live_;
  const ItemFilter* filter_;
};

}  // namespace hamdb
