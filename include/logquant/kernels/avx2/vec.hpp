// The AVX2 (+FMA, F16C) ops layer: the vocabulary of kernels/generic/ (see avx512/vec.hpp) on 8
// lanes, a 16-lane tile row as two vectors. The int8 products go through vpmaddubsw (pairs summed
// to int16, which saturates) and vpmaddwd (to int32): dot_add keeps int16 sums for kDotSpan
// column tiles, 8-bit codes as two nibbles. Every function carries LOGQUANT_TARGET_AVX2 and is
// only called after dispatch found AVX2.
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

#define LOGQUANT_AVX2_INLINE inline __attribute__((always_inline)) LOGQUANT_TARGET_AVX2

LOGQUANT_X86_KERNELS_BEGIN

namespace logquant {
namespace avx2 {

/// Splits 8 packed GroupParams (scale | min << 16 per dword) into floats (exact fp16 -> fp32).
LOGQUANT_AVX2_INLINE void split_params(__m256i raw, __m256& scale, __m256& min) {
  // Per 128-bit lane: even 16-bit words (scales) to the low 8 bytes, odd words (mins) above.
  const __m256i order = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1,
                                         4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  const __m256i x =
      _mm256_permute4x64_epi64(_mm256_shuffle_epi8(raw, order), _MM_SHUFFLE(3, 1, 2, 0));
  scale = _mm256_cvtph_ps(_mm256_castsi256_si128(x));
  min = _mm256_cvtph_ps(_mm256_extracti128_si256(x, 1));
}

/// (hi - min) / max_code computed in double and rounded up to float, 4 lanes: the scalar's
/// "nearest, then one step up if below" is exactly rounding towards +inf.
LOGQUANT_AVX2_INLINE __m128 step_up(__m128 hi, __m128 min, double max_code) {
  const __m256d step = _mm256_div_pd(_mm256_sub_pd(_mm256_cvtps_pd(hi), _mm256_cvtps_pd(min)),
                                     _mm256_set1_pd(max_code));
  const __m128 f = _mm256_cvtpd_ps(step);
  const __m256i below64 = _mm256_castpd_si256(_mm256_cmp_pd(_mm256_cvtps_pd(f), step, _CMP_LT_OQ));
  const __m128i below = _mm256_castsi256_si128(
      _mm256_permutevar8x32_epi32(below64, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
  // f >= 0 here, so the next float up is the next bit pattern (below is -1 where it applies).
  return _mm_castsi128_ps(_mm_sub_epi32(_mm_castps_si128(f), below));
}

/// GroupQuantizer<Bits>::fit's metadata for each lane's range [lo, hi], bit for bit (see
/// avx512/vec.hpp): minimum rounded down to fp16, double step rounded up to float, scale rounded
/// up to fp16. Returns the GroupParams as dwords (scale | min << 16).
template <unsigned Bits>
LOGQUANT_AVX2_INLINE __m256i fit_params(__m256 lo, __m256 hi) {
  const __m128i min_h = _mm256_cvtps_ph(lo, _MM_FROUND_TO_NEG_INF);
  const __m256 min_f = _mm256_cvtph_ps(min_h);
  constexpr double kMaxCode = static_cast<double>((1u << Bits) - 1u);
  const __m128 s0 = step_up(_mm256_castps256_ps128(hi), _mm256_castps256_ps128(min_f), kMaxCode);
  const __m128 s1 =
      step_up(_mm256_extractf128_ps(hi, 1), _mm256_extractf128_ps(min_f, 1), kMaxCode);
  const __m128i scale_h = _mm256_cvtps_ph(_mm256_set_m128(s1, s0), _MM_FROUND_TO_POS_INF);
  return _mm256_or_si256(_mm256_cvtepu16_epi32(scale_h),
                         _mm256_slli_epi32(_mm256_cvtepu16_epi32(min_h), 16));
}

/// 1 / scale, or 0 where scale is 0 (GroupQuantizer::inverse).
LOGQUANT_AVX2_INLINE __m256 inverse_scale(__m256 scale) {
  const __m256 nonzero = _mm256_cmp_ps(scale, _mm256_setzero_ps(), _CMP_NEQ_OQ);
  return _mm256_and_ps(nonzero, _mm256_div_ps(_mm256_set1_ps(1.0f), scale));
}

/// GroupQuantizer::encode on 8 lanes (the conversion rounds in the current mode, as nearbyint).
template <unsigned Bits>
LOGQUANT_AVX2_INLINE __m256i encode(__m256 x, __m256 min, __m256 inv) {
  const __m256i r = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(x, min), inv));
  return _mm256_min_epi32(_mm256_max_epi32(r, _mm256_setzero_si256()),
                          _mm256_set1_epi32(static_cast<int>((1u << Bits) - 1u)));
}

LOGQUANT_AVX2_INLINE float reduce_max(__m256 v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}
LOGQUANT_AVX2_INLINE float reduce_min(__m256 v) {
  __m128 x = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_min_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_min_ss(x, _mm_movehdup_ps(x)));
}
LOGQUANT_AVX2_INLINE float reduce_add(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}

/// Lane j of the result is the sum of the 8 lanes of v[j] (a transposing reduction tree).
LOGQUANT_AVX2_INLINE __m256 transpose_sum(const __m256* v) {
  __m256 a[4], b[2];
  LOGQUANT_UNROLL
  for (int i = 0; i < 4; ++i)  // 128-bit lane: [v2i, v2i+1, v2i, v2i+1] partials
    a[i] = _mm256_add_ps(_mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  LOGQUANT_UNROLL
  for (int i = 0; i < 2; ++i) {  // 128-bit lane: [v4i .. v4i+3] partials
    const __m256d x = _mm256_castps_pd(a[2 * i]), y = _mm256_castps_pd(a[2 * i + 1]);
    b[i] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(x, y)),
                         _mm256_castpd_ps(_mm256_unpackhi_pd(x, y)));
  }
  return _mm256_add_ps(_mm256_permute2f128_ps(b[0], b[1], 0x20),
                       _mm256_permute2f128_ps(b[0], b[1], 0x31));
}

