// ListSource: what an inverted-file index (ClassBucketIndex, FaissIvfIndex)
// exposes so that another scanner (the GPU, index/gpu/gpu_list_index.h) can
// scan its lists and return the same answers.
//
// A scanner exports the lists once per version of the index (the caller
// serialises writers against export + plan + scan), then asks for a plan per
// query: which lists to scan, and what it needs to decide exactness. The
// answer is the k smallest (distance, id) pairs over the planned lists;
// SearchResult::exact = covers_all || (k pairs found && k-th distance <
// min_unvisited_bound), the rule the index itself applies.
//
// Internal to index/: not part of the BinaryIndex interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "index/binary_index.h"
#include "core/status.h"

namespace hamdb {

struct ListPlan {
  std::vector<int> lists;   // list numbers to scan, in visiting order
  bool covers_all = false;  // the lists hold every item
  // No unplanned list can hold an item closer than this (0 = no bound).
  uint32_t min_unvisited_bound = 0;
};

class ListSource {
 public:
  virtual ~ListSource() = default;
  // All lists concatenated: list l holds items [begin[l], begin[l + 1]) of
  // codes (code_bytes each) and ids. begin has num_lists + 1 entries.
  // FailedPrecondition when the index has no lists yet (untrained IVF).
  virtual Status ExportLists(std::vector<uint8_t>* codes, std::vector<uint64_t>* ids,
                             std::vector<uint64_t>* begin) const = 0;
  // The plan for one query. NotSupported for search modes that depend on
  // distances found along the way (ClassBucketIndex nprobe = -1), and
  // FailedPrecondition when there are no lists; the caller then searches
  // the index itself.
  virtual Status PlanLists(const uint8_t* query, size_t k, const SearchParams& params,
                           ListPlan* plan) const = 0;
};

}  // namespace hamdb
