// AVX-512 VNNI attention kernels: the scalar reference's integer operands (kernels/common.hpp),
// fed to vpdpbusd. One 64-byte code vector holds a 16 x 16 tile row of 2-bit codes with one row
// per 32-bit lane; masking it after a shift by 0, 2, 4, 6 gives four planes of four consecutive
// columns, each the u8 operand of one vpdpbusd against a broadcast 4-byte int8 operand. Keys: lanes
// are tokens, the broadcast operand is 4 query digits; values: lanes are channels, the broadcast
// operand is 4 int8 softmax weights. Every code plane is extracted once and used by all query
// heads of the KV head (GQA), and every broadcast operand is used against several code vectors
// (up to 4 key tile rows of a group; all channel tiles of a value group): on Ice Lake vpdpbusd
// with a broadcast memory operand issued at about half the rate of the register form.
//
// The quantized range is processed in chunks of kChunk tokens: the key pass writes the scores of
// every head into a small buffer, then the value pass (which gives the FP overlay's lanes no
// weight): the chunk's softmax maximum, every tile's int8 weights, and the weighted code
// sums channel tile by channel tile with the heads' float accumulators in registers across the
// chunk (acc is loaded and stored once per chunk, not once per tile). Per-group query
// preparation is done for all heads at once and the weight quantization for all heads of
// 8 / heads tiles at once (one transposing reduction tree, one vector division each), so the
// horizontal work does not grow per head.
#pragma once

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
namespace avx512 {

inline constexpr std::size_t kChunk = 256;    // tokens per score buffer
inline constexpr std::size_t kHeadBlock = 8;  // query heads per pass over the codes
inline constexpr std::size_t kScorePad = 16;  // room for key tile rows that overhang a chunk
inline constexpr std::size_t kValueMetaAhead = 64;  // tokens the value metadata is prefetched ahead
inline constexpr std::size_t kScoreStride = kScorePad + kChunk + kScorePad;

/// Plane K of a code vector: the codes of columns [4K, 4K + 4) of each row's vector, as bytes.
template <unsigned Bits, unsigned K>
LOGQUANT_AVX512_INLINE __m512i code_plane(__m512i x) {
  if constexpr (Bits == 8) {
    return x;
  } else {
    const __m512i mask = _mm512_set1_epi8(static_cast<char>((1u << Bits) - 1u));
    if constexpr (K == 0)
      return _mm512_and_si512(x, mask);
    else
      return _mm512_and_si512(_mm512_srli_epi16(x, K * Bits), mask);
  }
}

/// code_plane with the plane as a (folded) argument.
template <unsigned Bits>
LOGQUANT_AVX512_INLINE __m512i code_plane_k(__m512i x, unsigned k) {
  switch (k) {
    case 0: return code_plane<Bits, 0>(x);
    case 1: return code_plane<Bits, 1>(x);
    case 2: return code_plane<Bits, 2>(x);
    default: return code_plane<Bits, 3>(x);
  }
}

LOGQUANT_AVX512_INLINE __m512i broadcast4(const std::int8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

template <unsigned Digits>
LOGQUANT_AVX512_INLINE __m512 combine(__m512i hi, __m512i lo) {
  if constexpr (Digits == 1)
    return _mm512_cvtepi32_ps(hi);
  else
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), _mm512_set1_ps(128.0f), _mm512_cvtepi32_ps(lo));
}

/// Working memory of one attend_quantized call (per thread), sized for one block of heads.
struct AttendScratch {
  std::vector<float> qs;                // [heads][padded] q_c * scale_c of the current key group
  std::vector<std::int8_t> q_hi, q_lo;  // [heads][padded] its digits
  alignas(64) float qscale[16], bias[16];
  std::vector<float> scores;             // [heads][kScoreStride]
  std::vector<float> min_sum;            // [heads][groups][16] per-lane Σ p_j min_j
  std::vector<float> vscale, vmin;       // [tile][groups][16] tile_weights' value metadata
  std::vector<std::uint8_t> w_hi, w_lo;  // [tile][group][head][16] the chunk's int8 weights
  std::vector<float> wscale;             // [tile][group][16] their scales (lane = head)
  alignas(64) float max[kHeadBlock];
  alignas(64) float sum[kHeadBlock][16];  // per-lane softmax sums
};

inline AttendScratch& attend_scratch() {
  thread_local AttendScratch s;
  return s;
}

/// kernels::operand_inverse(limit, max) in lanes 0-7: the correctly rounded quotient, or 0 where
/// it is not finite (max = 0 or tiny); lanes 8-15 are 0. A 256-bit division issues twice as
/// often as a 512-bit one.
LOGQUANT_AVX512_INLINE __m512 operand_inverse8(float limit, __m512 max) {
  const __m256 inv = _mm256_div_ps(_mm256_set1_ps(limit), _mm512_castps512_ps256(max));
  const __mmask8 finite = _mm256_cmp_ps_mask(inv, _mm256_set1_ps(FLT_MAX), _CMP_LE_OQ);
  return _mm512_zextps256_ps512(_mm256_maskz_mov_ps(finite, inv));
}

/// Stores 16 int32 lanes (within int8) as 16 bytes.
LOGQUANT_AVX512_INLINE void store_bytes(void* p, __m512i v) {
  _mm_storeu_si128(static_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v));
}

/// 64 int32 lanes (within int8) as 64 bytes in lane order: two saturating packs leave each
/// 128-bit lane holding 4 values of each input, one dword permute puts them in order.
LOGQUANT_AVX512_INLINE __m512i pack_bytes(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i x = _mm512_packs_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d));
  return _mm512_permutexvar_epi32(
      _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), x);
}

