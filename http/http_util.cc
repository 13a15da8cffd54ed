#include "http/http_util.h"

#include <cctype>
#include <limits>

#include "core/binary_code.h"

namespace hamdb::http {

namespace {

// What each byte is in base64 text: a symbol's value (0..63; '-' and '_'
// too, the URL-safe alphabet), or one of these.
constexpr uint8_t kB64Bad = 0xFF, kB64Space = 0xFE, kB64Pad = 0xFD;
struct Base64Table {
  uint8_t v[256];
  constexpr Base64Table() : v() {
    for (int i = 0; i < 256; ++i) v[i] = kB64Bad;
    for (int i = 0; i < 26; ++i) {
      v['A' + i] = static_cast<uint8_t>(i);
      v['a' + i] = static_cast<uint8_t>(26 + i);
    }
    for (int i = 0; i < 10; ++i) v['0' + i] = static_cast<uint8_t>(52 + i);
    v['+'] = v['-'] = 62;
    v['/'] = v['_'] = 63;
    v[' '] = v['\n'] = v['\r'] = v['\t'] = kB64Space;
    v['='] = kB64Pad;
  }
};
constexpr Base64Table kBase64;

}  // namespace

bool PercentDecode(std::string_view in, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexDigitValue(in[i + 1]), lo = HexDigitValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

StatusOr<Target> ParseTarget(std::string_view target) {
  if (target.empty() || target[0] != '/') {
    return Status::InvalidArgument("request target must start with '/'");
  }
  Target t;
  const size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string_view::npos) next = path.size();
    if (next > pos) {
      std::string seg;
      if (!PercentDecode(path.substr(pos, next - pos), false, &seg)) {
        return Status::InvalidArgument("bad percent escape in the request path");
      }
      t.segments.push_back(std::move(seg));
    }
    pos = next + 1;
  }
  if (q != std::string_view::npos) {
    std::string_view query = target.substr(q + 1);
    size_t p = 0;
    while (p < query.size()) {
      size_t amp = query.find('&', p);
      if (amp == std::string_view::npos) amp = query.size();
      const std::string_view kv = query.substr(p, amp - p);
      if (!kv.empty()) {
        const size_t eq = kv.find('=');
        std::string key, value;
        if (!PercentDecode(kv.substr(0, eq), true, &key) ||
            (eq != std::string_view::npos && !PercentDecode(kv.substr(eq + 1), true, &value))) {
          return Status::InvalidArgument("bad percent escape in the query string");
        }
        t.query[key] = std::move(value);
      }
      p = amp + 1;
    }
  }
  return t;
}

bool Base64Decode(std::string_view in, std::vector<uint8_t>* out) {
  out->clear();
  if (in.substr(0, 5) == "data:") {
    const size_t comma = in.find(',');
    if (comma == std::string_view::npos) return false;
    in = in.substr(comma + 1);
  }
  out->resize(in.size() / 4 * 3 + 3);
  uint8_t* o = out->data();
  size_t n = 0;
  const auto* p = reinterpret_cast<const uint8_t*>(in.data());
  const auto* end = p + in.size();
  uint32_t acc = 0;
  int nbits = 0;
  size_t npad = 0, nsym = 0;
  while (p < end) {
    // Four symbols at a quantum's start: three bytes at once (the values
    // 0..63 are the only ones below 64).
    if (nbits == 0 && npad == 0 && end - p >= 4) {
      const uint32_t a = kBase64.v[p[0]], b = kBase64.v[p[1]], c = kBase64.v[p[2]], d = kBase64.v[p[3]];
      if ((a | b | c | d) < 64) {
        const uint32_t x = a << 18 | b << 12 | c << 6 | d;
        o[n] = static_cast<uint8_t>(x >> 16);
        o[n + 1] = static_cast<uint8_t>(x >> 8);
        o[n + 2] = static_cast<uint8_t>(x);
        n += 3;
        nsym += 4;
        p += 4;
        continue;
      }
    }
    const uint8_t v = kBase64.v[*p++];
    if (v == kB64Space) continue;
    if (v == kB64Pad) {
      ++npad;
      continue;
    }
    if (v == kB64Bad || npad > 0) return false;  // not base64, or data after padding
    ++nsym;
    acc = (acc << 6) | v;
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      o[n++] = static_cast<uint8_t>((acc >> nbits) & 0xFF);
    }
  }
  out->resize(n);
  if (npad > 2 || nsym % 4 == 1) return false;
  if (npad > 0 && (nsym + npad) % 4 != 0) return false;
  return true;
}

std::string Base64Encode(const uint8_t* data, size_t n) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = static_cast<uint32_t>(data[i]) << 16;
    if (i + 1 < n) v |= static_cast<uint32_t>(data[i + 1]) << 8;
    if (i + 2 < n) v |= data[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < n ? kAlphabet[v & 63] : '=');
  }
  return out;
}

bool JsonDepthWithin(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // skip the escaped character
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

bool ConstantTimeEquals(std::string_view presented, std::string_view expected) {
  // Always walk the expected secret's full length, so timing reveals neither
  // the position of the first difference nor a prefix match.
  unsigned diff = presented.size() == expected.size() ? 0u : 1u;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char p = i < presented.size() ? static_cast<unsigned char>(presented[i]) : 0u;
    diff |= p ^ static_cast<unsigned char>(expected[i]);
  }
  return diff == 0 && !expected.empty();
}

bool ParseUint64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

