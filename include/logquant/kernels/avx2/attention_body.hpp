// AVX2 attention kernels: the scalar reference's integer operands (kernels/common.hpp) fed to
// vpmaddubsw (u8 codes x s8 operand, pairs summed to i16) and vpmaddwd (to i32), or, on a CPU
// with AVX-VNNI, to vpdpbusd (four products straight into i32). A 16 x 16 tile row is two 32-byte
// halves of 8 rows. vpmaddubsw saturates at i16, so operands stay small: a 2-bit plane gives
// |pair| <= 2 * 3 * 127 = 762, and 32 planes (128 channels) are summed in i16 before one vpmaddwd;
// 4-bit planes (|pair| <= 3840) and 8-bit codes (split into two nibbles, the high one weighted 16)
// widen after every plane on the key side. Both instructions give the same integers, so both
// variants match the scalar reference exactly. Structure as in avx512/attention.hpp: chunks of
// kChunk tokens, a key pass writing scores, a value pass.
//
// This body is compiled twice, because a function's target attribute cannot depend on a template
// argument: avx2/attention.hpp includes it as logquant::avx2 and avxvnni/attention.hpp as
// logquant::avxvnni, each first defining LOGQUANT_AVX2_BODY_NS (the namespace),
// LOGQUANT_AVX2_BODY_TARGET (the functions' target attribute), LOGQUANT_AVX2_BODY_INLINE (the
// same, always inlined) and LOGQUANT_AVX2_BODY_VNNI (0 or 1). No include guard: the two wrappers
// have them.
#include "../../config.hpp"

#if LOGQUANT_HAVE_X86_KERNELS
#include <immintrin.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../../quant/tile_layout.hpp"
#include "../common.hpp"
#include "../views.hpp"
#include "vec.hpp"

LOGQUANT_X86_KERNELS_BEGIN

namespace logquant {
namespace LOGQUANT_AVX2_BODY_NS {

#if LOGQUANT_AVX2_BODY_VNNI
using namespace ::logquant::avx2;  // vec.hpp: the helpers both variants share
#endif

inline constexpr std::size_t kChunk = 256;    // tokens per score buffer
inline constexpr std::size_t kHeadBlock = 4;  // query heads per pass over the codes
inline constexpr std::size_t kScorePad = 16;  // room for key tile rows that overhang a chunk
inline constexpr std::size_t kScoreStride = kScorePad + kChunk + kScorePad;

/// Plane K of a 32-byte code vector as bytes: 2- and 4-bit fields K; for 8-bit codes nibble K.
template <unsigned Bits, unsigned K>
LOGQUANT_AVX2_BODY_INLINE __m256i code_plane(__m256i x) {
  constexpr unsigned kWidth = Bits == 8 ? 4 : Bits;
  const __m256i mask = _mm256_set1_epi8(static_cast<char>((1u << kWidth) - 1u));
  if constexpr (K == 0)
    return _mm256_and_si256(x, mask);
  else
    return _mm256_and_si256(_mm256_srli_epi16(x, static_cast<int>(K * kWidth)), mask);
}

LOGQUANT_AVX2_BODY_INLINE __m256i broadcast4(const std::int8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

/// acc + the products of u8 plane x s8 operand, the one step the two variants do differently.
/// AVX2: vpmaddubsw, pairs summed into i16 lanes (widen turns them into i32 later). AVX-VNNI:
/// vpdpbusd, four products summed into i32 lanes, so the accumulator is i32 from the start.
LOGQUANT_AVX2_BODY_INLINE __m256i dot_add(__m256i acc, __m256i plane, __m256i operand) {
#if LOGQUANT_AVX2_BODY_VNNI
  return _mm256_dpbusd_avx_epi32(acc, plane, operand);
#else
  return _mm256_add_epi16(acc, _mm256_maddubs_epi16(plane, operand));
#endif
}

/// A dot_add accumulator as i32 lanes (four bytes' products each), times 2^Shift (0, or 4 for
/// the high nibbles of 8-bit codes).
template <int Shift>
LOGQUANT_AVX2_BODY_INLINE __m256i widen(__m256i acc) {
#if LOGQUANT_AVX2_BODY_VNNI
  return Shift == 0 ? acc : _mm256_slli_epi32(acc, Shift);
#else
  return _mm256_madd_epi16(acc, _mm256_set1_epi16(static_cast<short>(1 << Shift)));
#endif
}

/// u8 plane . s8 operand, four bytes per i32 lane, times 2^Shift.
template <int Shift>
LOGQUANT_AVX2_BODY_INLINE __m256i dot4(__m256i plane, __m256i operand) {
  return widen<Shift>(dot_add(_mm256_setzero_si256(), plane, operand));
}

template <unsigned Digits>
LOGQUANT_AVX2_BODY_INLINE __m256 combine(__m256i hi, __m256i lo) {
  if constexpr (Digits == 1)
    return _mm256_cvtepi32_ps(hi);
  else
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_set1_ps(128.0f), _mm256_cvtepi32_ps(lo));
}

/// code_plane with the plane as a (folded) argument.
template <unsigned Bits>
LOGQUANT_AVX2_BODY_INLINE __m256i code_plane_k(__m256i x, unsigned k) {
  switch (k) {
    case 0: return code_plane<Bits, 0>(x);
    case 1: return code_plane<Bits, 1>(x);
    case 2: return code_plane<Bits, 2>(x);
    default: return code_plane<Bits, 3>(x);
  }
}

/// kernels::operand_inverse(limit, max) on 4 lanes: the correctly rounded quotient, or 0 where
/// it is not finite (max = 0 or tiny).
LOGQUANT_AVX2_BODY_INLINE __m128 operand_inverse4(float limit, __m128 max) {
  const __m128 inv = _mm_div_ps(_mm_set1_ps(limit), max);
  return _mm_and_ps(_mm_cmple_ps(inv, _mm_set1_ps(FLT_MAX)), inv);
}

/// Working memory of one attend_quantized call (per thread), sized for one block of heads.
struct AttendScratch {
  std::vector<float> qs;                // [heads][padded] q_c * scale_c of the current key group
  std::vector<std::int8_t> q_hi, q_lo;  // [heads][padded] its digits
  alignas(32) float qscale[8], bias[8];
  std::vector<float> scores;             // [heads][kScoreStride]
  std::vector<float> min_sum;            // [heads][groups][16] per-lane Σ p_j min_j
  std::vector<float> vscale, vmin;       // [groups][16] this tile's value metadata
  std::vector<std::uint8_t> w_hi, w_lo;  // [heads][groups][16] this tile's int8 weights
  std::vector<float> wscale;             // [groups][8] (lane = head)
  alignas(32) float max[kHeadBlock];
  alignas(32) float sum[kHeadBlock][8];  // per-lane softmax sums
};

inline AttendScratch& attend_scratch() {
  thread_local AttendScratch s;
  return s;
}

/// Digits of 16 integer operands (kernels::split_digits) as bytes.
template <unsigned Digits>
LOGQUANT_AVX2_BODY_INLINE void store_digits(std::int8_t* hi, std::int8_t* lo, __m256i r0,
                                             __m256i r1) {
  if constexpr (Digits == 1) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hi), pack_bytes(r0, r1));
  } else {
    const __m256i low = _mm256_set1_epi32(127);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hi),
                     pack_bytes(_mm256_srai_epi32(r0, 7), _mm256_srai_epi32(r1, 7)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lo),
                     pack_bytes(_mm256_and_si256(r0, low), _mm256_and_si256(r1, low)));
  }
}

