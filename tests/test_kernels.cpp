// Every kernel table, with the ISA as the test parameter, so test names end in /scalar, /avx2,
// /avxvnni, /avx512, /neon or /neon_dotprod. Each table, the scalar reference included, is checked
// against the independent reference of tests/reference.hpp (a naive quantizer and attention in double, no
// library code): quantize kernels code for code, attention within a bound derived from the
// quantization step. The SIMD tables are also checked against the scalar table: integer outputs
// (codes, packed bytes, fp16 metadata) byte for byte, float outputs within a tolerance stated next
// to the check, with its reason; those comparisons skip /scalar, saying why, since it would compare
// the table with itself. An ISA this build or CPU lacks is skipped with that reason, unless
// LOGQUANT_TEST_REQUIRE (a comma-separated list; CI sets every x86 ISA the host has) names it: then
// the skip is a failure, so a CI host that silently runs no SIMD test cannot pass. Also covered:
// LOGQUANT_ISA forcing (parsing, errors, the choice default_table() makes, in a child process) and
// the table a KVCache uses by default.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <logquant/logquant.hpp>
#include <random>
#include <string>
#include <vector>

#include "quantized_block.hpp"
#include "reference.hpp"

#if defined(__linux__)
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace {

using namespace logquant;
using kernels::KernelTable;

const std::vector<Isa> kAllIsas = {Isa::kScalar, Isa::kAvx2,  Isa::kAvxVnni,
                                   Isa::kAvx512, Isa::kNeon, Isa::kNeonDotprod};
const std::vector<std::size_t> kHeadDims = {8, 16, 24, 64, 80, 96, 128, 256};

// ---------------------------------------------------------------------------------------------
// LOGQUANT_TEST_REQUIRE: which ISAs must run here.

std::vector<Isa> parse_required(const char* env) {
  std::vector<Isa> out;
  if (env == nullptr) return out;
  std::string list(env);
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    const std::string name = list.substr(start, comma - start);
    if (!name.empty()) out.push_back(kernels::parse_isa(name));  // unknown names throw
    start = comma + 1;
  }
  return out;
}

enum class Availability { kRun, kSkip, kFail };

Availability availability(Isa isa, bool supported, const std::vector<Isa>& required) {
  if (supported) return Availability::kRun;
  return std::find(required.begin(), required.end(), isa) != required.end() ? Availability::kFail
                                                                            : Availability::kSkip;
}

// Runs the rest of the test only where `isa` is supported: otherwise skips, saying why, or fails
// when LOGQUANT_TEST_REQUIRE names it. A macro, since GTEST_SKIP returns from the test body.
#define LOGQUANT_REQUIRE_OR_SKIP(isa)                                                            \
  do {                                                                                           \
    std::vector<Isa> required_;                                                                  \
    ASSERT_NO_THROW(required_ = parse_required(std::getenv("LOGQUANT_TEST_REQUIRE")))            \
        << "LOGQUANT_TEST_REQUIRE names an unknown ISA";                                         \
    switch (availability(isa, kernels::isa_supported(isa), required_)) {                         \
      case Availability::kFail:                                                                  \
        FAIL() << "ISA " << isa_name(isa)                                                        \
               << " is required by LOGQUANT_TEST_REQUIRE but not supported by this build or CPU"; \
      case Availability::kSkip:                                                                  \
        GTEST_SKIP() << "ISA " << isa_name(isa) << " is not supported by this build or CPU";     \
      case Availability::kRun: break;                                                            \
    }                                                                                            \
  } while (false)

// In a *MatchesScalar test, /scalar would compare the scalar table with itself: it skips, and the
// *Reference tests check the scalar table against tests/reference.hpp instead.
#define LOGQUANT_SKIP_SELF_COMPARISON()                                               \
  do {                                                                                \
    if (GetParam() == Isa::kScalar)                                                   \
      GTEST_SKIP() << "the scalar table is what this test compares with; the "        \
                      "*Reference tests check it against tests/reference.hpp";        \
  } while (false)

/// A table's attention kernel for a view's bit widths.
kernels::AttendQuantizedFn attend_fn(const KernelTable& t, const kernels::QuantizedHeadView& v) {
  return t.for_bits(v.key_bits, v.value_bits).attend_quantized;
}

class Kernels : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    const Isa isa = GetParam();
    LOGQUANT_REQUIRE_OR_SKIP(isa);
    table_ = &kernels::table_for(isa);
    ASSERT_EQ(table_->isa, isa);
  }
  const KernelTable& table() const { return *table_; }
  const KernelTable& ref() const { return kernels::scalar_table(); }

 private:
  const KernelTable* table_ = nullptr;
};

INSTANTIATE_TEST_SUITE_P(Isa, Kernels, ::testing::ValuesIn(kAllIsas),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(isa_name(info.param));
                         });

// ---------------------------------------------------------------------------------------------
// Quantizer inputs: Gaussian with hard cases mixed in, chosen by (row, column) so every group
// meets some: constant columns (scale 0), runs of +0 and -0 (which zero becomes the minimum
// decides the fp16 bits), large values near the fp16 range, tiny values with subnormal fp16
// metadata, and a narrow outlier channel.
float hard_sample(std::mt19937& rng, std::size_t row, std::size_t col) {
  std::normal_distribution<float> nd;
  switch ((col * 7 + row / 5) % 23) {
    case 3: return 0.375f;                               // constant over rows 0-4, 5-9, ...
    case 5: return (row + col) % 3 == 0 ? -0.0f : 0.0f;  // signed zeros
    case 8: return (row + col) % 4 == 0 ? -0.0f : std::fabs(nd(rng));  // zero minimum
    case 11: return 6.0e4f * std::tanh(nd(rng));                       // near +-65504
    case 13: return 3.0e-6f * nd(rng);        // subnormal fp16 scale and min
    case 17: return 8.0f + 0.001f * nd(rng);  // outlier channel, narrow range
    default: return nd(rng);
  }
}

// Attention inputs: keys and values as a model makes them, Gaussian with outlier channels (every
// 16th channel offset by 6) and a few constant ones, so softmax weights stay spread out.
float model_sample(std::mt19937& rng, std::size_t row, std::size_t col) {
  std::normal_distribution<float> nd;
  if (col % 16 == 3) return 6.0f + 2.0f * nd(rng);
  if (col % 29 == 7) return 0.5f;
  (void)row;
  return nd(rng);
}

// A [rows][stride] matrix stored one float past an aligned start (misaligned for every ISA).
struct Input {
  std::vector<float> storage;
  float* data;
};

Input make_input(std::size_t rows, std::size_t cols, std::size_t stride, std::uint32_t seed,
                 bool hard = false) {
  std::mt19937 rng(seed);
  Input in;
  in.storage.assign(rows * stride + 17, std::numeric_limits<float>::quiet_NaN());
  in.data = in.storage.data() + 1;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c)
      in.data[r * stride + c] = hard ? hard_sample(rng, r, c) : model_sample(rng, r, c);
  return in;
}

