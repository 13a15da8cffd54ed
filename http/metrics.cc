#include "http/metrics.h"

#include <cinttypes>
#include <cstdio>

namespace hamdb::http {

namespace {

// Escapes a label value: backslash, double quote and newline.
std::string Escape(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string FormatDouble(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

}  // namespace

Metrics::Series* Metrics::Find(std::string_view route, std::string_view method, int status) {
  Key key{std::string(route), std::string(method), status};
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    auto it = series_.find(key);
    if (it != series_.end()) return it->second.get();
  }
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto& slot = series_[key];
  if (!slot) slot = std::make_unique<Series>();
  return slot.get();
}

void Metrics::Record(std::string_view route, std::string_view method, int status, double seconds) {
  Series* s = Find(route, method, status);
  s->count.fetch_add(1, std::memory_order_relaxed);
  s->sum_ns.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
  for (size_t b = 0; b < kLatencyBuckets.size(); ++b) {
    if (seconds <= kLatencyBuckets[b]) {
      s->buckets[b].fetch_add(1, std::memory_order_relaxed);
      break;  // buckets are stored non-cumulative and summed at render time
    }
  }
}

uint64_t Metrics::Count(std::string_view route, std::string_view method, int status) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = series_.find(Key{std::string(route), std::string(method), status});
  return it == series_.end() ? 0 : it->second->count.load(std::memory_order_relaxed);
}

std::string Metrics::Render(const std::vector<CollectionGauge>& collections, bool ready) const {
  std::string out;
  out += "# HELP hamdb_ready 1 when every collection index is built and the service is ready.\n";
  out += "# TYPE hamdb_ready gauge\n";
  out += std::string("hamdb_ready ") + (ready ? "1" : "0") + "\n";

  out += "# HELP hamdb_collection_items Items held by the collection's live index.\n";
  out += "# TYPE hamdb_collection_items gauge\n";
  for (const CollectionGauge& c : collections) {
    out += "hamdb_collection_items{collection=\"" + Escape(c.name) + "\",index=\"" +
           Escape(c.index_spec) + "\"} " + std::to_string(c.items) + "\n";
  }
  out += "# HELP hamdb_index_memory_bytes Heap bytes held by the collection's index.\n";
  out += "# TYPE hamdb_index_memory_bytes gauge\n";
  for (const CollectionGauge& c : collections) {
    out += "hamdb_index_memory_bytes{collection=\"" + Escape(c.name) + "\",index=\"" +
           Escape(c.index_spec) + "\"} " + std::to_string(c.index_memory_bytes) + "\n";
  }

  // One counter of the collections' group commits (LiveCollection::WriteStats).
  auto write_counter = [&](const char* name, const char* help, auto value) {
    out += std::string("# HELP ") + name + " " + help + "\n";
    out += std::string("# TYPE ") + name + " counter\n";
    for (const CollectionGauge& c : collections) {
      out += std::string(name) + "{collection=\"" + Escape(c.name) + "\"} " + value(c.writes) + "\n";
    }
  };
  using Stats = LiveCollection::WriteStats;
  const auto count = [](uint64_t Stats::*field) {
    return [field](const Stats& s) { return std::to_string(s.*field); };
  };
  const auto seconds = [](double Stats::*field) {
    return [field](const Stats& s) { return FormatDouble(s.*field); };
  };
  write_counter("hamdb_write_requests_total",
                "Write requests through the group commits (inserts and deletes, refused ones "
                "included).",
                count(&Stats::writes));
  write_counter("hamdb_write_items_total",
                "Items the write requests wrote (ids to delete included, a refused request's "
                "items not).",
                count(&Stats::items));
  write_counter("hamdb_write_groups_total",
                "Group commits (one store batch and fsync each) that carried the write requests.",
                count(&Stats::groups));
  write_counter("hamdb_write_store_seconds_total",
                "Time group commits spent writing the store batch, its fsync included.",
                seconds(&Stats::store_seconds));
  write_counter("hamdb_write_sync_seconds_total", "Time group commits spent in the store's fsync.",
                seconds(&Stats::sync_seconds));
  write_counter("hamdb_write_index_seconds_total",
                "Time group commits spent updating the index. Commits run one at a time, so store "
                "plus index seconds per second is the share of time the commit path was busy.",
                seconds(&Stats::index_seconds));

  std::shared_lock<std::shared_mutex> lock(mu_);
  out += "# HELP hamdb_http_requests_total HTTP requests answered, by route, method and status.\n";
  out += "# TYPE hamdb_http_requests_total counter\n";
  for (const auto& [key, s] : series_) {
    const auto& [route, method, status] = key;
    out += "hamdb_http_requests_total{route=\"" + Escape(route) + "\",method=\"" + Escape(method) +
           "\",status=\"" + std::to_string(status) + "\"} " +
           std::to_string(s->count.load(std::memory_order_relaxed)) + "\n";
  }
  out += "# HELP hamdb_http_request_duration_seconds Time from a parsed request to its response.\n";
  out += "# TYPE hamdb_http_request_duration_seconds histogram\n";
  for (const auto& [key, s] : series_) {
    const auto& [route, method, status] = key;
    const std::string labels = "route=\"" + Escape(route) + "\",method=\"" + Escape(method) +
                               "\",status=\"" + std::to_string(status) + "\"";
    uint64_t cumulative = 0;
    for (size_t b = 0; b < kLatencyBuckets.size(); ++b) {
      cumulative += s->buckets[b].load(std::memory_order_relaxed);
      out += "hamdb_http_request_duration_seconds_bucket{" + labels + ",le=\"" +
             FormatDouble(kLatencyBuckets[b]) + "\"} " + std::to_string(cumulative) + "\n";
    }
    const uint64_t count = s->count.load(std::memory_order_relaxed);
    out += "hamdb_http_request_duration_seconds_bucket{" + labels + ",le=\"+Inf\"} " +
           std::to_string(count) + "\n";
    out += "hamdb_http_request_duration_seconds_sum{" + labels + "} " +
           FormatDouble(s->sum_ns.load(std::memory_order_relaxed) / 1e9) + "\n";
    out +=
        "hamdb_http_request_duration_seconds_count{" + labels + "} " + std::to_string(count) + "\n";
  }
  return out;
}

}  // namespace hamdb::http
