// The HTTP API end to end: every endpoint and every error path, against a
// server started in-process on an ephemeral port. After each bad request the
// server must still answer and the data must be intact.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <set>

#include "http/http_util.h"
#include "index/flat_index.h"
#include "tests/http/http_test_util.h"

namespace hamdb::http {
namespace {

using namespace hamdb::http::testing;

constexpr int kBits = 64;

// Reference answer: brute force over (id, code), sorted by (distance, id).
std::vector<Neighbor> BruteForce(
    const std::vector<std::pair<uint64_t, std::vector<uint8_t>>>& items,
    const std::vector<uint8_t>& q, size_t k) {
  std::vector<Neighbor> all;
  for (const auto& [id, code] : items) {
    uint32_t d = 0;
    for (size_t b = 0; b < code.size(); ++b) d += __builtin_popcount(code[b] ^ q[b]);
    all.push_back({id, d});
  }
  std::sort(all.begin(), all.end(), NeighborLess);
  if (all.size() > k) all.resize(k);
  return all;
}

std::vector<Neighbor> ResultsOf(const json& results) {
  std::vector<Neighbor> out;
  for (const json& r : results)
    out.push_back({r["id"].get<uint64_t>(), r["distance"].get<uint32_t>()});
  return out;
}

class HttpApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.body_limit = 1u << 20;
    o.threads = 2;
    h_ = std::make_unique<ServerHarness>(dir_.path(), ServiceOptions{}, o);
    port_ = h_->port();
  }

  // Creates collection `name` and inserts n random codes with ids 1..n.
  void Populate(const std::string& name, size_t n, const std::string& index = "MIH") {
    ASSERT_EQ(
        PostJson(port_, "/collections", {{"name", name}, {"bits", kBits}, {"index", index}}).status,
        201);
    std::mt19937_64 rng(7);
    json items = json::array();
    for (size_t i = 0; i < n; ++i) {
      std::vector<uint8_t> code = RandomCode(rng, kBits);
      // Every fifth item repeats an earlier code, so there are distance ties.
      if (i % 5 == 4) code = items_[i - 3].second;
      items_.push_back({i + 1, code});
      items.push_back({{"id", i + 1}, {"code", FormatHex(code.data(), kBits)}});
    }
    HttpReply r = PostJson(port_, "/collections/" + name + "/items", {{"items", items}});
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_EQ(r.Json()["count"], n);
  }

  // The server answers and collection `name` still holds exactly items_.
  void ExpectIntact(const std::string& name) {
    ASSERT_EQ(Call(port_, "GET", "/healthz").status, 200);
    HttpReply d = Call(port_, "GET", "/collections/" + name);
    ASSERT_EQ(d.status, 200) << d.body;
    EXPECT_EQ(d.Json()["items"], items_.size());
    const auto& q = items_[items_.size() / 2].second;
    HttpReply s = PostJson(port_, "/collections/" + name + "/search",
                           {{"code", FormatHex(q.data(), kBits)}, {"k", 10}});
    ASSERT_EQ(s.status, 200) << s.body;
    EXPECT_EQ(ResultsOf(s.Json()["results"]), BruteForce(items_, q, 10));
    StatusOr<uint64_t> count = h_->store()->Count(name);
    ASSERT_TRUE(count.ok());
    EXPECT_EQ(*count, items_.size());
  }

  TempDir dir_;
  std::unique_ptr<ServerHarness> h_;
  uint16_t port_ = 0;
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> items_;
};

TEST_F(HttpApi, HealthReadyAndMetrics) {
  EXPECT_EQ(Call(port_, "GET", "/healthz").status, 200);
  EXPECT_EQ(Call(port_, "GET", "/readyz").status, 200);
  EXPECT_EQ(Call(port_, "HEAD", "/healthz").status, 200);
  Populate("m", 50);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(PostJson(port_, "/collections/m/search", {{"code", std::string(16, '0')}}).status,
              200);
  }
  ASSERT_EQ(PostJson(port_, "/collections/m/search", {{"code", "zz"}}).status, 422);
  HttpReply m = Call(port_, "GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.headers["Content-Type"].find("text/plain"), std::string::npos);
  EXPECT_NE(m.body.find("hamdb_http_requests_total{route=\"/collections/{name}/search\",method="
                        "\"POST\",status=\"200\"} 3"),
            std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("status=\"422\"} 1"), std::string::npos);
  EXPECT_NE(m.body.find("hamdb_collection_items{collection=\"m\",index=\"MIH\"} 50"),
            std::string::npos);
  EXPECT_NE(m.body.find("hamdb_index_memory_bytes{collection=\"m\""), std::string::npos);
  EXPECT_NE(m.body.find("hamdb_http_request_duration_seconds_bucket{route=\"/collections/{name}/"
                        "search\",method=\"POST\",status=\"200\",le=\"+Inf\"} 3"),
            std::string::npos);
  EXPECT_NE(m.body.find("hamdb_ready 1"), std::string::npos);
  // Populate's one insert request: one group commit of 50 items, with time
  // spent in the store and in the index.
  EXPECT_NE(m.body.find("hamdb_write_requests_total{collection=\"m\"} 1\n"), std::string::npos);
  EXPECT_NE(m.body.find("hamdb_write_groups_total{collection=\"m\"} 1\n"), std::string::npos);
  EXPECT_NE(m.body.find("hamdb_write_items_total{collection=\"m\"} 50\n"), std::string::npos);
  for (const char* stage : {"store", "index"}) {
    const std::string series = std::string("hamdb_write_") + stage + "_seconds_total{collection=\"m\"} ";
    const size_t at = m.body.find(series);
    ASSERT_NE(at, std::string::npos) << series;
    EXPECT_GT(std::stod(m.body.substr(at + series.size())), 0.0) << series;
  }
  EXPECT_NE(m.body.find("hamdb_write_sync_seconds_total{collection=\"m\"} "), std::string::npos);
}

TEST(HttpStartup, HealthzAnswersBeforeReadyzAndCollections) {
  TempDir dir;
  {
    // A store with one collection to rebuild.
    auto store = CodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->CreateCollection({"c", kBits, "MIH", "{}"}).ok());
    std::vector<uint8_t> codes(100 * 8, 0x5a);
    ASSERT_TRUE((*store)->PutCodes("c", nullptr, codes.data(), 100).ok());
  }
  ServerHarness h(dir.path(), {}, {}, /*load=*/false);
  EXPECT_EQ(Call(h.port(), "GET", "/healthz").status, 200);
  HttpReply ready = Call(h.port(), "GET", "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.ErrorCode(), "not_ready");
  EXPECT_EQ(Call(h.port(), "GET", "/collections").status, 503);
  EXPECT_EQ(Call(h.port(), "GET", "/metrics").status, 200);
  h.Load();
  EXPECT_EQ(Call(h.port(), "GET", "/readyz").status, 200);
  HttpReply d = Call(h.port(), "GET", "/collections/c");
  ASSERT_EQ(d.status, 200);
  EXPECT_EQ(d.Json()["items"], 100);
}

