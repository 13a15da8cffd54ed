#include "index/packed_ints.h"

#include <cassert>

#include "index/state_io.h"

namespace hamdb {
namespace {

size_t WordsFor(size_t bits) { return (bits + 63) / 64; }

constexpr uint64_t kOnesStep8 = 0x0101010101010101ULL;
constexpr uint64_t kMsbs8 = 0x8080808080808080ULL;

// kSelectInByte[r][v]: position of the r-th set bit of byte v (8 if none).
struct SelectInByteTable {
  uint8_t at[8][256];
  SelectInByteTable() {
    for (unsigned v = 0; v < 256; ++v) {
      unsigned r = 0;
      for (unsigned i = 0; i < 8; ++i) at[i][v] = 8;
      for (unsigned bit = 0; bit < 8; ++bit) {
        if (v >> bit & 1) at[r++][v] = static_cast<uint8_t>(bit);
      }
    }
  }
  const uint8_t* operator[](unsigned r) const { return at[r]; }
};
const SelectInByteTable kSelectInByte;

// Set bits of x. Broadword rather than __builtin_popcountll: this file is
// built for the baseline x86-64, where the builtin is a library call.
inline unsigned PopCount(uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ULL);
  x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
  return static_cast<unsigned>((x * kOnesStep8) >> 56);
}

// Position of the r-th (0-based) set bit of x; x has more than r set bits.
// Broadword: per-byte running popcounts find the byte without a branch, then
// the byte's low set bits are cleared.
inline unsigned SelectInWord(uint64_t x, unsigned r) {
  uint64_t b = x - ((x >> 1) & 0x5555555555555555ULL);
  b = (b & 0x3333333333333333ULL) + ((b >> 2) & 0x3333333333333333ULL);
  b = (b + (b >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
  const uint64_t sums = b * kOnesStep8;  // byte i: set bits in bytes 0..i (<= 64)
  // Bytes whose running sum is <= r: the byte holding the bit comes after them.
  const uint64_t le = ((r * kOnesStep8) | kMsbs8) - sums;
  const unsigned byte = static_cast<unsigned>((((le & kMsbs8) >> 7) * kOnesStep8) >> 56);
  const unsigned before = byte == 0 ? 0 : static_cast<unsigned>((sums << 8) >> (byte * 8)) & 0xff;
  return byte * 8 + kSelectInByte[r - before][(x >> (byte * 8)) & 0xff];
}

}  // namespace

int PackedInts::WidthFor(uint64_t max_value) {
  int w = 1;
  while (w < 64 && (max_value >> w) != 0) ++w;
  return w;
}

void PackedInts::Assign(size_t n, int width) {
  assert(width >= 1 && width <= 32);
  Clear();
  // One spare word: Get and Set may touch the word after the last element's.
  words_.assign(WordsFor(n * static_cast<size_t>(width)) + 1, 0);
  n_ = n;
  width_ = width;
  mask_ = static_cast<uint32_t>((uint64_t{1} << width) - 1);
}

void PackedInts::Clear() {
  std::vector<uint64_t>().swap(words_);
  n_ = 0;
  width_ = 1;
  mask_ = 1;
}

void PackedInts::AppendState(std::string* out) const {
  state_io::Put<uint64_t>(out, n_);
  state_io::Put<int32_t>(out, width_);
  state_io::PutVector(out, words_);
}

Status PackedInts::LoadState(std::string_view* in) {
  uint64_t n = 0;
  int32_t width = 0;
  std::vector<uint64_t> words;
  HAMDB_RETURN_IF_ERROR(state_io::Get(in, &n));
  HAMDB_RETURN_IF_ERROR(state_io::Get(in, &width));
  HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &words));
  if (width < 1 || width > 32 || n > (uint64_t{1} << 40) ||
      words.size() != WordsFor(n * static_cast<uint64_t>(width)) + 1) {
    return Status::Corruption("index state: a packed array has the wrong shape");
  }
  const size_t used = n * static_cast<size_t>(width);
  for (size_t w = used / 64; w < words.size(); ++w) {
    const uint64_t spare = w * 64 >= used ? ~uint64_t{0} : ~uint64_t{0} << (used % 64);
    if (words[w] & spare) return Status::Corruption("index state: a packed array has stray bits");
  }
  words_ = std::move(words);
  n_ = n;
  width_ = width;
  mask_ = static_cast<uint32_t>((uint64_t{1} << width) - 1);
  return Status::OK();
}