struct MaxOp {
  LOGQUANT_AVX2_INLINE static __m256 apply(__m256 a, __m256 b) { return _mm256_max_ps(a, b); }
};
struct AddOp {
  LOGQUANT_AVX2_INLINE static __m256 apply(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
};

/// Lane i of the result (i < N <= 4; also i + 4) is Op over the 8 lanes of v[i] (v has
/// kReduceWidth entries, all initialised): a transposing tree, 11 instructions for all 4.
template <class Op, int N>
LOGQUANT_AVX2_INLINE __m256 transpose_reduce(const __m256* v) {
  static_assert(N <= 4, "one tree reduces 4 vectors");
  const __m256 a = Op::apply(_mm256_unpacklo_ps(v[0], v[1]), _mm256_unpackhi_ps(v[0], v[1]));
  const __m256 b = Op::apply(_mm256_unpacklo_ps(v[2], v[3]), _mm256_unpackhi_ps(v[2], v[3]));
  const __m256d x = _mm256_castps_pd(a), y = _mm256_castps_pd(b);
  const __m256 c = Op::apply(_mm256_castpd_ps(_mm256_unpacklo_pd(x, y)),
                             _mm256_castpd_ps(_mm256_unpackhi_pd(x, y)));
  return Op::apply(c, _mm256_permute2f128_ps(c, c, 0x01));
}

/// 16 int32 lanes (two vectors, values within int8) to 16 bytes in lane order.
LOGQUANT_AVX2_INLINE __m128i pack_bytes(__m256i a, __m256i b) {
  const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), _MM_SHUFFLE(3, 1, 2, 0));
  return _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}

// ---- The vocabulary of kernels/generic/ ----