// Output buffers get a guard region after the bytes a kernel may touch.
constexpr std::size_t kGuard = 64;
constexpr std::uint8_t kGuardByte = 0xa5;

std::vector<std::uint8_t> guarded_tiles(std::size_t bytes) {
  std::vector<std::uint8_t> v(bytes + kGuard, kGuardByte);
  std::fill(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(bytes), 0);
  return v;
}

std::vector<std::uint8_t> meta_bytes(const std::vector<GroupParams>& m) {
  std::vector<std::uint8_t> out(m.size() * sizeof(GroupParams));
  std::memcpy(out.data(), m.data(), out.size());
  return out;
}

std::vector<GroupParams> guarded_meta(std::size_t n) {
  std::vector<GroupParams> v(n + 4);
  for (std::size_t i = n; i < v.size(); ++i) v[i] = GroupParams{0xbeef, 0xdead};
  return v;
}

// Value groups a cache accepts for head_dim: multiples of 16 dividing it, and head_dim itself.
std::vector<std::size_t> value_groups(std::size_t dim) {
  std::vector<std::size_t> out;
  for (std::size_t g = 16; g < dim; g += 16)
    if (dim % g == 0) out.push_back(g);
  out.push_back(dim);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Quantize kernels: byte for byte.

TEST_P(Kernels, QuantizeKeyGroupMatchesScalarBytes) {
  LOGQUANT_SKIP_SELF_COMPARISON();
  for (unsigned bits : {2u, 4u, 8u})
    for (std::size_t dim : kHeadDims)
      for (std::size_t tokens = 1; tokens <= 40; ++tokens) {
        SCOPED_TRACE("bits " + std::to_string(bits) + ", head_dim " + std::to_string(dim) +
                     ", tokens " + std::to_string(tokens));
        const std::size_t stride = tokens % 2 ? dim + 5 : dim;  // strided and packed rows
        const Input in = make_input(tokens, dim, stride,
                                    1000u + static_cast<std::uint32_t>(tokens * dim + bits), true);
        const std::size_t bytes = TileMatrix{bits, tiles_for(dim)}.bytes_for_rows(tokens);
        std::vector<std::uint8_t> want = guarded_tiles(bytes), got = want;
        std::vector<GroupParams> want_meta = guarded_meta(dim), got_meta = want_meta;
        ref().quantize_key_group[kernels::bits_index(bits)](in.data, tokens, dim, stride, want_meta.data(), want.data());
        table().quantize_key_group[kernels::bits_index(bits)](in.data, tokens, dim, stride, got_meta.data(), got.data());
        ASSERT_EQ(meta_bytes(got_meta), meta_bytes(want_meta));
        ASSERT_EQ(got, want);
      }
}

TEST_P(Kernels, QuantizeValueTokenMatchesScalarBytes) {
  LOGQUANT_SKIP_SELF_COMPARISON();
  for (unsigned bits : {2u, 4u, 8u})
    for (std::size_t dim : kHeadDims)
      for (std::size_t group : value_groups(dim))
        for (std::size_t first : {0u, 7u}) {  // dense indices first .. first + 39: tile tails
          SCOPED_TRACE("bits " + std::to_string(bits) + ", head_dim " + std::to_string(dim) +
                       ", group " + std::to_string(group) + ", first " + std::to_string(first));
          const std::size_t tokens = 40, groups = dim / group, last = first + tokens;
          const Input in =
              make_input(tokens, dim, dim,
                         2000u + static_cast<std::uint32_t>(dim * bits + group + first), true);
          const std::size_t row_bytes = tiles_for(dim) * tile_bytes(bits);
          std::vector<std::uint8_t> want = guarded_tiles(tiles_for(last) * row_bytes), got = want;
          std::vector<GroupParams> want_meta = guarded_meta(last * groups), got_meta = want_meta;
          for (std::size_t i = 0; i < tokens; ++i) {
            const std::size_t dense = first + i;
            ref().quantize_value_token[kernels::bits_index(bits)](in.data + i * dim, dim, group, dense,
                                       &want_meta[dense * groups], &want[(dense / 16) * row_bytes]);
            table().quantize_value_token[kernels::bits_index(bits)](in.data + i * dim, dim, group, dense,
                                         &got_meta[dense * groups], &got[(dense / 16) * row_bytes]);
          }
          ASSERT_EQ(meta_bytes(got_meta), meta_bytes(want_meta));
          ASSERT_EQ(got, want);
        }
}

// ---------------------------------------------------------------------------------------------
// Attention kernels: float results within a tolerance.

using logquant_test::QuantizedBlock;

// One KV head's quantized block, built with the scalar kernels (the SIMD quantizers are checked
// byte for byte above) so both attention kernels read the same codes. key_ramp > 0 replaces
// channel 0 of the keys by -key_ramp * (t / 16), so scores fall by that much per value tile;
// values are multiplied by value_scale.
QuantizedBlock make_block(std::size_t dim, unsigned key_bits, unsigned value_bits,
                          std::size_t value_group, const logquant_test::Layout& layout,
                          std::uint32_t seed, float key_ramp = 0.0f, float value_scale = 1.0f) {
  const std::size_t tokens = layout.tokens;
  Input keys = make_input(tokens, dim, dim, seed), values = make_input(tokens, dim, dim, seed + 1);
  for (std::size_t i = 0; i < tokens; ++i) {
    if (key_ramp > 0.0f) keys.data[i * dim] = -key_ramp * static_cast<float>(i / 16);
    for (std::size_t c = 0; c < dim; ++c) values.data[i * dim + c] *= value_scale;
  }
  return logquant_test::pack_block(dim, key_bits, value_bits, value_group, layout, keys.data,
                                   values.data);
}

std::vector<float> random_queries(std::size_t heads, std::size_t dim, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> q(heads * dim);
  const float scale = 1.0f / std::sqrt(static_cast<float>(dim));  // pre-scaled, as the cache does
  for (float& x : q) x = nd(rng) * scale;
  return q;
}

// A starting state: empty, or the state after some full-precision tokens (scalar kernel), so the
// kernels are also checked folding into a state that already holds a maximum and sums.
AttentionState start_state(std::size_t heads, std::size_t dim, bool empty,
                           const std::vector<float>& q, std::uint32_t seed) {
  AttentionState st(heads, dim);
  if (empty) return st;
  const std::size_t n = 5;
  const Input k = make_input(n, dim, dim, seed), v = make_input(n, dim, dim, seed + 1);
  kernels::scalar_table().attend_full(
      kernels::FullHeadView{k.data, v.data, n, dim}, q.data(),
      kernels::StateView{st.max.data(), st.sum.data(), st.acc.data(), heads});
  return st;
}

kernels::StateView view_of(AttentionState& st) {
  return kernels::StateView{st.max.data(), st.sum.data(), st.acc.data(), st.heads};
}

// Compares two states for the same tokens. Per head: log(sum) + max (the log-sum-exp of the
// scores) within `lse_tol` relative to max(1, |lse|), and each output acc / sum within `out_tol` of
// the scalar, relative to the largest |output| of that head (at least 1e-3 of it). Returns the
// largest relative output error seen.
double expect_states_close(const AttentionState& want, const AttentionState& got, double lse_tol,
                           double out_tol) {
  double worst = 0.0;
  for (std::size_t h = 0; h < want.heads; ++h) {
    if (want.sum[h] == 0.0f) {
      EXPECT_EQ(got.sum[h], 0.0f) << "head " << h;
      continue;
    }
    const double lse_want = want.max[h] + std::log(static_cast<double>(want.sum[h]));
    const double lse_got = got.max[h] + std::log(static_cast<double>(got.sum[h]));
    EXPECT_NEAR(lse_got, lse_want, lse_tol * std::max(1.0, std::fabs(lse_want))) << "head " << h;
    double scale = 0.0;
    for (std::size_t c = 0; c < want.head_dim; ++c)
      scale = std::max(scale, std::fabs(double(want.acc[h * want.head_dim + c]) / want.sum[h]));
    scale = std::max(scale, 1e-3);
    for (std::size_t c = 0; c < want.head_dim; ++c) {
      const double a = double(want.acc[h * want.head_dim + c]) / want.sum[h];
      const double b = double(got.acc[h * got.head_dim + c]) / got.sum[h];
      const double err = std::fabs(a - b) / scale;
      worst = std::max(worst, std::isnan(err) ? 1e300 : err);
      if (!(err <= out_tol)) {
        ADD_FAILURE() << "head " << h << " channel " << c << ": " << b << " vs scalar " << a
                      << " (relative error " << err << " > " << out_tol << ")";
        return worst;
      }
    }
  }
  return worst;
}

// Tolerances for the quantized attention kernels against the scalar reference. The integer dot
// products are identical by construction; what differs is float rounding: summation order (the
// bias Σ q_c min_c, the per-lane softmax sums, FMA contraction), a vector exp within 1 ulp of
// std::exp (VectorExpWithinTwoUlp), and scales computed as products with 1 / limit instead of
// quotients. Scores and the log-sum-exp therefore agree to ~1e-6 relative. The softmax weights
// then pass through the int8 tile-weight quantization (W_j = round(limit w_j / max w)): a weight
// that lands within an ulp of a rounding tie can round the other way, moving the output by one
// weight step (max w / 127, or / 16383 with two digits) times one token's value. The largest
// differences measured over this suite on AVX2 and AVX-512 are 8.8e-5 (one digit) and 4.3e-5 (two
// digits) of the head's output range (printed by AttendQuantizedMatchesScalar); we allow 1e-3 and
// 2e-4.
constexpr double kLseTolerance = 2e-5;
double output_tolerance(unsigned value_bits) {
  return kernels::operand_digits(value_bits) == 1 ? 1e-3 : 2e-4;
}

TEST_P(Kernels, AttendQuantizedMatchesScalar) {
  LOGQUANT_SKIP_SELF_COMPARISON();
  // Key groups of 16, 48 (a group across chunk boundaries), and longer than a 256-token chunk;
  // FP overlays: none, scattered plus a whole tile row, and everything (nothing to weigh).
  using logquant_test::Overlay;
  const std::vector<logquant_test::Layout> layouts = {
      {16, 208, Overlay::kSome},
      {48, 240, Overlay::kNone},
      {320, 640, Overlay::kSome},
      {32, 128, Overlay::kAll},
  };
  const std::vector<std::pair<unsigned, unsigned>> bit_pairs = {{2, 2}, {4, 4}, {8, 8},
                                                                {2, 8}, {8, 4}, {4, 2}};
  double worst[2] = {0.0, 0.0};
  std::size_t cases = 0;
  for (std::size_t di = 0; di < kHeadDims.size(); ++di)
    for (std::size_t bi = 0; bi < bit_pairs.size(); ++bi) {
      const std::size_t dim = kHeadDims[di];
      const auto [key_bits, value_bits] = bit_pairs[bi];
      const std::vector<std::size_t> groups_choice = value_groups(dim);
      const std::size_t value_group = groups_choice[(di + bi) % groups_choice.size()];
      const logquant_test::Layout& layout = layouts[(di + bi) % layouts.size()];
      const QuantizedBlock block = make_block(dim, key_bits, value_bits, value_group, layout,
                                              static_cast<std::uint32_t>(100 * di + bi));
      const std::size_t n = block.view.tokens;
      for (std::size_t heads : {1u, 2u, 4u, 8u, 12u}) {
        if (heads == 12 && dim > 96) continue;  // 12 covers blocks of heads; keep the suite quick
        const std::vector<float> q =
            random_queries(heads, dim, static_cast<std::uint32_t>(7 * heads + dim));
        // Whole range, last tile, middle tiles, from a tile boundary to the end, first tile.
        const std::size_t tail = n - 16;
        const std::vector<std::pair<std::size_t, std::size_t>> ranges = {
            {0, n}, {tail, n}, {32, 112}, {48, n}, {0, 16}};
        for (const auto& [begin, end] : ranges) {
          SCOPED_TRACE("head_dim " + std::to_string(dim) + ", bits " + std::to_string(key_bits) +
                       "/" + std::to_string(value_bits) + ", value_group " +
                       std::to_string(value_group) + ", heads " + std::to_string(heads) +
                       ", range [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                       std::to_string(n));
          const bool empty = (begin + heads) % 2 == 0;
          AttentionState want = start_state(heads, dim, empty, q, 77), got = want;
          attend_fn(ref(), block.view)(block.view, q.data(), begin, end, view_of(want));
          attend_fn(table(), block.view)(block.view, q.data(), begin, end, view_of(got));
          const double err =
              expect_states_close(want, got, kLseTolerance, output_tolerance(value_bits));
          double& w = worst[kernels::operand_digits(value_bits) - 1];
          w = std::max(w, err);
          ++cases;
          if (HasFailure()) return;
        }
      }
    }
  std::printf(
      "%zu cases; largest output difference, relative to the head's output range: "
      "%.3g (1-digit weights), %.3g (2-digit weights)\n",
      cases, worst[0], worst[1]);
}

// Operands whose maximum is so small that limit / max overflows quantize to 0 on every ISA
// (kernels::operand_inverse): a query of ~1e-39 (all digits 0, only the bias remains), and value
// tiles whose softmax weights are ~e^-85 times a small value scale (all int8 weights 0).
TEST_P(Kernels, AttendQuantizedWithVanishingOperands) {
  LOGQUANT_SKIP_SELF_COMPARISON();
  const std::size_t dim = 64, heads = 4;
  {
    SCOPED_TRACE("query of 1e-39");
    const QuantizedBlock block = make_block(dim, 2, 2, 32, {48, 144}, 41);
    std::vector<float> q = random_queries(heads, dim, 42);
    for (float& x : q) x *= 1e-38f;
    AttentionState want(heads, dim), got(heads, dim);
    attend_fn(ref(), block.view)(block.view, q.data(), 0, block.view.tokens, view_of(want));
    attend_fn(table(), block.view)(block.view, q.data(), 0, block.view.tokens, view_of(got));
    expect_states_close(want, got, kLseTolerance, output_tolerance(2));
    // Scores this small leave the softmax flat, so check them directly: the largest score is the
    // bias plus qscale times the digit dot product, which wrong digits would move by orders of
    // magnitude; the bias alone differs by summation order.
    for (std::size_t h = 0; h < heads; ++h)
      EXPECT_NEAR(got.max[h], want.max[h], 1e-4 * std::fabs(want.max[h])) << "head " << h;
  }
  for (unsigned bits : {2u, 8u}) {
    SCOPED_TRACE("scores falling by 85 per tile, values x 1e-3, " + std::to_string(bits) + "-bit");
    const QuantizedBlock block =
        make_block(dim, bits, bits, 32, {64, 256}, 43, 85.0f, 1e-3f);
    std::vector<float> q(heads * dim, 0.0f);
    for (std::size_t h = 0; h < heads; ++h) q[h * dim] = 1.0f;  // score = channel 0 + bias
    AttentionState want(heads, dim), got(heads, dim);
    attend_fn(ref(), block.view)(block.view, q.data(), 0, block.view.tokens, view_of(want));
    attend_fn(table(), block.view)(block.view, q.data(), 0, block.view.tokens, view_of(got));
    expect_states_close(want, got, kLseTolerance, output_tolerance(bits));
  }
}

TEST_P(Kernels, AttendQuantizedEmptyRangeLeavesStateAlone) {
  const QuantizedBlock block = make_block(64, 2, 2, 32, {16, 32}, 5);
  const std::vector<float> q = random_queries(2, 64, 6);
  AttentionState want = start_state(2, 64, false, q, 8), got = want;
  attend_fn(table(), block.view)(block.view, q.data(), 32, 32, view_of(got));
  EXPECT_EQ(got.max, want.max);
  EXPECT_EQ(got.sum, want.sum);
  EXPECT_EQ(got.acc, want.acc);
}

// Full-precision block: the same products in a different order and a vector exp, nothing
// quantized, so outputs agree to float rounding: 1e-5 of the output range, 1e-5 on the
// log-sum-exp.
TEST_P(Kernels, AttendFullMatchesScalar) {
  LOGQUANT_SKIP_SELF_COMPARISON();
  std::size_t cases = 0;
  for (std::size_t dim : kHeadDims)
    for (std::size_t tokens : {1u, 2u, 7u, 8u, 9u, 15u, 16u, 17u, 31u, 32u, 33u, 40u, 100u})
      for (std::size_t heads : {1u, 3u, 8u}) {
        SCOPED_TRACE("head_dim " + std::to_string(dim) + ", tokens " + std::to_string(tokens) +
                     ", heads " + std::to_string(heads));
        const Input k = make_input(tokens, dim, dim, static_cast<std::uint32_t>(dim + tokens));
        const Input v = make_input(tokens, dim, dim, static_cast<std::uint32_t>(dim * tokens + 3));
        const std::vector<float> q =
            random_queries(heads, dim, static_cast<std::uint32_t>(heads + tokens));
        const kernels::FullHeadView fv{k.data, v.data, tokens, dim};
        AttentionState want = start_state(heads, dim, tokens % 3 != 0, q, 9), got = want;
        ref().attend_full(fv, q.data(), view_of(want));
        table().attend_full(fv, q.data(), view_of(got));
        expect_states_close(want, got, 1e-5, 1e-5);
        ++cases;
        if (HasFailure()) return;
      }
  EXPECT_GT(cases, 0u);
}

// ---------------------------------------------------------------------------------------------
// Every table, scalar included, against the independent reference (tests/reference.hpp).

// The quantize kernels' metadata equals the reference quantizer's exactly, and so do the codes,
// except where x lies within 1e-4 of a step from a rounding tie: the kernels evaluate
// (x - min) * (1 / scale) in float, the reference (x - min) / scale in double, so there either
// rounding is right and the codes may differ by one.
// The decode kernels against the scalar table, bit for bit (min + code * scale has one rounding):
// every width pair and head dim, key groups of 16 to 320, ranges that start and end inside tiles
// and groups, and an output stride wider than a row, whose gaps must stay untouched.
TEST_P(Kernels, DequantizeMatchesScalarBits) {
  LOGQUANT_SKIP_SELF_COMPARISON();
  using logquant_test::Overlay;
  const std::vector<logquant_test::Layout> layouts = {
      {16, 208, Overlay::kSome}, {48, 240, Overlay::kNone}, {320, 640, Overlay::kSome}};
  std::size_t cases = 0;
  for (std::size_t di = 0; di < kHeadDims.size(); ++di)
    for (unsigned key_bits : {2u, 4u, 8u})
      for (unsigned value_bits : {2u, 4u, 8u}) {
        const std::size_t dim = kHeadDims[di];
        const std::vector<std::size_t> groups_choice = value_groups(dim);
        const std::size_t value_group = groups_choice[(di + key_bits) % groups_choice.size()];
        const QuantizedBlock block =
            make_block(dim, key_bits, value_bits, value_group, layouts[(di + value_bits) % 3],
                       static_cast<std::uint32_t>(10 * di + key_bits + value_bits));
        const std::size_t n = block.view.tokens, stride = dim + 3;
        const kernels::CacheKernels want_k = ref().for_bits(key_bits, value_bits);
        const kernels::CacheKernels got_k = table().for_bits(key_bits, value_bits);
        for (const auto& [begin, end] : std::vector<std::pair<std::size_t, std::size_t>>{
                 {0, n}, {5, n - 3}, {17, 18}, {n - 1, n}, {47, 97}, {7, 7}}) {
          SCOPED_TRACE("head_dim " + std::to_string(dim) + ", bits " + std::to_string(key_bits) +
                       "/" + std::to_string(value_bits) + ", key_group " +
                       std::to_string(block.view.key_group) + ", range [" +
                       std::to_string(begin) + ", " + std::to_string(end) + ")");
          for (bool keys : {true, false}) {
            std::vector<float> want((end - begin) * stride + 1, -7.5f), got = want;
            (keys ? want_k.dequantize_keys : want_k.dequantize_values)(block.view, begin, end,
                                                                       want.data(), stride);
            (keys ? got_k.dequantize_keys : got_k.dequantize_values)(block.view, begin, end,
                                                                     got.data(), stride);
            ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
                << (keys ? "keys" : "values");
            for (std::size_t i = 0; i < want.size(); ++i) {
              if (i % stride >= dim || i == want.size() - 1) {
                ASSERT_EQ(got[i], -7.5f) << i;
              }
            }
          }
          ++cases;
        }
      }
  EXPECT_EQ(cases, kHeadDims.size() * 9 * 6);
}

TEST_P(Kernels, QuantizeMatchesIndependentReference) {
  std::size_t checked = 0, ties = 0;
  auto check = [&](const logquant_ref::Grid& g, const GroupParams& p, const float* x,
                   std::size_t n, std::size_t stride, auto&& code_of) {
    ASSERT_EQ(double(p.min_f()), g.lo) << "group minimum";
    ASSERT_EQ(double(p.scale_f()), g.step) << "group scale";
    for (std::size_t i = 0; i < n; ++i) {
      const double v = x[i * stride];
      const int got = code_of(i), want = static_cast<int>(g.code(v));
      ++checked;
      if (got == want) continue;
      ASSERT_TRUE(g.near_tie(v) && std::abs(got - want) == 1)
          << "element " << i << " = " << v << ": code " << got << ", reference " << want;
      ++ties;
    }
  };
  for (unsigned bits : {2u, 4u, 8u})
    for (std::size_t dim : kHeadDims)
      for (std::size_t tokens : {1u, 5u, 16u, 17u, 40u}) {
        SCOPED_TRACE("keys, bits " + std::to_string(bits) + ", head_dim " + std::to_string(dim) +
                     ", tokens " + std::to_string(tokens));
        const std::size_t stride = tokens % 2 ? dim + 5 : dim;
        const Input in = make_input(tokens, dim, stride,
                                    5000u + static_cast<std::uint32_t>(tokens * dim + bits), true);
        const TileMatrix matrix{bits, tiles_for(dim)};
        std::vector<std::uint8_t> tiles = guarded_tiles(matrix.bytes_for_rows(tokens));
        std::vector<GroupParams> meta = guarded_meta(dim);
        table().quantize_key_group[kernels::bits_index(bits)](in.data, tokens, dim, stride, meta.data(), tiles.data());
        for (std::size_t c = 0; c < dim; ++c) {
          const logquant_ref::Grid g = logquant_ref::fit(in.data + c, tokens, stride, bits);
          check(g, meta[c], in.data + c, tokens, stride,
                [&](std::size_t t) { return int(matrix.get(tiles.data(), t, c)); });
          if (HasFatalFailure()) return;
        }
      }
  for (unsigned bits : {2u, 4u, 8u})
    for (std::size_t dim : kHeadDims)
      for (std::size_t group : value_groups(dim)) {
        SCOPED_TRACE("values, bits " + std::to_string(bits) + ", head_dim " + std::to_string(dim) +
                     ", group " + std::to_string(group));
        const std::size_t tokens = 20, groups = dim / group;
        const Input in = make_input(tokens, dim, dim,
                                    6000u + static_cast<std::uint32_t>(dim * bits + group), true);
        const std::size_t row_bytes = tiles_for(dim) * tile_bytes(bits);
        std::vector<std::uint8_t> tiles = guarded_tiles(tiles_for(tokens) * row_bytes);
        std::vector<GroupParams> meta = guarded_meta(tokens * groups);
        for (std::size_t t = 0; t < tokens; ++t)
          table().quantize_value_token[kernels::bits_index(bits)](in.data + t * dim, dim, group, t, &meta[t * groups],
                                       &tiles[(t / 16) * row_bytes]);
        for (std::size_t t = 0; t < tokens; ++t)
          for (std::size_t g = 0; g < groups; ++g) {
            const float* x = in.data + t * dim + g * group;
            check(logquant_ref::fit(x, group, 1, bits), meta[t * groups + g], x, group, 1,
                  [&](std::size_t i) {
                    const std::size_t c = g * group + i;
                    return int(tile_get(&tiles[(t / 16) * row_bytes + (c / 16) * tile_bytes(bits)],
                                        bits, c % 16, t % 16));
                  });
            if (HasFatalFailure()) return;
          }
      }
  std::printf("%zu codes checked, %zu within 1e-4 of a tie and one apart\n", checked, ties);
}

// Quantized attention against softmax attention in double over the reference's dequantized cache.
// The kernels round their dot-product operands (the int8 query per key group, the int8 softmax
// weights per value tile; kernels/common.hpp), nothing else: we require that rounding to cost at
// most 0.3 of what b-bit quantization itself costs (logquant_ref::predicted_rms), as the
// root mean square over every head and channel. With b-bit keys and values, the same bound rejects
// a quantizer one bit coarser: the reference with one key bit (or one value bit) fewer lands
// farther than that from the b-bit reference, so a kernel that lost a bit of its codes fails here
// (with mixed widths the coarser part dominates the bound, so those cases skip this check). And
// the reference itself must sit within [0.5, 1.5] x predicted_rms of exact attention, which is
// what makes the prediction the cost of quantization. Measured ratios are printed.
using logquant_ref::kOperandShare;

// Each head's output acc / sum, in double.
std::vector<double> outputs_of(const AttentionState& st) {
  std::vector<double> out(st.heads * st.head_dim);
  for (std::size_t h = 0; h < st.heads; ++h)
    for (std::size_t c = 0; c < st.head_dim; ++c)
      out[h * st.head_dim + c] = st.acc[h * st.head_dim + c] / st.sum[h];
  return out;
}

TEST_P(Kernels, AttendQuantizedWithinBoundOfReference) {
  const std::vector<logquant_test::Layout> layouts = {{16, 192}, {64, 192}};
  const std::vector<std::pair<unsigned, unsigned>> bit_pairs = {{2, 2}, {4, 4}, {8, 8},
                                                                {4, 2}, {2, 8}};
  double worst_share = 0.0, model_lo = HUGE_VAL, model_hi = 0.0, coarse_lo = HUGE_VAL;
  for (std::size_t dim : {16u, 64u, 128u})
    for (std::size_t li = 0; li < layouts.size(); ++li)
      for (const auto& [key_bits, value_bits] : bit_pairs) {
        const std::size_t value_group = dim == 16 ? 16 : 32;
        const logquant_test::Layout& layout = layouts[li];
        const std::size_t n = layout.tokens;
        std::vector<std::vector<std::size_t>> groups(n / layout.key_group);
        for (std::size_t p = 0; p < n; ++p) groups[p / layout.key_group].push_back(p);
        SCOPED_TRACE("head_dim " + std::to_string(dim) + ", bits " + std::to_string(key_bits) +
                     "/" + std::to_string(value_bits) + ", layout " + std::to_string(li));
        const auto seed = static_cast<std::uint32_t>(300 + dim + 10 * li + key_bits);
        const Input k = make_input(n, dim, dim, seed), v = make_input(n, dim, dim, seed + 1);
        const QuantizedBlock block =
            logquant_test::pack_block(dim, key_bits, value_bits, value_group, layout, k.data, v.data);
        const std::size_t heads = 4;
        const std::vector<float> q = random_queries(heads, dim, seed + 2);

        AttentionState st(heads, dim);
        attend_fn(table(), block.view)(block.view, q.data(), 0, n, view_of(st));
        const std::vector<double> got = outputs_of(st);

        using logquant_ref::quantize_head;
        auto attend_ref = [&](const logquant_ref::Head& r) {
          return logquant_ref::attention(r.keys, r.values, n, dim, q.data(), heads);
        };
        const auto exact = logquant_ref::exact_head(k.data, v.data, n, dim, dim);
        const auto ref = quantize_head(k.data, v.data, n, dim, dim, groups, value_group, key_bits,
                                       value_bits);
        const std::vector<double> want = attend_ref(ref);
        const double predicted = logquant_ref::predicted_rms(exact, ref, q.data(), heads);
        ASSERT_GT(predicted, 0.0);
        const double err = logquant_ref::rms_difference(got, want);
        EXPECT_LE(err, kOperandShare * predicted) << "predicted quantization cost " << predicted;
        worst_share = std::max(worst_share, err / predicted);

        const double model = logquant_ref::rms_difference(want, attend_ref(exact)) / predicted;
        EXPECT_TRUE(model >= 0.5 && model <= 1.5) << "reference vs exact: " << model << " x predicted";
        model_lo = std::min(model_lo, model);
        model_hi = std::max(model_hi, model);
        if (key_bits != value_bits) continue;  // then the coarser part dominates the bound
        for (const auto& [kb, vb] : {std::pair<unsigned, unsigned>{key_bits - 1, value_bits},
                                     {key_bits, value_bits - 1}}) {
          const auto coarse = quantize_head(k.data, v.data, n, dim, dim, groups, value_group, kb, vb);
          const double apart = logquant_ref::rms_difference(attend_ref(coarse), want) / predicted;
          EXPECT_GT(apart, kOperandShare) << kb << "/" << vb << "-bit reference passes the bound";
          coarse_lo = std::min(coarse_lo, apart);
        }
        if (HasFailure()) return;
      }
  std::printf("kernel vs reference: at most %.3g x predicted (bound %.2g); reference vs exact: "
              "%.2f-%.2f x predicted; one bit coarser: at least %.2f x predicted\n",
              worst_share, kOperandShare, model_lo, model_hi, coarse_lo);
}

// The full-precision block against attention in double over the same rows: nothing is quantized,
// so only float rounding separates them (1e-5 of the output's RMS, at least 1e-5).
TEST_P(Kernels, AttendFullMatchesReference) {
  for (std::size_t dim : kHeadDims)
    for (std::size_t tokens : {1u, 7u, 16u, 17u, 100u}) {
      SCOPED_TRACE("head_dim " + std::to_string(dim) + ", tokens " + std::to_string(tokens));
      const std::size_t heads = 3;
      const Input k = make_input(tokens, dim, dim, static_cast<std::uint32_t>(dim + tokens));
      const Input v = make_input(tokens, dim, dim, static_cast<std::uint32_t>(dim * tokens + 3));
      const std::vector<float> q = random_queries(heads, dim, static_cast<std::uint32_t>(tokens));
      AttentionState st(heads, dim);
      table().attend_full(kernels::FullHeadView{k.data, v.data, tokens, dim}, q.data(),
                          view_of(st));
      const std::vector<double> got = outputs_of(st);
      const auto exact = logquant_ref::exact_head(k.data, v.data, tokens, dim, dim);
      const std::vector<double> want =
          logquant_ref::attention(exact.keys, exact.values, tokens, dim, q.data(), heads);
      const std::vector<double> zero(want.size(), 0.0);
      EXPECT_LE(logquant_ref::rms_difference(got, want),
                1e-5 * std::max(1.0, logquant_ref::rms_difference(want, zero)));
    }
}

// ---------------------------------------------------------------------------------------------
// A whole cache built with this ISA's table equals one built with the scalar table.

template <class Selector>
void expect_cache_matches_scalar(const KernelTable& table, const CacheConfig& cfg,
                                 const Selector& selector, std::size_t n, std::size_t q_heads) {
  KVCache<Selector> want(cfg, selector, kernels::scalar_table());
  KVCache<Selector> got(cfg, selector, table);
  EXPECT_EQ(got.isa(), table.isa);
  const std::size_t row = cfg.kv_heads * cfg.head_dim;
  const Input keys = make_input(n, row, row, 31), values = make_input(n, row, row, 32);
  for (std::size_t begin = 0; begin < n;) {  // a prefill, then uneven steps
    const std::size_t count = begin == 0 ? 45 : std::min<std::size_t>(n - begin, 1 + begin % 4);
    want.append(keys.data + begin * row, values.data + begin * row, count);
    got.append(keys.data + begin * row, values.data + begin * row, count);
    begin += count;
  }
  ASSERT_EQ(got.quantized_size(), want.quantized_size());
  ASSERT_GT(want.quantized_size(), 16u);
  for (std::size_t kv = 0; kv < cfg.kv_heads; ++kv) {
    const kernels::QuantizedHeadView a = want.quantized_view(kv), b = got.quantized_view(kv);
    ASSERT_EQ(a.tokens, b.tokens);
    ASSERT_TRUE(std::equal(a.full_precision, a.full_precision + a.tokens / 16, b.full_precision));
    const std::size_t col_tiles = tiles_for(cfg.head_dim);
    const std::size_t key_bytes = a.tokens / 16 * a.key_tile_row_bytes();
    const std::size_t value_bytes = a.tokens / 16 * col_tiles * tile_bytes(cfg.value_bits);
    EXPECT_EQ(std::memcmp(a.key_codes, b.key_codes, key_bytes), 0) << "key codes, kv head " << kv;
    EXPECT_EQ(std::memcmp(a.value_codes, b.value_codes, value_bytes), 0)
        << "value codes, kv head " << kv;
    EXPECT_EQ(std::memcmp(a.key_meta, b.key_meta,
                          a.tokens / a.key_group * cfg.head_dim * sizeof(GroupParams)),
              0)
        << "key metadata, kv head " << kv;
    EXPECT_EQ(std::memcmp(a.value_meta, b.value_meta,
                          a.tokens * (cfg.head_dim / a.value_group) * sizeof(GroupParams)),
              0)
        << "value metadata, kv head " << kv;
  }
  // dequantize by this table's kernels equals the scalar cache's reconstruct() bit for bit over
  // any range (inside groups and tiles, across the FP tail), and the fp16 overload rounds it.
  std::vector<float> rk(n * row), rv(n * row);
  want.reconstruct(rk.data(), rv.data());
  for (const auto& [b, e] : std::vector<std::pair<std::size_t, std::size_t>>{
           {0, n}, {3, n / 2 + 5}, {n - 20, n}, {n - 1, n}, {16, 17}}) {
    SCOPED_TRACE("dequantize [" + std::to_string(b) + ", " + std::to_string(e) + ")");
    std::vector<float> k((e - b) * row), v(k.size());
    got.dequantize(b, e, k.data(), v.data());
    ASSERT_EQ(0, std::memcmp(k.data(), &rk[b * row], k.size() * sizeof(float)));
    ASSERT_EQ(0, std::memcmp(v.data(), &rv[b * row], v.size() * sizeof(float)));
    std::vector<std::uint16_t> hk(k.size()), hv(k.size());
    got.dequantize(b, e, hk.data(), hv.data());
    for (std::size_t i = 0; i < k.size(); ++i) {
      ASSERT_EQ(hk[i], float_to_half(k[i])) << i;
      ASSERT_EQ(hv[i], float_to_half(v[i])) << i;
    }
  }
  // attend_causal of the newest 1, 7 and 40 tokens: every output within the quantized kernels'
  // tolerance of the scalar cache's, relative to the largest |output| of its head.
  for (std::size_t rows : {1u, 7u, 40u}) {
    const std::vector<float> q = random_queries(rows * q_heads, cfg.head_dim, 34);
    std::vector<float> a(q.size()), b(q.size());
    want.attend_causal(q.data(), rows, q_heads, a.data(), 0.3f);
    got.attend_causal(q.data(), rows, q_heads, b.data(), 0.3f);
    for (std::size_t h = 0; h < rows * q_heads; ++h) {
      double range = 1e-3;
      for (std::size_t c = 0; c < cfg.head_dim; ++c)
        range = std::max(range, std::fabs(double(a[h * cfg.head_dim + c])));
      for (std::size_t c = 0; c < cfg.head_dim; ++c) {
        const std::size_t i = h * cfg.head_dim + c;
        ASSERT_LE(std::fabs(double(a[i]) - b[i]) / range, output_tolerance(cfg.value_bits))
            << "attend_causal of " << rows << ", row " << h / q_heads << " head " << h % q_heads;
      }
    }
  }
  // Attention over everything (tolerances as in AttendQuantizedMatchesScalar), and a split at a
  // tile boundary inside the quantized block.
  const std::vector<float> q = random_queries(q_heads, cfg.head_dim, 33);
  AttentionState sw, sg;
  const std::size_t slots = want.attention_slots();
  want.attend_partial(q.data(), q_heads, 1.0f, 0, slots, sw);
  got.attend_partial(q.data(), q_heads, 1.0f, 0, slots, sg);
  expect_states_close(sw, sg, kLseTolerance, output_tolerance(cfg.value_bits));
  want.attend_partial(q.data(), q_heads, 1.0f, 16, slots, sw);
  got.attend_partial(q.data(), q_heads, 1.0f, 16, slots, sg);
  expect_states_close(sw, sg, kLseTolerance, output_tolerance(cfg.value_bits));
}

TEST_P(Kernels, KVCacheMatchesScalarCache) {
  LOGQUANT_SKIP_SELF_COMPARISON();
  CacheConfig cfg;
  cfg.head_dim = 80;
  cfg.kv_heads = 2;
  {
    SCOPED_TRACE("LogSelector(21), 2-bit");
    expect_cache_matches_scalar(table(), cfg, LogSelector(21), 400, 8);
  }
  cfg.head_dim = 128;
  cfg.key_bits = 4;
  cfg.value_bits = 8;
  cfg.value_group = 32;
  cfg.key_group = 16;
  {
    SCOPED_TRACE("SinkSelector(4, 40), 4/8-bit, key groups of 16");
    expect_cache_matches_scalar(table(), cfg, SinkSelector(4, 40), 300, 6);
  }
}

#if LOGQUANT_HAVE_X86_KERNELS || LOGQUANT_HAVE_NEON_KERNELS
// The vector exps of kernels/generic/attention.hpp against std::exp over the softmax range
// (x <= 0): at most 2 ulp down to -87 (where results are normal floats). Measured here: see the
// printed maxima. One per ops layer's scale_pow2 (avxvnni and neon_dotprod run the avx2 and neon
// ones; scalar uses std::exp).
void check_vector_exp(void (*vector_exp)(const float*, float*, std::size_t)) {
  std::vector<float> x;
  for (float v = 0.0f; v > -87.0f; v = std::nextafter(v - 1e-4f * (1.0f - v), -100.0f))
    x.push_back(v);
  x.push_back(-0.0f);
  x.push_back(-1e-30f);
  while (x.size() % 16) x.push_back(-1.0f);
  std::vector<float> y(x.size());
  vector_exp(x.data(), y.data(), x.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float e = std::exp(x[i]);
    const double ulp = std::nextafter(e, HUGE_VALF) - e;
    const double err = std::fabs(double(y[i]) - e) / ulp;
    worst = std::max(worst, err);
    ASSERT_LE(err, 2.0) << "exp(" << x[i] << ") = " << y[i] << ", std::exp " << e;
  }
  std::printf("%zu arguments in [-87, 0]: max error %.2f ulp\n", x.size(), worst);
  // The far tail: never negative, never above std::exp by more than the smallest normal.
  const float tail[16] = {-87.5f,  -88.0f, -90.0f,     -95.0f, -100.0f, -103.0f, -104.0f, -110.0f,
                          -200.0f, -1e10f, -HUGE_VALF, -87.4f, -87.34f, -87.33f, -87.3f,  -87.2f};
  float out[16];
  vector_exp(tail, out, 16);
  for (int i = 0; i < 16; ++i) {
    EXPECT_GE(out[i], 0.0f) << tail[i];
    EXPECT_LE(std::fabs(out[i] - std::exp(tail[i])), 1.2e-38f) << tail[i];
  }
}

#endif

#if LOGQUANT_HAVE_X86_KERNELS
LOGQUANT_X86_KERNELS_BEGIN
LOGQUANT_TARGET_AVX512 void avx512_exp(const float* x, float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; i += 16)
    _mm512_storeu_ps(y + i, avx512::exp_ps(_mm512_loadu_ps(x + i)));
}
LOGQUANT_TARGET_AVX2 void avx2_exp(const float* x, float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; i += 8)
    _mm256_storeu_ps(y + i, avx2::exp_ps(_mm256_loadu_ps(x + i)));
}

