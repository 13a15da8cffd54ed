// The collection layer seen over HTTP: ids an index cannot take, spec
// families, a collection degraded by an index failure, the Host check,
// encoder paths confined to --models-dir, encoder checksums and artifact
// transfer, and bounded responses.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "collection/settings.h"
#include "tests/http/http_test_util.h"
#include "tests/collection/collection_test_util.h"

namespace hamdb::http {
namespace {

using namespace hamdb::http::testing;

std::string Hex(const std::vector<uint8_t>& code, int bits) { return FormatHex(code.data(), bits); }

// The reproduction: an IVF16 collection takes id 1, refuses
// 9223372036854775809 with nothing stored, keeps assigning small ids, and
// after a restart still serves every route.
TEST(HttpCollection, OutOfRangeIvfIdIsRefusedAndTheCollectionServesAfterRestart) {
  TempDir dir;
  std::mt19937_64 rng(1);
  const std::string code = Hex(RandomCode(rng, 64), 64);
  {
    ServerHarness h(dir.path());
    ASSERT_EQ(PostJson(h.port(), "/collections", {{"name", "v"}, {"bits", 64}, {"index", "IVF16"}})
                  .status,
              201);
    ASSERT_EQ(PostJson(h.port(), "/collections/v/items", {{"items", {{{"id", 1}, {"code", code}}}}})
                  .status,
              200);
    HttpReply bad = PostJson(h.port(), "/collections/v/items",
                             json::parse(R"({"items": [{"id": 9223372036854775809, "code": ")" +
                                         code + R"("}]})"));
    EXPECT_EQ(bad.status, 422) << bad.body;
    EXPECT_EQ(bad.Json()["error"]["code"], "invalid_argument");
    EXPECT_EQ(Call(h.port(), "GET", "/collections/v/items/9223372036854775809").status, 404);
    HttpReply next = PostJson(h.port(), "/collections/v/items", {{"items", {{{"code", code}}}}});
    ASSERT_EQ(next.status, 200) << next.body;
    EXPECT_EQ(next.Json()["ids"][0], 2);
    EXPECT_FALSE(next.Json().contains("warning"));
  }
  ServerHarness h(dir.path());  // restart
  HttpReply d = Call(h.port(), "GET", "/collections/v");
  ASSERT_EQ(d.status, 200);
  EXPECT_EQ(d.Json()["status"], "ready") << d.body;
  EXPECT_EQ(d.Json()["items"], 2);
  HttpReply s = PostJson(h.port(), "/collections/v/search", {{"code", code}, {"k", 5}});
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_EQ(Call(h.port(), "DELETE", "/collections/v/items/1").status, 200);
}

// GPUIVF is an IVF family spec: mode ivf runs, mode exact is refused (the
// index cannot prove exactness). GPUBucket can be created from an encoder
// and answers mode exact exactly.
TEST(HttpCollection, GpuSpecsBelongToTheirFamilies) {
  TempDir dir;
  ServerHarness h(dir.path());
  ASSERT_EQ(PostJson(h.port(), "/collections", {{"name", "g"}, {"bits", 64}, {"index", "GPUIVF16"}})
                .status,
            201);
  std::mt19937_64 rng(2);
  json items = json::array();
  for (int i = 0; i < 700; ++i) items.push_back({{"code", Hex(RandomCode(rng, 64), 64)}});
  ASSERT_EQ(PostJson(h.port(), "/collections/g/items", {{"items", items}}).status, 200);
  const std::string q = Hex(RandomCode(rng, 64), 64);
  HttpReply exact = PostJson(h.port(), "/collections/g/search", {{"code", q}, {"mode", "exact"}});
  EXPECT_EQ(exact.status, 422) << exact.body;
  EXPECT_EQ(exact.Json()["error"]["code"], "mode_unavailable");
  HttpReply ivf = PostJson(h.port(), "/collections/g/search", {{"code", q}, {"mode", "ivf"}});
  ASSERT_EQ(ivf.status, 200) << ivf.body;
  EXPECT_EQ(ivf.Json()["mode"], "ivf");
  EXPECT_EQ(Call(h.port(), "GET", "/collections/g").Json()["search_mode"], "ivf");

  HttpReply gb = PostJson(h.port(), "/collections",
                          {{"name", "gb"}, {"encoder", "fake-model"}, {"index", "GPUBucket"}});
  ASSERT_EQ(gb.status, 201) << gb.body;
  EXPECT_EQ(gb.Json()["search_mode"], "bucket");
  ASSERT_EQ(PostJson(h.port(), "/collections/gb/items", {{"items", items}}).status, 200);
  HttpReply gbe = PostJson(h.port(), "/collections/gb/search", {{"code", q}, {"mode", "exact"}});
  ASSERT_EQ(gbe.status, 200) << gbe.body;
  EXPECT_TRUE(gbe.Json()["exact"].get<bool>());
}

