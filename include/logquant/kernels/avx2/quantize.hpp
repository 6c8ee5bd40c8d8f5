// AVX2 quantize-and-pack kernels: the same bytes as scalar/quantize.hpp (tests compare every
// byte), 8 channels per vector, a 16-column tile as two halves. Keys scan tokens with channels in
// lanes, so lane-wise min/max in token order reproduce the scalar's (including which zero wins);
// values reduce across lanes and fix the sign of a zero extreme up.
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_X86_KERNELS
#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../../quant/group_quantizer.hpp"
#include "../../quant/tile_layout.hpp"
#include "vec.hpp"

LOGQUANT_X86_KERNELS_BEGIN

namespace logquant {
namespace avx2 {

/// Bit offset of column c inside its row dword: byte c % 4, field (c % cpv) / 4.
inline constexpr int column_shift(unsigned bits, unsigned c) {
  return static_cast<int>(8 * (c % 4) + bits * ((c % (32 / bits)) / 4));
}

template <unsigned Bits>
LOGQUANT_AVX2_INLINE __m256i row_shifts(unsigned half) {
  const unsigned b = half * 8;
  return _mm256_setr_epi32(column_shift(Bits, b), column_shift(Bits, b + 1),
                           column_shift(Bits, b + 2), column_shift(Bits, b + 3),
                           column_shift(Bits, b + 4), column_shift(Bits, b + 5),
                           column_shift(Bits, b + 6), column_shift(Bits, b + 7));
}

LOGQUANT_AVX2_INLINE void or_word(std::uint8_t* p, std::uint32_t bits) {
  std::uint32_t word;
  std::memcpy(&word, p, 4);
  word |= bits;
  std::memcpy(p, &word, 4);
}

/// ORs one tile row of 16 codes (lane = column; columns 0-7 in c0, 8-15 in c1) into `tile`.
template <unsigned Bits>
LOGQUANT_AVX2_INLINE void or_tile_row(__m256i c0, __m256i c1, __m256i s0, __m256i s1,
                                      std::uint8_t* tile, std::size_t row) {
  __m256i x0 = _mm256_sllv_epi32(c0, s0), x1 = _mm256_sllv_epi32(c1, s1);
  x0 = _mm256_or_si256(x0, _mm256_shuffle_epi32(x0, 0xb1));
  x1 = _mm256_or_si256(x1, _mm256_shuffle_epi32(x1, 0xb1));
  x0 = _mm256_or_si256(x0, _mm256_shuffle_epi32(x0, 0x4e));
  x1 = _mm256_or_si256(x1, _mm256_shuffle_epi32(x1, 0x4e));
  // OR of columns 0-3, 4-7, 8-11, 12-15.
  const auto d0 = static_cast<std::uint32_t>(_mm256_cvtsi256_si32(x0));
  const auto d1 = static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(x0, 1)));
  const auto d2 = static_cast<std::uint32_t>(_mm256_cvtsi256_si32(x1));
  const auto d3 = static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(x1, 1)));
  std::uint8_t* p = tile + row * 4;
  if constexpr (Bits == 2) {
    or_word(p, d0 | d1 | d2 | d3);
  } else if constexpr (Bits == 4) {
    or_word(p, d0 | d1);
    or_word(p + kTileVectorBytes, d2 | d3);
  } else {
    or_word(p, d0);
    or_word(p + kTileVectorBytes, d1);
    or_word(p + 2 * kTileVectorBytes, d2);
    or_word(p + 3 * kTileVectorBytes, d3);
  }
}

template <unsigned Bits>
LOGQUANT_TARGET_AVX2 inline void quantize_key_group_bits(const float* x, std::size_t tokens,
                                                         std::size_t head_dim,
                                                         std::size_t row_stride, GroupParams* meta,
                                                         std::uint8_t* tiles) {
  const std::size_t col_tiles = tiles_for(head_dim), tb = tile_bytes(Bits);
  const __m256i s0 = row_shifts<Bits>(0), s1 = row_shifts<Bits>(1);
  for (std::size_t ct = 0; ct < col_tiles; ++ct) {
    const std::size_t c0 = ct * kTileCols, c1 = c0 + 8;
    const __m256i m0 = tail_mask(head_dim - c0), m1 = tail_mask(head_dim > c1 ? head_dim - c1 : 0);
    __m256 lo0 = load(x + c0, m0), lo1 = load(x + c1, m1), hi0 = lo0, hi1 = lo1;
    for (std::size_t t = 1; t < tokens; ++t) {
      const float* row = x + t * row_stride;
      const __m256 v0 = load(row + c0, m0), v1 = load(row + c1, m1);
      lo0 = _mm256_min_ps(v0, lo0);  // operand order = std::min(lo, v): ties keep the earlier zero
      lo1 = _mm256_min_ps(v1, lo1);
      hi0 = _mm256_max_ps(v0, hi0);
      hi1 = _mm256_max_ps(v1, hi1);
    }
    const __m256i p0 = fit_params<Bits>(lo0, hi0), p1 = fit_params<Bits>(lo1, hi1);
    _mm256_maskstore_epi32(reinterpret_cast<int*>(meta + c0), m0, p0);
    _mm256_maskstore_epi32(reinterpret_cast<int*>(meta + c1), m1, p1);
    __m256 scale0, min0, scale1, min1;
    split_params(p0, scale0, min0);
    split_params(p1, scale1, min1);
    const __m256 inv0 = inverse_scale(scale0), inv1 = inverse_scale(scale1);
    std::uint8_t* col = tiles + ct * tb;
    for (std::size_t t = 0; t < tokens; ++t) {
      const float* row = x + t * row_stride;
      const __m256i k0 = _mm256_and_si256(m0, encode<Bits>(load(row + c0, m0), min0, inv0));
      const __m256i k1 = _mm256_and_si256(m1, encode<Bits>(load(row + c1, m1), min1, inv1));
      or_tile_row<Bits>(k0, k1, s0, s1, col + (t / kTileRows) * col_tiles * tb, t % kTileRows);
    }
  }
}

