#include "http/server.h"

#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <csignal>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

namespace hamdb::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

class Session;

class HttpServer::Impl {
 public:
  Impl(Service* service, ServerOptions options)
      : service_(service),
        options_(std::move(options)),
        ioc_(std::max(1, options_.threads)),
        writers_(static_cast<size_t>(std::max(1, options_.write_threads))),
        peers_(static_cast<size_t>(std::max(1, options_.write_threads))),
        replicas_(static_cast<size_t>(std::max(1, options_.write_threads))) {}

  Status Start();
  void Shutdown();
  void Wait();
  uint16_t port() const { return port_.load(); }

  // Session bookkeeping (called by sessions).
  void Register(const std::shared_ptr<Session>& s);
  void Unregister(Session* s);
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  Service* service() const { return service_; }
  const ServerOptions& options() const { return options_; }
  asio::thread_pool& pool(Lane lane) {
    return lane == Lane::kPeer ? peers_ : lane == Lane::kReplica ? replicas_ : writers_;
  }
  // Takes a place in the write queue; false when all write_queue places are
  // taken (the request is then refused with 503 and Retry-After).
  bool TryQueueWrite() {
    size_t n = queued_writes_.load(std::memory_order_relaxed);
    do {
      if (n >= options_.write_queue) return false;
    } while (!queued_writes_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
    return true;
  }
  void WriteDone() { queued_writes_.fetch_sub(1, std::memory_order_relaxed); }

 private:
  void DoAccept();

  Service* service_;
  ServerOptions options_;
  // Declared before ioc_: sessions still queued in ioc_ unregister
  // themselves while it is destroyed.
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_requested_ = false;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions_;
  asio::io_context ioc_;
  // The acceptor and the signal set are touched only on this strand: the
  // accept handler re-arms the acceptor while Shutdown closes it.
  asio::strand<asio::io_context::executor_type> accept_strand_ = asio::make_strand(ioc_);
  std::optional<tcp::acceptor> acceptor_;
  std::optional<asio::signal_set> signals_;
  // Keeps the threads in run() until Wait() stops them: without it they
  // could leave once the acceptor closes, stranding the handlers Shutdown
  // posts to idle sessions.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  // Runs the write requests, so that the I/O threads keep answering searches
  // while writes wait on the disk. Declared after ioc_: destroyed (joined)
  // first, while the sessions' executors its handlers post to still exist.
  asio::thread_pool writers_;
  // The cluster's calls between nodes (Lane): a node's calls to a primary,
  // and a primary's calls to its copies, each on its own pool, so that
  // neither waits behind the requests that wait on it.
  asio::thread_pool peers_;
  asio::thread_pool replicas_;
  std::atomic<size_t> queued_writes_{0};
  std::atomic<uint16_t> port_{0};
  std::atomic<bool> stopping_{false};
  bool started_ = false;
  bool joined_ = false;
};

// One connection: read a request, answer it, repeat while keep-alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, HttpServer::Impl* server)
      : stream_(std::move(socket)), server_(server) {}
  ~Session() { server_->Unregister(this); }