TEST(HttpCollection, IndexFailureAnswersWithAWarningServesDegradedAndRebuilds) {
  TempDir dir;
  // An index that fails on demand after the durable write.
  testing_util::FaultSwitch faults;
  ServiceOptions so;
  so.index_maker = testing_util::FaultyIndexMaker(&faults);
  so.rebuild_delay = std::chrono::milliseconds(50);
  ServerHarness h(dir.path(), so);
  ASSERT_EQ(PostJson(h.port(), "/collections", {{"name", "f"}, {"bits", 32}}).status, 201);
  ASSERT_EQ(PostJson(h.port(), "/collections/f/items",
                     {{"items", {{{"id", 1}, {"code", "0000000f"}}, {{"id", 2}, {"code", "000000ff"}}}}})
                .status,
            200);

  faults.fail = true;
  faults.fail_build = true;  // and every rebuild, until released
  HttpReply w = PostJson(h.port(), "/collections/f/items", {{"items", {{{"id", 3}, {"code", "00000000"}}}}});
  ASSERT_EQ(w.status, 200) << w.body;
  ASSERT_TRUE(w.Json().contains("warning")) << w.body;
  HttpReply d = Call(h.port(), "GET", "/collections/f");
  EXPECT_EQ(d.Json()["status"], "degraded") << d.body;
  EXPECT_NE(d.Json()["reason"].get<std::string>().find("injected"), std::string::npos);
  // Reads during the degraded state: the item, and exact searches by a scan
  // of the store that include it.
  EXPECT_EQ(Call(h.port(), "GET", "/collections/f/items/3").status, 200);
  HttpReply s = PostJson(h.port(), "/collections/f/search", {{"code", "00000000"}, {"k", 3}});
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_TRUE(s.Json()["degraded"].get<bool>());
  EXPECT_TRUE(s.Json()["exact"].get<bool>());
  EXPECT_EQ(s.Json()["results"][0]["id"], 3);
  EXPECT_EQ(s.Json()["results"][1]["id"], 1);
  EXPECT_EQ(s.Json()["results"][2]["id"], 2);
  EXPECT_EQ(Call(h.port(), "DELETE", "/collections/f/items/2").status, 200);

  faults.fail = false;  // the background rebuild now succeeds
  faults.fail_build = false;
  json desc;
  for (int i = 0; i < 200; ++i) {
    desc = Call(h.port(), "GET", "/collections/f").Json();
    if (desc["status"] == "ready") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(desc["status"], "ready") << desc.dump();
  EXPECT_EQ(desc["items"], 2);
  HttpReply after = PostJson(h.port(), "/collections/f/search", {{"code", "00000000"}, {"k", 3}});
  EXPECT_FALSE(after.Json().contains("degraded")) << after.body;
  EXPECT_EQ(after.Json()["results"].size(), 2u);
}

// Writes run on the writer pool: a write stuck in its index update leaves
// the single I/O thread free for searches, and once write_queue writes are
// waiting, the next one is refused with 503 and Retry-After.
TEST(HttpCollection, WritesRunOffTheIoThreadsAndTheQueueIsBounded) {
  TempDir dir;
  testing_util::FaultSwitch sw;
  ServiceOptions so;
  so.index_maker = testing_util::FaultyIndexMaker(&sw);
  ServerOptions o;
  o.threads = 1;
  o.write_threads = 1;
  o.write_queue = 1;
  ServerHarness h(dir.path(), so, o);
  ASSERT_EQ(PostJson(h.port(), "/collections", {{"name", "w"}, {"bits", 16}}).status, 201);
  ASSERT_EQ(PostJson(h.port(), "/collections/w/items", {{"items", {{{"id", 1}, {"code", "00ff"}}}}})
                .status,
            200);
  EXPECT_TRUE(Service::RunsOffIoThreads("POST", "/collections/w/items"));
  EXPECT_TRUE(Service::RunsOffIoThreads("DELETE", "/collections/w/items/1"));
  EXPECT_TRUE(Service::RunsOffIoThreads("POST", "/collections"));
  EXPECT_FALSE(Service::RunsOffIoThreads("POST", "/collections/w/search"));
  EXPECT_FALSE(Service::RunsOffIoThreads("GET", "/collections/w/items/1"));
  EXPECT_TRUE(Service::RunsOffIoThreads("POST", "/collections/w/items/exists"));
  EXPECT_TRUE(Service::RunsOffIoThreads("GET", "/collections/w/encoder"));
  EXPECT_FALSE(Service::RunsOffIoThreads("GET", "/collections/w"));

  sw.hold = true;
  HttpReply first;
  std::thread writer([&] {
    first = PostJson(h.port(), "/collections/w/items", {{"items", {{{"id", 2}, {"code", "0f0f"}}}}});
  });
  for (int i = 0; i < 2000 && sw.held.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(sw.held.load(), 1);  // the first write is inside its index update
  HttpReply second =
      PostJson(h.port(), "/collections/w/items", {{"items", {{{"id", 3}, {"code", "0001"}}}}});
  EXPECT_EQ(second.status, 503) << second.body;
  EXPECT_EQ(second.ErrorCode(), "write_queue_full");
  EXPECT_EQ(second.headers["Retry-After"], "1");
  HttpReply search = PostJson(h.port(), "/collections/w/search", {{"code", "00ff"}, {"k", 1}});
  EXPECT_EQ(search.status, 200) << search.body;  // the one I/O thread is free
  EXPECT_EQ(Call(h.port(), "GET", "/collections/w/items/1").status, 200);
  sw.hold = false;
  writer.join();
  EXPECT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(Call(h.port(), "GET", "/collections/w/items/3").status, 404);  // refused: not stored
  EXPECT_EQ(Call(h.port(), "GET", "/collections/w/items/2").status, 200);
}

TEST(HttpCollection, ForeignHostIsForbiddenWithoutAKey) {
  TempDir dir;
  ServerHarness h(dir.path());
  const std::string port = std::to_string(h.port());
  HttpReply evil = Call(h.port(), "GET", "/collections", "", "", {{"Host", "evil.example:" + port}});
  EXPECT_EQ(evil.status, 403);
  EXPECT_EQ(evil.Json()["error"]["code"], "forbidden");
  EXPECT_EQ(Call(h.port(), "GET", "/collections", "", "", {{"Host", "localhost:" + port}}).status,
            200);
  EXPECT_EQ(Call(h.port(), "GET", "/collections", "", "", {{"Host", "127.0.0.1:" + port}}).status,
            200);
  EXPECT_EQ(Call(h.port(), "GET", "/collections", "", "", {{"Host", "localhost:1"}}).status, 403);
  // IP literals cannot be rebound: a LAN address of the machine is served.
  EXPECT_EQ(Call(h.port(), "GET", "/collections", "", "", {{"Host", "10.1.2.3:" + port}}).status,
            200);
  EXPECT_EQ(Call(h.port(), "GET", "/collections", "", "", {{"Host", "[fe80::1]:" + port}}).status,
            200);
  EXPECT_EQ(Call(h.port(), "GET", "/collections", "", "", {{"Host", "LocalHost"}}).status, 200);
  for (const std::string& bad : std::vector<std::string>{"10.1.2.3:1", "10.1.2:" + port, "1.2.3.4.5", "256.1.1.1",
                                "evil.example", "127.0.0.1.evil.example:" + port,
                                "localhost.evil.example"}) {
    EXPECT_EQ(Call(h.port(), "GET", "/collections", "", "", {{"Host", bad}}).status, 403) << bad;
  }
  // With an API key the key is the guard, not the Host.
  TempDir keyed;
  ServiceOptions so;
  so.admin_key = "k";
  ServerHarness hk(keyed.path(), so);
  EXPECT_EQ(Call(hk.port(), "GET", "/collections", "", "",
                 {{"Host", "evil.example"}, {"Authorization", "Bearer k"}})
                .status,
            200);
}

TEST(HttpCollection, EncoderPathsStayInsideModelsDir) {
  TempDir dir;
  ServerHarness h(dir.path());
  auto create = [&](const std::string& path) {
    return PostJson(h.port(), "/collections", {{"name", "e"}, {"encoder", path}});
  };
  // Outside the directory, whether the file exists or not: the same answer.
  HttpReply exists = create("/etc/passwd");
  HttpReply missing = create("/etc/no-such-file-here");
  HttpReply up = create("../../../etc/passwd");
  EXPECT_EQ(exists.status, 422);
  EXPECT_EQ(missing.status, 422);
  EXPECT_EQ(up.status, 422);
  auto without_path = [](HttpReply& r, const std::string& path) {
    std::string m = r.Json()["error"]["message"].get<std::string>();
    return m.replace(m.find(path), path.size(), "P");
  };
  EXPECT_EQ(without_path(exists, "/etc/passwd"), without_path(missing, "/etc/no-such-file-here"));
  EXPECT_EQ(Call(h.port(), "GET", "/collections/e").status, 404);
  EXPECT_EQ(create("fake-model").status, 201);

  // A server without --models-dir takes no encoder paths at all.
  TempDir bare;
  auto store = std::move(CodeStore::Open(bare.path())).value();
  ServiceOptions so;
  so.encoder_loader = [](const std::string&) -> StatusOr<std::shared_ptr<const Encoder>> {
    return std::shared_ptr<const Encoder>(std::make_shared<FakeEncoder>());
  };
  Service svc(store.get(), so);
  ASSERT_TRUE(svc.LoadCollections().ok());
  Request r;
  r.method = "POST";
  r.target = "/collections";
  r.content_type = "application/json";
  r.body = R"({"name": "e", "encoder": "/models/m.hdbe"})";
  Response resp = svc.Handle(r);
  EXPECT_EQ(resp.status, 422);
  EXPECT_NE(resp.body.find("--models-dir"), std::string::npos) << resp.body;
}

TEST(HttpCollection, EncoderChecksumGuardsWritesAndArtifactsTravel) {
  TempDir dir;
  const std::string fake_sum = ArtifactChecksum("fake", 4);
  {
    ServerHarness h(dir.path());
    ASSERT_EQ(PostJson(h.port(), "/collections", {{"name", "e"}, {"encoder", "fake-model"}}).status, 201);
    HttpReply d = Call(h.port(), "GET", "/collections/e");
    EXPECT_EQ(d.Json()["encoder_checksum"], fake_sum) << d.body;

    // The artifact comes back byte for byte.
    HttpReply art = Call(h.port(), "GET", "/collections/e/encoder");
    EXPECT_EQ(art.status, 200);
    EXPECT_EQ(art.body, "fake");
    EXPECT_EQ(art.headers["Content-Type"], "application/octet-stream");

    // Codes made by another encoder are refused, naming both; nothing is stored.
    const std::string code = std::string(16, '0');
    json item = {{"id", 7}, {"code", code}, {"score", 1.5}, {"metadata", {{"path", "a/x.png"}}}};
    const std::string other = ArtifactChecksum("other", 5);
    HttpReply wrong = PostJson(h.port(), "/collections/e/items",
                               {{"encoder_checksum", other}, {"items", {item}}});
    EXPECT_EQ(wrong.status, 409) << wrong.body;
    EXPECT_EQ(wrong.ErrorCode(), "encoder_mismatch");
    const std::string msg = wrong.Json()["error"]["message"];
    EXPECT_NE(msg.find(other), std::string::npos) << msg;
    EXPECT_NE(msg.find(fake_sum), std::string::npos) << msg;
    EXPECT_EQ(Call(h.port(), "GET", "/collections/e").Json()["items"], 0);
    EXPECT_EQ(PostJson(h.port(), "/collections/e/items", {{"encoder_checksum", 5}, {"items", {item}}}).status,
              400);

    // The right checksum stores; the exists route reports ids and paths.
    HttpReply ok = PostJson(h.port(), "/collections/e/items", {{"encoder_checksum", fake_sum}, {"items", {item}}});
    EXPECT_EQ(ok.status, 200) << ok.body;
    HttpReply ex = PostJson(h.port(), "/collections/e/items/exists", {{"ids", {7, 8}}});
    EXPECT_EQ(ex.status, 200) << ex.body;
    EXPECT_EQ(ex.Json()["exists"], json({true, false}));
    EXPECT_EQ(ex.Json()["paths"], json({"a/x.png", nullptr}));
    EXPECT_EQ(PostJson(h.port(), "/collections/e/items/exists", {{"ids", {-1}}}).status, 400);
    EXPECT_EQ(PostJson(h.port(), "/collections/nope/items/exists", {{"ids", {1}}}).status, 404);

    // An encoder-less collection takes raw codes, and refuses a checksum.
    ASSERT_EQ(PostJson(h.port(), "/collections", {{"name", "raw"}, {"bits", 64}}).status, 201);
    EXPECT_EQ(PostJson(h.port(), "/collections/raw/items", {{"encoder_checksum", fake_sum}, {"items", {item}}})
                  .status,
              409);
    EXPECT_EQ(PostJson(h.port(), "/collections/raw/items", {{"items", {item}}}).status, 200);
    EXPECT_EQ(Call(h.port(), "GET", "/collections/raw/encoder").status, 404);

    // Uploads: stored once, the same bytes again are fine, other bytes under
    // the name are a conflict, and nothing unloadable or oddly named stays.
    const std::string models = dir.path() + ".models";
    auto put = [&](const std::string& name, const std::string& bytes) {
      return Call(h.port(), "PUT", "/admin/models/" + name, bytes, "application/octet-stream");
    };
    HttpReply up = put("fake-new", "fake new bytes");
    EXPECT_EQ(up.status, 201) << up.body;
    EXPECT_EQ(up.Json()["encoder_checksum"], ArtifactChecksum("fake new bytes", 14));
    EXPECT_EQ(put("fake-new", "fake new bytes").status, 200);
    HttpReply clash = put("fake-new", "fake other bytes");
    EXPECT_EQ(clash.status, 409) << clash.body;
    EXPECT_EQ(put("notfake", "x").status, 422);  // the loader refuses it
    EXPECT_EQ(put(".hidden", "fake").status, 422);
    EXPECT_EQ(put("fake-empty", "").status, 422);
    std::vector<std::string> files;
    for (const auto& f : std::filesystem::directory_iterator(models)) files.push_back(f.path().filename());
    std::sort(files.begin(), files.end());
    EXPECT_EQ(files, (std::vector<std::string>{"fake-m", "fake-model", "fake-new"}));
    std::ifstream in(models + "/fake-new");
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "fake new bytes");
    EXPECT_EQ(PostJson(h.port(), "/collections", {{"name", "n"}, {"encoder", "fake-new"}}).status, 201);
  }
  {
    // A collection made before checksums existed gets one at open; an
    // artifact replaced under a collection is not used.
    auto store = std::move(CodeStore::Open(dir.path())).value();
    CollectionSettings old;
    old.encoder_path = dir.path() + ".models/fake-m";
    old.codebook = FakeEncoder::MakeCodebook();
    ASSERT_TRUE(LiveCollection::Create(store.get(), "old", 64, "Flat", old).ok());
  }
  ServerHarness h(dir.path(), {}, {}, /*load=*/false);
  std::ofstream(dir.path() + ".models/fake-new") << "fake replaced";
  h.Load();
  HttpReply old = Call(h.port(), "GET", "/collections/old");
  EXPECT_EQ(old.Json()["encoder_checksum"], fake_sum) << old.body;
  EXPECT_EQ(old.Json()["encoder_loaded"], true);
  HttpReply n = Call(h.port(), "GET", "/collections/n");
  EXPECT_EQ(n.Json()["encoder_loaded"], false) << n.body;
  EXPECT_NE(n.Json()["encoder_error"].get<std::string>().find("checksum"), std::string::npos) << n.body;
  EXPECT_EQ(Call(h.port(), "GET", "/collections/n/encoder").status, 409);
}

TEST(HttpCollection, ResponsesAreBoundedByMaxResults) {
  TempDir dir;
  ServiceOptions so;
  so.max_results = 5;
  ServerHarness h(dir.path(), so);
  ASSERT_EQ(PostJson(h.port(), "/collections", {{"name", "b"}, {"bits", 16}, {"index", "Flat"}})
                .status,
            201);
  json items = json::array();
  for (int i = 0; i < 20; ++i) items.push_back({{"id", 100 - i}, {"code", i < 10 ? "0000" : "0001"}});
  ASSERT_EQ(PostJson(h.port(), "/collections/b/items", {{"items", items}}).status, 200);
  HttpReply r = PostJson(h.port(), "/collections/b/search", {{"code", "0000"}, {"radius", 3}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(r.Json()["truncated"].get<bool>());
  ASSERT_EQ(r.Json()["results"].size(), 5u);
  // The first five in (distance, id) order: distance 0, ids 91..95.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(r.Json()["results"][i]["id"], 91 + i);
    EXPECT_EQ(r.Json()["results"][i]["distance"], 0);
  }
  HttpReply small = PostJson(h.port(), "/collections/b/search", {{"code", "0000"}, {"k", 5}});
  EXPECT_FALSE(small.Json().contains("truncated"));
  HttpReply b = PostJson(h.port(), "/collections/b/search/batch",
                         {{"codes", {"0000", "0001", "0000"}}, {"k", 3}});
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_TRUE(b.Json()["truncated"].get<bool>());
  const json batches = b.Json()["batches"];
  size_t total = 0;
  for (const json& q : batches) total += q["results"].size();
  EXPECT_EQ(total, 5u);
  EXPECT_EQ(b.Json()["batches"][0]["results"].size(), 3u);
  EXPECT_EQ(b.Json()["batches"][1]["results"].size(), 2u);
  EXPECT_EQ(b.Json()["batches"][2]["results"].size(), 0u);
}

}  // namespace
}  // namespace hamdb::http

