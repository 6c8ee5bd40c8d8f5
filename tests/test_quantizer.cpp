// GroupQuantizer and the tile layout: error bounds, exact constant groups, extreme magnitudes,
// every code through pack/unpack, the documented byte layout, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <logquant/logquant.hpp>

namespace {

using logquant::GroupParams;
using logquant::GroupQuantizer;

template <class T>
class QuantizerTest : public ::testing::Test {};
using Widths = ::testing::Types<std::integral_constant<unsigned, 2>, std::integral_constant<unsigned, 4>,
                                std::integral_constant<unsigned, 8>>;
TYPED_TEST_SUITE(QuantizerTest, Widths);

// Every element is within half a step of its reconstruction. The grid is computed in float from fp16
// metadata, so allow a few float ulps of the group's magnitude on top.
template <unsigned B>
void check_error_bound(const std::vector<float>& x) {
  using Q = GroupQuantizer<B>;
  std::vector<std::uint8_t> codes(x.size());
  const GroupParams p = Q::quantize(x.data(), x.size(), 1, codes.data());
  float mag = 0;
  for (float v : x) mag = std::max(mag, std::fabs(v));
  const float slack = 4 * std::numeric_limits<float>::epsilon() * mag;
  for (std::size_t i = 0; i < x.size(); ++i) {
    ASSERT_LE(codes[i], Q::kMaxCode);
    const float err = std::fabs(Q::decode(codes[i], p) - x[i]);
    ASSERT_LE(err, 0.5f * p.scale_f() + slack) << "x=" << x[i] << " scale=" << p.scale_f();
  }
}

TYPED_TEST(QuantizerTest, ErrorWithinHalfStep) {
  constexpr unsigned B = TypeParam::value;
  std::mt19937 rng(11);
  for (float spread : {1e-6f, 1e-3f, 1.0f, 30.0f, 3000.0f}) {
    std::normal_distribution<float> nd(0.5f * spread, spread);
    for (std::size_t n : {1u, 2u, 7u, 32u, 64u, 333u}) {
      std::vector<float> x(n);
      for (float& v : x) v = nd(rng);
      check_error_bound<B>(x);
    }
  }
}

TYPED_TEST(QuantizerTest, Extremes) {
  constexpr unsigned B = TypeParam::value;
  check_error_bound<B>({-65504.0f, 65504.0f, 0.0f, 1.0f});
  check_error_bound<B>({65504.0f, 65000.0f, 64000.0f});
  check_error_bound<B>({-65504.0f, -65504.0f});
  check_error_bound<B>({1e-7f, 2e-7f, 3e-8f, 0.0f});            // fp16 subnormal range
  check_error_bound<B>({1e-30f, -1e-30f, 1e-38f, 1e-45f});      // float denormals
  check_error_bound<B>({-3e-5f, 6e-5f, 1e-5f});
}

TYPED_TEST(QuantizerTest, ConstantGroupsRoundTripExactly) {
  using Q = GroupQuantizer<TypeParam::value>;
  for (float v : {0.0f, -0.0f, 1.0f, -3.5f, 1024.0f, 65504.0f, -65504.0f, 0.000061035156f,
                  5.9604645e-8f, 0.099975586f /* fp16(0.1) */}) {
    std::vector<float> x(17, v);
    std::vector<std::uint8_t> codes(x.size());
    const GroupParams p = Q::quantize(x.data(), x.size(), 1, codes.data());
    EXPECT_EQ(p.scale_f(), 0.0f) << v;
    for (std::uint8_t c : codes) EXPECT_EQ(Q::decode(c, p), v) << v;
  }
  // Not an fp16 number: no division by zero, and within half a (tiny) step.
  check_error_bound<TypeParam::value>(std::vector<float>(9, 0.1f));
}

TYPED_TEST(QuantizerTest, CodesAreComputedAgainstStoredMetadata) {
  using Q = GroupQuantizer<TypeParam::value>;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-7, 9);
  std::vector<float> x(64);
  for (float& v : x) v = u(rng);
  std::vector<std::uint8_t> codes(x.size());
  const GroupParams p = Q::quantize(x.data(), x.size(), 1, codes.data());
  for (std::size_t i = 0; i < x.size(); ++i) {
    // The chosen code is the nearest grid point of the stored (fp16) grid.
    const float err = std::fabs(Q::decode(codes[i], p) - x[i]);
    for (unsigned c = 0; c <= Q::kMaxCode; ++c)
      ASSERT_LE(err, std::fabs(Q::decode(static_cast<std::uint8_t>(c), p) - x[i]) + 1e-5f);
  }
}

TYPED_TEST(QuantizerTest, NanAndInfAreRejectedNamingTheArgument) {
  using Q = GroupQuantizer<TypeParam::value>;
  std::uint8_t codes[4];
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity(), 70000.0f}) {
    const float x[4] = {1, 2, bad, 3};
    try {
      Q::quantize(x, 4, 1, codes);
      FAIL() << "no exception for " << bad;
    } catch (const logquant::InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("input x"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("element 2"), std::string::npos) << e.what();
    }
  }
}

