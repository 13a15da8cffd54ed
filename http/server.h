// HttpServer: puts a Service on a TCP socket with Boost.Beast on Boost.Asio.
//
// One io_context is run by `threads` threads; every connection has its own
// strand, so its requests are handled one after another in arrival order
// (HTTP/1.1 keep-alive and pipelining are safe: pipelined requests are read
// from the connection buffer and answered in order), while different
// connections run in parallel. Reads and searches are handled on the I/O
// threads (they take microseconds); writes (the admin routes: inserts,
// deletes, creates, drops) run on a pool of write_threads, so that an I/O
// thread never waits on an fsync. At most write_queue writes wait or run at
// once; beyond that a write is refused with 503 write_queue_full and
// Retry-After: 1. In a cluster, the service's Lane decides: a client's
// request that other nodes answer runs on the write pool too, and the
// nodes' calls to each other on two more pools of write_threads (to a
// primary, and to a copy), so that nodes never wait on each other in a
// circle.
//
// Limits: the request header and body sizes are capped (431 / 413, then the
// connection is closed); a client that takes longer than read_timeout to send
// one request, or idles that long on a keep-alive connection, is
// disconnected. Malformed HTTP gets 400 and a close.
//
// Binding: address defaults to 127.0.0.1. Start() refuses a non-loopback
// address when the service has no API key unless allow_remote_without_key is
// set (docs/api.md says so).
//
// Shutdown: Shutdown() (or SIGINT / SIGTERM with handle_signals) stops
// accepting, closes idle keep-alive connections, lets requests in flight
// finish and answers them with "Connection: close"; Wait() returns once every
// connection is gone or drain_timeout has passed.
//
// Thread safety: Start, Shutdown, Wait and port may be called from any
// thread; Shutdown is idempotent. The Service must outlive the server.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "http/service.h"
#include "core/status.h"

namespace hamdb::http {

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 8080;  // 0: an ephemeral port (see HttpServer::port)
  int threads = 2;
  // Threads that run write requests, and how many writes may wait or run.
  // Writes to one collection that wait together share one group commit
  // (LiveCollection), so more threads than cores let concurrent clients
  // share fsyncs.
  int write_threads = 8;
  size_t write_queue = 64;
  // Bind a non-loopback address although no API key is configured.
  bool allow_remote_without_key = false;
  size_t body_limit = 32u << 20;    // bytes
  size_t header_limit = 16u << 10;  // bytes
  std::chrono::milliseconds read_timeout{30000};
  std::chrono::milliseconds drain_timeout{30000};
  // Install SIGINT / SIGTERM handlers that call Shutdown().
  bool handle_signals = false;
  // Whether the service has API keys (decides the loopback rule).
  bool has_api_key = false;
};

class HttpServer {
 public:
  HttpServer(Service* service, ServerOptions options);
  ~HttpServer();  // Shutdown() and Wait()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts the threads; returns once connections are
  // accepted. InvalidArgument (bad address, threads < 1),
  // FailedPrecondition (non-loopback without a key), IOError (bind failed).
  Status Start();
  // The bound port (after Start).
  uint16_t port() const;
  // Begins the graceful shutdown described above; returns at once.
  void Shutdown();
  // Blocks until the server has shut down and its threads are joined.
  void Wait();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace hamdb::http