/// kernels::prepare_key_query for NH heads of one key group at once: the same digits byte for
/// byte (the same float products, maximum, operand_inverse and round-half-even conversion; the
/// clamp is a no-op as |q_c scale_c| <= max and the inverse is finite), the metadata converted once
/// for all heads, maxima and biases reduced by transposing trees, one division for all heads. The
/// bias is summed in another order than the scalar's, so it may differ in the last bits.
template <unsigned Digits, int NH>
LOGQUANT_AVX2_BODY_TARGET inline void prepare_keys(const float* q, std::size_t head_dim,
                                              std::size_t padded, const GroupParams* meta,
                                              AttendScratch& s) {
  constexpr float kLimit = kernels::operand_limit(Digits);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 vmax[4], vbias[4];
  LOGQUANT_UNROLL
  for (int h = 0; h < 4; ++h) vmax[h] = vbias[h] = _mm256_setzero_ps();
  float* qs = s.qs.data();
  for (std::size_t c = 0; c < padded; c += 8) {
    const __m256i m = tail_mask(c < head_dim ? head_dim - c : 0);
    __m256 scale, min;
    split_params(_mm256_maskload_epi32(reinterpret_cast<const int*>(meta + c), m), scale, min);
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) {
      const __m256 qv = load(q + h * head_dim + c, m);
      const __m256 x = _mm256_mul_ps(qv, scale);
      vmax[h] = _mm256_max_ps(vmax[h], _mm256_andnot_ps(sign, x));
      vbias[h] = _mm256_fmadd_ps(qv, min, vbias[h]);
      _mm256_storeu_ps(qs + h * padded + c, x);
    }
  }
  const __m128 maxabs = transpose_reduce4<MaxOp>(vmax);
  const __m128 inv = operand_inverse4(kLimit, maxabs);
  _mm_store_ps(s.qscale, _mm_mul_ps(maxabs, _mm_set1_ps(1.0f / kLimit)));  // within an ulp
  _mm_store_ps(s.bias, transpose_reduce4<AddOp>(vbias));
  alignas(16) float invs[4];
  _mm_store_ps(invs, inv);
  LOGQUANT_UNROLL
  for (int h = 0; h < NH; ++h) {
    const __m256 ih = _mm256_set1_ps(invs[h]);
    const float* x = qs + h * padded;
    for (std::size_t c = 0; c < padded; c += 16)
      store_digits<Digits>(&s.q_hi[h * padded + c], &s.q_lo[h * padded + c],
                           _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c), ih)),
                           _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c + 8), ih)));
  }
}

/// Half `half` (rows 0-7 or 8-15) of vector i of a key tile row.
LOGQUANT_AVX2_BODY_INLINE __m256i load_key_half(const std::uint8_t* row, std::size_t i, int half) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i * kTileVectorBytes + half * 32));
}

