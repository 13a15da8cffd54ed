// Metrics: request counters and latency histograms of the HTTP service,
// rendered in the Prometheus text exposition format (version 0.0.4).
//
// Series are labelled by route template (e.g. "/collections/{name}/search",
// never the raw path, so the label set stays bounded), method and status
// code. Collection gauges (items, index memory) are passed in at render
// time by the service, which owns the collections.
//
// Thread safety: Record and Render may be called from any thread at once.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "collection/live_collection.h"

namespace hamdb::http {

// Upper bounds of the latency histogram buckets, in seconds (+Inf implied).
inline constexpr std::array<double, 14> kLatencyBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0};

struct CollectionGauge {
  std::string name;
  std::string index_spec;
  uint64_t items = 0;
  uint64_t index_memory_bytes = 0;
  LiveCollection::WriteStats writes;  // its group commits
};

class Metrics {
 public:
  // Counts one answered request and its latency.
  void Record(std::string_view route, std::string_view method, int status, double seconds);

  // The Prometheus text: hamdb_http_requests_total, the
  // hamdb_http_request_duration_seconds histogram, hamdb_ready,
  // hamdb_collection_items and hamdb_index_memory_bytes.
  std::string Render(const std::vector<CollectionGauge>& collections, bool ready) const;

  // The count recorded for one (route, method, status) series (tests).
  uint64_t Count(std::string_view route, std::string_view method, int status) const;

 private:
  struct Series {
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> sum_ns{0};
    std::array<std::atomic<uint64_t>, kLatencyBuckets.size()> buckets{};
  };
  using Key = std::tuple<std::string, std::string, int>;
  Series* Find(std::string_view route, std::string_view method, int status);

  mutable std::shared_mutex mu_;
  std::map<Key, std::unique_ptr<Series>> series_;
};

}  // namespace hamdb::http