void BucketStarts::Build(const uint32_t* starts, size_t nb) {
  Clear();
  const size_t entries = nb == 0 ? 0 : starts[nb];
  const size_t total = nb + entries;
  // Padding: 1s up to the end of the last word and one more word of 1s, so
  // that a run of 1s always ends inside the vector and never reads past it.
  std::vector<uint64_t> bits(WordsFor(total) + 1, ~uint64_t{0});
  size_t pos = 0;
  for (size_t b = 0; b < nb; ++b) {
    pos += starts[b + 1] - starts[b];  // the bucket's 1s (already set)
    bits[pos >> 6] &= ~(uint64_t{1} << (pos & 63));
    ++pos;
  }
  bits_ = std::move(bits);
  nb_ = nb;
  entries_ = entries;
  BuildBases();
}

void BucketStarts::Clear() {
  std::vector<uint64_t>().swap(bits_);
  std::vector<uint32_t>().swap(base_);
  nb_ = 0;
  entries_ = 0;
  group_bits_ = 0;
}

int BucketStarts::ChooseGroupShift(size_t nb, size_t entries) {
  int shift = 6;
  // Expected bits per group: (buckets per group) x (1 + entries per bucket).
  while (shift > 3 && nb > 0 && (size_t{1} << shift) * (nb + entries) > 64 * nb) --shift;
  return shift;
}

void BucketStarts::BuildBases() {
  group_shift_ = ChooseGroupShift(nb_, entries_);
  const size_t group = size_t{1} << group_shift_;
  group_bits_ = nb_ == 0 ? 0 : group * (nb_ + entries_) / nb_;
  std::vector<uint32_t> base((nb_ + group - 1) >> group_shift_);
  size_t zeros = 0, last_zero = 0;
  for (size_t w = 0; w < bits_.size() && zeros < nb_; ++w) {
    uint64_t x = ~bits_[w];
    while (x != 0 && zeros < nb_) {
      if ((zeros & (group - 1)) == 0) {
        // The first bit of bucket `zeros` is just after the previous 0.
        const size_t pos = zeros == 0 ? 0 : last_zero + 1;
        base[zeros >> group_shift_] = static_cast<uint32_t>(pos - zeros);
      }
      last_zero = w * 64 + static_cast<unsigned>(__builtin_ctzll(x));
      x &= x - 1;
      ++zeros;
    }
  }
  base_ = std::move(base);
}

size_t BucketStarts::SelectZeroFrom(size_t pos, unsigned r) const {
  size_t w = pos >> 6;
  uint64_t x = ~bits_[w] & (~uint64_t{0} << (pos & 63));
  for (;;) {
    const unsigned c = PopCount(x);
    if (r < c) return w * 64 + SelectInWord(x, r);
    r -= c;
    x = ~bits_[++w];
  }
}

void BucketStarts::AppendState(std::string* out) const {
  state_io::Put<uint64_t>(out, nb_);
  state_io::Put<uint64_t>(out, entries_);
  state_io::PutVector(out, bits_);
}

Status BucketStarts::LoadState(std::string_view* in) {
  uint64_t nb = 0, entries = 0;
  std::vector<uint64_t> bits;
  HAMDB_RETURN_IF_ERROR(state_io::Get(in, &nb));
  HAMDB_RETURN_IF_ERROR(state_io::Get(in, &entries));
  HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &bits));
  const uint64_t total = nb + entries;
  if (nb > (uint64_t{1} << 40) || entries > (uint64_t{1} << 40) ||
      bits.size() != WordsFor(total) + 1 || bits.back() != ~uint64_t{0}) {
    return Status::Corruption("index state: bucket starts have the wrong shape");
  }
  // Count the 1s of the total bits; the padding after them must be all 1s.
  uint64_t ones = 0;
  const size_t full = WordsFor(total);
  for (size_t w = 0; w < full; ++w) {
    uint64_t x = bits[w];
    if (w + 1 == full && total % 64 != 0) {
      const uint64_t pad = ~uint64_t{0} << (total % 64);
      if ((x & pad) != pad) return Status::Corruption("index state: bucket starts have stray bits");
      x &= ~pad;
    }
    ones += PopCount(x);
  }
  if (ones != entries) return Status::Corruption("index state: bucket starts do not match their entries");
  bits_ = std::move(bits);
  nb_ = nb;
  entries_ = entries;
  BuildBases();
  return Status::OK();
}

}  // namespace hamdb