  void Run() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->DoRead(); });
  }

  // Posted by Shutdown: close the connection if it is idle between requests.
  void CloseIfIdle() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->reading_ && self->buffer_.size() == 0 && self->parser_ &&
          !self->parser_->got_some()) {
        beast::error_code ec;
        self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        self->stream_.cancel();
      }
    });
  }

 private:
  void DoRead() {
    if (server_->stopping()) return DoClose();
    parser_.emplace();
    parser_->body_limit(server_->options().body_limit);
    parser_->header_limit(static_cast<uint32_t>(server_->options().header_limit));
    stream_.expires_after(server_->options().read_timeout);
    reading_ = true;
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnRead(ec);
    // curl and others wait for "100 Continue" before sending a large body.
    auto expect = parser_->get().find(bhttp::field::expect);
    if (expect != parser_->get().end() && beast::iequals(expect->value(), "100-continue")) {
      auto cont = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_,
                                                                       parser_->get().version());
      bhttp::async_write(stream_, *cont,
                         [self = shared_from_this(), cont](beast::error_code ec2, size_t) {
                           if (ec2) return self->OnRead(ec2);
                           self->ReadBody();
                         });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    reading_ = false;
    if (ec == bhttp::error::end_of_stream || ec == asio::error::operation_aborted ||
        ec == beast::error::timeout || ec == asio::error::eof ||
        ec == asio::error::connection_reset) {
      return DoClose();
    }
    if (ec == bhttp::error::body_limit) {
      return SendError(
          413, "payload_too_large",
          "the body exceeds " + std::to_string(server_->options().body_limit) + " bytes");
    }
    if (ec == bhttp::error::header_limit) {
      return SendError(431, "header_too_large", "the request header is too large");
    }
    if (ec) {
      if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
        return SendError(400, "bad_request", "malformed HTTP request: " + ec.message());
      }
      return DoClose();
    }
    bhttp::request<bhttp::string_body> req = parser_->release();
    Request r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    r.content_type = std::string(req[bhttp::field::content_type]);
    r.authorization = std::string(req[bhttp::field::authorization]);
    r.api_key = std::string(req["api-key"]);
    r.host = std::string(req[bhttp::field::host]);
    r.if_none_match = std::string(req[bhttp::field::if_none_match]);
    r.body = std::move(req.body());
    const unsigned version = req.version();
    const bool wants_keep_alive = req.keep_alive();
    const bool head = r.method == "HEAD";
    const Lane lane = server_->service()->LaneOf(r.method, r.target);
    if (lane == Lane::kIo) {
      Response resp = server_->service()->Handle(r);
      Send(std::move(resp), version, wants_keep_alive && !server_->stopping(), head);
      return;
    }
    // Writes run on the writer pool, and the cluster's calls between nodes
    // on their own pools (bounded by the callers' pools, not the write
    // queue); this connection reads its next request only after the answer
    // is sent, so responses stay in request order.
    const bool queued = lane == Lane::kWrite;
    if (queued && !server_->TryQueueWrite()) {
      Response busy = Service::Error(
          503, "write_queue_full",
          "the write queue is full (" + std::to_string(server_->options().write_queue) +
              " writes waiting); retry shortly");
      busy.retry_after_s = 1;
      Send(std::move(busy), version, wants_keep_alive && !server_->stopping(), head);
      return;
    }
    asio::post(server_->pool(lane), [self = shared_from_this(), r = std::move(r), version, wants_keep_alive,
                                     head, queued]() mutable {
      Response resp = self->server_->service()->Handle(r);
      if (queued) self->server_->WriteDone();
      asio::post(self->stream_.get_executor(), [self, resp = std::move(resp), version,
                                                 wants_keep_alive, head]() mutable {
        self->Send(std::move(resp), version, wants_keep_alive && !self->server_->stopping(), head);
      });
    });
  }

  void SendError(int status, const std::string& code, const std::string& message) {
    linger_ = true;
    Send(Service::Error(status, code, message), 11, /*keep_alive=*/false, false);
  }

  void Send(Response resp, unsigned version, bool keep_alive, bool head) {
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>(
        static_cast<bhttp::status>(resp.status), version);
    res->set(bhttp::field::server, "hamdb");
    if (!resp.content_type.empty()) res->set(bhttp::field::content_type, resp.content_type);
    if (resp.status == 401) res->set(bhttp::field::www_authenticate, "Bearer");
    if (resp.retry_after_s > 0) res->set(bhttp::field::retry_after, std::to_string(resp.retry_after_s));
    for (const auto& [name, value] : resp.headers) res->set(name, value);
    res->keep_alive(keep_alive);
    if (head) {
      res->content_length(resp.body.size());
    } else {
      res->body() = std::move(resp.body);
      res->prepare_payload();
    }
    stream_.expires_after(server_->options().read_timeout);
    bhttp::async_write(stream_, *res,
                       [self = shared_from_this(), res, keep_alive](beast::error_code ec, size_t) {
                         if (ec) return self->DoClose();
                         if (!keep_alive) return self->DoClose();
                         self->DoRead();
                       });
  }

  void DoClose() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (linger_ && !ec) {
      // After an error answer the client may still be sending (an oversized
      // body or header). Closing with unread input would reset the connection
      // and could destroy the answer in flight, so read and discard for a
      // bounded time and amount first (a "lingering close").
      linger_ = false;
      stream_.expires_after(std::chrono::seconds(2));
      Drain(0);
      return;
    }
    stream_.socket().close(ec);
  }

  void Drain(size_t total) {
    if (total > (8u << 20)) {
      beast::error_code ec;
      stream_.socket().close(ec);
      return;
    }
    stream_.async_read_some(asio::buffer(scratch_),
                            [self = shared_from_this(), total](beast::error_code ec, size_t n) {
                              if (ec) {
                                beast::error_code ignored;
                                self->stream_.socket().close(ignored);
                                return;
                              }
                              self->Drain(total + n);
                            });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  HttpServer::Impl* server_;
  bool reading_ = false;
  bool linger_ = false;
  std::array<char, 16384> scratch_;
};

