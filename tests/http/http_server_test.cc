// The HTTP transport: keep-alive and pipelining, slow clients, graceful
// shutdown, concurrent inserts and searches (also run under ThreadSanitizer by
// scripts/test-tsan.sh), restart, and a kill -9 during a stream of inserts.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <set>

#include "tests/http/http_test_util.h"

namespace hamdb::http {
namespace {

using namespace hamdb::http::testing;

constexpr int kBits = 64;

TEST(HttpServer, KeepAliveAndPipelining) {
  TempDir dir;
  ServerHarness h(dir.path());
  ASSERT_EQ(PostJson(h.port(), "/collections", {{"name", "p"}, {"bits", 8}}).status, 201);
  // Many requests on one keep-alive connection.
  Client c(h.port());
  for (int i = 0; i < 20; ++i) {
    HttpReply r = c.Request(
        "POST", "/collections/p/items",
        json{{"items", {{{"id", i}, {"code", FormatHex(reinterpret_cast<uint8_t*>(&i), 8)}}}}}
            .dump(),
        "application/json");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(r.keep_alive);
  }
  // Three pipelined requests written at once are answered in order.
  const std::string body = R"({"code":"05","k":1})";
  std::string burst;
  for (const char* target : {"/collections/p/items/3", "/healthz", "/collections/p/items/7"}) {
    burst += std::string("GET ") + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  }
  burst +=
      "POST /collections/p/search HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  asio::write(c.socket(), asio::buffer(burst));
  HttpReply r1 = c.ReadReply(), r2 = c.ReadReply(), r3 = c.ReadReply(), r4 = c.ReadReply();
  EXPECT_EQ(r1.Json()["id"], 3);
  EXPECT_EQ(r2.Json()["status"], "ok");
  EXPECT_EQ(r3.Json()["id"], 7);
  EXPECT_EQ(r4.Json()["results"][0]["id"], 5);
  // HTTP/1.0 without keep-alive: answered, then closed.
  std::string reply = RawExchange(h.port(), "GET /healthz HTTP/1.0\r\n\r\n", false);
  EXPECT_EQ(RawStatus(reply), 200);
}

TEST(HttpServer, ExpectContinue) {
  TempDir dir;
  ServerHarness h(dir.path());
  ASSERT_EQ(PostJson(h.port(), "/collections", {{"name", "e"}, {"bits", 8}}).status, 201);
  const std::string body = R"({"items": [{"id": 4, "code": "0f"}]})";
  Client c(h.port());
  asio::write(c.socket(), asio::buffer("POST /collections/e/items HTTP/1.1\r\nHost: localhost\r\n"
                                       "Content-Type: application/json\r\nExpect: 100-continue\r\n"
                                       "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n"));
  // The interim answer comes before any body byte is sent.
  std::string interim;
  char ch;
  while (interim.size() < 4 || interim.compare(interim.size() - 4, 4, "\r\n\r\n") != 0) {
    asio::read(c.socket(), asio::buffer(&ch, 1));
    interim.push_back(ch);
  }
  EXPECT_EQ(RawStatus(interim), 100) << interim;
  asio::write(c.socket(), asio::buffer(body));
  HttpReply r = c.ReadReply();
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Call(h.port(), "GET", "/collections/e/items/4").Json()["code"], "0f");
}

TEST(HttpServer, SlowClientIsDisconnected) {
  TempDir dir;
  ServerOptions o;
  o.read_timeout = std::chrono::milliseconds(300);
  ServerHarness h(dir.path(), {}, o);
  asio::io_context ioc;
  tcp::socket s(ioc);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), h.port()));
  asio::write(s, asio::buffer(std::string("GET /heal")));  // and then nothing
  char buf[256];
  boost::system::error_code ec;
  size_t n = s.read_some(asio::buffer(buf), ec);  // blocks until the server gives up
  EXPECT_TRUE(ec) << "server sent " << std::string(buf, n);
  EXPECT_EQ(Call(h.port(), "GET", "/healthz").status, 200);
}

TEST(HttpServer, GracefulShutdownClosesIdleConnectionsAndStopsListening) {
  TempDir dir;
  ServerHarness h(dir.path());
  const uint16_t port = h.port();
  Client idle(port);
  ASSERT_EQ(idle.Request("GET", "/healthz").status, 200);
  h.server()->Shutdown();
  h.server()->Wait();  // returns although `idle` never closed its connection
  boost::system::error_code ec;
  char buf[16];
  idle.socket().read_some(asio::buffer(buf), ec);
  EXPECT_TRUE(ec);  // the server closed it
  asio::io_context ioc;
  tcp::socket s(ioc);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  EXPECT_TRUE(ec);  // no longer listening
}

