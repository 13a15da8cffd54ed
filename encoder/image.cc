#include "encoder/image.h"

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>

namespace hamdb {
namespace {

// ---------------------------------------------------------------- JPEG
// libjpeg reports fatal errors through error_exit, which must not return;
// we longjmp back to DecodeJpeg and turn the message into a Status.
struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void JpegErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings (e.g. premature end of data) are counted, as libjpeg's default
// does, but not printed.
void JpegSilence(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0) cinfo->err->num_warnings++;
}

// Points libjpeg's errors at `err`: fatal ones longjmp to err->jump (which
// the caller sets next, in its own frame), warnings are only counted.
jpeg_error_mgr* InstallJpegErrors(JpegErrorManager* err) {
  jpeg_error_mgr* pub = jpeg_std_error(&err->pub);
  err->pub.error_exit = JpegErrorExit;
  err->pub.emit_message = JpegSilence;
  err->message[0] = '\0';
  return pub;
}

// Everything that must survive the longjmp lives outside the setjmp frame.
struct JpegState {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  Image image;
  bool created = false;
};

Status DecodeJpeg(const uint8_t* data, size_t size, size_t max_pixels, JpegState* s) {
  s->cinfo.err = InstallJpegErrors(&s->err);
  if (setjmp(s->err.jump)) {
    return Status::InvalidArgument(std::string("corrupt JPEG: ") + s->err.message);
  }
  jpeg_create_decompress(&s->cinfo);
  s->created = true;
  jpeg_mem_src(&s->cinfo, const_cast<unsigned char*>(data), static_cast<unsigned long>(size));
  if (jpeg_read_header(&s->cinfo, TRUE) != JPEG_HEADER_OK) {
    return Status::InvalidArgument("corrupt JPEG: no image header");
  }
  const J_COLOR_SPACE cs = s->cinfo.jpeg_color_space;
  s->cinfo.out_color_space = (cs == JCS_GRAYSCALE) ? JCS_GRAYSCALE : JCS_RGB;
  if (static_cast<size_t>(s->cinfo.image_width) * s->cinfo.image_height > max_pixels) {
    return Status::InvalidArgument("JPEG too large: " + std::to_string(s->cinfo.image_width) + "x" +
                                   std::to_string(s->cinfo.image_height));
  }
  jpeg_start_decompress(&s->cinfo);
  const int channels = s->cinfo.output_components;
  if (channels != 1 && channels != 3) {
    return Status::InvalidArgument("unsupported JPEG colour space");
  }
  s->image.width = static_cast<int>(s->cinfo.output_width);
  s->image.height = static_cast<int>(s->cinfo.output_height);
  s->image.channels = channels;
  s->image.pixels.resize(static_cast<size_t>(s->image.width) * s->image.height * channels);
  const size_t stride = static_cast<size_t>(s->image.width) * channels;
  while (s->cinfo.output_scanline < s->cinfo.output_height) {
    JSAMPROW row = s->image.pixels.data() + s->cinfo.output_scanline * stride;
    jpeg_read_scanlines(&s->cinfo, &row, 1);
  }
  // libjpeg pads a truncated stream with grey and only warns; a truncated
  // file is an error for us.
  if (s->err.pub.num_warnings > 0) {
    char buf[JMSG_LENGTH_MAX];
    (*s->err.pub.format_message)(reinterpret_cast<j_common_ptr>(&s->cinfo), buf);
    return Status::InvalidArgument(std::string("corrupt or truncated JPEG: ") + buf);
  }
  jpeg_finish_decompress(&s->cinfo);
  return Status::OK();
}

StatusOr<Image> DecodeJpegImage(const uint8_t* data, size_t size, size_t max_pixels) {
  auto s = std::make_unique<JpegState>();
  Status st = DecodeJpeg(data, size, max_pixels, s.get());
  if (s->created) jpeg_destroy_decompress(&s->cinfo);
  if (!st.ok()) return st;
  return std::move(s->image);
}

struct JpegWriteState {
  jpeg_compress_struct cinfo;
  JpegErrorManager err;
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  bool created = false;
};

Status EncodeJpegInto(const Image& image, int quality, JpegWriteState* s) {
  s->cinfo.err = InstallJpegErrors(&s->err);
  if (setjmp(s->err.jump)) return Status::Internal(std::string("JPEG encoding failed: ") + s->err.message);
  jpeg_create_compress(&s->cinfo);
  s->created = true;
  jpeg_mem_dest(&s->cinfo, &s->buf, &s->size);
  s->cinfo.image_width = static_cast<JDIMENSION>(image.width);
  s->cinfo.image_height = static_cast<JDIMENSION>(image.height);
  s->cinfo.input_components = image.channels;
  s->cinfo.in_color_space = image.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&s->cinfo);
  jpeg_set_quality(&s->cinfo, quality, TRUE);
  jpeg_start_compress(&s->cinfo, TRUE);
  const size_t stride = static_cast<size_t>(image.width) * image.channels;
  while (s->cinfo.next_scanline < s->cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(image.pixels.data() + s->cinfo.next_scanline * stride);
    jpeg_write_scanlines(&s->cinfo, &row, 1);
  }
  jpeg_finish_compress(&s->cinfo);
  return Status::OK();
}

