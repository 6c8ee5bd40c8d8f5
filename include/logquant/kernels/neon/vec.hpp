// Small NEON (AArch64) building blocks shared by the NEON kernels: the int8 dot product of four
// tile rows with a four-byte operand in two flavours, the run-time check that picks between them,
// fp16 metadata loads and a vector exp. ARMv8.2 dotprod (SDOT) does a dot product in one
// instruction; the ARMv8.0 baseline, which every AArch64 CPU has, widens with SMULL and pair-adds
// with SADALP. Both give exactly the same integers.
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_NEON_KERNELS

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "../../quant/group_quantizer.hpp"
#include "../../quant/tile_layout.hpp"
#include "../common.hpp"

#if defined(__linux__)
#include <sys/auxv.h>
#endif

// LOGQUANT_NEON_DOTPROD: whether the SDOT path is compiled. With -march=...+dotprod it needs no
// attribute. Otherwise GCC compiles it for armv8.2-a+dotprod by target attribute (the "+dotprod"
// spelling alone is rejected when inlining GCC's own dotprod intrinsics) and the kernels check
// HWCAP_ASIMDDP at run time; every CPU with dotprod implements Armv8.2, so that is safe. Clang
// before 17 declares the intrinsics only under __ARM_FEATURE_DOTPROD, so it gets the baseline.
#if defined(__ARM_FEATURE_DOTPROD)
#define LOGQUANT_NEON_DOTPROD 1
#define LOGQUANT_NEON_DOTPROD_TARGET __attribute__((flatten))
#elif defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10
#define LOGQUANT_NEON_DOTPROD 1
// flatten: the kernel templates have no target attribute of their own, so GCC inlines them (and
// the SDOT helpers inside) only into a caller that has it; flatten makes that happen everywhere.
#define LOGQUANT_NEON_DOTPROD_TARGET __attribute__((target("arch=armv8.2-a+dotprod"), flatten))
#else
#define LOGQUANT_NEON_DOTPROD 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define LOGQUANT_NEON_BASELINE_TARGET __attribute__((flatten))
#else
#define LOGQUANT_NEON_BASELINE_TARGET
#endif

