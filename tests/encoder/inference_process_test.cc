// TuneProcessForInference: sets glibc's thresholds and OpenBLAS's threads
// once, and says what it changed. SetTorchThreads: every CPU by default,
// the environment's count when it names one; UseOneTorchThreadHere: one.
#include <dlfcn.h>
#include <malloc.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "encoder/inference_process.h"
#include "encoder/torch_threads.h"

namespace hamdb {
namespace {

TEST(InferenceProcess, SetsThresholdsOnceAndReportsThem) {
  const std::string first = TuneProcessForInference();
  EXPECT_NE(first.find("malloc thresholds 64/256 MiB"), std::string::npos) << first;
  const bool openblas = dlsym(RTLD_DEFAULT, "openblas_set_num_threads") != nullptr;
  EXPECT_EQ(first.find("OpenBLAS 1 thread") != std::string::npos, openblas) << first;
  EXPECT_EQ(TuneProcessForInference(), first);

  // A block below the new mmap threshold (and above glibc's default of
  // 128 KiB to 32 MiB) comes from the heap, not from a fresh mapping.
  const size_t size = kInferenceMmapThreshold / 2;
  const size_t mapped_before = mallinfo2().hblkhd;
  void* a = std::malloc(size);
  ASSERT_NE(a, nullptr);
  static_cast<char*>(a)[size - 1] = 1;
  EXPECT_LT(mallinfo2().hblkhd, mapped_before + size) << "a " << size << "-byte block was mmapped";
  std::free(a);
}

TEST(InferenceProcess, TorchThreadsDefaultToEveryCpuUnlessTheEnvironmentSaysSo) {
  ASSERT_EQ(unsetenv("OMP_NUM_THREADS"), 0);
  EXPECT_EQ(SetTorchThreads(3), 3);
  const int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(SetTorchThreads(0), all);
  // A user's OMP_NUM_THREADS is left to libtorch: the count does not change.
  ASSERT_EQ(setenv("OMP_NUM_THREADS", "1", 1), 0);
  EXPECT_EQ(SetTorchThreads(5), all);
  ASSERT_EQ(unsetenv("OMP_NUM_THREADS"), 0);
}

TEST(InferenceProcess, OneTorchThreadForTheCallingThread) {
  ASSERT_EQ(unsetenv("OMP_NUM_THREADS"), 0);
  ASSERT_EQ(SetTorchThreads(2), 2);
  int here = 0, again = 0;
  std::thread t([&] {
    here = UseOneTorchThreadHere();
    again = UseOneTorchThreadHere();
  });
  t.join();
  EXPECT_EQ(here, 1);
  EXPECT_EQ(again, 1);
  EXPECT_EQ(SetTorchThreads(0), static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

}  // namespace
}  // namespace hamdb
