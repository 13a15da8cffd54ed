// Helpers shared by the collection-layer tests (and the HTTP tests that
// drive a collection into its degraded state).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <map>
#include <random>
#include <memory>
#include <string>
#include <vector>

#include "core/binary_code.h"
#include "core/hamming.h"
#include "db/code_store.h"
#include "index/binary_index.h"
#include "index/index_factory.h"

namespace hamdb::testing_util {

// Brute force over a model map: the k smallest (distance, id) pairs.
inline std::vector<Neighbor> Oracle(const std::map<uint64_t, std::vector<uint8_t>>& model,
                                    const std::vector<uint8_t>& q, size_t k) {
  std::vector<Neighbor> all;
  for (const auto& [id, code] : model) {
    all.push_back({id, HammingDistance(q.data(), code.data(), code.size())});
  }
  std::sort(all.begin(), all.end(), NeighborLess);
  if (all.size() > k) all.resize(k);
  return all;
}

// A fixed code for each id, so that concurrent tests can check any hit
// without sharing a model with the writers.
inline std::vector<uint8_t> CodeOfId(uint64_t id, int bits) {
  std::mt19937_64 rng(id * 0x9E3779B97F4A7C15ull + 1);
  std::vector<uint8_t> c(code_bytes(bits), 0);
  for (int i = 0; i < bits; ++i) SetBit(c.data(), i, rng() & 1);
  return c;
}

// Every (id, code) of a stored collection, read by ScanCodes.
inline std::map<uint64_t, std::vector<uint8_t>> StoreContents(const CodeStore& store,
                                                              const std::string& collection) {
  std::map<uint64_t, std::vector<uint8_t>> model;
  const size_t nb = code_bytes(store.GetCollection(collection)->bits);
  Status s = store.ScanCodes(collection, [&](const uint64_t* ids, const uint8_t* codes, const float*, size_t n) {
    for (size_t i = 0; i < n; ++i) model[ids[i]].assign(codes + i * nb, codes + (i + 1) * nb);
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return model;
}

// Switches of a FaultyIndex, shared with the test that flips them.
struct FaultSwitch {
  std::atomic<bool> fail{false};        // Add / Remove fail
  std::atomic<bool> fail_build{false};  // the first Add of a fresh index (the build) fails
  std::atomic<int> builds{0};           // builds attempted
  std::atomic<bool> hold{false};        // Add (after the build) waits while set
  std::atomic<int> held{0};             // Adds waiting on `hold` now
};

// A Flat index that fails, or holds its writers, on demand.
class FaultyIndex : public BinaryIndex {
 public:
  FaultyIndex(int bits, FaultSwitch* sw)
      : BinaryIndex(bits), inner_(std::move(MakeIndex("Flat", bits)).value()), sw_(sw) {}
  std::string spec() const override { return "Flat"; }
  size_t size() const override { return inner_->size(); }
  size_t memory_bytes() const override { return inner_->memory_bytes(); }
  bool keeps_scores() const override { return true; }
  Status AddItems(const uint64_t* ids, const uint8_t* codes, const uint16_t* scores,
                  size_t n) override {
    if (!built_) {
      built_ = true;
      sw_->builds++;
      if (sw_->fail_build) return Status::ResourceExhausted("injected build failure");
    } else {
      if (sw_->hold) {
        sw_->held++;
        while (sw_->hold) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        sw_->held--;
      }
      if (sw_->fail) return Status::ResourceExhausted("injected index failure");
    }
    return inner_->Add(ids, codes, n, scores);
  }
  Status Remove(const uint64_t* ids, size_t n, size_t* removed) override {
    if (sw_->fail) return Status::Internal("injected index failure");
    return inner_->Remove(ids, n, removed);
  }
  StatusOr<SearchResult> Search(const uint8_t* q, size_t k, const SearchParams& p) const override {
    return inner_->Search(q, k, p);
  }
  StatusOr<SearchResult> RangeSearch(const uint8_t* q, uint32_t r,
                                     const SearchParams& p) const override {
    return inner_->RangeSearch(q, r, p);
  }

 private:
  std::unique_ptr<BinaryIndex> inner_;
  FaultSwitch* sw_;
  bool built_ = false;
};

// Collection settings JSON with an encoder path and a codebook of `classes`.
inline std::string SettingsWithCodebook(const std::vector<std::vector<uint8_t>>& classes, int bits) {
  std::string s =
      "{\"encoder\": \"/nowhere/model.pt\", \"codebook\": {\"bits\": " + std::to_string(bits) +
      ", \"codes\": [";
  for (size_t i = 0; i < classes.size(); ++i) {
    s += (i ? ", \"" : "\"") + FormatHex(classes[i].data(), bits) + "\"";
  }
  s += "], \"class_names\": []}}";
  return s;
}

// An IndexMaker (collection/live_collection.h) that builds FaultyIndexes.
inline auto FaultyIndexMaker(FaultSwitch* sw) {
  return [sw](std::string_view, int bits,
              const IndexOptions&) -> StatusOr<std::unique_ptr<BinaryIndex>> {
    return std::unique_ptr<BinaryIndex>(new FaultyIndex(bits, sw));
  };
}

}  // namespace hamdb::testing_util