/// Digits of 16 integer operands (kernels::split_digits): one digit is the value; two are
/// hi = floor(v / 128), lo = v - 128 hi.
template <unsigned Digits>
LOGQUANT_AVX512_INLINE void store_digits(std::int8_t* hi, std::int8_t* lo, __m512i r) {
  if constexpr (Digits == 1) {
    store_bytes(hi, r);
  } else {
    store_bytes(hi, _mm512_srai_epi32(r, 7));
    store_bytes(lo, _mm512_and_si512(r, _mm512_set1_epi32(127)));
  }
}

/// kernels::prepare_key_query for NH heads of one key group at once: the same digits byte for
/// byte (the same float products, maximum, operand_inverse and round-half-even conversion; the
/// clamp is a no-op as |q_c scale_c| <= max and the inverse is finite). The metadata is
/// converted once for all heads, the maxima and biases reduced by one transposing tree each, the
/// divisions done as one vector. The bias is summed in another order than the scalar's, so it
/// may differ in the last bits.
template <unsigned Digits, int NH>
LOGQUANT_TARGET_AVX512 inline void prepare_keys(const float* q, std::size_t head_dim,
                                                std::size_t padded, const GroupParams* meta,
                                                AttendScratch& s) {
  constexpr float kLimit = kernels::operand_limit(Digits);
  __m512 vmax[8], vbias[8];
  LOGQUANT_UNROLL
  for (int h = 0; h < 8; ++h) vmax[h] = vbias[h] = _mm512_setzero_ps();
  float* qs = s.qs.data();
  for (std::size_t c = 0; c < head_dim; c += 16) {
    const __mmask16 m = tail_mask(head_dim - c);
    __m512 scale, min;
    split_params(_mm512_maskz_loadu_epi32(m, meta + c), scale, min);
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) {
      const __m512 qv = _mm512_maskz_loadu_ps(m, q + h * head_dim + c);
      const __m512 x = _mm512_mul_ps(qv, scale);
      vmax[h] = _mm512_range_ps(vmax[h], x, 0x0b);  // max |.|, sign cleared
      vbias[h] = _mm512_fmadd_ps(qv, min, vbias[h]);
      _mm512_storeu_ps(qs + h * padded + c, x);
    }
  }
  const __m512 maxabs = NH <= 4 ? transpose_reduce4<MaxOp>(vmax) : transpose_reduce8<MaxOp>(vmax);
  const __m512 bias = NH <= 4 ? transpose_reduce4<AddOp>(vbias) : transpose_reduce8<AddOp>(vbias);
  const __m512 inv = operand_inverse8(kLimit, maxabs);
  _mm512_store_ps(s.qscale, _mm512_mul_ps(maxabs, _mm512_set1_ps(1.0f / kLimit)));  // within an ulp
  _mm512_store_ps(s.bias, bias);
  LOGQUANT_UNROLL
  for (int h = 0; h < NH; ++h) {
    const __m512 ih = lane(inv, h);
    const float* x = qs + h * padded;
    std::size_t c = 0;
    if constexpr (Digits == 1) {  // 64 digits per 4 conversions, packed in 4 instructions
      for (; c + 64 <= padded; c += 64)
        _mm512_storeu_si512(
            &s.q_hi[h * padded + c],
            pack_bytes(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + c), ih)),
                       _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + c + 16), ih)),
                       _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + c + 32), ih)),
                       _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + c + 48), ih))));
    }
    for (; c < padded; c += 16)
      store_digits<Digits>(&s.q_hi[h * padded + c], &s.q_lo[h * padded + c],
                           _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + c), ih)));
  }
}

/// Scores of R consecutive key tile rows of one group for NH heads. The query digits of one plane
/// are broadcast once and used against all R rows: vpdpbusd with a broadcast operand issues
/// about half as fast as with register operands (measured on Ice Lake), so rows share them.
template <unsigned Bits, int NH, int R>
LOGQUANT_AVX512_INLINE void key_rows(const std::uint8_t* const* rows, std::size_t col_tiles,
                                     const AttendScratch& s, std::size_t padded, float* out) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  constexpr unsigned kPlanes = 8 / Bits;
  const std::int8_t* hi = s.q_hi.data();
  const std::int8_t* lo = s.q_lo.data();
  __m512i acc_hi[R][NH], acc_lo[R][NH];
  LOGQUANT_UNROLL
  for (int r = 0; r < R; ++r) {
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) acc_hi[r][h] = acc_lo[r][h] = _mm512_setzero_si512();
  }
  for (std::size_t ct = 0; ct < col_tiles; ++ct) {
    LOGQUANT_UNROLL
    for (unsigned v = 0; v < Bits / 2; ++v) {
      __m512i x[R];
      LOGQUANT_UNROLL
      for (int r = 0; r < R; ++r)
        x[r] = _mm512_loadu_si512(rows[r] + (ct * (Bits / 2) + v) * kTileVectorBytes);
      LOGQUANT_UNROLL
      for (unsigned k = 0; k < kPlanes; ++k) {
        const std::size_t o = ct * kTileCols + (v * kPlanes + k) * 4;
        __m512i qh[NH], ql[NH];
        LOGQUANT_UNROLL
        for (int h = 0; h < NH; ++h) {
          qh[h] = broadcast4(hi + h * padded + o);
          if constexpr (kDigits == 2) ql[h] = broadcast4(lo + h * padded + o);
        }
        LOGQUANT_UNROLL
        for (int r = 0; r < R; ++r) {
          const __m512i u = code_plane_k<Bits>(x[r], k);
          LOGQUANT_UNROLL
          for (int h = 0; h < NH; ++h) {
            acc_hi[r][h] = _mm512_dpbusd_epi32(acc_hi[r][h], u, qh[h]);
            if constexpr (kDigits == 2) acc_lo[r][h] = _mm512_dpbusd_epi32(acc_lo[r][h], u, ql[h]);
          }
        }
      }
    }
  }
  LOGQUANT_UNROLL
  for (int r = 0; r < R; ++r) {
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h)
      _mm512_storeu_ps(out + r * kTileRows + h * kScoreStride,
                       _mm512_fmadd_ps(combine<kDigits>(acc_hi[r][h], acc_lo[r][h]),
                                       _mm512_set1_ps(s.qscale[h]), _mm512_set1_ps(s.bias[h])));
  }
}

