// NEON attention: the fused pass over packed keys and values of scalar/attention.hpp. The int8
// operands are those of kernels::prepare_key_query and kernels::quantize_tile_weights byte for
// byte (vectorized here with the same float expressions), so every integer dot product is the
// reference's; float results differ by rounding only (summation order, FMA, exp_ps). Four tile
// rows sit in one 16-byte register, one row per 32-bit lane, so a shift and a mask give one SDOT
// operand (vec.hpp); all query heads of a KV head share one load of the codes (GQA). Also the
// full-precision block attention.
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_NEON_KERNELS

#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "../../quant/tile_layout.hpp"
#include "../common.hpp"
#include "../views.hpp"
#include "vec.hpp"

namespace logquant {
namespace neon {
namespace detail {

/// Scratch of attend_quantized, kept per thread so a decode step allocates nothing.
struct QuantizedScratch {
  std::vector<std::int8_t> q_hi, q_lo;       // [heads][padded dim] query digits of this key group
  std::vector<float> qscale, bias;           // [heads]
  std::vector<std::int32_t> q_sum_hi, q_sum_lo;  // [heads] 128 Σ digits (8-bit keys, see load_codes)
  std::vector<float> scores;                 // [heads][16] by tile column; then softmax numerators
  std::vector<GroupParams> value_params;     // [groups][16] the tile's value metadata, 0 if absent
  std::vector<std::int8_t> w_hi, w_lo;       // [heads][16] weight digits by tile column
  std::vector<float> wscale, min_sum;        // [heads]
  std::vector<std::int32_t> w_sum_hi, w_sum_lo;  // [heads] 128 Σ digits (8-bit values)
  std::vector<int32x4_t> dot_hi, dot_lo;     // [heads] one register block's integer dots

