#include "db/code_store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "db/store_format.h"
#include "tests/db/test_util.h"

namespace hamdb {
namespace {

using testing_util::RandomCode;
using testing_util::TempDir;

std::unique_ptr<CodeStore> MustOpen(const std::string& dir) {
  auto s = CodeStore::Open(dir);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

bool Contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

TEST(CodeStore, CollectionsCreateListDrop) {
  TempDir tmp;
  auto store = MustOpen(tmp.path());
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->CreateCollection({"alpha", 64}).ok());
  ASSERT_TRUE(store->CreateCollection({"beta", 10, "Flat", R"({"note":"x"})"}).ok());
  Status dup = store->CreateCollection({"alpha", 64});
  EXPECT_EQ(dup.code(), Status::Code::kAlreadyExists);

  auto list = store->ListCollections();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "alpha");
  EXPECT_EQ((*list)[1].bits, 10);
  EXPECT_EQ((*list)[1].index_spec, "Flat");
  EXPECT_EQ((*list)[1].settings_json, R"({"note":"x"})");

  ASSERT_TRUE(store->PutCodes("alpha", nullptr, std::vector<uint8_t>(16, 1).data(), 2).ok());
  ASSERT_TRUE(store->DropCollection("alpha").ok());
  EXPECT_EQ(store->DropCollection("alpha").code(), Status::Code::kNotFound);
  // Re-created under the same name, the collection starts empty.
  ASSERT_TRUE(store->CreateCollection({"alpha", 64}).ok());
  auto count = store->Count("alpha");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 0u);

  store.reset();
  store = MustOpen(tmp.path());
  list = store->ListCollections();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u);
}

// Open deletes the snapshot files no collection reads (a dropped
// collection's, an interrupted write's .tmp) and keeps the rest.
TEST(CodeStore, OpenRemovesSnapshotsNoCollectionReads) {
  TempDir tmp;
  const std::string db = tmp.sub("db");
  std::string kept, dropped;
  {
    auto store = std::move(CodeStore::Open(db)).value();
    ASSERT_TRUE(store->CreateCollection({"a", 64, "Flat"}).ok());
    ASSERT_TRUE(store->CreateCollection({"b", 64, "Flat"}).ok());
    kept = store->SnapshotPath(*store->GetCollection("a"));
    dropped = store->SnapshotPath(*store->GetCollection("b"));
    ASSERT_TRUE(store->DropCollection("b").ok());
  }
  const std::filesystem::path folder = std::filesystem::path(kept).parent_path();
  std::filesystem::create_directories(folder);
  for (const std::string& f : {kept, dropped, kept + ".tmp", (folder / "README").string()}) {
    std::ofstream(f) << "x";
  }
  auto store = CodeStore::Open(db);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_TRUE(std::filesystem::exists(kept));
  EXPECT_FALSE(std::filesystem::exists(dropped));
  EXPECT_FALSE(std::filesystem::exists(kept + ".tmp"));
  EXPECT_TRUE(std::filesystem::exists(folder / "README"));
}

TEST(CodeStore, InvalidInputsGiveClearErrors) {
  TempDir tmp;
  auto store = MustOpen(tmp.path());
  EXPECT_EQ(store->CreateCollection({"", 8}).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store->CreateCollection({"-bad", 8}).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store->CreateCollection({"a/b", 8}).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store->CreateCollection({std::string(65, 'a'), 8}).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(store->CreateCollection({"c", 0}).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store->CreateCollection({"c", 5000}).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(store->CreateCollection({"c", 8, "MIH", "[1]"}).code(),
            Status::Code::kInvalidArgument);
  ASSERT_TRUE(store->CreateCollection({"c", 10}).ok());

  // Wrong code length: nothing from the batch is written.
  std::vector<ItemInput> items(3);
  items[0].code = {0x01, 0x00};
  items[1].code = {0x01, 0x00, 0x00};
  items[2].code = {0x01, 0x00};
  Status s = store->Put("c", items);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(Contains(s.message(), "item 1")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "need 2")) << s.message();
  EXPECT_EQ(*store->Count("c"), 0u);

  items[1].code = {0x00, 0x04};  // a padding bit of a 10-bit code
  s = store->Put("c", items);
  EXPECT_TRUE(Contains(s.message(), "padding")) << s.message();
  items[1].code = {0x00, 0x03};
  items[1].metadata_json = "{not json";
  s = store->Put("c", items);
  EXPECT_TRUE(Contains(s.message(), "metadata is not valid JSON")) << s.message();
  items[1].metadata_json.clear();
  items[2].class_code = std::vector<uint8_t>{1};
  s = store->Put("c", items);
  EXPECT_TRUE(Contains(s.message(), "class code")) << s.message();
  EXPECT_EQ(*store->Count("c"), 0u);

  Status missing = store->Put("nope", {});
  EXPECT_EQ(missing.code(), Status::Code::kNotFound);
  EXPECT_TRUE(Contains(missing.message(), "collection 'nope' does not exist"));
  EXPECT_EQ(store->Get("c", 99).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(store->Count("nope").status().code(), Status::Code::kNotFound);
}

TEST(CodeStore, FullItemsRoundTripAndUpsertReplacesWholeItem) {
  TempDir tmp;
  auto store = MustOpen(tmp.path());
  ASSERT_TRUE(store->CreateCollection({"c", 20}).ok());
  ItemInput in;
  in.id = 7;
  in.code = {0xAB, 0xCD, 0x0F};
  in.label = -3;
  in.class_code = std::vector<uint8_t>{0x01, 0x02, 0x03};
  in.metadata_json = R"({"source":"a.png"})";
  ASSERT_TRUE(store->Put("c", {in}).ok());
  auto got = store->Get("c", 7);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->code, in.code);
  EXPECT_EQ(got->label, std::optional<int64_t>(-3));
  EXPECT_EQ(got->class_code, in.class_code);
  EXPECT_EQ(got->metadata_json, in.metadata_json);

  ItemInput bare;
  bare.id = 7;
  bare.code = {0x00, 0x00, 0x01};
  ASSERT_TRUE(store->Put("c", {bare}).ok());
  got = store->Get("c", 7);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->code, bare.code);
  EXPECT_FALSE(got->label.has_value());
  EXPECT_FALSE(got->class_code.has_value());
  EXPECT_TRUE(got->metadata_json.empty());
  EXPECT_EQ(*store->Count("c"), 1u);
}