/// Scores of one key group's tile rows [r0, r1) for NH heads: row r's 16 scores go to
/// scores[h * kScoreStride + kScorePad + out + r] (out + r may be down to -15: the pad).
template <unsigned Bits, int NH>
LOGQUANT_TARGET_AVX512 void key_group_scores(const kernels::QuantizedHeadView& v, const float* q,
                                             std::size_t g, bool prepare, std::size_t r0,
                                             std::size_t r1, std::ptrdiff_t out, AttendScratch& s) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  constexpr int kRows = NH * kDigits <= 4 ? 4 : NH * kDigits <= 8 ? 2 : 1;  // registers: R*NH*D acc
  const std::size_t dim = v.head_dim, col_tiles = tiles_for(dim), padded = col_tiles * kTileCols;
  if (prepare) {
    // The metadata of the group after next (dim * 4 bytes, ~1 us of work ahead): its load here
    // was 8% of this function's samples at 16K cold; ~2% faster (fastest of 600 calls).
    if ((g + 2) * v.key_group < v.tokens) {
      const char* next = reinterpret_cast<const char*>(v.key_meta + (g + 2) * dim);
      for (std::size_t b = 0; b < dim * sizeof(GroupParams); b += 64)
        _mm_prefetch(next + b, _MM_HINT_T0);
    }
    prepare_keys<kDigits, NH>(q, dim, padded, v.key_meta + g * dim, s);
  }
  float* o = s.scores.data() + static_cast<std::ptrdiff_t>(kScorePad) + out;
  // Tile rows in batches of kRows.
  const std::size_t tr1 = tiles_for(r1), first_row = g * v.key_group / kTileRows;
  for (std::size_t tr = r0 / kTileRows; tr < tr1; tr += kRows) {
    const std::size_t n = std::min<std::size_t>(kRows, tr1 - tr);
    const std::uint8_t* rows[kRows];
    for (std::size_t i = 0; i < n; ++i) rows[i] = v.key_tile_row(first_row + tr + i);
    // The key codes 4 KB ahead of these rows: the hardware prefetchers stop at page boundaries,
    // every 128 tokens here. 16K cold: ~12% faster.
    const std::size_t from = static_cast<std::size_t>(rows[0] - v.key_codes) + 4096;
    const std::size_t to = std::min(from + n * v.key_tile_row_bytes(),
                                    v.tokens / kTileRows * v.key_tile_row_bytes());
    for (std::size_t b = from; b < to; b += 64)
      _mm_prefetch(reinterpret_cast<const char*>(v.key_codes + b), _MM_HINT_T0);
    float* out_rows = o + tr * kTileRows;
    if (n == kRows) {
      key_rows<Bits, NH, kRows>(rows, col_tiles, s, padded, out_rows);
    } else if (n == 1) {
      key_rows<Bits, NH, 1>(rows, col_tiles, s, padded, out_rows);
    } else if constexpr (kRows > 2) {
      if (n == 2) key_rows<Bits, NH, 2>(rows, col_tiles, s, padded, out_rows);
      if (n == 3) key_rows<Bits, NH, 3>(rows, col_tiles, s, padded, out_rows);
    }
  }
}

/// The value metadata of one tile's n tokens, [token][group] dwords, as float vectors per group:
/// scale[g * 16 + j], min[g * 16 + j]; lanes j >= n are 0. One or two groups (head_dim 128 with
/// groups of 64 or 128) are deinterleaved with loads and permutes, more with a gather.
LOGQUANT_AVX512_INLINE void load_value_meta(const GroupParams* meta, std::size_t groups,
                                            std::size_t n, float* scale, float* min) {
  __m512 sc, mn;
  if (groups == 1) {
    split_params(_mm512_maskz_loadu_epi32(tail_mask(n), meta), sc, mn);
    _mm512_storeu_ps(scale, sc);
    _mm512_storeu_ps(min, mn);
  } else if (groups == 2) {
    const __m512i a = _mm512_maskz_loadu_epi32(tail_mask(2 * n), meta);
    const __m512i b = _mm512_maskz_loadu_epi32(tail_mask(2 * n > 16 ? 2 * n - 16 : 0), meta + 16);
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    split_params(_mm512_permutex2var_epi32(a, even, b), sc, mn);
    _mm512_storeu_ps(scale, sc);
    _mm512_storeu_ps(min, mn);
    split_params(_mm512_permutex2var_epi32(a, _mm512_add_epi32(even, _mm512_set1_epi32(1)), b), sc,
                 mn);
    _mm512_storeu_ps(scale + 16, sc);
    _mm512_storeu_ps(min + 16, mn);
  } else {
    const __m512i index =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32(static_cast<int>(groups)));
    for (std::size_t g = 0; g < groups; ++g) {
      split_params(
          _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), tail_mask(n), index, meta + g, 4), sc,
          mn);
      _mm512_storeu_ps(scale + g * 16, sc);
      _mm512_storeu_ps(min + g * 16, mn);
    }
  }
}

