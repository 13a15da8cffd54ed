// Cluster coordination against a real etcd (the Debian etcd-server package,
// installed by scripts/install-deps.sh): the etcd client's calls, node
// registration under a lease, unique node ids, leaving, and what a node does
// while etcd is down and after it returns. The fixture starts etcd on free
// loopback ports with its own data directory.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <random>
#include <set>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/binary_code.h"
#include "db/code_store.h"
#include "http/cluster.h"
#include "http/client.h"
#include "http/etcd_client.h"
#include "http/server.h"
#include "http/shard_router.h"
#include "http/service.h"
#include "tests/db/test_util.h"

extern char** environ;

namespace hamdb::http {
namespace {

using testing_util::TempDir;
using Clock = std::chrono::steady_clock;

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(a.sin_port);
}

// Waits up to `limit` for pred().
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds limit) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

// One etcd member on loopback; Stop and Start keep its data.
class EtcdProcess {
 public:
  EtcdProcess() : client_port_(FreePort()), peer_port_(FreePort()) {}
  ~EtcdProcess() { Stop(); }

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(client_port_); }

  // False (with the reason in *why) when etcd is missing or does not answer.
  bool Start(std::string* why) {
    const char* bin = "/usr/bin/etcd";
    if (!std::filesystem::exists(bin)) {
      *why = "etcd is not installed (the etcd-server package; run scripts/install-deps.sh)";
      return false;
    }
    const std::string client = endpoint();
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    const std::string data = dir_.path() + "/etcd";
    const std::string log = dir_.path() + "/etcd.log";
    std::vector<std::string> args = {bin,
                                     "--name", "test",
                                     "--data-dir", data,
                                     "--listen-client-urls", client,
                                     "--advertise-client-urls", client,
                                     "--listen-peer-urls", peer,
                                     "--initial-advertise-peer-urls", peer,
                                     "--initial-cluster", "test=" + peer};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // Its output goes to a log file.
    posix_spawn_file_actions_t io;
    posix_spawn_file_actions_init(&io);
    posix_spawn_file_actions_addopen(&io, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&io, 1, 2);
    const int spawned = posix_spawn(&pid_, bin, &io, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&io);
    if (spawned != 0) {
      *why = "cannot start etcd";
      pid_ = 0;
      return false;
    }
    StatusOr<EtcdClient> c = EtcdClient::Create(client);
    if (!WaitFor([&] { return c->Range("/").ok() || waitpid(pid_, nullptr, WNOHANG) == pid_; },
                 std::chrono::seconds(15)) ||
        !c->Range("/").ok()) {
      *why = "etcd did not answer at " + client + " (log: " + log + ")";
      return false;
    }
    return true;
  }

  void Stop() {
    if (pid_ == 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = 0;
  }

 private:
  TempDir dir_;
  int client_port_, peer_port_;
  pid_t pid_ = 0;
};

class Cluster : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    ASSERT_TRUE(etcd_.Start(&why)) << why;
  }
  ClusterOptions Node(const std::string& id) const {
    ClusterOptions o;
    o.etcd = etcd_.endpoint();
    o.node_id = id;
    o.advertise = "http://127.0.0.1:" + std::to_string(9000 + id.size());
    o.lease_ttl_s = 2;
    return o;
  }
  EtcdProcess etcd_;
};

TEST_F(Cluster, EtcdClientCalls) {
  EtcdClient c = std::move(EtcdClient::Create(etcd_.endpoint())).value();
  ASSERT_TRUE(c.Put("/t/a", "1").ok());
  ASSERT_TRUE(c.Put("/t/b", std::string("two\0bytes", 9)).ok());
  ASSERT_TRUE(c.Put("/u/c", "3").ok());
  StatusOr<std::optional<EtcdKeyValue>> a = c.Get("/t/a");
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->value, "1");
  EXPECT_GT((*a)->create_revision, 0);
  StatusOr<std::vector<EtcdKeyValue>> t = c.Range("/t/");
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[1].key, "/t/b");
  EXPECT_EQ((*t)[1].value, std::string("two\0bytes", 9));
  // Only when absent.
  EXPECT_FALSE(*c.PutIfAbsent("/t/a", "other"));
  EXPECT_EQ((*c.Get("/t/a"))->value, "1");
  EXPECT_TRUE(*c.PutIfAbsent("/t/new", "x"));
  ASSERT_TRUE(c.Delete("/t/new").ok());
  EXPECT_FALSE(c.Get("/t/new")->has_value());
  // A key on a lease goes with the lease.
  StatusOr<int64_t> lease = c.GrantLease(30);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_TRUE(c.Put("/t/leased", "y", *lease).ok());
  EXPECT_EQ((*c.Get("/t/leased"))->lease, *lease);
  EXPECT_TRUE(c.KeepAlive(*lease).ok());
  ASSERT_TRUE(c.RevokeLease(*lease).ok());
  EXPECT_FALSE(c.Get("/t/leased")->has_value());
  EXPECT_EQ(c.KeepAlive(*lease).code(), Status::Code::kNotFound);
  // No etcd there: a clear error.
  EtcdClient none = std::move(EtcdClient::Create("http://127.0.0.1:1")).value();
  Status s = none.Put("/x", "1");
  EXPECT_EQ(s.code(), Status::Code::kIOError);
  EXPECT_NE(s.message().find("unreachable"), std::string::npos) << s.ToString();
  EXPECT_EQ(EtcdClient::Create("localhost:2379").status().code(), Status::Code::kInvalidArgument);
}

