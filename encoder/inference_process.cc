#include "encoder/inference_process.h"

#include <dlfcn.h>
#include <malloc.h>

#include <mutex>

namespace hamdb {

std::string TuneProcessForInference() {
  static std::once_flag once;
  static std::string changed;
  std::call_once(once, [] {
    const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(kInferenceMmapThreshold)) == 1;
    const bool trim_ok = mallopt(M_TRIM_THRESHOLD, static_cast<int>(kInferenceTrimThreshold)) == 1;
    if (mmap_ok && trim_ok) {
      changed = "malloc thresholds " + std::to_string(kInferenceMmapThreshold >> 20) + "/" +
                std::to_string(kInferenceTrimThreshold >> 20) + " MiB";
    }
    // Looked up rather than linked: OpenBLAS is libtorch's dependency, not ours.
    using SetThreads = void (*)(int);
    if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
      set(1);
      changed += std::string(changed.empty() ? "" : ", ") + "OpenBLAS 1 thread";
    }
    if (changed.empty()) changed = "no change";
  });
  return changed;
}

}  // namespace hamdb
