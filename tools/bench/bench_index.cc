// hamdb bench index: our exact indexes (Flat, MIH), our class-bucket index
// and GPU brute force beside FAISS binary indexes (IndexBinaryFlat,
// IndexBinaryMultiHash, IndexBinaryIVF) on the same codes, in one run.
//
// Clustered data is LLC-like: --centres class codes, each item a class code
// with every bit flipped with probability --flip. The class codes are the
// codebook of the "bucket" method (ClassBucketIndex, items decoded to their
// nearest class during the build: no training). "ivf" is our FaissIvfIndex
// wrapper (FAISS k-means + lists, our list scan); "faiss-ivf" is FAISS's own
// IndexBinaryIVF search. "gpu-flat" is GpuFlatIndex (CPU fallback without a
// GPU, which the params column then says).
//
// For each (n, bits, data) the codes are generated once (index/synthetic.h;
// the queries are extra items of the same distribution, not in the index),
// every index is built once, and for each k every method reports:
//   build       seconds to add (FAISS IVF: train + add)
//   B/item      memory per item: ours measured (BinaryIndex::memory_bytes),
//               FAISS estimated from the sizes of its stored arrays
//   p50 / p99   single-query latency in ms (one query per call; the
//               methods take turns in runs of 10 queries, so that the
//               machine's noise falls on all of them alike)
//   QPS         batch throughput (all queries in one call)
//   vs ceiling  bytes of codes one query (n codes in p50) and the batch
//               (QPS x n query-code pairs) cover per second, as a share of
//               the machine's streaming XOR + popcount rate over
//               --ceiling-gib GiB with all threads (measured first)
//   recall@k    tie-aware recall against our exact Flat answer
//   exact       "ids+dists": identical (distance, id) lists; "dists":
//               identical distance lists (ties may list other ids); "no"
// FAISS runs with omp_set_num_threads(--threads), ours with
// SearchParams::num_threads = --threads. Progress goes to stderr; the
// markdown table to stdout and, with --out, appended to a file together
// with the command line that produced it.
//
// FAISS exceptions are caught here, at the module boundary, and reported as
// an error row; they never escape a callback.
#include <faiss/IndexBinaryFlat.h>
#include <faiss/IndexBinaryHash.h>
#include <faiss/IndexBinaryIVF.h>
#include <faiss/invlists/InvertedLists.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <malloc.h>
#include <memory>
#include <unistd.h>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "index/binary_index.h"
#include "index/bucket_index.h"
#include "core/binary_code.h"
#include "core/hamming.h"
#include "core/huge_pages.h"
#include "index/faiss_ivf_index.h"
#include "index/gpu/gpu_flat_index.h"
#include "index/gpu/gpu_list_index.h"
#include "index/mih_index.h"
#include "index/parallel.h"
#include "index/synthetic.h"
#include "tools/bench/bench_report.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "index/index_factory.h"