/// Scores of one key tile row (16 tokens: two halves of 8) for NH heads. Each broadcast query
/// operand serves both halves.
template <unsigned Bits, int NH>
LOGQUANT_AVX2_BODY_INLINE void key_row(const std::uint8_t* row, std::size_t col_tiles,
                                  const AttendScratch& s, std::size_t padded, float* out) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  const std::int8_t* hi = s.q_hi.data();
  const std::int8_t* lo = s.q_lo.data();
  __m256i acc_hi[2][NH], acc_lo[2][NH];
  LOGQUANT_UNROLL
  for (int h = 0; h < NH; ++h)
    acc_hi[0][h] = acc_hi[1][h] = acc_lo[0][h] = acc_lo[1][h] = _mm256_setzero_si256();
  if constexpr (Bits == 2) {
    // 8 tiles x 4 planes x 762 < 32767: sum in i16 (i32 with AVX-VNNI), widen every 128 channels.
    __m256i a16[2][NH];
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) a16[0][h] = a16[1][h] = _mm256_setzero_si256();
    for (std::size_t ct = 0; ct < col_tiles; ++ct) {
      const __m256i x0 = load_key_half(row, ct, 0);
      const __m256i x1 = load_key_half(row, ct, 1);
      LOGQUANT_UNROLL
      for (unsigned k = 0; k < 4; ++k) {
        __m256i qh[NH];
        LOGQUANT_UNROLL
        for (int h = 0; h < NH; ++h) qh[h] = broadcast4(hi + h * padded + ct * kTileCols + 4 * k);
        const __m256i u0 = code_plane_k<2>(x0, k);
        LOGQUANT_UNROLL
        for (int h = 0; h < NH; ++h)
          a16[0][h] = dot_add(a16[0][h], u0, qh[h]);
        const __m256i u1 = code_plane_k<2>(x1, k);
        LOGQUANT_UNROLL
        for (int h = 0; h < NH; ++h)
          a16[1][h] = dot_add(a16[1][h], u1, qh[h]);
      }
      if (ct % 8 == 7 || ct + 1 == col_tiles) {
        LOGQUANT_UNROLL
        for (int h = 0; h < NH; ++h) {
          acc_hi[0][h] = _mm256_add_epi32(acc_hi[0][h], widen<0>(a16[0][h]));
          acc_hi[1][h] = _mm256_add_epi32(acc_hi[1][h], widen<0>(a16[1][h]));
          a16[0][h] = a16[1][h] = _mm256_setzero_si256();
        }
      }
    }
  } else {
    // 4-bit fields (|pair| <= 3840) or 8-bit codes as two nibbles (the high one weighted 16 by
    // vpmaddwd): widen after every plane.
    for (std::size_t ct = 0; ct < col_tiles; ++ct) {
      LOGQUANT_UNROLL
      for (unsigned v = 0; v < Bits / 2; ++v) {
        LOGQUANT_UNROLL
        for (int half = 0; half < 2; ++half) {
          const __m256i x = load_key_half(row, ct * (Bits / 2) + v, half);
          const __m256i u0 = code_plane<Bits, 0>(x), u1 = code_plane<Bits, 1>(x);
          LOGQUANT_UNROLL
          for (int h = 0; h < NH; ++h) {
            if constexpr (Bits == 4) {  // fields 0, 1 of vector v: columns 8v + [0, 4), 8v + [4, 8)
              const std::size_t o = h * padded + ct * kTileCols + v * 8;
              acc_hi[half][h] = _mm256_add_epi32(
                  acc_hi[half][h], _mm256_add_epi32(dot4<0>(u0, broadcast4(hi + o)),
                                                    dot4<0>(u1, broadcast4(hi + o + 4))));
              acc_lo[half][h] = _mm256_add_epi32(
                  acc_lo[half][h], _mm256_add_epi32(dot4<0>(u0, broadcast4(lo + o)),
                                                    dot4<0>(u1, broadcast4(lo + o + 4))));
            } else {  // nibbles of vector v: columns 4v + [0, 4)
              const std::size_t o = h * padded + ct * kTileCols + v * 4;
              const __m256i qh = broadcast4(hi + o), ql = broadcast4(lo + o);
              acc_hi[half][h] = _mm256_add_epi32(
                  acc_hi[half][h], _mm256_add_epi32(dot4<0>(u0, qh), dot4<4>(u1, qh)));
              acc_lo[half][h] = _mm256_add_epi32(
                  acc_lo[half][h], _mm256_add_epi32(dot4<0>(u0, ql), dot4<4>(u1, ql)));
            }
          }
        }
      }
    }
  }
  LOGQUANT_UNROLL
  for (int h = 0; h < NH; ++h) {
    const __m256 qscale = _mm256_set1_ps(s.qscale[h]), bias = _mm256_set1_ps(s.bias[h]);
    _mm256_storeu_ps(out + h * kScoreStride,
                     _mm256_fmadd_ps(combine<kDigits>(acc_hi[0][h], acc_lo[0][h]), qscale, bias));
    _mm256_storeu_ps(out + h * kScoreStride + 8,
                     _mm256_fmadd_ps(combine<kDigits>(acc_hi[1][h], acc_lo[1][h]), qscale, bias));
  }
}

/// Scores of one key group's tile rows [r0, r1) for NH heads: row r's 16 scores go to
/// scores[h * kScoreStride + kScorePad + out + r] (out + r may be down to -15: the pad).
template <unsigned Bits, int NH>
LOGQUANT_AVX2_BODY_TARGET void key_group_scores(const kernels::QuantizedHeadView& v, const float* q,
                                           std::size_t g, bool prepare, std::size_t r0,
                                           std::size_t r1, std::ptrdiff_t out, AttendScratch& s) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  const std::size_t dim = v.head_dim, col_tiles = tiles_for(dim), padded = col_tiles * kTileCols;
  if (prepare) prepare_keys<kDigits, NH>(q, dim, padded, v.key_meta + g * dim, s);
  float* o = s.scores.data() + static_cast<std::ptrdiff_t>(kScorePad) + out;
  const std::size_t first_row = g * v.key_group / kTileRows;
  for (std::size_t r = r0; r < r1; r += kTileRows)
    key_row<Bits, NH>(v.key_tile_row(first_row + r / kTileRows), col_tiles, s, padded, o + r);
}