TEST(VectorExp, Avx512WithinTwoUlp) {
  LOGQUANT_REQUIRE_OR_SKIP(Isa::kAvx512);
  check_vector_exp(avx512_exp);
}

TEST(VectorExp, Avx2WithinTwoUlp) {
  LOGQUANT_REQUIRE_OR_SKIP(Isa::kAvx2);
  check_vector_exp(avx2_exp);
}
LOGQUANT_X86_KERNELS_END
#endif

#if LOGQUANT_HAVE_NEON_KERNELS
void neon_exp(const float* x, float* y, std::size_t n) {
  for (std::size_t i = 0; i < n; i += 4) vst1q_f32(y + i, neon::exp_ps(vld1q_f32(x + i)));
}

TEST(VectorExp, NeonWithinTwoUlp) {
  LOGQUANT_REQUIRE_OR_SKIP(Isa::kNeon);
  check_vector_exp(neon_exp);
}
#endif

// ---------------------------------------------------------------------------------------------
// Dispatch: names, forcing, the default, and the table a cache uses.

TEST(Dispatch, ParsesIsaNamesAndRejectsUnknownOnes) {
  for (Isa isa : kAllIsas) EXPECT_EQ(kernels::parse_isa(isa_name(isa)), isa);
  for (const char* bad : {"", "AVX2", "sse4", "avx-512", "avx512 ", "native", "best"})
    EXPECT_THROW(kernels::parse_isa(bad), InvalidArgument) << "'" << bad << "'";
}