namespace hamdb::tools {

namespace {

using Clock = std::chrono::steady_clock;
using Results = std::vector<std::vector<Neighbor>>;
// FAISS 1.7.3 spells the id type faiss::Index::idx_t (later versions: faiss::idx_t).
using FaissId = faiss::IndexBinary::idx_t;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

const char* const kAllMethods[] = {"flat",      "mih",      "mih-probe", "mih-scan", "faiss-flat",
                                   "faiss-mih", "faiss-ivf", "bucket",    "ivf",      "gpu-flat",
                                   "gpu-bucket"};
const char* const kDefaultMethods[] = {"flat", "mih", "faiss-flat", "faiss-mih", "faiss-ivf"};

struct BenchIndexArgs {
  std::vector<size_t> n = {1000000};
  std::vector<int> bits = {64};
  std::vector<std::string> data = {"uniform"};
  std::vector<size_t> k = {1, 10, 100, 1000};
  size_t queries = 1000;
  size_t latency_queries = 200;
  int threads = 0;
  std::vector<std::string> methods = {kDefaultMethods, kDefaultMethods + 5};
  std::vector<int> nflip = {0, 1, 2, 3};
  std::vector<int> nprobe = {1, 8, 32};
  std::vector<int> bucket_nprobe = {1, 2, 4, 8};
  size_t nlist = 0;
  size_t centres = 256;
  double flip = 0.03;
  uint64_t seed = 1;
  // Device memory bandwidth in GB/s for the GPUFlat scan-rate line (H100 SXM: 3350).
  double gpu_bandwidth_gbs = 3350;
  // Size of the streaming-ceiling buffer in GiB (0: not measured).
  double ceiling_gib = 1.0;
  std::string out;
};

template <typename T>
std::string Join(const std::vector<T>& v) {
  std::ostringstream s;
  for (size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
  return s.str();
}

std::string CommandLine(const BenchIndexArgs& a) {
  std::ostringstream s;
  s << "hamdb bench index --n " << Join(a.n) << " --bits " << Join(a.bits) << " --data "
    << Join(a.data) << " --k " << Join(a.k) << " --queries " << a.queries << " --latency-queries "
    << a.latency_queries << " --threads " << a.threads << " --methods " << Join(a.methods)
    << " --nflip " << Join(a.nflip) << " --nprobe " << Join(a.nprobe) << " --bucket-nprobe "
    << Join(a.bucket_nprobe) << " --nlist " << a.nlist << " --centres " << a.centres << " --flip "
    << a.flip << " --seed " << a.seed;
  if (a.ceiling_gib != 1.0) s << " --ceiling-gib " << a.ceiling_gib;
  const bool gpu = std::count(a.methods.begin(), a.methods.end(), "gpu-flat") > 0;
  if (gpu) s << " --gpu-bandwidth " << a.gpu_bandwidth_gbs;
  return s.str();
}

// One searchable method: a built index plus one setting of its knobs.
struct Method {
  std::string name;
  std::string params;
  double build_s = 0;
  double bytes_per_item = 0;
  // Growth of the process's resident set while the index was built, per
  // item (Flat and MIH; 0 = not measured).
  double rss_bytes_per_item = 0;
  bool memory_estimated = false;
  // A GPUFlat whose searches ran on the device (gets a scan-rate line).
  bool gpu_flat_on_device = false;
  // Searches nq queries for k neighbours; one call = one batch.
  std::function<void(const uint8_t* q, size_t nq, size_t k, Results* out)> search;
  // Optional: a note for the params column, from one extra batch.
  std::function<std::string(const uint8_t* q, size_t nq, size_t k)> note;
};

struct Row {
  std::string name, params;
  double build_s = 0, bytes_per_item = 0, p50_ms = 0, p99_ms = 0, qps = 0, recall = 0;
  bool memory_estimated = false;
  bool gpu_flat_on_device = false;
  std::string exact, error;
};

// For a GPUFlat row that ran on the device: the batch scan rate in codes/s,
// the bytes the kernel reads per second (each code padded to whole 32-bit
// words, read once per pass; the threshold scan makes two passes) and their
// share of the card's bandwidth. Empty for other rows and CPU fallbacks.
std::string GpuScanRate(const Row& r, size_t n, int bits, size_t k, double bandwidth_gbs) {
  if (!r.gpu_flat_on_device || !r.error.empty() || r.qps <= 0) return "";
  const double codes_per_s = r.qps * static_cast<double>(n);
  const double word_bytes = 4.0 * ((bits + 31) / 32);
  const double gbs = codes_per_s * word_bytes * 2 / 1e9;
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "\nGPUFlat scan rate, n=%zu bits=%d k=%zu: %.3g codes/s; two passes over %.0f-byte "
                "padded codes = %.0f GB/s, %.1f%% of %.0f GB/s\n\n",
                n, bits, k, codes_per_s, word_bytes, gbs, 100.0 * gbs / bandwidth_gbs,
                bandwidth_gbs);
  return buf;
}

Results FromFaiss(size_t nq, size_t k, const std::vector<int32_t>& d,
                  const std::vector<FaissId>& ids) {
  Results out(nq);
  for (size_t i = 0; i < nq; ++i) {
    for (size_t j = 0; j < k; ++j) {
      const FaissId id = ids[i * k + j];
      if (id < 0) continue;
      out[i].push_back(Neighbor{static_cast<uint64_t>(id), static_cast<uint32_t>(d[i * k + j])});
    }
  }
  return out;
}

// Tie-aware recall: a returned item counts when its distance is below the
// exact k-th distance, and items at exactly that distance count up to the
// number the exact answer holds there.
double Recall(const Results& got, const Results& truth) {
  double sum = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    if (truth[i].empty()) {
      sum += 1;
      continue;
    }
    const uint32_t dk = truth[i].back().distance;
    size_t below = 0, at = 0, truth_at = 0;
    for (const Neighbor& nb : got[i]) {
      below += nb.distance < dk;
      at += nb.distance == dk;
    }
    for (const Neighbor& nb : truth[i]) truth_at += nb.distance == dk;
    sum += static_cast<double>(below + std::min(at, truth_at)) / truth[i].size();
  }
  return sum / truth.size();
}

std::string Exactness(const Results& got, const Results& truth) {
  bool ids = true, dists = true;
  for (size_t i = 0; i < truth.size(); ++i) {
    if (got[i] != truth[i]) ids = false;
    if (got[i].size() != truth[i].size()) {
      dists = false;
      continue;
    }
    for (size_t j = 0; j < got[i].size(); ++j) dists &= got[i][j].distance == truth[i][j].distance;
  }
  return ids ? "ids+dists" : dists ? "dists" : "no";
}

std::string FormatRow(size_t n, int bits, const std::string& data, size_t k, const Row& r,
                      double faiss_flat_qps, double faiss_flat_p50, double ceiling_gbs) {
  char buf[640];
  if (!r.error.empty()) {
    std::snprintf(buf, sizeof buf, "| %zu | %d | %s | %zu | %s | %s | error: %s ||||||||||\n", n,
                  bits, data.c_str(), k, r.name.c_str(), r.params.c_str(), r.error.c_str());
    return buf;
  }
  // The bytes of codes a search covers per second, against the ceiling: one
  // query (n codes in p50) and the batch (QPS x n query-code pairs).
  char ceiling[64] = "-";
  if (ceiling_gbs > 0 && r.p50_ms > 0 && r.qps > 0) {
    const double bytes = static_cast<double>(n) * static_cast<double>(code_bytes(bits));
    std::snprintf(ceiling, sizeof ceiling, "%.0f%% / %.0f%%",
                  100.0 * bytes / (r.p50_ms / 1e3) / 1e9 / ceiling_gbs,
                  100.0 * bytes * r.qps / 1e9 / ceiling_gbs);
  }
  char speedup[64] = "-";
  if (faiss_flat_qps > 0 && r.qps > 0) {
    std::snprintf(speedup, sizeof speedup, "%.1fx / %.1fx", r.qps / faiss_flat_qps,
                  faiss_flat_p50 / r.p50_ms);
  }
  std::snprintf(buf, sizeof buf,
                "| %zu | %d | %s | %zu | %s | %s | %.2f | %.1f%s | %.3f | %.3f | %.0f | %s | %s | "
                "%.4f | %s |\n",
                n, bits, data.c_str(), k, r.name.c_str(), r.params.c_str(), r.build_s,
                r.bytes_per_item, r.memory_estimated ? " (est.)" : "", r.p50_ms, r.p99_ms, r.qps,
                speedup, ceiling, r.recall, r.exact.c_str());
  return buf;
}

bool Wanted(const BenchIndexArgs& a, const std::string& method) {
  return std::find(a.methods.begin(), a.methods.end(), method) != a.methods.end();
}

// Owns everything built for one (n, bits, data) configuration.
struct Built {
  std::vector<std::unique_ptr<BinaryIndex>> ours;
  std::unique_ptr<faiss::IndexBinaryFlat> faiss_flat;
  std::unique_ptr<faiss::IndexBinaryMultiHash> faiss_mih;
  std::unique_ptr<faiss::IndexBinaryFlat> ivf_quantizer;
  std::unique_ptr<faiss::IndexBinaryIVF> faiss_ivf;
  std::vector<Method> methods;
};

// mih_mode as SearchParams::mih_mode (0: MIH's cost model decides).
Method OurMethod(BinaryIndex* index, const std::string& name, int threads, int nprobe = 0,
                 int mih_mode = 0) {
  Method m;
  m.name = name;
  m.params = index->spec();
  if (auto* mih = dynamic_cast<MihIndex*>(index)) {
    m.params += " (m=" + std::to_string(mih->num_substrings()) + ")";
  }
  if (nprobe != 0) m.params += " nprobe=" + std::to_string(nprobe);
  if (mih_mode != 0) m.params += mih_mode > 0 ? " probe only" : " scan only";
  m.bytes_per_item =
      static_cast<double>(index->memory_bytes()) / std::max<size_t>(1, index->size());
  m.search = [index, threads, nprobe, mih_mode](const uint8_t* q, size_t nq, size_t k, Results* out) {
    SearchParams params;
    params.num_threads = threads;
    params.nprobe = nprobe;
    params.mih_mode = mih_mode;
    if (nq == 1) {
      // A single query: the index may split its own work across threads.
      StatusOr<SearchResult> r = index->Search(q, k, params);
      if (!r.ok()) throw std::runtime_error(r.status().ToString());
      out->assign(1, std::move(r->neighbors));
      return;
    }
    std::vector<SearchResult> results;
    Status st = index->SearchBatch(q, nq, k, params, &results);
    if (!st.ok()) throw std::runtime_error(st.ToString());
    out->resize(nq);
    for (size_t i = 0; i < nq; ++i) (*out)[i] = std::move(results[i].neighbors);
  };
  return m;
}

// The machine's streaming ceiling in GB/s: every thread XORs and counts its
// slice of a `gib` GiB buffer of 8-byte words with the best Hamming kernel
// (the instructions a Flat scan of 64-bit codes runs, without the top-k).
// The buffer is allocated as the indexes' code arrays are (HugePageAllocator),
// so that both read memory through the same page size.
// The median of three passes; 0 when gib <= 0.
double MeasureCeiling(double gib, int threads) {
  if (gib <= 0) return 0;
  const size_t words = static_cast<size_t>(gib * static_cast<double>(size_t{1} << 30)) / 8;
  HugePageAllocator<uint64_t> alloc;
  std::unique_ptr<uint64_t[], std::function<void(uint64_t*)>> buf(
      alloc.allocate(words), [alloc, words](uint64_t* p) mutable { alloc.deallocate(p, words); });
  const size_t slice = (words + threads - 1) / threads;
  // One task per thread, each over its own slice of the buffer.
  auto run = [&](auto&& body) {
    return ThreadPool::Default().ParallelFor(threads, threads, [&](size_t t) {
      const size_t begin = std::min(words, t * slice);
      body(begin, std::min(words, begin + slice));
    });
  };
  // Each thread touches its own slice first (pages land on its node).
  Status st = run([&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) buf[i] = (i + 1) * 0x9e3779b97f4a7c15ULL;
  });
  const HammingKernel kernel = SelectHammingKernel(8);
  const uint8_t query[8] = {0x5a, 0xa5, 0x3c, 0xc3, 0x0f, 0xf0, 0x66, 0x99};
  std::atomic<uint64_t> sink{0};
  std::vector<double> seconds;
  for (int rep = 0; rep < 3 && st.ok(); ++rep) {
    const auto t0 = Clock::now();
    st = run([&](size_t begin, size_t end) {
      constexpr size_t kChunk = 4096;
      uint16_t out[kChunk];
      uint64_t local = 0;
      for (size_t i = begin; i < end; i += kChunk) {
        const size_t m = std::min(kChunk, end - i);
        kernel.distances(query, reinterpret_cast<const uint8_t*>(buf.get() + i), m, 8, out);
        local += out[0] + out[m - 1];
      }
      sink += local;
    });
    seconds.push_back(Seconds(t0));
  }
  if (!st.ok()) {
    std::fprintf(stderr, "  ceiling not measured: %s\n", st.ToString().c_str());
    return 0;
  }
  std::sort(seconds.begin(), seconds.end());
  const double gbs = static_cast<double>(words) * 8 / seconds[1] / 1e9;
  std::fprintf(stderr, "  ceiling: %.1f GB/s (checksum %llu)\n", gbs,
               static_cast<unsigned long long>(sink.load()));
  return gbs;
}