Status HttpServer::Impl::Start() {
  if (options_.threads < 1) return Status::InvalidArgument("threads must be >= 1");
  if (options_.write_threads < 1) return Status::InvalidArgument("write_threads must be >= 1");
  beast::error_code ec;
  const asio::ip::address addr = asio::ip::make_address(options_.address, ec);
  if (ec) return Status::InvalidArgument("bad listen address '" + options_.address + "'");
  if (!addr.is_loopback() && !options_.has_api_key && !options_.allow_remote_without_key) {
    return Status::FailedPrecondition(
        "refusing to listen on non-loopback address " + options_.address +
        " without an API key; set --api-key, or pass --allow-remote-without-key");
  }
  try {
    acceptor_.emplace(accept_strand_);
    const tcp::endpoint ep(addr, options_.port);
    acceptor_->open(ep.protocol());
    acceptor_->set_option(asio::socket_base::reuse_address(true));
    acceptor_->bind(ep);
    acceptor_->listen(asio::socket_base::max_listen_connections);
    port_ = acceptor_->local_endpoint().port();
    service_->SetListenEndpoint(options_.address, port_);
  } catch (const boost::system::system_error& e) {
    acceptor_.reset();
    return Status::IOError("cannot listen on " + options_.address + ":" +
                           std::to_string(options_.port) + ": " + e.code().message());
  }
  if (options_.handle_signals) {
    signals_.emplace(accept_strand_, SIGINT, SIGTERM);
    signals_->async_wait([this](beast::error_code e, int) {
      if (!e) Shutdown();
    });
  }
  DoAccept();
  work_.emplace(ioc_.get_executor());
  started_ = true;
  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] {
      // Handlers never let exceptions out (Service::Handle catches all), but
      // a throwing Asio internals must not terminate the process either.
      for (;;) {
        try {
          ioc_.run();
          break;
        } catch (const std::exception&) {
          continue;
        }
      }
    });
  }
  return Status::OK();
}

void HttpServer::Impl::DoAccept() {
  acceptor_->async_accept(asio::make_strand(ioc_),
                          [this](beast::error_code ec, tcp::socket socket) {
                            if (ec) {
                              if (ec == asio::error::operation_aborted || !acceptor_->is_open())
                                return;
                              // Out of file descriptors and the like: keep accepting.
                              DoAccept();
                              return;
                            }
                            if (stopping()) return;
                            auto s = std::make_shared<Session>(std::move(socket), this);
                            Register(s);
                            s->Run();
                            DoAccept();
                          });
}

void HttpServer::Impl::Register(const std::shared_ptr<Session>& s) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_[s.get()] = s;
}

void HttpServer::Impl::Unregister(Session* s) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_.erase(s);
  if (sessions_.empty()) cv_.notify_all();
}

void HttpServer::Impl::Shutdown() {
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_requested_) return;
    stop_requested_ = true;
    stopping_.store(true, std::memory_order_release);
    for (auto& [p, w] : sessions_) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
  }
  if (started_) {
    asio::post(accept_strand_, [this] {
      beast::error_code ec;
      if (acceptor_) acceptor_->close(ec);
      if (signals_) signals_->cancel(ec);
    });
  }
  for (auto& s : live) s->CloseIfIdle();
  live.clear();
  cv_.notify_all();
}

void HttpServer::Impl::Wait() {
  if (!started_ || joined_) return;
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return stop_requested_; });
    cv_.wait_for(lock, options_.drain_timeout, [this] { return sessions_.empty(); });
  }
  writers_.join();  // writes in flight finish (their answers may be dropped)
  peers_.join();
  replicas_.join();
  ioc_.stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  joined_ = true;
}

HttpServer::HttpServer(Service* service, ServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {}

HttpServer::~HttpServer() {
  impl_->Shutdown();
  impl_->Wait();
}

Status HttpServer::Start() { return impl_->Start(); }
uint16_t HttpServer::port() const { return impl_->port(); }
void HttpServer::Shutdown() { impl_->Shutdown(); }
void HttpServer::Wait() { impl_->Wait(); }

}  // namespace hamdb::http