TEST(Dispatch, SupportedIsasAreBestFirstAndEndInScalar) {
  const std::vector<Isa> isas = kernels::supported_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.back(), Isa::kScalar);
  for (Isa isa : kAllIsas) {
    const bool listed = std::find(isas.begin(), isas.end(), isa) != isas.end();
    EXPECT_EQ(listed, kernels::isa_supported(isa)) << isa_name(isa);
    if (listed) {
      EXPECT_EQ(kernels::table_for(isa).isa, isa);
    } else {
      EXPECT_THROW(kernels::table_for(isa), InvalidArgument) << isa_name(isa);
    }
  }
#if LOGQUANT_SCALAR_ONLY
  EXPECT_EQ(isas.size(), 1u);  // the build option leaves the scalar path only
#endif
#if LOGQUANT_HAVE_X86_KERNELS
  EXPECT_EQ(kernels::isa_supported(Isa::kAvx2), kernels::x86_features().avx2);
  EXPECT_EQ(kernels::isa_supported(Isa::kAvxVnni),
            LOGQUANT_HAVE_AVXVNNI_KERNELS && kernels::x86_features().avx_vnni);
  EXPECT_EQ(kernels::isa_supported(Isa::kAvx512), kernels::x86_features().avx512_vnni);
  EXPECT_FALSE(kernels::isa_supported(Isa::kNeon));
  EXPECT_FALSE(kernels::isa_supported(Isa::kNeonDotprod));