TEST_F(HttpApi, CollectionLifecycle) {
  HttpReply c = PostJson(port_, "/collections", {{"name", "a"}, {"bits", 64}, {"index", "Flat"}});
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.Json()["index"], "Flat");
  EXPECT_EQ(PostJson(port_, "/collections", {{"name", "a"}, {"bits", 64}}).status, 409);
  ASSERT_EQ(PostJson(port_, "/collections", {{"name", "b"}, {"bits", 12}}).status, 201);
  HttpReply list = Call(port_, "GET", "/collections");
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.Json()["collections"].size(), 2u);
  HttpReply d = Call(port_, "GET", "/collections/b");
  ASSERT_EQ(d.status, 200);
  EXPECT_EQ(d.Json()["bits"], 12);
  EXPECT_EQ(d.Json()["index"], "MIH");
  EXPECT_EQ(d.Json()["items"], 0);
  EXPECT_TRUE(d.Json()["index_memory_bytes"].is_number());

  EXPECT_EQ(PostJson(port_, "/collections", {{"name", "bad name!"}, {"bits", 64}}).status, 422);
  EXPECT_EQ(PostJson(port_, "/collections", {{"name", "x"}, {"bits", 0}}).status, 422);
  EXPECT_EQ(PostJson(port_, "/collections", {{"name", "x"}, {"bits", 5000}}).status, 422);
  EXPECT_EQ(PostJson(port_, "/collections", {{"name", "x"}}).status, 400);
  EXPECT_EQ(PostJson(port_, "/collections", {{"name", "x"}, {"bits", "64"}}).status, 400);
  EXPECT_EQ(
      PostJson(port_, "/collections", {{"name", "x"}, {"bits", 64}, {"index", "HNSW"}}).status,
      422);
  EXPECT_EQ(
      PostJson(port_, "/collections", {{"name", "x"}, {"bits", 64}, {"index", "Bucket"}}).status,
      422);
  EXPECT_EQ(
      PostJson(port_, "/collections", {{"name", "x"}, {"bits", 64}, {"encoder", "/nope"}}).status,
      422);
  EXPECT_EQ(Call(port_, "GET", "/collections/x").status, 404);  // no trace of failed creates

  EXPECT_EQ(Call(port_, "DELETE", "/collections/a").status, 200);
  EXPECT_EQ(Call(port_, "DELETE", "/collections/a").status, 404);
  EXPECT_EQ(Call(port_, "GET", "/collections/a").status, 404);
  EXPECT_EQ(PostJson(port_, "/collections/a/search", {{"code", std::string(16, '0')}}).status, 404);
  // The name is free again.
  EXPECT_EQ(PostJson(port_, "/collections", {{"name", "a"}, {"bits", 8}}).status, 201);
  EXPECT_EQ(Call(port_, "GET", "/collections/a").Json()["items"], 0);
}

// Scores over HTTP: items carry them, a search orders ties by them under
// tie_break "score" and by id under "id", each result shows the quantised
// score the order used, and bad scores or rules are 422 with nothing stored.
TEST_F(HttpApi, ScoresAndTieBreak) {
  ASSERT_EQ(PostJson(port_, "/collections", {{"name", "s"}, {"bits", 16}, {"index", "MIH"}}).status,
            201);
  // Five items on one code, one item elsewhere; scores out of id order.
  json items = json::array();
  const double scores[] = {0.2, 0.93, 0.5, 0.93};
  for (int i = 0; i < 4; ++i) items.push_back({{"id", i + 1}, {"code", "00ff"}, {"score", scores[i]}});
  items.push_back({{"id", 5}, {"code", "00ff"}});  // no score
  items.push_back({{"id", 6}, {"code", "01ff"}, {"score", 9}});
  HttpReply r = PostJson(port_, "/collections/s/items", {{"items", items}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FLOAT_EQ(Call(port_, "GET", "/collections/s/items/2").Json()["score"].get<float>(), 0.93f);
  // A collection without an encoder defaults to "id".
  EXPECT_EQ(Call(port_, "GET", "/collections/s").Json()["tie_break"], "id");
  auto ids_of = [](const json& results) {
    std::vector<uint64_t> ids;
    for (const json& x : results) ids.push_back(x["id"].get<uint64_t>());
    return ids;
  };
  HttpReply by_id = PostJson(port_, "/collections/s/search", {{"code", "00ff"}, {"k", 6}});
  ASSERT_EQ(by_id.status, 200) << by_id.body;
  EXPECT_EQ(by_id.Json()["tie_break"], "id");
  EXPECT_EQ(ids_of(by_id.Json()["results"]), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6}));
  HttpReply by_score = PostJson(port_, "/collections/s/search",
                                {{"code", "00ff"}, {"k", 6}, {"tie_break", "score"}});
  ASSERT_EQ(by_score.status, 200) << by_score.body;
  const json res = by_score.Json()["results"];
  // 0.93 twice (then by id), 0.5, 0.2, the unscored item, then distance 1.
  EXPECT_EQ(ids_of(res), (std::vector<uint64_t>{2, 4, 3, 1, 5, 6}));
  EXPECT_EQ(res[0]["score"].get<float>(), ScoreOfKey(ScoreKey(0.93f)));
  EXPECT_FALSE(res[4].contains("score"));
  HttpReply batch = PostJson(port_, "/collections/s/search/batch",
                             {{"codes", {"00ff"}}, {"k", 6}, {"tie_break", "score"}});
  ASSERT_EQ(batch.status, 200) << batch.body;
  EXPECT_EQ(ids_of(batch.Json()["batches"][0]["results"]), ids_of(res));

  // Bad scores: a string, a number too large for a float, and NaN / Infinity
  // (not JSON); each refuses the whole batch.
  for (const std::string body :
       {R"({"items": [{"id": 20, "code": "0000"}, {"id": 21, "code": "0000", "score": "high"}]})",
        R"({"items": [{"id": 20, "code": "0000"}, {"id": 21, "code": "0000", "score": 1e300}]})",
        R"({"items": [{"id": 20, "code": "0000"}, {"id": 21, "code": "0000", "score": NaN}]})",
        R"({"items": [{"id": 20, "code": "0000", "score": -Infinity}]})"}) {
    HttpReply bad = Call(port_, "POST", "/collections/s/items", body, "application/json");
    EXPECT_EQ(bad.status, 422) << body << " -> " << bad.body;
    EXPECT_EQ(bad.Json()["error"]["code"], "invalid_argument") << bad.body;
  }
  EXPECT_EQ(Call(port_, "GET", "/collections/s/items/20").status, 404);
  EXPECT_EQ(Call(port_, "GET", "/collections/s").Json()["items"], 6);
  // Bad rules, and the score rule on an index that keeps no scores.
  EXPECT_EQ(PostJson(port_, "/collections/s/search", {{"code", "00ff"}, {"tie_break", "rank"}}).status,
            422);
  EXPECT_EQ(PostJson(port_, "/collections/s/search", {{"code", "00ff"}, {"tie_break", 1}}).status,
            422);
  ASSERT_EQ(PostJson(port_, "/collections", {{"name", "v"}, {"bits", 16}, {"index", "IVF4"}}).status,
            201);
  HttpReply ivf = PostJson(port_, "/collections/v/search", {{"code", "00ff"}, {"tie_break", "score"}});
  EXPECT_EQ(ivf.status, 422) << ivf.body;
  EXPECT_NE(ivf.body.find("does not keep scores"), std::string::npos) << ivf.body;
  EXPECT_EQ(PostJson(port_, "/collections",
                     {{"name", "w"}, {"bits", 16}, {"index", "IVF4"}, {"tie_break", "score"}})
                .status,
            422);
  ASSERT_EQ(PostJson(port_, "/collections",
                     {{"name", "x"}, {"bits", 16}, {"index", "Flat"}, {"tie_break", "score"}})
                .status,
            201);
  EXPECT_EQ(Call(port_, "GET", "/collections/x").Json()["tie_break"], "score");
}