// Scores travel with the code: Put and PutCodes store them, Get and
// ScanCodes return them (NaN for an item without one in a chunk that has
// some), an upsert without a score drops it, they survive a reopen, and a
// score that is not finite refuses the whole batch.
TEST(CodeStore, ScoresRoundTripAndBadScoresStoreNothing) {
  TempDir tmp;
  {
    auto store = MustOpen(tmp.path());
    ASSERT_TRUE(store->CreateCollection({"c", 12}).ok());
    ItemInput a;
    a.id = 1;
    a.code = {0x01, 0x02};
    a.score = 0.93f;
    ItemInput b;
    b.id = 2;
    b.code = {0x03, 0x04};
    ASSERT_TRUE(store->Put("c", {a, b}).ok());
    const std::vector<uint64_t> ids = {3, 4};
    const std::vector<uint8_t> codes = {0x05, 0x06, 0x07, 0x08};
    const std::vector<float> scores = {-2.5f, 1e9f};
    ASSERT_TRUE(store->PutCodes("c", ids.data(), codes.data(), 2, {}, nullptr, scores.data()).ok());

    // Refused, whole: nothing of either batch is stored.
    ItemInput bad = a;
    bad.id = 10;
    bad.score = std::numeric_limits<float>::quiet_NaN();
    ItemInput good = b;
    good.id = 11;
    Status s = store->Put("c", {good, bad});
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
    EXPECT_NE(s.message().find("item 1: score must be a finite number"), std::string::npos)
        << s.ToString();
    const std::vector<uint64_t> more = {12, 13};
    const std::vector<float> inf = {1.f, std::numeric_limits<float>::infinity()};
    EXPECT_EQ(store->PutCodes("c", more.data(), codes.data(), 2, {}, nullptr, inf.data()).code(),
              Status::Code::kInvalidArgument);
    EXPECT_EQ(*store->Count("c"), 4u);
  }
  auto store = MustOpen(tmp.path());
  EXPECT_EQ(store->Get("c", 1)->score, std::optional<float>(0.93f));
  EXPECT_FALSE(store->Get("c", 2)->score.has_value());
  EXPECT_EQ(store->Get("c", 3)->score, std::optional<float>(-2.5f));
  EXPECT_EQ(store->Get("c", 4)->code, (std::vector<uint8_t>{0x07, 0x08}));
  std::vector<float> seen;
  ASSERT_TRUE(store
                  ->ScanCodes("c",
                              [&](const uint64_t*, const uint8_t*, const float* scores, size_t n) {
                                EXPECT_NE(scores, nullptr);
                                if (scores) seen.insert(seen.end(), scores, scores + n);
                                return true;
                              })
                  .ok());
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], 0.93f);
  EXPECT_TRUE(std::isnan(seen[1]));
  EXPECT_EQ(seen[3], 1e9f);
  // An upsert without a score drops it; a chunk with no score gets null.
  ASSERT_TRUE(store->PutCodes("c", std::vector<uint64_t>{1, 3, 4}.data(),
                              std::vector<uint8_t>(6, 0).data(), 3).ok());
  EXPECT_FALSE(store->Get("c", 1)->score.has_value());
  ASSERT_TRUE(store
                  ->ScanCodes("c",
                              [&](const uint64_t*, const uint8_t*, const float* scores, size_t) {
                                EXPECT_EQ(scores, nullptr);
                                return true;
                              })
                  .ok());
  uint64_t checked = 0;
  EXPECT_TRUE(store->Check(&checked).ok());
}

