// The HTTP client: its timeout holds against a server that never answers,
// and the keep-alive pool reuses one connection, and replaces one that the
// server closed while it was idle.
#include "http/client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

namespace hamdb::http {
namespace {

// A loopback server on its own thread: accepts connections one at a time
// and, unless `silent`, answers every request on a connection with 200 "ok"
// (keep-alive) until the client closes it or `close_after` answers.
class TinyServer {
 public:
  TinyServer(bool silent, int close_after) : silent_(silent), close_after_(close_after) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~TinyServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  Url url() const { return Url{"127.0.0.1", std::to_string(port_), ""}; }
  int accepted() const { return accepted_.load(); }

 private:
  void Run() {
    while (!stop_) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      ++accepted_;
      std::string in;
      char buf[4096];
      int answered = 0;
      while (!stop_) {
        const ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0) break;
        in.append(buf, static_cast<size_t>(n));
        if (silent_) continue;
        size_t end;
        while ((end = in.find("\r\n\r\n")) != std::string::npos) {
          in.erase(0, end + 4);  // the tests send no bodies
          const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
          (void)!write(c, answer.data(), answer.size());
          ++answered;
        }
        if (close_after_ > 0 && answered >= close_after_) break;
      }
      close(c);
    }
  }

  bool silent_;
  int close_after_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

TEST(HttpClient, TimeoutHoldsAgainstAServerThatNeverAnswers) {
  TinyServer server(/*silent=*/true, 0);
  const auto t0 = std::chrono::steady_clock::now();
  StatusOr<HttpReply> r = HttpCall(server.url(), "GET", "/", "", "", "", std::chrono::seconds(1));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kIOError);
  EXPECT_LT(s, 10.0) << "the call waited " << s << " s";

  HttpPool pool;
  EXPECT_FALSE(pool.Call(server.url(), "GET", "/", "", "", "", std::chrono::seconds(1)).ok());
}

TEST(HttpClient, PoolKeepsOneConnectionAndReplacesAClosedOne) {
  {
    TinyServer server(/*silent=*/false, 0);
    HttpPool pool;
    for (int i = 0; i < 10; ++i) {
      StatusOr<HttpReply> r = pool.Call(server.url(), "GET", "/x", "", "", "");
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->status, 200);
      EXPECT_EQ(r->body, "ok");
      EXPECT_EQ(r->content_type, "text/plain");
    }
    EXPECT_EQ(server.accepted(), 1);
  }
  {
    // The server closes each connection after one answer, as a server
    // does with an idle keep-alive connection: every call still succeeds.
    TinyServer server(/*silent=*/false, 1);
    HttpPool pool;
    for (int i = 0; i < 5; ++i) {
      StatusOr<HttpReply> r = pool.Call(server.url(), "GET", "/x", "", "", "");
      ASSERT_TRUE(r.ok()) << i << ": " << r.status().ToString();
      EXPECT_EQ(r->body, "ok");
    }
    EXPECT_GE(server.accepted(), 5);
  }
}

TEST(HttpClient, UnreachableServerIsAClearError) {
  Url u{"127.0.0.1", "1", ""};  // nothing listens on port 1
  StatusOr<HttpReply> r = HttpCall(u, "GET", "/", "", "", "", std::chrono::seconds(2));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cannot reach the server at http://127.0.0.1:1"), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace hamdb::http
