// GPU brute force: the host halves (result assembly, the CPU reference of
// the threshold scan) and the CPU fallback run everywhere; the device tests
// skip (GTEST_SKIP) when this build or machine has no usable GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <stdexcept>

#include "index/binary_index.h"
#include "index/bucket_index.h"
#include "index/faiss_ivf_index.h"
#include "index/gpu/device_mirror.h"
#include "index/gpu/gpu_flat_index.h"
#include "index/gpu/gpu_list_index.h"
#include "index/gpu/gpu_scan.h"
#include "index/synthetic.h"
#include "tests/index/index_test_util.h"
#include "index/index_factory.h"

namespace hamdb {
namespace {

using testing::DataKind;
using testing::Describe;
using testing::MakeCodes;
using testing::MakeIds;
using testing::MakeQueries;
using testing::NaiveModel;

bool SameCandidates(std::vector<gpu::Candidate> a, std::vector<gpu::Candidate> b) {
  auto less = [](const gpu::Candidate& x, const gpu::Candidate& y) {
    return x.slot != y.slot ? x.slot < y.slot : x.distance < y.distance;
  };
  std::sort(a.begin(), a.end(), less);
  std::sort(b.begin(), b.end(), less);
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](const gpu::Candidate& x, const gpu::Candidate& y) {
                                              return x.slot == y.slot && x.distance == y.distance;
                                            });
}

TEST(GpuHostTest, ThresholdScanReferencePlusAssemblyEqualsFlat) {
  for (int bits : {13, 64, 200}) {
    for (DataKind kind : {DataKind::kUniform, DataKind::kDuplicates}) {
      const size_t n = 700, cb = code_bytes(bits);
      std::vector<uint8_t> codes = MakeCodes(kind, n, bits, 3 + bits);
      std::vector<uint64_t> ids = MakeIds(n, 5 + bits);
      NaiveModel model(bits);
      model.Add(ids.data(), codes.data(), n);
      std::vector<uint8_t> queries = MakeQueries(codes, bits, 6, 9);
      for (size_t qi = 0; qi < 6; ++qi) {
        const uint8_t* q = &queries[qi * cb];
        for (size_t k : {size_t{1}, size_t{10}, size_t{333}, n + 1}) {
          auto cands = gpu::ThresholdScanHost(codes.data(), bits, q, k, {gpu::Segment{0, n}});
          EXPECT_GE(cands.size(), std::min(k, n));
          EXPECT_EQ(gpu::AssembleTopK(cands, ids.data(), k), model.Knn(q, k))
              << "bits=" << bits << " k=" << k;
        }
        // Segments: only slots [100, 300) and [500, 650) are searched.
        NaiveModel part(bits);
        part.Add(&ids[100], &codes[100 * cb], 200);
        part.Add(&ids[500], &codes[500 * cb], 150);
        auto cands = gpu::ThresholdScanHost(codes.data(), bits, q, 20,
                                            {gpu::Segment{100, 200}, gpu::Segment{500, 150}});
        EXPECT_EQ(gpu::AssembleTopK(cands, ids.data(), 20), part.Knn(q, 20));
      }
    }
  }
}

TEST(GpuFlatIndexTest, EqualsFlatOnDeviceOrFallback) {
  const int bits = 64;
  const size_t n = 5000, cb = 8;
  auto made = MakeIndex("GPUFlat", bits);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  auto& index = dynamic_cast<GpuFlatIndex&>(**made);
  EXPECT_EQ(index.spec(), "GPUFlat");
  std::vector<uint8_t> codes = MakeCodes(DataKind::kClustered, n, bits, 1);
  std::vector<uint64_t> ids = MakeIds(n, 2);
  NaiveModel model(bits);
  ASSERT_TRUE(index.Add(ids.data(), codes.data(), n).ok());
  model.Add(ids.data(), codes.data(), n);
  std::vector<uint8_t> queries = MakeQueries(codes, bits, 40, 3);
  for (int round = 0; round < 2; ++round) {
    std::vector<SearchResult> batch;
    ASSERT_TRUE(index.SearchBatch(queries.data(), 40, 17, {}, &batch).ok());
    ASSERT_EQ(batch.size(), 40u);
    for (size_t qi = 0; qi < 40; ++qi) {
      EXPECT_EQ(batch[qi].neighbors, model.Knn(&queries[qi * cb], 17))
          << "round " << round << " query " << qi << " " << Describe(batch[qi].neighbors);
      EXPECT_TRUE(batch[qi].exact);
    }
    // Writes between searches must reach the device mirror.
    std::vector<uint64_t> gone(ids.begin(), ids.begin() + 300);
    ASSERT_TRUE(index.Remove(gone.data(), gone.size(), nullptr).ok());
    model.Remove(gone.data(), gone.size());
    ids.erase(ids.begin(), ids.begin() + 300);
    ASSERT_TRUE(index.Add(&ids[0], &codes[4000 * cb], 100).ok());  // upserts
    model.Add(&ids[0], &codes[4000 * cb], 100);
  }
  auto one = index.Search(&queries[0], 5, {});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->neighbors, model.Knn(&queries[0], 5));
  auto range = index.RangeSearch(&queries[0], 4, {});
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->neighbors, model.Range(&queries[0], 4));
  // The fallback is used exactly when the device is not.
  EXPECT_EQ(index.used_gpu(), gpu::DeviceStatus().ok()) << index.gpu_status().ToString();
  if (!gpu::DeviceStatus().ok()) {
    EXPECT_FALSE(index.gpu_status().ok());
  }
}

