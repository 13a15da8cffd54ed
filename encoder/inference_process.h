// Process settings for encoding images at full speed.
//
// A forward pass allocates and frees activation tensors of tens of MB per
// batch. With glibc's defaults those come from fresh mmap()s (or are trimmed
// back to the kernel on free), so every batch pays for page faults and page
// zeroing: half of an ingest's CPU time. And Debian's libtorch calls
// OpenBLAS from inside its own OpenMP threads, where OpenBLAS's own thread
// pool only oversubscribes the cores and spins.
//
// TuneProcessForInference, called once by a process that encodes images
// (ingest, encode, a server with an encoder), keeps freed blocks below
// kInferenceMmapThreshold on the heap (retaining at most
// kInferenceTrimThreshold of free memory at its top) and sets OpenBLAS to
// one thread when OpenBLAS is loaded. It is process-wide and idempotent;
// a process that only trains or searches need not call it.
#pragma once

#include <cstddef>
#include <string>

namespace hamdb {

constexpr size_t kInferenceMmapThreshold = size_t{64} << 20;
constexpr size_t kInferenceTrimThreshold = size_t{256} << 20;

// Returns what it changed, for a log line ("malloc thresholds 64/256 MiB,
// OpenBLAS 1 thread").
std::string TuneProcessForInference();

}  // namespace hamdb