  void resize(std::size_t heads, std::size_t padded, std::size_t groups) {
    q_hi.resize(heads * padded);
    q_lo.resize(heads * padded);
    for (auto* v : {&qscale, &bias, &wscale, &min_sum}) v->resize(heads);
    for (auto* v : {&q_sum_hi, &q_sum_lo, &w_sum_hi, &w_sum_lo}) v->resize(heads);
    scores.resize(heads * kTileCols);
    value_params.resize(groups * kTileCols);
    w_hi.resize(heads * kTileCols);
    w_lo.resize(heads * kTileCols);
    dot_hi.resize(heads);
    dot_lo.resize(heads);
  }
};

inline QuantizedScratch& quantized_scratch() {
  thread_local QuantizedScratch s;
  return s;
}

/// 128 Σ of 16 digits (the correction for 8-bit codes, see load_codes).
inline std::int32_t digit_sum16(const std::int8_t* d) {
  return 128 * static_cast<std::int32_t>(vaddlvq_s8(vld1q_s8(d)));
}

/// Digits of four rounded operands r: one digit is r itself; two are hi = floor(r / 128) (an
/// arithmetic shift) and lo = r - 128 hi (the low 7 bits), as kernels::split_digits.
template <unsigned Digits>
inline void split_digits4(int32x4_t r, int32x4_t& hi, int32x4_t& lo) {
  if constexpr (Digits == 1) {
    hi = r;
    lo = vdupq_n_s32(0);
  } else {
    hi = vshrq_n_s32(r, 7);
    lo = vandq_s32(r, vdupq_n_s32(127));
  }
}

/// kernels::prepare_key_query, vectorized: the same digits, qscale and padding byte for byte (the
/// same float expressions per channel, and a maximum does not depend on order); only the bias
/// sums in another order. Also returns 128 Σ digits for 8-bit keys.
template <unsigned Digits>
inline void prepare_key_query(const float* q, std::size_t head_dim, std::size_t padded,
                              const GroupParams* meta, std::int8_t* hi, std::int8_t* lo,
                              float& qscale, float& bias, std::int32_t& sum_hi,
                              std::int32_t& sum_lo) {
  const float limit = kernels::operand_limit(Digits);
  const std::size_t body = head_dim - head_dim % 16;
  float32x4_t vmax = vdupq_n_f32(0.0f), vbias = vdupq_n_f32(0.0f);
  for (std::size_t c = 0; c < body; c += 4) {
    float32x4_t scale, min;
    load_params(meta + c, scale, min);
    const float32x4_t qc = vld1q_f32(q + c);
    vmax = vmaxq_f32(vmax, vabsq_f32(vmulq_f32(qc, scale)));
    vbias = vfmaq_f32(vbias, qc, min);
  }
  float maxabs = vmaxvq_f32(vmax), b = vaddvq_f32(vbias);
  for (std::size_t c = body; c < head_dim; ++c) {
    maxabs = std::max(maxabs, std::fabs(q[c] * meta[c].scale_f()));
    b += q[c] * meta[c].min_f();
  }
  const float inv = kernels::operand_inverse(limit, maxabs);
  const float32x4_t vinv = vdupq_n_f32(inv), vlimit = vdupq_n_f32(limit);
  const float32x4_t vneg_limit = vdupq_n_f32(-limit);
  for (std::size_t c = 0; c < body; c += 16) {
    int32x4_t h[4], l[4];
    for (std::size_t i = 0; i < 4; ++i) {
      float32x4_t scale, min;
      load_params(meta + c + 4 * i, scale, min);
      const float32x4_t x = vmulq_f32(vmulq_f32(vld1q_f32(q + c + 4 * i), scale), vinv);
      const float32x4_t r = vminq_f32(vmaxq_f32(vrndnq_f32(x), vneg_limit), vlimit);
      split_digits4<Digits>(vcvtq_s32_f32(r), h[i], l[i]);
    }
    vst1q_s8(hi + c, narrow_bytes(h[0], h[1], h[2], h[3]));
    vst1q_s8(lo + c, narrow_bytes(l[0], l[1], l[2], l[3]));
  }
  for (std::size_t c = body; c < head_dim; ++c) {
    const float r = std::clamp(std::nearbyint(q[c] * meta[c].scale_f() * inv), -limit, limit);
    kernels::split_digits(r, Digits, hi[c], lo[c]);
  }
  for (std::size_t c = head_dim; c < padded; ++c) hi[c] = lo[c] = 0;
  qscale = maxabs / limit;
  bias = b;
  std::int32_t sh = 0, sl = 0;
  for (std::size_t c = 0; c < padded; c += 16) {
    sh += digit_sum16(hi + c);
    sl += digit_sum16(lo + c);
  }
  sum_hi = sh;
  sum_lo = sl;
}

/// kernels::quantize_tile_weights on the 16 columns of a tile (w >= 0, 0 where absent): the same
/// digits and wscale for the same w.
template <unsigned Digits>
inline void quantize_tile_weights(const float32x4_t w[4], std::int8_t* hi, std::int8_t* lo,
                                  float& wscale) {
  const float limit = kernels::operand_limit(Digits);
  const float wmax = vmaxvq_f32(vmaxq_f32(vmaxq_f32(w[0], w[1]), vmaxq_f32(w[2], w[3])));
  const float inv = kernels::operand_inverse(limit, wmax);
  int32x4_t h[4], l[4];
  for (std::size_t i = 0; i < 4; ++i) {
    const float32x4_t r = vminq_f32(vrndnq_f32(vmulq_n_f32(w[i], inv)), vdupq_n_f32(limit));
    split_digits4<Digits>(vcvtq_s32_f32(r), h[i], l[i]);
  }
  vst1q_s8(hi, narrow_bytes(h[0], h[1], h[2], h[3]));
  vst1q_s8(lo, narrow_bytes(l[0], l[1], l[2], l[3]));
  wscale = wmax / limit;
}

/// kernels::softmax_fold of the 16 scores at s (-inf where a column has no token): raises the
/// running maximum if needed (rescaling sum and acc), then replaces s by p = exp(s - max) (0 for
/// -inf) and adds them to the sum. exp is exp_ps, so p may differ from std::exp by a few ulp.
inline void softmax_fold16(float& max, float& sum, float* acc, std::size_t head_dim, float* s) {
  float32x4_t x[4];
  for (std::size_t i = 0; i < 4; ++i) x[i] = vld1q_f32(s + 4 * i);
  const float tile_max =
      std::max(max, vmaxvq_f32(vmaxq_f32(vmaxq_f32(x[0], x[1]), vmaxq_f32(x[2], x[3]))));
  if (tile_max > max) {
    const float c = std::exp(max - tile_max);  // 0 when the state was empty (max = -inf)
    sum *= c;
    std::size_t d = 0;
    for (; d + 4 <= head_dim; d += 4) vst1q_f32(acc + d, vmulq_n_f32(vld1q_f32(acc + d), c));
    for (; d < head_dim; ++d) acc[d] *= c;
    max = tile_max;
  }
  const float32x4_t m = vdupq_n_f32(max);
  float32x4_t total = vdupq_n_f32(0.0f);
  for (std::size_t i = 0; i < 4; ++i) {
    const float32x4_t p = exp_ps(vsubq_f32(x[i], m));
    vst1q_f32(s + 4 * i, p);
    total = vaddq_f32(total, p);
  }
  sum += vaddvq_f32(total);
}

/// combine_digits(hi, lo) of four lanes, with the -128 code offset of 8-bit codes undone.
template <unsigned Bits, unsigned Digits>
inline float32x4_t combine4(int32x4_t hi, int32x4_t lo, std::int32_t sum_hi, std::int32_t sum_lo) {
  if constexpr (Bits == 8) {
    hi = vaddq_s32(hi, vdupq_n_s32(sum_hi));
    lo = vaddq_s32(lo, vdupq_n_s32(sum_lo));
  }
  if constexpr (Digits == 1) {
    return vcvtq_f32_s32(hi);
  } else {
    return vaddq_f32(vmulq_n_f32(vcvtq_f32_s32(hi), 128.0f), vcvtq_f32_s32(lo));
  }
}

/// Scores of rows [ra, rb) of one key tile row (tokens of the current key group) for every head:
/// scores[h * 16 + column + (r - ra)] = qscale * combine(Σ_c hi_c code_rc, Σ_c lo_c code_rc) + bias.
template <class Dot, unsigned Bits>
inline void key_scores(const std::uint8_t* tile_row, std::size_t col_tiles, std::size_t padded,
                       std::size_t ra, std::size_t rb, std::size_t column, std::size_t heads,
                       QuantizedScratch& s) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  for (std::size_t reg = ra / 4; reg * 4 < rb; ++reg) {
    dot_rows_heads<Dot, Bits, kDigits>(tile_row, col_tiles, reg, s.q_hi.data(), s.q_lo.data(),
                                       padded, heads, s.dot_hi.data(), s.dot_lo.data());
    for (std::size_t h = 0; h < heads; ++h) {
      const float32x4_t c = combine4<Bits, kDigits>(s.dot_hi[h], s.dot_lo[h], s.q_sum_hi[h],
                                                    s.q_sum_lo[h]);
      float lanes[4];
      vst1q_f32(lanes, vaddq_f32(vmulq_n_f32(c, s.qscale[h]), vdupq_n_f32(s.bias[h])));
      for (std::size_t i = 0; i < 4; ++i) {
        const std::size_t r = reg * 4 + i;
        if (r >= ra && r < rb) s.scores[h * kTileCols + column + (r - ra)] = lanes[i];
      }
    }
  }
}

/// acc_c += wscale * combine(Σ_j W_j code_jc) + min_sum for channels [c_begin, c_end) (one value
/// group) of one token tile row, every head.
template <class Dot, unsigned Bits>
inline void value_accumulate(const std::uint8_t* value_row, std::size_t c_begin, std::size_t c_end,
                             std::size_t heads, std::size_t dim, float* acc, QuantizedScratch& s) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  for (std::size_t c0 = c_begin - c_begin % kTileRows; c0 < c_end; c0 += kTileRows) {
    const std::uint8_t* tile = value_row + (c0 / kTileRows) * tile_bytes(Bits);
    for (std::size_t reg = 0; reg < 4; ++reg) {
      const std::size_t ch = c0 + reg * 4;
      if (ch + 4 <= c_begin) continue;
      if (ch >= c_end) break;
      dot_rows_heads<Dot, Bits, kDigits>(tile, 1, reg, s.w_hi.data(), s.w_lo.data(), kTileCols,
                                         heads, s.dot_hi.data(), s.dot_lo.data());
      for (std::size_t h = 0; h < heads; ++h) {
        const float32x4_t c = combine4<Bits, kDigits>(s.dot_hi[h], s.dot_lo[h], s.w_sum_hi[h],
                                                      s.w_sum_lo[h]);
        const float32x4_t add =
            vaddq_f32(vmulq_n_f32(c, s.wscale[h]), vdupq_n_f32(s.min_sum[h]));
        float* a = acc + h * dim;
        if (ch >= c_begin && ch + 4 <= c_end) {
          vst1q_f32(a + ch, vaddq_f32(vld1q_f32(a + ch), add));
        } else {
          float lanes[4];
          vst1q_f32(lanes, add);
          for (std::size_t i = 0; i < 4; ++i)
            if (ch + i >= c_begin && ch + i < c_end) a[ch + i] += lanes[i];
        }
      }
    }
  }
}

/// The int8 softmax weights of value group g for every head: w_j = p_j scale_jg by tile column,
/// their digits, wscale, 128 Σ digits, and min_sum = Σ_j p_j min_jg.
template <unsigned Digits>
inline void tile_weights(std::size_t g, std::size_t heads, QuantizedScratch& s) {
  float32x4_t scale[4], min[4];
  for (std::size_t i = 0; i < 4; ++i)
    load_params(&s.value_params[g * kTileCols + 4 * i], scale[i], min[i]);
  for (std::size_t h = 0; h < heads; ++h) {
    const float* p = &s.scores[h * kTileCols];
    float32x4_t w[4], ms = vdupq_n_f32(0.0f);
    for (std::size_t i = 0; i < 4; ++i) {
      const float32x4_t pi = vld1q_f32(p + 4 * i);
      w[i] = vmulq_f32(pi, scale[i]);
      ms = vfmaq_f32(ms, pi, min[i]);
    }
    std::int8_t* hi = &s.w_hi[h * kTileCols];
    std::int8_t* lo = &s.w_lo[h * kTileCols];
    quantize_tile_weights<Digits>(w, hi, lo, s.wscale[h]);
    s.min_sum[h] = vaddvq_f32(ms);
    s.w_sum_hi[h] = digit_sum16(hi);
    s.w_sum_lo[h] = digit_sum16(lo);
  }
}

/// scalar::attend_quantized with NEON dot products of flavour Dot (WideningDot or SdotDot).
template <class Dot>
inline void attend_quantized(const kernels::QuantizedHeadView& v, const float* q,
                             std::size_t begin, std::size_t end, kernels::StateView st) {
  if (begin >= end) return;
  const std::size_t dim = v.head_dim, heads = st.heads;
  const std::size_t col_tiles = tiles_for(dim), padded = col_tiles * kTileCols;
  const std::size_t value_tile = tile_bytes(v.value_bits);
  const std::size_t value_groups = dim / v.value_group;
  QuantizedScratch& s = quantized_scratch();
  s.resize(heads, padded, value_groups);

  auto prepare = [&](std::size_t group) {
    kernels::with_bits(v.key_bits, [&](auto b) {
      constexpr unsigned kDigits = kernels::operand_digits(decltype(b)::value);
      for (std::size_t h = 0; h < heads; ++h)
        prepare_key_query<kDigits>(q + h * dim, dim, padded, v.key_meta + group * dim,
                                   &s.q_hi[h * padded], &s.q_lo[h * padded], s.qscale[h],
                                   s.bias[h], s.q_sum_hi[h], s.q_sum_lo[h]);
    });
  };
  for (std::size_t tile0 = begin; tile0 < end; tile0 += kTileCols) {
    if (tile0 == begin || tile0 % v.key_group == 0) prepare(tile0 / v.key_group);
    // A tile all FP overlay adds nothing (and would leave an empty state's maximum at -inf).
    const std::uint16_t skip = v.skipped(tile0 / kTileCols);
    if (skip == 0xffffu) continue;
    const std::size_t t0 = tile0, t1 = tile0 + kTileCols;
    std::fill(s.scores.begin(), s.scores.end(), -std::numeric_limits<float>::infinity());
    kernels::with_bits(v.key_bits, [&](auto b) {
      key_scores<Dot, decltype(b)::value>(v.key_tile_row(tile0 / kTileRows), col_tiles, padded, 0,
                                          kTileRows, 0, heads, s);
    });
    // The overlay's lanes weigh nothing: exp(-inf - max) = 0.
    for (std::size_t j = 0; j < kTileCols; ++j)
      if ((skip >> j) & 1u)
        for (std::size_t h = 0; h < heads; ++h)
          s.scores[h * kTileCols + j] = -std::numeric_limits<float>::infinity();

    // Softmax numerators, then per value group the int8 weights and the weighted code sums.
    for (std::size_t h = 0; h < heads; ++h)
      softmax_fold16(st.max[h], st.sum[h], st.acc + h * dim, dim, &s.scores[h * kTileCols]);
    std::fill(s.value_params.begin(), s.value_params.end(), GroupParams{});  // absent: 0
    for (std::size_t t = t0; t < t1; ++t)
      for (std::size_t g = 0; g < value_groups; ++g)
        s.value_params[g * kTileCols + (t - tile0)] = v.value_meta[t * value_groups + g];
    const std::uint8_t* value_row = v.value_codes + (tile0 / kTileCols) * col_tiles * value_tile;
    for (std::size_t g = 0; g < value_groups; ++g) {
      const std::size_t c_begin = g * v.value_group;
      const std::size_t c_end = std::min(dim, c_begin + v.value_group);
      kernels::with_bits(v.value_bits, [&](auto b) {
        constexpr unsigned kBits = decltype(b)::value;
        tile_weights<kernels::operand_digits(kBits)>(g, heads, s);
        value_accumulate<Dot, kBits>(value_row, c_begin, c_end, heads, dim, st.acc, s);
      });
    }
  }
}

/// Σ_d a[d] b[d], four accumulators of four lanes.
inline float dot_f32(const float* a, const float* b, std::size_t n) {
  float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  std::size_t d = 0;
  for (; d + 16 <= n; d += 16) {
    acc0 = vfmaq_f32(acc0, vld1q_f32(a + d), vld1q_f32(b + d));
    acc1 = vfmaq_f32(acc1, vld1q_f32(a + d + 4), vld1q_f32(b + d + 4));
    acc2 = vfmaq_f32(acc2, vld1q_f32(a + d + 8), vld1q_f32(b + d + 8));
    acc3 = vfmaq_f32(acc3, vld1q_f32(a + d + 12), vld1q_f32(b + d + 12));
  }
  for (; d + 4 <= n; d += 4) acc0 = vfmaq_f32(acc0, vld1q_f32(a + d), vld1q_f32(b + d));
  float sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
  for (; d < n; ++d) sum += a[d] * b[d];
  return sum;
}

/// y[d] += a x[d].
inline void axpy_f32(float a, const float* x, float* y, std::size_t n) {
  std::size_t d = 0;
  for (; d + 8 <= n; d += 8) {
    vst1q_f32(y + d, vfmaq_n_f32(vld1q_f32(y + d), vld1q_f32(x + d), a));
    vst1q_f32(y + d + 4, vfmaq_n_f32(vld1q_f32(y + d + 4), vld1q_f32(x + d + 4), a));
  }
  for (; d + 4 <= n; d += 4) vst1q_f32(y + d, vfmaq_n_f32(vld1q_f32(y + d), vld1q_f32(x + d), a));
  for (; d < n; ++d) y[d] += a * x[d];
}

LOGQUANT_NEON_BASELINE_TARGET inline void attend_quantized_baseline(
    const kernels::QuantizedHeadView& v, const float* q, std::size_t begin, std::size_t end,
    kernels::StateView st) {
  attend_quantized<WideningDot>(v, q, begin, end, st);
}

#if LOGQUANT_NEON_DOTPROD
LOGQUANT_NEON_DOTPROD_TARGET inline void attend_quantized_dotprod(
    const kernels::QuantizedHeadView& v, const float* q, std::size_t begin, std::size_t end,
    kernels::StateView st) {
  attend_quantized<SdotDot>(v, q, begin, end, st);
}
#endif

using AttendQuantizedFn = void (*)(const kernels::QuantizedHeadView&, const float*, std::size_t,
                                   std::size_t, kernels::StateView);

/// The attend_quantized flavour for this CPU: SDOT when it has dotprod, else the baseline.
inline AttendQuantizedFn best_attend_quantized() {
#if LOGQUANT_NEON_DOTPROD
  if (cpu_has_dotprod()) return &attend_quantized_dotprod;
#endif
  return &attend_quantized_baseline;
}

}  // namespace detail