TEST_F(HttpApi, ItemsInsertGetDelete) {
  ASSERT_EQ(PostJson(port_, "/collections", {{"name", "c"}, {"bits", 12}}).status, 201);
  // Hex and bit-string codes, given and assigned ids, labels and metadata.
  HttpReply r =
      PostJson(port_, "/collections/c/items",
               {{"items",
                 {{{"id", 10}, {"code", "ff0f"}, {"label", 3}, {"metadata", {{"file", "a.png"}}}},
                  {{"id", 11}, {"code", "0100"}, {"class_code", "0000"}},
                  {{"code", "101000000001"}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  json ids = r.Json()["ids"];
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0], 10);
  EXPECT_EQ(ids[1], 11);
  const uint64_t assigned = ids[2].get<uint64_t>();
  EXPECT_GT(assigned, 11u);  // above every id ever written

  HttpReply g = Call(port_, "GET", "/collections/c/items/10");
  ASSERT_EQ(g.status, 200) << g.body;
  EXPECT_EQ(g.Json()["code"], "ff0f");
  EXPECT_EQ(g.Json()["label"], 3);
  EXPECT_EQ(g.Json()["metadata"]["file"], "a.png");
  g = Call(port_, "GET", "/collections/c/items/" + std::to_string(assigned));
  ASSERT_EQ(g.status, 200);
  EXPECT_EQ(g.Json()["code"], "0508");  // bits 0, 2 and 11 set, LSB-first
  EXPECT_EQ(Call(port_, "GET", "/collections/c/items/11").Json()["class_code"], "0000");

  EXPECT_EQ(Call(port_, "GET", "/collections/c/items/999").status, 404);
  EXPECT_EQ(Call(port_, "GET", "/collections/c/items/abc").status, 400);
  EXPECT_EQ(Call(port_, "GET", "/collections/c/items/-1").status, 400);
  EXPECT_EQ(Call(port_, "GET", "/collections/nope/items/1").status, 404);

  EXPECT_EQ(Call(port_, "DELETE", "/collections/c/items/10").status, 200);
  EXPECT_EQ(Call(port_, "DELETE", "/collections/c/items/10").status, 404);
  EXPECT_EQ(Call(port_, "GET", "/collections/c/items/10").status, 404);
  HttpReply bd = PostJson(port_, "/collections/c/items/delete", {{"ids", {11, 12345}}});
  ASSERT_EQ(bd.status, 200);
  EXPECT_EQ(bd.Json()["deleted"], 1);
  EXPECT_EQ(Call(port_, "GET", "/collections/c").Json()["items"], 1);
  // The deleted items no longer come back from search either.
  HttpReply s = PostJson(port_, "/collections/c/search", {{"code", "0000"}, {"k", 10}});
  ASSERT_EQ(s.status, 200);
  ASSERT_EQ(s.Json()["results"].size(), 1u);
  EXPECT_EQ(s.Json()["results"][0]["id"], assigned);

  // Bad items: nothing of the batch is written.
  for (const json& bad : {json{{"items", {{{"code", "ff0f"}}, {{"code", "ff"}}}}},  // wrong length
                          json{{"items", {{{"code", "fff0"}}}}},                    // padding bits
                          json{{"items", {{{"code", "ff0f"}, {"id", -5}}}}},
                          json{{"items", {{{"id", 5}}}}},  // no code
                          json{{"items", json::array()}}}) {
    HttpReply b = PostJson(port_, "/collections/c/items", bad);
    EXPECT_EQ(b.status, 422) << bad.dump() << " -> " << b.body;
  }
  for (const json& bad : {json{{"items", {{{"code", 12}}}}}, json{{"items", "x"}}, json{{"x", 1}},
                          json{{"items", {{{"code", "ff0f"}, {"label", "x"}}}}}}) {
    EXPECT_EQ(PostJson(port_, "/collections/c/items", bad).status, 400) << bad.dump();
  }
  EXPECT_EQ(Call(port_, "GET", "/collections/c").Json()["items"], 1);
  EXPECT_EQ(*h_->store()->Count("c"), 1u);
}

TEST_F(HttpApi, SearchMatchesBruteForce) {
  Populate("s", 300);
  std::mt19937_64 rng(99);
  for (int t = 0; t < 20; ++t) {
    std::vector<uint8_t> q = t % 2 ? RandomCode(rng, kBits) : items_[t * 7].second;
    for (size_t k : {1, 5, 37}) {
      HttpReply r = PostJson(port_, "/collections/s/search",
                             {{"code", FormatHex(q.data(), kBits)}, {"k", k}});
      ASSERT_EQ(r.status, 200) << r.body;
      EXPECT_EQ(ResultsOf(r.Json()["results"]), BruteForce(items_, q, k));
      EXPECT_TRUE(r.Json()["exact"].get<bool>());
      EXPECT_TRUE(r.Json()["took_ms"].is_number());
      EXPECT_EQ(r.Json()["index"], "MIH");
    }
    // The same query as a bit string, in exact mode.
    HttpReply b =
        PostJson(port_, "/collections/s/search",
                 {{"code", FormatBitString(q.data(), kBits)}, {"k", 5}, {"mode", "exact"}});
    ASSERT_EQ(b.status, 200);
    EXPECT_EQ(ResultsOf(b.Json()["results"]), BruteForce(items_, q, 5));
    // Radius search: everything within distance 20, inclusive.
    HttpReply rr = PostJson(port_, "/collections/s/search",
                            {{"code", FormatHex(q.data(), kBits)}, {"radius", 20}});
    ASSERT_EQ(rr.status, 200);
    std::vector<Neighbor> want = BruteForce(items_, q, items_.size());
    want.erase(
        std::remove_if(want.begin(), want.end(), [](const Neighbor& n) { return n.distance > 20; }),
        want.end());
    EXPECT_EQ(ResultsOf(rr.Json()["results"]), want);
  }
  // k larger than the collection returns everything.
  const auto& q0 = items_[0].second;
  HttpReply all = PostJson(port_, "/collections/s/search",
                           {{"code", FormatHex(q0.data(), kBits)}, {"k", 5000}});
  ASSERT_EQ(all.status, 200);
  EXPECT_EQ(all.Json()["results"].size(), items_.size());
  EXPECT_EQ(ResultsOf(all.Json()["results"]), BruteForce(items_, q0, 5000));
  // with_metadata returns the stored code.
  HttpReply md =
      PostJson(port_, "/collections/s/search",
               {{"code", FormatHex(q0.data(), kBits)}, {"k", 1}, {"with_metadata", true}});
  ASSERT_EQ(md.status, 200);
  EXPECT_EQ(md.Json()["results"][0]["id"], 1);
  EXPECT_EQ(md.Json()["results"][0]["code"], FormatHex(q0.data(), kBits));
  // Modes this collection's index cannot serve.
  for (const char* mode : {"ivf", "bucket", "gpu"}) {
    HttpReply m = PostJson(port_, "/collections/s/search",
                           {{"code", FormatHex(q0.data(), kBits)}, {"mode", mode}});
    EXPECT_EQ(m.status, 422) << mode;
    EXPECT_EQ(m.ErrorCode(), "mode_unavailable");
  }
  EXPECT_EQ(PostJson(port_, "/collections/s/search",
                     {{"code", FormatHex(q0.data(), kBits)}, {"mode", "fast"}})
                .status,
            422);

  // Batch search: one result list per code, same answers.
  json codes = json::array();
  for (int i = 0; i < 25; ++i) codes.push_back(FormatHex(items_[i * 3].second.data(), kBits));
  HttpReply bt = PostJson(port_, "/collections/s/search/batch", {{"codes", codes}, {"k", 4}});
  ASSERT_EQ(bt.status, 200) << bt.body;
  ASSERT_EQ(bt.Json()["batches"].size(), 25u);
  for (int i = 0; i < 25; ++i) {
    EXPECT_EQ(ResultsOf(bt.Json()["batches"][i]["results"]),
              BruteForce(items_, items_[i * 3].second, 4));
  }
  codes.push_back("abc");
  EXPECT_EQ(PostJson(port_, "/collections/s/search/batch", {{"codes", codes}, {"k", 4}}).status,
            422);
  EXPECT_EQ(PostJson(port_, "/collections/s/search/batch", {{"codes", json::array()}}).status, 422);
  ExpectIntact("s");
}

// Filtered searches (single, batch, radius, by label, metadata and ids) equal
// brute force over the matching items; bad filters are 400 or 422 naming the
// bad part; an index that cannot filter says so.
TEST_F(HttpApi, FilteredSearch) {
  // A field that cannot be indexed is refused, and nothing is created.
  HttpReply bad = PostJson(port_, "/collections", {{"name", "fbad"}, {"bits", kBits}, {"indexed_fields", {"label", "colour"}}});
  EXPECT_EQ(bad.status, 422);
  EXPECT_NE(bad.body.find("colour"), std::string::npos) << bad.body;
  EXPECT_EQ(Call(port_, "GET", "/collections/fbad").status, 404);
  // MIH and Flat reading items from the store, and MIH with indexed fields.
  for (const std::string variant : {"MIH", "Flat", "MIH-indexed"}) {
    const std::string index = variant.substr(0, variant.find('-'));
    const std::string name = "f" + variant;
    json create = {{"name", name}, {"bits", kBits}, {"index", index}};
    if (variant == "MIH-indexed") create["indexed_fields"] = {"label", "metadata.path"};
    ASSERT_EQ(PostJson(port_, "/collections", create).status, 201);
    EXPECT_EQ(Call(port_, "GET", "/collections/" + name).Json()["indexed_fields"].size(),
              variant == "MIH-indexed" ? 2u : 0u);
    std::mt19937_64 rng(5);
    std::vector<std::pair<uint64_t, std::vector<uint8_t>>> items;
    std::vector<int> labels;
    json batch = json::array();
    for (uint64_t id = 1; id <= 400; ++id) {
      std::vector<uint8_t> code = RandomCode(rng, kBits);
      if (id % 4 == 0) code = items[id - 3].second;  // ties
      const int label = static_cast<int>(id % 10);
      items.push_back({id, code});
      labels.push_back(label);
      json item = {{"id", id}, {"code", FormatHex(code.data(), kBits)}, {"label", label},
                   {"metadata", {{"path", (id % 3 ? "bags/" : "coats/") + std::to_string(id)}, {"w", id % 7}}}};
      if (id % 50 == 0) item.erase("label");
      batch.push_back(item);
    }
    ASSERT_EQ(PostJson(port_, "/collections/" + name + "/items", {{"items", batch}}).status, 200);
    auto matching = [&](auto pred) {
      std::vector<std::pair<uint64_t, std::vector<uint8_t>>> out;
      for (size_t i = 0; i < items.size(); ++i) {
        if (pred(items[i].first, labels[i])) out.push_back(items[i]);
      }
      return out;
    };
    struct Case {
      json filter;
      std::function<bool(uint64_t, int)> pred;
    };
    const std::vector<Case> cases = {
        {{{"field", "label"}, {"eq", 3}}, [](uint64_t id, int l) { return id % 50 != 0 && l == 3; }},
        {{{"field", "metadata.path"}, {"prefix", "coats/"}}, [](uint64_t id, int) { return id % 3 == 0; }},
        {{{"and", {{{"field", "metadata.w"}, {"gte", 2}, {"lt", 4}}, {{"not", {{"ids", {5, 6, 7}}}}}}}},
         [](uint64_t id, int) { return id % 7 >= 2 && id % 7 < 4 && (id < 5 || id > 7); }},
        {{{"or", {{{"ids", {400, 2}}}, {{"field", "label"}, {"in", {9, 8}}}}}},
         [](uint64_t id, int l) { return id == 400 || id == 2 || (id % 50 != 0 && (l == 9 || l == 8)); }},
        {{{"field", "label"}, {"eq", 77}}, [](uint64_t, int) { return false; }},
        {{{"and", json::array()}}, [](uint64_t, int) { return true; }},
    };
    for (const Case& c : cases) {
      const auto allowed = matching(c.pred);
      for (int t = 0; t < 6; ++t) {
        const std::vector<uint8_t> q = t % 2 ? RandomCode(rng, kBits) : items[t * 13].second;
        for (size_t k : {1, 10, 60}) {
          HttpReply r = PostJson(port_, "/collections/" + name + "/search",
                                 {{"code", FormatHex(q.data(), kBits)}, {"k", k}, {"filter", c.filter}});
          ASSERT_EQ(r.status, 200) << r.body;
          EXPECT_TRUE(r.Json()["exact"].get<bool>());
          EXPECT_EQ(ResultsOf(r.Json()["results"]), BruteForce(allowed, q, k)) << index << " " << c.filter.dump();
        }
        HttpReply rr = PostJson(port_, "/collections/" + name + "/search",
                                {{"code", FormatHex(q.data(), kBits)}, {"radius", 26}, {"filter", c.filter}});
        ASSERT_EQ(rr.status, 200);
        std::vector<Neighbor> want = BruteForce(allowed, q, allowed.size());
        want.erase(std::remove_if(want.begin(), want.end(), [](const Neighbor& n) { return n.distance > 26; }),
                   want.end());
        EXPECT_EQ(ResultsOf(rr.Json()["results"]), want);
      }
      HttpReply b = PostJson(port_, "/collections/" + name + "/search/batch",
                             {{"codes", {FormatHex(items[0].second.data(), kBits), FormatHex(items[1].second.data(), kBits)}},
                              {"k", 7}, {"filter", c.filter}});
      ASSERT_EQ(b.status, 200) << b.body;
      EXPECT_EQ(ResultsOf(b.Json()["batches"][1]["results"]), BruteForce(allowed, items[1].second, 7));
    }
  }
  // Errors: not the grammar (400), or not a valid filter (422), naming the part.
  const std::string code = "0123456789abcdef";
  HttpReply grammar = PostJson(port_, "/collections/fMIH/search", {{"code", code}, {"filter", {{"and", 5}}}});
  EXPECT_EQ(grammar.status, 400);
  EXPECT_NE(grammar.body.find("filter.and"), std::string::npos) << grammar.body;
  EXPECT_EQ(PostJson(port_, "/collections/fMIH/search", {{"code", code}, {"filter", "label=3"}}).status, 400);
  HttpReply op = PostJson(port_, "/collections/fMIH/search",
                          {{"code", code}, {"filter", {{"field", "label"}, {"near", 3}}}});
  EXPECT_EQ(op.status, 422);
  EXPECT_EQ(op.ErrorCode(), "invalid_filter");
  EXPECT_NE(op.body.find("unknown operator 'near'"), std::string::npos) << op.body;
  HttpReply field = PostJson(port_, "/collections/fMIH/search",
                             {{"code", code}, {"filter", {{"field", "code"}, {"eq", 3}}}});
  EXPECT_EQ(field.ErrorCode(), "invalid_filter");
  HttpReply type = PostJson(port_, "/collections/fMIH/search",
                            {{"code", code}, {"filter", {{"field", "label"}, {"gt", "x"}}}});
  EXPECT_EQ(type.ErrorCode(), "invalid_filter");
  EXPECT_EQ(Call(port_, "POST", "/collections/fMIH/search?filter=%7Bbad", "x", "image/png").status, 400);
  // An approximate index filters too, and says it is approximate.
  ASSERT_EQ(PostJson(port_, "/collections", {{"name", "ivf"}, {"bits", kBits}, {"index", "IVF4"}}).status, 201);
  json ivf_items = json::array();
  std::mt19937_64 rng(9);
  for (int id = 1; id <= 300; ++id) {
    const std::vector<uint8_t> c = RandomCode(rng, kBits);
    ivf_items.push_back({{"id", id}, {"code", FormatHex(c.data(), kBits)}, {"label", id % 3}});
  }
  ASSERT_EQ(PostJson(port_, "/collections/ivf/items", {{"items", ivf_items}}).status, 200);
  HttpReply ivf = PostJson(port_, "/collections/ivf/search",
                           {{"code", code}, {"k", 20}, {"filter", {{"field", "label"}, {"eq", 2}}}});
  ASSERT_EQ(ivf.status, 200) << ivf.body;
  EXPECT_FALSE(ivf.Json()["results"].empty());
  for (const json& r : ivf.Json()["results"]) EXPECT_EQ(r["id"].get<int>() % 3, 2) << ivf.body;
}

TEST_F(HttpApi, ErrorPathsLeaveServerAndDataIntact) {
  Populate("e", 120);
  const std::string q = FormatHex(items_[3].second.data(), kBits);
  struct Case {
    const char* what;
    std::string method, target, body, content_type;
    int status;
    const char* code;
  };
  std::string deep(200000, '[');
  std::string deep_obj;
  for (int i = 0; i < 5000; ++i) deep_obj += "{\"a\":";
  const std::vector<Case> cases = {
      {"truncated JSON", "POST", "/collections/e/search", "{\"code\": \"" + q + "\", \"k\": 1",
       "application/json", 400, "bad_request"},
      {"deep arrays", "POST", "/collections/e/search", deep, "application/json", 400,
       "bad_request"},
      {"deep objects", "POST", "/collections/e/items", deep_obj, "application/json", 400,
       "bad_request"},
      {"not an object", "POST", "/collections/e/search", "[1,2,3]", "application/json", 400,
       "bad_request"},
      {"empty body", "POST", "/collections/e/search", "", "application/json", 400, "bad_request"},
      {"binary junk", "POST", "/collections/e/search", std::string("\x00\xff\xfe{", 4),
       "application/json", 400, "bad_request"},
      {"wrong content type", "POST", "/collections/e/search", "{\"code\":\"" + q + "\"}",
       "text/plain", 415, "unsupported_media_type"},
      {"no content type", "POST", "/collections/e/items", "{\"items\":[]}", "", 415,
       "unsupported_media_type"},
      {"non-image as png, no encoder", "POST", "/collections/e/search", "hello", "image/png", 422,
       "no_encoder"},
      {"k = 0", "POST", "/collections/e/search", "{\"code\":\"" + q + "\",\"k\":0}",
       "application/json", 422, "invalid_argument"},
      {"k = -1", "POST", "/collections/e/search", "{\"code\":\"" + q + "\",\"k\":-1}",
       "application/json", 422, "invalid_argument"},
      {"k huge", "POST", "/collections/e/search",
       "{\"code\":\"" + q + "\",\"k\":18446744073709551615}", "application/json", 422,
       "invalid_argument"},
      {"k float", "POST", "/collections/e/search", "{\"code\":\"" + q + "\",\"k\":2.5}",
       "application/json", 400, "bad_request"},
      {"k string", "POST", "/collections/e/search", "{\"code\":\"" + q + "\",\"k\":\"5\"}",
       "application/json", 400, "bad_request"},
      {"radius < 0", "POST", "/collections/e/search", "{\"code\":\"" + q + "\",\"radius\":-3}",
       "application/json", 422, "invalid_argument"},
      {"short code", "POST", "/collections/e/search", "{\"code\":\"abcd\"}", "application/json",
       422, "invalid_code"},
      {"long code", "POST", "/collections/e/search", "{\"code\":\"" + q + "00\"}",
       "application/json", 422, "invalid_code"},
      {"non-hex code", "POST", "/collections/e/search", "{\"code\":\"zzzzzzzzzzzzzzzz\"}",
       "application/json", 422, "invalid_code"},
      {"wrong-length insert", "POST", "/collections/e/items", "{\"items\":[{\"code\":\"ab\"}]}",
       "application/json", 422, "invalid_code"},
      {"code and image", "POST", "/collections/e/search",
       "{\"code\":\"" + q + "\",\"image\":\"AA==\"}", "application/json", 400, "bad_request"},
      {"bad base64", "POST", "/collections/e/search", "{\"image\":\"!!!\"}", "application/json",
       400, "bad_request"},
      {"unknown collection", "POST", "/collections/zz/search", "{\"code\":\"" + q + "\"}",
       "application/json", 404, "not_found"},
      {"unknown route", "GET", "/nope", "", "", 404, "not_found"},
      {"unknown sub-route", "GET", "/collections/e/frobnicate", "", "", 404, "not_found"},
      {"method not allowed", "PUT", "/collections/e", "", "", 405, "method_not_allowed"},
      {"GET search", "GET", "/collections/e/search", "", "", 405, "method_not_allowed"},
      {"bad escape", "GET", "/collections/%zz", "", "", 400, "bad_request"},
  };
  for (const Case& c : cases) {
    HttpReply r = Call(port_, c.method, c.target, c.body, c.content_type);
    EXPECT_EQ(r.status, c.status) << c.what << ": " << r.body;
    EXPECT_EQ(r.ErrorCode(), c.code) << c.what << ": " << r.body;
    EXPECT_EQ(r.headers["Content-Type"], "application/json") << c.what;
  }
  ExpectIntact("e");

  // Transport-level errors, on raw sockets.
  // The limit is 1 MiB: a 2 MiB Content-Length is refused from the header.
  std::string reply =
      RawExchange(port_,
                  "POST /collections/e/items HTTP/1.1\r\nHost: localhost\r\n"
                  "Content-Type: application/json\r\nContent-Length: " +
                      std::to_string(2u << 20) + "\r\n\r\n" + std::string(100000, 'x'));
  EXPECT_EQ(RawStatus(reply), 413) << reply.substr(0, 200);
  reply = RawExchange(port_, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " +
                                 std::string(64 << 10, 'a') + "\r\n\r\n");
  EXPECT_EQ(RawStatus(reply), 431) << reply.substr(0, 200);
  reply = RawExchange(port_, "THIS IS NOT HTTP\r\n\r\n");
  EXPECT_EQ(RawStatus(reply), 400) << reply.substr(0, 200);
  reply = RawExchange(port_, "GET /healthz HTTP/1.1\r\nContent-Length: -5\r\n\r\n");
  EXPECT_EQ(RawStatus(reply), 400) << reply.substr(0, 200);
  // A request cut off in the middle of its body: 400 (partial message) or a
  // plain close, never a handled request.
  reply = RawExchange(port_,
                      "POST /collections/e/items HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                      "application/json\r\nContent-Length: 100\r\n\r\n{\"items\": [");
  EXPECT_TRUE(RawStatus(reply) == 400 || RawStatus(reply) == 0) << reply;
  ExpectIntact("e");
}

TEST_F(HttpApi, ImagesWithAnEncoder) {
  HttpReply c = PostJson(port_, "/collections",
                         {{"name", "img"}, {"encoder", "fake-model"}, {"index", "MIH"}});
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.Json()["bits"], 64);
  EXPECT_EQ(c.Json()["classes"], 4);
  // The resolved path inside --models-dir.
  const std::string encoder_path = c.Json()["encoder"].get<std::string>();
  EXPECT_EQ(encoder_path.substr(encoder_path.size() - 11), "/fake-model") << encoder_path;
  EXPECT_EQ(PostJson(port_, "/collections", {{"name", "img2"}, {"encoder", "fake-m"}, {"bits", 32}})
                .status,
            422);

  // The four class codes as images, plus a noisy "top" image.
  const FakeEncoder enc;
  std::vector<std::string> pngs;
  for (int k = 0; k < 4; ++k) {
    std::vector<uint8_t> code(enc.codebook().class_code(k), enc.codebook().class_code(k) + 8);
    pngs.push_back(PngOfCode(code));
  }
  std::vector<uint8_t> noisy(enc.codebook().class_code(2), enc.codebook().class_code(2) + 8);
  noisy[7] ^= 0x01;  // one bit away from "top": MHD, within the OOD radius
  json items = json::array();
  for (int k = 0; k < 4; ++k) {
    items.push_back(
        {{"id", 100 + k},
         {"label", k},
         {"image", Base64Encode(reinterpret_cast<const uint8_t*>(pngs[k].data()), pngs[k].size())},
         {"metadata", {{"source", "test"}}}});
  }
  HttpReply ins = PostJson(port_, "/collections/img/items", {{"items", items}});
  ASSERT_EQ(ins.status, 200) << ins.body;
  ASSERT_EQ(ins.Json()["images"].size(), 4u);

  // The same images as multipart/form-data: encoded on the server, each
  // file name kept as the item's path; one bad part stores nothing.
  auto multipart = [](const std::vector<std::pair<std::string, std::string>>& files) {
    std::string body;
    for (const auto& [name, bytes] : files) {
      body += "--BOUNDARY\r\nContent-Disposition: form-data; name=\"image\"; filename=\"" + name +
              "\"\r\nContent-Type: image/png\r\n\r\n" + bytes + "\r\n";
    }
    return body + "--BOUNDARY--\r\n";
  };
  const std::string form = "multipart/form-data; boundary=BOUNDARY";
  HttpReply mp = Call(port_, "POST", "/collections/img/items",
                      multipart({{"white.png", pngs[1]}, {"top.png", pngs[2]}}), form);
  ASSERT_EQ(mp.status, 200) << mp.body;
  ASSERT_EQ(mp.Json()["ids"].size(), 2u);
  EXPECT_EQ(mp.Json()["images"][1]["class_name"], "top");
  HttpReply got = Call(port_, "GET", "/collections/img/items/" + mp.Json()["ids"][1].dump());
  EXPECT_EQ(got.Json()["metadata"]["path"], "top.png") << got.body;
  const json before = Call(port_, "GET", "/collections/img").Json()["items"];
  HttpReply bad = Call(port_, "POST", "/collections/img/items",
                       multipart({{"ok.png", pngs[0]}, {"broken.png", "not a png"}}), form);
  EXPECT_EQ(bad.status, 422) << bad.body;
  EXPECT_NE(bad.body.find("broken.png"), std::string::npos) << bad.body;
  EXPECT_EQ(Call(port_, "POST", "/collections/img/items", "--BOUNDARY\r\nxx", form).status, 400);
  EXPECT_EQ(Call(port_, "GET", "/collections/img").Json()["items"], before);
  ASSERT_EQ(PostJson(port_, "/collections/img/items/delete", {{"ids", mp.Json()["ids"]}}).status, 200);
  EXPECT_EQ(ins.Json()["images"][2]["class_name"], "top");
  // A raw image/png body with query parameters.
  const std::string noisy_png = PngOfCode(noisy);
  HttpReply raw =
      Call(port_, "POST", "/collections/img/items?id=200&label=2", noisy_png, "image/png");
  ASSERT_EQ(raw.status, 200) << raw.body;
  EXPECT_EQ(raw.Json()["ids"][0], 200);

  HttpReply item = Call(port_, "GET", "/collections/img/items/102");
  ASSERT_EQ(item.status, 200);
  EXPECT_EQ(item.Json()["metadata"]["class_name"], "top");
  EXPECT_EQ(item.Json()["metadata"]["source"], "test");
  EXPECT_EQ(item.Json()["class_code"], FormatHex(enc.codebook().class_code(2), 64));

  // Search by a raw image: the noisy one decodes to "top" by MHD, not OOD.
  HttpReply s = Call(port_, "POST", "/collections/img/search?k=2", noisy_png, "image/png");
  ASSERT_EQ(s.status, 200) << s.body;
  json j = s.Json();
  EXPECT_EQ(j["query"]["class_name"], "top");
  EXPECT_EQ(j["query"]["decoding"], "MHD");
  EXPECT_EQ(j["query"]["distance_to_class"], 1);
  EXPECT_FALSE(j["query"]["ood"].get<bool>());
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][0]["id"], 200);
  EXPECT_EQ(j["results"][0]["distance"], 0);
  EXPECT_EQ(j["results"][1]["id"], 102);
  EXPECT_EQ(j["results"][1]["distance"], 1);
  // Search by a base64 image in JSON: exact decoding of "white".
  HttpReply s2 = PostJson(
      port_, "/collections/img/search",
      {{"image", Base64Encode(reinterpret_cast<const uint8_t*>(pngs[1].data()), pngs[1].size())},
       {"k", 1},
       {"with_metadata", true}});
  ASSERT_EQ(s2.status, 200) << s2.body;
  EXPECT_EQ(s2.Json()["query"]["decoding"], "ED");
  EXPECT_EQ(s2.Json()["results"][0]["id"], 101);
  EXPECT_EQ(s2.Json()["results"][0]["label"], 1);
  // A half-grey checkerboard is far from every class code: OOD.
  std::vector<uint8_t> checker(8, 0x55);
  HttpReply s3 = Call(port_, "POST", "/collections/img/search", PngOfCode(checker), "image/png");
  ASSERT_EQ(s3.status, 200);
  EXPECT_TRUE(s3.Json()["query"]["ood"].get<bool>());

  // Bad images: not an image, a truncated PNG, a JPEG header with junk.
  EXPECT_EQ(
      Call(port_, "POST", "/collections/img/search", "hello, not a png", "image/png").ErrorCode(),
      "invalid_image");
  EXPECT_EQ(Call(port_, "POST", "/collections/img/items", noisy_png.substr(0, noisy_png.size() / 2),
                 "image/png")
                .status,
            422);
  EXPECT_EQ(Call(port_, "POST", "/collections/img/search",
                 std::string("\xff\xd8\xff\xe0junkjunk", 12), "image/jpeg")
                .status,
            422);
  EXPECT_EQ(PostJson(port_, "/collections/img/search",
                     {{"image", Base64Encode(reinterpret_cast<const uint8_t*>("xyz"), 3)}})
                .status,
            422);
  EXPECT_EQ(Call(port_, "POST", "/collections/img/search", "x", "image/gif").status, 415);
  EXPECT_EQ(Call(port_, "GET", "/collections/img").Json()["items"], 5);

  // The encoder collection survives a restart (the codebook lives in the settings).
  h_.reset();
  h_ = std::make_unique<ServerHarness>(dir_.path());
  port_ = h_->port();
  HttpReply after = Call(port_, "POST", "/collections/img/search?k=1", noisy_png, "image/png");
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(after.Json()["results"][0]["id"], 200);
}

// Image items keep a thumbnail unless asked not to; clients may send their
// own; GET .../thumbnail serves it with an ETag (304 on a match); an upsert
// without one and a delete remove it; /sample picks a stored item.
TEST_F(HttpApi, ThumbnailsAndSample) {
  ASSERT_EQ(PostJson(port_, "/collections", {{"name", "img"}, {"encoder", "fake-model"}}).status, 201);
  EXPECT_EQ(Call(port_, "GET", "/collections/img/sample").status, 404);
  const FakeEncoder enc;
  std::vector<uint8_t> white(enc.codebook().class_code(1), enc.codebook().class_code(1) + 8);
  const std::string png = PngOfCode(white, 200);  // shrunk to 96 px
  const std::string b64 = Base64Encode(reinterpret_cast<const uint8_t*>(png.data()), png.size());
  ASSERT_EQ(PostJson(port_, "/collections/img/items", {{"items", {{{"id", 1}, {"image", b64}}}}}).status, 200);
  HttpReply t = Call(port_, "GET", "/collections/img/items/1/thumbnail");
  ASSERT_EQ(t.status, 200) << t.body;
  EXPECT_EQ(t.headers["Content-Type"], "image/png");
  auto im = DecodeImage(reinterpret_cast<const uint8_t*>(t.body.data()), t.body.size());
  ASSERT_TRUE(im.ok());
  EXPECT_EQ(im->width, kThumbnailMaxSide);
  const std::string etag = t.headers["ETag"];
  ASSERT_FALSE(etag.empty());
  EXPECT_EQ(t.headers["Cache-Control"], "private, no-cache");
  HttpReply same = Call(port_, "GET", "/collections/img/items/1/thumbnail", "", "", {{"If-None-Match", etag}});
  EXPECT_EQ(same.status, 304);
  EXPECT_TRUE(same.body.empty());
  EXPECT_EQ(Call(port_, "GET", "/collections/img/items/1/thumbnail", "", "",
                 {{"If-None-Match", "\"0000000000000000\""}}).status, 200);
  EXPECT_EQ(Call(port_, "GET", "/collections/img/items/99/thumbnail").ErrorCode(), "not_found");
  EXPECT_EQ(Call(port_, "GET", "/collections/img/items/x/thumbnail").status, 400);
  EXPECT_EQ(Call(port_, "GET", "/collections/nope/items/1/thumbnail").status, 404);

  // Raw and multipart images keep one too, unless thumbnails=false.
  ASSERT_EQ(Call(port_, "POST", "/collections/img/items?id=2", png, "image/png").status, 200);
  EXPECT_EQ(Call(port_, "GET", "/collections/img/items/2/thumbnail").status, 200);
  ASSERT_EQ(Call(port_, "POST", "/collections/img/items?id=3&thumbnails=false", png, "image/png").status, 200);
  EXPECT_EQ(Call(port_, "GET", "/collections/img/items/3/thumbnail").status, 404);
  EXPECT_EQ(Call(port_, "POST", "/collections/img/items?id=3&thumbnails=maybe", png, "image/png").status, 400);
  ASSERT_EQ(PostJson(port_, "/collections/img/items",
                     {{"thumbnails", false}, {"items", {{{"id", 4}, {"image", b64}}}}}).status, 200);
  EXPECT_EQ(Call(port_, "GET", "/collections/img/items/4/thumbnail").status, 404);

  // A client's own thumbnail with a code; a bad one stores nothing.
  const std::string small = PngOfCode(white, 16);
  const std::string small64 = Base64Encode(reinterpret_cast<const uint8_t*>(small.data()), small.size());
  ASSERT_EQ(PostJson(port_, "/collections/img/items",
                     {{"items", {{{"id", 5}, {"code", "ffffffffffffffff"}, {"thumbnail", small64}}}}}).status,
            200);
  EXPECT_EQ(Call(port_, "GET", "/collections/img/items/5/thumbnail").body, small);
  HttpReply too_big = PostJson(port_, "/collections/img/items",
                               {{"items", {{{"id", 6}, {"code", "00"}, {"image", b64}},
                                           {{"id", 7}, {"code", "ffffffffffffffff"}, {"thumbnail", b64}}}}});
  EXPECT_EQ(too_big.status, 422) << too_big.body;
  HttpReply not_image = PostJson(port_, "/collections/img/items",
                                 {{"items", {{{"id", 7}, {"code", "ffffffffffffffff"},
                                              {"thumbnail", Base64Encode(reinterpret_cast<const uint8_t*>("GIF89a"), 6)}}}}});
  EXPECT_EQ(not_image.status, 422) << not_image.body;
  EXPECT_NE(not_image.body.find("items[0]"), std::string::npos) << not_image.body;
  EXPECT_EQ(PostJson(port_, "/collections/img/items",
                     {{"items", {{{"id", 7}, {"code", "ffffffffffffffff"}, {"thumbnail", 5}}}}}).status,
            400);
  EXPECT_EQ(Call(port_, "GET", "/collections/img/items/7").status, 404);

  // An upsert without a thumbnail removes it; so does a delete.
  ASSERT_EQ(PostJson(port_, "/collections/img/items", {{"items", {{{"id", 1}, {"code", "ffffffffffffffff"}}}}}).status,
            200);
  EXPECT_EQ(Call(port_, "GET", "/collections/img/items/1/thumbnail").status, 404);
  ASSERT_EQ(Call(port_, "DELETE", "/collections/img/items/2").status, 200);
  EXPECT_EQ(Call(port_, "GET", "/collections/img/items/2/thumbnail").status, 404);

  // /sample answers stored items, as GET .../items/{id} shows them.
  std::set<uint64_t> seen;
  for (int i = 0; i < 40; ++i) {
    HttpReply r = Call(port_, "GET", "/collections/img/sample");
    ASSERT_EQ(r.status, 200) << r.body;
    const uint64_t id = r.Json()["id"].get<uint64_t>();
    EXPECT_TRUE(id == 1 || id == 3 || id == 4 || id == 5) << id;
    EXPECT_EQ(r.Json(), Call(port_, "GET", "/collections/img/items/" + std::to_string(id)).Json());
    seen.insert(id);
  }
  EXPECT_GE(seen.size(), 2u);
}

// The page and its files are compiled in and served to anyone, with a
// content security policy; unknown files are 404.
TEST_F(HttpApi, ServesThePage) {
  HttpReply page = Call(port_, "GET", "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.headers["Content-Type"], "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("<title>hamdb</title>"), std::string::npos);
  EXPECT_NE(page.headers["Content-Security-Policy"].find("default-src 'self'"), std::string::npos);
  HttpReply js = Call(port_, "GET", "/ui/app.js");
  ASSERT_EQ(js.status, 200);
  EXPECT_EQ(js.headers["Content-Type"], "text/javascript; charset=utf-8");
  EXPECT_NE(js.body.find("Authorization"), std::string::npos);
  EXPECT_EQ(Call(port_, "GET", "/ui/style.css").headers["Content-Type"], "text/css; charset=utf-8");
  EXPECT_EQ(Call(port_, "GET", "/ui/app.js", "", "", {{"If-None-Match", js.headers["ETag"]}}).status, 304);
  EXPECT_EQ(Call(port_, "GET", "/ui/missing.js").ErrorCode(), "not_found");
  EXPECT_EQ(Call(port_, "GET", "/ui/..%2fservice.cc").status, 404);
  EXPECT_EQ(Call(port_, "POST", "/").status, 405);
  EXPECT_EQ(Call(port_, "HEAD", "/").status, 200);
}

TEST_F(HttpApi, BucketIndexModes) {
  HttpReply c =
      PostJson(port_, "/collections", {{"name", "bk"}, {"encoder", "fake-m"}, {"index", "Bucket"}});
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.Json()["search_mode"], "bucket");
  // Codes scattered around the four class codes.
  const FakeEncoder enc;
  std::mt19937_64 rng(3);
  json items = json::array();
  for (uint64_t id = 1; id <= 400; ++id) {
    std::vector<uint8_t> code(enc.codebook().class_code(id % 4),
                              enc.codebook().class_code(id % 4) + 8);
    for (int f = 0; f < 6; ++f) code[rng() % 8] ^= static_cast<uint8_t>(1u << (rng() % 8));
    items_.push_back({id, code});
    items.push_back({{"id", id}, {"code", FormatHex(code.data(), kBits)}});
  }
  ASSERT_EQ(PostJson(port_, "/collections/bk/items", {{"items", items}}).status, 200);
  for (int t = 0; t < 10; ++t) {
    const std::vector<uint8_t> q = RandomCode(rng, kBits);
    const std::string hex = FormatHex(q.data(), kBits);
    HttpReply b = PostJson(port_, "/collections/bk/search",
                           {{"code", hex}, {"k", 10}, {"mode", "bucket"}, {"nprobe", 1}});
    ASSERT_EQ(b.status, 200) << b.body;
    EXPECT_EQ(b.Json()["mode"], "bucket");
    EXPECT_EQ(b.Json()["visited_buckets"].size(), 1u);
    // mode=exact on a bucket index visits buckets until the answer is provably exact.
    HttpReply e =
        PostJson(port_, "/collections/bk/search", {{"code", hex}, {"k", 10}, {"mode", "exact"}});
    ASSERT_EQ(e.status, 200) << e.body;
    EXPECT_TRUE(e.Json()["exact"].get<bool>());
    EXPECT_EQ(ResultsOf(e.Json()["results"]), BruteForce(items_, q, 10));
  }
  EXPECT_EQ(
      PostJson(port_, "/collections/bk/search", {{"code", std::string(16, '0')}, {"mode", "ivf"}})
          .ErrorCode(),
      "mode_unavailable");
}

