// Compact arrays for the in-memory indexes.
//
// PackedInts: n unsigned integers of one bit width (1..32), packed LSB-first
// into 64-bit words. An index that holds slot numbers below n stores each in
// bit_width(n) bits instead of 32.
//
// BucketStarts: the bucket boundaries of a CSR array (bucket b holds entries
// [start(b), start(b + 1))) in about 1 bit per bucket and 1 per entry: an
// occupancy bit per bucket, an end bit per entry (0 where a bucket's run of
// entries ends), and a uint32 entry count before each group of buckets (8
// to 64 of them: as many as hold about a word of entries on average).
// Finding an empty bucket reads its occupancy bit; a non-empty one adds a
// popcount over its group's occupancy bits and a walk over a word or two
// of entry ends. Against 32 bits per bucket for an array of uint32
// offsets, this is the difference that matters when a table has more
// buckets than items.
//
// Both are plain values: not thread-safe for writers, any number of readers.
// Builders throw std::bad_alloc when out of memory, leaving the object empty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/hamming.h"
#include "core/prefetch.h"
#include "core/status.h"

namespace hamdb {

class PackedInts {
 public:
  // The width that holds every value in [0, max_value] (at least 1).
  static int WidthFor(uint64_t max_value);

  // n zeros of `width` bits, 1 <= width <= 32.
  void Assign(size_t n, int width);
  void Clear();

  size_t size() const { return n_; }
  int width() const { return width_; }
  // The largest value an element holds: 2^width - 1.
  uint32_t max_value() const { return mask_; }

  uint32_t Get(size_t i) const {
    const size_t bit = i * static_cast<size_t>(width_);
    const size_t w = bit >> 6;
    const unsigned off = bit & 63;
    uint64_t v = words_[w] >> off;
    if (off + width_ > 64) v |= words_[w + 1] << (64 - off);
    return static_cast<uint32_t>(v) & mask_;
  }
  // v <= max_value().
  void Set(size_t i, uint32_t v) {
    const size_t bit = i * static_cast<size_t>(width_);
    const size_t w = bit >> 6;
    const unsigned off = bit & 63;
    const uint64_t m = mask_;
    words_[w] = (words_[w] & ~(m << off)) | (uint64_t{v} << off);
    if (off + width_ > 64) {
      const unsigned hi = 64 - off;
      words_[w + 1] = (words_[w + 1] & ~(m >> hi)) | (uint64_t{v} >> hi);
    }
  }
  void Prefetch(size_t i) const {
    PrefetchLine(&words_[(i * static_cast<size_t>(width_)) >> 6]);
  }

  size_t memory_bytes() const { return words_.capacity() * sizeof(uint64_t); }

  // Snapshots: the words as they are. LoadState checks the shape (and that
  // no bit beyond the last element is set), not the values.
  void AppendState(std::string* out) const;
  Status LoadState(std::string_view* in);

 private:
  std::vector<uint64_t> words_;
  size_t n_ = 0;
  int width_ = 1;
  uint32_t mask_ = 1;
};

class BucketStarts {
 public:
  // From CSR offsets starts[0, nb]: starts[0] == 0, non-decreasing, and
  // starts[nb] < 2^32.
  void Build(const uint32_t* starts, size_t nb);
  void Clear();

  size_t num_buckets() const { return nb_; }
  size_t num_entries() const { return entries_; }

  // Bucket b (< num_buckets()) holds entries [*begin, *end); for an empty
  // bucket *begin == *end (at no particular place).
  void Range(size_t b, size_t* begin, size_t* end) const {
    const uint64_t word = occupied_[b >> 6];
    const unsigned bit = b & 63;
    if ((word >> bit & 1) == 0) {
      *begin = *end = 0;
      return;
    }
    // The non-empty buckets before b in its group: each is one run of
    // entries in ends_, closed by a 0.
    const unsigned first = bit & ~static_cast<unsigned>((1u << group_shift_) - 1);
    const uint64_t before = (word >> first) & ((uint64_t{1} << (bit - first)) - 1);
    const unsigned r = PopCount64(before);
    size_t pos = base_[b >> group_shift_];
    if (r > 0) pos = SelectZeroFrom(pos, r - 1) + 1;
    *begin = pos;
    *end = pos + RunOfOnes(pos) + 1;
  }

  // Two prefetch stages for a batch of lookups: the group's base and
  // occupancy word, then (having them) the entry-end word where a
  // non-empty bucket's group starts.
  void PrefetchBase(size_t b) const {
    PrefetchLine(&base_[b >> group_shift_]);
    PrefetchLine(&occupied_[b >> 6]);
  }
  void PrefetchBits(size_t b) const {
    if ((occupied_[b >> 6] >> (b & 63) & 1) == 0) return;
    PrefetchLine(&ends_[base_[b >> group_shift_] >> 6]);
  }

  size_t memory_bytes() const {
    return (occupied_.capacity() + ends_.capacity()) * sizeof(uint64_t) +
           base_.capacity() * sizeof(uint32_t);
  }

  // Snapshots: the occupancy and entry-end bits and their counts; the group
  // bases are recomputed on load, after checking that the entry ends close
  // exactly the occupied buckets.
  void AppendState(std::string* out) const;
  Status LoadState(std::string_view* in);

 private:
  // Buckets per group: 64, or fewer (down to 8) when buckets hold enough
  // entries that a group's entry ends would span more than a word.
  static int ChooseGroupShift(size_t nb, size_t entries);

  // Position of the r-th 0 (0-based) in ends_ at or after bit `pos`; it
  // exists.
  size_t SelectZeroFrom(size_t pos, unsigned r) const;
  // Number of consecutive 1s in ends_ from bit `pos`, which is inside a
  // bucket's run (so the run's closing 0 ends it).
  size_t RunOfOnes(size_t pos) const {
    size_t w = pos >> 6;
    uint64_t x = ~ends_[w] >> (pos & 63);
    if (x != 0) return static_cast<size_t>(__builtin_ctzll(x));
    size_t len = 64 - (pos & 63);
    while ((x = ~ends_[++w]) == 0) len += 64;
    return len + static_cast<size_t>(__builtin_ctzll(x));
  }
  void BuildBases();

  // Bit b: bucket b holds entries. nb_ bits, then 0s to the word's end.
  std::vector<uint64_t> occupied_;
  // Bit e: 0 when entry e is the last of its bucket, else 1. entries_ bits,
  // then 1s to the word's end, then a word of 1s.
  std::vector<uint64_t> ends_;
  std::vector<uint32_t> base_;  // base_[g] = entries in the buckets before group g
  int group_shift_ = 6;         // log2(buckets per group), 3..6, from nb_ and entries_
  size_t nb_ = 0;
  size_t entries_ = 0;
};

}  // namespace hamdb