using F = __m256;
using I = __m256i;
using M = __m256i;  // a lane mask: all ones in selected lanes
inline constexpr Isa kIsa = Isa::kAvx2;
inline constexpr std::size_t kLanes = 8;
inline constexpr int kRegisters = 16;
inline constexpr std::size_t kHeadBlock = 4;
inline constexpr int kReduceWidth = 4;
inline constexpr int kFullHeads = 2;
inline constexpr float kExpFloor = -87.33654f;  // below, 2^n built in the exponent underflows
inline bool supported() { return kernels::x86_features().avx2; }

LOGQUANT_AVX2_INLINE M first_lanes(std::size_t n) {
  const I lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n > 8 ? 8 : n)), lane);
}
LOGQUANT_AVX2_INLINE M lane_bits(unsigned bits) {
  const I bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(static_cast<int>(bits)), bit), bit);
}
LOGQUANT_AVX2_INLINE F zero() { return _mm256_setzero_ps(); }
LOGQUANT_AVX2_INLINE F set1(float x) { return _mm256_set1_ps(x); }
LOGQUANT_AVX2_INLINE F load(const float* p) { return _mm256_loadu_ps(p); }
LOGQUANT_AVX2_INLINE F loadz(const float* p, M m) { return _mm256_maskload_ps(p, m); }
LOGQUANT_AVX2_INLINE void store(float* p, F v) { _mm256_storeu_ps(p, v); }
LOGQUANT_AVX2_INLINE void store(float* p, M m, F v) { _mm256_maskstore_ps(p, m, v); }
LOGQUANT_AVX2_INLINE F add(F a, F b) { return _mm256_add_ps(a, b); }
LOGQUANT_AVX2_INLINE F sub(F a, F b) { return _mm256_sub_ps(a, b); }
LOGQUANT_AVX2_INLINE F mul(F a, F b) { return _mm256_mul_ps(a, b); }
LOGQUANT_AVX2_INLINE F max(F a, F b) { return _mm256_max_ps(a, b); }
LOGQUANT_AVX2_INLINE F min(F a, F b) { return _mm256_min_ps(a, b); }
LOGQUANT_AVX2_INLINE F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
LOGQUANT_AVX2_INLINE F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
LOGQUANT_AVX2_INLINE F max_abs(F acc, F x) {
  return _mm256_max_ps(acc, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x));
}
LOGQUANT_AVX2_INLINE F select(M m, F a, F b) {
  return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m));
}
LOGQUANT_AVX2_INLINE F maskz(M m, F a) { return _mm256_and_ps(_mm256_castsi256_ps(m), a); }
LOGQUANT_AVX2_INLINE bool any_greater(F a, F b) {
  return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)) != 0;
}
LOGQUANT_AVX2_INLINE F round_nearest(F x) {
  return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/// p 2^n with 2^n built in the exponent field: 0 where x < kExpFloor (where std::exp gives a
/// denormal under 1.2e-38).
LOGQUANT_AVX2_INLINE F scale_pow2(F p, F n, F x) {
  const F in_range = _mm256_cmp_ps(x, _mm256_set1_ps(kExpFloor), _CMP_GE_OQ);
  const I pow2n =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(in_range, _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n)));
}
LOGQUANT_AVX2_INLINE F lane(F v, int i) {
  return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(i));
}
LOGQUANT_AVX2_INLINE F lanes_down(F v, int k) {
  return _mm256_permutevar8x32_ps(
      v, _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(k)));
}
/// kernels::operand_inverse(limit, max) in lanes 0-3 (the reduce tree's results), 0 above.
LOGQUANT_AVX2_INLINE F operand_inverse(float limit, F max) {
  const __m128 inv = _mm_div_ps(_mm_set1_ps(limit), _mm256_castps256_ps128(max));
  return _mm256_set_m128(_mm_setzero_ps(), _mm_and_ps(_mm_cmple_ps(inv, _mm_set1_ps(FLT_MAX)), inv));
}