/// Same contract as scalar::quantize_key_group. Inputs must be finite and within the fp16 range
/// (KVCache::append checks them; unlike the scalar reference this kernel does not).
LOGQUANT_TARGET_AVX2 inline void quantize_key_group(const float* x, std::size_t tokens,
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
LOGQUANT_TARGET_AVX2 inline void quantize_value_token_bits(const float* x, std::size_t head_dim,
                                                           std::size_t group, std::size_t dense,
                                                           GroupParams* meta, std::uint8_t* tiles) {
  const std::size_t j = dense % kTileCols, tb = tile_bytes(Bits);
  const std::size_t vec = j / (32 / Bits);
  const __m128i shift = _mm_cvtsi32_si128(column_shift(Bits, static_cast<unsigned>(j)));
  const std::size_t groups = head_dim / group;
  for (std::size_t g0 = 0; g0 < groups; g0 += 8) {  // metadata of up to 8 groups as one vector
    const std::size_t ng = std::min<std::size_t>(8, groups - g0);
    alignas(32) float lo[8] = {}, hi[8] = {};
    for (std::size_t i = 0; i < ng; ++i) {
      const float* xg = x + (g0 + i) * group;
      __m256 l = _mm256_set1_ps(HUGE_VALF), h = _mm256_set1_ps(-HUGE_VALF);
      for (std::size_t c = 0; c < group; c += 8) {
        const __m256i m = tail_mask(group - c);
        const __m256 v = load(xg + c, m), in = _mm256_castsi256_ps(m);
        l = _mm256_blendv_ps(l, _mm256_min_ps(v, l), in);
        h = _mm256_blendv_ps(h, _mm256_max_ps(v, h), in);
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
    const __m256i params = fit_params<Bits>(_mm256_load_ps(lo), _mm256_load_ps(hi));
    _mm256_maskstore_epi32(reinterpret_cast<int*>(meta + g0), tail_mask(ng), params);
    __m256 scale, min;
    split_params(params, scale, min);
    alignas(32) float mins[8], invs[8];
    _mm256_store_ps(mins, min);
    _mm256_store_ps(invs, inverse_scale(scale));
    for (std::size_t i = 0; i < ng; ++i) {
      const std::size_t g = g0 + i;
      const __m256 vmin = _mm256_set1_ps(mins[i]), vinv = _mm256_set1_ps(invs[i]);
      for (std::size_t c = g * group; c < (g + 1) * group; c += 8) {
        const __m256i m = tail_mask((g + 1) * group - c);
        const __m256i codes = _mm256_and_si256(m, encode<Bits>(load(x + c, m), vmin, vinv));
        // Channel c sits in tile c / 16, row c % 16: the half (c % 16) / 8 of the vector.
        auto* v = reinterpret_cast<__m256i*>(tiles + (c / kTileRows) * tb + vec * kTileVectorBytes +
                                             (c % kTileRows) * 4);
        _mm256_storeu_si256(v,
                            _mm256_or_si256(_mm256_loadu_si256(v), _mm256_sll_epi32(codes, shift)));
      }
    }
  }
}

/// Same contract as scalar::quantize_value_token (finite, fp16-range input; not checked here).
LOGQUANT_TARGET_AVX2 inline void quantize_value_token(const float* x, std::size_t head_dim,
                                                      std::size_t group, unsigned bits,
                                                      std::size_t dense, GroupParams* meta,
                                                      std::uint8_t* tiles) {
  switch (bits) {
    case 2: return quantize_value_token_bits<2>(x, head_dim, group, dense, meta, tiles);
    case 4: return quantize_value_token_bits<4>(x, head_dim, group, dense, meta, tiles);
    default: return quantize_value_token_bits<8>(x, head_dim, group, dense, meta, tiles);
  }
}

}  // namespace avx2
}  // namespace logquant

LOGQUANT_X86_KERNELS_END

#endif  // LOGQUANT_HAVE_X86_KERNELS