TEST(HttpServer, ShutdownDrainsARequestInFlight) {
  TempDir dir;
  ServerHarness h(dir.path());
  ASSERT_EQ(PostJson(h.port(), "/collections", {{"name", "d"}, {"bits", 8}}).status, 201);
  // Half a request is on the wire when the shutdown starts ...
  const std::string body = R"({"items": [{"id": 1, "code": "ab"}]})";
  const std::string head =
      "POST /collections/d/items HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  Client c(h.port());
  asio::write(c.socket(), asio::buffer(head + body.substr(0, 10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  h.server()->Shutdown();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // ... and is still answered, with Connection: close, once the rest arrives.
  asio::write(c.socket(), asio::buffer(body.substr(10)));
  HttpReply r = c.ReadReply();
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.keep_alive);
  h.server()->Wait();
  StatusOr<Item> item = h.store()->Get("d", 1);
  ASSERT_TRUE(item.ok());
  EXPECT_EQ(item->code, std::vector<uint8_t>{0xab});
}

TEST(HttpServer, ConcurrentInsertsAndSearches) {
  TempDir dir;
  ServerOptions o;
  o.threads = 4;
  ServerHarness h(dir.path(), {}, o);
  const uint16_t port = h.port();
  ASSERT_EQ(PostJson(port, "/collections", {{"name", "c"}, {"bits", kBits}}).status, 201);
  constexpr int kWriters = 3, kReaders = 3, kBatches = 15, kBatch = 20;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937_64 rng(w + 1);
      Client c(port);
      for (int b = 0; b < kBatches; ++b) {
        json items = json::array();
        for (int i = 0; i < kBatch; ++i) {
          const uint64_t id = (w * kBatches + b) * kBatch + i + 1;
          items.push_back({{"id", id},
                           {"code", FormatHex(RandomCode(rng, kBits).data(), kBits)},
                           {"label", w}});
        }
        HttpReply r = c.Request("POST", "/collections/c/items", json{{"items", items}}.dump(),
                                "application/json");
        if (r.status != 200) ++failures;
      }
    });
  }
  for (int rd = 0; rd < kReaders; ++rd) {
    threads.emplace_back([&, rd] {
      std::mt19937_64 rng(100 + rd);
      Client c(port);
      for (int i = 0; i < 60; ++i) {
        const std::string q = FormatHex(RandomCode(rng, kBits).data(), kBits);
        HttpReply r = c.Request("POST", "/collections/c/search", json{{"code", q}, {"k", 5}}.dump(),
                                "application/json");
        if (r.status != 200) {
          ++failures;
          continue;
        }
        // Results are always sorted by (distance, id), whatever was inserted meanwhile.
        const json res = r.Json()["results"];
        for (size_t j = 1; j < res.size(); ++j) {
          const auto d0 = res[j - 1]["distance"].get<uint32_t>(),
                     d1 = res[j]["distance"].get<uint32_t>();
          if (d0 > d1 ||
              (d0 == d1 && res[j - 1]["id"].get<uint64_t>() >= res[j]["id"].get<uint64_t>())) {
            ++failures;
          }
        }
        if (i % 10 == 0 && c.Request("GET", "/metrics").status != 200) ++failures;
      }
    });
  }
  // An admin thread creating and dropping another collection meanwhile.
  threads.emplace_back([&] {
    for (int i = 0; i < 10; ++i) {
      if (PostJson(port, "/collections", {{"name", "tmp"}, {"bits", 16}}).status != 201) ++failures;
      PostJson(port, "/collections/tmp/items", {{"items", {{{"code", "ffff"}}}}});
      if (Call(port, "DELETE", "/collections/tmp").status != 200) ++failures;
    }
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  const uint64_t total = kWriters * kBatches * kBatch;
  EXPECT_EQ(Call(port, "GET", "/collections/c").Json()["items"], total);
  EXPECT_EQ(*h.store()->Count("c"), total);
  // Every item is findable at distance 0 by its own code.
  for (uint64_t id : {uint64_t{1}, total / 2, total}) {
    HttpReply g = Call(port, "GET", "/collections/c/items/" + std::to_string(id));
    ASSERT_EQ(g.status, 200);
    HttpReply s = PostJson(port, "/collections/c/search", {{"code", g.Json()["code"]}, {"k", 1}});
    EXPECT_EQ(s.Json()["results"][0]["distance"], 0);
  }
}

TEST(HttpServer, RestartRebuildsTheSameIndex) {
  TempDir dir;
  json before;
  std::string q;
  {
    ServerHarness h(dir.path());
    ASSERT_EQ(PostJson(h.port(), "/collections", {{"name", "r"}, {"bits", kBits}, {"index", "MIH"}})
                  .status,
              201);
    std::mt19937_64 rng(5);
    json items = json::array();
    for (int i = 0; i < 500; ++i)
      items.push_back({{"code", FormatHex(RandomCode(rng, kBits).data(), kBits)}});
    ASSERT_EQ(PostJson(h.port(), "/collections/r/items", {{"items", items}}).status, 200);
    q = items[17]["code"];
    before =
        PostJson(h.port(), "/collections/r/search", {{"code", q}, {"k", 20}}).Json()["results"];
  }
  ServerHarness h(dir.path());
  EXPECT_EQ(Call(h.port(), "GET", "/collections/r").Json()["items"], 500);
  EXPECT_EQ(PostJson(h.port(), "/collections/r/search", {{"code", q}, {"k", 20}}).Json()["results"],
            before);
}

// The code of item `id` in the crash test: deterministic, so the parent can
// check contents without talking to the (dead) child.
std::string CrashCode(uint64_t id) {
  std::mt19937_64 rng(id * 2654435761u + 3);
  return FormatHex(RandomCode(rng, kBits).data(), kBits);
}

constexpr size_t kCrashBatch = 16;

// When re-executed as the crash test's child: serve the store named by
// HAMDB_HTTP_CHILD_DB, write the port to fd HAMDB_HTTP_CHILD_FD, run until
// killed.
TEST(HttpCrash, KillDuringInserts) {
  if (const char* child_db = std::getenv("HAMDB_HTTP_CHILD_DB")) {
    const int fd = std::atoi(std::getenv("HAMDB_HTTP_CHILD_FD"));
    auto store = CodeStore::Open(child_db);
    if (!store.ok()) _exit(3);
    ServiceOptions so;
    Service svc(store->get(), so);
    if (!svc.LoadCollections().ok()) _exit(4);
    ServerOptions o;
    o.port = 0;
    HttpServer server(&svc, o);
    if (!server.Start().ok()) _exit(5);
    const uint16_t port = server.port();
    if (write(fd, &port, sizeof(port)) != sizeof(port)) _exit(6);
    server.Wait();  // until SIGKILL
    _exit(0);
  }

  TempDir dir;
  {
    auto store = CodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->CreateCollection({"crash", kBits, "MIH", "{}"}).ok());
  }
  std::mt19937 rng(std::random_device{}());
  uint64_t acked_total = 0;  // items known to be in the store
  for (int round = 0; round < 3; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      setenv("HAMDB_HTTP_CHILD_DB", dir.path().c_str(), 1);
      setenv("HAMDB_HTTP_CHILD_FD", std::to_string(fds[1]).c_str(), 1);
      execl("/proc/self/exe", "http_test", "--gtest_filter=HttpCrash.KillDuringInserts",
            static_cast<char*>(nullptr));
      _exit(7);
    }
    close(fds[1]);
    uint16_t port = 0;
    ASSERT_EQ(read(fds[0], &port, sizeof(port)), static_cast<ssize_t>(sizeof(port)));
    close(fds[0]);

    // Stream batches; remember every batch answered 200.
    std::atomic<bool> stop{false};
    std::vector<uint64_t> acked;  // first id of each acknowledged batch
    std::mutex acked_mu;
    std::thread writer([&] {
      try {
        Client c(port);
        for (uint64_t b = 0; !stop; ++b) {
          const uint64_t first = (round * 1000000) + b * kCrashBatch + 1;
          json items = json::array();
          for (size_t i = 0; i < kCrashBatch; ++i) {
            items.push_back(
                {{"id", first + i}, {"code", CrashCode(first + i)}, {"metadata", {{"b", b}}}});
          }
          HttpReply r = c.Request("POST", "/collections/crash/items", json{{"items", items}}.dump(),
                                  "application/json");
          if (r.status != 200) break;
          std::lock_guard<std::mutex> lock(acked_mu);
          acked.push_back(first);
        }
      } catch (const std::exception&) {
        // The connection died with the server.
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 250));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
    stop = true;
    writer.join();
    ASSERT_GT(acked.size(), 0u) << "no insert was acknowledged before the kill";

    // Every acknowledged batch is there, whole, with its codes.
    auto store = CodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    for (uint64_t first : acked) {
      for (size_t i = 0; i < kCrashBatch; ++i) {
        StatusOr<Item> item = (*store)->Get("crash", first + i);
        ASSERT_TRUE(item.ok()) << "acknowledged item " << first + i
                               << " lost: " << item.status().ToString();
        EXPECT_EQ(FormatHex(item->code.data(), kBits), CrashCode(first + i));
      }
    }
    // At most the one batch in flight at the kill may be there beyond them.
    acked_total += acked.size() * kCrashBatch;
    StatusOr<uint64_t> count = (*store)->Count("crash");
    ASSERT_TRUE(count.ok());
    EXPECT_GE(*count, acked_total);
    EXPECT_LE(*count, acked_total + kCrashBatch);
    acked_total = *count;  // a batch in flight that landed counts from now on
    std::printf("round %d: %zu batches acknowledged before kill -9, %llu items after restart\n",
                round, acked.size(), static_cast<unsigned long long>(*count));
  }
}

}  // namespace
}  // namespace hamdb::http
