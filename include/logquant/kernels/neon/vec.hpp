// The NEON (AArch64, ARMv8.0) ops layer: the vocabulary of kernels/generic/ (see avx512/vec.hpp) on
// 4 lanes, a 16-lane tile row as four vectors. Every AArch64 CPU runs it, so it needs no target
// attribute. Where NEON differs from x86, the op hides it:
// - masked loads and stores do not exist: a partial mask goes lane by lane (tails only, and the
//   FP overlay's lanes of a score tile);
// - min and max keep x86's operand rule (a < b ? a : b), which the quantizer's tie order between
//   +0 and -0 relies on; FMIN would take -0;
// - the int8 products are signed x signed (SMULL), so 8-bit codes (0-255) go in as two nibbles, as
//   on AVX2; neon_dotprod/vec.hpp puts them on SDOT;
// - fp16 rounding towards -inf/+inf has no instruction: fit_params calls GroupQuantizer::fit per
//   lane (once per key group and channel, or per value group).
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_NEON_KERNELS
#include <arm_neon.h>

#include <cfloat>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../quant/group_quantizer.hpp"
#include "../../quant/tile_layout.hpp"
#include "../kernel_table.hpp"

// Nothing to enable: every AArch64 CPU has Advanced SIMD.
#define LOGQUANT_TARGET_NEON
#define LOGQUANT_NEON_INLINE inline __attribute__((always_inline))

