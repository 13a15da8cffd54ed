// CUDA implementation of DeviceCodeSet (contract in gpu_scan.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "index/gpu/gpu_scan.h"

namespace hamdb::gpu {
namespace {

constexpr int kThreads = 256;
// Queries per launch: bounds the histogram and segment scratch.
constexpr size_t kQueryChunk = 256;
// Slots each thread should handle before another block is worth launching.
constexpr size_t kSlotsPerThread = 8;
// Slot blocks per query (grid y; at most 65535).
constexpr unsigned kMaxSlotBlocks = 4096;

Status FromCuda(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::OK();
  const std::string msg = std::string(what) + ": " + cudaGetErrorString(err);
  // Clear a sticky-free error so later calls start clean.
  cudaGetLastError();
  switch (err) {
    case cudaErrorMemoryAllocation:
      return Status::ResourceExhausted(msg);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
    case cudaErrorInvalidDevice:
      return Status::FailedPrecondition(msg);
    default:
      return Status::Internal(msg);
  }
}

#define HAMDB_CUDA_RETURN(call, what) HAMDB_RETURN_IF_ERROR(FromCuda((call), (what)))

// Device memory that grows on demand and is freed with its owner.
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr != nullptr) cudaFree(ptr);
  }
  Status Reserve(size_t want, const char* what) {
    if (want <= bytes) return Status::OK();
    if (ptr != nullptr) cudaFree(ptr);
    ptr = nullptr;
    bytes = 0;
    HAMDB_CUDA_RETURN(cudaMalloc(&ptr, std::max<size_t>(want, 256)), what);
    bytes = std::max<size_t>(want, 256);
    return Status::OK();
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
};

__device__ __forceinline__ uint32_t SlotDistance(const uint32_t* __restrict__ codes,
                                                 uint64_t capacity, int words, const uint32_t* q,
                                                 uint64_t slot) {
  uint32_t d = 0;
  for (int w = 0; w < words; ++w)
    d += __popc(codes[static_cast<uint64_t>(w) * capacity + slot] ^ q[w]);
  return d;
}

// Pass 1: per-query distance histograms over the query's segments.
// grid = (queries, slot blocks): the query index varies fastest, so the
// blocks resident at one time are mostly the same slot range for different
// queries and share its codes through L2, instead of every query streaming
// the whole set from DRAM on its own. shared = words + bits + 1 uint32.
__global__ void HistogramKernel(const uint32_t* __restrict__ codes, uint64_t capacity, int words,
                                int bits, const uint32_t* __restrict__ queries,
                                const uint64_t* __restrict__ seg_start,
                                const uint64_t* __restrict__ seg_size,
                                const uint32_t* __restrict__ seg_begin, uint32_t* hist) {
  extern __shared__ uint32_t shared[];
  uint32_t* q = shared;
  uint32_t* h = shared + words;
  const uint32_t qi = blockIdx.x;
  for (int i = threadIdx.x; i < words; i += blockDim.x) q[i] = queries[qi * words + i];
  for (int i = threadIdx.x; i <= bits; i += blockDim.x) h[i] = 0;
  __syncthreads();
  const uint64_t stride = static_cast<uint64_t>(gridDim.y) * blockDim.x;
  for (uint32_t s = seg_begin[qi]; s < seg_begin[qi + 1]; ++s) {
    const uint64_t begin = seg_start[s];
    const uint64_t size = seg_size[s];
    for (uint64_t j = static_cast<uint64_t>(blockIdx.y) * blockDim.x + threadIdx.x; j < size;
         j += stride) {
      atomicAdd(&h[SlotDistance(codes, capacity, words, q, begin + j)], 1u);
    }
  }
  __syncthreads();
  uint32_t* out = hist + static_cast<uint64_t>(qi) * (bits + 1);
  for (int i = threadIdx.x; i <= bits; i += blockDim.x) {
    if (h[i] != 0) atomicAdd(&out[i], h[i]);
  }
}

// Select: one thread per query finds T (smallest distance with >= k slots
// at or below it, or bits when fewer) and the number of slots <= T.
__global__ void SelectKernel(const uint32_t* __restrict__ hist, int bits, uint32_t nq, uint64_t k,
                             uint32_t* threshold, uint32_t* count) {
  const uint32_t qi = blockIdx.x * blockDim.x + threadIdx.x;
  if (qi >= nq) return;
  const uint32_t* h = hist + static_cast<uint64_t>(qi) * (bits + 1);
  uint32_t t = 0;
  uint64_t cum = h[0];
  while (cum < k && t < static_cast<uint32_t>(bits)) cum += h[++t];
  threshold[qi] = t;
  count[qi] = static_cast<uint32_t>(cum);
}

