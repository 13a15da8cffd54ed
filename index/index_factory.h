// The index factory: the one table of index specs, and the one place spec
// strings are parsed (after FAISS's index_binary_factory).
//
// Each row of the table is one index type: its spec prefix and syntax, its
// search family, whether it is exact, what it needs (a codebook), the ids and
// code lengths it accepts, and how to build it. Every other module learns
// about a spec through DescribeIndexSpec and builds one through MakeIndex;
// none parses spec strings itself. Adding an index type is its .h/.cc, one
// row in index_factory.cc, one CMake line and one value in the conformance
// suite (tests/index/index_conformance_test.cc).
//
// Specs:
//   "Flat"           multi-threaded exhaustive scan (the exact oracle)
//   "MIH", "MIH<m>"  multi-index hashing, m chosen from n and bits, or given
//   "Bucket", "Bucket<p>"  class-code buckets over the codebook, nprobe p
//   "IVF<nlist>", "IVF<nlist>_<p>"  FAISS IndexBinaryIVF, default nprobe p
//   "GPUFlat"        exact brute force on a CUDA GPU (CPU scan fallback)
//   "GPUBucket...", "GPUIVF..."  the bucket / IVF index with its lists
//                    scanned on the GPU (same results; CPU fallback)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "index/binary_index.h"

namespace hamdb {

// The spec of a collection created without one.
inline constexpr const char* kDefaultIndexSpec = "MIH";

// What some index types need beyond the spec string.
struct IndexOptions {
  // The collection's codebook: num_classes packed class codes of `bits` bits
  // (num_classes * code_bytes(bits) bytes, LSB-first, class i at offset
  // i * code_bytes). Required by the bucket family; ignored by the others.
  std::vector<uint8_t> codebook;
};

// One parsed spec: its table row's properties.
struct IndexSpecInfo {
  std::string spec;    // as given
  std::string prefix;  // the table row: "Flat", "MIH", "Bucket", "IVF", "GPUFlat", ...
  // The search family, which a request's `mode` names: "exact" (Flat, MIH),
  // "gpu" (GPUFlat), "bucket" (Bucket, GPUBucket), "ivf" (IVF, GPUIVF).
  std::string family;
  // Always returns the exact answer. Approximate indexes set
  // SearchResult::exact only when they can prove it.
  bool exact = true;
  // Can be asked for a provably exact answer (SearchParams::nprobe = -1).
  bool exact_on_request = false;
  bool gpu = false;
  bool needs_codebook = false;
  // Keeps item scores and orders ties by them (BinaryIndex::keeps_scores).
  bool keeps_scores = false;
  // Takes SearchParams::filter: exact indexes stay exact (and Bucket with
  // nprobe -1 provably exact); IVF stays approximate and says so.
  bool filters = false;
  // The largest item id the index takes (FAISS ids are int64: 2^63 - 1).
  uint64_t max_id = UINT64_MAX;
  // Code lengths it takes: a multiple of this many bits (FAISS binary: 8).
  int bits_multiple = 1;
};

// Parses `spec` against the table. InvalidArgument for an unknown prefix or
// malformed parameters, naming the accepted syntax.
StatusOr<IndexSpecInfo> DescribeIndexSpec(std::string_view spec);

// Everything the table can say about (spec, bits, codebook) without building
// the index: the spec parses, bits is valid and a multiple the index takes,
// and a codebook is present when needed. InvalidArgument, or
// FailedPrecondition for a missing codebook.
Status CheckIndexSpec(std::string_view spec, int bits, bool has_codebook);

// One example spec per table row, for tests and benchmarks that cover every
// index type.
std::vector<std::string> ExampleIndexSpecs();

// Builds an empty index from a spec. Errors as CheckIndexSpec, plus those of
// the index's own Create (e.g. MIH's m > bits).
StatusOr<std::unique_ptr<BinaryIndex>> MakeIndex(std::string_view spec, int bits);
StatusOr<std::unique_ptr<BinaryIndex>> MakeIndex(std::string_view spec, int bits,
                                                 const IndexOptions& options);

}  // namespace hamdb