// ---------------------------------------------------------------- PNG
struct PngReader {
  const uint8_t* data;
  size_t size;
  size_t pos;
};

struct PngError {
  char message[256];
};

void PngErrorFn(png_structp png, png_const_charp msg) {
  auto* err = static_cast<PngError*>(png_get_error_ptr(png));
  std::snprintf(err->message, sizeof(err->message), "%s", msg);
  png_longjmp(png, 1);
}

void PngWarningFn(png_structp, png_const_charp) {}

void PngReadFn(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (r->size - r->pos < n) png_error(png, "truncated PNG");
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

struct PngState {
  PngReader reader{};
  PngError err{};
  png_structp png = nullptr;
  png_infop info = nullptr;
  Image image;
  std::vector<png_bytep> rows;
};

Status DecodePngInto(size_t max_pixels, PngState* s) {
  s->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &s->err, PngErrorFn, PngWarningFn);
  if (s->png == nullptr) return Status::ResourceExhausted("png_create_read_struct failed");
  s->info = png_create_info_struct(s->png);
  if (s->info == nullptr) return Status::ResourceExhausted("png_create_info_struct failed");
  if (setjmp(png_jmpbuf(s->png))) {
    return Status::InvalidArgument(std::string("corrupt PNG: ") + s->err.message);
  }
  png_set_read_fn(s->png, &s->reader, PngReadFn);
  png_read_info(s->png, s->info);
  const png_uint_32 w = png_get_image_width(s->png, s->info);
  const png_uint_32 h = png_get_image_height(s->png, s->info);
  if (static_cast<size_t>(w) * h > max_pixels) {
    return Status::InvalidArgument("PNG too large: " + std::to_string(w) + "x" + std::to_string(h));
  }
  const int color = png_get_color_type(s->png, s->info);
  const int depth = png_get_bit_depth(s->png, s->info);
  if (depth == 16) png_set_strip_16(s->png);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(s->png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(s->png);
  if (png_get_valid(s->png, s->info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(s->png);
  if (color & PNG_COLOR_MASK_ALPHA || png_get_valid(s->png, s->info, PNG_INFO_tRNS)) {
    png_set_strip_alpha(s->png);
  }
  png_set_interlace_handling(s->png);
  png_read_update_info(s->png, s->info);
  const int channels = png_get_channels(s->png, s->info);
  if (channels != 1 && channels != 3) {
    return Status::InvalidArgument("unsupported PNG channel count " + std::to_string(channels));
  }
  s->image.width = static_cast<int>(w);
  s->image.height = static_cast<int>(h);
  s->image.channels = channels;
  const size_t stride = static_cast<size_t>(w) * channels;
  if (png_get_rowbytes(s->png, s->info) != stride) {
    return Status::InvalidArgument("unsupported PNG layout");
  }
  s->image.pixels.resize(stride * h);
  s->rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) s->rows[y] = s->image.pixels.data() + y * stride;
  png_read_image(s->png, s->rows.data());
  png_read_end(s->png, nullptr);
  return Status::OK();
}

StatusOr<Image> DecodePngImage(const uint8_t* data, size_t size, size_t max_pixels) {
  auto s = std::make_unique<PngState>();
  s->reader = PngReader{data, size, 0};
  Status st = DecodePngInto(max_pixels, s.get());
  if (s->png != nullptr) png_destroy_read_struct(&s->png, s->info ? &s->info : nullptr, nullptr);
  if (!st.ok()) return st;
  return std::move(s->image);
}

void PngWriteFn(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + n);
}
void PngFlushFn(png_structp) {}

struct PngWriteState {
  PngError err{};
  png_structp png = nullptr;
  png_infop info = nullptr;
  std::vector<uint8_t> out;
  std::vector<png_bytep> rows;
};

Status EncodePngInto(const Image& image, PngWriteState* s) {
  s->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &s->err, PngErrorFn, PngWarningFn);
  if (s->png == nullptr) return Status::ResourceExhausted("png_create_write_struct failed");
  s->info = png_create_info_struct(s->png);
  if (s->info == nullptr) return Status::ResourceExhausted("png_create_info_struct failed");
  if (setjmp(png_jmpbuf(s->png))) {
    return Status::Internal(std::string("PNG encoding failed: ") + s->err.message);
  }
  png_set_write_fn(s->png, &s->out, PngWriteFn, PngFlushFn);
  png_set_IHDR(s->png, s->info, image.width, image.height, 8,
               image.channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  const size_t stride = static_cast<size_t>(image.width) * image.channels;
  s->rows.resize(image.height);
  for (int y = 0; y < image.height; ++y) {
    s->rows[y] = const_cast<png_bytep>(image.pixels.data() + y * stride);
  }
  png_set_rows(s->png, s->info, s->rows.data());
  png_write_png(s->png, s->info, PNG_TRANSFORM_IDENTITY, nullptr);
  return Status::OK();
}

bool ValidImage(const Image& image) {
  return image.width > 0 && image.height > 0 && (image.channels == 1 || image.channels == 3) &&
         image.pixels.size() == static_cast<size_t>(image.width) * image.height * image.channels;
}

}  // namespace

