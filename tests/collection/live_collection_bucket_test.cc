// LiveCollection wiring of the class-bucket index: the codebook travels from
// the collection's settings JSON (docs/storage.md) into MakeIndex.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "collection/live_collection.h"
#include "index/bucket_index.h"
#include "core/binary_code.h"
#include "core/hamming.h"
#include "tests/collection/collection_test_util.h"
#include "tests/db/test_util.h"

namespace hamdb {
namespace {

using testing_util::RandomCode;
using testing_util::SettingsWithCodebook;
using testing_util::TempDir;

TEST(CollectionSettings, ParsesTheAgreedLayout) {
  std::mt19937_64 rng(1);
  std::vector<std::vector<uint8_t>> classes = {RandomCode(rng, 20), RandomCode(rng, 20)};
  auto settings = ParseCollectionSettings(SettingsWithCodebook(classes, 20), 20);
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_EQ(settings->encoder_path, "/nowhere/model.pt");
  ASSERT_TRUE(settings->codebook.has_value());
  const std::vector<uint8_t> packed = PackedClassCodes(*settings->codebook);
  ASSERT_EQ(packed.size(), 6u);
  EXPECT_TRUE(std::equal(classes[0].begin(), classes[0].end(), packed.begin()));
  EXPECT_TRUE(std::equal(classes[1].begin(), classes[1].end(), packed.begin() + 3));
  // The writer and the reader agree.
  auto again = ParseCollectionSettings(CollectionSettingsJson(*settings), 20);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(PackedClassCodes(*again->codebook), packed);
  EXPECT_EQ(again->encoder_path, settings->encoder_path);

  auto empty = ParseCollectionSettings("{}", 20);
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->codebook.has_value());
  EXPECT_TRUE(empty->encoder_path.empty());
  EXPECT_EQ(ParseCollectionSettings("not json", 20).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(ParseCollectionSettings(SettingsWithCodebook(classes, 20), 24).status().code(),
            Status::Code::kInvalidArgument);  // bits mismatch
  EXPECT_EQ(ParseCollectionSettings("{\"codebook\": {\"bits\": 20, \"codes\": [\"zz0000\"]}}", 20)
                .status()
                .code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(ParseCollectionSettings("{\"codebook\": {\"bits\": 20, \"codes\": []}}", 20)
                .status()
                .code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(ParseCollectionSettings("{\"encoder\": 3}", 20).status().code(),
            Status::Code::kInvalidArgument);
}

TEST(LiveCollectionBucket, BuildsFromSettingsCodebookAndRebuildsOnOpen) {
  TempDir tmp;
  const int bits = 64;
  auto store = std::move(CodeStore::Open(tmp.path())).value();
  std::mt19937_64 rng(7);
  std::vector<std::vector<uint8_t>> classes;
  for (int c = 0; c < 12; ++c) classes.push_back(RandomCode(rng, bits));
  CollectionSpec spec{"llc", bits, "Bucket", SettingsWithCodebook(classes, bits)};
  ASSERT_TRUE(store->CreateCollection(spec).ok());
  ASSERT_TRUE(store->CreateCollection({"plain", bits, "Bucket"}).ok());

  std::map<uint64_t, std::vector<uint8_t>> model;
  auto oracle = [&](const std::vector<uint8_t>& q, size_t k) {
    std::vector<Neighbor> all;
    for (const auto& [id, code] : model)
      all.push_back({id, HammingDistance(q.data(), code.data(), 8)});
    std::sort(all.begin(), all.end(), NeighborLess);
    if (all.size() > k) all.resize(k);
    return all;
  };
  {
    auto live = LiveCollection::Open(store.get(), "llc");
    ASSERT_TRUE(live.ok()) << live.status().ToString();
    EXPECT_FALSE((*live)->degraded()) << (*live)->health().reason;
    EXPECT_EQ((*live)->spec().family, "bucket");
    ASSERT_TRUE((*live)->settings().codebook.has_value());
    EXPECT_EQ((*live)->settings().codebook->num_classes(), 12u);
    std::vector<ItemInput> batch(300);
    for (auto& in : batch) {
      in.id = rng() % 1000;
      in.code = classes[rng() % 12];
      for (int f = 0; f < 3; ++f) {
        const int b = static_cast<int>(rng() % bits);
        SetBit(in.code.data(), b, !GetBit(in.code.data(), b));
      }
    }
    ASSERT_TRUE((*live)->Put(batch).ok());
    for (auto& in : batch) model[*in.id] = in.code;
  }
  auto live = LiveCollection::Open(store.get(), "llc");  // rebuilt from the store
  ASSERT_TRUE(live.ok()) << live.status().ToString();
  EXPECT_EQ((*live)->index_size(), model.size());
  SearchParams until_exact;
  until_exact.nprobe = -1;
  for (int q = 0; q < 10; ++q) {
    const std::vector<uint8_t> query = q % 2 ? RandomCode(rng, bits) : classes[q];
    auto r = (*live)->Search(query.data(), 10, until_exact);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->neighbors, oracle(query, 10));
    EXPECT_TRUE(r->exact);
  }
  // A Bucket collection without a codebook (written to the store directly,
  // bypassing the checks of LiveCollection::Create) still opens: degraded,
  // saying why, and answering exactly by a scan of the store.
  auto plain = LiveCollection::Open(store.get(), "plain");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_TRUE((*plain)->degraded());
  EXPECT_NE((*plain)->health().reason.find("codebook"), std::string::npos)
      << (*plain)->health().reason;
  // Asking for that index explicitly is an error of Open.
  LiveCollectionOptions bucket;
  bucket.index_spec = "Bucket";
  EXPECT_EQ(LiveCollection::Open(store.get(), "plain", bucket).status().code(),
            Status::Code::kFailedPrecondition);
  // ... and another index opens it healthy.
  LiveCollectionOptions flat;
  flat.index_spec = "Flat";
  auto with_flat = LiveCollection::Open(store.get(), "plain", flat);
  ASSERT_TRUE(with_flat.ok());
  EXPECT_FALSE((*with_flat)->degraded());
}

}  // namespace
}  // namespace hamdb
