#include "encoder/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>

namespace hamdb {
namespace {

namespace fs = std::filesystem;

StatusOr<std::vector<uint8_t>> ReadGzip(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return Status::NotFound(path + ": no such file");
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return Status::IOError(path + ": cannot open");
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  for (;;) {
    const int n = gzread(f, buf, sizeof(buf));
    if (n < 0) {
      int errnum = 0;
      std::string msg = gzerror(f, &errnum);
      gzclose(f);
      return Status::Corruption(path + ": " + msg);
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  gzclose(f);
  return out;
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

bool IsImageFile(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

}  // namespace

const std::vector<std::string>& FashionMnistClassNames() {
  static const std::vector<std::string> kNames = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                                  "sandal",  "shirt",   "sneaker",  "bag",   "ankle-boot"};
  return kNames;
}

StatusOr<LabeledImages> LoadFashionMnist(const std::string& dir, const std::string& split, size_t limit) {
  std::string prefix;
  if (split == "train") {
    prefix = "train";
  } else if (split == "test") {
    prefix = "t10k";
  } else {
    return Status::InvalidArgument("split must be train or test, got '" + split + "'");
  }
  const std::string ipath = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string lpath = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
  HAMDB_ASSIGN_OR_RETURN(std::vector<uint8_t> ibytes, ReadGzip(ipath));
  HAMDB_ASSIGN_OR_RETURN(std::vector<uint8_t> lbytes, ReadGzip(lpath));
  if (ibytes.size() < 16 || BigEndian32(ibytes.data()) != 0x00000803) {
    return Status::Corruption(ipath + ": not an IDX3 ubyte file");
  }
  if (lbytes.size() < 8 || BigEndian32(lbytes.data()) != 0x00000801) {
    return Status::Corruption(lpath + ": not an IDX1 ubyte file");
  }
  const size_t n = BigEndian32(ibytes.data() + 4);
  const int rows = static_cast<int>(BigEndian32(ibytes.data() + 8));
  const int cols = static_cast<int>(BigEndian32(ibytes.data() + 12));
  const size_t pix = static_cast<size_t>(rows) * cols;
  if (rows <= 0 || cols <= 0 || ibytes.size() != 16 + n * pix) {
    return Status::Corruption(ipath + ": size does not match its header");
  }
  if (BigEndian32(lbytes.data() + 4) != n || lbytes.size() != 8 + n) {
    return Status::Corruption(lpath + ": label count does not match the images");
  }
  const size_t count = limit == 0 ? n : std::min(n, limit);
  LabeledImages out;
  out.class_names = FashionMnistClassNames();
  out.images.resize(count);
  out.labels.resize(count);
  for (size_t i = 0; i < count; ++i) {
    Image& im = out.images[i];
    im.width = cols;
    im.height = rows;
    im.channels = 1;
    im.pixels.assign(ibytes.begin() + 16 + i * pix, ibytes.begin() + 16 + (i + 1) * pix);
    const int label = lbytes[8 + i];
    if (label >= static_cast<int>(out.class_names.size())) {
      return Status::Corruption(lpath + ": label out of range");
    }
    out.labels[i] = label;
  }
  return out;
}

StatusOr<LabeledImages> LoadSklearnDigits(const std::string& path, int size, size_t limit) {
  if (size < 1) return Status::InvalidArgument("size must be >= 1");
  HAMDB_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadGzip(path));
  LabeledImages out;
  for (int d = 0; d < 10; ++d) out.class_names.push_back(std::to_string(d));
  size_t pos = 0;
  int line = 0;
  while (pos < bytes.size() && (limit == 0 || out.size() < limit)) {
    ++line;
    std::vector<int> values;
    int v = 0;
    bool have = false;
    for (; pos < bytes.size() && bytes[pos] != '\n'; ++pos) {
      const uint8_t ch = bytes[pos];
      if (ch >= '0' && ch <= '9') {
        v = v * 10 + (ch - '0');
        have = true;
      } else if (ch == ',') {
        values.push_back(have ? v : -1);
        v = 0;
        have = false;
      } else if (ch != '\r' && ch != ' ') {
        return Status::Corruption(path + ": unexpected character on line " + std::to_string(line));
      }
    }
    ++pos;
    if (have) values.push_back(v);
    if (values.empty()) continue;
    if (values.size() != 65) {
      return Status::Corruption(path + ": line " + std::to_string(line) + " has " +
                                std::to_string(values.size()) + " fields, expected 65");
    }
    Image im;
    im.width = im.height = 8;
    im.channels = 1;
    for (int i = 0; i < 64; ++i) {
      if (values[i] < 0 || values[i] > 16) return Status::Corruption(path + ": value out of 0..16");
      im.pixels.push_back(static_cast<uint8_t>((values[i] * 255 + 8) / 16));
    }
    if (values[64] < 0 || values[64] > 9) return Status::Corruption(path + ": label out of 0..9");
    out.images.push_back(ResizeBilinear(im, size, size));
    out.labels.push_back(values[64]);
  }
  if (out.images.empty()) return Status::Corruption(path + ": no rows");
  return out;
}

StatusOr<ImageFolderListing> ListImageFolder(const std::string& dir, size_t limit_per_class) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::NotFound(dir + ": not a directory");
  ImageFolderListing out;
  std::vector<fs::path> classes;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory()) classes.push_back(e.path());
  }
  if (ec) return Status::IOError(dir + ": " + ec.message());
  std::sort(classes.begin(), classes.end());
  for (const fs::path& cdir : classes) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(cdir, ec)) {
      if (e.is_regular_file() && IsImageFile(e.path())) files.push_back(e.path());
    }
    if (ec) return Status::IOError(cdir.string() + ": " + ec.message());
    if (files.empty()) continue;
    std::sort(files.begin(), files.end());
    if (limit_per_class > 0 && files.size() > limit_per_class) files.resize(limit_per_class);
    const int label = static_cast<int>(out.class_names.size());
    out.class_names.push_back(cdir.filename().string());
    for (const auto& f : files) {
      out.paths.push_back(f.string());
      out.labels.push_back(label);
    }
  }
  if (out.paths.empty()) {
    return Status::InvalidArgument(dir + ": no class sub-folders with .png/.jpg images");
  }
  return out;
}

StatusOr<LabeledImages> LoadImageFolder(const std::string& dir, size_t limit_per_class) {
  HAMDB_ASSIGN_OR_RETURN(ImageFolderListing listing, ListImageFolder(dir, limit_per_class));
  LabeledImages out;
  out.class_names = std::move(listing.class_names);
  for (size_t i = 0; i < listing.paths.size(); ++i) {
    auto img = ReadImageFile(listing.paths[i]);
    if (!img.ok()) {
      ++out.skipped;
      continue;
    }
    out.images.push_back(std::move(img).value());
    out.labels.push_back(listing.labels[i]);
    out.paths.push_back(listing.paths[i]);
  }
  if (out.images.empty()) return Status::InvalidArgument(dir + ": no image could be decoded");
  return out;
}

}  // namespace hamdb