namespace logquant {
namespace neon {

using F = float32x4_t;
using I = int32x4_t;
using M = uint32x4_t;  // a lane mask: all ones in selected lanes
inline constexpr Isa kIsa = Isa::kNeon;
inline constexpr std::size_t kLanes = 4;
inline constexpr int kRegisters = 32;
inline constexpr std::size_t kHeadBlock = 4;
inline constexpr int kReduceWidth = 4;
inline constexpr int kFullHeads = 4;
inline constexpr float kExpFloor = -87.33654f;  // below, 2^n built in the exponent underflows
inline bool supported() { return true; }      // Advanced SIMD is part of every AArch64 CPU

LOGQUANT_NEON_INLINE M first_lanes(std::size_t n) {
  const uint32x4_t lane = {0, 1, 2, 3};
  return vcltq_u32(lane, vdupq_n_u32(static_cast<std::uint32_t>(n > 4 ? 4 : n)));
}
LOGQUANT_NEON_INLINE M lane_bits(unsigned bits) {
  const uint32x4_t bit = {1, 2, 4, 8};
  return vtstq_u32(vdupq_n_u32(bits), bit);
}
LOGQUANT_NEON_INLINE bool all_lanes(M m) { return vminvq_u32(m) == 0xffffffffu; }

/// The lanes of m from p (0 elsewhere) without touching the others: whole vectors where m is full.
template <class T>
LOGQUANT_NEON_INLINE void copy_lanes(T* to, const T* from, M m) {
  std::uint32_t on[4];
  vst1q_u32(on, m);
  for (int i = 0; i < 4; ++i)
    if (on[i]) to[i] = from[i];
}
LOGQUANT_NEON_INLINE F zero() { return vdupq_n_f32(0.0f); }
LOGQUANT_NEON_INLINE F set1(float x) { return vdupq_n_f32(x); }
LOGQUANT_NEON_INLINE F load(const float* p) { return vld1q_f32(p); }
LOGQUANT_NEON_INLINE F loadz(const float* p, M m) {
  if (all_lanes(m)) return vld1q_f32(p);
  float x[4] = {};
  copy_lanes(x, p, m);
  return vld1q_f32(x);
}
LOGQUANT_NEON_INLINE void store(float* p, F v) { vst1q_f32(p, v); }
LOGQUANT_NEON_INLINE void store(float* p, M m, F v) {
  if (all_lanes(m)) return vst1q_f32(p, v);
  float x[4];
  vst1q_f32(x, v);
  copy_lanes(p, x, m);
}
LOGQUANT_NEON_INLINE F add(F a, F b) { return vaddq_f32(a, b); }
LOGQUANT_NEON_INLINE F sub(F a, F b) { return vsubq_f32(a, b); }
LOGQUANT_NEON_INLINE F mul(F a, F b) { return vmulq_f32(a, b); }
LOGQUANT_NEON_INLINE F max(F a, F b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
LOGQUANT_NEON_INLINE F min(F a, F b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
LOGQUANT_NEON_INLINE F fmadd(F a, F b, F c) { return vfmaq_f32(c, a, b); }
LOGQUANT_NEON_INLINE F fnmadd(F a, F b, F c) { return vfmsq_f32(c, a, b); }
LOGQUANT_NEON_INLINE F max_abs(F acc, F x) { return vmaxq_f32(acc, vabsq_f32(x)); }
LOGQUANT_NEON_INLINE F select(M m, F a, F b) { return vbslq_f32(m, a, b); }
LOGQUANT_NEON_INLINE F maskz(M m, F a) {
  return vreinterpretq_f32_u32(vandq_u32(m, vreinterpretq_u32_f32(a)));
}
LOGQUANT_NEON_INLINE bool any_greater(F a, F b) { return vmaxvq_u32(vcgtq_f32(a, b)) != 0; }
LOGQUANT_NEON_INLINE F round_nearest(F x) { return vrndnq_f32(x); }
/// p 2^n with 2^n built in the exponent field: 0 where x < kExpFloor (where std::exp gives a
/// denormal under 1.2e-38).
LOGQUANT_NEON_INLINE F scale_pow2(F p, F n, F x) {
  const uint32x4_t in_range = vcgeq_f32(x, vdupq_n_f32(kExpFloor));
  const int32x4_t pow2n = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return maskz(in_range, vmulq_f32(p, vreinterpretq_f32_s32(pow2n)));
}
/// Lane i of v in every lane (i is a constant once the callers' loops are unrolled).
LOGQUANT_NEON_INLINE F lane(F v, int i) {
  switch (i) {
    case 0: return vdupq_laneq_f32(v, 0);
    case 1: return vdupq_laneq_f32(v, 1);
    case 2: return vdupq_laneq_f32(v, 2);
    default: return vdupq_laneq_f32(v, 3);
  }
}
/// Lanes [k, 4) of v moved down to [0, 4 - k).
LOGQUANT_NEON_INLINE F lanes_down(F v, int k) {
  switch (k) {
    case 0: return v;
    case 1: return vextq_f32(v, v, 1);
    case 2: return vextq_f32(v, v, 2);
    default: return vextq_f32(v, v, 3);
  }
}
/// kernels::operand_inverse(limit, max) in every lane.
LOGQUANT_NEON_INLINE F operand_inverse(float limit, F max) {
  const F inv = vdivq_f32(vdupq_n_f32(limit), max);
  return maskz(vcleq_f32(inv, vdupq_n_f32(FLT_MAX)), inv);
}
LOGQUANT_NEON_INLINE float reduce_max(F v) { return vmaxvq_f32(v); }
LOGQUANT_NEON_INLINE float reduce_min(F v) { return vminvq_f32(v); }
LOGQUANT_NEON_INLINE float reduce_add(F v) { return vaddvq_f32(v); }

struct MaxOp {
  LOGQUANT_NEON_INLINE static F pairwise(F a, F b) { return vpmaxq_f32(a, b); }
};
struct AddOp {
  LOGQUANT_NEON_INLINE static F pairwise(F a, F b) { return vpaddq_f32(a, b); }
};
/// Lane i of the result (i < N <= 4) is Op over the 4 lanes of v[i] (v has kReduceWidth entries,
/// all initialised): two rounds of pairwise operations.
template <class Op, int N>
LOGQUANT_NEON_INLINE F transpose_reduce(const F* v) {
  return Op::pairwise(Op::pairwise(v[0], v[1]), Op::pairwise(v[2], v[3]));
}
LOGQUANT_NEON_INLINE F transpose_sum(const F* v) { return transpose_reduce<AddOp, 4>(v); }

LOGQUANT_NEON_INLINE I load_int(const void* p) {
  return vreinterpretq_s32_u8(vld1q_u8(static_cast<const std::uint8_t*>(p)));
}
LOGQUANT_NEON_INLINE I maskz_int(M m, I a) { return vandq_s32(vreinterpretq_s32_u32(m), a); }
LOGQUANT_NEON_INLINE I add_int(I a, I b) { return vaddq_s32(a, b); }
LOGQUANT_NEON_INLINE I and_int(I a, I b) { return vandq_s32(a, b); }
LOGQUANT_NEON_INLINE I set1_int(int x) { return vdupq_n_s32(x); }
LOGQUANT_NEON_INLINE I select_int(M m, I a, I b) { return vbslq_s32(m, a, b); }
LOGQUANT_NEON_INLINE I shift_right(I x, I n) {  // per lane, logical
  return vreinterpretq_s32_u32(vshlq_u32(vreinterpretq_u32_s32(x), vnegq_s32(n)));
}
LOGQUANT_NEON_INLINE I to_int(F x) { return vcvtnq_s32_f32(x); }  // ties to even, as cvtps
LOGQUANT_NEON_INLINE F to_float(I x) { return vcvtq_f32_s32(x); }
LOGQUANT_NEON_INLINE I digit_hi(I x) { return vshrq_n_s32(x, 7); }
LOGQUANT_NEON_INLINE I digit_lo(I x) { return vandq_s32(x, vdupq_n_s32(127)); }
/// 16 int32 lanes (v[0..3], values within int8) to 16 bytes in lane order.
LOGQUANT_NEON_INLINE void store_bytes16(std::int8_t* p, const I* v) {
  const int16x8_t a = vcombine_s16(vmovn_s32(v[0]), vmovn_s32(v[1]));
  const int16x8_t b = vcombine_s16(vmovn_s32(v[2]), vmovn_s32(v[3]));
  vst1q_s8(p, vcombine_s8(vmovn_s16(a), vmovn_s16(b)));
}
LOGQUANT_NEON_INLINE void store_bytes64(std::int8_t* p, const I* v) {
  for (int i = 0; i < 4; ++i) store_bytes16(p + 16 * i, v + 4 * i);
}
LOGQUANT_NEON_INLINE I broadcast4(const std::int8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return vdupq_n_s32(v);
}

/// Four packed GroupParams (scale | min << 16 per dword) as floats (FCVTL is exact).
LOGQUANT_NEON_INLINE void split_params(I raw, F& scale, F& min) {
  const uint32x4_t r = vreinterpretq_u32_s32(raw);
  scale = vcvt_f32_f16(vreinterpret_f16_u16(vmovn_u32(r)));
  min = vcvt_f32_f16(vreinterpret_f16_u16(vshrn_n_u32(r, 16)));
}
LOGQUANT_NEON_INLINE I load_params(const GroupParams* p, M m) {
  static_assert(sizeof(GroupParams) == 4, "one dword per GroupParams");
  std::uint32_t x[4] = {};
  copy_lanes(x, reinterpret_cast<const std::uint32_t*>(p), m);
  return vreinterpretq_s32_u32(vld1q_u32(x));
}
LOGQUANT_NEON_INLINE void store_params(GroupParams* p, M m, I v) {
  std::uint32_t x[4];
  vst1q_u32(x, vreinterpretq_u32_s32(v));
  copy_lanes(reinterpret_cast<std::uint32_t*>(p), x, m);
}
/// GroupQuantizer<Bits>::fit of each lane's range [lo, hi], as dwords (scale | min << 16): fit
/// itself, as fp16 has no directed-rounding conversion here.
template <unsigned Bits>
LOGQUANT_NEON_INLINE I fit_params(F lo, F hi) {
  float l[4], h[4];
  std::uint32_t out[4];
  vst1q_f32(l, lo);
  vst1q_f32(h, hi);
  for (int i = 0; i < 4; ++i) {
    const float range[2] = {l[i], h[i]};
    const GroupParams p = GroupQuantizer<Bits>::fit(range, 2);
    std::memcpy(&out[i], &p, 4);
  }
  return vreinterpretq_s32_u32(vld1q_u32(out));
}
/// 1 / scale, or 0 where scale is 0 (GroupQuantizer::inverse).
LOGQUANT_NEON_INLINE F inverse_scale(F scale) {
  return maskz(vmvnq_u32(vceqzq_f32(scale)), vdivq_f32(vdupq_n_f32(1.0f), scale));
}
/// GroupQuantizer::encode on 4 lanes: round half to even (FCVTNS), clamped to the codes.
template <unsigned Bits>
LOGQUANT_NEON_INLINE I encode(F x, F min, F inv) {
  const I r = vcvtnq_s32_f32(vmulq_f32(vsubq_f32(x, min), inv));
  return vminq_s32(vmaxq_s32(r, vdupq_n_s32(0)), vdupq_n_s32(static_cast<int>((1u << Bits) - 1u)));
}

/// Plane k of a code vector (columns [4k, 4k + 4) of each lane's row) as bytes; 8-bit codes as
/// their two nibbles, since the products are signed. Nibbles sits in its own namespace: argument-
/// dependent lookup would otherwise add this dot_add to neon_dotprod's, and the call is ambiguous.
namespace detail {
struct Nibbles {
  I lo, hi;
};
}  // namespace detail
template <unsigned Bits>
LOGQUANT_NEON_INLINE auto plane(I x, unsigned k) {
  const uint8_t mask = Bits == 8 ? 15 : (1u << Bits) - 1u;
  const uint8x16_t b = vreinterpretq_u8_s32(x);
  if constexpr (Bits == 8)
    return detail::Nibbles{vreinterpretq_s32_u8(vandq_u8(b, vdupq_n_u8(mask))),
                   vreinterpretq_s32_u8(vshrq_n_u8(b, 4))};
  else
    return vreinterpretq_s32_u8(
        vandq_u8(vshlq_u8(b, vdupq_n_s8(static_cast<std::int8_t>(-static_cast<int>(k * Bits)))),
                 vdupq_n_u8(mask)));
}
/// Σ over each lane's 4 bytes of plane x operand (SMULL: 16-bit products, ADDP: pairs,
/// SADALP: into the int32 lane).
LOGQUANT_NEON_INLINE I dot4(I acc, I plane, I operand) {
  const int8x16_t a = vreinterpretq_s8_s32(plane), b = vreinterpretq_s8_s32(operand);
  const int16x8_t pairs =
      vpaddq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)), vmull_high_s8(a, b));
  return vpadalq_s16(acc, pairs);
}
template <unsigned Bits, class P>
LOGQUANT_NEON_INLINE I dot_add(I acc, P plane, I operand) {
  if constexpr (Bits == 8)
    return vmlaq_n_s32(dot4(acc, plane.lo, operand), dot4(vdupq_n_s32(0), plane.hi, operand), 16);
  else
    return dot4(acc, plane, operand);
}
/// dot_add sums are int32 already: no column-tile limit (kDotSpan 0) and nothing to widen.
template <unsigned Bits>
inline constexpr std::size_t kDotSpan = 0;
template <unsigned Bits>
LOGQUANT_NEON_INLINE I widen(I acc) { return acc; }

/// ORs one tile row of 16 codes (lane = column, 4 columns per vector) into its row dwords: the
/// shifted fields never overlap, so the horizontal add is an OR.
template <unsigned Bits>
LOGQUANT_NEON_INLINE void or_tile_row(const I* codes, std::uint8_t* tile, std::size_t row) {
  constexpr unsigned kPerWord = 8 / Bits;  // code vectors per row dword
  for (unsigned w = 0; w < Bits / 2; ++w) {
    uint32x4_t x = vdupq_n_u32(0);
    for (unsigned p = w * kPerWord; p < (w + 1) * kPerWord; ++p) {
      const int32x4_t shifts = {column_shift(Bits, 4 * p), column_shift(Bits, 4 * p + 1),
                                column_shift(Bits, 4 * p + 2), column_shift(Bits, 4 * p + 3)};
      x = vorrq_u32(x, vshlq_u32(vreinterpretq_u32_s32(codes[p]), shifts));
    }
    or_row_word(tile + row * 4 + w * kTileVectorBytes, vaddvq_u32(x));
  }
}
LOGQUANT_NEON_INLINE void or_value_codes(std::uint8_t* p, I codes, int shift) {
  const uint32x4_t x = vreinterpretq_u32_u8(vld1q_u8(p));
  const uint32x4_t c = vshlq_u32(vreinterpretq_u32_s32(codes), vdupq_n_s32(shift));
  vst1q_u8(p, vreinterpretq_u8_u32(vorrq_u32(x, c)));
}

/// The value metadata of one tile's 16 tokens as floats by group (see avx512/vec.hpp).
LOGQUANT_NEON_INLINE void load_value_meta(const GroupParams* meta, std::size_t groups,
                                          float* scale, float* min) {
  for (std::size_t g = 0; g < groups; ++g)
    for (std::size_t j = 0; j < 16; j += 4) {
      std::uint32_t raw[4];
      for (std::size_t i = 0; i < 4; ++i) std::memcpy(&raw[i], meta + (j + i) * groups + g, 4);
      F sc, mn;
      split_params(vreinterpretq_s32_u32(vld1q_u32(raw)), sc, mn);
      vst1q_f32(scale + g * 16 + j, sc);
      vst1q_f32(min + g * 16 + j, mn);
    }
}

}  // namespace neon
}  // namespace logquant

#endif  // LOGQUANT_HAVE_NEON_KERNELS
