#include "tools/codes_io.h"

#include <cstring>
#include <regex>

#include "core/binary_code.h"
#include "core/score.h"

namespace hamdb::tools {

size_t CodeChunk::size() const { return code_bytes == 0 ? 0 : codes.size() / code_bytes; }

namespace {

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

class HexLineReader : public CodeReader {
 public:
  HexLineReader(std::ifstream in, std::string path, int bits)
      : in_(std::move(in)), path_(std::move(path)), bits_(bits) {}
  uint64_t total() const override { return 0; }

  Status Next(size_t max_items, CodeChunk* chunk) override {
    chunk->ids.clear();
    chunk->codes.clear();
    chunk->code_bytes = code_bytes(bits_);
    std::string line;
    size_t n = 0;
    while (n < max_items && std::getline(in_, line)) {
      ++line_no_;
      line = Trim(line);
      if (line.empty() || line[0] == '#') continue;
      const size_t sep = line.find_first_of(" \t");
      std::string code_text = line;
      std::optional<uint64_t> id;
      if (sep != std::string::npos) {
        const std::string id_text = line.substr(0, sep);
        code_text = Trim(line.substr(sep));
        char* end = nullptr;
        errno = 0;
        const unsigned long long v = std::strtoull(id_text.c_str(), &end, 10);
        if (errno != 0 || *end != '\0' || id_text.empty() || id_text[0] == '-') {
          return Status::InvalidArgument(Where() + "bad id '" + id_text + "'");
        }
        id = v;
      }
      auto code = ParseCode(code_text, bits_);
      if (!code.ok()) return code.status().WithContext(path_ + ":" + std::to_string(line_no_));
      if (n == 0) has_ids_ = id.has_value();
      if (id.has_value() != has_ids_) {
        return Status::InvalidArgument(Where() + "either every line has an id or none does");
      }
      if (id) chunk->ids.push_back(*id);
      chunk->codes.insert(chunk->codes.end(), code->begin(), code->end());
      ++n;
    }
    if (in_.bad()) return Status::IOError("reading '" + path_ + "' failed");
    return Status::OK();
  }

 private:
  std::string Where() const { return path_ + ":" + std::to_string(line_no_) + ": "; }
  std::ifstream in_;
  std::string path_;
  int bits_;
  uint64_t line_no_ = 0;
  bool has_ids_ = false;
};

class NpyReader : public CodeReader {
 public:
  uint64_t total() const override { return rows_; }

  static StatusOr<std::unique_ptr<NpyReader>> Make(const std::string& path, int bits,
                                                    const std::string& ids_path) {
    auto r = std::unique_ptr<NpyReader>(new NpyReader);
    r->bits_ = bits;
    r->path_ = path;
    r->in_.open(path, std::ios::binary);
    if (!r->in_) return Status::NotFound("cannot open '" + path + "'");
    HAMDB_ASSIGN_OR_RETURN(NpyHeader h, ReadNpyHeader(r->in_, path));
    if (h.dtype != "|u1" && h.dtype != "<u1" && h.dtype != "|b1") {
      return Status::InvalidArgument("'" + path + "' has dtype " + h.dtype +
                                     "; packed codes must be uint8");
    }
    if (h.fortran_order) return Status::InvalidArgument("'" + path + "' must be C-ordered");
    if (h.shape.size() != 2 || h.shape[1] != code_bytes(bits)) {
      std::string shape;
      for (auto d : h.shape) shape += std::to_string(d) + ",";
      return Status::InvalidArgument("'" + path + "' has shape (" + shape + ") but " +
                                     std::to_string(bits) + "-bit codes need (n, " +
                                     std::to_string(code_bytes(bits)) + ")");
    }
    r->rows_ = h.shape[0];
    if (!ids_path.empty()) {
      r->ids_in_.open(ids_path, std::ios::binary);
      if (!r->ids_in_) return Status::NotFound("cannot open '" + ids_path + "'");
      HAMDB_ASSIGN_OR_RETURN(NpyHeader ih, ReadNpyHeader(r->ids_in_, ids_path));
      static const std::regex kInt("[<|][ui][1248]");
      if (!std::regex_match(ih.dtype, kInt) || ih.shape.size() != 1 || ih.shape[0] != r->rows_) {
        return Status::InvalidArgument("'" + ids_path + "' must be a 1-D integer array of " +
                                       std::to_string(r->rows_) + " ids");
      }
      r->id_signed_ = ih.dtype[1] == 'i';
      r->id_width_ = ih.dtype[2] - '0';
      r->has_ids_ = true;
    }
    return r;
  }

  Status Next(size_t max_items, CodeChunk* chunk) override {
    const size_t nb = code_bytes(bits_);
    const uint64_t n = std::min<uint64_t>(max_items, rows_ - read_);
    chunk->code_bytes = nb;
    chunk->codes.resize(n * nb);
    chunk->ids.clear();
    if (n == 0) return Status::OK();
    if (!in_.read(reinterpret_cast<char*>(chunk->codes.data()), n * nb)) {
      return Status::InvalidArgument("'" + path_ + "' is truncated at row " + std::to_string(read_));
    }
    for (uint64_t i = 0; i < n; ++i) {
      Status s = CheckPadding(chunk->codes.data() + i * nb, bits_);
      if (!s.ok()) return s.WithContext(path_ + " row " + std::to_string(read_ + i));
    }
    if (has_ids_) {
      std::vector<uint8_t> raw(n * id_width_);
      if (!ids_in_.read(reinterpret_cast<char*>(raw.data()), raw.size())) {
        return Status::InvalidArgument("ids file is truncated");
      }
      chunk->ids.resize(n);
      for (uint64_t i = 0; i < n; ++i) {
        uint64_t v = 0;
        std::memcpy(&v, raw.data() + i * id_width_, id_width_);
        if (id_signed_ && (v >> (8 * id_width_ - 1)) & 1) {
          return Status::InvalidArgument("id at row " + std::to_string(read_ + i) + " is negative");
        }
        chunk->ids[i] = v;
      }
    }
    read_ += n;
    return Status::OK();
  }

