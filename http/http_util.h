// Small, dependency-free helpers of the HTTP service: request-target parsing,
// base64, multipart/form-data bodies, a JSON nesting pre-check and
// constant-time key comparison.
//
// Every function is pure (no shared state) and thread-safe. None throws:
// malformed input gives false / an error Status.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace hamdb::http {

// A request target split into its decoded path segments and query
// parameters. "/collections/a%20b/search?k=5" -> {"collections", "a b",
// "search"}, {k: "5"}. Empty segments (a doubled or trailing '/') are
// dropped. A repeated query key keeps its last value.
struct Target {
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;
};

// InvalidArgument for a target that does not start with '/' or holds a bad
// percent escape.
StatusOr<Target> ParseTarget(std::string_view target);

// Decodes '%XX' escapes (and '+' as space when plus_is_space). False for a
// truncated or non-hex escape.
bool PercentDecode(std::string_view in, bool plus_is_space, std::string* out);

// Standard base64 (RFC 4648, '+' '/'), padding optional, ASCII whitespace
// ignored; a "data:...;base64," prefix is skipped. False for any other
// character or a bad length.
bool Base64Decode(std::string_view in, std::vector<uint8_t>* out);
std::string Base64Encode(const uint8_t* data, size_t n);

// True when `text` nests arrays/objects no deeper than max_depth (strings and
// escapes are skipped correctly). A cheap pre-check run before the JSON
// parser, so that a hostile "[[[[..." body costs one linear scan.
bool JsonDepthWithin(std::string_view text, int max_depth);

// Compares a presented secret with the configured one in time that does not
// depend on where they differ (nor, beyond its own length, on the presented
// one's content).
bool ConstantTimeEquals(std::string_view presented, std::string_view expected);

// Parses a decimal integer that fills the whole string ("-12" allowed). False
// on junk or overflow.
bool ParseInt64(std::string_view s, int64_t* out);
bool ParseUint64(std::string_view s, uint64_t* out);

// The media type of a Content-Type value, lower-cased, parameters dropped:
// "Application/JSON; charset=utf-8" -> "application/json".
std::string MediaType(std::string_view content_type);

// One part of a multipart/form-data body (RFC 7578).
struct FormPart {
  std::string name;          // the Content-Disposition name
  std::string filename;      // the Content-Disposition filename; "" when absent
  std::string content_type;  // the part's Content-Type; "" when absent
  std::string_view data;     // the part's bytes, a view into the body
};

// Splits a multipart/form-data body; `content_type` is the request's
// Content-Type, which carries the boundary. InvalidArgument for a missing
// boundary, a part without "Content-Disposition: form-data", a part whose
// headers do not end, or a body without its closing delimiter.
StatusOr<std::vector<FormPart>> ParseMultipart(std::string_view content_type, std::string_view body);

}  // namespace hamdb::http
