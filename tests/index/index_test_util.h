// Test data and oracles shared by the index tests.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <gtest/gtest.h>

#include "index/binary_index.h"
#include "core/binary_code.h"

namespace hamdb::testing {

enum class DataKind { kUniform, kClustered, kDuplicates };

inline const char* DataKindName(DataKind kind) {
  switch (kind) {
    case DataKind::kUniform: return "uniform";
    case DataKind::kClustered: return "clustered";
    case DataKind::kDuplicates: return "duplicates";
  }
  return "?";
}

inline void ClearPadding(uint8_t* code, int bits) {
  if (bits % 8 != 0) code[bits / 8] &= static_cast<uint8_t>((1u << (bits % 8)) - 1);
}

inline std::vector<uint8_t> RandomCode(int bits, std::mt19937_64& rng) {
  std::vector<uint8_t> code(code_bytes(bits));
  for (auto& b : code) b = static_cast<uint8_t>(rng());
  ClearPadding(code.data(), bits);
  return code;
}

// n codes of `bits` bits, packed. kClustered: codes within a few bit flips
// of ~200 centres; kDuplicates: only 12 distinct codes.
inline std::vector<uint8_t> MakeCodes(DataKind kind, size_t n, int bits, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const size_t cb = code_bytes(bits);
  std::vector<uint8_t> out(n * cb);
  std::vector<std::vector<uint8_t>> centres;
  const size_t num_centres = kind == DataKind::kClustered ? 200 : 12;
  if (kind != DataKind::kUniform) {
    for (size_t c = 0; c < num_centres; ++c) centres.push_back(RandomCode(bits, rng));
  }
  for (size_t i = 0; i < n; ++i) {
    uint8_t* code = out.data() + i * cb;
    if (kind == DataKind::kUniform) {
      std::vector<uint8_t> c = RandomCode(bits, rng);
      std::copy(c.begin(), c.end(), code);
      continue;
    }
    const auto& centre = centres[rng() % centres.size()];
    std::copy(centre.begin(), centre.end(), code);
    if (kind == DataKind::kClustered) {
      const int flips = static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        const int bit = static_cast<int>(rng() % bits);
        SetBit(code, bit, !GetBit(code, bit));
      }
    }
  }
  return out;
}

// `count` queries: even ones are stored codes with 0-5 bits flipped (near
// the data, as real queries are), odd ones are uniformly random.
inline std::vector<uint8_t> MakeQueries(const std::vector<uint8_t>& codes, int bits,
                                        size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const size_t cb = code_bytes(bits);
  const size_t n = codes.size() / cb;
  std::vector<uint8_t> out;
  for (size_t i = 0; i < count; ++i) {
    if (i % 2 == 1 || n == 0) {
      std::vector<uint8_t> c = RandomCode(bits, rng);
      out.insert(out.end(), c.begin(), c.end());
      continue;
    }
    const size_t at = out.size();
    const size_t from = (rng() % n) * cb;
    out.insert(out.end(), codes.begin() + from, codes.begin() + from + cb);
    const int flips = static_cast<int>(rng() % 6);
    for (int f = 0; f < flips; ++f) {
      const int bit = static_cast<int>(rng() % bits);
      SetBit(&out[at], bit, !GetBit(&out[at], bit));
    }
  }
  return out;
}

// Distinct random ids (not sorted, so slot order differs from id order).
inline std::vector<uint64_t> MakeIds(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = (rng() & ~uint64_t{0xFFFFF}) | i;  // distinct
  return ids;
}

// Bit-by-bit distance: deliberately independent of the kernels under test.
inline uint32_t NaiveDistance(const uint8_t* a, const uint8_t* b, int bits) {
  uint32_t d = 0;
  for (int i = 0; i < bits; ++i) d += GetBit(a, i) != GetBit(b, i);
  return d;
}

// A model of an index: id -> code, searched by sorting everything.
class NaiveModel {
 public:
  explicit NaiveModel(int bits) : bits_(bits) {}
  void Add(const uint64_t* ids, const uint8_t* codes, size_t n) {
    const size_t cb = code_bytes(bits_);
    for (size_t i = 0; i < n; ++i) items_[ids[i]].assign(codes + i * cb, codes + (i + 1) * cb);
  }
  void Remove(const uint64_t* ids, size_t n) {
    for (size_t i = 0; i < n; ++i) items_.erase(ids[i]);
  }
  std::vector<Neighbor> All(const uint8_t* q) const {
    std::vector<Neighbor> all;
    for (const auto& [id, code] : items_) all.push_back({id, NaiveDistance(q, code.data(), bits_)});
    std::sort(all.begin(), all.end(), NeighborLess);
    return all;
  }
  std::vector<Neighbor> Knn(const uint8_t* q, size_t k) const {
    std::vector<Neighbor> all = All(q);
    if (all.size() > k) all.resize(k);
    return all;
  }
  std::vector<Neighbor> Range(const uint8_t* q, uint32_t r) const {
    std::vector<Neighbor> all = All(q);
    all.erase(std::remove_if(all.begin(), all.end(),
                             [r](const Neighbor& nb) { return nb.distance > r; }),
              all.end());
    return all;
  }
  size_t size() const { return items_.size(); }
  const std::map<uint64_t, std::vector<uint8_t>>& items() const { return items_; }