// The process's resident set in bytes (/proc/self/statm), after returning
// freed heap memory to the system; 0 where it cannot be read.
size_t ResidentBytes() {
  malloc_trim(0);
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  if (!(statm >> pages >> resident)) return 0;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// One line per Flat or MIH index: memory_bytes() and the resident-set growth
// while it was built, both per item.
std::string MemoryLines(const Built& b, size_t n, int bits, const std::string& data) {
  std::string out;
  for (const Method& m : b.methods) {
    if (m.rss_bytes_per_item <= 0) continue;
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%s%s, n=%zu bits=%d data=%s: memory_bytes() %.1f B/item, resident set grew "
                  "%.1f B/item while it was built\n",
                  out.empty() ? "\n" : "", m.name.c_str(), n, bits, data.c_str(), m.bytes_per_item,
                  m.rss_bytes_per_item);
    out += buf;
  }
  return out.empty() ? out : out + "\n";
}

// Builds every wanted index over `codes`. FAISS errors propagate as
// exceptions to the caller, which reports them.
Status BuildAll(const BenchIndexArgs& a, size_t n, int bits, const uint8_t* codes,
                const std::vector<uint8_t>& codebook, int threads, Built* b) {
  const size_t cb = code_bytes(bits);
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = i;
  for (const char* spec : {"Flat", "MIH"}) {
    const bool mih = spec == std::string("MIH");
    const bool wanted = mih ? Wanted(a, "mih") || Wanted(a, "mih-probe") || Wanted(a, "mih-scan")
                            : Wanted(a, "flat");
    if (!wanted) continue;
    std::fprintf(stderr, "  build hamdb %s ...\n", spec);
    HAMDB_ASSIGN_OR_RETURN(std::unique_ptr<BinaryIndex> index, MakeIndex(spec, bits));
    const size_t rss0 = ResidentBytes();
    const auto t0 = Clock::now();
    HAMDB_RETURN_IF_ERROR(index->Add(ids.data(), codes, n));
    const double build = Seconds(t0);
    const size_t rss1 = ResidentBytes();
    b->ours.push_back(std::move(index));
    // MIH's cost model, and each of its two paths forced, on the one index.
    std::vector<std::pair<std::string, int>> modes = {{mih ? "mih" : "flat", 0}};
    if (mih) {
      modes.push_back({"mih-probe", 1});
      modes.push_back({"mih-scan", -1});
    }
    for (const auto& [method, mode] : modes) {
      if (!Wanted(a, method)) continue;
      Method m = OurMethod(b->ours.back().get(), "hamdb " + std::string(spec), threads, 0, mode);
      m.build_s = build;
      if (rss0 > 0 && rss1 > rss0) {
        m.rss_bytes_per_item = static_cast<double>(rss1 - rss0) / static_cast<double>(std::max<size_t>(1, n));
      }
      if (mih && mode == 0) {
        // How often the cost model chose the scan, over one batch.
        const auto* index = static_cast<const MihIndex*>(b->ours.back().get());
        const Method search = m;
        m.note = [index, search](const uint8_t* q, size_t nq, size_t k) {
          const MihIndex::PathCounts before = index->path_counts();
          Results out;
          search.search(q, nq, k, &out);
          const uint64_t scanned = index->path_counts().scanned - before.scanned;
          char buf[64];
          std::snprintf(buf, sizeof buf, " (scanned %.1f%%)", 100.0 * scanned / std::max<size_t>(nq, 1));
          return std::string(buf);
        };
      }
      b->methods.push_back(std::move(m));
    }
  }
  if (Wanted(a, "bucket")) {
    if (codebook.empty()) {
      return Status::InvalidArgument(
          "method bucket needs --data clustered (its centres are the codebook)");
    }
    std::fprintf(stderr, "  build hamdb Bucket (%zu classes, decode + add) ...\n",
                 codebook.size() / cb);
    HAMDB_ASSIGN_OR_RETURN(std::unique_ptr<ClassBucketIndex> index,
                           ClassBucketIndex::Create(bits, codebook));
    const auto t0 = Clock::now();
    HAMDB_RETURN_IF_ERROR(index->Add(ids.data(), codes, n));
    const double build = Seconds(t0);
    b->ours.push_back(std::move(index));
    for (int nprobe : a.bucket_nprobe) {
      Method m = OurMethod(b->ours.back().get(), "hamdb Bucket", threads, nprobe);
      m.build_s = build;
      // How often the triangle-inequality bound proves the answer exact.
      BinaryIndex* index = b->ours.back().get();
      m.note = [index, threads, nprobe](const uint8_t* q, size_t nq, size_t k) {
        SearchParams params;
        params.num_threads = threads;
        params.nprobe = nprobe;
        std::vector<SearchResult> results;
        if (!index->SearchBatch(q, nq, k, params, &results).ok()) return std::string();
        size_t exact = 0;
        for (const SearchResult& r : results) exact += r.exact;
        char buf[64];
        std::snprintf(buf, sizeof buf, " (proved exact %.0f%%)",
                      100.0 * exact / std::max<size_t>(nq, 1));
        return std::string(buf);
      };
      b->methods.push_back(std::move(m));
    }
  }
  if (Wanted(a, "ivf")) {
    const size_t nlist =
        a.nlist != 0
            ? a.nlist
            : std::clamp<size_t>(static_cast<size_t>(std::sqrt(static_cast<double>(n))), 16, 1024);
    std::fprintf(stderr, "  build hamdb IVF%zu (FAISS k-means on a sample + add) ...\n", nlist);
    HAMDB_ASSIGN_OR_RETURN(std::unique_ptr<FaissIvfIndex> index,
                           FaissIvfIndex::Create(bits, static_cast<int>(nlist)));
    const auto t0 = Clock::now();
    HAMDB_RETURN_IF_ERROR(index->Add(ids.data(), codes, n));
    const double build = Seconds(t0);
    const std::string trained =
        index->trained() ? " (train " + std::to_string(index->train_seconds()).substr(0, 5) + " s)"
                         : " (untrained)";
    b->ours.push_back(std::move(index));
    for (int nprobe : a.nprobe) {
      Method m = OurMethod(b->ours.back().get(), "hamdb IVF", threads, nprobe);
      m.params += trained;
      m.build_s = build;
      b->methods.push_back(std::move(m));
    }
  }
  if (Wanted(a, "gpu-flat")) {
    std::fprintf(stderr, "  build hamdb GPUFlat ...\n");
    auto index = std::make_unique<GpuFlatIndex>(bits);
    const auto t0 = Clock::now();
    HAMDB_RETURN_IF_ERROR(index->Add(ids.data(), codes, n));
    // The first search uploads the codes; count it as build time.
    std::vector<SearchResult> warm;
    HAMDB_RETURN_IF_ERROR(index->SearchBatch(codes, 1, 1, {}, &warm));
    const double build = Seconds(t0);
    Method m = OurMethod(index.get(), "hamdb GPUFlat", threads);
    m.gpu_flat_on_device = index->used_gpu();
    if (!index->used_gpu()) m.params += " (CPU fallback: " + index->gpu_status().ToString() + ")";
    m.build_s = build;
    b->ours.push_back(std::move(index));
    b->methods.push_back(std::move(m));
  }
  if (Wanted(a, "gpu-bucket")) {
    if (codebook.empty()) {
      return Status::InvalidArgument("method gpu-bucket needs --data clustered");
    }
    std::fprintf(stderr, "  build hamdb GPUBucket ...\n");
    IndexOptions options;
    options.codebook = codebook;
    HAMDB_ASSIGN_OR_RETURN(std::unique_ptr<BinaryIndex> made,
                           MakeIndex("GPUBucket", bits, options));
    auto* index = dynamic_cast<GpuListIndex*>(made.get());
    const auto t0 = Clock::now();
    HAMDB_RETURN_IF_ERROR(made->Add(ids.data(), codes, n));
    std::vector<SearchResult> warm;  // the first search uploads the lists
    HAMDB_RETURN_IF_ERROR(made->SearchBatch(codes, 1, 1, {}, &warm));
    const double build = Seconds(t0);
    const std::string fallback =
        index->used_gpu() ? "" : " (CPU fallback: " + index->gpu_status().ToString() + ")";
    b->ours.push_back(std::move(made));
    for (int nprobe : a.bucket_nprobe) {
      Method m = OurMethod(b->ours.back().get(), "hamdb GPUBucket", threads, nprobe);
      m.params += fallback;
      m.build_s = build;
      b->methods.push_back(std::move(m));
    }
  }
  if (Wanted(a, "faiss-flat")) {
    std::fprintf(stderr, "  build faiss IndexBinaryFlat ...\n");
    const auto t0 = Clock::now();
    b->faiss_flat = std::make_unique<faiss::IndexBinaryFlat>(bits);
    b->faiss_flat->add(n, codes);
    Method m;
    m.name = "FAISS IndexBinaryFlat";
    m.params = "-";
    m.build_s = Seconds(t0);
    m.bytes_per_item = static_cast<double>(b->faiss_flat->xb.size()) / n;
    m.memory_estimated = true;
    faiss::IndexBinaryFlat* index = b->faiss_flat.get();
    m.search = [index](const uint8_t* q, size_t nq, size_t k, Results* out) {
      std::vector<int32_t> d(nq * k);
      std::vector<FaissId> l(nq * k);
      index->search(nq, q, k, d.data(), l.data());
      *out = FromFaiss(nq, k, d, l);
    };
    b->methods.push_back(std::move(m));
  }
  if (Wanted(a, "faiss-mih")) {
    // Same substring count as our automatic MIH; b bits per table.
    const int nhash = MihIndex::ChooseNumSubstrings(n, bits);
    const int hb = std::min(bits / nhash, 63);
    std::fprintf(stderr, "  build faiss IndexBinaryMultiHash(nhash=%d, b=%d) ...\n", nhash, hb);
    const auto t0 = Clock::now();
    b->faiss_mih = std::make_unique<faiss::IndexBinaryMultiHash>(bits, nhash, hb);
    b->faiss_mih->add(n, codes);
    const double build = Seconds(t0);
    // Estimate: stored codes + per-table std::unordered_map: a node (key,
    // vector header, next pointer, ~16 bytes malloc overhead) per bucket,
    // the bucket array, and the id vectors' capacity.
    double bytes = static_cast<double>(b->faiss_mih->storage->xb.size());
    for (const auto& map : b->faiss_mih->maps) {
      bytes += map.bucket_count() * sizeof(void*) + map.size() * 64.0;
      for (const auto& kv : map) bytes += kv.second.capacity() * sizeof(FaissId);
    }
    faiss::IndexBinaryMultiHash* index = b->faiss_mih.get();
    for (int nflip : a.nflip) {
      Method m;
      m.name = "FAISS IndexBinaryMultiHash";
      m.params = "nhash=" + std::to_string(nhash) + " b=" + std::to_string(hb) +
                 " nflip=" + std::to_string(nflip);
      m.build_s = build;
      m.bytes_per_item = bytes / n;
      m.memory_estimated = true;
      m.search = [index, nflip](const uint8_t* q, size_t nq, size_t k, Results* out) {
        index->nflip = nflip;
        std::vector<int32_t> d(nq * k);
        std::vector<FaissId> l(nq * k);
        index->search(nq, q, k, d.data(), l.data());
        *out = FromFaiss(nq, k, d, l);
      };
      b->methods.push_back(std::move(m));
    }
  }
  if (Wanted(a, "faiss-ivf")) {
    size_t nlist = a.nlist;
    if (nlist == 0) {
      nlist = std::clamp<size_t>(static_cast<size_t>(std::sqrt(static_cast<double>(n))), 16, 1024);
    }
    std::fprintf(stderr, "  build faiss IndexBinaryIVF(nlist=%zu): train + add ...\n", nlist);
    const auto t0 = Clock::now();
    b->ivf_quantizer = std::make_unique<faiss::IndexBinaryFlat>(bits);
    b->faiss_ivf = std::make_unique<faiss::IndexBinaryIVF>(b->ivf_quantizer.get(), bits, nlist);
    // Train on a sample (FAISS's k-means would subsample to 256 * nlist
    // anyway, with a warning).
    const size_t ntrain = std::min(n, 64 * nlist);
    b->faiss_ivf->train(ntrain, codes);
    b->faiss_ivf->add(n, codes);
    const double build = Seconds(t0);
    double bytes = static_cast<double>(b->ivf_quantizer->xb.size());
    for (size_t l = 0; l < nlist; ++l) {
      bytes += b->faiss_ivf->invlists->list_size(l) * (cb + sizeof(FaissId)) + 48;
    }
    faiss::IndexBinaryIVF* index = b->faiss_ivf.get();
    for (int nprobe : a.nprobe) {
      Method m;
      m.name = "FAISS IndexBinaryIVF";
      m.params = "nlist=" + std::to_string(nlist) + " nprobe=" + std::to_string(nprobe);
      m.build_s = build;
      m.bytes_per_item = bytes / n;
      m.memory_estimated = true;
      m.search = [index, nprobe](const uint8_t* q, size_t nq, size_t k, Results* out) {
        index->nprobe = nprobe;
        std::vector<int32_t> d(nq * k);
        std::vector<FaissId> l(nq * k);
        index->search(nq, q, k, d.data(), l.data());
        *out = FromFaiss(nq, k, d, l);
      };
      b->methods.push_back(std::move(m));
    }
  }
  return Status::OK();
}