TEST(HttpAuth, ReadAndAdminKeys) {
  TempDir dir;
  ServiceOptions so;
  so.read_key = "reader-secret";
  so.admin_key = "admin-secret";
  ServerHarness h(dir.path(), so);
  const uint16_t port = h.port();
  const std::map<std::string, std::string> admin = {{"Authorization", "Bearer admin-secret"}};
  const std::map<std::string, std::string> reader = {{"api-key", "reader-secret"}};
  const std::map<std::string, std::string> wrong = {{"Authorization", "Bearer admin-secreT"}};

  EXPECT_EQ(Call(port, "GET", "/healthz").status, 200);
  EXPECT_EQ(Call(port, "GET", "/readyz").status, 200);
  HttpReply no_key = Call(port, "GET", "/collections");
  EXPECT_EQ(no_key.status, 401);
  EXPECT_EQ(no_key.ErrorCode(), "unauthorized");
  EXPECT_EQ(no_key.headers["WWW-Authenticate"], "Bearer");
  EXPECT_EQ(Call(port, "GET", "/collections", "", "", wrong).status, 401);
  EXPECT_EQ(Call(port, "GET", "/metrics").status, 401);
  EXPECT_EQ(PostJson(port, "/collections", {{"name", "k"}, {"bits", 8}}).status, 401);
  EXPECT_EQ(PostJson(port, "/collections", {{"name", "k"}, {"bits", 8}}, reader).status, 401);
  ASSERT_EQ(PostJson(port, "/collections", {{"name", "k"}, {"bits", 8}}, admin).status, 201);
  EXPECT_EQ(PostJson(port, "/collections/k/items", {{"items", {{{"code", "ff"}}}}}, reader).status,
            401);
  ASSERT_EQ(PostJson(port, "/collections/k/items", {{"items", {{{"code", "ff"}}}}}, admin).status,
            200);
  EXPECT_EQ(Call(port, "GET", "/collections", "", "", reader).status, 200);
  EXPECT_EQ(Call(port, "GET", "/metrics", "", "", reader).status, 200);
  EXPECT_EQ(PostJson(port, "/collections/k/search", {{"code", "ff"}}, reader).status, 200);
  EXPECT_EQ(PostJson(port, "/collections/k/search", {{"code", "ff"}}, admin).status, 200);
  EXPECT_EQ(Call(port, "DELETE", "/collections/k", "", "", reader).status, 401);
  EXPECT_EQ(Call(port, "GET", "/collections/k").status, 401);
  EXPECT_EQ(Call(port, "GET", "/collections/k", "", "", reader).Json()["items"], 1);
  // The page loads without a key; what it shows needs one.
  EXPECT_EQ(Call(port, "GET", "/").status, 200);
  EXPECT_EQ(Call(port, "GET", "/ui/app.js").status, 200);
  EXPECT_EQ(Call(port, "GET", "/collections/k/sample").status, 401);
  EXPECT_EQ(Call(port, "GET", "/collections/k/sample", "", "", reader).status, 200);
  EXPECT_EQ(Call(port, "GET", "/collections/k/items/0/thumbnail").status, 401);
  EXPECT_EQ(Call(port, "GET", "/collections/k/items/0/thumbnail", "", "", reader).status, 404);
}