ImageFormat DetectImageFormat(const uint8_t* data, size_t size) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return ImageFormat::kPng;
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return ImageFormat::kJpeg;
  return ImageFormat::kUnknown;
}

StatusOr<Image> DecodeImage(const uint8_t* data, size_t size, size_t max_pixels) {
  if (data == nullptr || size == 0) return Status::InvalidArgument("empty image data");
  switch (DetectImageFormat(data, size)) {
    case ImageFormat::kJpeg:
      return DecodeJpegImage(data, size, max_pixels);
    case ImageFormat::kPng:
      return DecodePngImage(data, size, max_pixels);
    case ImageFormat::kUnknown:
      break;
  }
  return Status::InvalidArgument("unsupported image format (not JPEG or PNG)");
}

StatusOr<Image> ReadImageFile(const std::string& path, size_t max_pixels) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return Status::NotFound(path + ": no such file");
    return Status::IOError(path + ": cannot open file");
  }
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Status::IOError(path + ": read failed");
  auto img = DecodeImage(bytes.data(), bytes.size(), max_pixels);
  if (!img.ok()) return img.status().WithContext(path);
  return img;
}

StatusOr<std::vector<uint8_t>> EncodePng(const Image& image) {
  if (!ValidImage(image)) return Status::InvalidArgument("EncodePng: invalid image");
  auto s = std::make_unique<PngWriteState>();
  Status st = EncodePngInto(image, s.get());
  if (s->png != nullptr) png_destroy_write_struct(&s->png, s->info ? &s->info : nullptr);
  if (!st.ok()) return st;
  return std::move(s->out);
}