/// The softmax maximum of a head rose to `max`: scales its sums, accumulator and min sums by
/// c = exp(old - max) (kernels::softmax_fold; c = 0 for an empty state). Rare after the first
/// tiles, so kept out of line.
LOGQUANT_TARGET_AVX512 inline void rescale_head(float old_max, float max, float* sum, float* acc,
                                                std::size_t head_dim, float* min_sum,
                                                std::size_t groups) {
  const __m512 c = _mm512_set1_ps(std::exp(old_max - max));
  _mm512_store_ps(sum, _mm512_mul_ps(_mm512_load_ps(sum), c));
  for (std::size_t d = 0; d < head_dim; d += 16) {
    const __mmask16 m = tail_mask(head_dim - d);
    _mm512_mask_storeu_ps(acc + d, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, acc + d), c));
  }
  for (std::size_t g = 0; g < groups; ++g)
    _mm512_storeu_ps(min_sum + g * 16, _mm512_mul_ps(_mm512_loadu_ps(min_sum + g * 16), c));
}

/// acc[h][c, c + 16 CT) += Σ over the chunk's tiles t of wscale[t][h] Σ_j W[t][h][j] code[t][j],
/// for CT consecutive channel tiles of one value group: the float accumulators of all NH heads
/// stay in registers across the chunk, so acc is loaded and stored once per chunk instead of once
/// per tile, and each tile's CT code tiles are adjacent bytes (CT = 4: one value group of 64
/// channels, 256 bytes in address order, which the hardware prefetchers follow). The weight digits
/// are broadcast straight from the scratch (memory operands).
template <unsigned Bits, int NH, int CT>
LOGQUANT_AVX512_INLINE void value_tile_sums(const std::uint8_t* codes, std::size_t tile_stride,
                                            std::size_t tiles, const std::int8_t* whi,
                                            const std::int8_t* wlo, std::size_t wstride,
                                            const float* wscale, std::size_t sstride, float* acc,
                                            std::size_t dim, std::size_t c) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  constexpr unsigned kPlanes = 8 / Bits;
  constexpr std::size_t kTileBytes = tile_bytes(Bits);
  __mmask16 m[CT];
  __m512 a[CT][NH];
  LOGQUANT_UNROLL
  for (int k = 0; k < CT; ++k) {
    m[k] = tail_mask(dim - c - k * kTileRows);
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h)
      a[k][h] = _mm512_maskz_loadu_ps(m[k], acc + h * dim + c + k * kTileRows);
  }
  for (std::size_t t = 0; t < tiles; ++t) {
    const std::int8_t* wh = whi + t * wstride;
    const std::int8_t* wl = wlo + t * wstride;
    const float* sc = wscale + t * sstride;
    LOGQUANT_UNROLL
    for (int ct = 0; ct < CT; ++ct) {
      const std::uint8_t* tile = codes + t * tile_stride + ct * kTileBytes;
      __m512i d_hi[NH], d_lo[NH];
      LOGQUANT_UNROLL
      for (int h = 0; h < NH; ++h) d_hi[h] = d_lo[h] = _mm512_setzero_si512();
      LOGQUANT_UNROLL
      for (unsigned vv = 0; vv < Bits / 2; ++vv) {
        const __m512i x = _mm512_loadu_si512(tile + vv * kTileVectorBytes);
        LOGQUANT_UNROLL
        for (unsigned k = 0; k < kPlanes; ++k) {
          const __m512i u = code_plane_k<Bits>(x, k);
          const std::size_t o = (vv * kPlanes + k) * 4;
          LOGQUANT_UNROLL
          for (int h = 0; h < NH; ++h) {
            d_hi[h] = _mm512_dpbusd_epi32(d_hi[h], u, broadcast4(wh + h * kTileCols + o));
            if constexpr (kDigits == 2)
              d_lo[h] = _mm512_dpbusd_epi32(d_lo[h], u, broadcast4(wl + h * kTileCols + o));
          }
        }
      }
      LOGQUANT_UNROLL
      for (int h = 0; h < NH; ++h)
        a[ct][h] = _mm512_fmadd_ps(combine<kDigits>(d_hi[h], d_lo[h]), _mm512_set1_ps(sc[h]),
                                   a[ct][h]);
    }
  }
  LOGQUANT_UNROLL
  for (int k = 0; k < CT; ++k)
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h)
      _mm512_mask_storeu_ps(acc + h * dim + c + k * kTileRows, m[k], a[k][h]);
}

/// The lanes of tile row r that the quantized pass weighs: all but the FP overlay.
LOGQUANT_AVX512_INLINE __mmask16 kept(const kernels::QuantizedHeadView& v, std::size_t r) {
  return static_cast<__mmask16>(~v.skipped(r));
}

/// Tiles whose int8 weights tile_weights computes together for NH (<= kHeadBlock = 8) heads: as
/// many as fill the 8 lanes of one transposing maximum tree and one division.
template <int NH>
inline constexpr int kWeightTiles = 8 / NH;

