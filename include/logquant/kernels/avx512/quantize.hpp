// AVX-512 quantize-and-pack kernels: the same bytes as scalar/quantize.hpp (tests compare every
// byte), 16 channels per vector. Keys scan tokens with channels in lanes, so the per-channel
// minimum and maximum are plain lane-wise min/max in token order (the scalar's order, which also
// decides the sign of a zero minimum); values reduce across lanes and fix that sign up.
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_X86_KERNELS
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../quant/group_quantizer.hpp"
#include "../../quant/tile_layout.hpp"
#include "vec.hpp"

LOGQUANT_X86_KERNELS_BEGIN

namespace logquant {
namespace avx512 {

/// Lane c's bit offset inside a row dword of a tile: byte c % 4, field (c % cpv) / 4.
template <unsigned Bits>
LOGQUANT_AVX512_INLINE __m512i row_shifts() {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i byte = _mm512_slli_epi32(_mm512_and_si512(lane, _mm512_set1_epi32(3)), 3);
  const __m512i field =
      _mm512_srli_epi32(_mm512_and_si512(lane, _mm512_set1_epi32(32 / Bits - 1)), 2);
  return _mm512_add_epi32(byte, _mm512_mullo_epi32(field, _mm512_set1_epi32(Bits)));
}

/// ORs one tile row of 16 codes (lane = column) into `tile`: shifts each code to its bit offset,
/// ORs the lanes of each 64-byte vector's columns together and writes one dword per vector.
template <unsigned Bits>
LOGQUANT_AVX512_INLINE void or_tile_row(__m512i codes, __m512i shifts, std::uint8_t* tile,
                                        std::size_t row) {
  constexpr unsigned kCpv = 32 / Bits;  // columns per vector: lanes OR-ed into one dword
  __m512i x = _mm512_sllv_epi32(codes, shifts);
  x = _mm512_or_si512(x, _mm512_shuffle_epi32(x, _MM_PERM_CDAB));
  x = _mm512_or_si512(x, _mm512_shuffle_epi32(x, _MM_PERM_BADC));
  if constexpr (kCpv >= 8)
    x = _mm512_or_si512(x, _mm512_shuffle_i32x4(x, x, _MM_SHUFFLE(2, 3, 0, 1)));
  if constexpr (kCpv >= 16)
    x = _mm512_or_si512(x, _mm512_shuffle_i32x4(x, x, _MM_SHUFFLE(1, 0, 3, 2)));
  alignas(64) std::uint32_t lanes[16];
  _mm512_store_si512(lanes, x);
  LOGQUANT_UNROLL
  for (unsigned v = 0; v < Bits / 2; ++v) {
    std::uint8_t* p = tile + v * kTileVectorBytes + row * 4;
    std::uint32_t word;
    std::memcpy(&word, p, 4);
    word |= lanes[v * kCpv];
    std::memcpy(p, &word, 4);
  }
}

template <unsigned Bits>
LOGQUANT_TARGET_AVX512 inline void quantize_key_group_bits(const float* x, std::size_t tokens,
                                                           std::size_t head_dim,
                                                           std::size_t row_stride,
                                                           GroupParams* meta, std::uint8_t* tiles) {
  const std::size_t col_tiles = tiles_for(head_dim), tb = tile_bytes(Bits);
  const __m512i shifts = row_shifts<Bits>();
  for (std::size_t ct = 0; ct < col_tiles; ++ct) {
    const std::size_t c0 = ct * kTileCols;
    const __mmask16 m = tail_mask(head_dim - c0);
    __m512 lo = _mm512_maskz_loadu_ps(m, x + c0), hi = lo;
    for (std::size_t t = 1; t < tokens; ++t) {
      const __m512 v = _mm512_maskz_loadu_ps(m, x + t * row_stride + c0);
      lo = _mm512_min_ps(v, lo);  // operand order = std::min(lo, v): ties keep the earlier zero
      hi = _mm512_max_ps(v, hi);
    }
    const __m512i params = fit_params<Bits>(lo, hi);
    _mm512_mask_storeu_epi32(meta + c0, m, params);
    __m512 scale, min;
    split_params(params, scale, min);
    const __m512 inv = inverse_scale(scale);
    std::uint8_t* col = tiles + ct * tb;
    for (std::size_t t = 0; t < tokens; ++t) {
      const __m512 v = _mm512_maskz_loadu_ps(m, x + t * row_stride + c0);
      const __m512i codes = _mm512_maskz_mov_epi32(m, encode<Bits>(v, min, inv));
      or_tile_row<Bits>(codes, shifts, col + (t / kTileRows) * col_tiles * tb, t % kTileRows);
    }
  }
}

/// Same contract as scalar::quantize_key_group. Inputs must be finite and within the fp16 range
/// (KVCache::append checks them; unlike the scalar reference this kernel does not).
LOGQUANT_TARGET_AVX512 inline void quantize_key_group(const float* x, std::size_t tokens,
                                                      std::size_t head_dim, std::size_t row_stride,
                                                      unsigned bits, GroupParams* meta,
                                                      std::uint8_t* tiles) {
  switch (bits) {
    case 2: return quantize_key_group_bits<2>(x, tokens, head_dim, row_stride, meta, tiles);
    case 4: return quantize_key_group_bits<4>(x, tokens, head_dim, row_stride, meta, tiles);
    default: return quantize_key_group_bits<8>(x, tokens, head_dim, row_stride, meta, tiles);
  }
}

template <unsigned Bits>
LOGQUANT_TARGET_AVX512 inline void quantize_value_token_bits(const float* x, std::size_t head_dim,
                                                             std::size_t group, std::size_t dense,
                                                             GroupParams* meta,
                                                             std::uint8_t* tiles) {
  constexpr unsigned kCpv = 32 / Bits;
  const std::size_t j = dense % kTileCols, tb = tile_bytes(Bits);
  const std::size_t vec = j / kCpv;
  const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(8 * (j % 4) + Bits * ((j % kCpv) / 4)));
  const std::size_t groups = head_dim / group;
  for (std::size_t g0 = 0; g0 < groups; g0 += 16) {  // metadata of up to 16 groups as one vector
    const std::size_t ng = std::min<std::size_t>(16, groups - g0);
    alignas(64) float lo[16] = {}, hi[16] = {};
    for (std::size_t i = 0; i < ng; ++i) {
      const float* xg = x + (g0 + i) * group;
      __m512 l = _mm512_set1_ps(HUGE_VALF), h = _mm512_set1_ps(-HUGE_VALF);
      for (std::size_t c = 0; c < group; c += 16) {
        const __mmask16 m = tail_mask(group - c);
        const __m512 v = _mm512_maskz_loadu_ps(m, xg + c);
        l = _mm512_mask_min_ps(l, m, v, l);
        h = _mm512_mask_max_ps(h, m, v, h);
      }
      lo[i] = reduce_min(l);
      hi[i] = reduce_max(h);
      // The scalar scan keeps the first of equal values; only zeros compare equal with different
      // bits (+0, -0), so a zero extreme takes the sign of the group's first zero.
      if (lo[i] == 0.0f || hi[i] == 0.0f) {
        std::size_t k = 0;
        while (xg[k] != 0.0f) ++k;
        if (lo[i] == 0.0f) lo[i] = xg[k];
        if (hi[i] == 0.0f) hi[i] = xg[k];
      }
    }
    const __m512i params = fit_params<Bits>(_mm512_load_ps(lo), _mm512_load_ps(hi));
    _mm512_mask_storeu_epi32(meta + g0, tail_mask(ng), params);
    __m512 scale, min;
    split_params(params, scale, min);
    alignas(64) float mins[16], invs[16];
    _mm512_store_ps(mins, min);
    _mm512_store_ps(invs, inverse_scale(scale));
    for (std::size_t i = 0; i < ng; ++i) {
      const std::size_t g = g0 + i;
      const __m512 vmin = _mm512_set1_ps(mins[i]), vinv = _mm512_set1_ps(invs[i]);
      for (std::size_t c = g * group; c < (g + 1) * group; c += kTileRows) {
        const __mmask16 m = tail_mask((g + 1) * group - c);
        const __m512i codes =
            _mm512_maskz_mov_epi32(m, encode<Bits>(_mm512_maskz_loadu_ps(m, x + c), vmin, vinv));
        std::uint8_t* v = tiles + (c / kTileRows) * tb + vec * kTileVectorBytes;
        _mm512_storeu_si512(v,
                            _mm512_or_si512(_mm512_loadu_si512(v), _mm512_sll_epi32(codes, shift)));
      }
    }
  }
}

/// Same contract as scalar::quantize_value_token (finite, fp16-range input; not checked here).
LOGQUANT_TARGET_AVX512 inline void quantize_value_token(const float* x, std::size_t head_dim,
                                                        std::size_t group, unsigned bits,
                                                        std::size_t dense, GroupParams* meta,
                                                        std::uint8_t* tiles) {
  switch (bits) {
    case 2: return quantize_value_token_bits<2>(x, head_dim, group, dense, meta, tiles);
    case 4: return quantize_value_token_bits<4>(x, head_dim, group, dense, meta, tiles);
    default: return quantize_value_token_bits<8>(x, head_dim, group, dense, meta, tiles);
  }
}

}  // namespace avx512
}  // namespace logquant

LOGQUANT_X86_KERNELS_END

#endif  // LOGQUANT_HAVE_X86_KERNELS
