// A minimal HTTP/1.1 client: one request per connection, Boost.Beast. Used
// by the `hamdb` commands that talk to a running server (query, backup,
// ingest --url) and by the cluster mode's etcd client (http/etcd_client.h).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "core/status.h"

namespace hamdb::http {

struct Url {
  std::string host, port, base_path;
};

// "http://HOST[:PORT][/BASE]". InvalidArgument otherwise.
StatusOr<Url> ParseUrl(const std::string& url);

// Percent-encodes everything but letters, digits and "-_.~" (a path segment
// or a query value).
std::string UrlEncode(const std::string& s);

struct HttpReply {
  int status = 0;
  std::string body;
  std::string content_type;  // the Content-Type header; "" when absent
  int retry_after_s = 0;  // the Retry-After header in seconds; 0 when absent
};

// Sends `method` (GET, POST, PUT, ...) to base_path + target with `body`
// (content_type is sent only with a non-empty body). Network errors and
// timeouts are IOError; any HTTP status is returned as it is. The timeout
// bounds each step (connect, send, receive).
StatusOr<HttpReply> HttpCall(const Url& u, const std::string& method, const std::string& target,
                             const std::string& content_type, std::string body, const std::string& api_key,
                             std::chrono::seconds timeout = std::chrono::seconds(60));

// Keeps connections to the servers it calls open between calls (HTTP/1.1
// keep-alive), so that a node that calls another many times a second does
// not pay a TCP connect and a new server session per call. A connection
// that the server has closed while idle is replaced by a new one, once;
// calls are therefore for idempotent requests (the cluster's are). Idle
// connections older than max_idle_time are not used again.
// Thread safety: Call may be called from any number of threads.
class HttpPool {
 public:
  explicit HttpPool(size_t max_idle_per_server = 16, std::chrono::seconds max_idle_time = std::chrono::seconds(10));
  ~HttpPool();
  HttpPool(const HttpPool&) = delete;
  HttpPool& operator=(const HttpPool&) = delete;

  // As HttpCall.
  StatusOr<HttpReply> Call(const Url& u, const std::string& method, const std::string& target,
                           const std::string& content_type, std::string body, const std::string& api_key,
                           std::chrono::seconds timeout = std::chrono::seconds(60));

 private:
  struct Idle;
  const size_t max_idle_;
  const std::chrono::seconds max_idle_time_;
  std::mutex mu_;
  std::unique_ptr<Idle> idle_;
};

// HttpCall with POST; returns (HTTP status, body).
StatusOr<std::pair<int, std::string>> HttpPost(const Url& u, const std::string& target,
                                               const std::string& content_type, std::string body,
                                               const std::string& api_key,
                                               std::chrono::seconds timeout = std::chrono::seconds(60));

}  // namespace hamdb::http