bool ParseInt64(std::string_view s, int64_t* out) {
  const bool neg = !s.empty() && s[0] == '-';
  uint64_t mag = 0;
  if (!ParseUint64(neg ? s.substr(1) : s, &mag)) return false;
  if (neg) {
    if (mag > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1) return false;
    *out = mag == static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1
               ? std::numeric_limits<int64_t>::min()
               : -static_cast<int64_t>(mag);
  } else {
    if (mag > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = static_cast<int64_t>(mag);
  }
  return true;
}

std::string MediaType(std::string_view content_type) {
  const size_t semi = content_type.find(';');
  std::string_view t = content_type.substr(0, semi);
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  std::string out(t);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view TrimSpace(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The parameters of a header value ("form-data; name=\"a\"; filename=b"):
// lower-cased keys, values with their quotes (and backslash escapes) removed.
std::map<std::string, std::string> HeaderParams(std::string_view value) {
  std::map<std::string, std::string> params;
  size_t pos = value.find(';');
  while (pos != std::string_view::npos) {
    value.remove_prefix(pos + 1);
    // A quoted value may hold ';'.
    size_t end = 0;
    bool quoted = false;
    for (; end < value.size(); ++end) {
      if (quoted && value[end] == '\\') {
        ++end;  // an escaped character, a quote or a backslash
        continue;
      }
      if (value[end] == '"') quoted = !quoted;
      if (value[end] == ';' && !quoted) break;
    }
    const std::string_view item = TrimSpace(value.substr(0, end));
    const size_t eq = item.find('=');
    if (eq != std::string_view::npos) {
      std::string_view v = TrimSpace(item.substr(eq + 1));
      std::string out;
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
        v = v.substr(1, v.size() - 2);
        for (size_t i = 0; i < v.size(); ++i) {
          if (v[i] == '\\' && i + 1 < v.size()) ++i;
          out += v[i];
        }
      } else {
        out = std::string(v);
      }
      params[Lower(TrimSpace(item.substr(0, eq)))] = std::move(out);
    }
    pos = end < value.size() ? end : std::string_view::npos;
  }
  return params;
}

}  // namespace

StatusOr<std::vector<FormPart>> ParseMultipart(std::string_view content_type, std::string_view body) {
  const auto ct = HeaderParams(content_type);
  auto b = ct.find("boundary");
  if (b == ct.end() || b->second.empty() || b->second.size() > 70) {
    return Status::InvalidArgument("multipart/form-data needs a boundary of 1 to 70 characters");
  }
  const std::string delim = "--" + b->second;
  // The first delimiter opens the body or follows a preamble line.
  size_t pos = 0;
  if (body.compare(0, delim.size(), delim) != 0) {
    pos = body.find("\r\n" + delim);
    if (pos == std::string_view::npos) return Status::InvalidArgument("multipart body has no boundary line");
    pos += 2;
  }
  const std::string next = "\r\n" + delim;
  std::vector<FormPart> parts;
  for (;;) {
    pos += delim.size();
    if (body.compare(pos, 2, "--") == 0) return parts;  // the closing delimiter
    while (pos < body.size() && (body[pos] == ' ' || body[pos] == '\t')) ++pos;
    if (body.compare(pos, 2, "\r\n") != 0) {
      return Status::InvalidArgument("multipart boundary line is not followed by CRLF");
    }
    pos += 2;
    // The headers end with a blank line before the next delimiter.
    const size_t part_end = body.find(next, pos);
    size_t head_end = body.find("\r\n\r\n", pos);
    if (head_end != std::string_view::npos && part_end != std::string_view::npos && head_end > part_end) {
      head_end = std::string_view::npos;
    }
    const size_t empty_head = body.compare(pos, 2, "\r\n") == 0 ? pos : std::string_view::npos;
    if (head_end == std::string_view::npos && empty_head == std::string_view::npos) {
      return Status::InvalidArgument("multipart part " + std::to_string(parts.size()) + ": headers do not end");
    }
    FormPart part;
    bool form_data = false;
    const size_t headers_stop = empty_head != std::string_view::npos ? pos : head_end;
    std::string_view headers = body.substr(pos, headers_stop - pos);
    while (!headers.empty()) {
      const size_t eol = headers.find("\r\n");
      const std::string_view line = headers.substr(0, eol);
      headers.remove_prefix(eol == std::string_view::npos ? headers.size() : eol + 2);
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      const std::string key = Lower(TrimSpace(line.substr(0, colon)));
      const std::string_view value = TrimSpace(line.substr(colon + 1));
      if (key == "content-disposition") {
        form_data = Lower(TrimSpace(value.substr(0, value.find(';')))) == "form-data";
        const auto p = HeaderParams(value);
        if (auto it = p.find("name"); it != p.end()) part.name = it->second;
        if (auto it = p.find("filename"); it != p.end()) part.filename = it->second;
      } else if (key == "content-type") {
        part.content_type = std::string(value);
      }
    }
    if (!form_data) {
      return Status::InvalidArgument("multipart part " + std::to_string(parts.size()) +
                                     " has no 'Content-Disposition: form-data' header");
    }
    const size_t data_begin = headers_stop + (empty_head != std::string_view::npos ? 2 : 4);
    const size_t data_end = body.find(next, data_begin);
    if (data_end == std::string_view::npos) {
      return Status::InvalidArgument("multipart body has no closing boundary");
    }
    part.data = body.substr(data_begin, data_end - data_begin);
    parts.push_back(std::move(part));
    pos = data_end + 2;
  }
}

}  // namespace hamdb::http