namespace logquant {
namespace neon {
namespace detail {

/// True when this CPU executes SDOT (ARMv8.2 dotprod): always with -march=...+dotprod, else from
/// the kernel's HWCAP_ASIMDDP bit on Linux; false elsewhere (the baseline path is then used).
inline bool cpu_has_dotprod() {
#if defined(__ARM_FEATURE_DOTPROD)
  return true;
#elif LOGQUANT_NEON_DOTPROD && defined(__linux__) && defined(AT_HWCAP)
  constexpr unsigned long kHwcapAsimddp = 1ul << 20;  // HWCAP_ASIMDDP in <asm/hwcap.h>
  return (getauxval(AT_HWCAP) & kHwcapAsimddp) != 0;
#else
  return false;
#endif
}

/// ARMv8.0 dot products: SMULL widens 8 bytes to 16-bit products (|code * digit| <= 128 * 128
/// fits), SADALP adds adjacent pairs into 32 bits. Each accumulator half holds, per row, two
/// partial sums; finish() adds them pairwise into one sum per row.
struct WideningDot {
  struct Acc {
    int32x4_t rows01;  // rows 0 and 1 of the block, two partial sums each
    int32x4_t rows23;
  };
  static Acc zero() { return Acc{vdupq_n_s32(0), vdupq_n_s32(0)}; }
  /// acc.row[r] += Σ_{k<4} codes[4r + k] * operand[4 * kWord + k] for the 4 rows r of `codes`.
  template <int kWord>
  static void add(Acc& acc, int8x16_t codes, int8x16_t operand) {
    const int8x16_t op =
        vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(operand), kWord));
    acc.rows01 = vpadalq_s16(acc.rows01, vmull_s8(vget_low_s8(codes), vget_low_s8(op)));
    acc.rows23 = vpadalq_s16(acc.rows23, vmull_high_s8(codes, op));
  }
  static int32x4_t finish(const Acc& acc) { return vpaddq_s32(acc.rows01, acc.rows23); }
};

#if LOGQUANT_NEON_DOTPROD
/// ARMv8.2 dot products: one SDOT (by element) per four rows and four columns.
struct SdotDot {
  struct Acc {
    int32x4_t rows;
  };
  static Acc zero() { return Acc{vdupq_n_s32(0)}; }
  template <int kWord>
#if !defined(__ARM_FEATURE_DOTPROD)
  __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
  static void add(Acc& acc, int8x16_t codes, int8x16_t operand) {
    acc.rows = vdotq_laneq_s32(acc.rows, codes, operand, kWord);
  }
  static int32x4_t finish(const Acc& acc) { return acc.rows; }
};
#endif

/// The codes of rows [4 reg, 4 reg + 4) of one tile as four int8 vectors: out[w] holds, per row,
/// the four consecutive columns that pair with operand word w (columns 4w .. 4w + 3). This is the
/// tile layout of quant/tile_layout.hpp read back: vector v, shift k * Bits gives columns
/// v * cpv + 4k .. + 3, i.e. word v * (8 / Bits) + k. 8-bit codes (0..255) do not fit int8, so they
/// come back as code - 128 (x ^ 0x80), and the caller adds 128 * Σ operand back.
template <unsigned Bits>
inline void load_codes(const std::uint8_t* tile, std::size_t reg, int8x16_t out[4]) {
  const std::uint8_t* p = tile + reg * 16;
  if constexpr (Bits == 2) {
    const uint8x16_t r = vld1q_u8(p), mask = vdupq_n_u8(3);
    out[0] = vreinterpretq_s8_u8(vandq_u8(r, mask));
    out[1] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(r, 2), mask));
    out[2] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(r, 4), mask));
    out[3] = vreinterpretq_s8_u8(vshrq_n_u8(r, 6));
  } else if constexpr (Bits == 4) {
    const uint8x16_t r0 = vld1q_u8(p), r1 = vld1q_u8(p + kTileVectorBytes);
    const uint8x16_t mask = vdupq_n_u8(15);
    out[0] = vreinterpretq_s8_u8(vandq_u8(r0, mask));
    out[1] = vreinterpretq_s8_u8(vshrq_n_u8(r0, 4));
    out[2] = vreinterpretq_s8_u8(vandq_u8(r1, mask));
    out[3] = vreinterpretq_s8_u8(vshrq_n_u8(r1, 4));
  } else {
    const uint8x16_t bias = vdupq_n_u8(0x80);
    for (int w = 0; w < 4; ++w)
      out[w] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p + w * kTileVectorBytes), bias));
  }
}

/// Integer dot products of rows [4 reg, 4 reg + 4) of `tiles` consecutive tiles with the operands
/// of H heads: for head h, tile i pairs with the 16 bytes at hi + h * head_stride + 16 i (and lo,
/// the second digit, when Digits == 2). One pass over the codes serves all H heads (GQA).
/// Results are exact int32 per row; 8-bit codes still carry their -128 offset (see load_codes).
template <class Dot, unsigned Bits, unsigned Digits, std::size_t H>
inline void dot_rows(const std::uint8_t* tiles, std::size_t count, std::size_t reg,
                     const std::int8_t* hi, const std::int8_t* lo, std::size_t head_stride,
                     int32x4_t out_hi[H], int32x4_t out_lo[H]) {
  typename Dot::Acc acc_hi[H], acc_lo[H];
  for (std::size_t h = 0; h < H; ++h) acc_hi[h] = acc_lo[h] = Dot::zero();
  for (std::size_t i = 0; i < count; ++i) {
    int8x16_t codes[4];
    load_codes<Bits>(tiles + i * tile_bytes(Bits), reg, codes);
    for (std::size_t h = 0; h < H; ++h) {
      const int8x16_t op_hi = vld1q_s8(hi + h * head_stride + i * 16);
      Dot::template add<0>(acc_hi[h], codes[0], op_hi);
      Dot::template add<1>(acc_hi[h], codes[1], op_hi);
      Dot::template add<2>(acc_hi[h], codes[2], op_hi);
      Dot::template add<3>(acc_hi[h], codes[3], op_hi);
      if constexpr (Digits == 2) {
        const int8x16_t op_lo = vld1q_s8(lo + h * head_stride + i * 16);
        Dot::template add<0>(acc_lo[h], codes[0], op_lo);
        Dot::template add<1>(acc_lo[h], codes[1], op_lo);
        Dot::template add<2>(acc_lo[h], codes[2], op_lo);
        Dot::template add<3>(acc_lo[h], codes[3], op_lo);
      }
    }
  }
  for (std::size_t h = 0; h < H; ++h) {
    out_hi[h] = Dot::finish(acc_hi[h]);
    out_lo[h] = Digits == 2 ? Dot::finish(acc_lo[h]) : vdupq_n_s32(0);
  }
}

