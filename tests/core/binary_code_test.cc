#include "core/binary_code.h"

#include <gtest/gtest.h>

#include <random>

namespace hamdb {
namespace {

TEST(BinaryCode, ByteCountAndBitOrderAreLsbFirst) {
  EXPECT_EQ(code_bytes(1), 1u);
  EXPECT_EQ(code_bytes(8), 1u);
  EXPECT_EQ(code_bytes(9), 2u);
  EXPECT_EQ(code_bytes(4096), 512u);
  // Bit 0 set, everything else clear: byte 0 == 0x01, as
  // numpy.packbits([1,0,0,0,0,0,0,0,0,0], bitorder='little') == [1, 0].
  auto c = ParseBitString("1000000000", 10);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(*c, (std::vector<uint8_t>{0x01, 0x00}));
  // Bit 9 is bit 1 of byte 1.
  c = ParseBitString("0000000001", 10);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, (std::vector<uint8_t>{0x00, 0x02}));
  EXPECT_EQ(FormatHex(c->data(), 10), "0002");
}

TEST(BinaryCode, HexRoundTripAtManyLengths) {
  std::mt19937 rng(7);
  for (int bits : {1, 7, 8, 10, 63, 64, 65, 100, 257, 4096}) {
    std::vector<uint8_t> code(code_bytes(bits));
    for (int i = 0; i < bits; ++i) SetBit(code.data(), i, rng() & 1);
    ASSERT_TRUE(CheckPadding(code.data(), bits).ok());
    const std::string hex = FormatHex(code.data(), bits);
    const std::string bitstr = FormatBitString(code.data(), bits);
    EXPECT_EQ(hex.size(), 2 * code_bytes(bits));
    EXPECT_EQ(bitstr.size(), static_cast<size_t>(bits));
    auto h = ParseHexCode(hex, bits);
    auto b = ParseBitString(bitstr, bits);
    ASSERT_TRUE(h.ok() && b.ok()) << bits;
    EXPECT_EQ(*h, code);
    EXPECT_EQ(*b, code);
    auto any = ParseCode(bitstr, bits);
    ASSERT_TRUE(any.ok());
    EXPECT_EQ(*any, code);
  }
}

TEST(BinaryCode, UpperCaseHexAccepted) {
  auto c = ParseHexCode("ABcd", 16);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, (std::vector<uint8_t>{0xAB, 0xCD}));
}

TEST(BinaryCode, ErrorsAreClear) {
  auto wrong_len = ParseHexCode("abc", 16);
  ASSERT_FALSE(wrong_len.ok());
  EXPECT_EQ(wrong_len.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(wrong_len.status().message().find("needs 4 hex digits, got 3"), std::string::npos);

  auto bad_char = ParseHexCode("zz00", 16);
  ASSERT_FALSE(bad_char.ok());
  EXPECT_NE(bad_char.status().message().find("invalid hex digit 'z' at position 0"),
            std::string::npos);

  // 10 bits: byte 1 may only use bits 0..1, so 0x04 sets a padding bit.
  auto pad = ParseHexCode("ff04", 10);
  ASSERT_FALSE(pad.ok());
  EXPECT_NE(pad.status().message().find("padding bits must be zero"), std::string::npos);
  EXPECT_TRUE(ParseHexCode("ff03", 10).ok());

  auto bad_bit = ParseBitString("0120", 4);
  ASSERT_FALSE(bad_bit.ok());
  EXPECT_NE(bad_bit.status().message().find("invalid bit character '2' at position 2"),
            std::string::npos);
  EXPECT_FALSE(ParseBitString("010", 4).ok());

  EXPECT_FALSE(ValidateCodeBits(0).ok());
  EXPECT_FALSE(ValidateCodeBits(kMaxCodeBits + 1).ok());
  EXPECT_FALSE(ParseHexCode("00", 0).ok());
}

TEST(Status, ToStringAndContext) {
  EXPECT_EQ(Status::OK().ToString(), "OK");
  Status s = Status::NotFound("collection 'x'").WithContext("get");
  EXPECT_EQ(s.ToString(), "NotFound: get: collection 'x'");
  StatusOr<int> v = 3;
  EXPECT_TRUE(v.ok());
  StatusOr<int> e = Status::Internal("boom");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Status::Code::kInternal);
}

}  // namespace
}  // namespace hamdb