TEST_F(Cluster, NodesRegisterUniquelyAndLeave) {
  StatusOr<std::unique_ptr<ClusterMember>> n1 = ClusterMember::Join(Node("n1"));
  ASSERT_TRUE(n1.ok()) << n1.status().ToString();
  StatusOr<std::unique_ptr<ClusterMember>> n2 = ClusterMember::Join(Node("n2"));
  ASSERT_TRUE(n2.ok()) << n2.status().ToString();
  // A live node's id is taken.
  StatusOr<std::unique_ptr<ClusterMember>> again = ClusterMember::Join(Node("n1"));
  EXPECT_EQ(again.status().code(), Status::Code::kAlreadyExists) << again.status().ToString();
  // Bad options are refused before etcd is asked.
  ClusterOptions bad = Node("n 3");
  EXPECT_EQ(ClusterMember::Join(bad).status().code(), Status::Code::kInvalidArgument);
  bad = Node("n3");
  bad.advertise = "n3:8080";
  EXPECT_EQ(ClusterMember::Join(bad).status().code(), Status::Code::kInvalidArgument);

  // Each node sees both (n1 after its next renewal).
  EXPECT_TRUE(WaitFor([&] { return (*n1)->view().nodes.size() == 2; }, std::chrono::seconds(3)));
  const ClusterMember::View v = (*n2)->view();
  ASSERT_EQ(v.nodes.size(), 2u);
  EXPECT_EQ(v.nodes[0].node_id, "n1");
  EXPECT_EQ(v.nodes[1].node_id, "n2");
  EXPECT_EQ(v.nodes[1].advertise, Node("n2").advertise);
  EXPECT_TRUE(v.etcd_reachable);

  // Renewals keep a node registered past its TTL.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EtcdClient c = std::move(EtcdClient::Create(etcd_.endpoint())).value();
  EXPECT_TRUE(c.Get("/hamdb/nodes/n1")->has_value());

  // Leaving deletes the registration at once, and frees the id.
  n2->reset();
  EXPECT_FALSE(c.Get("/hamdb/nodes/n2")->has_value());
  EXPECT_TRUE(WaitFor([&] { return (*n1)->view().nodes.size() == 1; }, std::chrono::seconds(3)));
  StatusOr<std::unique_ptr<ClusterMember>> n2b = ClusterMember::Join(Node("n2"));
  EXPECT_TRUE(n2b.ok()) << n2b.status().ToString();
}

TEST_F(Cluster, ANodeKeepsItsLastViewWhileEtcdIsDownAndRegistersAgainAfter) {
  StatusOr<std::unique_ptr<ClusterMember>> n1 = ClusterMember::Join(Node("n1"));
  ASSERT_TRUE(n1.ok()) << n1.status().ToString();
  StatusOr<std::unique_ptr<ClusterMember>> n2 = ClusterMember::Join(Node("n2"));
  ASSERT_TRUE(n2.ok()) << n2.status().ToString();
  ASSERT_TRUE(WaitFor([&] { return (*n1)->view().nodes.size() == 2; }, std::chrono::seconds(3)));
  const int64_t lease = (*n1)->view().lease;

  etcd_.Stop();
  EXPECT_TRUE(WaitFor([&] { return !(*n1)->view().etcd_reachable; }, std::chrono::seconds(5)));
  EXPECT_EQ((*n1)->view().nodes.size(), 2u);  // the last view read

  // Down for longer than the TTL: etcd expires the leases when it returns
  // (a restarted etcd gives leases a fresh TTL, so wait it out), and each
  // node registers again under a new lease.
  std::string why;
  ASSERT_TRUE(etcd_.Start(&why)) << why;
  EXPECT_TRUE(WaitFor([&] { return (*n1)->view().etcd_reachable; }, std::chrono::seconds(5)));
  EtcdClient c = std::move(EtcdClient::Create(etcd_.endpoint())).value();
  EXPECT_TRUE(WaitFor([&] { return c.Get("/hamdb/nodes/n1")->has_value() && c.Get("/hamdb/nodes/n2")->has_value(); },
                      std::chrono::seconds(8)));
  // Still registered a TTL later: renewed, under the old lease or a new one.
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  EXPECT_TRUE(c.Get("/hamdb/nodes/n1")->has_value());
  EXPECT_TRUE(c.Get("/hamdb/nodes/n2")->has_value());
  EXPECT_EQ((*n1)->view().nodes.size(), 2u);
  (void)lease;
}

