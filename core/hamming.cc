#include "core/hamming.h"

#include <cstdlib>
#include <cstring>

namespace hamdb {

// One Select per instruction-set translation unit (hamming_<isa>.cc).
namespace isa_generic { HammingKernel Select(size_t code_bytes); }
#if defined(HAMDB_HAVE_X86_KERNELS)
namespace isa_popcnt { HammingKernel Select(size_t code_bytes); }
namespace isa_avx2 { HammingKernel Select(size_t code_bytes); }
namespace isa_avx512 { HammingKernel Select(size_t code_bytes); }
#endif

const char* HammingIsaName(HammingIsa isa) {
  switch (isa) {
    case HammingIsa::kGeneric: return "generic";
    case HammingIsa::kPopcnt: return "popcnt";
    case HammingIsa::kAvx2: return "avx2";
    case HammingIsa::kAvx512: return "avx512";
  }
  return "unknown";
}

bool HammingIsaSupported(HammingIsa isa) {
  switch (isa) {
    case HammingIsa::kGeneric: return true;
#if defined(HAMDB_HAVE_X86_KERNELS)
    case HammingIsa::kPopcnt: return __builtin_cpu_supports("popcnt");
    case HammingIsa::kAvx2:
      return __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("avx2");
    case HammingIsa::kAvx512:
      return __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512vpopcntdq");
#else
    default: return false;
#endif
  }
  return false;
}

namespace {

HammingIsa ComputeBestIsa() {
  HammingIsa cap = HammingIsa::kAvx512;
  if (const char* env = std::getenv("HAMDB_HAMMING_ISA")) {
    if (std::strcmp(env, "generic") == 0) cap = HammingIsa::kGeneric;
    else if (std::strcmp(env, "popcnt") == 0) cap = HammingIsa::kPopcnt;
    else if (std::strcmp(env, "avx2") == 0) cap = HammingIsa::kAvx2;
  }
  for (int i = static_cast<int>(cap); i > 0; --i) {
    if (HammingIsaSupported(static_cast<HammingIsa>(i))) return static_cast<HammingIsa>(i);
  }
  return HammingIsa::kGeneric;
}

}  // namespace

HammingIsa BestHammingIsa() {
  static const HammingIsa best = ComputeBestIsa();
  return best;
}

HammingKernel SelectHammingKernel(size_t code_bytes, HammingIsa isa) {
  switch (isa) {
#if defined(HAMDB_HAVE_X86_KERNELS)
    // AVX2 only pays off from 64 bytes up; below that the POPCNT kernels are
    // as fast or faster (docs/benchmarks.md, hamdb bench hamming).
    case HammingIsa::kAvx2:
      return code_bytes >= 64 ? isa_avx2::Select(code_bytes) : isa_popcnt::Select(code_bytes);
    case HammingIsa::kPopcnt: return isa_popcnt::Select(code_bytes);
    // VPOPCNTQ wins at the specialised sizes (eight 8-byte codes per
    // instruction) and from 64 bytes up; for other sizes under 64 bytes a
    // masked load costs more than the POPCNT word loop.
    case HammingIsa::kAvx512:
      return code_bytes >= 64 || code_bytes == 8 || code_bytes == 16 || code_bytes == 32
                 ? isa_avx512::Select(code_bytes)
                 : isa_popcnt::Select(code_bytes);
#endif
    default: return isa_generic::Select(code_bytes);
  }
}

HammingKernel SelectHammingKernel(size_t code_bytes) {
  return SelectHammingKernel(code_bytes, BestHammingIsa());
}

uint32_t HammingDistance(const uint8_t* a, const uint8_t* b, size_t code_bytes) {
  return SelectHammingKernel(code_bytes).distance(a, b, code_bytes);
}

}  // namespace hamdb
