// Hamming distance kernels, dispatched by code size and instruction set.
//
// This is the one place where code sizes are mapped to specialised kernels
// (FAISS HammingComputer style): 8, 16, 32 and 64-byte codes get unrolled
// kernels, every other size a generic one. Each size exists for three
// instruction sets, compiled as separate translation units with their own
// flags, so the default build runs on any x86-64 and the fastest supported
// set is picked at run time (cpuid):
//   kGeneric  portable SWAR popcount, no special instructions
//   kPopcnt   the POPCNT instruction (x86-64-v2)
//   kAvx2     AVX2 nibble-lookup popcount for codes of 64 bytes and more,
//             POPCNT below that
//   kAvx512   AVX-512 VPOPCNTDQ (with F, BW and VL) for 8, 16 and 32-byte
//             codes and from 64 bytes up (a scan XORs and counts eight
//             8-byte, four 16-byte or two 32-byte codes per instruction),
//             POPCNT for other sizes
// The environment variable HAMDB_HAMMING_ISA=generic|popcnt|avx2|avx512 caps the
// choice (useful for benchmarks); an unsupported request falls back to the
// best supported set below it. On non-x86 builds only kGeneric exists.
//
// All kernels take packed LSB-first codes (docs/codes.md). Distances fit in
// uint16_t because codes are at most kMaxCodeBits = 4096 bits.
// Kernels are pure functions: thread-safe, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hamdb {

enum class HammingIsa { kGeneric = 0, kPopcnt = 1, kAvx2 = 2, kAvx512 = 3 };

const char* HammingIsaName(HammingIsa isa);
// True when this CPU (and this build) can run `isa`.
bool HammingIsaSupported(HammingIsa isa);
// The best supported set, capped by HAMDB_HAMMING_ISA. Computed once.
HammingIsa BestHammingIsa();

struct HammingKernel {
  // Distance between two codes of `code_bytes` bytes.
  uint32_t (*distance)(const uint8_t* a, const uint8_t* b, size_t code_bytes);
  // out[i] = distance(q, db + i * code_bytes) for i in [0, n).
  void (*distances)(const uint8_t* q, const uint8_t* db, size_t n, size_t code_bytes,
                    uint16_t* out);
  // out[j] = distance(q, db + idx[j] * code_bytes) for j in [0, n).
  void (*distances_indexed)(const uint8_t* q, const uint8_t* db, const uint32_t* idx, size_t n,
                            size_t code_bytes, uint16_t* out);
  HammingIsa isa;
  // 8, 16, 32 or 64 for a specialised kernel, 0 for the generic one.
  size_t specialised_bytes;
};

// The kernel for `code_bytes`-byte codes on `isa` (which must be supported).
// For kAvx2 and codes under 64 bytes, and for kAvx512 and other sizes under
// 64 bytes than 8, 16 and 32, this is the kPopcnt kernel (its isa field says
// so).
HammingKernel SelectHammingKernel(size_t code_bytes, HammingIsa isa);
// The kernel for `code_bytes`-byte codes on BestHammingIsa().
HammingKernel SelectHammingKernel(size_t code_bytes);

// Convenience: one distance with the best kernel. Prefer holding a
// HammingKernel in loops.
uint32_t HammingDistance(const uint8_t* a, const uint8_t* b, size_t code_bytes);

// Set bits of one word, broadword, inlined. Code outside the kernels is
// built for the baseline x86-64, where __builtin_popcountll is a call into
// libgcc; use this there for a word at a time.
inline unsigned PopCount64(uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ULL);
  x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
  return static_cast<unsigned>((x * 0x0101010101010101ULL) >> 56);
}

}  // namespace hamdb
