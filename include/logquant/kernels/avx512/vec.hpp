// The AVX-512 ops layer: the vocabulary the generic kernels (kernels/generic/) are written in,
// 16 lanes per vector, one vector per 16-lane tile row. The same names exist in avx2/vec.hpp (8
// lanes) and avxvnni/vec.hpp; what differs between ISAs is here, what is the same is written once
// over these names. Every function carries LOGQUANT_TARGET_AVX512 (GCC does not inline a target
// function into a caller without it) and is only ever called after dispatch found the CPU able.
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_X86_KERNELS
#include <immintrin.h>

#include <cstddef>
#include <cfloat>
#include <cstdint>
#include <cstring>

#include "../../quant/group_quantizer.hpp"
#include "../../quant/tile_layout.hpp"
#include "../kernel_table.hpp"
#include "../x86_cpu.hpp"

#define LOGQUANT_AVX512_INLINE inline __attribute__((always_inline)) LOGQUANT_TARGET_AVX512

LOGQUANT_X86_KERNELS_BEGIN

namespace logquant {
namespace avx512 {

/// Splits 16 packed GroupParams (scale in the low half of each dword, min in the high half) into
/// floats. fp16 -> fp32 is exact, so these equal GroupParams::scale_f() / min_f().
LOGQUANT_AVX512_INLINE void split_params(__m512i raw, __m512& scale, __m512& min) {
  scale = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw));
  min = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(raw, 16)));
}

/// GroupQuantizer<Bits>::fit's metadata for each lane's range [lo, hi], bit for bit: the minimum
/// rounded down to fp16; step = (hi - min) / max_code in double, rounded up to float; the scale
/// rounded up to fp16. Hardware directed rounding gives exactly the scalar's nearest-then-nudge
/// results for the finite, in-range inputs the cache accepts (tests compare every byte). Returns
/// the GroupParams as dwords (scale | min << 16).
template <unsigned Bits>
LOGQUANT_AVX512_INLINE __m512i fit_params(__m512 lo, __m512 hi) {
  constexpr int kDown = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
  constexpr int kUp = _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC;
  const __m256i min_h = _mm512_cvtps_ph(lo, kDown);
  const __m512 min_f = _mm512_cvtph_ps(min_h);
  const __m512d max_code = _mm512_set1_pd(static_cast<double>((1u << Bits) - 1u));
  const __m512d s0 = _mm512_div_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(hi)),
                                                 _mm512_cvtps_pd(_mm512_castps512_ps256(min_f))),
                                   max_code);
  const __m512d s1 = _mm512_div_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(hi, 1)),
                                                 _mm512_cvtps_pd(_mm512_extractf32x8_ps(min_f, 1))),
                                   max_code);
  const __m512 step = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvt_roundpd_ps(s0, kUp)),
                                         _mm512_cvt_roundpd_ps(s1, kUp), 1);
  const __m256i scale_h = _mm512_cvtps_ph(step, kUp);
  return _mm512_or_si512(_mm512_cvtepu16_epi32(scale_h),
                         _mm512_slli_epi32(_mm512_cvtepu16_epi32(min_h), 16));
}

/// 1 / scale, or 0 where scale is 0 (GroupQuantizer::inverse).
LOGQUANT_AVX512_INLINE __m512 inverse_scale(__m512 scale) {
  const __m512 zero = _mm512_setzero_ps();
  return _mm512_maskz_div_ps(_mm512_cmp_ps_mask(scale, zero, _CMP_NEQ_OQ), _mm512_set1_ps(1.0f),
                             scale);
}

/// GroupQuantizer::encode on 16 lanes: clamp(round_half_even((x - min) * inv), 0, max_code).
/// The conversion rounds in the current mode, as std::nearbyint does.
template <unsigned Bits>
LOGQUANT_AVX512_INLINE __m512i encode(__m512 x, __m512 min, __m512 inv) {
  const __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(x, min), inv));
  return _mm512_min_epi32(_mm512_max_epi32(r, _mm512_setzero_si512()),
                          _mm512_set1_epi32(static_cast<int>((1u << Bits) - 1u)));
}