// Pass 2: every slot with distance <= T, appended at the query's offset.
__global__ void CollectKernel(const uint32_t* __restrict__ codes, uint64_t capacity, int words,
                              const uint32_t* __restrict__ queries,
                              const uint64_t* __restrict__ seg_start,
                              const uint64_t* __restrict__ seg_size,
                              const uint32_t* __restrict__ seg_begin,
                              const uint32_t* __restrict__ threshold,
                              const uint64_t* __restrict__ offset, uint32_t* cursor, uint2* out) {
  extern __shared__ uint32_t shared[];
  uint32_t* q = shared;
  const uint32_t qi = blockIdx.x;
  for (int i = threadIdx.x; i < words; i += blockDim.x) q[i] = queries[qi * words + i];
  __syncthreads();
  const uint32_t t = threshold[qi];
  const uint64_t stride = static_cast<uint64_t>(gridDim.y) * blockDim.x;
  for (uint32_t s = seg_begin[qi]; s < seg_begin[qi + 1]; ++s) {
    const uint64_t begin = seg_start[s];
    const uint64_t size = seg_size[s];
    for (uint64_t j = static_cast<uint64_t>(blockIdx.y) * blockDim.x + threadIdx.x; j < size;
         j += stride) {
      const uint64_t slot = begin + j;
      const uint32_t d = SlotDistance(codes, capacity, words, q, slot);
      if (d <= t) {
        const uint32_t at = atomicAdd(&cursor[qi], 1u);
        out[offset[qi] + at] = make_uint2(static_cast<uint32_t>(slot), d);
      }
    }
  }
}

// Packs n codes of cb bytes into words-major uint32 (zero padded).
void Transpose(const uint8_t* codes, size_t n, size_t cb, int words, std::vector<uint32_t>* out) {
  out->assign(static_cast<size_t>(words) * n, 0);
  for (size_t i = 0; i < n; ++i) {
    for (int w = 0; w < words; ++w) {
      uint32_t v = 0;
      const size_t off = static_cast<size_t>(w) * 4;
      std::memcpy(&v, codes + i * cb + off, std::min<size_t>(4, cb - off));
      (*out)[static_cast<size_t>(w) * n + i] = v;
    }
  }
}

}  // namespace

struct DeviceCodeSet::Impl {
  int bits = 0;
  size_t cb = 0;
  int words = 0;
  size_t n = 0;
  DeviceBuffer codes, queries, seg_start, seg_size, seg_begin, hist, threshold, count, offset,
      cursor, out;
};

