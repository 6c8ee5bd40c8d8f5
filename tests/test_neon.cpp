// NEON-only checks that the ISA-parameterised test_kernels cannot make, because the NEON table
// holds one of two attention flavours: ARMv8.2 dotprod (SDOT) or the ARMv8.0 baseline (SMULL +
// SADALP), chosen by a run-time check. Here both flavours run against the scalar reference and
// against each other, the check is compared with what the test runner says the CPU has
// (LOGQUANT_TEST_EXPECT_DOTPROD=0|1, set by the aarch64 ctest entries: qemu's default CPU has
// dotprod, `-cpu cortex-a53` does not), the vectorized operand preparation is compared byte for
// byte with the shared helpers, and the vector exp is measured against std::exp.
#include <gtest/gtest.h>

#include <logquant/logquant.hpp>

#if LOGQUANT_HAVE_NEON_KERNELS
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <logquant/kernels/neon/attention.hpp>

#include "quantized_block.hpp"

namespace {

using namespace logquant;

// Keys and values: Gaussian, with an outlier channel, a constant channel (scale 0) and signed
// zeros mixed in by column, so groups meet the corner cases of the quantizer.
std::vector<float> make_rows(std::size_t rows, std::size_t dim, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(rows * dim);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < dim; ++c) {
      float v = nd(rng);
      if (c % 11 == 3) v = 0.375f;
      if (c % 13 == 5) v = (r + c) % 3 == 0 ? -0.0f : 0.0f;
      if (c % 7 == 1) v = 8.0f + 0.5f * v;
      x[r * dim + c] = v;
    }
  return x;
}

using logquant_test::QuantizedBlock;

// One KV head's quantized block, packed by the scalar kernels (test_kernels checks the NEON
// quantizers byte for byte).
QuantizedBlock make_block(std::size_t dim, unsigned key_bits, unsigned value_bits,
                          std::size_t value_group, const logquant_test::Layout& layout,
                          std::uint32_t seed) {
  const std::size_t tokens = layout.tokens;
  const std::vector<float> keys = make_rows(tokens, dim, seed), values = make_rows(tokens, dim, seed + 1);
  return logquant_test::pack_block(dim, key_bits, value_bits, value_group, layout, keys.data(),
                                   values.data());
}

kernels::StateView view_of(AttentionState& st) {
  return kernels::StateView{st.max.data(), st.sum.data(), st.acc.data(), st.heads};
}

using AttendFn = void (*)(const kernels::QuantizedHeadView&, const float*, std::size_t,
                          std::size_t, kernels::StateView);

// Runs `fn` and the scalar reference over every case and checks the outputs. Tolerances, as in
// test_kernels: the integer dot products are identical; float rounding differs (summation order,
// FMA, exp_ps within a few ulp), so the log-sum-exp agrees to 2e-5 relative; an int8 softmax
// weight within an ulp of a rounding tie may round the other way and move an output by one weight
// step (max w / 127 of one token's value, or / 16383 with two digits): 1e-2 of the head's output
// range for 2-bit values, 1e-4 for 4/8-bit values. Returns the number of cases.
std::size_t expect_matches_scalar(AttendFn fn) {
  using logquant_test::Overlay;
  const std::vector<logquant_test::Layout> layouts = {
      {16, 96, Overlay::kSome}, {48, 96, Overlay::kNone}, {32, 64, Overlay::kSome}};
  std::size_t cases = 0;
  std::size_t layout = 0;
  for (std::size_t dim : {8u, 16u, 20u, 48u, 64u, 80u, 128u})
    for (unsigned key_bits : {2u, 4u, 8u})
      for (unsigned value_bits : {2u, 4u, 8u}) {
        const std::size_t value_group = dim % 32 == 0 ? 32 : dim;
        const QuantizedBlock b = make_block(dim, key_bits, value_bits, value_group, layouts[layout++ % 3],
                                   static_cast<std::uint32_t>(dim * 10 + key_bits + value_bits));
        const std::size_t n = b.view.tokens;
        for (std::size_t heads : {1u, 3u, 6u}) {  // head blocks of 4, with remainders
          std::mt19937 rng(static_cast<std::uint32_t>(heads + dim));
          std::normal_distribution<float> nd;
          std::vector<float> q(heads * dim);
          for (float& x : q) x = nd(rng) / std::sqrt(static_cast<float>(dim));
          for (const auto& [begin, end] : std::vector<std::pair<std::size_t, std::size_t>>{
                   {0, n}, {16, n}, {n - 16, n}}) {
            SCOPED_TRACE("head_dim " + std::to_string(dim) + ", bits " + std::to_string(key_bits) +
                         "/" + std::to_string(value_bits) + ", heads " + std::to_string(heads) +
                         ", range [" + std::to_string(begin) + ", " + std::to_string(end) + ")");
            AttentionState want(heads, dim), got(heads, dim);
            kernels::scalar_table().for_bits(key_bits, value_bits).attend_quantized(b.view, q.data(), begin, end,
                                                                               view_of(want));
            fn(b.view, q.data(), begin, end, view_of(got));
            const double out_tol = kernels::operand_digits(value_bits) == 1 ? 1e-2 : 1e-4;
            for (std::size_t h = 0; h < heads; ++h) {
              const double lse_want = want.max[h] + std::log(double(want.sum[h]));
              const double lse_got = got.max[h] + std::log(double(got.sum[h]));
              EXPECT_NEAR(lse_got, lse_want, 2e-5 * std::max(1.0, std::fabs(lse_want)));
              double range = 1e-3;
              for (std::size_t c = 0; c < dim; ++c)
                range = std::max(range, std::fabs(double(want.acc[h * dim + c]) / want.sum[h]));
              for (std::size_t c = 0; c < dim; ++c) {
                const double a = double(want.acc[h * dim + c]) / want.sum[h];
                const double g = double(got.acc[h * dim + c]) / got.sum[h];
                if (!(std::fabs(a - g) / range <= out_tol)) {
                  ADD_FAILURE() << "head " << h << " channel " << c << ": " << g
                                << " vs scalar " << a << " (output range " << range << ")";
                  return cases;
                }
              }
            }
            ++cases;
          }
        }
      }
  return cases;
}