/// dot_rows for `heads` heads, in blocks of up to four (a block's accumulators stay in registers).
template <class Dot, unsigned Bits, unsigned Digits>
inline void dot_rows_heads(const std::uint8_t* tiles, std::size_t count, std::size_t reg,
                           const std::int8_t* hi, const std::int8_t* lo, std::size_t head_stride,
                           std::size_t heads, int32x4_t* out_hi, int32x4_t* out_lo) {
  std::size_t h = 0;
  for (; h + 4 <= heads; h += 4)
    dot_rows<Dot, Bits, Digits, 4>(tiles, count, reg, hi + h * head_stride,
                                   lo + h * head_stride, head_stride, out_hi + h, out_lo + h);
  const std::int8_t* hi_rest = hi + h * head_stride;
  const std::int8_t* lo_rest = lo + h * head_stride;
  switch (heads - h) {
    case 3:
      dot_rows<Dot, Bits, Digits, 3>(tiles, count, reg, hi_rest, lo_rest, head_stride, out_hi + h,
                                     out_lo + h);
      break;
    case 2:
      dot_rows<Dot, Bits, Digits, 2>(tiles, count, reg, hi_rest, lo_rest, head_stride, out_hi + h,
                                     out_lo + h);
      break;
    case 1:
      dot_rows<Dot, Bits, Digits, 1>(tiles, count, reg, hi_rest, lo_rest, head_stride, out_hi + h,
                                     out_lo + h);
      break;
    default: break;
  }
}

/// Scales and minimums of four GroupParams (fp16 pairs) as floats; FCVTL is exact, like
/// half_to_float.
inline void load_params(const GroupParams* p, float32x4_t& scale, float32x4_t& min) {
  const uint16x4x2_t raw = vld2_u16(reinterpret_cast<const std::uint16_t*>(p));
  scale = vcvt_f32_f16(vreinterpret_f16_u16(raw.val[0]));
  min = vcvt_f32_f16(vreinterpret_f16_u16(raw.val[1]));
}

/// Four int32 lanes (values within int8) and the next four, ... to 16 bytes in lane order.
inline int8x16_t narrow_bytes(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
  const int16x8_t ab = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
  const int16x8_t cd = vcombine_s16(vmovn_s32(c), vmovn_s32(d));
  return vcombine_s8(vmovn_s16(ab), vmovn_s16(cd));
}

}  // namespace detail

/// exp(x) for softmax arguments x <= 0, 0 for x = -inf. exp(x) = 2^n exp(r) with n = round(x /
/// ln 2) and r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 in two parts, the first with few mantissa
/// bits so n * part is exact), then the Taylor series of exp(r) to r^7 (truncation < 6e-9
/// relative). 2^n is built in the exponent field, so results below FLT_MIN (x < -87.3) are 0 where
/// std::exp gives a denormal below 1.2e-38. The error against std::exp is measured in the tests.
inline float32x4_t exp_ps(float32x4_t x) {
  const float32x4_t lowest = vdupq_n_f32(-87.33654f);
  const uint32x4_t in_range = vcgeq_f32(x, lowest);  // false for -inf (and NaN)
  x = vmaxq_f32(x, lowest);
  const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));  // x - n * ln2_hi
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));             // - n * ln2_lo
  float32x4_t p = vdupq_n_f32(1.0f / 5040.0f);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 720.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  const int32x4_t pow2n = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  const float32x4_t e = vmulq_f32(p, vreinterpretq_f32_s32(pow2n));
  return vreinterpretq_f32_u32(vandq_u32(in_range, vreinterpretq_u32_f32(e)));
}

}  // namespace neon
}  // namespace logquant

#endif  // LOGQUANT_HAVE_NEON_KERNELS