/// The value metadata of one tile's n tokens, [token][group] dwords, as float vectors per group:
/// scale[g * 16 + j], min[g * 16 + j]; lanes j >= n are 0.
LOGQUANT_AVX2_BODY_INLINE void load_value_meta(const GroupParams* meta, std::size_t groups,
                                          std::size_t n, float* scale, float* min) {
  for (std::size_t g = 0; g < groups; ++g) {
    alignas(32) std::uint32_t raw[16] = {};
    for (std::size_t j = 0; j < n; ++j) std::memcpy(&raw[j], meta + j * groups + g, 4);
    __m256 sc, mn;
    split_params(_mm256_load_si256(reinterpret_cast<const __m256i*>(raw)), sc, mn);
    _mm256_storeu_ps(scale + g * 16, sc);
    _mm256_storeu_ps(min + g * 16, mn);
    split_params(_mm256_load_si256(reinterpret_cast<const __m256i*>(raw + 8)), sc, mn);
    _mm256_storeu_ps(scale + g * 16 + 8, sc);
    _mm256_storeu_ps(min + g * 16 + 8, mn);
  }
}

/// The softmax maximum of a head rose to `max`: scales its sums, accumulator and min sums by
/// c = exp(old - max) (kernels::softmax_fold; c = 0 for an empty state). Rare after the first
/// tiles, so kept out of line.
LOGQUANT_AVX2_BODY_TARGET inline void rescale_head(float old_max, float max, float* sum, float* acc,
                                              std::size_t head_dim, float* min_sum,
                                              std::size_t groups) {
  const __m256 c = _mm256_set1_ps(std::exp(old_max - max));
  _mm256_store_ps(sum, _mm256_mul_ps(_mm256_load_ps(sum), c));
  for (std::size_t d = 0; d < head_dim; d += 8) {
    const __m256i m = tail_mask(head_dim - d);
    store(acc + d, m, _mm256_mul_ps(load(acc + d, m), c));
  }
  for (std::size_t i = 0; i < groups * 16; i += 8)
    _mm256_storeu_ps(min_sum + i, _mm256_mul_ps(_mm256_loadu_ps(min_sum + i), c));
}

/// acc[h][c] += wscale[h] * Σ_j W[h][j] code[j][c] for the channels of value group g of one tile,
/// 8 channels (half a tile) per step, heads in pairs (one for two digits) whose broadcast weights
/// stay in registers across the group. Weights are >= 0, so |pair| <= 2 * 15 * 127 and the four
/// planes of a half tile sum safely in i16.
template <unsigned Bits, int NH>
LOGQUANT_AVX2_BODY_INLINE void value_group_sums(const std::uint8_t* codes, std::size_t value_group,
                                           std::size_t g, std::size_t dim, const std::int8_t* whi,
                                           const std::int8_t* wlo, std::size_t wstride,
                                           const float* wscale, float* acc) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  constexpr unsigned kPlanes = 8 / Bits;
  constexpr std::size_t kTileBytes = tile_bytes(Bits);
  constexpr int kSub = kDigits == 1 ? 2 : 1;
  LOGQUANT_UNROLL
  for (int h0 = 0; h0 < NH; h0 += kSub) {
    const int nh = NH - h0 < kSub ? NH - h0 : kSub;
    __m256i wh[kSub][4], wl[kSub][4];
    LOGQUANT_UNROLL
    for (int i = 0; i < kSub; ++i) {
      LOGQUANT_UNROLL
      for (int p = 0; p < 4; ++p) {
        if (i < nh) {
          wh[i][p] = broadcast4(whi + (h0 + i) * wstride + g * kTileCols + 4 * p);
          if constexpr (kDigits == 2)
            wl[i][p] = broadcast4(wlo + (h0 + i) * wstride + g * kTileCols + 4 * p);
        }
      }
    }
    for (std::size_t c = g * value_group; c < (g + 1) * value_group && c < dim; c += 8) {
      const std::uint8_t* base = codes + (c / kTileRows) * kTileBytes + (c % kTileRows) * 4;
      __m256i a_hi[kSub], a_lo[kSub], b_hi[kSub],
          b_lo[kSub];  // i16; b: high nibbles of 8-bit codes
      LOGQUANT_UNROLL
      for (int i = 0; i < kSub; ++i) a_hi[i] = a_lo[i] = b_hi[i] = b_lo[i] = _mm256_setzero_si256();
      LOGQUANT_UNROLL
      for (unsigned v = 0; v < Bits / 2; ++v) {
        const __m256i x =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + v * kTileVectorBytes));
        if constexpr (Bits == 8) {
          const __m256i u0 = code_plane<8, 0>(x), u1 = code_plane<8, 1>(x);
          LOGQUANT_UNROLL
          for (int i = 0; i < kSub; ++i) {
            if (i < nh) {
              a_hi[i] = dot_add(a_hi[i], u0, wh[i][v]);
              b_hi[i] = dot_add(b_hi[i], u1, wh[i][v]);
              a_lo[i] = dot_add(a_lo[i], u0, wl[i][v]);
              b_lo[i] = dot_add(b_lo[i], u1, wl[i][v]);
            }
          }
        } else {
          LOGQUANT_UNROLL
          for (unsigned k = 0; k < kPlanes; ++k) {
            const __m256i u = code_plane_k<Bits>(x, k);
            LOGQUANT_UNROLL
            for (int i = 0; i < kSub; ++i) {
              if (i < nh) {
                a_hi[i] = dot_add(a_hi[i], u, wh[i][v * kPlanes + k]);
                if constexpr (kDigits == 2)
                  a_lo[i] = dot_add(a_lo[i], u, wl[i][v * kPlanes + k]);
              }
            }
          }
        }
      }
      const __m256i m = tail_mask(dim - c);
      LOGQUANT_UNROLL
      for (int i = 0; i < kSub; ++i) {
        if (i < nh) {
          __m256i hi32 = widen<0>(a_hi[i]), lo32 = _mm256_setzero_si256();
          if constexpr (Bits == 8)
            hi32 = _mm256_add_epi32(hi32, widen<4>(b_hi[i]));
          if constexpr (kDigits == 2) lo32 = widen<0>(a_lo[i]);
          if constexpr (Bits == 8)
            lo32 = _mm256_add_epi32(lo32, widen<4>(b_lo[i]));
          float* a = acc + (h0 + i) * dim + c;
          store(a, m,
                _mm256_fmadd_ps(combine<kDigits>(hi32, lo32), _mm256_set1_ps(wscale[h0 + i]),
                                load(a, m)));
        }
      }
    }
  }
}