// Thumbnails live beside their item: a put stores one, an upsert without one
// (a Put or a bare-code PutCodes) and a delete remove it, a drop removes them
// all, they survive a reopen, and a bad one refuses the whole batch.
TEST(CodeStore, ThumbnailsFollowTheirItem) {
  TempDir tmp;
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + "rest of a png";
  const std::string jpg = std::string("\xff\xd8\xff", 3) + "rest of a jpeg";
  {
    auto store = MustOpen(tmp.path());
    ASSERT_TRUE(store->CreateCollection({"c", 8}).ok());
    ItemInput a, b, c;
    a.id = 1, a.code = {1}, a.thumbnail = png;
    b.id = 2, b.code = {2}, b.thumbnail = jpg;
    c.id = 3, c.code = {3};
    ASSERT_TRUE(store->Put("c", {a, b, c}).ok());
    EXPECT_EQ(*store->GetThumbnail("c", 1), png);
    EXPECT_EQ(*store->GetThumbnail("c", 2), jpg);
    EXPECT_EQ(store->GetThumbnail("c", 3).status().code(), Status::Code::kNotFound);
    EXPECT_EQ(store->GetThumbnail("c", 99).status().code(), Status::Code::kNotFound);
    EXPECT_EQ(store->GetThumbnail("nope", 1).status().code(), Status::Code::kNotFound);

    // Refused whole: not an image, or too large.
    ItemInput bad = c;
    bad.id = 4;
    bad.thumbnail = "GIF89a...";
    ItemInput big = c;
    big.id = 5;
    big.thumbnail = png + std::string(store_format::kMaxThumbnailBytes, 'x');
    for (const ItemInput& wrong : {bad, big}) {
      ItemInput fine = a;
      fine.id = 6;
      Status s = store->Put("c", {fine, wrong});
      EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
      EXPECT_NE(s.message().find("item 1: the thumbnail"), std::string::npos) << s.ToString();
    }
    EXPECT_EQ(store->GetThumbnail("c", 6).status().code(), Status::Code::kNotFound);
    EXPECT_EQ(*store->Count("c"), 3u);
  }
  auto store = MustOpen(tmp.path());
  EXPECT_EQ(*store->GetThumbnail("c", 1), png);
  uint64_t checked = 0;
  EXPECT_TRUE(store->Check(&checked).ok());
  // Upserts without a thumbnail remove it, whichever path they take.
  ItemInput a;
  a.id = 1, a.code = {7};
  ASSERT_TRUE(store->Put("c", {a}).ok());
  EXPECT_EQ(store->GetThumbnail("c", 1).status().code(), Status::Code::kNotFound);
  const uint64_t two = 2;
  const uint8_t code = 9;
  ASSERT_TRUE(store->PutCodes("c", &two, &code, 1).ok());
  EXPECT_EQ(store->GetThumbnail("c", 2).status().code(), Status::Code::kNotFound);
  a.thumbnail = jpg;
  ASSERT_TRUE(store->Put("c", {a}).ok());
  EXPECT_EQ(*store->GetThumbnail("c", 1), jpg);
  ASSERT_TRUE(store->Delete("c", {1}).ok());
  EXPECT_EQ(store->GetThumbnail("c", 1).status().code(), Status::Code::kNotFound);
  a.id = 8;
  ASSERT_TRUE(store->Put("c", {a}).ok());
  ASSERT_TRUE(store->DropCollection("c").ok());
  ASSERT_TRUE(store->CreateCollection({"c", 8}).ok());
  EXPECT_EQ(store->GetThumbnail("c", 8).status().code(), Status::Code::kNotFound);
}