TEST_F(Cluster, TheClusterRouteShowsTheMembers) {
  TempDir dir;
  auto store = std::move(CodeStore::Open(dir.path())).value();
  {
    Service single(store.get(), {});
    Request r;
    r.method = "GET";
    r.target = "/cluster";
    const Response resp = single.Handle(r);
    EXPECT_EQ(resp.status, 200);
    EXPECT_EQ(nlohmann::json::parse(resp.body)["mode"], "single");
  }
  StatusOr<std::unique_ptr<ClusterMember>> n1 = ClusterMember::Join(Node("n1"));
  ASSERT_TRUE(n1.ok()) << n1.status().ToString();
  ServiceOptions so;
  so.cluster = n1->get();
  Service svc(store.get(), so);
  Request r;
  r.method = "GET";
  r.target = "/cluster";
  const Response resp = svc.Handle(r);
  ASSERT_EQ(resp.status, 200) << resp.body;
  const nlohmann::json j = nlohmann::json::parse(resp.body);
  EXPECT_EQ(j["mode"], "cluster");
  EXPECT_EQ(j["node_id"], "n1");
  EXPECT_EQ(j["etcd_reachable"], true);
  ASSERT_EQ(j["nodes"].size(), 1u);
  EXPECT_EQ(j["nodes"][0]["advertise"], Node("n1").advertise);
}


// A node of an in-process cluster: its own store, membership, router,
// service and HTTP server on a loopback port.
struct TestNode {
  TempDir dir;
  std::unique_ptr<CodeStore> store;
  std::unique_ptr<ClusterMember> member;
  std::unique_ptr<ClusterRouter> router;
  std::unique_ptr<Service> service;
  std::unique_ptr<HttpServer> server;
  int port = 0;

  // Stops serving and leaves the cluster (its lease is revoked: the others
  // fail its shards over at once).
  void Stop() {
    if (server) server->Shutdown();
    server.reset();
    router.reset();
    service.reset();
    member.reset();
  }
  ~TestNode() { Stop(); }
};

std::unique_ptr<TestNode> StartNode(const std::string& etcd, const std::string& id, int io_threads = 2,
                                    int write_threads = 8) {
  auto n = std::make_unique<TestNode>();
  n->store = std::move(CodeStore::Open(n->dir.path())).value();
  const int port = FreePort();
  ClusterOptions co;
  co.etcd = etcd;
  co.node_id = id;
  co.advertise = "http://127.0.0.1:" + std::to_string(port);
  co.lease_ttl_s = 2;
  StatusOr<std::unique_ptr<ClusterMember>> m = ClusterMember::Join(co);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  if (!m.ok()) return nullptr;
  n->member = std::move(m).value();
  ClusterRouterOptions ro;
  ro.sync_period = std::chrono::milliseconds(200);
  n->router = std::make_unique<ClusterRouter>(n->member.get(), n->store.get(), ro);
  ServiceOptions so;
  so.cluster = n->member.get();
  so.router = n->router.get();
  so.sync_writes = false;  // the test is about the protocol, not the disk
  n->service = std::make_unique<Service>(n->store.get(), so);
  EXPECT_TRUE(n->router->Start(n->service.get()).ok());
  EXPECT_TRUE(n->service->LoadCollections().ok());
  ServerOptions o;
  o.port = static_cast<uint16_t>(port);
  o.threads = io_threads;
  o.write_threads = write_threads;
  n->server = std::make_unique<HttpServer>(n->service.get(), o);
  EXPECT_TRUE(n->server->Start().ok());
  n->port = port;
  return n;
}