#endif
}

TEST(Dispatch, SelectTableHonoursTheForcedName) {
  EXPECT_EQ(kernels::select_table(nullptr).isa, kernels::supported_isas().front());
  EXPECT_EQ(kernels::select_table("").isa, kernels::supported_isas().front());
  for (Isa isa : kAllIsas) {
    if (kernels::isa_supported(isa)) {
      EXPECT_EQ(kernels::select_table(isa_name(isa)).isa, isa);
    } else {
      EXPECT_THROW(kernels::select_table(isa_name(isa)), InvalidArgument)
          << "forcing unsupported " << isa_name(isa) << " must fail, not fall back";
    }
  }
  EXPECT_THROW(kernels::select_table("bogus"), InvalidArgument);
  EXPECT_THROW(kernels::select_table("Scalar"), InvalidArgument);
}

TEST(Dispatch, KVCacheUsesTheDefaultTable) {
  const char* forced = std::getenv("LOGQUANT_ISA");
  const KernelTable& expected = kernels::select_table(forced);
  EXPECT_EQ(&kernels::default_table(), &expected);
  CacheConfig cfg;
  cfg.head_dim = 16;
  cfg.kv_heads = 1;
  KVCache<LogSelector> cache(cfg, LogSelector(4));
  EXPECT_EQ(cache.isa(), expected.isa);
  if (forced == nullptr || *forced == '\0') {
    EXPECT_EQ(cache.isa(), kernels::supported_isas().front());
  }
}