StatusOr<std::vector<uint8_t>> EncodeJpeg(const Image& image, int quality) {
  if (!ValidImage(image)) return Status::InvalidArgument("EncodeJpeg: invalid image");
  if (quality < 1 || quality > 100) return Status::InvalidArgument("EncodeJpeg: quality must be 1..100");
  auto s = std::make_unique<JpegWriteState>();
  Status st = EncodeJpegInto(image, quality, s.get());
  std::vector<uint8_t> out;
  if (st.ok()) out.assign(s->buf, s->buf + s->size);
  if (s->created) jpeg_destroy_compress(&s->cinfo);
  std::free(s->buf);
  if (!st.ok()) return st;
  return out;
}

Status WritePngFile(const Image& image, const std::string& path) {
  HAMDB_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, EncodePng(image));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IOError(path + ": cannot create file");
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return Status::IOError(path + ": write failed");
  return Status::OK();
}

Image ConvertChannels(const Image& image, int channels) {
  if (image.channels == channels || image.empty()) return image;
  Image out;
  out.width = image.width;
  out.height = image.height;
  out.channels = channels;
  const size_t n = static_cast<size_t>(image.width) * image.height;
  out.pixels.resize(n * channels);
  if (image.channels == 1 && channels == 3) {
    for (size_t i = 0; i < n; ++i) {
      out.pixels[3 * i] = out.pixels[3 * i + 1] = out.pixels[3 * i + 2] = image.pixels[i];
    }
  } else if (image.channels == 3 && channels == 1) {
    for (size_t i = 0; i < n; ++i) {
      const float y = 0.299f * image.pixels[3 * i] + 0.587f * image.pixels[3 * i + 1] +
                      0.114f * image.pixels[3 * i + 2];
      out.pixels[i] = static_cast<uint8_t>(std::min(255.f, std::lround(y) * 1.f));
    }
  } else {
    return Image{};
  }
  return out;
}

Image ResizeBilinear(const Image& image, int width, int height) {
  if (image.empty() || width <= 0 || height <= 0) return Image{};
  if (image.width == width && image.height == height) return image;
  Image out;
  out.width = width;
  out.height = height;
  out.channels = image.channels;
  out.pixels.resize(static_cast<size_t>(width) * height * image.channels);
  const int c = image.channels;
  const float sx = static_cast<float>(image.width) / width;
  const float sy = static_cast<float>(image.height) / height;
  for (int y = 0; y < height; ++y) {
    float fy = (y + 0.5f) * sy - 0.5f;
    fy = std::max(0.f, std::min(fy, static_cast<float>(image.height - 1)));
    const int y0 = static_cast<int>(fy);
    const int y1 = std::min(y0 + 1, image.height - 1);
    const float wy = fy - y0;
    for (int x = 0; x < width; ++x) {
      float fx = (x + 0.5f) * sx - 0.5f;
      fx = std::max(0.f, std::min(fx, static_cast<float>(image.width - 1)));
      const int x0 = static_cast<int>(fx);
      const int x1 = std::min(x0 + 1, image.width - 1);
      const float wx = fx - x0;
      for (int k = 0; k < c; ++k) {
        auto px = [&](int yy, int xx) {
          return static_cast<float>(image.pixels[(static_cast<size_t>(yy) * image.width + xx) * c + k]);
        };
        const float top = px(y0, x0) * (1 - wx) + px(y0, x1) * wx;
        const float bot = px(y1, x0) * (1 - wx) + px(y1, x1) * wx;
        const float v = top * (1 - wy) + bot * wy;
        out.pixels[(static_cast<size_t>(y) * width + x) * c + k] =
            static_cast<uint8_t>(std::min(255.f, std::max(0.f, std::round(v))));
      }
    }
  }
  return out;
}

Image CenterCrop(const Image& image, int width, int height) {
  if (image.empty() || width <= 0 || height <= 0 || width > image.width || height > image.height) {
    return Image{};
  }
  if (width == image.width && height == image.height) return image;
  Image out;
  out.width = width;
  out.height = height;
  out.channels = image.channels;
  const int x0 = (image.width - width) / 2;
  const int y0 = (image.height - height) / 2;
  const size_t row = static_cast<size_t>(width) * image.channels;
  out.pixels.resize(row * height);
  for (int y = 0; y < height; ++y) {
    const uint8_t* src =
        image.pixels.data() + ((static_cast<size_t>(y0 + y) * image.width) + x0) * image.channels;
    std::memcpy(out.pixels.data() + y * row, src, row);
  }
  return out;
}

