// Small AVX-512 building blocks shared by the AVX-512 kernels: tail masks, fp16 metadata loads,
// bit-exact group metadata, horizontal reductions, the 16-to-1 transposing sum, and a vector exp.
// Every function carries LOGQUANT_TARGET_AVX512 (GCC does not inline a target function into a
// caller without it) and is only ever called after dispatch found the CPU able to run it.
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_X86_KERNELS
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "../../quant/group_quantizer.hpp"
#include "../x86_cpu.hpp"

#define LOGQUANT_AVX512_INLINE inline __attribute__((always_inline)) LOGQUANT_TARGET_AVX512

LOGQUANT_X86_KERNELS_BEGIN

namespace logquant {
namespace avx512 {

/// Lanes [0, n) of 16 (n >= 16 gives all).
LOGQUANT_AVX512_INLINE __mmask16 tail_mask(std::size_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
}

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
LOGQUANT_AVX512_INLINE __m512 transpose_sum16(const __m512* v) {
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
LOGQUANT_AVX512_INLINE __m512 transpose_reduce8(const __m512* v) {
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
/// same four results): transpose_reduce8 for at most four inputs, 13 instructions instead of 24.
template <class Op>
LOGQUANT_AVX512_INLINE __m512 transpose_reduce4(const __m512* v) {
  const __m512 a0 = Op::apply(_mm512_unpacklo_ps(v[0], v[1]), _mm512_unpackhi_ps(v[0], v[1]));
  const __m512 a1 = Op::apply(_mm512_unpacklo_ps(v[2], v[3]), _mm512_unpackhi_ps(v[2], v[3]));
  const __m512d x = _mm512_castps_pd(a0), y = _mm512_castps_pd(a1);
  const __m512 b = Op::apply(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),  // 128-bit lane: v0-3
                             _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  const __m512 c = Op::apply(b, _mm512_shuffle_f32x4(b, b, _MM_SHUFFLE(2, 3, 0, 1)));
  return Op::apply(c, _mm512_shuffle_f32x4(c, c, _MM_SHUFFLE(1, 0, 3, 2)));
}

/// Lane i of v, broadcast.
LOGQUANT_AVX512_INLINE __m512 lane(__m512 v, int i) {
  return _mm512_permutexvar_ps(_mm512_set1_epi32(i), v);
}

/// exp(x) for x <= 0 (softmax arguments); the error against std::exp is measured and bounded in
/// tests/test_kernels.cpp. Cody-Waite reduction x = n ln2 + r with |r| <= ln2 / 2, then
/// exp(r) = 1 + r + r^2 P(r) with the classic Cephes expf minimax coefficients for P (degree 5),
/// and an exact scaling by 2^n (denormal results below FLT_MIN, 0 below -104).
LOGQUANT_AVX512_INLINE __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

}  // namespace avx512
}  // namespace logquant

LOGQUANT_X86_KERNELS_END

#endif  // LOGQUANT_HAVE_X86_KERNELS
