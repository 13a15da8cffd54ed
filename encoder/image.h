// Image: decoded 8-bit pixels, and the JPEG/PNG codecs and conversions the
// encoder's preprocessing needs (libjpeg-turbo and libpng from Debian).
//
// Pixels are row-major, interleaved, `channels` bytes per pixel (1 = gray,
// 3 = RGB). Decoding never throws or aborts: a truncated, corrupt or
// unsupported file gives InvalidArgument naming the reason (the codec's own
// message where there is one), so one bad file never stops a batch.
// Grayscale+alpha and RGBA inputs drop the alpha channel; 16-bit PNGs are
// reduced to 8 bits; palette PNGs are expanded to RGB.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace hamdb {

struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;             // 1 or 3
  std::vector<uint8_t> pixels;  // height * width * channels bytes

  bool empty() const { return pixels.empty(); }
};

enum class ImageFormat { kUnknown, kJpeg, kPng };

// Sniffs the format from the leading magic bytes (not the file name).
ImageFormat DetectImageFormat(const uint8_t* data, size_t size);

// Decodes an in-memory JPEG or PNG. InvalidArgument for empty input, an
// unknown format, or a corrupt or truncated stream; images larger than
// max_pixels (width * height) are refused before their pixels are allocated.
StatusOr<Image> DecodeImage(const uint8_t* data, size_t size, size_t max_pixels = 64u << 20);

// Reads and decodes a file. NotFound / IOError for file errors, else as
// DecodeImage. The message starts with the path.
StatusOr<Image> ReadImageFile(const std::string& path, size_t max_pixels = 64u << 20);

// Encodes to PNG (lossless; 1 or 3 channels).
StatusOr<std::vector<uint8_t>> EncodePng(const Image& image);
Status WritePngFile(const Image& image, const std::string& path);
// Encodes to baseline JPEG (lossy; quality 1..100; 1 or 3 channels).
StatusOr<std::vector<uint8_t>> EncodeJpeg(const Image& image, int quality = 90);

// The three conversions below return an empty Image for invalid arguments
// (empty input, channels not 1 or 3, a non-positive size, a crop larger
// than the image).
// Channel conversion: gray -> RGB replicates, RGB -> gray uses the ITU-R
// BT.601 luma weights (0.299, 0.587, 0.114), rounded.
Image ConvertChannels(const Image& image, int channels);

// Bilinear resize (pixel centres aligned, edges clamped).
Image ResizeBilinear(const Image& image, int width, int height);

// The centred crop of width x height (must fit inside the image).
Image CenterCrop(const Image& image, int width, int height);

// The longest side of a thumbnail, in pixels.
inline constexpr int kThumbnailMaxSide = 96;

// A thumbnail of `image`: shrunk (never enlarged), aspect kept, so that its
// longer side is at most max_side, by averaging whole pixel blocks and then
// a bilinear step; encoded as PNG for gray images (lossless and small at
// this size) and as JPEG (quality 85) for colour ones. InvalidArgument for
// an empty image or a max_side below 1.
StatusOr<std::vector<uint8_t>> MakeThumbnail(const Image& image, int max_side = kThumbnailMaxSide);

// The same for an image decoded from `file` (its JPEG or PNG bytes): when the
// image already fits, the file is at most kThumbnailReuseBytes and passes
// CheckThumbnail (below), the file itself is the thumbnail (no re-encoding: ingest stays as fast as without
// thumbnails for small images).
inline constexpr size_t kThumbnailReuseBytes = 16u << 10;
StatusOr<std::vector<uint8_t>> MakeThumbnail(const Image& image, const uint8_t* file, size_t file_size,
                                             int max_side = kThumbnailMaxSide);

// Checks bytes offered as a thumbnail: a whole JPEG or PNG whose longer side
// is at most kThumbnailMaxSide, without decoding its pixels (a server checks
// every ingested item's thumbnail, and inflating them cost a tenth of its
// CPU). A PNG must start with IHDR, have an IDAT chunk and an IEND chunk,
// and every critical chunk's CRC must match: a PNG cut short or damaged in
// transit is refused. A JPEG's headers must parse (libjpeg) and an
// end-of-image marker must follow them: a JPEG cut short is refused. What is
// not seen: compressed pixel data that does not decode although its PNG
// CRCs match (made so, not damaged in transit), damage inside a JPEG's
// compressed data, and bytes after the end, which decoders ignore too.
// InvalidArgument says what is wrong.
Status CheckThumbnail(const uint8_t* data, size_t size);

}  // namespace hamdb