// A batch is written in key order, not request order: the items of a batch
// given in descending id order all round-trip, and of an id given twice in
// one batch the later wins, also where the earlier one brought the first
// record and thumbnail the collection has ever had.
TEST(CodeStore, ABatchInAnyOrderStoresEachItemAndTheLaterOfTwoEqualIdsWins) {
  TempDir tmp;
  auto store = MustOpen(tmp.path());
  ASSERT_TRUE(store->CreateCollection({"c", 16}).ok());
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + "rest of a png";
  std::vector<ItemInput> batch;
  for (uint64_t id = 40; id >= 1; --id) {
    ItemInput in;
    in.id = id * 1000003;
    in.code = {static_cast<uint8_t>(id), static_cast<uint8_t>(id >> 8)};
    if (id % 3 == 0) in.label = static_cast<int64_t>(id);
    batch.push_back(in);
  }
  ItemInput rich;  // id 7: a record and a thumbnail, then bare
  rich.id = 7;
  rich.code = {0xAA, 0x00};
  rich.label = 5;
  rich.metadata_json = R"({"v":1})";
  rich.thumbnail = png;
  ItemInput bare;
  bare.id = 7;
  bare.code = {0xBB, 0x00};
  batch.insert(batch.begin() + 5, rich);
  batch.push_back(bare);
  std::vector<uint64_t> ids;
  ASSERT_TRUE(store->Put("c", batch, {}, &ids).ok());
  ASSERT_EQ(ids.size(), batch.size());
  for (size_t i = 0; i < batch.size(); ++i) EXPECT_EQ(ids[i], *batch[i].id);
  EXPECT_EQ(*store->Count("c"), 41u);
  for (uint64_t id = 1; id <= 40; ++id) {
    auto got = store->Get("c", id * 1000003);
    ASSERT_TRUE(got.ok()) << id;
    EXPECT_EQ(got->code, (std::vector<uint8_t>{static_cast<uint8_t>(id), static_cast<uint8_t>(id >> 8)}));
    EXPECT_EQ(got->label.has_value(), id % 3 == 0);
  }
  auto seven = store->Get("c", 7);
  ASSERT_TRUE(seven.ok());
  EXPECT_EQ(seven->code, bare.code);
  EXPECT_FALSE(seven->label.has_value());
  EXPECT_TRUE(seven->metadata_json.empty());
  EXPECT_EQ(store->GetThumbnail("c", 7).status().code(), Status::Code::kNotFound);
}

// SampleId returns stored ids only, reaches every id of an evenly spread
// collection, and says when there is nothing to sample.
TEST(CodeStore, SampleIdPicksStoredItems) {
  TempDir tmp;
  auto store = MustOpen(tmp.path());
  ASSERT_TRUE(store->CreateCollection({"c", 8}).ok());
  ASSERT_TRUE(store->CreateCollection({"d", 8}).ok());
  EXPECT_EQ(store->SampleId("c", 5).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(store->SampleId("nope", 5).status().code(), Status::Code::kNotFound);
  const std::vector<uint64_t> ids = {10, 20, 30, 40};
  const std::vector<uint8_t> codes(4, 0);
  ASSERT_TRUE(store->PutCodes("c", ids.data(), codes.data(), 4).ok());
  const uint64_t other = 1000;  // another collection's item is never picked
  ASSERT_TRUE(store->PutCodes("d", &other, codes.data(), 1).ok());
  std::set<uint64_t> seen;
  for (uint64_t r = 0; r < 200; ++r) {
    StatusOr<uint64_t> id = store->SampleId("c", r * 7919);
    ASSERT_TRUE(id.ok());
    EXPECT_TRUE(std::count(ids.begin(), ids.end(), *id)) << *id;
    seen.insert(*id);
  }
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_EQ(*store->SampleId("c", 30), 40u);  // min + 30: the largest id
  EXPECT_EQ(*store->SampleId("c", 31), 10u);  // wraps around
  EXPECT_EQ(*store->SampleId("c", 11), 30u);  // in a gap: the next stored id
}

TEST(CodeStore, AssignedIdsNeverCollideOrRepeat) {
  TempDir tmp;
  auto store = MustOpen(tmp.path());
  ASSERT_TRUE(store->CreateCollection({"c", 8}).ok());
  std::vector<uint64_t> ids;
  std::vector<uint8_t> codes = {1, 2, 3};
  ASSERT_TRUE(store->PutCodes("c", nullptr, codes.data(), 3, {}, &ids).ok());
  EXPECT_EQ(ids, (std::vector<uint64_t>{0, 1, 2}));
  const uint64_t user_id = 100;
  ASSERT_TRUE(store->PutCodes("c", &user_id, codes.data(), 1).ok());
  ASSERT_TRUE(store->PutCodes("c", nullptr, codes.data(), 1, {}, &ids).ok());
  EXPECT_EQ(ids, (std::vector<uint64_t>{101}));
  // Deleting the highest id does not let it be handed out again, even after
  // a reopen.
  ASSERT_TRUE(store->Delete("c", {101}).ok());
  store.reset();
  store = MustOpen(tmp.path());
  ASSERT_TRUE(store->PutCodes("c", nullptr, codes.data(), 1, {}, &ids).ok());
  EXPECT_EQ(ids, (std::vector<uint64_t>{102}));
}

// In one batch, an item without an id must not take an explicit id that
// comes later in the same batch (it would be overwritten by that item).
TEST(CodeStore, AssignedIdsSkipExplicitIdsLaterInTheBatch) {
  TempDir tmp;
  auto store = MustOpen(tmp.path());
  ASSERT_TRUE(store->CreateCollection({"c", 8}).ok());
  std::vector<ItemInput> items(3);
  items[0].id = 10;
  items[0].code = {1};
  items[1].code = {2};  // no id
  items[2].id = 11;
  items[2].code = {3};
  std::vector<uint64_t> ids;
  ASSERT_TRUE(store->Put("c", items, {}, &ids).ok());
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0], 10u);
  EXPECT_EQ(ids[2], 11u);
  EXPECT_GT(ids[1], 11u);
  EXPECT_EQ(*store->Count("c"), 3u);
  EXPECT_EQ(store->Get("c", ids[1])->code, std::vector<uint8_t>{2});
  EXPECT_EQ(store->Get("c", 11)->code, std::vector<uint8_t>{3});
  // The same through the bare-code path.
  const uint64_t explicit_ids[] = {50, 51};
  std::vector<uint8_t> codes = {4, 5};
  ASSERT_TRUE(store->PutCodes("c", explicit_ids, codes.data(), 2, {}, &ids).ok());
  ASSERT_TRUE(store->PutCodes("c", nullptr, codes.data(), 1, {}, &ids).ok());
  EXPECT_EQ(ids, (std::vector<uint64_t>{52}));
}