TEST(Dispatch, TestRequireTurnsASkipIntoAFailure) {
  EXPECT_TRUE(parse_required(nullptr).empty());
  EXPECT_TRUE(parse_required("").empty());
  EXPECT_EQ(parse_required("avx2,avx512"), (std::vector<Isa>{Isa::kAvx2, Isa::kAvx512}));
  EXPECT_EQ(parse_required("neon"), (std::vector<Isa>{Isa::kNeon}));
  EXPECT_EQ(parse_required("avxvnni"), (std::vector<Isa>{Isa::kAvxVnni}));
  EXPECT_THROW(parse_required("avx2,avx3"), InvalidArgument);
  const std::vector<Isa> required = {Isa::kAvx2, Isa::kAvx512};
  EXPECT_EQ(availability(Isa::kAvx2, true, required), Availability::kRun);
  EXPECT_EQ(availability(Isa::kAvx2, false, required), Availability::kFail);
  EXPECT_EQ(availability(Isa::kAvx512, false, required), Availability::kFail);
  EXPECT_EQ(availability(Isa::kNeon, false, required), Availability::kSkip);
  EXPECT_EQ(availability(Isa::kNeon, false, {}), Availability::kSkip);
}

// The child half of ForcedIsaInChildProcess: registered only when the parent sets
// LOGQUANT_TEST_CHILD_EXPECT (an ISA name, or "error" when default_table() must throw).
class DefaultTableInChild : public ::testing::Test {
 public:
  explicit DefaultTableInChild(std::string expect) : expect_(std::move(expect)) {}
  void TestBody() override {
    CacheConfig cfg;
    cfg.head_dim = 16;
    cfg.kv_heads = 1;
    if (expect_ == "error") {
      EXPECT_THROW(kernels::default_table(), InvalidArgument);
      EXPECT_THROW(KVCache<LogSelector>(cfg, LogSelector(4)), InvalidArgument);
      return;
    }
    EXPECT_STREQ(isa_name(kernels::default_table().isa), expect_.c_str());
    EXPECT_STREQ(isa_name(KVCache<LogSelector>(cfg, LogSelector(4)).isa()), expect_.c_str());
  }

