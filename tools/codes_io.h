// Reading codes from files for `hamdb put` and friends.
//
// Hex lines: one item per line, `CODE` or `ID CODE` (space or tab), where
// CODE is hex or a '0'/'1' bit string (docs/codes.md). Blank lines and lines
// starting with '#' are skipped. Errors name the line.
//
// NumPy .npy: a 2-D uint8 array of shape (n, code_bytes(bits)) in C order,
// holding packed LSB-first codes (numpy.packbits(..., bitorder='little')).
// Ids, when given, come from a 1-D .npy of n integers (u1..u8 / i1..i8,
// little-endian, non-negative).
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace hamdb::tools {

struct CodeChunk {
  std::vector<uint64_t> ids;   // empty when the source has no ids
  std::vector<uint8_t> codes;  // n * code_bytes(bits)
  size_t size() const;
  size_t code_bytes = 0;
};

// Streams items from a file in chunks.
class CodeReader {
 public:
  virtual ~CodeReader() = default;
  // Total number of items if known up front (npy), else 0.
  virtual uint64_t total() const = 0;
  // Fills *chunk with up to max_items items; an empty chunk means the end.
  virtual Status Next(size_t max_items, CodeChunk* chunk) = 0;
};

// format: "hex", "npy" or "auto" (by extension: .npy is npy, else hex).
// ids_path: optional .npy of ids (npy format only).
StatusOr<std::unique_ptr<CodeReader>> OpenCodeReader(const std::string& path,
                                                     const std::string& format, int bits,
                                                     const std::string& ids_path = "");

// Header of an .npy file; the data starts at data_offset.
struct NpyHeader {
  std::string dtype;           // e.g. "|u1", "<u8"
  bool fortran_order = false;
  std::vector<uint64_t> shape;
  uint64_t data_offset = 0;
};
StatusOr<NpyHeader> ReadNpyHeader(std::ifstream& in, const std::string& path);

// Item scores from a 1-D .npy of float32 or float64 (little-endian), one
// per item. InvalidArgument names the file and the problem: another dtype
// or shape, a count other than `expected` (when not 0), or a value that is
// not finite (or, from float64, beyond float32's range).
StatusOr<std::vector<float>> ReadNpyScores(const std::string& path, uint64_t expected = 0);

// Writes a 2-D uint8 .npy (used by benchmarks and tests to make inputs).
Status WriteNpyU8(const std::string& path, const uint8_t* data, uint64_t rows, uint64_t cols);

}  // namespace hamdb::tools