// A grouped write: the valid requests land as one batch, in order, and a
// bad one is refused alone.
TEST(CodeStore, WriteGroupWritesValidRequestsInOrderAndRefusesBadOnesAlone) {
  TempDir tmp;
  auto store = MustOpen(tmp.path());
  ASSERT_TRUE(store->CreateCollection({"c", 8}).ok());
  const uint64_t seven = 7;
  std::vector<uint8_t> old_code = {9};
  ASSERT_TRUE(store->PutCodes("c", &seven, old_code.data(), 1).ok());

  std::vector<ItemInput> items(2);
  items[0].code = {1};  // assigned
  items[1].id = 5;
  items[1].code = {2};
  items[1].label = 3;
  GroupedWrite put;
  put.items = &items;

  std::vector<ItemInput> bad(1);
  bad[0].id = 6;
  bad[0].code = {1, 2};  // two bytes for an 8-bit code
  GroupedWrite refused;
  refused.items = &bad;

  // Deletes 5 (written by the first request), 7 (stored), 8 (absent) and 5 again.
  const uint64_t del_ids[] = {5, 7, 8, 5};
  GroupedWrite del;
  del.kind = GroupedWrite::Kind::kDelete;
  del.ids = del_ids;
  del.n = 4;

  const uint64_t five = 5;
  std::vector<uint8_t> new_code = {4};
  GroupedWrite put_again;
  put_again.kind = GroupedWrite::Kind::kPutCodes;
  put_again.ids = &five;
  put_again.codes = new_code.data();
  put_again.n = 1;

  ASSERT_TRUE(store->WriteGroup("c", {&put, &refused, &del, &put_again}).ok());
  ASSERT_TRUE(put.status.ok()) << put.status.ToString();
  EXPECT_EQ(put.assigned_ids, (std::vector<uint64_t>{8, 5}));
  EXPECT_EQ(refused.status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(refused.status.message().find("item 0"), std::string::npos) << refused.status.ToString();
  EXPECT_TRUE(refused.assigned_ids.empty());
  ASSERT_TRUE(del.status.ok());
  EXPECT_EQ(del.deleted, 3u);  // 5, 7 and 8 (assigned by the first request), each once
  ASSERT_TRUE(put_again.status.ok());

  EXPECT_EQ(*store->Count("c"), 1u);
  StatusOr<Item> five_item = store->Get("c", 5);
  ASSERT_TRUE(five_item.ok());
  EXPECT_EQ(five_item->code, new_code);
  EXPECT_FALSE(five_item->label.has_value());  // the bare-code upsert replaced the record
  EXPECT_EQ(store->Get("c", 6).status().code(), Status::Code::kNotFound);
  // The counter moved past the ids the group assigned, and stays there on reopen.
  store.reset();
  store = MustOpen(tmp.path());
  std::vector<uint64_t> ids;
  ASSERT_TRUE(store->PutCodes("c", nullptr, new_code.data(), 1, {}, &ids).ok());
  EXPECT_EQ(ids, (std::vector<uint64_t>{9}));
  // An unknown collection fails every request.
  GroupedWrite lost;
  lost.items = &items;
  EXPECT_EQ(store->WriteGroup("nope", {&lost}).code(), Status::Code::kNotFound);
  EXPECT_EQ(lost.status.code(), Status::Code::kNotFound);
}

// A synced group reports the time its fsync took; an unsynced one reports 0.
TEST(CodeStore, WriteGroupReportsTheTimeOfItsSync) {
  TempDir tmp;
  auto store = MustOpen(tmp.path());
  ASSERT_TRUE(store->CreateCollection({"c", 8}).ok());
  std::vector<uint8_t> codes = {1, 2, 3};
  GroupedWrite w;
  w.kind = GroupedWrite::Kind::kPutCodes;
  w.codes = codes.data();
  w.n = codes.size();
  double synced = -1;
  ASSERT_TRUE(store->WriteGroup("c", {&w}, /*sync=*/true, &synced).ok());
  EXPECT_GT(synced, 0.0);
  EXPECT_LT(synced, 60.0);
  double unsynced = -1;
  ASSERT_TRUE(store->WriteGroup("c", {&w}, /*sync=*/false, &unsynced).ok());
  EXPECT_EQ(unsynced, 0.0);
  EXPECT_EQ(*store->Count("c"), 6u);
}

// The store against a std::map model, with random operations and reopens.
TEST(CodeStore, RandomisedModelTestWithReopen) {
  TempDir tmp;
  const int bits = 37;
  std::mt19937_64 rng(12345);
  std::map<uint64_t, Item> model;
  auto store = MustOpen(tmp.path());
  ASSERT_TRUE(store->CreateCollection({"m", bits}).ok());
  ASSERT_TRUE(store->CreateCollection({"other", 8}).ok());  // must stay untouched

  auto check_all = [&](const char* when) {
    auto n = store->Count("m");
    ASSERT_TRUE(n.ok());
    ASSERT_EQ(*n, model.size()) << when;
    std::vector<uint64_t> scanned;
    std::vector<uint8_t> scanned_codes;
    ASSERT_TRUE(store
                    ->ScanCodes(
                        "m",
                        [&](const uint64_t* ids, const uint8_t* codes, const float*, size_t k) {
                          scanned.insert(scanned.end(), ids, ids + k);
                          scanned_codes.insert(scanned_codes.end(), codes,
                                               codes + k * code_bytes(bits));
                          return true;
                        },
                        /*chunk=*/17)
                    .ok());
    ASSERT_EQ(scanned.size(), model.size()) << when;
    size_t i = 0;
    for (const auto& [id, item] : model) {
      ASSERT_EQ(scanned[i], id) << when;
      ASSERT_TRUE(std::equal(item.code.begin(), item.code.end(),
                             scanned_codes.begin() + i * code_bytes(bits)));
      ++i;
    }
    for (const auto& [id, item] : model) {
      auto got = store->Get("m", id);
      ASSERT_TRUE(got.ok()) << when << " id " << id;
      ASSERT_EQ(got->code, item.code);
      ASSERT_EQ(got->label, item.label);
      ASSERT_EQ(got->class_code, item.class_code);
      ASSERT_EQ(got->metadata_json, item.metadata_json);
    }
  };

  for (int step = 0; step < 400; ++step) {
    const int op = static_cast<int>(rng() % 10);
    if (op < 6) {  // batch upsert, some ids assigned
      std::vector<ItemInput> batch(1 + rng() % 20);
      for (auto& in : batch) {
        if (rng() % 4 != 0) in.id = rng() % 300;
        in.code = RandomCode(rng, bits);
        if (rng() % 2) in.label = static_cast<int64_t>(rng() % 10) - 5;
        if (rng() % 3 == 0) in.class_code = RandomCode(rng, bits);
        if (rng() % 3 == 0) in.metadata_json = R"({"n":)" + std::to_string(rng() % 1000) + "}";
      }
      std::vector<uint64_t> ids;
      ASSERT_TRUE(store->Put("m", batch, StoreWriteOptions{rng() % 2 == 0}, &ids).ok());
      ASSERT_EQ(ids.size(), batch.size());
      for (size_t i = 0; i < batch.size(); ++i) {
        if (batch[i].id) {
          ASSERT_EQ(ids[i], *batch[i].id);
        }
        Item it;
        it.id = ids[i];
        it.code = batch[i].code;
        it.label = batch[i].label;
        it.class_code = batch[i].class_code;
        it.metadata_json = batch[i].metadata_json;
        model[ids[i]] = it;
      }
    } else if (op < 8) {  // delete, some ids missing
      std::vector<uint64_t> del;
      for (int i = 0; i < 5; ++i) del.push_back(rng() % 400);
      std::sort(del.begin(), del.end());
      del.erase(std::unique(del.begin(), del.end()), del.end());
      size_t expected = 0;
      for (uint64_t id : del) expected += model.erase(id);
      size_t deleted = 0;
      ASSERT_TRUE(store->Delete("m", del, {}, &deleted).ok());
      ASSERT_EQ(deleted, expected);
    } else if (op == 8) {  // point lookups of absent ids
      const uint64_t id = 1000 + rng() % 1000;
      ASSERT_EQ(store->Get("m", id).status().code(), Status::Code::kNotFound);
    } else {  // reopen in the middle
      store.reset();
      store = MustOpen(tmp.path());
      ASSERT_TRUE(store);
      check_all("after reopen");
    }
    if (step % 50 == 0) check_all("periodic");
  }
  check_all("final");
  EXPECT_EQ(*store->Count("other"), 0u);
}

TEST(CodeStore, RefusesUnknownFormatVersion) {
  TempDir tmp;
  { ASSERT_TRUE(MustOpen(tmp.path())); }
  {
    rocksdb::DB* raw = nullptr;
    rocksdb::Options o;
    std::vector<rocksdb::ColumnFamilyHandle*> hs;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"codes", {}}, {"items", {}},
        {store_format::kChangesCf, {}}, {store_format::kThumbnailsCf, {}}};
    ASSERT_TRUE(rocksdb::DB::Open(o, tmp.path(), cfs, &hs, &raw).ok());
    ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), hs[0], store_format::kVersionKey, "99").ok());
    for (auto* h : hs) ASSERT_TRUE(raw->DestroyColumnFamilyHandle(h).ok());
    delete raw;
  }
  auto s = CodeStore::Open(tmp.path());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Status::Code::kNotSupported);
  EXPECT_TRUE(Contains(s.status().message(), "format version 99")) << s.status().message();
}