namespace hamdb::http {
namespace {

// POST /admin/backup: admin only, only into --backup-dir, restorable with
// the items written before it, and refused without a backup directory.
TEST(HttpAdmin, BackupWritesOnlyIntoTheServersBackupDirAndRestores) {
  testing::TempDir dir;
  {
    ServerHarness plain(dir.path() + "/plain");
    HttpReply r = PostJson(plain.port(), "/admin/backup", json::object());
    EXPECT_EQ(r.status, 422) << r.body;
    EXPECT_NE(r.body.find("--backup-dir"), std::string::npos) << r.body;
  }
  ServiceOptions so;
  so.admin_key = "admin";
  so.read_key = "reader";
  so.backup_dir = dir.path() + "/backups";
  so.snapshots = true;
  ServerHarness h(dir.path() + "/db", so);
  const std::map<std::string, std::string> admin = {{"Authorization", "Bearer admin"}};
  const std::map<std::string, std::string> reader = {{"Authorization", "Bearer reader"}};
  ASSERT_EQ(PostJson(h.port(), "/collections", {{"name", "c"}, {"bits", 16}}, admin).status, 201);
  json items = json::array();
  for (int i = 0; i < 50; ++i) items.push_back({{"id", i}, {"code", "00ff"}});
  ASSERT_EQ(PostJson(h.port(), "/collections/c/items", {{"items", items}}, admin).status, 200);
  EXPECT_EQ(PostJson(h.port(), "/admin/backup", json::object(), reader).status, 401);
  EXPECT_EQ(PostJson(h.port(), "/admin/backup", json::object()).status, 401);
  HttpReply r = PostJson(h.port(), "/admin/backup", json::object(), admin);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Json()["backup_id"], 1);
  EXPECT_EQ(r.Json()["backup_dir"], so.backup_dir);
  // Writes after the backup are not in it.
  ASSERT_EQ(PostJson(h.port(), "/collections/c/items", {{"items", {{{"id", 99}, {"code", "0f0f"}}}}},
                     admin)
                .status,
            200);
  const std::string restored = dir.path() + "/restored";
  ASSERT_TRUE(CodeStore::RestoreBackup(so.backup_dir, 1, restored).ok());
  auto store = std::move(CodeStore::Open(restored)).value();
  EXPECT_EQ(*store->Count("c"), 50u);
  EXPECT_TRUE(store->Check().ok());
}

}  // namespace
}  // namespace hamdb::http
