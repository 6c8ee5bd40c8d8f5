// Small AVX2 (+FMA, F16C) building blocks shared by the AVX2 kernels: tail masks, fp16 metadata,
// bit-exact group metadata, horizontal reductions, the 8-to-1 transposing sum, a vector exp and
// the int8 dot-product step. Every function carries LOGQUANT_TARGET_AVX2 (GCC does not inline a
// target function into a caller without it) and is only called after dispatch found AVX2.
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_X86_KERNELS
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "../../quant/group_quantizer.hpp"
#include "../x86_cpu.hpp"

#define LOGQUANT_AVX2_INLINE inline __attribute__((always_inline)) LOGQUANT_TARGET_AVX2

LOGQUANT_X86_KERNELS_BEGIN

namespace logquant {
namespace avx2 {

/// All-ones in lanes [0, n) of 8, for maskload/maskstore.
LOGQUANT_AVX2_INLINE __m256i tail_mask(std::size_t n) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n > 8 ? 8 : n)), lane);
}

LOGQUANT_AVX2_INLINE __m256 load(const float* p, __m256i mask) {
  return _mm256_maskload_ps(p, mask);
}
LOGQUANT_AVX2_INLINE void store(float* p, __m256i mask, __m256 v) {
  _mm256_maskstore_ps(p, mask, v);
}

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
LOGQUANT_AVX2_INLINE __m256 transpose_sum8(const __m256* v) {
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

/// Lane i of the result (i < 4) is Op over the 8 lanes of v[i]: a transposing tree, 11
/// instructions for all 4 instead of 5 per horizontal reduction.
template <class Op>
LOGQUANT_AVX2_INLINE __m128 transpose_reduce4(const __m256* v) {
  const __m256 a = Op::apply(_mm256_unpacklo_ps(v[0], v[1]), _mm256_unpackhi_ps(v[0], v[1]));
  const __m256 b = Op::apply(_mm256_unpacklo_ps(v[2], v[3]), _mm256_unpackhi_ps(v[2], v[3]));
  const __m256d x = _mm256_castps_pd(a), y = _mm256_castps_pd(b);
  const __m256 c = Op::apply(_mm256_castpd_ps(_mm256_unpacklo_pd(x, y)),
                             _mm256_castpd_ps(_mm256_unpackhi_pd(x, y)));
  return _mm256_castps256_ps128(Op::apply(c, _mm256_permute2f128_ps(c, c, 0x01)));
}

/// exp(x) for x <= 0 (softmax arguments); the error against std::exp is measured and bounded in
/// tests/test_kernels.cpp. The same reduction and Cephes polynomial as avx512::exp_ps; 2^n is
/// built in the exponent field, so results below FLT_MIN (x < -87.3) are flushed to 0, where
/// std::exp gives a denormal under 1.2e-38.
LOGQUANT_AVX2_INLINE __m256 exp_ps(__m256 x) {
  const __m256 in_range = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_GE_OQ);
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i pow2n =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(in_range, _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n)));
}

/// 16 int32 lanes (two vectors, values within int8) to 16 bytes in lane order.
LOGQUANT_AVX2_INLINE __m128i pack_bytes(__m256i a, __m256i b) {
  const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), _MM_SHUFFLE(3, 1, 2, 0));
  return _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}

}  // namespace avx2
}  // namespace logquant

LOGQUANT_X86_KERNELS_END

#endif  // LOGQUANT_HAVE_X86_KERNELS