// A version-1 store (no change log), version-2 store (no scores) or
// version-3 store (no thumbnails) opens and is upgraded to the current
// version.
TEST(CodeStore, UpgradesAVersionOneStore) {
  TempDir tmp;
  {
    auto store = MustOpen(tmp.path());
    ASSERT_TRUE(store->CreateCollection({"c", 8}).ok());
    std::vector<uint8_t> codes = {1, 2};
    ASSERT_TRUE(store->PutCodes("c", nullptr, codes.data(), 2).ok());
  }
  // Sets the version key (unless v is empty), drops the thumbnail column
  // family that older versions lack, and returns what the key holds.
  auto set_version = [&](const std::string& v) {
    rocksdb::DB* raw = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> hs;
    std::vector<std::string> names;
    EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::Options(), tmp.path(), &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const std::string& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::string got;
    EXPECT_TRUE(rocksdb::DB::Open(rocksdb::Options(), tmp.path(), cfs, &hs, &raw).ok());
    if (raw == nullptr) return got;
    if (!v.empty()) {
      EXPECT_TRUE(raw->Put({}, hs[0], store_format::kVersionKey, v).ok());
      for (size_t i = 0; i < names.size(); ++i) {
        if (names[i] == store_format::kThumbnailsCf) {
          EXPECT_TRUE(raw->DropColumnFamily(hs[i]).ok());
        }
      }
    }
    EXPECT_TRUE(raw->Get({}, hs[0], store_format::kVersionKey, &got).ok());
    for (auto* h : hs) EXPECT_TRUE(raw->DestroyColumnFamilyHandle(h).ok());
    delete raw;
    return got;
  };
  for (const char* old : {"1", "2", "3"}) {
    set_version(old);
    {
      auto store = MustOpen(tmp.path());
      EXPECT_EQ(*store->Count("c"), 2u);
      EXPECT_FALSE(store->Get("c", 0)->score.has_value());
      EXPECT_EQ(store->GetThumbnail("c", 0).status().code(), Status::Code::kNotFound);
    }
    EXPECT_EQ(set_version(""), std::to_string(kStoreFormatVersion)) << "from version " << old;
  }
}

