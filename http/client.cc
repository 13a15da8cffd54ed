#include "http/client.h"

#include <cctype>
#include <cstdlib>

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

StatusOr<HttpReply> HttpCall(const Url& u, const std::string& method, const std::string& target,
                             const std::string& content_type, std::string body, const std::string& api_key,
                             std::chrono::seconds timeout) {
  const bhttp::verb verb = bhttp::string_to_verb(method);
  if (verb == bhttp::verb::unknown) return Status::InvalidArgument("unknown HTTP method " + method);
  try {
    boost::asio::io_context ioc;
    tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    stream.expires_after(timeout);
    stream.connect(resolver.resolve(u.host, u.port));
    bhttp::request<bhttp::string_body> req{verb, u.base_path + target, 11};
    req.set(bhttp::field::host, u.host);
    if (!body.empty()) req.set(bhttp::field::content_type, content_type);
    req.set(bhttp::field::accept, "application/json");
    if (!api_key.empty()) req.set(bhttp::field::authorization, "Bearer " + api_key);
    req.body() = std::move(body);
    req.prepare_payload();
    bhttp::write(stream, req);
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(1u << 30);
    stream.expires_after(timeout);
    bhttp::read(stream, buffer, parser);
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
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
  } catch (const std::exception& e) {
    return Status::IOError(std::string("cannot reach the server at http://") + u.host + ":" + u.port +
                           ": " + e.what());
  }
}

StatusOr<std::pair<int, std::string>> HttpPost(const Url& u, const std::string& target,
                                               const std::string& content_type, std::string body,
                                               const std::string& api_key,
                                               std::chrono::seconds timeout) {
  HAMDB_ASSIGN_OR_RETURN(HttpReply r, HttpCall(u, "POST", target, content_type, std::move(body), api_key, timeout));
  return std::make_pair(r.status, std::move(r.body));
}

}  // namespace hamdb::http