TEST(HttpAuth, NonLoopbackNeedsAKeyOrAnExplicitFlag) {
  TempDir dir;
  auto store = CodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  Service svc(store->get(), {});
  ServerOptions o;
  o.address = "0.0.0.0";
  o.port = 0;
  {
    HttpServer s(&svc, o);
    Status st = s.Start();
    EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition) << st.ToString();
  }
  o.allow_remote_without_key = true;
  {
    HttpServer s(&svc, o);
    EXPECT_TRUE(s.Start().ok());
  }
  o.allow_remote_without_key = false;
  o.has_api_key = true;
  {
    HttpServer s(&svc, o);
    EXPECT_TRUE(s.Start().ok());
  }
  o.address = "not an address";
  HttpServer bad(&svc, o);
  EXPECT_EQ(bad.Start().code(), Status::Code::kInvalidArgument);
}

TEST(HttpUtil, Multipart) {
  const std::string ct = "multipart/form-data; boundary=\"XyZ;1\"";
  const std::string body =
      "preamble\r\n--XyZ;1\r\n"
      "Content-Disposition: form-data; name=\"image\"; filename=\"a;b.png\"\r\n"
      "Content-Type: image/png\r\n\r\n"
      "\x89PNG\r\n--not-the-boundary\r\n"
      "\r\n--XyZ;1\r\n"
      "content-disposition: FORM-DATA; name=file2\r\n\r\n"
      "\r\n--XyZ;1--\r\nepilogue";
  auto parts = ParseMultipart(ct, body);
  ASSERT_TRUE(parts.ok()) << parts.status().ToString();
  ASSERT_EQ(parts->size(), 2u);
  EXPECT_EQ((*parts)[0].name, "image");
  EXPECT_EQ((*parts)[0].filename, "a;b.png");
  EXPECT_EQ((*parts)[0].content_type, "image/png");
  EXPECT_EQ((*parts)[0].data, "\x89PNG\r\n--not-the-boundary\r\n");
  EXPECT_EQ((*parts)[1].name, "file2");
  EXPECT_EQ((*parts)[1].filename, "");
  EXPECT_EQ((*parts)[1].data, "");
  // Refused: no boundary, no closing delimiter, a part that is not form-data.
  EXPECT_FALSE(ParseMultipart("multipart/form-data", body).ok());
  EXPECT_FALSE(ParseMultipart(ct, "--XyZ;1\r\nContent-Disposition: form-data; name=a\r\n\r\nabc").ok());
  EXPECT_FALSE(ParseMultipart(ct, "--XyZ;1\r\nContent-Type: text/plain\r\n\r\nabc\r\n--XyZ;1--").ok());
  EXPECT_FALSE(ParseMultipart(ct, "no boundary here").ok());
  // A part whose headers never end is refused, not merged with the next.
  EXPECT_FALSE(ParseMultipart(ct, "--XyZ;1\r\nContent-Disposition: form-data; name=a\r\n--XyZ;1\r\n"
                                  "Content-Disposition: form-data; name=c\r\n\r\nX\r\n--XyZ;1--")
                   .ok());
  // An escaped backslash before the closing quote.
  auto esc = ParseMultipart(ct, "--XyZ;1\r\nContent-Disposition: form-data; filename=\"a\\\\\"; name=n\r\n"
                                "\r\nX\r\n--XyZ;1--");
  ASSERT_TRUE(esc.ok()) << esc.status().ToString();
  EXPECT_EQ((*esc)[0].filename, "a\\");
  EXPECT_EQ((*esc)[0].name, "n");
  auto none = ParseMultipart(ct, "--XyZ;1--\r\n");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(HttpUtil, Helpers) {
  std::vector<uint8_t> out;
  ASSERT_TRUE(Base64Decode("aGVsbG8=", &out));
  EXPECT_EQ(std::string(out.begin(), out.end()), "hello");
  ASSERT_TRUE(Base64Decode("data:image/png;base64,aGVsbG8", &out));
  EXPECT_EQ(std::string(out.begin(), out.end()), "hello");
  EXPECT_FALSE(Base64Decode("aGV*bG8=", &out));
  EXPECT_FALSE(Base64Decode("a", &out));
  EXPECT_FALSE(Base64Decode("aG=VsbG8", &out));
  for (size_t n = 0; n < 10; ++n) {
    std::vector<uint8_t> data(n);
    for (size_t i = 0; i < n; ++i) data[i] = static_cast<uint8_t>(i * 37 + 1);
    ASSERT_TRUE(Base64Decode(Base64Encode(data.data(), n), &out));
    EXPECT_EQ(out, data);
  }
  // Against a symbol-at-a-time decoder written from the rules: whitespace
  // skipped, both alphabets, at most two '=' and nothing after them, no
  // lone symbol in the last quantum.
  auto reference = [](const std::string& in, std::vector<uint8_t>* got) {
    got->clear();
    const std::string symbols = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t acc = 0;
    int nbits = 0;
    size_t npad = 0, nsym = 0;
    for (char c : in) {
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
      if (c == '=') {
        ++npad;
        continue;
      }
      size_t v = c == '-' ? 62 : c == '_' ? 63 : symbols.find(c);
      if (v == std::string::npos || npad > 0) return false;
      ++nsym;
      acc = (acc << 6) | static_cast<uint32_t>(v);
      nbits += 6;
      if (nbits >= 8) {
        nbits -= 8;
        got->push_back(static_cast<uint8_t>((acc >> nbits) & 0xFF));
      }
    }
    return npad <= 2 && nsym % 4 != 1 && (npad == 0 || (nsym + npad) % 4 == 0);
  };
  std::mt19937 rng(5);
  const std::string chars = "ABCxyz019+/-_= \n*";
  size_t valid = 0;
  for (int t = 0; t < 20000; ++t) {
    std::string in;
    if (t % 2 == 0) {
      std::vector<uint8_t> data(rng() % 40);
      for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
      in = Base64Encode(data.data(), data.size());
      // A change here and there: a space, a bad byte, a symbol, padding.
      for (int e = rng() % 3; e > 0 && !in.empty(); --e) in[rng() % in.size()] = chars[rng() % chars.size()];
    } else {
      for (int i = rng() % 30; i > 0; --i) in += chars[rng() % (chars.size() - 4)];
    }
    std::vector<uint8_t> want;
    const bool ok = reference(in, &want);
    ASSERT_EQ(Base64Decode(in, &out), ok) << "'" << in << "'";
    if (ok) {
      EXPECT_EQ(out, want) << "'" << in << "'";
      ++valid;
    }
  }
  EXPECT_GT(valid, 5000u);
  EXPECT_TRUE(JsonDepthWithin("[[[]]]", 3));
  EXPECT_FALSE(JsonDepthWithin("[[[[]]]]", 3));
  EXPECT_TRUE(JsonDepthWithin("[\"[[[[[[\\\"[[[[\"]", 2));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abd", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("ab", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abcd", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", ""));
  auto t = ParseTarget("/collections/a%20b//search?k=5&mode=exact&x");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->segments, (std::vector<std::string>{"collections", "a b", "search"}));
  EXPECT_EQ(t->query["k"], "5");
  EXPECT_EQ(t->query["mode"], "exact");
  EXPECT_FALSE(ParseTarget("/a%2").ok());
  EXPECT_FALSE(ParseTarget("a").ok());
  int64_t v = 0;
  EXPECT_TRUE(ParseInt64("-12", &v));
  EXPECT_EQ(v, -12);
  EXPECT_FALSE(ParseInt64("99999999999999999999", &v));
  EXPECT_FALSE(ParseInt64("1x", &v));
  EXPECT_EQ(MediaType("Application/JSON; charset=utf-8"), "application/json");
}

}  // namespace
}  // namespace hamdb::http
