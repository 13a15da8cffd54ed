// The files of the web page (http/ui/), compiled into the binary by
// http/embed_files.cmake: the server never reads them from disk and the page
// loads nothing from elsewhere.
#pragma once

#include <string_view>

namespace hamdb::http {

struct UiFileEntry {
  std::string_view name;  // the file name under http/ui/, e.g. "app.js"
  std::string_view body;
};

// The file called `name`, or null.
const UiFileEntry* FindUiFile(std::string_view name);

}  // namespace hamdb::http
