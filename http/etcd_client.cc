#include "http/etcd_client.h"

#include <nlohmann/json.hpp>

#include "http/http_util.h"

namespace hamdb::http {

using nlohmann::json;

namespace {

std::string B64(const std::string& s) {
  return Base64Encode(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

StatusOr<std::string> FromB64(const json& v) {
  if (!v.is_string()) return std::string();
  std::vector<uint8_t> bytes;
  if (!Base64Decode(v.get<std::string>(), &bytes)) return Status::Corruption("etcd sent a value that is not base64");
  return std::string(bytes.begin(), bytes.end());
}

// The gateway writes 64-bit integers as decimal strings and leaves out zeros.
int64_t Int(const json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end()) return 0;
  if (it->is_string()) return std::stoll(it->get<std::string>());
  if (it->is_number_integer()) return it->get<int64_t>();
  return 0;
}

// The end of the key range of all keys with this prefix: the prefix with
// its last byte that is not 0xff incremented ("\0" for everything).
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    unsigned char& c = reinterpret_cast<unsigned char&>(prefix.back());
    if (c < 0xff) {
      ++c;
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');
}

StatusOr<EtcdKeyValue> KeyValue(const json& kv) {
  EtcdKeyValue out;
  HAMDB_ASSIGN_OR_RETURN(out.key, FromB64(kv.value("key", json())));
  HAMDB_ASSIGN_OR_RETURN(out.value, FromB64(kv.value("value", json())));
  out.create_revision = Int(kv, "create_revision");
  out.mod_revision = Int(kv, "mod_revision");
  out.lease = Int(kv, "lease");
  return out;
}

// The body of a put (also a transaction's request_put).
json PutRequest(const std::string& key, const std::string& value, int64_t lease) {
  json put{{"key", B64(key)}, {"value", B64(value)}};
  if (lease != 0) put["lease"] = std::to_string(lease);
  return put;
}

// A transaction condition: the key does not exist.
json AbsentCompare(const std::string& key) {
  return json{{"key", B64(key)}, {"target", "CREATE"}, {"result", "EQUAL"}, {"create_revision", "0"}};
}

}  // namespace

StatusOr<EtcdClient> EtcdClient::Create(const std::string& endpoint, std::chrono::seconds timeout) {
  StatusOr<Url> url = ParseUrl(endpoint);
  if (!url.ok()) return url.status().WithContext("etcd endpoint");
  return EtcdClient(endpoint, std::move(url).value(), timeout);
}

StatusOr<json> EtcdClient::Call(const std::string& path, const json& body) const {
  StatusOr<HttpReply> r = HttpCall(url_, "POST", path, "application/json", body.dump(), "", timeout_);
  if (!r.ok()) return Status::IOError("etcd is unreachable: " + r.status().message());
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::IOError("etcd at " + endpoint_ + " answered " + path + " with HTTP " +
                               std::to_string(r->status) + " and no JSON object");
  }
  if (r->status != 200 || j.contains("error")) {
    const std::string message = j.value("message", j.value("error", std::string("HTTP ") + std::to_string(r->status)));
    if (message.find("not found") != std::string::npos) return Status::NotFound("etcd: " + message);
    return Status::IOError("etcd at " + endpoint_ + " refused " + path + ": " + message);
  }
  return j;
}

StatusOr<int64_t> EtcdClient::GrantLease(int ttl_seconds) {
  HAMDB_ASSIGN_OR_RETURN(json j, Call("/v3/lease/grant", json{{"TTL", ttl_seconds}}));
  const int64_t id = Int(j, "ID");
  if (id == 0) return Status::IOError("etcd granted no lease: " + j.dump());
  return id;
}

Status EtcdClient::KeepAlive(int64_t lease) {
  HAMDB_ASSIGN_OR_RETURN(json j, Call("/v3/lease/keepalive", json{{"ID", std::to_string(lease)}}));
  // An expired lease comes back without a TTL.
  const json result = j.value("result", json::object());
  if (Int(result, "TTL") <= 0) return Status::NotFound("etcd lease " + std::to_string(lease) + " has expired");
  return Status::OK();
}

Status EtcdClient::RevokeLease(int64_t lease) {
  return Call("/v3/lease/revoke", json{{"ID", std::to_string(lease)}}).status();
}

Status EtcdClient::Put(const std::string& key, const std::string& value, int64_t lease) {
  return Call("/v3/kv/put", PutRequest(key, value, lease)).status();
}

StatusOr<bool> EtcdClient::PutIfAbsent(const std::string& key, const std::string& value, int64_t lease) {
  const json body{{"compare", json::array({AbsentCompare(key)})},
                  {"success", json::array({json{{"request_put", PutRequest(key, value, lease)}}})}};
  HAMDB_ASSIGN_OR_RETURN(json j, Call("/v3/kv/txn", body));
  return j.value("succeeded", false);
}

StatusOr<bool> EtcdClient::Txn(const std::vector<EtcdCompare>& compares,
                               const std::vector<std::pair<std::string, std::string>>& puts,
                               const std::vector<std::string>& deletes, int64_t* revision) {
  json compare = json::array(), success = json::array();
  for (const EtcdCompare& c : compares) {
    compare.push_back(c.mod_revision == 0
                          ? AbsentCompare(c.key)
                          : json{{"key", B64(c.key)}, {"target", "MOD"}, {"result", "EQUAL"},
                                 {"mod_revision", std::to_string(c.mod_revision)}});
  }
  for (const auto& [key, value] : puts) success.push_back(json{{"request_put", PutRequest(key, value, 0)}});
  for (const std::string& key : deletes) success.push_back(json{{"request_delete_range", {{"key", B64(key)}}}});
  HAMDB_ASSIGN_OR_RETURN(json j, Call("/v3/kv/txn", json{{"compare", compare}, {"success", success}}));
  if (revision != nullptr) *revision = Int(j.value("header", json::object()), "revision");
  return j.value("succeeded", false);
}

StatusOr<std::optional<EtcdKeyValue>> EtcdClient::Get(const std::string& key) {
  HAMDB_ASSIGN_OR_RETURN(json j, Call("/v3/kv/range", json{{"key", B64(key)}}));
  const json kvs = j.value("kvs", json::array());
  if (kvs.empty()) return std::optional<EtcdKeyValue>();
  HAMDB_ASSIGN_OR_RETURN(EtcdKeyValue kv, KeyValue(kvs[0]));
  return std::optional<EtcdKeyValue>(std::move(kv));
}

StatusOr<std::vector<EtcdKeyValue>> EtcdClient::Range(const std::string& prefix) {
  HAMDB_ASSIGN_OR_RETURN(json j, Call("/v3/kv/range", json{{"key", B64(prefix)}, {"range_end", B64(PrefixEnd(prefix))}}));
  std::vector<EtcdKeyValue> out;
  for (const json& kv : j.value("kvs", json::array())) {
    HAMDB_ASSIGN_OR_RETURN(EtcdKeyValue x, KeyValue(kv));
    out.push_back(std::move(x));
  }
  return out;
}

Status EtcdClient::Delete(const std::string& key) {
  return Call("/v3/kv/deleterange", json{{"key", B64(key)}}).status();
}

}  // namespace hamdb::http