 private:
  std::string expect_;
};

[[maybe_unused]] const bool kChildRegistered = [] {
  const char* expect = std::getenv("LOGQUANT_TEST_CHILD_EXPECT");
  if (expect == nullptr) return false;
  const std::string e(expect);
  ::testing::RegisterTest("DispatchChild", "DefaultTable", nullptr, nullptr, __FILE__, __LINE__,
                          [e]() -> ::testing::Test* { return new DefaultTableInChild(e); });
  return true;
}();

#if defined(__linux__)
// Runs this test binary again with LOGQUANT_ISA=forced, only the child test; returns its exit
// status (-1 if it could not be started or was killed).
int run_child(const std::string& forced, const std::string& expect) {
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return -1;
  self[len] = '\0';
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (forced.empty())
      unsetenv("LOGQUANT_ISA");
    else
      setenv("LOGQUANT_ISA", forced.c_str(), 1);
    setenv("LOGQUANT_TEST_CHILD_EXPECT", expect.c_str(), 1);
    const int quiet = open("/dev/null", O_WRONLY);  // the parent reports a failing status
    if (quiet >= 0) {
      dup2(quiet, 1);
      dup2(quiet, 2);
    }
    execl(self, self, "--gtest_filter=DispatchChild.*", static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}
#endif

TEST(Dispatch, ForcedIsaTakesEffectInAFreshProcess) {
#if defined(__linux__)
  const std::string best = isa_name(kernels::supported_isas().front());
  const int baseline = run_child("", best);
  if (baseline == 127 || baseline == -1)
    GTEST_SKIP() << "cannot re-run this binary here (status " << baseline << ")";
  EXPECT_EQ(baseline, 0) << "unset LOGQUANT_ISA should pick " << best;
  for (Isa isa : kAllIsas) {
    const std::string name = isa_name(isa);
    EXPECT_EQ(run_child(name, kernels::isa_supported(isa) ? name : "error"), 0)
        << "LOGQUANT_ISA=" << name;
  }
  EXPECT_EQ(run_child("bogus", "error"), 0) << "an unknown LOGQUANT_ISA must be an error";
  EXPECT_NE(run_child("scalar", best == "scalar" ? "error" : best), 0)
      << "the child test must be able to fail";
#else
  GTEST_SKIP() << "the child-process check needs /proc/self/exe and fork (Linux)";
#endif
}

}  // namespace
