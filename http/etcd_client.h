// EtcdClient: the etcd v3 calls hamdb's cluster mode needs, spoken to
// etcd's JSON gateway (HTTP POST of JSON to /v3/..., keys and values in
// base64, 64-bit numbers as decimal strings) with http/client.h. No
// generated protobuf code and no consensus of our own: etcd decides.
//
// Every call is one HTTP request with a short timeout. An unreachable etcd
// is IOError ("etcd is unreachable: cannot reach ... http://HOST:PORT"), and so is an
// answer etcd gives as an error, with etcd's message; a lease etcd no
// longer has is NotFound.
//
// Thread safety: an EtcdClient holds only its endpoint; calls from any
// number of threads are independent.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/status.h"
#include "http/client.h"

namespace hamdb::http {

// One condition of a transaction: the key's mod_revision equals
// `mod_revision`, or, when it is 0, the key does not exist.
struct EtcdCompare {
  std::string key;
  int64_t mod_revision = 0;
};

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t lease = 0;  // 0: none
};

class EtcdClient {
 public:
  // endpoint: "http://HOST:PORT" of one etcd member. InvalidArgument when
  // it does not parse; nothing is sent until the first call.
  static StatusOr<EtcdClient> Create(const std::string& endpoint,
                                     std::chrono::seconds timeout = std::chrono::seconds(3));

  const std::string& endpoint() const { return endpoint_; }

  // A lease of ttl_seconds; its id.
  StatusOr<int64_t> GrantLease(int ttl_seconds);
  // Renews a lease. NotFound when etcd no longer has it (it expired).
  Status KeepAlive(int64_t lease);
  // Ends a lease now; the keys attached to it are deleted.
  Status RevokeLease(int64_t lease);

  // Writes key = value, attached to `lease` when it is not 0.
  Status Put(const std::string& key, const std::string& value, int64_t lease = 0);
  // Writes key = value only if key does not exist, in one transaction; false
  // (and nothing written) when it exists.
  StatusOr<bool> PutIfAbsent(const std::string& key, const std::string& value, int64_t lease = 0);
  // Applies `puts` (key, value) and `deletes` in one transaction if every
  // compare holds; false (and nothing changed) otherwise. *revision (when
  // given) gets the store's revision after it: the mod_revision of what
  // the transaction put.
  StatusOr<bool> Txn(const std::vector<EtcdCompare>& compares,
                     const std::vector<std::pair<std::string, std::string>>& puts,
                     const std::vector<std::string>& deletes = {}, int64_t* revision = nullptr);
  // The key, or nullopt.
  StatusOr<std::optional<EtcdKeyValue>> Get(const std::string& key);
  // Every key that starts with prefix, in key order.
  StatusOr<std::vector<EtcdKeyValue>> Range(const std::string& prefix);
  // Deletes the key (no error when it is absent).
  Status Delete(const std::string& key);

 private:
  EtcdClient(std::string endpoint, Url url, std::chrono::seconds timeout)
      : endpoint_(std::move(endpoint)), url_(std::move(url)), timeout_(timeout) {}
  // POSTs body to path; the answer's JSON.
  StatusOr<nlohmann::json> Call(const std::string& path, const nlohmann::json& body) const;

  std::string endpoint_;
  Url url_;
  std::chrono::seconds timeout_;
};

}  // namespace hamdb::http