namespace {

// Averages factor x factor blocks (the last partial row and column average
// what they hold).
Image ShrinkByBlocks(const Image& image, int factor) {
  Image out;
  out.width = (image.width + factor - 1) / factor;
  out.height = (image.height + factor - 1) / factor;
  out.channels = image.channels;
  const int c = image.channels;
  out.pixels.resize(static_cast<size_t>(out.width) * out.height * c);
  std::vector<uint32_t> sum(c);
  for (int by = 0; by < out.height; ++by) {
    for (int bx = 0; bx < out.width; ++bx) {
      std::fill(sum.begin(), sum.end(), 0);
      const int y_end = std::min(image.height, (by + 1) * factor);
      const int x_end = std::min(image.width, (bx + 1) * factor);
      for (int y = by * factor; y < y_end; ++y) {
        const uint8_t* row = image.pixels.data() + static_cast<size_t>(y) * image.width * c;
        for (int x = bx * factor; x < x_end; ++x) {
          for (int k = 0; k < c; ++k) sum[k] += row[x * c + k];
        }
      }
      const uint32_t count = static_cast<uint32_t>((y_end - by * factor) * (x_end - bx * factor));
      for (int k = 0; k < c; ++k) {
        out.pixels[(static_cast<size_t>(by) * out.width + bx) * c + k] =
            static_cast<uint8_t>((sum[k] + count / 2) / count);
      }
    }
  }
  return out;
}

}  // namespace

StatusOr<std::vector<uint8_t>> MakeThumbnail(const Image& image, int max_side) {
  if (image.empty() || image.width <= 0 || image.height <= 0) {
    return Status::InvalidArgument("no image to make a thumbnail of");
  }
  if (max_side < 1) return Status::InvalidArgument("a thumbnail needs a size of at least 1");
  const int longer = std::max(image.width, image.height);
  Image small = image;
  if (longer > max_side) {
    // Blocks first, so that the bilinear step never skips pixels.
    const int factor = longer / max_side;
    if (factor >= 2) small = ShrinkByBlocks(image, factor);
    const double scale = static_cast<double>(max_side) / longer;
    const int w = std::max(1, static_cast<int>(std::lround(image.width * scale)));
    const int h = std::max(1, static_cast<int>(std::lround(image.height * scale)));
    small = ResizeBilinear(small, std::min(w, max_side), std::min(h, max_side));
  }
  return small.channels == 1 ? EncodePng(small) : EncodeJpeg(small, 85);
}

StatusOr<std::vector<uint8_t>> MakeThumbnail(const Image& image, const uint8_t* file, size_t file_size,
                                             int max_side) {
  if (!image.empty() && max_side >= 1 && std::max(image.width, image.height) <= max_side &&
      file_size <= kThumbnailReuseBytes && CheckThumbnail(file, file_size).ok()) {
    return std::vector<uint8_t>(file, file + file_size);
  }
  return MakeThumbnail(image, max_side);
}