// One row per method. The single-query latencies are taken interleaved, in
// runs of 10 queries per method, the methods in turn (starting with a
// different one each round), so that the machine's slow and fast moments
// fall on all of them alike and their p50s compare side by side; a method
// that follows another meets its own data out of the caches at the start
// of each run (except mih, mih-probe and mih-scan, one index under three
// modes, which warm each other's codes). Then each method's batch.
std::vector<Row> Measure(const std::vector<Method>& methods, const uint8_t* queries, size_t nq,
                         size_t nlat, size_t k, size_t cb, const Results& truth) {
  const size_t nm = methods.size();
  std::vector<Row> rows(nm);
  std::vector<std::vector<double>> lat(nm);
  for (size_t j = 0; j < nm; ++j) {
    const Method& m = methods[j];
    Row& r = rows[j];
    r.name = m.name;
    r.params = m.params;
    r.build_s = m.build_s;
    r.gpu_flat_on_device = m.gpu_flat_on_device;
    r.bytes_per_item = m.bytes_per_item;
    r.memory_estimated = m.memory_estimated;
    try {
      Results one;
      m.search(queries, 1, k, &one);  // warm-up
    } catch (const std::exception& e) {
      r.error = e.what();
    }
  }
  constexpr size_t kRun = 10;  // queries a method answers in a row
  for (size_t i0 = 0; i0 < nlat; i0 += kRun) {
    for (size_t step = 0; step < nm; ++step) {
      const size_t j = (i0 / kRun + step) % nm;
      for (size_t i = i0; i < std::min(nlat, i0 + kRun) && rows[j].error.empty(); ++i) {
        try {
          Results one;
          const auto t0 = Clock::now();
          methods[j].search(queries + (i % nq) * cb, 1, k, &one);
          lat[j].push_back(Seconds(t0) * 1e3);
        } catch (const std::exception& e) {
          rows[j].error = e.what();
        }
      }
    }
  }
  for (size_t j = 0; j < nm; ++j) {
    Row& r = rows[j];
    if (!r.error.empty()) continue;
    std::fprintf(stderr, "  k=%zu: %s %s batch ...\n", k, methods[j].name.c_str(), methods[j].params.c_str());
    try {
      r.p50_ms = Percentile(lat[j], 0.50);
      r.p99_ms = Percentile(lat[j], 0.99);
      Results batch;
      const auto t0 = Clock::now();
      methods[j].search(queries, nq, k, &batch);
      r.qps = nq / Seconds(t0);
      r.recall = Recall(batch, truth);
      r.exact = Exactness(batch, truth);
      if (methods[j].note) r.params += methods[j].note(queries, nq, k);
    } catch (const std::exception& e) {
      r.error = e.what();
    }
  }
  return rows;
}

