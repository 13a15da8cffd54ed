// Binary codes: packing, parsing and formatting.
//
// Layout (see docs/codes.md): a code of `bits` bits (1..kMaxCodeBits) occupies
// code_bytes(bits) = ceil(bits / 8) bytes. Bit i lives in byte i / 8 at bit
// position i % 8 (LSB-first), exactly as FAISS binary indexes and
// numpy.packbits(bitorder='little'). The padding bits above `bits` in the last
// byte are always zero; every parser rejects codes whose padding is set, so
// two equal codes are always equal byte for byte.
//
// Text forms:
//  - hex: 2 * code_bytes(bits) hex digits, byte 0 first, each byte written
//    high nibble first (Python's bytes.hex() of the packed array). Upper or
//    lower case is accepted on input; output is lower case.
//  - bit string: exactly `bits` characters '0' / '1'; character i is bit i.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace hamdb {

inline constexpr int kMaxCodeBits = 4096;

// Bytes used by a code of `bits` bits.
inline constexpr size_t code_bytes(int bits) { return (static_cast<size_t>(bits) + 7) / 8; }

// OK when 1 <= bits <= kMaxCodeBits, else InvalidArgument.
Status ValidateCodeBits(int bits);

// OK when the padding bits of the packed code `code` (code_bytes(bits) bytes)
// are zero, else InvalidArgument naming the offending byte.
Status CheckPadding(const uint8_t* code, int bits);

// Reads / writes bit i of a packed code.
inline bool GetBit(const uint8_t* code, int i) { return (code[i >> 3] >> (i & 7)) & 1u; }
inline void SetBit(uint8_t* code, int i, bool v) {
  uint8_t mask = static_cast<uint8_t>(1u << (i & 7));
  code[i >> 3] = v ? (code[i >> 3] | mask) : (code[i >> 3] & ~mask);
}

// The value of one hex digit ('0'-'9', 'a'-'f', 'A'-'F'), or -1 for any
// other character.
int HexDigitValue(char c);

// Parses a hex code. Errors (InvalidArgument): wrong number of digits, a
// character that is not a hex digit (position given), non-zero padding.
StatusOr<std::vector<uint8_t>> ParseHexCode(std::string_view text, int bits);

// Parses a '0'/'1' bit string of exactly `bits` characters.
StatusOr<std::vector<uint8_t>> ParseBitString(std::string_view text, int bits);

// Parses either form: a string of exactly `bits` characters all '0'/'1' is a
// bit string, anything else is hex. (A `bits`-character 0/1 string is a
// valid hex only when bits == 2 * code_bytes, i.e. never ambiguous for
// bits % 8 != 0; for the ambiguous lengths the bit string wins, and callers
// that care should use the explicit parsers.)
StatusOr<std::vector<uint8_t>> ParseCode(std::string_view text, int bits);

// Formats code_bytes(bits) packed bytes.
std::string FormatHex(const uint8_t* code, int bits);
std::string FormatBitString(const uint8_t* code, int bits);

}  // namespace hamdb
