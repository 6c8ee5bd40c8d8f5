// NEON quantize + pack of one key group (per channel) and one value token (per group of channels),
// byte for byte the output of scalar/quantize.hpp. Ranges are found four channels (keys) or four
// values (a value group) at a time; codes use the exact expression of GroupQuantizer::encode,
// clamp(round_half_even((x - min) * inv), 0, max), which FRINTN, FMAX/FMIN and FCVTZU compute
// exactly; the metadata comes from GroupQuantizer::fit itself.
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_NEON_KERNELS

#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../../fp16.hpp"
#include "../../quant/group_quantizer.hpp"
#include "../../quant/tile_layout.hpp"
#include "../common.hpp"
#include "../scalar/quantize.hpp"

namespace logquant {
namespace neon {
namespace detail {

/// GroupQuantizer<Bits>::encode of 16 values, min and inv per value, as 16 bytes.
template <unsigned Bits>
inline uint8x16_t encode16(const float* x, const float* min, const float* inv) {
  const float32x4_t zero = vdupq_n_f32(0.0f);
  const float32x4_t max_code = vdupq_n_f32(static_cast<float>((1u << Bits) - 1u));
  uint32x4_t code[4];
  for (int i = 0; i < 4; ++i) {
    const float32x4_t scaled =
        vmulq_f32(vsubq_f32(vld1q_f32(x + 4 * i), vld1q_f32(min + 4 * i)), vld1q_f32(inv + 4 * i));
    code[i] = vcvtq_u32_f32(vminq_f32(vmaxq_f32(vrndnq_f32(scaled), zero), max_code));
  }
  const uint16x8_t lo = vcombine_u16(vmovn_u32(code[0]), vmovn_u32(code[1]));
  const uint16x8_t hi = vcombine_u16(vmovn_u32(code[2]), vmovn_u32(code[3]));
  return vcombine_u8(vmovn_u16(lo), vmovn_u16(hi));
}

/// ORs the 16 codes of tile row `row` (columns 0..15) into a tile: the four bytes of a row per
/// vector hold columns 4w .. 4w + 3 of word w at shift (w % (8 / Bits)) * Bits (tile_layout.hpp).
/// The shifted words never overlap, so a horizontal add is an OR.
template <unsigned Bits>
inline void put_tile_row(std::uint8_t* tile, std::size_t row, uint8x16_t codes) {
  const uint32x4_t words = vreinterpretq_u32_u8(codes);
  std::uint8_t* p = tile + row * 4;
  if constexpr (Bits == 2) {
    const int32x4_t shifts = {0, 2, 4, 6};
    or_row_word(p, vaddvq_u32(vshlq_u32(words, shifts)));
  } else if constexpr (Bits == 4) {
    const int32x4_t shifts = {0, 4, 0, 4};
    const uint32x4_t shifted = vshlq_u32(words, shifts);
    const uint32x4_t pairs = vpaddq_u32(shifted, shifted);
    or_row_word(p, vgetq_lane_u32(pairs, 0));
    or_row_word(p + kTileVectorBytes, vgetq_lane_u32(pairs, 1));
  } else {
    or_row_word(p, vgetq_lane_u32(words, 0));
    or_row_word(p + kTileVectorBytes, vgetq_lane_u32(words, 1));
    or_row_word(p + 2 * kTileVectorBytes, vgetq_lane_u32(words, 2));
    or_row_word(p + 3 * kTileVectorBytes, vgetq_lane_u32(words, 3));
  }
}

/// ORs 16 codes (tile rows 0..15) into tile column `col`: byte (col % cpv) % 4 of every row of
/// vector col / cpv, at shift ((col % cpv) / 4) * Bits. VLD4 splits a vector by byte position.
template <unsigned Bits>
inline void put_tile_column(std::uint8_t* tile, std::size_t col, uint8x16_t codes) {
  constexpr std::size_t kColumnsPerVector = 32 / Bits;
  const std::size_t in_vector = col % kColumnsPerVector;
  std::uint8_t* p = tile + (col / kColumnsPerVector) * kTileVectorBytes;
  const uint8x16_t shifted =
      vshlq_u8(codes, vdupq_n_s8(static_cast<std::int8_t>((in_vector / 4) * Bits)));
  uint8x16x4_t rows = vld4q_u8(p);
  switch (in_vector % 4) {
    case 0: rows.val[0] = vorrq_u8(rows.val[0], shifted); break;
    case 1: rows.val[1] = vorrq_u8(rows.val[1], shifted); break;
    case 2: rows.val[2] = vorrq_u8(rows.val[2], shifted); break;
    default: rows.val[3] = vorrq_u8(rows.val[3], shifted); break;
  }
  vst4q_u8(p, rows);
}

/// Whether lo and hi (the extremes of a group) are finite and within the fp16 range. NaN fails,
/// and FMIN/FMAX propagate NaN, so checking the extremes checks every element.
inline bool in_half_range(float lo, float hi) {
  return std::fabs(lo) <= kHalfMax && std::fabs(hi) <= kHalfMax;
}

/// GroupQuantizer::fit from a group's extremes. fit keeps the first of equal extremes, so a zero
/// extreme has the sign of the first zero in the group; the vector reduction may pick the other
/// sign of zero, so such a group is fitted from its elements (rare: an extreme exactly 0).
template <unsigned Bits>
inline GroupParams fit_from_range(float lo, float hi, const float* x, std::size_t n,
                                  std::size_t stride) {
  if (lo == 0.0f || hi == 0.0f) return GroupQuantizer<Bits>::fit(x, n, stride);
  const float extremes[2] = {lo, hi};
  return GroupQuantizer<Bits>::fit(extremes, 2);
}

template <unsigned Bits>
inline void quantize_key_group(const float* x, std::size_t tokens, std::size_t head_dim,
                               std::size_t row_stride, GroupParams* meta, std::uint8_t* tiles) {
  using Q = GroupQuantizer<Bits>;
  const std::size_t col_tiles = tiles_for(head_dim), padded = col_tiles * kTileCols;
  // Per-channel extremes, four channels per vector over all tokens.
  std::vector<float> lo(head_dim), hi(head_dim);
  bool ok = true;
  std::size_t c = 0;
  for (; c + 4 <= head_dim; c += 4) {
    float32x4_t vlo = vld1q_f32(x + c), vhi = vlo;
    for (std::size_t t = 1; t < tokens; ++t) {
      const float32x4_t v = vld1q_f32(x + t * row_stride + c);
      vlo = vminq_f32(vlo, v);
      vhi = vmaxq_f32(vhi, v);
    }
    vst1q_f32(&lo[c], vlo);
    vst1q_f32(&hi[c], vhi);
  }
  for (; c < head_dim; ++c) {
    float l = x[c], h = x[c];
    for (std::size_t t = 0; t < tokens; ++t) {
      const float v = x[t * row_stride + c];
      ok = ok && std::fabs(v) <= kHalfMax;
      l = std::min(l, v);
      h = std::max(h, v);
    }
    lo[c] = l;
    hi[c] = h;
  }
  for (c = 0; c < head_dim && ok; ++c) ok = in_half_range(lo[c], hi[c]);
  if (!ok) {  // the reference throws the error that names the bad element
    scalar::quantize_key_group<Bits>(x, tokens, head_dim, row_stride, meta, tiles);
    return;
  }

  // Padding channels get min = inv = 0, so their codes are 0 like the zeroed tile.
  std::vector<float> mins(padded, 0.0f), invs(padded, 0.0f);
  for (c = 0; c < head_dim; ++c) {
    const GroupParams p = fit_from_range<Bits>(lo[c], hi[c], x + c, tokens, row_stride);
    meta[c] = p;
    mins[c] = p.min_f();
    invs[c] = Q::inverse(p);
  }

  const std::size_t row_bytes = col_tiles * tile_bytes(Bits);
  float padded_row[kTileCols];
  for (std::size_t t = 0; t < tokens; ++t) {
    const float* src = x + t * row_stride;
    std::uint8_t* tile_row = tiles + (t / kTileRows) * row_bytes;
    for (std::size_t ct = 0; ct < col_tiles; ++ct) {
      const std::size_t c0 = ct * kTileCols;
      const float* block = src + c0;
      if (c0 + kTileCols > head_dim) {  // never read past the row
        std::fill(padded_row, padded_row + kTileCols, 0.0f);
        std::copy(src + c0, src + head_dim, padded_row);
        block = padded_row;
      }
      put_tile_row<Bits>(tile_row + ct * tile_bytes(Bits), t % kTileRows,
                         encode16<Bits>(block, &mins[c0], &invs[c0]));
    }
  }
}

template <unsigned Bits>
inline void quantize_value_token(const float* x, std::size_t head_dim, std::size_t group,
                                 std::size_t dense, GroupParams* meta, std::uint8_t* tiles) {
  using Q = GroupQuantizer<Bits>;
  const std::size_t col = dense % kTileCols;
  for (std::size_t g = 0; g < head_dim / group; ++g) {
    const float* xg = x + g * group;
    float32x4_t vlo = vdupq_n_f32(xg[0]), vhi = vlo;
    std::size_t i = 0;
    for (; i + 4 <= group; i += 4) {
      const float32x4_t v = vld1q_f32(xg + i);
      vlo = vminq_f32(vlo, v);
      vhi = vmaxq_f32(vhi, v);
    }
    float lo = vminvq_f32(vlo), hi = vmaxvq_f32(vhi);
    bool ok = true;
    for (; i < group; ++i) {
      ok = ok && std::fabs(xg[i]) <= kHalfMax;
      lo = std::min(lo, xg[i]);
      hi = std::max(hi, xg[i]);
    }
    if (!(ok && in_half_range(lo, hi))) {
      // The reference throws the error naming the element; it rewrites the groups done so far
      // with the same metadata and ORs the same codes, so nothing differs.
      scalar::quantize_value_token<Bits>(x, head_dim, group, dense, meta, tiles);
      return;
    }
    const GroupParams p = fit_from_range<Bits>(lo, hi, xg, group, 1);
    meta[g] = p;

    const float min = p.min_f(), inv = Q::inverse(p);
    float mins[kTileRows], invs[kTileRows], block[kTileRows];
    // Channels [g * group, (g + 1) * group) in tiles of 16 (tile rows = channels).
    const std::size_t c_begin = g * group, c_end = c_begin + group;
    for (std::size_t c0 = c_begin - c_begin % kTileRows; c0 < c_end; c0 += kTileRows) {
      const std::size_t a = std::max(c0, c_begin), b = std::min(c0 + kTileRows, c_end);
      const float* src = x + c0;
      // Rows outside the group get min = inv = 0: code 0, which leaves the tile as it was.
      for (std::size_t r = 0; r < kTileRows; ++r) {
        const bool inside = c0 + r >= a && c0 + r < b;
        mins[r] = inside ? min : 0.0f;
        invs[r] = inside ? inv : 0.0f;
      }
      if (a != c0 || b != c0 + kTileRows) {  // never read outside the group
        std::fill(block, block + kTileRows, 0.0f);
        std::copy(x + a, x + b, block + (a - c0));
        src = block;
      }
      put_tile_column<Bits>(tiles + (c0 / kTileRows) * tile_bytes(Bits), col,
                            encode16<Bits>(src, mins, invs));
    }
  }
}

}  // namespace detail

/// Keys: same contract and bytes as scalar::quantize_key_group.
template <unsigned Bits>
void quantize_key_group(const float* x, std::size_t tokens, std::size_t head_dim,
                        std::size_t row_stride, GroupParams* meta, std::uint8_t* tiles) {
  if (tokens == 0 || head_dim == 0 || x == nullptr)  // the reference's errors (or no-op)
    return scalar::quantize_key_group<Bits>(x, tokens, head_dim, row_stride, meta, tiles);
  detail::quantize_key_group<Bits>(x, tokens, head_dim, row_stride, meta, tiles);
}

/// Values: same contract and bytes as scalar::quantize_value_token.
template <unsigned Bits>
void quantize_value_token(const float* x, std::size_t head_dim, std::size_t group,
                          std::size_t dense, GroupParams* meta, std::uint8_t* tiles) {
  if (group == 0 || head_dim % group != 0 || x == nullptr)
    return scalar::quantize_value_token<Bits>(x, head_dim, group, dense, meta, tiles);
  detail::quantize_value_token<Bits>(x, head_dim, group, dense, meta, tiles);
}

}  // namespace neon
}  // namespace logquant

#endif  // LOGQUANT_HAVE_NEON_KERNELS