int RunBenchIndex(const BenchIndexArgs& a) {
  for (const std::string& m : a.methods) {
    if (std::find(std::begin(kAllMethods), std::end(kAllMethods), m) == std::end(kAllMethods)) {
      return Fail(Status::InvalidArgument("unknown method '" + m +
                                          "' (flat, mih, faiss-flat, faiss-mih, faiss-ivf, "
                                          "bucket, ivf, gpu-flat, gpu-bucket)"));
    }
  }
  for (const std::string& d : a.data) {
    if (d != "uniform" && d != "clustered") {
      return Fail(Status::InvalidArgument("--data must be uniform or clustered, got " + d));
    }
  }
  if (a.queries == 0) return Fail(Status::InvalidArgument("--queries must be at least 1"));
  for (size_t k : a.k) {
    if (k == 0) return Fail(Status::InvalidArgument("--k values must be at least 1"));
  }
  const int threads = a.threads > 0
                          ? a.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  omp_set_num_threads(threads);

  std::fprintf(stderr, "[bench index] streaming ceiling over %.2f GiB, %d threads ...\n",
               a.ceiling_gib, threads);
  const double ceiling_gbs = MeasureCeiling(a.ceiling_gib, threads);
  std::string table;
  if (ceiling_gbs > 0) {
    char line[320];
    std::snprintf(line, sizeof line,
                  "Streaming ceiling: XOR + popcount (%s kernel) over %.2f GiB with %d threads: "
                  "%.1f GB/s = %.2f G 64-bit codes/s (median of 3). The \"vs ceiling\" column is "
                  "the bytes of codes one query (n codes in p50) and the batch (QPS x n) cover per "
                  "second, as a share of it.\n\n",
                  HammingIsaName(SelectHammingKernel(8).isa), a.ceiling_gib, threads, ceiling_gbs,
                  ceiling_gbs / 8);
    table += line;
  }
  table +=
      "| n | bits | data | k | method | params | build s | B/item | p50 ms | p99 ms | batch QPS | "
      "vs FAISS Flat (QPS / p50) | vs ceiling (p50 / batch) | recall@k | exact |\n"
      "|---:|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  std::printf("%s", table.c_str());
  std::fflush(stdout);
  for (size_t n : a.n) {
    for (int bits : a.bits) {
      if (Status st = ValidateCodeBits(bits); !st.ok()) return Fail(st);
      const size_t cb = code_bytes(bits);
      for (const std::string& data : a.data) {
        std::fprintf(stderr, "[bench index] n=%zu bits=%d data=%s threads=%d: generating\n", n,
                     bits, data.c_str(), threads);
        SyntheticSpec spec;
        spec.kind = data;
        spec.seed = a.seed;
        spec.num_centres = a.centres;
        spec.flip_prob = a.flip;
        // The queries are a.queries further items of the same distribution.
        StatusOr<SyntheticCodes> gen = GenerateCodes(spec, n + a.queries, bits);
        if (!gen.ok()) return Fail(gen.status());
        const uint8_t* codes = gen->codes.data();
        const uint8_t* queries = codes + n * cb;
        Built built;
        try {
          Status st = BuildAll(a, n, bits, codes, gen->centre_codes, threads, &built);
          if (!st.ok()) return Fail(st);
        } catch (const std::exception& e) {
          return Fail(Status::Internal(std::string("building FAISS indexes: ") + e.what()));
        }
        {
          const std::string memory = MemoryLines(built, n, bits, data);
          table += memory;
          std::printf("%s", memory.c_str());
        }
        // The exact reference: our Flat, built if it is not benchmarked.
        BinaryIndex* oracle = nullptr;
        std::unique_ptr<BinaryIndex> own_oracle;
        for (auto& idx : built.ours) {
          if (idx->spec() == "Flat") oracle = idx.get();
        }
        if (oracle == nullptr) {
          own_oracle = std::move(MakeIndex("Flat", bits)).value();
          std::vector<uint64_t> ids(n);
          for (size_t i = 0; i < n; ++i) ids[i] = i;
          if (Status st = own_oracle->Add(ids.data(), codes, n); !st.ok()) return Fail(st);
          oracle = own_oracle.get();
        }
        for (size_t k : a.k) {
          std::fprintf(stderr, "  k=%zu: exact reference ...\n", k);
          Results truth;
          try {
            OurMethod(oracle, "oracle", threads).search(queries, a.queries, k, &truth);
          } catch (const std::exception& e) {
            return Fail(Status::Internal(e.what()));
          }
          std::fprintf(stderr, "  k=%zu: single queries, %zu methods interleaved ...\n", k, built.methods.size());
          std::vector<Row> rows = Measure(built.methods, queries, a.queries, a.latency_queries, k, cb, truth);
          double flat_qps = 0, flat_p50 = 0;
          for (const Row& r : rows) {
            if (r.name == "FAISS IndexBinaryFlat" && r.error.empty()) {
              flat_qps = r.qps;
              flat_p50 = r.p50_ms;
            }
          }
          for (const Row& r : rows) {
            const std::string line = FormatRow(n, bits, data, k, r, flat_qps, flat_p50, ceiling_gbs);
            table += line;
            std::printf("%s", line.c_str());
          }
          for (const Row& r : rows) {
            const std::string line = GpuScanRate(r, n, bits, k, a.gpu_bandwidth_gbs);
            table += line;
            std::printf("%s", line.c_str());
          }
          std::fflush(stdout);
        }
      }
    }
  }
  if (!a.out.empty()) {
    Status s = AppendBenchTable(a.out, CommandLine(a), table,
                                " (threads resolved to " + std::to_string(threads) + ")");
    if (!s.ok()) return Fail(s);
  }
  return 0;
}

}  // namespace

