// /collections/{name}/search and /search/batch: k-NN and radius searches by
// code or image, mode resolution against the index's family, response caps.
#include <algorithm>

#include "collection/filter.h"
#include "core/binary_code.h"
#include "core/score.h"
#include "http/call.h"

namespace hamdb::http {

namespace {

struct SearchOptions {
  std::optional<size_t> k;
  std::optional<uint32_t> radius;
  std::string mode;  // "" = the collection's index as it is
  std::optional<TieBreak> tie_break;  // unset: the collection's default
  int nprobe = 0;
  bool with_metadata = false;
  std::optional<ItemFilter> filter;
};

// Reads k / radius / mode / tie_break / nprobe / with_metadata / filter
// from a JSON object.
SearchOptions ParseSearchOptions(const json& j, int64_t max_k) {
  SearchOptions o;
  if (auto it = j.find("k"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) Fail(400, "bad_request", "'k' must be an integer");
    const int64_t k = it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(max_k)
                          ? max_k + 1
                          : it->get<int64_t>();
    if (k < 1 || k > max_k) {
      Fail(422, "invalid_argument",
           "'k' must be between 1 and " + std::to_string(max_k) + ", got " + it->dump());
    }
    o.k = static_cast<size_t>(k);
  }
  if (auto it = j.find("radius"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) Fail(400, "bad_request", "'radius' must be an integer");
    if (it->is_number_unsigned() ? false : it->get<int64_t>() < 0) {
      Fail(422, "invalid_argument", "'radius' must be >= 0, got " + it->dump());
    }
    const uint64_t r = it->get<uint64_t>();
    o.radius = static_cast<uint32_t>(std::min<uint64_t>(r, kMaxCodeBits));
  }
  if (auto it = j.find("mode"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) Fail(400, "bad_request", "'mode' must be a string");
    o.mode = it->get<std::string>();
  }
  if (auto it = j.find("nprobe"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) Fail(400, "bad_request", "'nprobe' must be an integer");
    const int64_t p = it->get<int64_t>();
    if (p < -1 || p > (1 << 24)) {
      Fail(422, "invalid_argument", "'nprobe' must be -1 (until exact), 0 (default) or positive");
    }
    o.nprobe = static_cast<int>(p);
  }
  if (auto it = j.find("tie_break"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) Fail(422, "invalid_argument", "'tie_break' must be \"id\" or \"score\"");
    o.tie_break = ValueOr(ParseTieBreak(it->get_ref<const std::string&>()));
  }
  if (auto it = j.find("with_metadata"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) Fail(400, "bad_request", "'with_metadata' must be true or false");
    o.with_metadata = it->get<bool>();
  }
  if (auto it = j.find("filter"); it != j.end() && !it->is_null()) {
    ItemFilter::ErrorKind kind;
    StatusOr<ItemFilter> f = ItemFilter::FromJson(*it, &kind);
    if (!f.ok()) {
      if (kind == ItemFilter::ErrorKind::kSyntax) Fail(400, "bad_request", f.status().message());
      Fail(422, "invalid_filter", f.status().message());
    }
    o.filter = std::move(f).value();
  }
  if (!o.k && !o.radius) o.k = 10;
  return o;
}

// The filter of `o` over `live`'s items, or none; 422 invalid_filter when
// the collection's index cannot filter.
std::optional<StoreFilter> MakeFilter(const SearchOptions& o, const LiveCollection& live) {
  if (!o.filter) return std::nullopt;
  StoreFilter filter(&live, &*o.filter);
  const Status supported = CheckFilterSupported(live.spec().spec, live.spec().filters, &filter);
  if (!supported.ok()) {
    Fail(422, "invalid_filter", "collection '" + live.info().name + "': " + supported.message());
  }
  return filter;
}

// Resolves `mode` against the index's table row (IndexSpecInfo): "" or
// "auto" takes the index as it is; a family name must match it, except that
// "exact" also runs an exact index of any family, and an index that can be
// asked for a provably exact answer (class buckets) with nprobe -1.
SearchParams ResolveMode(const SearchOptions& o, const LiveCollection& live, int threads,
                         std::string* mode_out) {
  const IndexSpecInfo& spec = live.spec();
  SearchParams p;
  p.num_threads = threads;
  p.nprobe = o.nprobe;
  p.tie_break = o.tie_break.value_or(live.default_tie_break());
  const std::string& mode = o.mode;
  if (mode.empty() || mode == "auto") {
    *mode_out = spec.family;
    return p;
  }
  if (mode != "exact" && mode != "bucket" && mode != "ivf" && mode != "gpu") {
    Fail(422, "invalid_argument",
         "'mode' must be one of auto, exact, bucket, ivf, gpu; got '" + mode + "'");
  }
  *mode_out = mode;
  if (mode == spec.family || (mode == "exact" && spec.exact)) return p;
  if (mode == "exact" && spec.exact_on_request) {
    p.nprobe = -1;
    return p;
  }
  Fail(422, "mode_unavailable",
       "mode '" + mode + "' is not available on index " + spec.spec + " (family '" + spec.family +
           "'" + (spec.exact || spec.exact_on_request ? "" : ", approximate") + ")");
}

}  // namespace

namespace {

json NeighborsJson(const std::vector<Neighbor>& neighbors, const LiveCollection& live,
                   bool with_metadata) {
  json results = json::array();
  for (const Neighbor& nb : neighbors) {
    json r = {{"id", nb.id}, {"distance", nb.distance}};
    // The quantised score the order used (core/score.h), not the stored float.
    if (nb.score != kNoScore) r["score"] = ScoreOfKey(nb.score);
    if (with_metadata) {
      StatusOr<Item> item = live.Get(nb.id);
      if (item.ok()) {
        r["code"] = FormatHex(item->code.data(), live.bits());
        if (item->label) r["label"] = *item->label;
        if (!item->metadata_json.empty()) {
          json m = json::parse(item->metadata_json, nullptr, false);
          r["metadata"] = m.is_discarded() ? json(item->metadata_json) : m;
        }
      }
    }
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace

Response Service::Call::Search() {
  std::shared_ptr<Collection> c = GetCollection();
  const LiveCollection& live = *c->live;
  const int bits = live.bits();
  const std::string media = MediaType(req_.content_type);
  json j;
  std::vector<uint8_t> query;
  json query_info;  // what the encoder made of an image query
  auto encode = [&](const uint8_t* data, size_t n) {
    EncodedImage e = EncodeImage(live, data, n);
    query = e.code;
    const Codebook& book = live.encoder()->codebook();
    const DecodeResult& d = e.decode;
    query_info = {{"code", FormatHex(e.code.data(), bits)},
                  {"class", d.class_index},
                  {"distance_to_class", d.distance},
                  {"decoding", d.exact ? "ED" : "MHD"},
                  {"exact_decoding", d.exact},
                  {"ood", d.out_of_distribution},
                  {"confidence", e.confidence}};
    if (d.class_index >= 0 && static_cast<size_t>(d.class_index) < book.class_names().size()) {
      query_info["class_name"] = book.class_names()[d.class_index];
    }
  };
  if (IsImageType(media)) {
    j = QueryToJson(target_.query);
    encode(reinterpret_cast<const uint8_t*>(req_.body.data()), req_.body.size());
  } else {
    j = ParseJsonBody();
    const bool has_code = j.contains("code"), has_image = j.contains("image");
    if (has_code == has_image) Fail(400, "bad_request", "give exactly one of 'code' and 'image'");
    if (has_code) {
      query = ParseCodeField(j["code"], bits, "'code'");
    } else {
      const json& img = j["image"];
      if (!img.is_string()) Fail(400, "bad_request", "'image' must be a base64 string");
      std::vector<uint8_t> bytes;
      if (!Base64Decode(img.get_ref<const std::string&>(), &bytes)) {
        Fail(400, "bad_request", "'image' is not valid base64");
      }
      encode(bytes.data(), bytes.size());
    }
  }
  const SearchOptions o = ParseSearchOptions(j, svc_->options_.max_k);
  std::string mode;
  SearchParams p = ResolveMode(o, live, svc_->options_.search_threads, &mode);
  // Holds the field index's read lock: released as soon as the search is
  // done, so that writes wait for the search only, not for the response.
  std::optional<StoreFilter> filter = MakeFilter(o, live);
  if (filter) p.filter = &*filter;

  const Clock::time_point t0 = Clock::now();
  bool scanned_store = false;
  SearchResult r = o.radius ? ValueOr(live.RangeSearch(query.data(), *o.radius, p, &scanned_store))
                            : ValueOr(live.Search(query.data(), *o.k, p, &scanned_store));
  filter.reset();
  if (o.radius && o.k && r.neighbors.size() > *o.k) r.neighbors.resize(*o.k);
  const bool truncated = r.neighbors.size() > svc_->options_.max_results;
  if (truncated) r.neighbors.resize(svc_->options_.max_results);
  const double took = MsSince(t0);
  json out = {{"results", NeighborsJson(r.neighbors, live, o.with_metadata)},
              {"exact", r.exact},
              {"took_ms", took},
              {"index", live.spec().spec},
              {"mode", mode},
              {"tie_break", TieBreakName(p.tie_break)}};
  if (truncated) out["truncated"] = true;
  if (scanned_store) out["degraded"] = true;
  if (!r.visited_buckets.empty()) out["visited_buckets"] = r.visited_buckets;
  if (!query_info.is_null()) out["query"] = std::move(query_info);
  return JsonResponse(200, out);
}

Response Service::Call::SearchBatch() {
  std::shared_ptr<Collection> c = GetCollection();
  const LiveCollection& live = *c->live;
  const int bits = live.bits();
  const json j = ParseJsonBody();
  auto it = j.find("codes");
  if (it == j.end() || !it->is_array()) Fail(400, "bad_request", "'codes' (an array) is required");
  if (it->empty()) Fail(422, "invalid_argument", "'codes' is empty");
  if (it->size() > svc_->options_.max_batch_queries) {
    Fail(422, "invalid_argument",
         "at most " + std::to_string(svc_->options_.max_batch_queries) + " queries per batch");
  }
  const size_t nq = it->size(), nb = code_bytes(bits);
  std::vector<uint8_t> queries(nq * nb);
  for (size_t i = 0; i < nq; ++i) {
    std::vector<uint8_t> q = ParseCodeField((*it)[i], bits, "codes[" + std::to_string(i) + "]");
    std::copy(q.begin(), q.end(), queries.begin() + i * nb);
  }
  const SearchOptions o = ParseSearchOptions(j, svc_->options_.max_k);
  std::string mode;
  SearchParams p = ResolveMode(o, live, svc_->options_.search_threads, &mode);
  // Holds the field index's read lock: released as soon as the search is
  // done, so that writes wait for the search only, not for the response.
  std::optional<StoreFilter> filter = MakeFilter(o, live);
  if (filter) p.filter = &*filter;

  const Clock::time_point t0 = Clock::now();
  std::vector<SearchResult> results;
  bool scanned_store = false;
  if (o.radius) {
    results.reserve(nq);
    for (size_t i = 0; i < nq; ++i) {
      bool scanned = false;
      SearchResult r = ValueOr(live.RangeSearch(&queries[i * nb], *o.radius, p, &scanned));
      scanned_store = scanned_store || scanned;
      if (o.k && r.neighbors.size() > *o.k) r.neighbors.resize(*o.k);
      results.push_back(std::move(r));
    }
  } else {
    Check(live.SearchBatch(queries.data(), nq, *o.k, p, &results, &scanned_store));
  }
  filter.reset();
  const double took = MsSince(t0);
  // The response cap counts results over all queries, in query order.
  size_t budget = svc_->options_.max_results;
  bool truncated = false;
  json list = json::array();
  bool all_exact = true;
  for (SearchResult& r : results) {
    if (r.neighbors.size() > budget) {
      r.neighbors.resize(budget);
      truncated = true;
    }
    budget -= r.neighbors.size();
    all_exact = all_exact && r.exact;
    list.push_back(
        {{"results", NeighborsJson(r.neighbors, live, o.with_metadata)}, {"exact", r.exact}});
  }
  json out = {{"batches", list},
              {"exact", all_exact},
              {"took_ms", took},
              {"index", live.spec().spec},
              {"mode", mode},
              {"tie_break", TieBreakName(p.tie_break)}};
  if (truncated) out["truncated"] = true;
  if (scanned_store) out["degraded"] = true;
  return JsonResponse(200, out);
}

}  // namespace hamdb::http
