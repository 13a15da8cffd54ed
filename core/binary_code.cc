#include "core/binary_code.h"

#include <string>

namespace hamdb {

int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Status ValidateCodeBits(int bits) {
  if (bits < 1 || bits > kMaxCodeBits) {
    return Status::InvalidArgument("code length must be between 1 and " +
                                   std::to_string(kMaxCodeBits) + " bits, got " +
                                   std::to_string(bits));
  }
  return Status::OK();
}

Status CheckPadding(const uint8_t* code, int bits) {
  const int rem = bits % 8;
  if (rem == 0) return Status::OK();
  const size_t last = code_bytes(bits) - 1;
  const uint8_t pad_mask = static_cast<uint8_t>(0xFFu << rem);
  if (code[last] & pad_mask) {
    return Status::InvalidArgument("padding bits must be zero: a " + std::to_string(bits) +
                                   "-bit code has bits set above bit " + std::to_string(bits - 1) +
                                   " in byte " + std::to_string(last));
  }
  return Status::OK();
}

StatusOr<std::vector<uint8_t>> ParseHexCode(std::string_view text, int bits) {
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(bits));
  const size_t nbytes = code_bytes(bits);
  if (text.size() != 2 * nbytes) {
    return Status::InvalidArgument("a " + std::to_string(bits) + "-bit code needs " +
                                   std::to_string(2 * nbytes) + " hex digits, got " +
                                   std::to_string(text.size()));
  }
  std::vector<uint8_t> code(nbytes);
  for (size_t i = 0; i < nbytes; ++i) {
    const int hi = HexDigitValue(text[2 * i]);
    const int lo = HexDigitValue(text[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      const size_t pos = hi < 0 ? 2 * i : 2 * i + 1;
      return Status::InvalidArgument("invalid hex digit '" + std::string(1, text[pos]) +
                                     "' at position " + std::to_string(pos));
    }
    code[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  HAMDB_RETURN_IF_ERROR(CheckPadding(code.data(), bits));
  return code;
}

StatusOr<std::vector<uint8_t>> ParseBitString(std::string_view text, int bits) {
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(bits));
  if (text.size() != static_cast<size_t>(bits)) {
    return Status::InvalidArgument("a " + std::to_string(bits) + "-bit code needs " +
                                   std::to_string(bits) + " '0'/'1' characters, got " +
                                   std::to_string(text.size()));
  }
  std::vector<uint8_t> code(code_bytes(bits), 0);
  for (int i = 0; i < bits; ++i) {
    const char c = text[i];
    if (c != '0' && c != '1') {
      return Status::InvalidArgument("invalid bit character '" + std::string(1, c) +
                                     "' at position " + std::to_string(i));
    }
    if (c == '1') SetBit(code.data(), i, true);
  }
  return code;
}

StatusOr<std::vector<uint8_t>> ParseCode(std::string_view text, int bits) {
  if (bits >= 1 && text.size() == static_cast<size_t>(bits) &&
      text.find_first_not_of("01") == std::string_view::npos) {
    return ParseBitString(text, bits);
  }
  return ParseHexCode(text, bits);
}

std::string FormatHex(const uint8_t* code, int bits) {
  static const char kDigits[] = "0123456789abcdef";
  const size_t nbytes = code_bytes(bits);
  std::string out(2 * nbytes, '0');
  for (size_t i = 0; i < nbytes; ++i) {
    out[2 * i] = kDigits[code[i] >> 4];
    out[2 * i + 1] = kDigits[code[i] & 15];
  }
  return out;
}

std::string FormatBitString(const uint8_t* code, int bits) {
  std::string out(bits, '0');
  for (int i = 0; i < bits; ++i) {
    if (GetBit(code, i)) out[i] = '1';
  }
  return out;
}

}  // namespace hamdb