// Every change is logged in its batch; the log replays from any point it
// still holds and says clearly when it does not.
TEST(CodeStore, ChangeLogRecordsEveryWriteAndKnowsWhatItNoLongerHolds) {
  TempDir tmp;
  auto store = MustOpen(tmp.path());
  ASSERT_TRUE(store->CreateCollection({"c", 8}).ok());
  EXPECT_EQ(*store->ChangeSequence("c"), 0u);
  std::vector<uint8_t> codes = {1, 2, 3};
  ASSERT_TRUE(store->PutCodes("c", nullptr, codes.data(), 3).ok());  // ids 0..2 (a range)
  const uint64_t ids[] = {9, 4};
  ASSERT_TRUE(store->PutCodes("c", ids, codes.data(), 2).ok());  // a list
  ASSERT_TRUE(store->Delete("c", {4, 77}).ok());                  // 77 is absent: not logged
  ASSERT_TRUE(store->Delete("c", {78}).ok());                     // nothing changed: no entry
  EXPECT_EQ(*store->ChangeSequence("c"), 3u);

  auto read = [&](uint64_t after) {
    std::vector<std::vector<uint64_t>> out;
    uint64_t last = 0;
    Status s = store->ChangesSince(
        "c", after, [&](const uint64_t* p, size_t n) { out.emplace_back(p, p + n); }, &last);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(last, 3u);
    return out;
  };
  EXPECT_EQ(read(0), (std::vector<std::vector<uint64_t>>{{0, 1, 2}, {9, 4}, {4}}));
  EXPECT_EQ(read(2), (std::vector<std::vector<uint64_t>>{{4}}));
  EXPECT_TRUE(read(3).empty());
  auto none = [](const uint64_t*, size_t) {};
  EXPECT_EQ(store->ChangesSince("c", 4, none).code(), Status::Code::kFailedPrecondition);

  ASSERT_TRUE(store->TrimChanges("c", 2).ok());
  Status trimmed = store->ChangesSince("c", 1, none);
  EXPECT_EQ(trimmed.code(), Status::Code::kFailedPrecondition);
  EXPECT_TRUE(Contains(trimmed.message(), "trimmed")) << trimmed.ToString();
  EXPECT_EQ(read(2), (std::vector<std::vector<uint64_t>>{{4}}));
  EXPECT_FALSE(store->TrimChanges("c", 4).ok());

  // The sequence survives a reopen; a dropped and re-created collection starts afresh.
  store.reset();
  store = MustOpen(tmp.path());
  EXPECT_EQ(*store->ChangeSequence("c"), 3u);
  ASSERT_TRUE(store->DropCollection("c").ok());
  ASSERT_TRUE(store->CreateCollection({"c", 8}).ok());
  EXPECT_EQ(*store->ChangeSequence("c"), 0u);
  EXPECT_TRUE(store->ChangesSince("c", 0, none).ok());
}