LOGQUANT_AVX2_INLINE I load_int(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
LOGQUANT_AVX2_INLINE I maskz_int(M m, I a) { return _mm256_and_si256(m, a); }
LOGQUANT_AVX2_INLINE I add_int(I a, I b) { return _mm256_add_epi32(a, b); }
LOGQUANT_AVX2_INLINE I and_int(I a, I b) { return _mm256_and_si256(a, b); }
LOGQUANT_AVX2_INLINE I set1_int(int x) { return _mm256_set1_epi32(x); }
LOGQUANT_AVX2_INLINE I select_int(M m, I a, I b) { return _mm256_blendv_epi8(b, a, m); }
LOGQUANT_AVX2_INLINE I shift_right(I x, I n) { return _mm256_srlv_epi32(x, n); }  // per lane
LOGQUANT_AVX2_INLINE I to_int(F x) { return _mm256_cvtps_epi32(x); }
LOGQUANT_AVX2_INLINE F to_float(I x) { return _mm256_cvtepi32_ps(x); }
LOGQUANT_AVX2_INLINE I digit_hi(I x) { return _mm256_srai_epi32(x, 7); }
LOGQUANT_AVX2_INLINE I digit_lo(I x) { return _mm256_and_si256(x, _mm256_set1_epi32(127)); }
LOGQUANT_AVX2_INLINE void store_bytes64(std::int8_t* p, const I* v) {
  LOGQUANT_UNROLL
  for (int i = 0; i < 4; ++i)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 16 * i), pack_bytes(v[2 * i], v[2 * i + 1]));
}
LOGQUANT_AVX2_INLINE void store_bytes16(std::int8_t* p, const I* v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), pack_bytes(v[0], v[1]));
}
LOGQUANT_AVX2_INLINE I broadcast4(const std::int8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}
LOGQUANT_AVX2_INLINE I load_params(const GroupParams* p, M m) {
  return _mm256_maskload_epi32(reinterpret_cast<const int*>(p), m);
}
LOGQUANT_AVX2_INLINE void store_params(GroupParams* p, M m, I v) {
  _mm256_maskstore_epi32(reinterpret_cast<int*>(p), m, v);
}

/// Plane k of a code vector (columns [4k, 4k + 4) of each lane's row) as bytes; 8-bit codes as
/// their two nibbles, which vpmaddubsw can multiply without saturating.
struct Nibbles {
  I lo, hi;
};
template <unsigned Bits>
LOGQUANT_AVX2_INLINE auto plane(I x, unsigned k) {
  const I mask = _mm256_set1_epi8(static_cast<char>(Bits == 8 ? 15 : (1u << Bits) - 1u));
  if constexpr (Bits == 8)
    return Nibbles{_mm256_and_si256(x, mask), _mm256_and_si256(_mm256_srli_epi16(x, 4), mask)};
  else if (k == 0)
    return _mm256_and_si256(x, mask);
  else
    return _mm256_and_si256(_mm256_srli_epi16(x, static_cast<int>(k * Bits)), mask);
}
/// acc + plane . operand. 2- and 4-bit: int16 pair sums (|pair| <= 2 * 15 * 128), which widen
/// turns into int32; 8-bit: int32 at once, the high nibble weighted 16.
LOGQUANT_AVX2_INLINE I dot_add_i16(I acc, I plane, I operand) {
  return _mm256_add_epi16(acc, _mm256_maddubs_epi16(plane, operand));
}
template <unsigned Bits, class P>
LOGQUANT_AVX2_INLINE I dot_add(I acc, P plane, I operand) {
  if constexpr (Bits == 8)
    return _mm256_add_epi32(
        acc, _mm256_add_epi32(
                 _mm256_madd_epi16(_mm256_maddubs_epi16(plane.lo, operand), _mm256_set1_epi16(1)),
                 _mm256_madd_epi16(_mm256_maddubs_epi16(plane.hi, operand), _mm256_set1_epi16(16))));
  else
    return dot_add_i16(acc, plane, operand);
}
/// Column tiles (4 planes each) whose int16 sums stay below 32768: 2-bit 8 x 4 x 768, 4-bit
/// 2 x 4 x 3840; 0: int32 already.
template <unsigned Bits>
inline constexpr std::size_t kDotSpan = Bits == 2 ? 8 : Bits == 4 ? 2 : 0;
template <unsigned Bits>
LOGQUANT_AVX2_INLINE I widen(I acc) {
  if constexpr (Bits == 8) return acc;
  else return _mm256_madd_epi16(acc, _mm256_set1_epi16(1));
}