// The NEON kernels vectorize kernels::prepare_key_query and kernels::quantize_tile_weights; the
// int8 operands (and qscale, wscale) must stay byte for byte those of the shared helpers, so the
// integer dot products stay the reference's. Cases: zero and tiny maxima (the inverse overflows),
// fp16-subnormal scales, rounding ties, tails of 1-15 channels or tokens.
TEST(NeonOperands, QueryDigitsAndTileWeightsEqualTheSharedHelpers) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  for (std::size_t dim : {1u, 3u, 15u, 16u, 17u, 33u, 80u, 128u, 256u})
    for (unsigned digits : {1u, 2u})
      for (int rep = 0; rep < 12; ++rep) {
        SCOPED_TRACE("head_dim " + std::to_string(dim) + ", digits " + std::to_string(digits) +
                     ", rep " + std::to_string(rep));
        const std::size_t padded = tiles_for(dim) * 16;
        const float q_scale = rep == 3 ? 0.0f : rep == 4 ? 1e-36f : 1.0f;
        std::vector<float> q(dim);
        std::vector<GroupParams> meta(dim);
        for (float& x : q) x = u(rng) * q_scale;
        for (GroupParams& m : meta) {
          m.scale = float_to_half(std::fabs(u(rng)) * (rep % 5 == 1 ? 1e-6f : 1.0f));
          m.min = float_to_half(u(rng));
        }
        std::vector<std::int8_t> want_hi(padded, 7), want_lo(padded, 7), got_hi(padded, 9),
            got_lo(padded, 9);
        float want_scale, want_bias, got_scale, got_bias;
        std::int32_t sum_hi, sum_lo;
        kernels::prepare_key_query(q.data(), dim, padded, meta.data(), digits, want_hi.data(),
                                   want_lo.data(), want_scale, want_bias);
        if (digits == 1)
          neon::detail::prepare_key_query<1>(q.data(), dim, padded, meta.data(), got_hi.data(),
                                             got_lo.data(), got_scale, got_bias, sum_hi, sum_lo);
        else
          neon::detail::prepare_key_query<2>(q.data(), dim, padded, meta.data(), got_hi.data(),
                                             got_lo.data(), got_scale, got_bias, sum_hi, sum_lo);
        ASSERT_EQ(got_hi, want_hi);
        if (digits == 2) {
          ASSERT_EQ(got_lo, want_lo);
        }
        ASSERT_EQ(got_scale, want_scale);
        // The bias sums in another order: float rounding of a sum of dim products.
        ASSERT_NEAR(got_bias, want_bias, 1e-5f * (1.0f + std::fabs(want_bias)));
        std::int32_t digit_total = 0;
        for (std::int8_t d : got_hi) digit_total += d;
        ASSERT_EQ(sum_hi, 128 * digit_total);
      }
  for (unsigned digits : {1u, 2u})
    for (int rep = 0; rep < 3000; ++rep) {
      const std::size_t n = 1 + rep % 16;
      float w[16] = {};
      for (std::size_t j = 0; j < n; ++j)
        w[j] = std::fabs(u(rng)) * std::exp(3.0f * u(rng)) * (rep % 7 == 0 ? 0.0f : 1.0f);
      if (rep % 11 == 0)
        for (std::size_t j = 0; j < n; ++j) w[j] = 0.5f * static_cast<float>(j % 3);  // ties
      if (rep % 13 == 0)
        for (std::size_t j = 0; j < n; ++j) w[j] *= 1e-36f;  // limit / max overflows
      std::int8_t want_hi[16], want_lo[16], got_hi[16], got_lo[16];
      float want_scale, got_scale;
      kernels::quantize_tile_weights(w, n, digits, want_hi, want_lo, want_scale);
      float32x4_t wv[4];
      for (std::size_t i = 0; i < 4; ++i) wv[i] = vld1q_f32(w + 4 * i);
      if (digits == 1) neon::detail::quantize_tile_weights<1>(wv, got_hi, got_lo, got_scale);
      else neon::detail::quantize_tile_weights<2>(wv, got_hi, got_lo, got_scale);
      ASSERT_TRUE(std::equal(want_hi, want_hi + 16, got_hi)) << "rep " << rep;
      if (digits == 2) {
        ASSERT_TRUE(std::equal(want_lo, want_lo + 16, got_lo)) << "rep " << rep;
      }
      ASSERT_EQ(got_scale, want_scale) << "rep " << rep;
    }
}