/// The value pass over tokens [c0, c1) of a chunk for NH heads (see avx512::value_chunk).
template <unsigned Bits, int NH>
LOGQUANT_AVX2_BODY_TARGET void value_chunk(const kernels::QuantizedHeadView& v, std::size_t c0,
                                      std::size_t c1, float* acc, AttendScratch& s) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  constexpr float kLimit = kernels::operand_limit(kDigits);
  constexpr std::size_t kTileBytes = tile_bytes(Bits);
  const std::size_t dim = v.head_dim, col_tiles = tiles_for(dim), groups = dim / v.value_group;
  const std::size_t wstride = groups * kTileCols;
  const auto* whi = reinterpret_cast<const std::int8_t*>(s.w_hi.data());
  const auto* wlo = reinterpret_cast<const std::int8_t*>(s.w_lo.data());
  const __m256 neg_inf = _mm256_set1_ps(-HUGE_VALF);
  const __m256i lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  for (std::size_t t0 = c0; t0 < c1; t0 += kTileCols) {
    const std::size_t n = std::min(kTileCols, c1 - t0);
    // Lanes weighed: the tile's tokens less the FP overlay; a tile all overlay adds nothing.
    const unsigned kept = (n == kTileCols ? 0xffffu : (1u << n) - 1u) & ~v.skipped(t0 / kTileCols);
    if (kept == 0) continue;
    const __m256i kept0 = _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(kept & 0xffu)), lane_bits);
    const __m256i kept1 = _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(kept >> 8)), lane_bits);
    const __m256 valid0 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(kept0, lane_bits));
    const __m256 valid1 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(kept1, lane_bits));
    load_value_meta(v.value_meta + t0 * groups, groups, n, s.vscale.data(), s.vmin.data());
    __m256 p0[NH], p1[NH];
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) {
      const float* sp = &s.scores[h * kScoreStride + kScorePad + t0 - c0];
      const __m256 s0 = _mm256_blendv_ps(neg_inf, _mm256_loadu_ps(sp), valid0);
      const __m256 s1 = _mm256_blendv_ps(neg_inf, _mm256_loadu_ps(sp + 8), valid1);
      const __m256 m = _mm256_set1_ps(s.max[h]);
      if (_mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(s0, m, _CMP_GT_OQ),
                                          _mm256_cmp_ps(s1, m, _CMP_GT_OQ))) != 0) {
        const float tile_max = std::max(reduce_max(s0), reduce_max(s1));
        rescale_head(s.max[h], tile_max, s.sum[h], acc + h * dim, dim, &s.min_sum[h * wstride],
                     groups);
        s.max[h] = tile_max;
      }
      const __m256 mx = _mm256_set1_ps(s.max[h]);
      p0[h] = exp_ps(_mm256_sub_ps(s0, mx));  // exp(-inf) = 0 on invalid lanes
      p1[h] = exp_ps(_mm256_sub_ps(s1, mx));
      _mm256_store_ps(s.sum[h],
                      _mm256_add_ps(_mm256_load_ps(s.sum[h]), _mm256_add_ps(p0[h], p1[h])));
    }
    for (std::size_t g = 0; g < groups; ++g) {
      const __m256 sc0 = _mm256_loadu_ps(&s.vscale[g * 16]),
                   sc1 = _mm256_loadu_ps(&s.vscale[g * 16 + 8]);
      const __m256 mn0 = _mm256_loadu_ps(&s.vmin[g * 16]),
                   mn1 = _mm256_loadu_ps(&s.vmin[g * 16 + 8]);
      __m256 wm[4];
      LOGQUANT_UNROLL
      for (int h = 0; h < 4; ++h) {
        if (h < NH) {
          float* ms = &s.min_sum[h * wstride + g * 16];
          _mm256_storeu_ps(ms, _mm256_fmadd_ps(p0[h], mn0, _mm256_loadu_ps(ms)));
          _mm256_storeu_ps(ms + 8, _mm256_fmadd_ps(p1[h], mn1, _mm256_loadu_ps(ms + 8)));
          wm[h] = _mm256_max_ps(_mm256_mul_ps(p0[h], sc0), _mm256_mul_ps(p1[h], sc1));
        } else {
          wm[h] = _mm256_setzero_ps();
        }
      }
      const __m128 wmax = transpose_reduce4<MaxOp>(wm);
      const __m128 inv = operand_inverse4(kLimit, wmax);
      // wscale = max w / limit as a product with 1 / limit: within an ulp of the scalar's quotient.
      _mm_storeu_ps(&s.wscale[g * 8], _mm_mul_ps(wmax, _mm_set1_ps(1.0f / kLimit)));
      alignas(16) float invs[4];
      _mm_store_ps(invs, inv);
      LOGQUANT_UNROLL
      for (int h = 0; h < NH; ++h) {  // w <= max w, so w * (limit / max w) rounds to at most limit
        const __m256 ih = _mm256_set1_ps(invs[h]);
        store_digits<kDigits>(reinterpret_cast<std::int8_t*>(&s.w_hi[h * wstride + g * 16]),
                              reinterpret_cast<std::int8_t*>(&s.w_lo[h * wstride + g * 16]),
                              _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_mul_ps(p0[h], sc0), ih)),
                              _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_mul_ps(p1[h], sc1), ih)));
      }
    }
    const std::uint8_t* codes = v.value_codes + (t0 / kTileCols) * col_tiles * kTileBytes;
    for (std::size_t g = 0; g < groups; ++g)
      value_group_sums<Bits, NH>(codes, v.value_group, g, dim, whi, wlo, wstride, &s.wscale[g * 8],
                                 acc);
  }
}