/// The numerators and int8 weights of T consecutive tiles of a chunk (tile t onwards, tokens from
/// t0 = c0 + 16 t; only the last may be partial, n_last tokens) for NH heads: p_j = exp(s_j - max)
/// added to the softmax sums, Σ p_j min_j to the min sums, and per (tile, head, value group)
/// kernels::quantize_tile_weights of w_j = p_j scale_j into the chunk's weight scratch. The maxima
/// of all T * NH weight vectors of a value group come from one transposing tree and their
/// inverses from one division: done tile by tile, the short chain maximum -> division -> digits
/// left the pipes idle. Two tiles at a time (4 query heads per KV head), Zen 5, one KV head at 4K
/// in L2: 0.94-0.97 of the time of one at a time (`bash scripts/ab_kernel.sh 442dad5 l2`).
template <unsigned Bits, int NH, int T>
LOGQUANT_AVX512_INLINE void tile_weights(const kernels::QuantizedHeadView& v, std::size_t t0,
                                         std::size_t n_last, const std::uint8_t* tile_codes,
                                         const float* scores, const float* max, __m512* sum,
                                         std::int8_t* whi, std::int8_t* wlo, float* wscale,
                                         AttendScratch& s) {
  static_assert(T * NH <= 8 || T == 1, "one tree reduces 8 weight vectors");
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  constexpr float kLimit = kernels::operand_limit(kDigits);
  constexpr std::size_t kTileBytes = tile_bytes(Bits);
  const std::size_t dim = v.head_dim, col_tiles = tiles_for(dim), groups = dim / v.value_group;
  const std::size_t wstride = groups * NH * kTileCols, sstride = groups * 16;
  const std::size_t mstride = groups * kTileCols;
  // These tiles' value codes, for the sums after the weights (one tile row each, 8 lines at
  // head_dim 128, 2-bit). Asked for here, spread over the weight computation: a burst of the
  // whole chunk's 128 lines at its start stalled on miss buffers (7.6% of this function's
  // samples) and was 10-20% slower at 16K cold than this (medians of 600 calls).
  for (std::size_t b = 0; b < T * col_tiles * kTileBytes; b += 64)
    _mm_prefetch(reinterpret_cast<const char*>(tile_codes + b), _MM_HINT_T0);
  // The value metadata kValueMetaAhead tokens on (its own thin stream, 8 bytes per token at
  // head_dim 128): its load was 23% of value_chunk's samples at 16K cold on Zen 5, where the
  // hardware prefetchers did not cover it; 1,224-1,350 -> 1,058-1,073 us there (interleaved).
  if (t0 + kValueMetaAhead < v.tokens) {
    const char* ahead = reinterpret_cast<const char*>(v.value_meta + (t0 + kValueMetaAhead) * groups);
    for (std::size_t b = 0; b < T * kTileCols * groups * sizeof(GroupParams); b += 64)
      _mm_prefetch(ahead + b, _MM_HINT_T0);
  }
  __m512 p[8];
  LOGQUANT_UNROLL
  for (int k = 0; k < T; ++k) {
    const std::size_t n = k == T - 1 ? n_last : kTileCols;
    const __mmask16 valid = tail_mask(n) & kept(v, t0 / kTileCols + k);
    load_value_meta(v.value_meta + (t0 + k * kTileCols) * groups, groups, n,
                    &s.vscale[k * groups * 16], &s.vmin[k * groups * 16]);
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) {
      const __m512 sc = _mm512_maskz_loadu_ps(valid, scores + h * kScoreStride + k * kTileCols);
      p[k * NH + h] = _mm512_maskz_mov_ps(valid, exp_ps(_mm512_sub_ps(sc, _mm512_set1_ps(max[h]))));
      sum[h] = _mm512_add_ps(sum[h], p[k * NH + h]);
    }
  }
  for (std::size_t g = 0; g < groups; ++g) {
    __m512 w[8], scale[T], min[T];
    LOGQUANT_UNROLL
    for (int i = 0; i < 8; ++i) w[i] = _mm512_setzero_ps();
    LOGQUANT_UNROLL
    for (int k = 0; k < T; ++k) {
      scale[k] = _mm512_loadu_ps(&s.vscale[(k * groups + g) * 16]);
      min[k] = _mm512_loadu_ps(&s.vmin[(k * groups + g) * 16]);
    }
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) {
      float* ms = &s.min_sum[h * mstride + g * 16];
      __m512 m = _mm512_loadu_ps(ms);
      LOGQUANT_UNROLL
      for (int k = 0; k < T; ++k) {
        w[k * NH + h] = _mm512_mul_ps(p[k * NH + h], scale[k]);
        m = _mm512_fmadd_ps(p[k * NH + h], min[k], m);
      }
      _mm512_storeu_ps(ms, m);
    }
    const __m512 wmax = T * NH <= 4 ? transpose_reduce4<MaxOp>(w) : transpose_reduce8<MaxOp>(w);
    const __m512 inv = operand_inverse8(kLimit, wmax);  // lane i: limit / max w[i]
    // wscale = max w / limit as a product with 1 / limit: within an ulp of the scalar's quotient
    // (a float result; the division is kept where it decides integer weights, above).
    const __m512 ws = _mm512_mul_ps(wmax, _mm512_set1_ps(1.0f / kLimit));
    LOGQUANT_UNROLL
    for (int k = 0; k < T; ++k) {  // tile k's scales: lanes [k NH, k NH + NH) moved to 0..NH-1
      const __m512 tile_ws =
          k == 0 ? ws
                 : _mm512_permutexvar_ps(
                       _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                                          13, 14, 15),
                                        _mm512_set1_epi32(k * NH)),
                       ws);
      _mm512_storeu_ps(wscale + k * sstride + g * 16, tile_ws);
      LOGQUANT_UNROLL
      for (int h = 0; h < NH; ++h) {  // w <= max w, so w * (limit / max w) rounds to at most limit
        const std::size_t o = k * wstride + (g * NH + h) * kTileCols;
        store_digits<kDigits>(
            whi + o, wlo + o,
            _mm512_cvtps_epi32(_mm512_mul_ps(w[k * NH + h], lane(inv, k * NH + h))));
      }
    }
  }
}

