// HugePageAllocator: the allocator of the large arrays that scans read end
// to end (the codes of the indexes' dense slots). A request of at least
// kHugePageMinBytes is aligned to 2 MiB and advised for transparent huge
// pages (madvise MADV_HUGEPAGE) before it is touched, so that the kernel can
// back it with 2 MiB pages where its setting is "madvise" or "always" (on
// Debian the default is "madvise", under which nothing else gets them). A
// scan then takes a TLB miss per 2 MiB instead of per 4 KiB, and the array's
// memory is contiguous in 2 MiB pieces. Smaller requests, and everything on
// systems without madvise, come from operator new. The advice is a hint:
// where the kernel grants no huge page the memory is ordinary.
//
// Memory: a large request is rounded up to whole 2 MiB pages, so an array
// holds up to 2 MiB more than its vector's capacity() counts.
//
// Thread safety: stateless, as std::allocator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace hamdb {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;
// Below this an array is left to operator new: a 2 MiB alignment would cost
// more than its pages save.
inline constexpr size_t kHugePageMinBytes = size_t{4} << 20;

template <typename T>
class HugePageAllocator {
 public:
  using value_type = T;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePageMinBytes) return static_cast<T*>(::operator new(bytes));
    if (bytes > static_cast<size_t>(-1) - kHugePageBytes) throw std::bad_alloc();
    // aligned_alloc wants a multiple of the alignment.
    const size_t rounded = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
    void* p = std::aligned_alloc(kHugePageBytes, rounded);
    if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, rounded, MADV_HUGEPAGE);  // a hint; failure leaves ordinary pages
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) noexcept {
    if (n * sizeof(T) < kHugePageMinBytes) {
      ::operator delete(p);
    } else {
      std::free(p);
    }
  }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const noexcept { return true; }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>&) const noexcept { return false; }
};

// The codes of dense slots: n * code_bytes bytes.
using CodeArray = std::vector<uint8_t, HugePageAllocator<uint8_t>>;

}  // namespace hamdb