Response Call(Service* s, const std::string& method, const std::string& target, const std::string& body = "") {
  Request r;
  r.method = method;
  r.target = target;
  r.body = body;
  if (!body.empty()) r.content_type = "application/json";
  return s->Handle(r);
}

// Each id's code is a function of the id, so that a reader can check any
// result it sees, acknowledged or still in flight.
uint64_t CodeOf(uint64_t id) {
  uint64_t z = id * 0x9e3779b97f4a7c15ull;
  z ^= z >> 29;
  return z * 0xbf58476d1ce4e5b9ull;
}

std::string Hex(uint64_t code) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(code >> (8 * i));
  return FormatHex(b, 64);
}

// Concurrent writers through every node and readers checking every result,
// then a node leaving while the writes go on: every acknowledged write is
// found, and final searches equal a brute-force answer over what was
// acknowledged. Run under ThreadSanitizer by scripts/test-tsan.sh.
TEST_F(Cluster, ShardedCollectionUnderConcurrentWritesAndAFailover) {
  std::vector<std::unique_ptr<TestNode>> nodes;
  for (const char* id : {"n1", "n2", "n3"}) {
    nodes.push_back(StartNode(etcd_.endpoint(), id));
    ASSERT_TRUE(nodes.back());
  }
  ASSERT_TRUE(WaitFor([&] { return nodes[0]->member->view().nodes.size() == 3; }, std::chrono::seconds(5)));
  Response created = Call(nodes[0]->service.get(), "POST", "/collections",
                          R"({"name": "c", "bits": 64, "index": "MIH", "shards": 3, "replication_factor": 2})");
  ASSERT_EQ(created.status, 201) << created.body;

  std::mutex mu;
  std::set<uint64_t> acked;
  std::atomic<bool> stop{false};
  std::atomic<int> bad_reads{0}, reads{0}, refused{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (uint64_t b = 0; !stop; ++b) {
        nlohmann::json items = nlohmann::json::array();
        std::vector<uint64_t> ids;
        for (uint64_t i = 0; i < 10; ++i) {
          const uint64_t id = 1 + (uint64_t{static_cast<uint64_t>(w)} << 32) + b * 10 + i;
          ids.push_back(id);
          items.push_back({{"id", id}, {"code", Hex(CodeOf(id))}});
        }
        Service* via = nodes[w % 2]->service.get();  // n1 and n2 stay
        const Response r = Call(via, "POST", "/collections/c/items", nlohmann::json{{"items", items}}.dump());
        if (r.status == 200) {
          std::lock_guard<std::mutex> lock(mu);
          acked.insert(ids.begin(), ids.end());
        } else {
          ++refused;
        }
      }
    });
  }
  for (int rd = 0; rd < 2; ++rd) {
    threads.emplace_back([&, rd] {
      std::mt19937_64 rng(rd);
      while (!stop) {
        const uint64_t q = rng();
        const Response r = Call(nodes[rd]->service.get(), "POST", "/collections/c/search",
                                nlohmann::json{{"code", Hex(q)}, {"k", 10}}.dump());
        ++reads;
        if (r.status != 200) continue;  // a moment without any copy of a shard is allowed to fail
        const nlohmann::json j = nlohmann::json::parse(r.body);
        uint64_t last_d = 0, last_id = 0;
        for (const nlohmann::json& x : j["results"]) {
          const uint64_t id = x["id"], d = x["distance"];
          const bool ordered = d > last_d || (d == last_d && id > last_id);
          if (d != static_cast<uint64_t>(__builtin_popcountll(q ^ CodeOf(id))) || !ordered) ++bad_reads;
          last_d = d;
          last_id = id;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  nodes[2]->Stop();  // a primary leaves: its shards fail over to their in-sync copies
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  stop = true;
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(bad_reads.load(), 0);
  ASSERT_GT(acked.size(), 100u);
  std::printf("concurrent writes: %zu items acknowledged, %d batches refused, %d searches\n", acked.size(),
              refused.load(), reads.load());

  // Every acknowledged write is there, through either node.
  const std::vector<uint64_t> ids(acked.begin(), acked.end());
  for (int via = 0; via < 2; ++via) {
    size_t found = 0;
    for (size_t i = 0; i < ids.size(); i += 1000) {
      nlohmann::json chunk(std::vector<uint64_t>(ids.begin() + i, ids.begin() + std::min(ids.size(), i + 1000)));
      const Response r = Call(nodes[via]->service.get(), "POST", "/collections/c/items/exists",
                              nlohmann::json{{"ids", chunk}}.dump());
      ASSERT_EQ(r.status, 200) << r.body;
      const nlohmann::json answer = nlohmann::json::parse(r.body);
      for (const nlohmann::json& e : answer["exists"]) found += e.get<bool>();
    }
    EXPECT_EQ(found, ids.size()) << "through node " << via;
  }
  // With no batch refused, the collection holds exactly the acknowledged
  // items, and searches through either node equal brute force over them.
  const Response all = Call(nodes[0]->service.get(), "GET", "/collections/c");
  ASSERT_EQ(all.status, 200);
  const nlohmann::json desc = nlohmann::json::parse(all.body);
  EXPECT_FALSE(desc.contains("partial")) << all.body;
  for (const nlohmann::json& s : desc["shard_map"]) EXPECT_NE(s["primary"], "n3") << all.body;
  if (refused.load() == 0) {
    EXPECT_EQ(desc["items"].get<size_t>(), ids.size());
    std::mt19937_64 rng(99);
    for (int t = 0; t < 20; ++t) {
      const uint64_t q = rng();
      std::vector<std::pair<int, uint64_t>> want;
      for (uint64_t id : ids) want.push_back({__builtin_popcountll(q ^ CodeOf(id)), id});
      std::sort(want.begin(), want.end());
      want.resize(10);
      const Response r = Call(nodes[t % 2]->service.get(), "POST", "/collections/c/search",
                              nlohmann::json{{"code", Hex(q)}, {"k", 10}}.dump());
      ASSERT_EQ(r.status, 200) << r.body;
      const nlohmann::json got = nlohmann::json::parse(r.body)["results"];
      ASSERT_EQ(got.size(), 10u);
      for (size_t i = 0; i < 10; ++i) {
        EXPECT_EQ(got[i]["id"].get<uint64_t>(), want[i].second);
        EXPECT_EQ(got[i]["distance"].get<int>(), want[i].first);
      }
    }
  }
}


// Clients searching and writing through every node at once, with one I/O
// thread and two write threads per node: a node that coordinates a search
// waits on the others while they coordinate their own, so if the nodes'
// calls to each other queued behind client requests they would wait in a
// circle until the calls time out. Every request must be answered, quickly.
TEST_F(Cluster, NodesCoordinatingAtOnceNeverWaitOnEachOtherInACircle) {
  std::vector<std::unique_ptr<TestNode>> nodes;
  for (const char* id : {"n1", "n2", "n3"}) {
    nodes.push_back(StartNode(etcd_.endpoint(), id, /*io_threads=*/1, /*write_threads=*/2));
    ASSERT_TRUE(nodes.back());
  }
  ASSERT_TRUE(WaitFor([&] { return nodes[0]->member->view().nodes.size() == 3; }, std::chrono::seconds(5)));
  Response created = Call(nodes[0]->service.get(), "POST", "/collections",
                          R"({"name": "c", "bits": 64, "index": "Flat", "shards": 6, "replication_factor": 2})");
  ASSERT_EQ(created.status, 201) << created.body;
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::atomic<int64_t> slowest_ms{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 9; ++t) {
    threads.emplace_back([&, t] {
      const Url u{"127.0.0.1", std::to_string(nodes[t % 3]->port), ""};
      HttpPool pool;
      std::mt19937_64 rng(t);
      for (uint64_t i = 0; !stop; ++i) {
        std::string target = "/collections/c/search";
        std::string body = nlohmann::json{{"code", Hex(rng())}, {"k", 5}}.dump();
        if (t >= 6) {  // three writers
          const uint64_t id = (uint64_t{static_cast<uint64_t>(t)} << 32) + i;
          target = "/collections/c/items";
          body = nlohmann::json{{"items", {{{"id", id}, {"code", Hex(CodeOf(id))}}}}}.dump();
        }
        const auto t0 = Clock::now();
        StatusOr<HttpReply> r = pool.Call(u, "POST", target, "application/json", body, "", std::chrono::seconds(30));
        const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
        int64_t prev = slowest_ms.load();
        while (ms > prev && !slowest_ms.compare_exchange_weak(prev, ms)) {
        }
        (r.ok() && r->status == 200 ? ok : failed)++;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(3));
  stop = true;
  for (std::thread& t : threads) t.join();
  std::printf("nodes coordinating at once: %d answered, %d failed, slowest %lld ms\n", ok.load(), failed.load(),
              static_cast<long long>(slowest_ms.load()));
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(ok.load(), 100);
  // A call between nodes times out after 10 s: nothing came near it.
  EXPECT_LT(slowest_ms.load(), 5000);
}

}  // namespace
}  // namespace hamdb::http