/// The value pass over tokens [c0, c1) of a chunk for NH heads. First the chunk's softmax maximum
/// per head (one rescale of the state per chunk at most), then the numerators
/// p_j = exp(s_j - max) (kernels::softmax_fold with a vector exp) and the int8 weights of every
/// (tile, head, value group) (kernels::quantize_tile_weights; tile_weights, kWeightTiles tiles at
/// a time), then per channel tile acc += wscale * (weights . codes) over all the chunk's tiles.
/// The scalar reference folds each tile against the running maximum instead; the integer weights
/// depend only on ratios within a tile, so the two differ by float rounding. Σ_j p_j min_j is
/// kept per lane in min_sum and added to the channels at the end.
template <unsigned Bits, int NH>
LOGQUANT_TARGET_AVX512 void value_chunk(const kernels::QuantizedHeadView& v, std::size_t c0,
                                        std::size_t c1, float* acc, AttendScratch& s) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  constexpr std::size_t kTileBytes = tile_bytes(Bits);
  constexpr int kT = kWeightTiles<NH>;
  const std::size_t dim = v.head_dim, col_tiles = tiles_for(dim), groups = dim / v.value_group;
  const std::size_t tiles = (c1 - c0 + kTileCols - 1) / kTileCols;
  const std::size_t wstride = groups * NH * kTileCols;  // weight digits of one tile
  const std::size_t sstride = groups * 16;              // weight scales of one tile
  const std::size_t mstride = groups * kTileCols;       // min sums of one head
  auto* whi = reinterpret_cast<std::int8_t*>(s.w_hi.data());
  auto* wlo = reinterpret_cast<std::int8_t*>(s.w_lo.data());
  const __m512 neg_inf = _mm512_set1_ps(-HUGE_VALF);
  const float* scores = s.scores.data() + kScorePad;
  // The sums below read the chunk's value codes one value group at a time (256 of every 512
  // bytes per tile at head_dim 128), so the weight loop prefetches them in address order.
  const std::uint8_t* chunk_codes = v.value_codes + (c0 / kTileCols) * col_tiles * kTileBytes;

  float max[NH];
  __m512 sum[NH];
  LOGQUANT_UNROLL
  for (int h = 0; h < NH; ++h) {
    __m512 m = neg_inf;
    for (std::size_t t = 0; t < tiles; ++t)
      m = _mm512_max_ps(m, _mm512_mask_loadu_ps(neg_inf, kept(v, c0 / kTileCols + t),
                                                scores + h * kScoreStride + t * kTileCols));
    const float chunk_max = reduce_max(m);
    if (chunk_max > s.max[h]) {
      rescale_head(s.max[h], chunk_max, s.sum[h], acc + h * dim, dim, &s.min_sum[h * mstride],
                   groups);
      s.max[h] = chunk_max;
    }
    max[h] = s.max[h];
    sum[h] = _mm512_load_ps(s.sum[h]);
  }

  // kT tiles at a time while whole groups of them remain, the rest one by one; only the chunk's
  // last tile may be partial.
  std::size_t t = 0;
  if constexpr (kT > 1)
    for (; t + kT <= tiles; t += kT) {
      const std::size_t t0 = c0 + t * kTileCols;
      tile_weights<Bits, NH, kT>(v, t0, std::min(kTileCols, c1 - t0 - (kT - 1) * kTileCols),
                                 chunk_codes + t * col_tiles * kTileBytes, scores + t * kTileCols,
                                 max, sum, whi + t * wstride, wlo + t * wstride,
                                 &s.wscale[t * sstride], s);
    }
  for (; t < tiles; ++t) {
    const std::size_t t0 = c0 + t * kTileCols;
    tile_weights<Bits, NH, 1>(v, t0, std::min(kTileCols, c1 - t0),
                              chunk_codes + t * col_tiles * kTileBytes, scores + t * kTileCols, max,
                              sum, whi + t * wstride, wlo + t * wstride, &s.wscale[t * sstride], s);
  }
  LOGQUANT_UNROLL
  for (int h = 0; h < NH; ++h) _mm512_store_ps(s.sum[h], sum[h]);

  // acc[h][c] += Σ_t wscale[t][g][h] * Σ_j W[t][h][g][j] code[t][j][c], kCT channel tiles of
  // one value group at a time (as many as registers allow: kCT * NH * (1 + digits) <= 24).
  constexpr int kCT = NH * (1 + kDigits) <= 6 ? 4 : NH * (1 + kDigits) <= 12 ? 2 : 1;
  for (std::size_t ct = 0; ct < col_tiles;) {
    const std::size_t c = ct * kTileRows, g = c / v.value_group;
    const std::size_t group_end = std::min(col_tiles, tiles_for((g + 1) * v.value_group));
    const std::uint8_t* codes = chunk_codes + ct * kTileBytes;
    const std::int8_t* wh = whi + g * NH * kTileCols;
    const std::int8_t* wl = wlo + g * NH * kTileCols;
    if (ct + kCT <= group_end) {
      value_tile_sums<Bits, NH, kCT>(codes, col_tiles * kTileBytes, tiles, wh, wl, wstride,
                                     &s.wscale[g * 16], sstride, acc, dim, c);
      ct += kCT;
    } else {
      value_tile_sums<Bits, NH, 1>(codes, col_tiles * kTileBytes, tiles, wh, wl, wstride,
                                   &s.wscale[g * 16], sstride, acc, dim, c);
      ct += 1;
    }
  }
}

using KeyGroupFn = void (*)(const kernels::QuantizedHeadView&, const float*, std::size_t, bool,
                            std::size_t, std::size_t, std::ptrdiff_t, AttendScratch&);
