// A minimal HTTP/1.1 client for the `hamdb` commands that talk to a running
// server (query, backup): one request per connection, Boost.Beast.
#pragma once

#include <chrono>
#include <string>
#include <utility>

#include "core/status.h"

namespace hamdb::tools {

struct Url {
  std::string host, port, base_path;
};

// "http://HOST[:PORT][/BASE]". InvalidArgument otherwise.
StatusOr<Url> ParseUrl(const std::string& url);

// POSTs body to base_path + target and returns (HTTP status, body). Network
// errors and timeouts are IOError; any HTTP status is returned as it is.
StatusOr<std::pair<int, std::string>> HttpPost(const Url& u, const std::string& target,
                                               const std::string& content_type, std::string body,
                                               const std::string& api_key,
                                               std::chrono::seconds timeout = std::chrono::seconds(60));

}  // namespace hamdb::tools