// LLC-like codes and their codebook.
std::vector<uint8_t> LlcCodes(size_t n, int bits, size_t classes, std::vector<uint8_t>* codebook) {
  SyntheticSpec spec;
  spec.kind = "clustered";
  spec.num_centres = classes;
  spec.flip_prob = 0.06;
  spec.seed = 44;
  auto gen = GenerateCodes(spec, n, bits);
  EXPECT_TRUE(gen.ok());
  *codebook = gen->centre_codes;
  return gen->codes;
}

void ExpectSameResults(const std::vector<SearchResult>& got, const std::vector<SearchResult>& want,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].neighbors, want[i].neighbors) << what << " query " << i;
    EXPECT_EQ(got[i].exact, want[i].exact) << what << " query " << i;
    EXPECT_EQ(got[i].visited_buckets, want[i].visited_buckets) << what << " query " << i;
  }
}

// The GPU list path (plans, segments, assembly, exactness) with the host
// reference scan equals the wrapped index's own search; the public search
// equals it too, on the device or by fallback.
TEST(GpuListIndexTest, PlannedScanEqualsWrappedIndex) {
  const int bits = 64;
  const size_t n = 6000, cb = 8;
  std::vector<uint8_t> codebook;
  std::vector<uint8_t> codes = LlcCodes(n + 50, bits, 60, &codebook);
  std::vector<uint64_t> ids = MakeIds(n, 8);
  for (auto& id : ids) id &= ~(uint64_t{1} << 63);  // FAISS ids are below 2^63
  IndexOptions options;
  options.codebook = codebook;
  for (const char* spec : {"GPUBucket", "GPUBucket3", "GPUIVF32_4"}) {
    auto made = MakeIndex(spec, bits, options);
    ASSERT_TRUE(made.ok()) << spec << ": " << made.status().ToString();
    auto& index = dynamic_cast<GpuListIndex&>(**made);
    EXPECT_EQ(index.spec(), spec);
    ASSERT_TRUE(index.Add(ids.data(), codes.data(), n).ok()) << spec;
    std::vector<uint64_t> gone(ids.begin(), ids.begin() + 500);
    ASSERT_TRUE(index.Remove(gone.data(), gone.size(), nullptr).ok());
    const uint8_t* queries = &codes[n * cb];
    for (int nprobe : {0, 1, 2, 7}) {
      for (size_t k : {size_t{1}, size_t{10}, size_t{400}}) {
        SearchParams p;
        p.nprobe = nprobe;
        std::vector<SearchResult> want, host, got;
        ASSERT_TRUE(index.inner().SearchBatch(queries, 50, k, p, &want).ok());
        ASSERT_TRUE(index.SearchBatchHostScan(queries, 50, k, p, &host).ok());
        ASSERT_TRUE(index.SearchBatch(queries, 50, k, p, &got).ok());
        const std::string what =
            std::string(spec) + " nprobe=" + std::to_string(nprobe) + " k=" + std::to_string(k);
        ExpectSameResults(host, want, what + " (host scan)");
        ExpectSameResults(got, want, what);
        EXPECT_EQ(index.used_gpu(), gpu::DeviceStatus().ok());
      }
    }
    // nprobe = -1 (bucket) is decided bucket by bucket: the CPU answers.
    SearchParams until_exact;
    until_exact.nprobe = -1;
    std::vector<SearchResult> out;
    if (std::string(spec).rfind("GPUBucket", 0) == 0) {
      EXPECT_EQ(index.SearchBatchHostScan(queries, 3, 5, until_exact, &out).code(),
                Status::Code::kNotSupported);
      ASSERT_TRUE(index.SearchBatch(queries, 3, 5, until_exact, &out).ok());
      EXPECT_FALSE(index.used_gpu());
      for (const SearchResult& r : out) EXPECT_TRUE(r.exact);
    }
  }
  EXPECT_EQ(MakeIndex("GPUBucket", bits).status().code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(MakeIndex("GPUMIH", bits).status().code(), Status::Code::kInvalidArgument);
}

TEST(GpuDeviceTest, DeviceScanEqualsHostReference) {
  if (Status st = gpu::DeviceStatus(); !st.ok()) GTEST_SKIP() << "no GPU: " << st.ToString();
  for (int bits : {8, 64, 100, 256, 4096}) {
    const size_t n = bits == 4096 ? 500 : 20000, cb = code_bytes(bits);
    std::vector<uint8_t> codes = MakeCodes(DataKind::kClustered, n, bits, bits);
    auto set = gpu::DeviceCodeSet::Create(bits);
    ASSERT_TRUE(set.ok()) << set.status().ToString();
    ASSERT_TRUE((*set)->Upload(codes.data(), n).ok());
    const size_t nq = 300;  // more than one chunk of 256
    std::vector<uint8_t> queries = MakeQueries(codes, bits, nq, 4);
    std::vector<gpu::Segment> segs;
    std::vector<uint32_t> seg_begin = {0};
    std::mt19937_64 rng(bits);
    for (size_t qi = 0; qi < nq; ++qi) {
      if (qi % 3 == 0) {
        segs.push_back({0, n});
      } else if (qi % 3 == 1) {
        segs.push_back({n / 4, n / 3});
        segs.push_back({n / 2, n / 5});
      }  // qi % 3 == 2: no segments at all
      seg_begin.push_back(static_cast<uint32_t>(segs.size()));
    }
    for (size_t k : {size_t{1}, size_t{10}, size_t{1000}}) {
      std::vector<std::vector<gpu::Candidate>> out;
      ASSERT_TRUE((*set)->ThresholdScan(queries.data(), nq, k, segs, seg_begin, &out).ok());
      ASSERT_EQ(out.size(), nq);
      for (size_t qi = 0; qi < nq; ++qi) {
        std::vector<gpu::Segment> mine(segs.begin() + seg_begin[qi],
                                       segs.begin() + seg_begin[qi + 1]);
        auto want = gpu::ThresholdScanHost(codes.data(), bits, &queries[qi * cb], k, mine);
        EXPECT_TRUE(SameCandidates(out[qi], want)) << "bits=" << bits << " k=" << k << " q=" << qi;
      }
    }
  }
}

TEST(GpuDeviceTest, BadSegmentsAreErrorsNotCrashes) {
  if (Status st = gpu::DeviceStatus(); !st.ok()) GTEST_SKIP() << "no GPU: " << st.ToString();
  auto set = gpu::DeviceCodeSet::Create(64);
  ASSERT_TRUE(set.ok());
  std::vector<uint8_t> codes(80, 1);
  ASSERT_TRUE((*set)->Upload(codes.data(), 10).ok());
  std::vector<std::vector<gpu::Candidate>> out;
  EXPECT_EQ((*set)->ThresholdScan(codes.data(), 1, 5, {gpu::Segment{5, 6}}, {0, 1}, &out).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ((*set)->ThresholdScan(codes.data(), 1, 5, {gpu::Segment{0, 6}}, {0}, &out).code(),
            Status::Code::kInvalidArgument);
}

// Without a device the mirror gives up once, remembers why, and never calls
// back; with one it uploads once per version, keeps the copy across a
// planning refusal and re-creates it after a device failure.
TEST(DeviceMirrorTest, CreatesUploadsAndRecoversOnlyWhenItShould) {
  gpu::DeviceMirror mirror(64, "test");
  int uploads = 0, scans = 0;
  Status scan_result;
  auto upload = [&](gpu::DeviceCodeSet* set) {
    ++uploads;
    std::vector<uint8_t> codes(8 * 10, 3);
    return set->Upload(codes.data(), 10);
  };
  auto scan = [&](gpu::DeviceCodeSet*) {
    ++scans;
    return scan_result;
  };
  if (Status st = gpu::DeviceStatus(); !st.ok()) {
    for (int i = 0; i < 3; ++i) {
      Status r = mirror.Run(1, upload, scan);
      EXPECT_EQ(r.code(), st.code()) << r.ToString();
    }
    EXPECT_EQ(uploads, 0);
    EXPECT_EQ(scans, 0);
    EXPECT_EQ(mirror.status().code(), st.code());
    GTEST_SKIP() << "no GPU for the device half: " << st.ToString();
  }
  ASSERT_TRUE(mirror.Run(1, upload, scan).ok());
  ASSERT_TRUE(mirror.Run(1, upload, scan).ok());
  EXPECT_EQ(uploads, 1);  // same version: no upload
  ASSERT_TRUE(mirror.Run(2, upload, scan).ok());
  EXPECT_EQ(uploads, 2);
  scan_result = Status::NotSupported("plan refused");
  EXPECT_EQ(mirror.Run(2, upload, scan).code(), Status::Code::kNotSupported);
  scan_result = Status::OK();
  ASSERT_TRUE(mirror.Run(2, upload, scan).ok());
  EXPECT_EQ(uploads, 2);  // a refusal keeps the copy
  scan_result = Status::Internal("device fault");
  EXPECT_EQ(mirror.Run(2, upload, scan).code(), Status::Code::kInternal);
  scan_result = Status::OK();
  ASSERT_TRUE(mirror.Run(2, upload, scan).ok());
  EXPECT_EQ(uploads, 3);  // a failure drops the copy: recreated and uploaded
  auto throwing = [](gpu::DeviceCodeSet*) -> Status { throw std::runtime_error("boom"); };
  EXPECT_EQ(mirror.Run(2, upload, throwing).code(), Status::Code::kInternal);
  EXPECT_EQ(scans, 7);
}

}  // namespace
}  // namespace hamdb