using ValueChunkFn = void (*)(const kernels::QuantizedHeadView&, std::size_t, std::size_t, float*,
                              AttendScratch&);

template <unsigned Bits>
inline KeyGroupFn key_group_fn(std::size_t heads) {
  static const KeyGroupFn fns[kHeadBlock] = {
      &key_group_scores<Bits, 1>, &key_group_scores<Bits, 2>, &key_group_scores<Bits, 3>,
      &key_group_scores<Bits, 4>, &key_group_scores<Bits, 5>, &key_group_scores<Bits, 6>,
      &key_group_scores<Bits, 7>, &key_group_scores<Bits, 8>};
  return fns[heads - 1];
}

template <unsigned Bits>
inline ValueChunkFn value_chunk_fn(std::size_t heads) {
  static const ValueChunkFn fns[kHeadBlock] = {
      &value_chunk<Bits, 1>, &value_chunk<Bits, 2>, &value_chunk<Bits, 3>, &value_chunk<Bits, 4>,
      &value_chunk<Bits, 5>, &value_chunk<Bits, 6>, &value_chunk<Bits, 7>, &value_chunk<Bits, 8>};
  return fns[heads - 1];
}

/// One block of at most kHeadBlock heads: chunk by chunk, the key pass, then the value pass.
LOGQUANT_TARGET_AVX512 inline void attend_quantized_block(const kernels::QuantizedHeadView& v,
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
  s.vscale.resize(kWeightTiles<1> * groups * 16);  // the most tiles tile_weights takes
  s.vmin.resize(kWeightTiles<1> * groups * 16);
  s.w_hi.resize(kChunk / kTileCols * groups * heads * kTileCols);
  s.w_lo.resize(kChunk / kTileCols * groups * heads * kTileCols);
  s.wscale.resize(kChunk / kTileCols * groups * 16);
  for (std::size_t h = 0; h < heads; ++h) {
    s.max[h] = st.max[h];
    _mm512_store_ps(s.sum[h], _mm512_maskz_mov_ps(1, _mm512_set1_ps(st.sum[h])));
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
    // Key pass: every key tile row with a token in [c0, c1), scores to scores[h][t - c0 + pad].
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
    st.sum[h] = reduce_add(_mm512_load_ps(s.sum[h]));
    for (std::size_t g = 0; g < groups; ++g) {
      const __m512 add =
          _mm512_set1_ps(reduce_add(_mm512_loadu_ps(&s.min_sum[(h * groups + g) * 16])));
      float* a = st.acc + h * dim + g * v.value_group;
      for (std::size_t c = 0; c < v.value_group; c += 16) {
        const __mmask16 m = tail_mask(v.value_group - c);
        _mm512_mask_storeu_ps(a + c, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + c), add));
      }
    }
  }
}

/// Same contract as scalar::attend_quantized.
LOGQUANT_TARGET_AVX512 inline void attend_quantized(const kernels::QuantizedHeadView& v,
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

/// Softmax state of one head in attend_full: running max and per-lane sums.
struct HeadState {
  float max;
  __m512 sum;
};

/// kernels::softmax_fold for 16 scores (invalid lanes -inf): returns p = exp(s - max), 0 on
/// invalid lanes; acc is rescaled when the maximum rises.
LOGQUANT_AVX512_INLINE __m512 softmax_tile(HeadState& hs, __m512 s, __mmask16 valid, float* acc,
                                           std::size_t head_dim) {
  if (_mm512_mask_cmp_ps_mask(valid, s, _mm512_set1_ps(hs.max), _CMP_GT_OQ) != 0) {
    const float tile_max = reduce_max(s);
    const __m512 c = _mm512_set1_ps(std::exp(hs.max - tile_max));  // 0 for an empty state
    hs.sum = _mm512_mul_ps(hs.sum, c);
    for (std::size_t d = 0; d < head_dim; d += 16) {
      const __mmask16 m = tail_mask(head_dim - d);
      _mm512_mask_storeu_ps(acc + d, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, acc + d), c));
    }
    hs.max = tile_max;
  }
  const __m512 p = _mm512_maskz_mov_ps(valid, exp_ps(_mm512_sub_ps(s, _mm512_set1_ps(hs.max))));
  hs.sum = _mm512_add_ps(hs.sum, p);
  return p;
}

/// part[g][j] += the products of query g and key j, channel by channel in 16 lanes, for the n
/// keys of one tile (rows of dim floats) and G query heads q [G][dim]. Four channel vectors of
/// every query stay in registers while the tile's keys stream past, so each key vector is loaded
/// once for all G heads.
template <int G>
LOGQUANT_AVX512_INLINE void full_tile_scores(const float* keys, std::size_t n, std::size_t dim,
                                             const float* q, __m512 (*part)[kTileCols]) {
  std::size_t d = 0;
  for (; d + 64 <= dim; d += 64) {
    __m512 qv[G][4];
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g)
      LOGQUANT_UNROLL
      for (int c = 0; c < 4; ++c) qv[g][c] = _mm512_loadu_ps(q + g * dim + d + 16 * c);
    for (std::size_t j = 0; j < n; ++j) {
      const float* k = keys + j * dim + d;
      const __m512 k0 = _mm512_loadu_ps(k), k1 = _mm512_loadu_ps(k + 16),
                   k2 = _mm512_loadu_ps(k + 32), k3 = _mm512_loadu_ps(k + 48);
      LOGQUANT_UNROLL
      for (int g = 0; g < G; ++g) {
        __m512 a = _mm512_fmadd_ps(qv[g][0], k0, part[g][j]);
        a = _mm512_fmadd_ps(qv[g][1], k1, a);
        a = _mm512_fmadd_ps(qv[g][2], k2, a);
        part[g][j] = _mm512_fmadd_ps(qv[g][3], k3, a);
      }
    }
  }
  for (; d < dim; d += 16) {
    const __mmask16 m = tail_mask(dim - d);
    __m512 qv[G];
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g) qv[g] = _mm512_maskz_loadu_ps(m, q + g * dim + d);
    for (std::size_t j = 0; j < n; ++j) {
      const __m512 k = _mm512_maskz_loadu_ps(m, keys + j * dim + d);
      LOGQUANT_UNROLL
      for (int g = 0; g < G; ++g) part[g][j] = _mm512_fmadd_ps(qv[g], k, part[g][j]);
    }
  }
}

