// The web page: GET / and its files under GET /ui/{file} (http/ui/, compiled
// in). Public routes, so that a browser can load the page and then ask for
// an API key; everything the page shows comes from the API routes, which
// check the key as for any client.
#include <string_view>

#include "http/call.h"
#include "http/ui_files.h"

namespace hamdb::http {

namespace {

std::string_view ContentTypeOf(std::string_view name) {
  auto ends_with = [&](std::string_view s) {
    return name.size() >= s.size() && name.substr(name.size() - s.size()) == s;
  };
  if (ends_with(".html")) return "text/html; charset=utf-8";
  if (ends_with(".js")) return "text/javascript; charset=utf-8";
  if (ends_with(".css")) return "text/css; charset=utf-8";
  if (ends_with(".svg")) return "image/svg+xml";
  if (ends_with(".png")) return "image/png";
  return "application/octet-stream";
}

}  // namespace

Response Service::Call::Page() {
  target_.segments = {"ui", "index.html"};
  return UiFile();
}

Response Service::Call::UiFile() {
  const std::string& file = target_.segments[1];
  const UiFileEntry* f = FindUiFile(file);
  if (f == nullptr) Fail(404, "not_found", "no page file '" + file + "'");
  Response r;
  // Scripts and styles from this server only; images also from blob: URLs
  // (thumbnails fetched with the key) and data: URLs.
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                         "base-uri 'none'; frame-ancestors 'none'");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  if (NotModified(f->body, &r)) return r;
  r.content_type = std::string(ContentTypeOf(file));
  r.body = std::string(f->body);
  return r;
}

}  // namespace hamdb::http