LOGQUANT_AVX512_INLINE float reduce_max(__m512 v) { return _mm512_reduce_max_ps(v); }
LOGQUANT_AVX512_INLINE float reduce_min(__m512 v) { return _mm512_reduce_min_ps(v); }
LOGQUANT_AVX512_INLINE float reduce_add(__m512 v) { return _mm512_reduce_add_ps(v); }

/// Lane j of the result is the sum of the 16 lanes of v[j]: a transposing reduction tree, 45
/// instructions instead of 16 separate horizontal sums.
LOGQUANT_AVX512_INLINE __m512 transpose_sum(const __m512* v) {
  __m512 a[8], b[4], c[2];
  LOGQUANT_UNROLL
  for (int i = 0; i < 8; ++i)  // 128-bit lane: [v2i, v2i+1, v2i, v2i+1] partials
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  LOGQUANT_UNROLL
  for (int i = 0; i < 4; ++i) {  // 128-bit lane: [v4i, v4i+1, v4i+2, v4i+3] partials
    const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  LOGQUANT_UNROLL
  for (int i = 0; i < 2; ++i)  // 128-bit lanes: [b2i lanes 0+1, b2i 2+3, b2i+1 0+1, b2i+1 2+3]
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

struct MaxOp {
  LOGQUANT_AVX512_INLINE static __m512 apply(__m512 a, __m512 b) { return _mm512_max_ps(a, b); }
};
struct AddOp {
  LOGQUANT_AVX512_INLINE static __m512 apply(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
};

/// Lane i of the result (i < 8) is Op over the 16 lanes of v[i]; lanes 8-15 are unspecified. A
/// transposing tree, 24 instructions for all 8 instead of 8 per horizontal reduction.
template <class Op>
LOGQUANT_AVX512_INLINE __m512 transpose_reduce8_(const __m512* v) {
  __m512 a[4], b[2];
  LOGQUANT_UNROLL
  for (int i = 0; i < 4; ++i)  // 128-bit lane: [v2i, v2i+1, v2i, v2i+1]
    a[i] = Op::apply(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                     _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  LOGQUANT_UNROLL
  for (int i = 0; i < 2; ++i) {  // 128-bit lane: [v4i .. v4i+3]
    const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    b[i] = Op::apply(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                     _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  // 128-bit lanes: [v0-3 (b0 lanes 0+1), v0-3 (b0 2+3), v4-7 (b1 0+1), v4-7 (b1 2+3)]
  const __m512 c = Op::apply(_mm512_shuffle_f32x4(b[0], b[1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(b[0], b[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 d =
      Op::apply(c, _mm512_shuffle_f32x4(c, c, _MM_SHUFFLE(2, 3, 0, 1)));  // v0-3 | . | v4-7 | .
  return _mm512_permutexvar_ps(
      _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11), d);
}

/// Lane i of the result (i < 4) is Op over the 16 lanes of v[i] (each 128-bit lane holds the
/// same four results): transpose_reduce8_ for at most four inputs, 13 instructions instead of 24.
template <class Op>
LOGQUANT_AVX512_INLINE __m512 transpose_reduce4_(const __m512* v) {
  const __m512 a0 = Op::apply(_mm512_unpacklo_ps(v[0], v[1]), _mm512_unpackhi_ps(v[0], v[1]));
  const __m512 a1 = Op::apply(_mm512_unpacklo_ps(v[2], v[3]), _mm512_unpackhi_ps(v[2], v[3]));
  const __m512d x = _mm512_castps_pd(a0), y = _mm512_castps_pd(a1);
  const __m512 b = Op::apply(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),  // 128-bit lane: v0-3
                             _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  const __m512 c = Op::apply(b, _mm512_shuffle_f32x4(b, b, _MM_SHUFFLE(2, 3, 0, 1)));
  return Op::apply(c, _mm512_shuffle_f32x4(c, c, _MM_SHUFFLE(1, 0, 3, 2)));
}

/// Lane i of the result (i < N <= 8) is Op over the 16 lanes of v[i] (v has kReduceWidth
/// entries; those past N are read, and must be initialised).
template <class Op, int N>
LOGQUANT_AVX512_INLINE __m512 transpose_reduce(const __m512* v) {
  static_assert(N <= 8, "one tree reduces 8 vectors");
  if constexpr (N <= 4)
    return transpose_reduce4_<Op>(v);
  else
    return transpose_reduce8_<Op>(v);
}

// ---- The vocabulary of kernels/generic/ ----

using F = __m512;
using I = __m512i;
using M = __mmask16;  // a lane mask
inline constexpr Isa kIsa = Isa::kAvx512;
inline constexpr std::size_t kLanes = 16;
inline constexpr int kRegisters = 32;
inline constexpr std::size_t kHeadBlock = 8;    // query heads per pass over the codes
inline constexpr int kReduceWidth = 8;          // vectors one transpose_reduce takes
inline constexpr int kFullHeads = 4;            // query heads per pass over the FP block
inline constexpr float kExpFloor = -104.0f;     // exp_ps: below, scale_pow2 gives 0
inline bool supported() { return kernels::x86_features().avx512; }

LOGQUANT_AVX512_INLINE M first_lanes(std::size_t n) {
  return n >= 16 ? static_cast<M>(0xffff) : static_cast<M>((1u << n) - 1u);
}
LOGQUANT_AVX512_INLINE M lane_bits(unsigned bits) { return static_cast<M>(bits); }
LOGQUANT_AVX512_INLINE F zero() { return _mm512_setzero_ps(); }
LOGQUANT_AVX512_INLINE F set1(float x) { return _mm512_set1_ps(x); }
LOGQUANT_AVX512_INLINE F load(const float* p) { return _mm512_loadu_ps(p); }
LOGQUANT_AVX512_INLINE F loadz(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
LOGQUANT_AVX512_INLINE void store(float* p, F v) { _mm512_storeu_ps(p, v); }
LOGQUANT_AVX512_INLINE void store(float* p, M m, F v) { _mm512_mask_storeu_ps(p, m, v); }
LOGQUANT_AVX512_INLINE F add(F a, F b) { return _mm512_add_ps(a, b); }
LOGQUANT_AVX512_INLINE F sub(F a, F b) { return _mm512_sub_ps(a, b); }
LOGQUANT_AVX512_INLINE F mul(F a, F b) { return _mm512_mul_ps(a, b); }
LOGQUANT_AVX512_INLINE F max(F a, F b) { return _mm512_max_ps(a, b); }
LOGQUANT_AVX512_INLINE F min(F a, F b) { return _mm512_min_ps(a, b); }
LOGQUANT_AVX512_INLINE F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
LOGQUANT_AVX512_INLINE F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
/// max(acc, |x|).
LOGQUANT_AVX512_INLINE F max_abs(F acc, F x) { return _mm512_range_ps(acc, x, 0x0b); }
LOGQUANT_AVX512_INLINE F select(M m, F a, F b) { return _mm512_mask_mov_ps(b, m, a); }
LOGQUANT_AVX512_INLINE F maskz(M m, F a) { return _mm512_maskz_mov_ps(m, a); }
LOGQUANT_AVX512_INLINE bool any_greater(F a, F b) {
  return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ) != 0;
}
LOGQUANT_AVX512_INLINE F round_nearest(F x) {
  return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/// p 2^n (n integral), exact down to denormals; x is exp_ps's argument (0 below kExpFloor).
LOGQUANT_AVX512_INLINE F scale_pow2(F p, F n, F) { return _mm512_scalef_ps(p, n); }
/// Lane i of v, broadcast.
LOGQUANT_AVX512_INLINE F lane(F v, int i) { return _mm512_permutexvar_ps(_mm512_set1_epi32(i), v); }
/// Lane j of the result is lane j + k of v.
LOGQUANT_AVX512_INLINE F lanes_down(F v, int k) {
  return _mm512_permutexvar_ps(
      _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                       _mm512_set1_epi32(k)),
      v);
}
/// kernels::operand_inverse(limit, max) in lanes 0-7 (the reduce trees' results): the correctly
/// rounded quotient, or 0 where it is not finite; a 256-bit division issues twice as often.
LOGQUANT_AVX512_INLINE F operand_inverse(float limit, F max) {
  const __m256 inv = _mm256_div_ps(_mm256_set1_ps(limit), _mm512_castps512_ps256(max));
  const __mmask8 finite = _mm256_cmp_ps_mask(inv, _mm256_set1_ps(FLT_MAX), _CMP_LE_OQ);
  return _mm512_zextps256_ps512(_mm256_maskz_mov_ps(finite, inv));
}

LOGQUANT_AVX512_INLINE I load_int(const void* p) { return _mm512_loadu_si512(p); }
LOGQUANT_AVX512_INLINE I maskz_int(M m, I a) { return _mm512_maskz_mov_epi32(m, a); }
LOGQUANT_AVX512_INLINE I add_int(I a, I b) { return _mm512_add_epi32(a, b); }
LOGQUANT_AVX512_INLINE I and_int(I a, I b) { return _mm512_and_si512(a, b); }
LOGQUANT_AVX512_INLINE I set1_int(int x) { return _mm512_set1_epi32(x); }
LOGQUANT_AVX512_INLINE I select_int(M m, I a, I b) { return _mm512_mask_mov_epi32(b, m, a); }
LOGQUANT_AVX512_INLINE I shift_right(I x, I n) { return _mm512_srlv_epi32(x, n); }  // per lane
LOGQUANT_AVX512_INLINE I to_int(F x) { return _mm512_cvtps_epi32(x); }  // rounds half to even
LOGQUANT_AVX512_INLINE F to_float(I x) { return _mm512_cvtepi32_ps(x); }
LOGQUANT_AVX512_INLINE I digit_hi(I x) { return _mm512_srai_epi32(x, 7); }
LOGQUANT_AVX512_INLINE I digit_lo(I x) { return _mm512_and_si512(x, _mm512_set1_epi32(127)); }
/// 64 int32 lanes (within int8; v[0..3]) as 64 bytes in lane order: two saturating packs leave
/// each 128-bit lane holding 4 values of each input, one dword permute puts them in order.
LOGQUANT_AVX512_INLINE void store_bytes64(std::int8_t* p, const I* v) {
  const I x = _mm512_packs_epi16(_mm512_packs_epi32(v[0], v[1]), _mm512_packs_epi32(v[2], v[3]));
  _mm512_storeu_si512(p, _mm512_permutexvar_epi32(
                             _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), x));
}
/// The 16 int32 lanes (within int8) of one tile row as 16 bytes.
LOGQUANT_AVX512_INLINE void store_bytes16(std::int8_t* p, const I* v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v[0]));
}
LOGQUANT_AVX512_INLINE I broadcast4(const std::int8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
LOGQUANT_AVX512_INLINE I load_params(const GroupParams* p, M m) {
  return _mm512_maskz_loadu_epi32(m, p);
}
LOGQUANT_AVX512_INLINE void store_params(GroupParams* p, M m, I v) {
  _mm512_mask_storeu_epi32(p, m, v);
}

/// Plane k of a code vector: the codes of columns [4k, 4k + 4) of each lane's row, as bytes.
template <unsigned Bits>
LOGQUANT_AVX512_INLINE I plane(I x, unsigned k) {
  const I mask = _mm512_set1_epi8(static_cast<char>((1u << Bits) - 1u));
  if constexpr (Bits == 8) return x;
  else if (k == 0) return _mm512_and_si512(x, mask);
  else return _mm512_and_si512(_mm512_srli_epi16(x, static_cast<unsigned>(k * Bits)), mask);
}
/// acc + the u8 plane . s8 operand products, four per int32 lane (vpdpbusd).
template <unsigned Bits>
LOGQUANT_AVX512_INLINE I dot_add(I acc, I plane, I operand) {
  return _mm512_dpbusd_epi32(acc, plane, operand);
}
/// dot_add sums are int32 already: no column-tile limit (kDotSpan 0) and nothing to widen.
template <unsigned Bits>
inline constexpr std::size_t kDotSpan = 0;
template <unsigned Bits>
LOGQUANT_AVX512_INLINE I widen(I acc) { return acc; }

/// Bit offsets of the 16 columns of a tile row inside their row dwords (tile_layout.hpp).
template <unsigned Bits>
LOGQUANT_AVX512_INLINE I row_shifts() {
  const I lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const I byte = _mm512_slli_epi32(_mm512_and_si512(lane, _mm512_set1_epi32(3)), 3);
  const I field = _mm512_srli_epi32(_mm512_and_si512(lane, _mm512_set1_epi32(32 / Bits - 1)), 2);
  return _mm512_add_epi32(byte, _mm512_mullo_epi32(field, _mm512_set1_epi32(Bits)));
}

/// ORs one tile row of 16 codes (lane = column) into `tile`: shifts each code to its bit offset,
/// ORs the lanes of each 64-byte vector's columns together and writes one dword per vector.
template <unsigned Bits>
LOGQUANT_AVX512_INLINE void or_tile_row(const I* codes, std::uint8_t* tile, std::size_t row) {
  constexpr unsigned kCpv = 32 / Bits;  // columns per vector: lanes OR-ed into one dword
  I x = _mm512_sllv_epi32(codes[0], row_shifts<Bits>());
  x = _mm512_or_si512(x, _mm512_shuffle_epi32(x, _MM_PERM_CDAB));
  x = _mm512_or_si512(x, _mm512_shuffle_epi32(x, _MM_PERM_BADC));
  if constexpr (kCpv >= 8) x = _mm512_or_si512(x, _mm512_shuffle_i32x4(x, x, _MM_SHUFFLE(2, 3, 0, 1)));
  if constexpr (kCpv >= 16) x = _mm512_or_si512(x, _mm512_shuffle_i32x4(x, x, _MM_SHUFFLE(1, 0, 3, 2)));
  alignas(64) std::uint32_t lanes[16];
  _mm512_store_si512(lanes, x);
  LOGQUANT_UNROLL
  for (unsigned v = 0; v < Bits / 2; ++v)
    or_row_word(tile + v * kTileVectorBytes + row * 4, lanes[v * kCpv]);
}

/// ORs codes << shift into the 16 dwords at p (one column of a value tile, rows = channels).
LOGQUANT_AVX512_INLINE void or_value_codes(std::uint8_t* p, I codes, int shift) {
  _mm512_storeu_si512(p, _mm512_or_si512(_mm512_loadu_si512(p),
                                         _mm512_sll_epi32(codes, _mm_cvtsi32_si128(shift))));
}

/// The value metadata of one tile's 16 tokens, [token][group] dwords, as floats by group:
/// scale[g * 16 + j], min[g * 16 + j]. One or two groups (head_dim 128 with groups of 64 or 128)
/// are deinterleaved with loads and permutes, more with a gather.
LOGQUANT_AVX512_INLINE void load_value_meta(const GroupParams* meta, std::size_t groups,
                                            float* scale, float* min) {
  F sc, mn;
  if (groups == 1) {
    split_params(_mm512_loadu_si512(meta), sc, mn);
    _mm512_storeu_ps(scale, sc);
    _mm512_storeu_ps(min, mn);
  } else if (groups == 2) {
    const I a = _mm512_loadu_si512(meta), b = _mm512_loadu_si512(meta + 16);
    const I even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    split_params(_mm512_permutex2var_epi32(a, even, b), sc, mn);
    _mm512_storeu_ps(scale, sc);
    _mm512_storeu_ps(min, mn);
    split_params(_mm512_permutex2var_epi32(a, _mm512_add_epi32(even, _mm512_set1_epi32(1)), b), sc,
                 mn);
    _mm512_storeu_ps(scale + 16, sc);
    _mm512_storeu_ps(min + 16, mn);
  } else {
    const I index =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32(static_cast<int>(groups)));
    for (std::size_t g = 0; g < groups; ++g) {
      split_params(_mm512_i32gather_epi32(index, meta + g, 4), sc, mn);
      _mm512_storeu_ps(scale + g * 16, sc);
      _mm512_storeu_ps(min + g * 16, mn);
    }
  }
}

}  // namespace avx512
}  // namespace logquant

LOGQUANT_X86_KERNELS_END

#endif  // LOGQUANT_HAVE_X86_KERNELS