Status DeviceStatus() {
  int devices = 0;
  HAMDB_CUDA_RETURN(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  if (devices == 0) return Status::FailedPrecondition("no CUDA device");
  return Status::OK();
}

StatusOr<std::unique_ptr<DeviceCodeSet>> DeviceCodeSet::Create(int bits) {
  HAMDB_RETURN_IF_ERROR(DeviceStatus());
  auto impl = std::make_unique<Impl>();
  impl->bits = bits;
  impl->cb = (static_cast<size_t>(bits) + 7) / 8;
  impl->words = static_cast<int>((impl->cb + 3) / 4);
  return std::unique_ptr<DeviceCodeSet>(new DeviceCodeSet(std::move(impl)));
}

DeviceCodeSet::DeviceCodeSet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DeviceCodeSet::~DeviceCodeSet() = default;
size_t DeviceCodeSet::size() const { return impl_->n; }
int DeviceCodeSet::bits() const { return impl_->bits; }

Status DeviceCodeSet::Upload(const uint8_t* codes, size_t n) {
  Impl& m = *impl_;
  if (n >= UINT32_MAX) return Status::InvalidArgument("DeviceCodeSet holds at most 2^32 - 2 codes");
  std::vector<uint32_t> host;
  try {
    Transpose(codes, n, m.cb, m.words, &host);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("DeviceCodeSet::Upload: host out of memory");
  }
  m.n = 0;
  HAMDB_RETURN_IF_ERROR(m.codes.Reserve(host.size() * sizeof(uint32_t), "cudaMalloc codes"));
  if (!host.empty()) {
    HAMDB_CUDA_RETURN(cudaMemcpy(m.codes.ptr, host.data(), host.size() * sizeof(uint32_t),
                                 cudaMemcpyHostToDevice),
                      "upload codes");
  }
  m.n = n;
  return Status::OK();
}

Status DeviceCodeSet::ThresholdScan(const uint8_t* queries, size_t nq, size_t k,
                                    const std::vector<Segment>& segs,
                                    const std::vector<uint32_t>& seg_begin,
                                    std::vector<std::vector<Candidate>>* out) {
  Impl& m = *impl_;
  if (out == nullptr) return Status::InvalidArgument("ThresholdScan: out is null");
  if (seg_begin.size() != nq + 1 || seg_begin.back() != segs.size()) {
    return Status::InvalidArgument(
        "ThresholdScan: seg_begin must have nq + 1 entries ending at segs.size()");
  }
  for (const Segment& s : segs) {
    if (s.begin > m.n || s.size > m.n - s.begin) {
      return Status::InvalidArgument("ThresholdScan: segment outside the code set");
    }
  }
  out->assign(nq, {});
  if (k == 0 || nq == 0) return Status::OK();
  const size_t hist_width = static_cast<size_t>(m.bits) + 1;
  const size_t shared_hist = (static_cast<size_t>(m.words) + hist_width) * sizeof(uint32_t);
  const size_t shared_collect = static_cast<size_t>(m.words) * sizeof(uint32_t);
  // An empty set still needs a valid codes pointer for the kernels.
  HAMDB_RETURN_IF_ERROR(m.codes.Reserve(sizeof(uint32_t), "cudaMalloc codes"));

  for (size_t q0 = 0; q0 < nq; q0 += kQueryChunk) {
    const size_t qc = std::min(kQueryChunk, nq - q0);
    // Queries as words, row-major (one query per row).
    std::vector<uint32_t> hq;
    Transpose(queries + q0 * m.cb, qc, m.cb, m.words, &hq);
    std::vector<uint32_t> hq_rows(hq.size());
    for (size_t i = 0; i < qc; ++i) {
      for (int w = 0; w < m.words; ++w)
        hq_rows[i * m.words + w] = hq[static_cast<size_t>(w) * qc + i];
    }
    // This chunk's segments, rebased.
    const uint32_t s0 = seg_begin[q0], s1 = seg_begin[q0 + qc];
    std::vector<uint64_t> hs_start, hs_size;
    std::vector<uint32_t> hs_begin(qc + 1);
    uint64_t max_slots = 0;
    for (size_t i = 0; i < qc; ++i) {
      hs_begin[i] = seg_begin[q0 + i] - s0;
      uint64_t slots = 0;
      for (uint32_t s = seg_begin[q0 + i]; s < seg_begin[q0 + i + 1]; ++s) slots += segs[s].size;
      max_slots = std::max(max_slots, slots);
    }
    hs_begin[qc] = s1 - s0;
    for (uint32_t s = s0; s < s1; ++s) {
      hs_start.push_back(segs[s].begin);
      hs_size.push_back(segs[s].size);
    }
    const size_t nseg = std::max<size_t>(1, s1 - s0);
    HAMDB_RETURN_IF_ERROR(
        m.queries.Reserve(hq_rows.size() * sizeof(uint32_t), "cudaMalloc queries"));
    HAMDB_RETURN_IF_ERROR(m.seg_start.Reserve(nseg * sizeof(uint64_t), "cudaMalloc segments"));
    HAMDB_RETURN_IF_ERROR(m.seg_size.Reserve(nseg * sizeof(uint64_t), "cudaMalloc segments"));
    HAMDB_RETURN_IF_ERROR(m.seg_begin.Reserve((qc + 1) * sizeof(uint32_t), "cudaMalloc segments"));
    HAMDB_RETURN_IF_ERROR(
        m.hist.Reserve(qc * hist_width * sizeof(uint32_t), "cudaMalloc histogram"));
    HAMDB_RETURN_IF_ERROR(m.threshold.Reserve(qc * sizeof(uint32_t), "cudaMalloc threshold"));
    HAMDB_RETURN_IF_ERROR(m.count.Reserve(qc * sizeof(uint32_t), "cudaMalloc count"));
    HAMDB_RETURN_IF_ERROR(m.offset.Reserve(qc * sizeof(uint64_t), "cudaMalloc offset"));
    HAMDB_RETURN_IF_ERROR(m.cursor.Reserve(qc * sizeof(uint32_t), "cudaMalloc cursor"));
    HAMDB_CUDA_RETURN(cudaMemcpy(m.queries.ptr, hq_rows.data(), hq_rows.size() * sizeof(uint32_t),
                                 cudaMemcpyHostToDevice),
                      "upload queries");
    if (!hs_start.empty()) {
      HAMDB_CUDA_RETURN(cudaMemcpy(m.seg_start.ptr, hs_start.data(),
                                   hs_start.size() * sizeof(uint64_t), cudaMemcpyHostToDevice),
                        "upload segments");
      HAMDB_CUDA_RETURN(cudaMemcpy(m.seg_size.ptr, hs_size.data(),
                                   hs_size.size() * sizeof(uint64_t), cudaMemcpyHostToDevice),
                        "upload segments");
    }
    HAMDB_CUDA_RETURN(cudaMemcpy(m.seg_begin.ptr, hs_begin.data(),
                                 hs_begin.size() * sizeof(uint32_t), cudaMemcpyHostToDevice),
                      "upload segments");
    HAMDB_CUDA_RETURN(cudaMemset(m.hist.ptr, 0, qc * hist_width * sizeof(uint32_t)),
                      "clear histogram");
    HAMDB_CUDA_RETURN(cudaMemset(m.cursor.ptr, 0, qc * sizeof(uint32_t)), "clear cursor");

    const uint64_t per_block = static_cast<uint64_t>(kThreads) * kSlotsPerThread;
    const unsigned slot_blocks = static_cast<unsigned>(
        std::clamp<uint64_t>((max_slots + per_block - 1) / per_block, 1, kMaxSlotBlocks));
    const dim3 grid(static_cast<unsigned>(qc), slot_blocks);
    HistogramKernel<<<grid, kThreads, shared_hist>>>(
        m.codes.as<uint32_t>(), m.n, m.words, m.bits, m.queries.as<uint32_t>(),
        m.seg_start.as<uint64_t>(), m.seg_size.as<uint64_t>(), m.seg_begin.as<uint32_t>(),
        m.hist.as<uint32_t>());
    HAMDB_CUDA_RETURN(cudaGetLastError(), "histogram kernel");
    SelectKernel<<<static_cast<unsigned>((qc + kThreads - 1) / kThreads), kThreads>>>(
        m.hist.as<uint32_t>(), m.bits, static_cast<uint32_t>(qc), k, m.threshold.as<uint32_t>(),
        m.count.as<uint32_t>());
    HAMDB_CUDA_RETURN(cudaGetLastError(), "select kernel");
    std::vector<uint32_t> count(qc);
    HAMDB_CUDA_RETURN(
        cudaMemcpy(count.data(), m.count.ptr, qc * sizeof(uint32_t), cudaMemcpyDeviceToHost),
        "download counts");
    std::vector<uint64_t> offset(qc + 1, 0);
    for (size_t i = 0; i < qc; ++i) offset[i + 1] = offset[i] + count[i];
    HAMDB_RETURN_IF_ERROR(
        m.out.Reserve(std::max<uint64_t>(1, offset[qc]) * sizeof(uint2), "cudaMalloc candidates"));
    HAMDB_CUDA_RETURN(
        cudaMemcpy(m.offset.ptr, offset.data(), qc * sizeof(uint64_t), cudaMemcpyHostToDevice),
        "upload offsets");
    CollectKernel<<<grid, kThreads, shared_collect>>>(
        m.codes.as<uint32_t>(), m.n, m.words, m.queries.as<uint32_t>(), m.seg_start.as<uint64_t>(),
        m.seg_size.as<uint64_t>(), m.seg_begin.as<uint32_t>(), m.threshold.as<uint32_t>(),
        m.offset.as<uint64_t>(), m.cursor.as<uint32_t>(), m.out.as<uint2>());
    HAMDB_CUDA_RETURN(cudaGetLastError(), "collect kernel");
    std::vector<uint2> hits(offset[qc]);
    if (!hits.empty()) {
      HAMDB_CUDA_RETURN(
          cudaMemcpy(hits.data(), m.out.ptr, hits.size() * sizeof(uint2), cudaMemcpyDeviceToHost),
          "download candidates");
    }
    for (size_t i = 0; i < qc; ++i) {
      std::vector<Candidate>& dst = (*out)[q0 + i];
      dst.reserve(count[i]);
      for (uint64_t j = offset[i]; j < offset[i + 1]; ++j)
        dst.push_back(Candidate{hits[j].x, hits[j].y});
    }
  }
  return Status::OK();
}

}  // namespace hamdb::gpu