/// acc[g] += Σ_j p[g][j] value_j for the n values of one tile and G heads, acc [G][dim]: four
/// channel vectors of every head's accumulator in registers while the tile's values stream past.
template <int G>
LOGQUANT_AVX512_INLINE void full_tile_values(const float* values, std::size_t n, std::size_t dim,
                                             const float (*p)[kTileCols], float* acc) {
  std::size_t d = 0;
  for (; d + 64 <= dim; d += 64) {
    __m512 a[G][4];
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g)
      LOGQUANT_UNROLL
      for (int c = 0; c < 4; ++c) a[g][c] = _mm512_loadu_ps(acc + g * dim + d + 16 * c);
    for (std::size_t j = 0; j < n; ++j) {
      const float* v = values + j * dim + d;
      const __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16),
                   v2 = _mm512_loadu_ps(v + 32), v3 = _mm512_loadu_ps(v + 48);
      LOGQUANT_UNROLL
      for (int g = 0; g < G; ++g) {
        const __m512 w = _mm512_set1_ps(p[g][j]);
        a[g][0] = _mm512_fmadd_ps(w, v0, a[g][0]);
        a[g][1] = _mm512_fmadd_ps(w, v1, a[g][1]);
        a[g][2] = _mm512_fmadd_ps(w, v2, a[g][2]);
        a[g][3] = _mm512_fmadd_ps(w, v3, a[g][3]);
      }
    }
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g)
      LOGQUANT_UNROLL
      for (int c = 0; c < 4; ++c) _mm512_storeu_ps(acc + g * dim + d + 16 * c, a[g][c]);
  }
  for (; d < dim; d += 16) {
    const __mmask16 m = tail_mask(dim - d);
    __m512 a[G];
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g) a[g] = _mm512_maskz_loadu_ps(m, acc + g * dim + d);
    for (std::size_t j = 0; j < n; ++j) {
      const __m512 v = _mm512_maskz_loadu_ps(m, values + j * dim + d);
      LOGQUANT_UNROLL
      for (int g = 0; g < G; ++g) a[g] = _mm512_fmadd_ps(_mm512_set1_ps(p[g][j]), v, a[g]);
    }
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g) _mm512_mask_storeu_ps(acc + g * dim + d, m, a[g]);
  }
}

/// attend_full for G (<= 4) query heads of one KV head: per tile of 16 tokens, the scores of all
/// G heads in one pass over the keys, one softmax step per head, the values in one pass. Every
/// key and value is read once per tile for all G heads, not once per head.
template <int G>
LOGQUANT_TARGET_AVX512 void attend_full_heads(const kernels::FullHeadView& v, const float* q,
                                              kernels::StateView st) {
  const std::size_t dim = v.head_dim;
  const __m512 neg_inf = _mm512_set1_ps(-HUGE_VALF);
  HeadState hs[G];
  LOGQUANT_UNROLL
  for (int g = 0; g < G; ++g)
    hs[g] = HeadState{st.max[g], _mm512_maskz_mov_ps(1, _mm512_set1_ps(st.sum[g]))};
  __m512 part[G][kTileCols];
  alignas(64) float p[G][kTileCols];
  for (std::size_t t0 = 0; t0 < v.tokens; t0 += kTileCols) {
    const std::size_t n = std::min(kTileCols, v.tokens - t0);
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g)
      for (std::size_t j = 0; j < kTileCols; ++j) part[g][j] = _mm512_setzero_ps();
    full_tile_scores<G>(v.keys + t0 * dim, n, dim, q, part);
    const __mmask16 valid = tail_mask(n);
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g) {
      const __m512 s = _mm512_mask_mov_ps(neg_inf, valid, transpose_sum16(part[g]));
      _mm512_store_ps(p[g], softmax_tile(hs[g], s, valid, st.acc + g * dim, dim));
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
LOGQUANT_TARGET_AVX512 inline void attend_full(const kernels::FullHeadView& v, const float* q,
                                               kernels::StateView st) {
  const std::size_t dim = v.head_dim;
  for (std::size_t h0 = 0; h0 < st.heads; h0 += 4) {
    const kernels::StateView sub{st.max + h0, st.sum + h0, st.acc + h0 * dim,
                                 std::min<std::size_t>(4, st.heads - h0)};
    switch (sub.heads) {
      case 1: attend_full_heads<1>(v, q + h0 * dim, sub); break;
      case 2: attend_full_heads<2>(v, q + h0 * dim, sub); break;
      case 3: attend_full_heads<3>(v, q + h0 * dim, sub); break;
      default: attend_full_heads<4>(v, q + h0 * dim, sub); break;
    }
  }
}

}  // namespace avx512
}  // namespace logquant

LOGQUANT_X86_KERNELS_END

#endif  // LOGQUANT_HAVE_X86_KERNELS
