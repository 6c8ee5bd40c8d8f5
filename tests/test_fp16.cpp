// fp16 conversion: every half round-trips, nearest-even matches a double-precision reference, and
// the directed roundings bracket the input with adjacent halves.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include <logquant/fp16.hpp>

namespace {

using logquant::float_to_half;
using logquant::half_to_float;
using logquant::Rounding;

bool is_nan_half(std::uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }

TEST(Fp16, EveryHalfRoundTrips) {
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const auto half = static_cast<std::uint16_t>(h);
    if (is_nan_half(half)) {
      EXPECT_TRUE(std::isnan(half_to_float(half)));
      continue;
    }
    for (Rounding r : {Rounding::kNearestEven, Rounding::kDown, Rounding::kUp})
      ASSERT_EQ(float_to_half(half_to_float(half), r), half) << std::hex << h;
  }
}

TEST(Fp16, KnownValues) {
  EXPECT_EQ(float_to_half(1.0f), 0x3c00u);
  EXPECT_EQ(float_to_half(-2.0f), 0xc000u);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bffu);
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00u);  // ties to even: overflows to inf
  EXPECT_EQ(float_to_half(65519.0f), 0x7bffu);
  EXPECT_EQ(float_to_half(5.9604644775390625e-8f), 0x0001u);  // smallest subnormal
  EXPECT_EQ(float_to_half(2.98023223876953125e-8f), 0x0000u);  // half of it: tie to even zero
  EXPECT_EQ(float_to_half(3.0e-8f), 0x0001u);
  EXPECT_EQ(float_to_half(1e-9f, Rounding::kUp), 0x0001u);
  EXPECT_EQ(float_to_half(1e-9f, Rounding::kDown), 0x0000u);
  EXPECT_EQ(float_to_half(-1e-9f, Rounding::kDown), 0x8001u);
  EXPECT_EQ(float_to_half(70000.0f, Rounding::kDown), 0x7bffu);
  EXPECT_EQ(half_to_float(0x7c00u), std::numeric_limits<float>::infinity());
}

// Nearest-even against a reference that brackets x with the directed results and picks the closer
// one in double precision (ties to the even mantissa).
TEST(Fp16, NearestEvenMatchesReferenceAndDirectedBracket) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> bits;
  std::uniform_real_distribution<float> mag(-30.0f, 16.0f);
  for (int i = 0; i < 200000; ++i) {
    float x = (i % 2) ? std::ldexp(1.0f + static_cast<float>(bits(rng) % 1000000) / 1e6f,
                                   static_cast<int>(mag(rng)))
                      : std::ldexp(static_cast<float>(bits(rng) % 4096), -36 + static_cast<int>(bits(rng) % 40));
    if (bits(rng) % 2) x = -x;
    if (!(std::fabs(x) <= 65504.0f)) continue;
    const std::uint16_t lo = float_to_half(x, Rounding::kDown);
    const std::uint16_t hi = float_to_half(x, Rounding::kUp);
    const double flo = half_to_float(lo), fhi = half_to_float(hi);
    ASSERT_LE(flo, x);
    ASSERT_GE(fhi, x);
    if (flo == fhi) {
      ASSERT_EQ(float_to_half(x), lo);
      continue;
    }
    // adjacent: nothing representable strictly between
    ASSERT_TRUE(logquant::detail::half_next_up(lo) == hi || (flo == 0.0 && fhi > 0.0 && hi == 1u) ||
                (fhi == 0.0 && flo < 0.0 && lo == 0x8001u))
        << x;
    const double dlo = x - flo, dhi = fhi - x;
    const std::uint16_t expect = dlo < dhi ? lo : dhi < dlo ? hi : ((lo & 1u) ? hi : lo);
    ASSERT_EQ(float_to_half(x), expect) << x;
  }
}

}  // namespace
