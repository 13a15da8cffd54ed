#include "http/client.h"

#include <cctype>
#include <cstdlib>
#include <map>
#include <memory>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace hamdb::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

StatusOr<Url> ParseUrl(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) {
    return Status::InvalidArgument("a URL must start with http:// (got " + url + ")");
  }
  std::string rest = url.substr(scheme.size());
  Url u;
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    u.base_path = rest.substr(slash);
    rest = rest.substr(0, slash);
  }
  while (!u.base_path.empty() && u.base_path.back() == '/') u.base_path.pop_back();
  const size_t colon = rest.rfind(':');
  u.host = colon == std::string::npos ? rest : rest.substr(0, colon);
  u.port = colon == std::string::npos ? "80" : rest.substr(colon + 1);
  if (u.host.empty()) return Status::InvalidArgument("the URL " + url + " has no host");
  return u;
}

std::string UrlEncode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

namespace {

// One connection and the io_context its operations run on. Every step is
// asynchronous and run to completion here, so that the stream's deadline
// holds (a synchronous read would wait on a silent peer forever).
struct Connection {
  boost::asio::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since;

  void Run(beast::error_code* ec) {
    ioc.restart();
    ioc.run();
    if (*ec) throw beast::system_error(*ec);
  }
  void Connect(const Url& u, std::chrono::seconds timeout) {
    tcp::resolver resolver(ioc);
    const auto endpoints = resolver.resolve(u.host, u.port);
    beast::error_code ec;
    stream.expires_after(timeout);
    stream.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    Run(&ec);
  }
  // Sends req and reads the answer; *keep_alive: whether the connection
  // may carry another request.
  HttpReply Exchange(bhttp::request<bhttp::string_body>& req, std::chrono::seconds timeout, bool* keep_alive) {
    beast::error_code ec;
    stream.expires_after(timeout);
    bhttp::async_write(stream, req, [&](beast::error_code e, size_t) { ec = e; });
    Run(&ec);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(1u << 30);
    stream.expires_after(timeout);
    bhttp::async_read(stream, buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
    Run(&ec);
    *keep_alive = parser.get().keep_alive();
    HttpReply reply;
    reply.status = static_cast<int>(parser.get().result_int());
    reply.body = std::move(parser.get().body());
    if (auto it = parser.get().find(bhttp::field::content_type); it != parser.get().end()) {
      reply.content_type = std::string(it->value());
    }
    if (auto it = parser.get().find(bhttp::field::retry_after); it != parser.get().end()) {
      reply.retry_after_s = std::atoi(std::string(it->value()).c_str());
    }
    return reply;
  }
  void Close() {
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.socket().close(ec);
  }
};

StatusOr<bhttp::request<bhttp::string_body>> MakeRequest(const Url& u, const std::string& method,
                                                         const std::string& target, const std::string& content_type,
                                                         std::string body, const std::string& api_key,
                                                         bool keep_alive) {
  const bhttp::verb verb = bhttp::string_to_verb(method);
  if (verb == bhttp::verb::unknown) return Status::InvalidArgument("unknown HTTP method " + method);
  bhttp::request<bhttp::string_body> req{verb, u.base_path + target, 11};
  req.set(bhttp::field::host, u.host);
  if (!body.empty()) req.set(bhttp::field::content_type, content_type);
  req.set(bhttp::field::accept, "application/json");
  if (!api_key.empty()) req.set(bhttp::field::authorization, "Bearer " + api_key);
  req.body() = std::move(body);
  req.keep_alive(keep_alive);
  req.prepare_payload();
  return req;
}

Status Unreachable(const Url& u, const std::exception& e) {
  return Status::IOError(std::string("cannot reach the server at http://") + u.host + ":" + u.port + ": " +
                         e.what());
}

}  // namespace

StatusOr<HttpReply> HttpCall(const Url& u, const std::string& method, const std::string& target,
                             const std::string& content_type, std::string body, const std::string& api_key,
                             std::chrono::seconds timeout) {
  HAMDB_ASSIGN_OR_RETURN(auto req, MakeRequest(u, method, target, content_type, std::move(body), api_key, false));
  try {
    Connection c;
    c.Connect(u, timeout);
    bool keep_alive = false;
    HttpReply reply = c.Exchange(req, timeout, &keep_alive);
    c.Close();
    return reply;
  } catch (const std::exception& e) {
    return Unreachable(u, e);
  }
}

struct HttpPool::Idle {
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> by_server;  // "host:port"
};

HttpPool::HttpPool(size_t max_idle_per_server, std::chrono::seconds max_idle_time)
    : max_idle_(max_idle_per_server), max_idle_time_(max_idle_time), idle_(std::make_unique<Idle>()) {}

HttpPool::~HttpPool() = default;

StatusOr<HttpReply> HttpPool::Call(const Url& u, const std::string& method, const std::string& target,
                                   const std::string& content_type, std::string body, const std::string& api_key,
                                   std::chrono::seconds timeout) {
  HAMDB_ASSIGN_OR_RETURN(auto req, MakeRequest(u, method, target, content_type, std::move(body), api_key, true));
  const std::string server = u.host + ":" + u.port;
  // A kept connection first; the server may have closed it meanwhile, and
  // then (nothing of an answer read) the request goes on a new one.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<Connection> c;
    if (attempt == 0) {
      std::lock_guard<std::mutex> lock(mu_);
      auto& idle = idle_->by_server[server];
      const auto now = std::chrono::steady_clock::now();
      while (!idle.empty() && !c) {
        std::unique_ptr<Connection> k = std::move(idle.back());
        idle.pop_back();
        if (now - k->idle_since < max_idle_time_) c = std::move(k);
      }
      if (!c) continue;
    }
    const bool reused = c != nullptr;
    try {
      if (!c) {
        c = std::make_unique<Connection>();
        c->Connect(u, timeout);
      }
      bool keep_alive = false;
      HttpReply reply = c->Exchange(req, timeout, &keep_alive);
      if (keep_alive) {
        c->idle_since = std::chrono::steady_clock::now();
        std::lock_guard<std::mutex> lock(mu_);
        auto& idle = idle_->by_server[server];
        if (idle.size() < max_idle_) idle.push_back(std::move(c));
      }
      if (c) c->Close();
      return reply;
    } catch (const beast::system_error& e) {
      if (c) c->Close();
      // A kept connection the server had closed fails at once; a timeout
      // means the server has the request, and is not sent twice.
      if (!reused || e.code() == beast::error::timeout) return Unreachable(u, e);
    } catch (const std::exception& e) {
      if (c) c->Close();
      return Unreachable(u, e);
    }
  }
  return Status::IOError("cannot reach the server at http://" + server);
}

StatusOr<std::pair<int, std::string>> HttpPost(const Url& u, const std::string& target,
                                               const std::string& content_type, std::string body,
                                               const std::string& api_key,
                                               std::chrono::seconds timeout) {
  HAMDB_ASSIGN_OR_RETURN(HttpReply r, HttpCall(u, "POST", target, content_type, std::move(body), api_key, timeout));
  return std::make_pair(r.status, std::move(r.body));
}

}  // namespace hamdb::http