/// ORs one tile row of 16 codes (lane = column; columns 0-7 in codes[0], 8-15 in codes[1]).
template <unsigned Bits>
LOGQUANT_AVX2_INLINE void or_tile_row(const I* codes, std::uint8_t* tile, std::size_t row) {
  I x[2];
  LOGQUANT_UNROLL
  for (unsigned h = 0; h < 2; ++h) {
    const unsigned b = h * 8;
    const I shifts = _mm256_setr_epi32(
        column_shift(Bits, b), column_shift(Bits, b + 1), column_shift(Bits, b + 2),
        column_shift(Bits, b + 3), column_shift(Bits, b + 4), column_shift(Bits, b + 5),
        column_shift(Bits, b + 6), column_shift(Bits, b + 7));
    x[h] = _mm256_sllv_epi32(codes[h], shifts);
    x[h] = _mm256_or_si256(x[h], _mm256_shuffle_epi32(x[h], 0xb1));
    x[h] = _mm256_or_si256(x[h], _mm256_shuffle_epi32(x[h], 0x4e));
  }
  // OR of columns 0-3, 4-7, 8-11, 12-15.
  const auto d0 = static_cast<std::uint32_t>(_mm256_cvtsi256_si32(x[0]));
  const auto d1 = static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(x[0], 1)));
  const auto d2 = static_cast<std::uint32_t>(_mm256_cvtsi256_si32(x[1]));
  const auto d3 = static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(x[1], 1)));
  std::uint8_t* p = tile + row * 4;
  if constexpr (Bits == 2) {
    or_row_word(p, d0 | d1 | d2 | d3);
  } else if constexpr (Bits == 4) {
    or_row_word(p, d0 | d1);
    or_row_word(p + kTileVectorBytes, d2 | d3);
  } else {
    or_row_word(p, d0);
    or_row_word(p + kTileVectorBytes, d1);
    or_row_word(p + 2 * kTileVectorBytes, d2);
    or_row_word(p + 3 * kTileVectorBytes, d3);
  }
}

LOGQUANT_AVX2_INLINE void or_value_codes(std::uint8_t* p, I codes, int shift) {
  auto* v = reinterpret_cast<__m256i*>(p);
  _mm256_storeu_si256(
      v, _mm256_or_si256(_mm256_loadu_si256(v), _mm256_sll_epi32(codes, _mm_cvtsi32_si128(shift))));
}

/// The value metadata of one tile's 16 tokens as floats by group (see avx512/vec.hpp).
LOGQUANT_AVX2_INLINE void load_value_meta(const GroupParams* meta, std::size_t groups,
                                          float* scale, float* min) {
  for (std::size_t g = 0; g < groups; ++g) {
    alignas(32) std::uint32_t raw[16];
    for (std::size_t j = 0; j < 16; ++j) std::memcpy(&raw[j], meta + j * groups + g, 4);
    LOGQUANT_UNROLL
    for (int h = 0; h < 2; ++h) {
      F sc, mn;
      split_params(_mm256_load_si256(reinterpret_cast<const __m256i*>(raw + 8 * h)), sc, mn);
      _mm256_storeu_ps(scale + g * 16 + 8 * h, sc);
      _mm256_storeu_ps(min + g * 16 + 8 * h, mn);
    }
  }
}

}  // namespace avx2
}  // namespace logquant

LOGQUANT_X86_KERNELS_END

#endif  // LOGQUANT_HAVE_X86_KERNELS