TEST(NeonAttention, BaselineMatchesScalar) {
  EXPECT_EQ(expect_matches_scalar(&neon::detail::attend_quantized_baseline), 567u);
}

#if LOGQUANT_NEON_DOTPROD
TEST(NeonAttention, DotprodMatchesScalarAndBaselineBitForBit) {
  if (!neon::detail::cpu_has_dotprod()) GTEST_SKIP() << "this CPU has no dotprod (SDOT)";
  EXPECT_EQ(expect_matches_scalar(&neon::detail::attend_quantized_dotprod), 567u);
  // Same integers, same float operations after them: the two flavours agree exactly.
  for (unsigned key_bits : {2u, 4u, 8u})
    for (unsigned value_bits : {2u, 4u, 8u}) {
      const QuantizedBlock b = make_block(80, key_bits, value_bits, 16, {16, 64, logquant_test::Overlay::kSome},
                                          key_bits * value_bits);
      const std::vector<float> q = make_rows(5, 80, 3);
      AttentionState base(5, 80), dot(5, 80);
      neon::detail::attend_quantized_baseline(b.view, q.data(), 0, b.view.tokens, view_of(base));
      neon::detail::attend_quantized_dotprod(b.view, q.data(), 0, b.view.tokens, view_of(dot));
      EXPECT_EQ(base.max, dot.max);
      EXPECT_EQ(base.sum, dot.sum);
      EXPECT_EQ(base.acc, dot.acc);
    }
}
#endif

TEST(NeonDispatch, DotprodCheckMatchesTheCpuAndTheTable) {
  const bool has = neon::detail::cpu_has_dotprod();
  std::printf("dotprod (SDOT): %s\n", has ? "yes, SDOT flavour" : "no, ARMv8.0 baseline flavour");
  if (const char* expect = std::getenv("LOGQUANT_TEST_EXPECT_DOTPROD")) {
    ASSERT_TRUE(std::string(expect) == "0" || std::string(expect) == "1") << expect;
    EXPECT_EQ(has, std::string(expect) == "1") << "LOGQUANT_TEST_EXPECT_DOTPROD=" << expect;
  }
  EXPECT_EQ(kernels::table_for(Isa::kNeon).attend_quantized[0][0], neon::detail::best_attend_quantized());
#if LOGQUANT_NEON_DOTPROD
  EXPECT_EQ(neon::detail::best_attend_quantized() == &neon::detail::attend_quantized_dotprod, has);
#else
  EXPECT_FALSE(has);
#endif
}

// exp_ps against std::exp over the softmax range (x <= 0): at most 2 ulp down to -87, where
// results are normal floats; below, 0 where std::exp is a denormal.
TEST(NeonExp, WithinTwoUlpOfStdExp) {
  std::vector<float> x;
  for (float v = 0.0f; v > -87.0f; v = std::nextafter(v - 1e-4f * (1.0f - v), -100.0f)) x.push_back(v);
  x.push_back(-0.0f);
  x.push_back(-1e-30f);
  while (x.size() % 4) x.push_back(-1.0f);
  double worst = 0.0;
  for (std::size_t i = 0; i < x.size(); i += 4) {
    float y[4];
    vst1q_f32(y, neon::exp_ps(vld1q_f32(&x[i])));
    for (std::size_t k = 0; k < 4; ++k) {
      const float e = std::exp(x[i + k]);
      const double err = std::fabs(double(y[k]) - e) / (std::nextafter(e, HUGE_VALF) - e);
      worst = std::max(worst, err);
      ASSERT_LE(err, 2.0) << "exp(" << x[i + k] << ") = " << y[k] << ", std::exp " << e;
    }
  }
  std::printf("%zu arguments in [-87, 0]: max error %.2f ulp\n", x.size(), worst);
  const float tail[8] = {-87.5f, -88.0f, -100.0f, -1e10f, -HUGE_VALF, -87.34f, -87.33f, -87.2f};
  for (std::size_t i = 0; i < 8; i += 4) {
    float y[4];
    vst1q_f32(y, neon::exp_ps(vld1q_f32(tail + i)));
    for (std::size_t k = 0; k < 4; ++k) {
      EXPECT_GE(y[k], 0.0f) << tail[i + k];
      EXPECT_LE(std::fabs(y[k] - std::exp(tail[i + k])), 1.2e-38f) << tail[i + k];
    }
  }
}

}  // namespace

#else

TEST(Neon, NotCompiled) { GTEST_SKIP() << "the NEON kernels are not compiled into this build"; }

#endif  // LOGQUANT_HAVE_NEON_KERNELS