/// Same contract as scalar::attend_quantized; the dotprod check is made once per process.
inline void attend_quantized(const kernels::QuantizedHeadView& v, const float* q,
                             std::size_t begin, std::size_t end, kernels::StateView st) {
  static const detail::AttendQuantizedFn fn = detail::best_attend_quantized();
  fn(v, q, begin, end, st);
}

/// Same contract as scalar::attend_full.
inline void attend_full(const kernels::FullHeadView& v, const float* q, kernels::StateView st) {
  const std::size_t dim = v.head_dim;
  float s[kTileCols];
  for (std::size_t h = 0; h < st.heads; ++h) {
    const float* qh = q + h * dim;
    float* acc = st.acc + h * dim;
    for (std::size_t t0 = 0; t0 < v.tokens; t0 += kTileCols) {
      const std::size_t n = std::min(kTileCols, v.tokens - t0);
      for (std::size_t j = 0; j < kTileCols; ++j)
        s[j] = j < n ? detail::dot_f32(qh, v.keys + (t0 + j) * dim, dim)
                     : -std::numeric_limits<float>::infinity();
      detail::softmax_fold16(st.max[h], st.sum[h], acc, dim, s);
      for (std::size_t j = 0; j < n; ++j) detail::axpy_f32(s[j], v.values + (t0 + j) * dim, acc, dim);
    }
  }
}

}  // namespace neon
}  // namespace logquant

#endif  // LOGQUANT_HAVE_NEON_KERNELS
