// NEON-only checks that the ISA-parameterised test_kernels cannot make. NEON comes in two tables,
// neon (ARMv8.0: SMULL + SADALP) and neon_dotprod (SDOT), both kernels/generic/ over the same
// ops but for the int8 products; test_kernels runs each against the scalar reference. Here the
// dotprod check is compared with what the test runner says the CPU has
// (LOGQUANT_TEST_EXPECT_DOTPROD=0|1, set by the aarch64 ctest entries: qemu's default CPU has
// dotprod, `-cpu cortex-a53` does not), with the table dispatch picks, and the two tables are
// compared with each other bit for bit.
#include <gtest/gtest.h>

#include <logquant/logquant.hpp>

#if LOGQUANT_HAVE_NEON_KERNELS
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

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

TEST(NeonDispatch, DotprodCheckMatchesTheCpuAndTheTable) {
  const bool has = kernels::isa_supported(Isa::kNeonDotprod);
  std::printf("dotprod (SDOT): %s\n", has ? "yes" : "no");
  if (const char* expect = std::getenv("LOGQUANT_TEST_EXPECT_DOTPROD")) {
    ASSERT_TRUE(std::string(expect) == "0" || std::string(expect) == "1") << expect;
    EXPECT_EQ(has, std::string(expect) == "1") << "LOGQUANT_TEST_EXPECT_DOTPROD=" << expect;
  }
  EXPECT_TRUE(kernels::isa_supported(Isa::kNeon));
  EXPECT_EQ(kernels::select_table(nullptr).isa, has ? Isa::kNeonDotprod : Isa::kNeon);
}

// The same integers and the same float operations after them: the two tables agree exactly.
TEST(NeonAttention, DotprodEqualsArmv8BitForBit) {
  if (!kernels::isa_supported(Isa::kNeonDotprod)) GTEST_SKIP() << "this CPU has no dotprod (SDOT)";
  for (unsigned key_bits : {2u, 4u, 8u})
    for (unsigned value_bits : {2u, 4u, 8u}) {
      SCOPED_TRACE("bits " + std::to_string(key_bits) + "/" + std::to_string(value_bits));
      const QuantizedBlock b = make_block(80, key_bits, value_bits, 16,
                                          {16, 608, logquant_test::Overlay::kSome},
                                          key_bits * value_bits);
      const std::vector<float> q = make_rows(5, 80, 3);
      AttentionState base(5, 80), dot(5, 80);
      kernels::table_for(Isa::kNeon).for_bits(key_bits, value_bits)
          .attend_quantized(b.view, q.data(), 0, b.view.tokens, view_of(base));
      kernels::table_for(Isa::kNeonDotprod).for_bits(key_bits, value_bits)
          .attend_quantized(b.view, q.data(), 0, b.view.tokens, view_of(dot));
      EXPECT_EQ(base.max, dot.max);
      EXPECT_EQ(base.sum, dot.sum);
      EXPECT_EQ(base.acc, dot.acc);
    }
}

}  // namespace

#else

TEST(Neon, NotCompiled) { GTEST_SKIP() << "the NEON kernels are not compiled into this build"; }

#endif  // LOGQUANT_HAVE_NEON_KERNELS