using KeyGroupFn = void (*)(const kernels::QuantizedHeadView&, const float*, std::size_t, bool,
                            std::size_t, std::size_t, std::ptrdiff_t, AttendScratch&);
using ValueChunkFn = void (*)(const kernels::QuantizedHeadView&, std::size_t, std::size_t, float*,
                              AttendScratch&);

template <unsigned Bits>
inline KeyGroupFn key_group_fn(std::size_t heads) {
  static const KeyGroupFn fns[kHeadBlock] = {&key_group_scores<Bits, 1>, &key_group_scores<Bits, 2>,
                                             &key_group_scores<Bits, 3>,
                                             &key_group_scores<Bits, 4>};
  return fns[heads - 1];
}

template <unsigned Bits>
inline ValueChunkFn value_chunk_fn(std::size_t heads) {
  static const ValueChunkFn fns[kHeadBlock] = {&value_chunk<Bits, 1>, &value_chunk<Bits, 2>,
                                               &value_chunk<Bits, 3>, &value_chunk<Bits, 4>};
  return fns[heads - 1];
}

/// One block of at most kHeadBlock heads: chunk by chunk, the key pass, then the value pass.
LOGQUANT_AVX2_BODY_TARGET inline void attend_quantized_block(const kernels::QuantizedHeadView& v,
                                                        const float* q, std::size_t begin,
                                                        std::size_t end, kernels::StateView st) {
  const std::size_t dim = v.head_dim, heads = st.heads;
  const std::size_t padded = tiles_for(dim) * kTileCols, groups = dim / v.value_group;
  AttendScratch& s = attend_scratch();
  s.qs.resize(heads * padded);
  s.q_hi.resize(heads * padded);
  s.q_lo.resize(heads * padded);
  s.scores.resize(heads * kScoreStride);
  s.min_sum.assign(heads * groups * 16, 0.0f);
  s.vscale.resize(groups * 16);
  s.vmin.resize(groups * 16);
  s.w_hi.resize(heads * groups * 16);
  s.w_lo.resize(heads * groups * 16);
  s.wscale.resize(groups * 8);
  for (std::size_t h = 0; h < heads; ++h) {
    s.max[h] = st.max[h];
    _mm256_store_ps(s.sum[h], _mm256_setr_ps(st.sum[h], 0, 0, 0, 0, 0, 0, 0));
  }
  KeyGroupFn key_group = nullptr;
  ValueChunkFn value_pass = nullptr;
  switch (v.key_bits) {
    case 2: key_group = key_group_fn<2>(heads); break;
    case 4: key_group = key_group_fn<4>(heads); break;
    default: key_group = key_group_fn<8>(heads); break;
  }
  switch (v.value_bits) {
    case 2: value_pass = value_chunk_fn<2>(heads); break;
    case 4: value_pass = value_chunk_fn<4>(heads); break;
    default: value_pass = value_chunk_fn<8>(heads); break;
  }

  std::size_t prepared = ~std::size_t{0};  // no group yet
  for (std::size_t c0 = begin; c0 < end; c0 += kChunk) {
    const std::size_t c1 = std::min(end, c0 + kChunk);
    // Key pass: every key tile row with a token in [c0, c1).
    for (std::size_t g = c0 / v.key_group; g * v.key_group < c1; ++g) {
      const std::size_t first = g * v.key_group, next = first + v.key_group;
      const std::size_t r0 = (std::max(c0, first) - first) / kTileRows * kTileRows;
      key_group(v, q, g, prepared != g, r0, std::min(c1, next) - first,
                static_cast<std::ptrdiff_t>(first) - static_cast<std::ptrdiff_t>(c0), s);
      prepared = g;
    }
    value_pass(v, c0, c1, st.acc, s);
  }

  for (std::size_t h = 0; h < heads; ++h) {
    st.max[h] = s.max[h];
    st.sum[h] = reduce_add(_mm256_load_ps(s.sum[h]));
    for (std::size_t g = 0; g < groups; ++g) {
      const float* ms = &s.min_sum[(h * groups + g) * 16];
      const __m256 add =
          _mm256_set1_ps(reduce_add(_mm256_add_ps(_mm256_loadu_ps(ms), _mm256_loadu_ps(ms + 8))));
      float* a = st.acc + h * dim + g * v.value_group;
      for (std::size_t c = 0; c < v.value_group; c += 8) {
        const __m256i m = tail_mask(v.value_group - c);
        store(a + c, m, _mm256_add_ps(load(a + c, m), add));
      }
    }
  }
}