 private:
  int bits_;
  std::map<uint64_t, std::vector<uint8_t>> items_;
};

// For a search that races a writer adding items to a base set: the faults
// in the k-NN answer `got` for q. A fault is a neighbour that is not a known
// item (code_of), has the wrong distance, breaks the strict (distance, id)
// order or repeats an id; and, when `complete` (the answer claims to be
// exact), a base item ordered before the last neighbour that is missing.
// base_all is the base set's whole answer for q, sorted.
inline int CountRaceFaults(const std::vector<Neighbor>& got, const uint8_t* q, int bits,
                           const std::unordered_map<uint64_t, const uint8_t*>& code_of,
                           const std::vector<Neighbor>& base_all, bool complete) {
  int faults = 0;
  std::set<uint64_t> seen;
  for (size_t i = 0; i < got.size(); ++i) {
    auto it = code_of.find(got[i].id);
    if (it == code_of.end() || NaiveDistance(q, it->second, bits) != got[i].distance ||
        (i > 0 && !NeighborLess(got[i - 1], got[i])) || !seen.insert(got[i].id).second) {
      ++faults;
    }
  }
  if (complete && !got.empty()) {
    for (const Neighbor& nb : base_all) {
      if (!NeighborLess(nb, got.back())) break;
      if (!seen.count(nb.id)) ++faults;
    }
  }
  return faults;
}

inline std::string Describe(const std::vector<Neighbor>& v, size_t max_items = 12) {
  std::string s = "[" + std::to_string(v.size()) + "]";
  for (size_t i = 0; i < v.size() && i < max_items; ++i) {
    s += " " + std::to_string(v[i].distance) + ":" + std::to_string(v[i].id);
  }
  return s;
}

inline std::vector<uint32_t> Distances(const std::vector<Neighbor>& v) {
  std::vector<uint32_t> d;
  for (const auto& nb : v) d.push_back(nb.distance);
  return d;
}

// The writer of a concurrency test: 40 rounds, each adding the next
// add_min + rng() % add_spread items of ids/codes from index nbase on (until
// they run out), removing `removes` random items among those added, then
// waiting (bounded) until the readers have run another search, so that reads
// interleave with writes even on a loaded machine. *present: the added items
// still in the index (positions in ids). on_write(first, n, removed), if
// set, sees each round (the added items are ids[first, first + n)), so that
// a caller can keep a model. Failures are gtest failures; the caller stops
// its readers either way.
inline void WriteRoundsBesideReaders(
    BinaryIndex* index, const std::vector<uint64_t>& ids, const std::vector<uint8_t>& codes, size_t nbase,
    size_t add_min, size_t add_spread, size_t removes, const std::atomic<long>& searches,
    std::vector<size_t>* present,
    const std::function<void(size_t, size_t, const std::vector<uint64_t>&)>& on_write = {}) {
  const size_t cb = index->code_bytes();
  std::mt19937_64 rng(5);
  size_t next = nbase;
  for (int round = 0; round < 40; ++round) {
    const size_t add = std::min<size_t>(add_min + rng() % add_spread, ids.size() - next);
    if (add > 0) {
      ASSERT_TRUE(index->Add(&ids[next], &codes[next * cb], add).ok());
      for (size_t i = 0; i < add; ++i) present->push_back(next + i);
    }
    std::vector<uint64_t> gone;
    for (size_t i = 0; i < removes && !present->empty(); ++i) {
      const size_t at = rng() % present->size();
      gone.push_back(ids[(*present)[at]]);
      (*present)[at] = present->back();
      present->pop_back();
    }
    ASSERT_TRUE(index->Remove(gone.data(), gone.size(), nullptr).ok());
    if (on_write) on_write(next, add, gone);
    next += add;
    const long seen = searches.load();
    for (int spin = 0; spin < 1000 && searches.load() == seen; ++spin) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
}

}  // namespace hamdb::testing