 private:
  std::ifstream in_, ids_in_;
  std::string path_;
  int bits_ = 0;
  uint64_t rows_ = 0, read_ = 0;
  bool has_ids_ = false, id_signed_ = false;
  int id_width_ = 8;
};

}  // namespace

StatusOr<NpyHeader> ReadNpyHeader(std::ifstream& in, const std::string& path) {
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    return Status::InvalidArgument("'" + path + "' is not a .npy file");
  }
  const int major = static_cast<uint8_t>(magic[6]);
  uint32_t hlen = 0;
  if (major == 1) {
    uint8_t b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) return Status::InvalidArgument("truncated npy");
    hlen = b[0] | (b[1] << 8);
  } else if (major == 2 || major == 3) {
    if (!in.read(reinterpret_cast<char*>(&hlen), 4)) return Status::InvalidArgument("truncated npy");
  } else {
    return Status::NotSupported("'" + path + "': npy version " + std::to_string(major));
  }
  if (hlen > (1u << 20)) return Status::InvalidArgument("'" + path + "': npy header too large");
  std::string header(hlen, '\0');
  if (!in.read(header.data(), hlen)) return Status::InvalidArgument("truncated npy header");
  NpyHeader h;
  h.data_offset = static_cast<uint64_t>(in.tellg());
  std::smatch m;
  static const std::regex kDescr("'descr'\\s*:\\s*'([^']*)'");
  static const std::regex kFortran("'fortran_order'\\s*:\\s*(True|False)");
  static const std::regex kShape("'shape'\\s*:\\s*\\(([^)]*)\\)");
  if (!std::regex_search(header, m, kDescr)) return Status::InvalidArgument("npy header: no descr");
  h.dtype = m[1];
  if (std::regex_search(header, m, kFortran)) h.fortran_order = m[1] == "True";
  if (!std::regex_search(header, m, kShape)) return Status::InvalidArgument("npy header: no shape");
  const std::string dims = m[1];
  static const std::regex kNum("\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), kNum); it != std::sregex_iterator();
       ++it) {
    h.shape.push_back(std::stoull(it->str()));
  }
  return h;
}

StatusOr<std::vector<float>> ReadNpyScores(const std::string& path, uint64_t expected) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open '" + path + "'");
  HAMDB_ASSIGN_OR_RETURN(NpyHeader h, ReadNpyHeader(in, path));
  const bool f4 = h.dtype == "<f4", f8 = h.dtype == "<f8";
  if ((!f4 && !f8) || h.shape.size() != 1) {
    std::string shape;
    for (uint64_t d : h.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    return Status::InvalidArgument("'" + path + "' must be a 1-D float32 or float64 array of "
                                   "scores, got dtype " + h.dtype + " and shape (" + shape + ")");
  }
  const uint64_t n = h.shape[0];
  if (expected != 0 && n != expected) {
    return Status::InvalidArgument("'" + path + "' has " + std::to_string(n) +
                                   " scores, but there are " + std::to_string(expected) + " items");
  }
  std::vector<float> out(n);
  if (f4) {
    in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(n * 4));
  } else {
    std::vector<double> wide(n);
    in.read(reinterpret_cast<char*>(wide.data()), static_cast<std::streamsize>(n * 8));
    for (uint64_t i = 0; i < n; ++i) {
      HAMDB_RETURN_IF_ERROR(CheckScore(wide[i], "'" + path + "' score " + std::to_string(i)));
      out[i] = static_cast<float>(wide[i]);
    }
  }
  if (!in) return Status::InvalidArgument("'" + path + "' is shorter than its header says");
  for (uint64_t i = 0; i < n; ++i) {
    HAMDB_RETURN_IF_ERROR(CheckScore(out[i], "'" + path + "' score " + std::to_string(i)));
  }
  return out;
}

Status WriteNpyU8(const std::string& path, const uint8_t* data, uint64_t rows, uint64_t cols) {
  std::ofstream out(path, std::ios::binary);
  if (!out) return Status::IOError("cannot create '" + path + "'");
  std::string dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (" +
                     std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  // Pad so that magic(6)+version(2)+len(2)+header is a multiple of 64, ending in '\n'.
  while ((10 + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  const uint16_t len = static_cast<uint16_t>(dict.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(&len), 2);
  out.write(dict.data(), dict.size());
  out.write(reinterpret_cast<const char*>(data), rows * cols);
  if (!out) return Status::IOError("writing '" + path + "' failed");
  return Status::OK();
}

StatusOr<std::unique_ptr<CodeReader>> OpenCodeReader(const std::string& path,
                                                     const std::string& format, int bits,
                                                     const std::string& ids_path) {
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(bits));
  std::string fmt = format;
  if (fmt == "auto") {
    fmt = path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0 ? "npy" : "hex";
  }
  if (fmt == "npy") {
    HAMDB_ASSIGN_OR_RETURN(auto r, NpyReader::Make(path, bits, ids_path));
    return std::unique_ptr<CodeReader>(std::move(r));
  }
  if (fmt != "hex") return Status::InvalidArgument("unknown format '" + format + "'");
  if (!ids_path.empty()) {
    return Status::InvalidArgument("--ids is for .npy input; hex lines carry ids as 'ID CODE'");
  }
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot open '" + path + "'");
  return std::unique_ptr<CodeReader>(new HexLineReader(std::move(in), path, bits));
}

}  // namespace hamdb::tools