namespace {

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// A PNG's chunks, walked without inflating its pixels: IHDR first, at least
// one IDAT, IEND present, and the CRC of every critical chunk right (an
// ancillary chunk with a bad CRC is skipped, as libpng does; bytes after
// IEND are ignored, as decoders do).
Status CheckPngLayout(const uint8_t* data, size_t size, uint32_t* width, uint32_t* height) {
  size_t pos = 8;  // after the signature
  bool idat = false;
  for (int chunk = 0;; ++chunk) {
    if (size - pos < 12) return Status::InvalidArgument("the thumbnail is a truncated PNG");
    const uint32_t len = BigEndian32(data + pos);
    const uint8_t* type = data + pos + 4;
    if (len > 0x7fffffffu) return Status::InvalidArgument("the thumbnail is a corrupt PNG (a chunk length)");
    if (len > size - pos - 12) return Status::InvalidArgument("the thumbnail is a truncated PNG");
    const bool critical = (type[0] & 0x20) == 0;  // an upper-case first letter
    if (critical) {
      const uLong crc = crc32(crc32(0L, Z_NULL, 0), type, static_cast<uInt>(len) + 4);
      if (crc != BigEndian32(type + 4 + len)) {
        return Status::InvalidArgument("the thumbnail is a corrupt PNG (a chunk's CRC does not match)");
      }
    }
    const bool is_ihdr = std::memcmp(type, "IHDR", 4) == 0;
    if ((chunk == 0) != is_ihdr || (is_ihdr && len != 13)) {
      return Status::InvalidArgument("the thumbnail is a corrupt PNG (no IHDR chunk first)");
    }
    if (is_ihdr) {
      *width = BigEndian32(type + 4);
      *height = BigEndian32(type + 8);
    }
    idat = idat || std::memcmp(type, "IDAT", 4) == 0;
    pos += 12 + size_t{len};
    if (std::memcmp(type, "IEND", 4) == 0) {
      if (!idat) return Status::InvalidArgument("the thumbnail is a PNG without pixel data");
      return Status::OK();
    }
  }
}

// A JPEG's headers, read by libjpeg up to its scan (no pixel decoding), and
// an end-of-image marker after them. In the scan's data a 0xFF byte is always
// followed by 0x00 or a restart marker, so FF D9 there is the end of the
// image: a JPEG cut short has none. Bytes after it are ignored, as decoders do.
Status CheckJpegLayout(const uint8_t* data, size_t size, uint32_t* width, uint32_t* height) {
  auto s = std::make_unique<JpegState>();
  s->cinfo.err = InstallJpegErrors(&s->err);
  Status status = Status::OK();
  if (setjmp(s->err.jump)) {
    status = Status::InvalidArgument(std::string("the thumbnail is a corrupt JPEG: ") + s->err.message);
  } else {
    jpeg_create_decompress(&s->cinfo);
    s->created = true;
    jpeg_mem_src(&s->cinfo, const_cast<unsigned char*>(data), static_cast<unsigned long>(size));
    if (jpeg_read_header(&s->cinfo, TRUE) != JPEG_HEADER_OK) {
      status = Status::InvalidArgument("the thumbnail is a JPEG without an image");
    } else {
      *width = s->cinfo.image_width;
      *height = s->cinfo.image_height;
      static constexpr uint8_t kEndOfImage[2] = {0xFF, 0xD9};
      const size_t scan = std::min(size, static_cast<size_t>(s->cinfo.src->next_input_byte - data));
      if (std::search(data + scan, data + size, kEndOfImage, kEndOfImage + 2) == data + size) {
        status = Status::InvalidArgument("the thumbnail is a truncated JPEG (no end-of-image marker)");
      }
    }
  }
  if (s->created) jpeg_destroy_decompress(&s->cinfo);
  return status;
}

}  // namespace

Status CheckThumbnail(const uint8_t* data, size_t size) {
  const ImageFormat format = DetectImageFormat(data, size);
  if (format == ImageFormat::kUnknown) return Status::InvalidArgument("the thumbnail is not a JPEG or PNG");
  uint32_t w = 0, h = 0;
  HAMDB_RETURN_IF_ERROR(format == ImageFormat::kPng ? CheckPngLayout(data, size, &w, &h)
                                                    : CheckJpegLayout(data, size, &w, &h));
  if (w == 0 || h == 0) return Status::InvalidArgument("the thumbnail has no pixels");
  if (std::max(w, h) > static_cast<uint32_t>(kThumbnailMaxSide)) {
    return Status::InvalidArgument("the thumbnail is " + std::to_string(w) + "x" + std::to_string(h) +
                                   " pixels; its longer side may be at most " +
                                   std::to_string(kThumbnailMaxSide));
  }
  return Status::OK();
}

}  // namespace hamdb
