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
  std::vector<uint64_t> occupied(WordsFor(nb), 0);
  // Padding: 1s after the last entry and one more word of 1s, so that a
  // scan for a 0 never reads past the vector.
  std::vector<uint64_t> ends(WordsFor(entries) + 1, ~uint64_t{0});
  for (size_t b = 0; b < nb; ++b) {
    if (starts[b + 1] == starts[b]) continue;
    occupied[b >> 6] |= uint64_t{1} << (b & 63);
    const size_t last = starts[b + 1] - 1;
    ends[last >> 6] &= ~(uint64_t{1} << (last & 63));
  }
  occupied_ = std::move(occupied);
  ends_ = std::move(ends);
  nb_ = nb;
  entries_ = entries;
  BuildBases();
}

void BucketStarts::Clear() {
  std::vector<uint64_t>().swap(occupied_);
  std::vector<uint64_t>().swap(ends_);
  std::vector<uint32_t>().swap(base_);
  nb_ = 0;
  entries_ = 0;
}

int BucketStarts::ChooseGroupShift(size_t nb, size_t entries) {
  int shift = 6;
  // Expected entry-end bits per group: (buckets per group) x (entries per bucket).
  while (shift > 3 && nb > 0 && (size_t{1} << shift) * entries > 64 * nb) --shift;
  return shift;
}

void BucketStarts::BuildBases() {
  group_shift_ = ChooseGroupShift(nb_, entries_);
  const size_t group = size_t{1} << group_shift_;
  const size_t groups = (nb_ + group - 1) >> group_shift_;
  std::vector<uint32_t> base(groups);
  // Walk the entry ends: group g starts after the runs of the occupied
  // buckets before it, i.e. just after the (occupied before g)-th 0.
  size_t occupied_before = 0;  // occupied buckets before the current group
  size_t zeros = 0;            // 0s of ends_ before `pos`
  size_t pos = 0;
  for (size_t g = 0; g < groups; ++g) {
    while (zeros < occupied_before) {
      // Jump to just after the next 0.
      pos += RunOfOnes(pos) + 1;
      ++zeros;
    }
    base[g] = static_cast<uint32_t>(pos);
    const size_t first = g << group_shift_;
    const unsigned off = first & 63;
    uint64_t bits = occupied_[first >> 6] >> off;
    if (group < 64) bits &= (uint64_t{1} << group) - 1;
    occupied_before += PopCount64(bits);
  }
  base_ = std::move(base);
}

size_t BucketStarts::SelectZeroFrom(size_t pos, unsigned r) const {
  size_t w = pos >> 6;
  uint64_t x = ~ends_[w] & (~uint64_t{0} << (pos & 63));
  for (;;) {
    const unsigned c = PopCount64(x);
    if (r < c) return w * 64 + SelectInWord(x, r);
    r -= c;
    x = ~ends_[++w];
  }
}

void BucketStarts::AppendState(std::string* out) const {
  state_io::Put<uint64_t>(out, nb_);
  state_io::Put<uint64_t>(out, entries_);
  state_io::PutVector(out, occupied_);
  state_io::PutVector(out, ends_);
}

Status BucketStarts::LoadState(std::string_view* in) {
  uint64_t nb = 0, entries = 0;
  std::vector<uint64_t> occupied, ends;
  HAMDB_RETURN_IF_ERROR(state_io::Get(in, &nb));
  HAMDB_RETURN_IF_ERROR(state_io::Get(in, &entries));
  HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &occupied));
  HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &ends));
  if (nb > (uint64_t{1} << 40) || entries >= (uint64_t{1} << 32) || occupied.size() != WordsFor(nb) ||
      ends.size() != WordsFor(entries) + 1 || ends.back() != ~uint64_t{0}) {
    return Status::Corruption("index state: bucket starts have the wrong shape");
  }
  // Padding: 0s after the last bucket's bit, 1s after the last entry's.
  if (nb % 64 != 0 && (occupied.back() >> (nb % 64)) != 0) {
    return Status::Corruption("index state: bucket starts have stray bits");
  }
  const size_t full = WordsFor(entries);
  if (entries % 64 != 0) {
    const uint64_t pad = ~uint64_t{0} << (entries % 64);
    if ((ends[full - 1] & pad) != pad) return Status::Corruption("index state: bucket starts have stray bits");
  }
  // Every occupied bucket closes exactly one run, and the last entry closes one.
  uint64_t buckets = 0, closes = 0;
  for (uint64_t x : occupied) buckets += PopCount64(x);
  for (size_t w = 0; w < full; ++w) {
    uint64_t x = ~ends[w];
    if (w + 1 == full && entries % 64 != 0) x &= (uint64_t{1} << (entries % 64)) - 1;
    closes += PopCount64(x);
  }
  const bool last_closes = entries == 0 || ((ends[(entries - 1) >> 6] >> ((entries - 1) & 63)) & 1) == 0;
  if (buckets != closes || !last_closes || (entries == 0) != (buckets == 0)) {
    return Status::Corruption("index state: bucket starts do not match their entries");
  }
  occupied_ = std::move(occupied);
  ends_ = std::move(ends);
  nb_ = nb;
  entries_ = entries;
  BuildBases();
  return Status::OK();
}

}  // namespace hamdb
