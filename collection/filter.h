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
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

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
  // The same from an already parsed JSON value (a request body's "filter").
  static StatusOr<ItemFilter> FromJson(const nlohmann::json& j, ErrorKind* kind = nullptr);

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
// it. Made once per search: it holds the field index's read lock for its
// life (writes to the collection wait for it, so the thread holding one
// must not write), and evaluates the field values at construction.
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
  void AllowsMany(const uint64_t* ids, size_t n, uint8_t* allowed) const override;
  bool Candidates(size_t limit, std::vector<uint64_t>* ids) const override;
  // An upper bound of the items it allows; UINT64_MAX when it has none.
  uint64_t MatchBound() const;
  // The exact filtered k-NN (or range) search by a scan of the field
  // index's posting lists of the filter's most selective condition (the
  // whole filter, or the most selective part of an "and"), asking the rest
  // of the filter only of items close enough; nullopt when no such
  // condition exists. For the selective path: the caller checks MatchBound.
  // only_if_tight: run only when the lists' balls are tight (their mean
  // radius, weighted by items, at most a quarter of the bits), so that the
  // bounds can prune; nullopt otherwise.
  std::optional<StatusOr<SearchResult>> SearchPostings(const BinaryIndex& index, const uint8_t* query,
                                                       size_t k, uint32_t radius, bool is_range,
                                                       const SearchParams& p,
                                                       bool only_if_tight = false) const;

  struct Plan;

 private:
  const ItemFilter* filter_;
  std::shared_ptr<const FieldIndex> fields_;
  std::shared_lock<WriterPriorityMutex> read_lock_;  // on *fields_, for the filter's life
  ItemReader read_;
  bool needs_item_ = false;
  std::unique_ptr<Plan> plan_;
};

// How a filtered search is planned (docs/api.md#filtered-search), as shares
// of the index's items.
struct FilterPlanning {
  // false: the index always filters as it goes (for tests and benchmarks).
  bool plan = true;
  // A filter whose condition on an indexed field matches at most this share
  // has that field's posting lists scanned (StoreFilter::SearchPostings): a
  // streaming scan of contiguous codes, a few ns per item, exact.
  double posting_fraction = 0.02;
  // A filter with more matches has its posting lists scanned when their
  // balls are tight (SearchPostings' only_if_tight). Otherwise it first
  // tries an unfiltered search for overfetch * k * items / matches items
  // (at most max_overfetch): when k of them pass the filter, they are the
  // exact answer. When fewer pass, the matches are not where the query is,
  // the index would test many candidates in vain, and the posting lists are
  // scanned instead. 0: the index filters as it goes instead.
  double overfetch = 2;
  size_t max_overfetch = 4096;
  // Other filters that list their candidates (IdFilter::Candidates), at most
  // max(lookup_min_items, lookup_fraction * items), have each looked up in
  // the index (ScanListed): a hash probe and a random read per item.
  double lookup_fraction = 0.01;
  size_t lookup_min_items = 4096;
};

// How SearchFiltered answered.
enum class FilterPath { kNone, kIndex, kPostings, kOverfetch, kLookup };
const char* FilterPathName(FilterPath path);

// A k-NN (is_range false) or range search of `index` under p.filter (or
// none), planned as `planning` says: the posting lists, an over-fetch, a
// lookup of listed items, or the index filtering as it goes. The answer is
// the one the index gives with the filter, exact where the index is; the
// planned paths are exact. *path (optional) says which ran.
StatusOr<SearchResult> SearchFiltered(const BinaryIndex& index, const uint8_t* query, size_t k,
                                      uint32_t radius, bool is_range, const SearchParams& p,
                                      const FilterPlanning& planning, FilterPath* path = nullptr);

}  // namespace hamdb