TEST(CodeStore, RefusesForeignRocksDbAndSecondOpener) {
  TempDir tmp;
  {
    rocksdb::DB* raw = nullptr;
    rocksdb::Options o;
    o.create_if_missing = true;
    ASSERT_TRUE(rocksdb::DB::Open(o, tmp.sub("foreign"), &raw).ok());
    ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), "k", "v").ok());
    delete raw;
  }
  auto foreign = CodeStore::Open(tmp.sub("foreign"));
  ASSERT_FALSE(foreign.ok());
  EXPECT_TRUE(Contains(foreign.status().message(), "not a hamdb store"));

  auto first = MustOpen(tmp.sub("db"));
  auto second = CodeStore::Open(tmp.sub("db"));
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(Contains(second.status().message(), "in use by another process"))
      << second.status().message();

  StoreOpenOptions no_create;
  no_create.create_if_missing = false;
  auto absent = CodeStore::Open(tmp.sub("absent"), no_create);
  EXPECT_FALSE(absent.ok());
}

TEST(CodeStore, CorruptValuesAreReportedNotCrashed) {
  TempDir tmp;
  {
    auto store = MustOpen(tmp.path());
    ASSERT_TRUE(store->CreateCollection({"c", 64}).ok());
    std::vector<uint64_t> ids = {1, 2};
    ASSERT_TRUE(store->PutCodes("c", ids.data(), std::vector<uint8_t>(16, 0).data(), 2).ok());
  }
  {
    rocksdb::DB* raw = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> hs;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"codes", {}}, {"items", {}},
        {store_format::kChangesCf, {}}, {store_format::kThumbnailsCf, {}}};
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), tmp.path(), cfs, &hs, &raw).ok());
    // Collection ids start at 1.
    ASSERT_TRUE(raw->Put({}, hs[1], store_format::ItemKey(1, 1), "short").ok());
    ASSERT_TRUE(raw->Put({}, hs[2], store_format::ItemKey(1, 2), std::string("\x07\x00", 2)).ok());
    for (auto* h : hs) ASSERT_TRUE(raw->DestroyColumnFamilyHandle(h).ok());
    delete raw;
  }
  auto store = MustOpen(tmp.path());
  auto g1 = store->Get("c", 1);
  EXPECT_EQ(g1.status().code(), Status::Code::kCorruption);
  EXPECT_TRUE(Contains(g1.status().message(), "5-byte code value, expected 8 or 12"));
  auto g2 = store->Get("c", 2);
  EXPECT_EQ(g2.status().code(), Status::Code::kCorruption);
  EXPECT_TRUE(Contains(g2.status().message(), "unknown record version"));
  Status scan = store->ScanCodes("c", [](const uint64_t*, const uint8_t*, const float*, size_t) { return true; });
  EXPECT_EQ(scan.code(), Status::Code::kCorruption);
}

}  // namespace
}  // namespace hamdb