void AddBenchIndexCommand(CLI::App* bench, int* exit_code) {
  auto a = std::make_shared<BenchIndexArgs>();
  CLI::App* cmd = bench->add_subcommand(
      "index", "Exact Flat and MIH beside FAISS binary Flat, MultiHash and IVF on the same codes");
  cmd->add_option("--n", a->n, "Database sizes")->delimiter(',')->capture_default_str();
  cmd->add_option("--bits", a->bits, "Code lengths")->delimiter(',')->capture_default_str();
  cmd->add_option("--data", a->data, "uniform and/or clustered")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--k", a->k, "Neighbour counts")->delimiter(',')->capture_default_str();
  cmd->add_option("--queries", a->queries, "Queries per batch (QPS, recall)")
      ->capture_default_str();
  cmd->add_option("--latency-queries", a->latency_queries, "Single queries timed for p50/p99")
      ->capture_default_str();
  cmd->add_option("--threads", a->threads, "Threads for ours and FAISS (0 = all cores)")
      ->capture_default_str();
  cmd->add_option("--methods", a->methods,
                  "flat, mih, mih-probe, mih-scan (MIH with either path forced), faiss-flat, faiss-mih, "
                  "faiss-ivf, bucket, ivf, gpu-flat, gpu-bucket")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--nflip", a->nflip, "IndexBinaryMultiHash nflip values")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--nprobe", a->nprobe, "IndexBinaryIVF nprobe values (faiss-ivf, ivf)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--bucket-nprobe", a->bucket_nprobe,
                  "Class-bucket nprobe values (bucket; -1 = until provably exact)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--centres", a->centres, "Clustered data: class codes (the bucket codebook)")
      ->capture_default_str();
  cmd->add_option("--flip", a->flip, "Clustered data: per-bit flip probability")
      ->capture_default_str();
  cmd->add_option("--nlist", a->nlist, "IndexBinaryIVF lists (0 = clamp(sqrt(n), 16, 1024))")
      ->capture_default_str();
  cmd->add_option("--seed", a->seed, "Data seed")->capture_default_str();
  cmd->add_option("--ceiling-gib", a->ceiling_gib,
                  "GiB streamed to measure the machine's XOR + popcount ceiling (0: skip)")
      ->capture_default_str();
  cmd->add_option("--gpu-bandwidth", a->gpu_bandwidth_gbs,
                  "Device memory bandwidth in GB/s for the GPUFlat scan-rate line")
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Append the markdown table and command to this file");
  cmd->callback([a, exit_code] { *exit_code = RunBenchIndex(*a); });
}

}  // namespace hamdb::tools
