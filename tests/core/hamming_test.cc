#include "core/hamming.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/binary_code.h"

namespace hamdb {
namespace {

// The oracle: compare bit by bit.
uint32_t NaiveDistance(const uint8_t* a, const uint8_t* b, int bits) {
  uint32_t d = 0;
  for (int i = 0; i < bits; ++i) d += GetBit(a, i) != GetBit(b, i);
  return d;
}

std::vector<uint8_t> RandomCodes(std::mt19937_64& rng, size_t n, int bits, double p_one) {
  std::vector<uint8_t> codes(n * code_bytes(bits), 0);
  std::bernoulli_distribution coin(p_one);
  for (size_t i = 0; i < n; ++i) {
    for (int b = 0; b < bits; ++b) SetBit(&codes[i * code_bytes(bits)], b, coin(rng));
  }
  return codes;
}

class HammingKernelTest : public ::testing::TestWithParam<HammingIsa> {};

TEST_P(HammingKernelTest, MatchesNaiveLoopAtManyLengths) {
  const HammingIsa isa = GetParam();
  if (!HammingIsaSupported(isa)) GTEST_SKIP() << HammingIsaName(isa) << " not supported here";
  // Covers every specialised size (64/128/256/512 bits) and odd lengths that
  // go through the generic kernel, with and without word tails.
  const int lengths[] = {1, 7, 8, 10, 16, 31, 63, 64, 65, 100, 128, 129, 200,
                         255, 256, 257, 384, 511, 512, 513, 1000, 1024, 4095, 4096};
  std::mt19937_64 rng(42);
  for (int bits : lengths) {
    const size_t nb = code_bytes(bits);
    const HammingKernel k = SelectHammingKernel(nb, isa);
    const bool avx512_size = nb >= 64 || nb == 8 || nb == 16 || nb == 32;
    const HammingIsa want_isa = (isa == HammingIsa::kAvx2 && nb < 64) ||
                                        (isa == HammingIsa::kAvx512 && !avx512_size)
                                    ? HammingIsa::kPopcnt
                                    : isa;
    ASSERT_EQ(k.isa, want_isa) << "bits=" << bits;
    const bool special = nb == 8 || nb == 16 || nb == 32 || nb == 64;
    EXPECT_EQ(k.specialised_bytes, special ? nb : 0u) << "bits=" << bits;
    for (double p : {0.0, 0.1, 0.5, 1.0}) {
      const size_t n = 37;
      std::vector<uint8_t> db = RandomCodes(rng, n, bits, p);
      std::vector<uint8_t> q = RandomCodes(rng, 1, bits, 0.5);
      std::vector<uint16_t> out(n), out_idx(n);
      std::vector<uint32_t> idx(n);
      for (size_t i = 0; i < n; ++i) idx[i] = static_cast<uint32_t>((i * 7) % n);
      k.distances(q.data(), db.data(), n, nb, out.data());
      k.distances_indexed(q.data(), db.data(), idx.data(), n, nb, out_idx.data());
      for (size_t i = 0; i < n; ++i) {
        const uint32_t want = NaiveDistance(q.data(), &db[i * nb], bits);
        ASSERT_EQ(k.distance(q.data(), &db[i * nb], nb), want) << "bits=" << bits << " i=" << i;
        ASSERT_EQ(out[i], want) << "bits=" << bits << " i=" << i;
        ASSERT_EQ(out_idx[i], NaiveDistance(q.data(), &db[idx[i] * nb], bits));
      }
    }
  }
}

TEST_P(HammingKernelTest, ExtremesAndUnalignedBuffers) {
  const HammingIsa isa = GetParam();
  if (!HammingIsaSupported(isa)) GTEST_SKIP() << HammingIsaName(isa) << " not supported here";
  for (int bits : {64, 128, 256, 512, 4096, 257}) {
    const size_t nb = code_bytes(bits);
    // Offset by one byte so no kernel may assume alignment.
    std::vector<uint8_t> buf(2 * nb + 1, 0);
    uint8_t* a = buf.data() + 1;
    uint8_t* b = a + nb;
    for (int i = 0; i < bits; ++i) SetBit(b, i, true);
    const HammingKernel k = SelectHammingKernel(nb, isa);
    EXPECT_EQ(k.distance(a, b, nb), static_cast<uint32_t>(bits));
    EXPECT_EQ(k.distance(a, a, nb), 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, HammingKernelTest,
                         ::testing::Values(HammingIsa::kGeneric, HammingIsa::kPopcnt,
                                           HammingIsa::kAvx2, HammingIsa::kAvx512),
                         [](const auto& info) { return std::string(HammingIsaName(info.param)); });

TEST(HammingDispatch, BestIsaIsSupportedAndConvenienceAgrees) {
  EXPECT_TRUE(HammingIsaSupported(BestHammingIsa()));
  std::vector<uint8_t> a = {0xFF, 0x00, 0x0F}, b = {0x00, 0x00, 0x01};
  EXPECT_EQ(HammingDistance(a.data(), b.data(), 3), 11u);
}

}  // namespace
}  // namespace hamdb
