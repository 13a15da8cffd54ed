#include "encoder/torch_threads.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace hamdb {

int SetTorchThreads(int threads) {
  const char* env = std::getenv("OMP_NUM_THREADS");
  if (env == nullptr || *env == '\0') {
    const int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    at::set_num_threads(threads > 0 ? threads : all);
  }
  return at::get_num_threads();
}

int UseOneTorchThreadHere() {
  thread_local bool done = false;
  if (!done) at::set_num_threads(1);
  done = true;
  return at::get_num_threads();
}

}  // namespace hamdb