TYPED_TEST(QuantizerTest, BadArgumentsThrow) {
  using Q = GroupQuantizer<TypeParam::value>;
  float x[8] = {};
  std::uint8_t codes[8];
  GroupParams meta[8];
  EXPECT_THROW(Q::quantize(nullptr, 4, 1, codes), logquant::InvalidArgument);
  EXPECT_THROW(Q::quantize(x, 4, 1, nullptr), logquant::InvalidArgument);
  EXPECT_THROW(Q::fit(x, 0), logquant::InvalidArgument);
  EXPECT_THROW(Q::quantize_per_token(x, 8, 3, meta, codes), logquant::InvalidArgument);
  EXPECT_THROW(Q::quantize_per_token(x, 8, 0, meta, codes), logquant::InvalidArgument);
  EXPECT_THROW(Q::quantize_per_channel(nullptr, 2, 4, 4, meta, codes), logquant::InvalidArgument);
}

TYPED_TEST(QuantizerTest, PerChannelAndPerTokenGrouping) {
  using Q = GroupQuantizer<TypeParam::value>;
  // 3 tokens x 4 channels; channel 2 is an outlier channel: per-channel groups keep the others fine.
  const float keys[12] = {0.1f, -0.2f, 100.0f, 0.3f, 0.2f, -0.1f, -90.0f, 0.1f, 0.0f, 0.0f, 50.0f, 0.2f};
  GroupParams meta[4];
  std::uint8_t codes[12];
  Q::quantize_per_channel(keys, 3, 4, 4, meta, codes);
  for (std::size_t t = 0; t < 3; ++t)
    for (std::size_t c = 0; c < 4; ++c)
      EXPECT_LE(std::fabs(Q::decode(codes[t * 4 + c], meta[c]) - keys[t * 4 + c]),
                0.5f * meta[c].scale_f() + 1e-6f);
  EXPECT_LT(meta[0].scale_f(), 0.2f);  // not polluted by the outlier channel
  GroupParams vmeta[2];
  Q::quantize_per_token(keys, 4, 2, vmeta, codes);
  EXPECT_LE(std::fabs(Q::decode(codes[2], vmeta[1]) - 100.0f), 0.5f * vmeta[1].scale_f() + 1e-3f);
}

TEST(EffectiveBits, IncludesMetadata) {
  EXPECT_DOUBLE_EQ(GroupQuantizer<2>::effective_bits(32), 3.0);
  EXPECT_DOUBLE_EQ(GroupQuantizer<2>::effective_bits(64), 2.5);
  EXPECT_DOUBLE_EQ(GroupQuantizer<4>::effective_bits(128), 4.25);
}

// Every code pattern through pack/unpack, for tiles with padding on both axes.
TEST(TileLayout, EveryCodeRoundTrips) {
  std::mt19937 rng(5);
  for (unsigned bits : {2u, 4u, 8u}) {
    for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{16, 16}, {1, 1}, {17, 8}, {40, 80}, {5, 130}}) {
      std::vector<std::uint8_t> codes(rows * cols);
      for (std::size_t i = 0; i < codes.size(); ++i)
        codes[i] = static_cast<std::uint8_t>((i + rng()) & ((1u << bits) - 1u));
      for (std::size_t i = 0; i < std::min<std::size_t>(codes.size(), 1u << bits); ++i)
        codes[i] = static_cast<std::uint8_t>(i);  // every pattern at least once
      const logquant::TileMatrix m{bits, logquant::tiles_for(cols)};
      std::vector<std::uint8_t> packed(m.bytes_for_rows(rows), 0);
      logquant::pack_codes(codes.data(), rows, cols, bits, packed.data());
      std::vector<std::uint8_t> back(codes.size());
      logquant::unpack_codes(packed.data(), rows, cols, bits, back.data());
      ASSERT_EQ(back, codes) << bits << " " << rows << "x" << cols;
    }
  }
}

// The documented byte layout, pinned with hand-computed bytes: every ISA must reproduce these.
TEST(TileLayout, DocumentedBytes) {
  EXPECT_EQ(logquant::tile_bytes(2), 64u);
  EXPECT_EQ(logquant::tile_bytes(4), 128u);
  EXPECT_EQ(logquant::tile_bytes(8), 256u);
  // 2-bit: row r, byte b holds columns b, b+4, b+8, b+12 in bits 0-1, 2-3, 4-5, 6-7.
  std::vector<std::uint8_t> tile(64, 0);
  logquant::tile_put(tile.data(), 2, 0, 0, 1);
  logquant::tile_put(tile.data(), 2, 0, 4, 2);
  logquant::tile_put(tile.data(), 2, 0, 13, 3);
  logquant::tile_put(tile.data(), 2, 15, 15, 3);
  EXPECT_EQ(tile[0], 0x01 | (2 << 2));
  EXPECT_EQ(tile[1], 3 << 6);
  EXPECT_EQ(tile[63], 3 << 6);
  // 4-bit: two 64-byte vectors of 8 columns; column 9 is vector 1, byte 1, low nibble.
  std::vector<std::uint8_t> t4(128, 0);
  logquant::tile_put(t4.data(), 4, 2, 9, 0xA);
  logquant::tile_put(t4.data(), 4, 2, 5, 0x7);
  EXPECT_EQ(t4[64 + 2 * 4 + 1], 0x0A);
  EXPECT_EQ(t4[2 * 4 + 1], 0x70);
  // 8-bit: four vectors of 4 columns; column 6 is vector 1, byte 2.
  std::vector<std::uint8_t> t8(256, 0);
  logquant::tile_put(t8.data(), 8, 3, 6, 0xC3);
  EXPECT_EQ(t8[64 + 3 * 4 + 2], 0xC3);
}

}  // namespace
