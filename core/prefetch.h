// PrefetchLine: asks the CPU to bring the cache line holding *p into cache,
// so that a later load of it does not stall. A hint only: it never faults,
// whatever p points at, and reads nothing the caller can observe.
//
// Why not __builtin_prefetch: GCC 12 at -O2 (this project's RelWithDebInfo)
// deletes a __builtin_prefetch that sits behind a branch on loaded state,
// as in `if (entries_ == 0) return; __builtin_prefetch(&cells_[c]);`, with
// no warning; the same code at -O3, or unguarded, keeps it. The volatile
// asm here is kept wherever it is written. Elsewhere than x86 the builtin
// is used.
#pragma once

namespace hamdb {

inline void PrefetchLine(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p);
#endif
}

}  // namespace hamdb