/// Softmax state of one head in attend_full: running max and per-lane sums.
struct HeadState {
  float max;
  __m256 sum;
};

/// kernels::softmax_fold for 16 scores (s0: tokens 0-7, s1: 8-15; invalid lanes -inf): writes
/// p = exp(s - max), 0 on invalid lanes; acc is rescaled when the maximum rises.
LOGQUANT_AVX2_BODY_INLINE void softmax_tile(HeadState& hs, __m256 s0, __m256 s1, float* acc,
                                       std::size_t head_dim, __m256& p0, __m256& p1) {
  const __m256 m = _mm256_set1_ps(hs.max);
  if (_mm256_movemask_ps(
          _mm256_or_ps(_mm256_cmp_ps(s0, m, _CMP_GT_OQ), _mm256_cmp_ps(s1, m, _CMP_GT_OQ))) != 0) {
    const float tile_max = std::max(reduce_max(s0), reduce_max(s1));
    const __m256 c = _mm256_set1_ps(std::exp(hs.max - tile_max));  // 0 for an empty state
    hs.sum = _mm256_mul_ps(hs.sum, c);
    for (std::size_t d = 0; d < head_dim; d += 8) {
      const __m256i mask = tail_mask(head_dim - d);
      store(acc + d, mask, _mm256_mul_ps(load(acc + d, mask), c));
    }
    hs.max = tile_max;
  }
  const __m256 mx = _mm256_set1_ps(hs.max);
  p0 = exp_ps(_mm256_sub_ps(s0, mx));  // exp(-inf) = 0
  p1 = exp_ps(_mm256_sub_ps(s1, mx));
  hs.sum = _mm256_add_ps(hs.sum, _mm256_add_ps(p0, p1));
}

/// Same contract as scalar::attend_quantized.
LOGQUANT_AVX2_BODY_TARGET inline void attend_quantized(const kernels::QuantizedHeadView& v,
                                                  const float* q, std::size_t begin,
                                                  std::size_t end, kernels::StateView st) {
  if (begin >= end) return;
  for (std::size_t h0 = 0; h0 < st.heads; h0 += kHeadBlock) {
    const std::size_t nh = std::min(kHeadBlock, st.heads - h0);
    attend_quantized_block(
        v, q + h0 * v.head_dim, begin, end,
        kernels::StateView{st.max + h0, st.sum + h0, st.acc + h0 * v.head_dim, nh});
  }
}

/// part[g][j] += the products of query g and key j, channel by channel in 8 lanes, for the n
/// keys of one tile and G (<= 2) query heads q [G][dim]: four channel vectors of each query in
/// registers while the tile's keys stream past, so each key vector is loaded once for all G.
template <int G>
LOGQUANT_AVX2_BODY_INLINE void full_tile_scores(const float* keys, std::size_t n, std::size_t dim,
                                           const float* q, __m256 (*part)[kTileCols]) {
  std::size_t d = 0;
  for (; d + 32 <= dim; d += 32) {
    __m256 qv[G][4];
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g)
      LOGQUANT_UNROLL
      for (int c = 0; c < 4; ++c) qv[g][c] = _mm256_loadu_ps(q + g * dim + d + 8 * c);
    for (std::size_t j = 0; j < n; ++j) {
      const float* k = keys + j * dim + d;
      const __m256 k0 = _mm256_loadu_ps(k), k1 = _mm256_loadu_ps(k + 8),
                   k2 = _mm256_loadu_ps(k + 16), k3 = _mm256_loadu_ps(k + 24);
      LOGQUANT_UNROLL
      for (int g = 0; g < G; ++g) {
        __m256 a = _mm256_fmadd_ps(qv[g][0], k0, part[g][j]);
        a = _mm256_fmadd_ps(qv[g][1], k1, a);
        a = _mm256_fmadd_ps(qv[g][2], k2, a);
        part[g][j] = _mm256_fmadd_ps(qv[g][3], k3, a);
      }
    }
  }
  for (; d < dim; d += 8) {
    const __m256i m = tail_mask(dim - d);
    __m256 qv[G];
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g) qv[g] = load(q + g * dim + d, m);
    for (std::size_t j = 0; j < n; ++j) {
      const __m256 k = load(keys + j * dim + d, m);
      LOGQUANT_UNROLL
      for (int g = 0; g < G; ++g) part[g][j] = _mm256_fmadd_ps(qv[g], k, part[g][j]);
    }
  }
}

