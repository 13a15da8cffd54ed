// hamdb query: search a running hamdb server (docs/api.md) by image file or
// by code and print a readable table (or the raw JSON with --json).
//
// An image is sent as the raw request body (Content-Type image/png or
// image/jpeg, sniffed from its bytes) to POST /collections/{name}/search with
// the parameters in the query string; a code is sent as a JSON body.
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "encoder/image.h"
#include "http/client.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace hamdb::tools {

namespace {

using nlohmann::json;

struct QueryArgs {
  std::string url = "http://127.0.0.1:8080", collection, image, code, mode, tie_break, api_key, filter;
  size_t k = 10;
  int64_t radius = -1;
  int nprobe = 0;
  bool json_out = false;
};

void PrintTable(const json& r) {
  if (r.contains("query")) {
    const json& q = r["query"];
    std::printf("query: code %s  predicted class %s (%s, distance %s to its class code)%s  confidence %.3f\n",
                q.value("code", "").c_str(),
                q.contains("class_name") ? q["class_name"].get<std::string>().c_str()
                                         : std::to_string(q.value("class", -1)).c_str(),
                q.value("decoding", "").c_str(), q["distance_to_class"].dump().c_str(),
                q.value("ood", false) ? "  OUT OF DISTRIBUTION" : "", q.value("confidence", 0.0));
  }
  std::printf("%zu results, %s, %.3f ms, index %s, mode %s, ties by %s\n", r["results"].size(),
              r.value("exact", false) ? "exact" : "approximate", r.value("took_ms", 0.0),
              r.value("index", "").c_str(), r.value("mode", "").c_str(), r.value("tie_break", "").c_str());
  std::printf("%4s  %20s  %8s  %8s  %6s  %-12s  %s\n", "rank", "id", "distance", "score", "label", "class",
              "path");
  size_t rank = 0;
  for (const json& n : r["results"]) {
    const json meta = n.value("metadata", json::object());
    std::string label = n.contains("label") ? n["label"].dump() : "-";
    std::string cls = meta.is_object() && meta.contains("label_name") ? meta["label_name"].get<std::string>()
                      : meta.is_object() && meta.contains("class_name") ? meta["class_name"].get<std::string>()
                                                                       : "-";
    std::string path = meta.is_object() && meta.contains("path") ? meta["path"].get<std::string>() : "";
    char score[32] = "-";
    if (n.contains("score")) std::snprintf(score, sizeof(score), "%.4g", n["score"].get<double>());
    std::printf("%4zu  %20s  %8s  %8s  %6s  %-12s  %s\n", ++rank, n["id"].dump().c_str(),
                n["distance"].dump().c_str(), score, label.c_str(), cls.c_str(), path.c_str());
  }
}

int RunQuery(const QueryArgs& a) {
  if (a.image.empty() == a.code.empty()) return Fail(Status::InvalidArgument("give one of --image or --code"));
  auto url = http::ParseUrl(a.url);
  if (!url.ok()) return Fail(url.status());
  const std::string path = "/collections/" + http::UrlEncode(a.collection) + "/search";
  StatusOr<std::pair<int, std::string>> resp = Status::Internal("no request");
  if (!a.image.empty()) {
    std::ifstream in(a.image, std::ios::binary);
    if (!in) return Fail(Status::NotFound("cannot open " + a.image));
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const ImageFormat f =
        DetectImageFormat(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    if (f == ImageFormat::kUnknown) return Fail(Status::InvalidArgument(a.image + " is not a JPEG or PNG"));
    std::string qs = "?with_metadata=true";
    qs += a.radius >= 0 ? "&radius=" + std::to_string(a.radius) : "&k=" + std::to_string(a.k);
    if (!a.mode.empty()) qs += "&mode=" + http::UrlEncode(a.mode);
    if (a.nprobe != 0) qs += "&nprobe=" + std::to_string(a.nprobe);
    if (!a.tie_break.empty()) qs += "&tie_break=" + http::UrlEncode(a.tie_break);
    if (!a.filter.empty()) qs += "&filter=" + http::UrlEncode(a.filter);
    resp = http::HttpPost(*url, path + qs, f == ImageFormat::kPng ? "image/png" : "image/jpeg", std::move(bytes),
                a.api_key);
  } else {
    json body = {{"code", a.code}, {"with_metadata", true}};
    if (a.radius >= 0) body["radius"] = a.radius; else body["k"] = a.k;
    if (!a.mode.empty()) body["mode"] = a.mode;
    if (a.nprobe != 0) body["nprobe"] = a.nprobe;
    if (!a.tie_break.empty()) body["tie_break"] = a.tie_break;
    if (!a.filter.empty()) {
      body["filter"] = json::parse(a.filter, nullptr, false);
      if (body["filter"].is_discarded()) return Fail(Status::InvalidArgument("--filter is not valid JSON"));
    }
    resp = http::HttpPost(*url, path, "application/json", body.dump(), a.api_key);
  }
  if (!resp.ok()) return Fail(resp.status());
  const auto& [status, text] = *resp;
  json r = json::parse(text, nullptr, false);
  if (status != 200) {
    std::string msg = text;
    if (!r.is_discarded() && r.contains("error")) msg = r["error"].value("message", text);
    std::fprintf(stderr, "error: HTTP %d: %s\n", status, msg.c_str());
    return 1;
  }
  if (a.json_out || r.is_discarded()) {
    std::printf("%s\n", r.is_discarded() ? text.c_str() : r.dump(2).c_str());
    return 0;
  }
  PrintTable(r);
  return 0;
}

}  // namespace

void AddQueryCommand(CLI::App* app, int* exit_code) {
  auto a = std::make_shared<QueryArgs>();
  CLI::App* cmd = app->add_subcommand("query", "Search a running server by image file or code (a table, or --json)");
  cmd->add_option("--url", a->url, "Server address")->envname("HAMDB_URL")->capture_default_str();
  cmd->add_option("--tie-break", a->tie_break, "Order of equal distances: id or score (default: the collection's)")
      ->check(CLI::IsMember({"id", "score"}));
  cmd->add_option("--filter", a->filter,
                  "Only items matching this JSON filter, e.g. '{\"field\": \"label\", \"eq\": 8}' "
                  "(docs/api.md#filtered-search)");
  cmd->add_option("--collection,-c", a->collection, "Collection")->required();
  cmd->add_option("--image", a->image, "Query image (PNG or JPEG), encoded by the collection's encoder");
  cmd->add_option("--code", a->code, "Query code: hex or a 0/1 bit string");
  cmd->add_option("-k,--k", a->k, "Neighbours")->capture_default_str();
  cmd->add_option("--radius", a->radius, "Radius search (inclusive) instead of k-NN");
  cmd->add_option("--mode", a->mode, "exact | bucket | ivf | gpu (as the collection allows)");
  cmd->add_option("--nprobe", a->nprobe, "Buckets / lists to visit");
  cmd->add_option("--api-key", a->api_key, "API key")->envname("HAMDB_API_KEY");
  cmd->add_flag("--json", a->json_out, "Print the server's JSON answer");
  cmd->callback([a, exit_code] { *exit_code = RunQuery(*a); });
}

}  // namespace hamdb::tools
