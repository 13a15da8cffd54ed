// TuneProcessForInference: sets glibc's thresholds and OpenBLAS's threads
// once, and says what it changed.
#include <dlfcn.h>
#include <malloc.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "encoder/inference_process.h"

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

}  // namespace
}  // namespace hamdb