/// acc[g] += Σ_j p[g][j] value_j for the n values of one tile and G (<= 2) heads, acc [G][dim].
template <int G>
LOGQUANT_AVX2_BODY_INLINE void full_tile_values(const float* values, std::size_t n, std::size_t dim,
                                           const float (*p)[kTileCols], float* acc) {
  std::size_t d = 0;
  for (; d + 32 <= dim; d += 32) {
    __m256 a[G][4];
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g)
      LOGQUANT_UNROLL
      for (int c = 0; c < 4; ++c) a[g][c] = _mm256_loadu_ps(acc + g * dim + d + 8 * c);
    for (std::size_t j = 0; j < n; ++j) {
      const float* v = values + j * dim + d;
      const __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8),
                   v2 = _mm256_loadu_ps(v + 16), v3 = _mm256_loadu_ps(v + 24);
      LOGQUANT_UNROLL
      for (int g = 0; g < G; ++g) {
        const __m256 w = _mm256_set1_ps(p[g][j]);
        a[g][0] = _mm256_fmadd_ps(w, v0, a[g][0]);
        a[g][1] = _mm256_fmadd_ps(w, v1, a[g][1]);
        a[g][2] = _mm256_fmadd_ps(w, v2, a[g][2]);
        a[g][3] = _mm256_fmadd_ps(w, v3, a[g][3]);
      }
    }
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g)
      LOGQUANT_UNROLL
      for (int c = 0; c < 4; ++c) _mm256_storeu_ps(acc + g * dim + d + 8 * c, a[g][c]);
  }
  for (; d < dim; d += 8) {
    const __m256i m = tail_mask(dim - d);
    __m256 a[G];
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g) a[g] = load(acc + g * dim + d, m);
    for (std::size_t j = 0; j < n; ++j) {
      const __m256 v = load(values + j * dim + d, m);
      LOGQUANT_UNROLL
      for (int g = 0; g < G; ++g) a[g] = _mm256_fmadd_ps(_mm256_set1_ps(p[g][j]), v, a[g]);
    }
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g) store(acc + g * dim + d, m, a[g]);
  }
}

/// attend_full for G (<= 2) query heads of one KV head: per tile of 16 tokens, the scores of both
/// heads in one pass over the keys, one softmax step per head, the values in one pass.
template <int G>
LOGQUANT_AVX2_BODY_TARGET void attend_full_heads(const kernels::FullHeadView& v, const float* q,
                                            kernels::StateView st) {
  const std::size_t dim = v.head_dim;
  const __m256 neg_inf = _mm256_set1_ps(-HUGE_VALF);
  HeadState hs[G];
  LOGQUANT_UNROLL
  for (int g = 0; g < G; ++g)
    hs[g] = HeadState{st.max[g], _mm256_setr_ps(st.sum[g], 0, 0, 0, 0, 0, 0, 0)};
  __m256 part[G][kTileCols];
  alignas(32) float p[G][kTileCols];
  for (std::size_t t0 = 0; t0 < v.tokens; t0 += kTileCols) {
    const std::size_t n = std::min(kTileCols, v.tokens - t0);
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g)
      for (std::size_t j = 0; j < kTileCols; ++j) part[g][j] = _mm256_setzero_ps();
    full_tile_scores<G>(v.keys + t0 * dim, n, dim, q, part);
    const __m256i valid0 = tail_mask(n), valid1 = tail_mask(n > 8 ? n - 8 : 0);
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g) {
      const __m256 s0 =
          _mm256_blendv_ps(neg_inf, transpose_sum8(part[g]), _mm256_castsi256_ps(valid0));
      const __m256 s1 =
          _mm256_blendv_ps(neg_inf, transpose_sum8(part[g] + 8), _mm256_castsi256_ps(valid1));
      __m256 p0, p1;
      softmax_tile(hs[g], s0, s1, st.acc + g * dim, dim, p0, p1);
      _mm256_store_ps(p[g], p0);
      _mm256_store_ps(p[g] + 8, p1);
    }
    full_tile_values<G>(v.values + t0 * dim, n, dim, p, st.acc);
  }
  LOGQUANT_UNROLL
  for (int g = 0; g < G; ++g) {
    st.max[g] = hs[g].max;
    st.sum[g] = reduce_add(hs[g].sum);
  }
}

/// Same contract as scalar::attend_full (the same 16-token softmax steps; sums in another order).
LOGQUANT_AVX2_BODY_TARGET inline void attend_full(const kernels::FullHeadView& v, const float* q,
                                             kernels::StateView st) {
  const std::size_t dim = v.head_dim;
  for (std::size_t h0 = 0; h0 < st.heads; h0 += 2) {
    const kernels::StateView sub{st.max + h0, st.sum + h0, st.acc + h0 * dim,
                                 std::min<std::size_t>(2, st.heads - h0)};
    if (sub.heads == 1)
      attend_full_heads<1>(v, q + h0 * dim, sub);
    else
      attend_full_heads<2>(v, q + h0 * dim, sub);
  }
}

}  // namespace LOGQUANT_AVX2_BODY_NS
}  // namespace logquant

LOGQUANT_X86_KERNELS_END

#endif  // LOGQUANT_HAVE_X86_KERNELS

#undef LOGQUANT_AVX2_BODY_NS
#undef LOGQUANT_AVX2_BODY_TARGET
#undef LOGQUANT_AVX2_BODY_INLINE
#undef LOGQUANT_AVX2_BODY_VNNI
