// Scalar reference attention: the specification of every SIMD attention kernel. It works on the
// packed codes directly (SPEC §4): per key group an int8 pre-scaled query and one integer dot
// product per token; per value tile int8 softmax weights and one integer dot product per channel.
// All query heads that share the KV head are served by the same pass (GQA).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../../quant/tile_layout.hpp"
#include "../common.hpp"
#include "../views.hpp"

namespace logquant {
namespace scalar {

/// Attention of st.heads pre-scaled queries q [heads][head_dim] over the quantized block's
/// positions [begin, end), folded into st; positions marked full precision get no weight. begin
/// and end must be multiples of 16, so a value tile is never split (its int8 weights are quantized
/// over the whole tile). KeyBits and ValueBits are the view's bit widths.
template <unsigned KeyBits, unsigned ValueBits>
void attend_quantized(const kernels::QuantizedHeadView& v, const float* q, std::size_t begin,
                             std::size_t end, kernels::StateView st) {
  if (begin >= end) return;
  const std::size_t dim = v.head_dim, heads = st.heads;
  const std::size_t col_tiles = tiles_for(dim), padded = col_tiles * kTileCols;
  const std::size_t value_tile = tile_bytes(ValueBits);
  const std::size_t value_groups = dim / v.value_group;
  const TileMatrix keys{KeyBits, col_tiles};

  const unsigned key_digits = kernels::operand_digits(KeyBits);
  const unsigned value_digits = kernels::operand_digits(ValueBits);
  // Per-thread scratch, reused across calls: decode calls this once per KV head per step.
  thread_local std::vector<std::int8_t> q_hi, q_lo;
  thread_local std::vector<float> qscale, bias, scores;
  q_hi.resize(heads * padded);
  q_lo.resize(heads * padded);
  qscale.resize(heads);
  bias.resize(heads);
  scores.resize(heads * kTileCols);
  float w[kTileCols];
  std::int8_t w_hi[kTileCols], w_lo[kTileCols];

  for (std::size_t t0 = begin; t0 < end; t0 += kTileCols) {
    // A new key group: the int8 query of every head for its per-channel metadata.
    if (t0 == begin || t0 % v.key_group == 0) {
      const GroupParams* meta = v.key_meta + (t0 / v.key_group) * dim;
      for (std::size_t h = 0; h < heads; ++h)
        kernels::prepare_key_query(q + h * dim, dim, padded, meta, key_digits, &q_hi[h * padded],
                                   &q_lo[h * padded], qscale[h], bias[h]);
    }

    // Scores: qscale * (Σ_c hi_c code_c, Σ_c lo_c code_c combined) + bias for every position.
    for (std::size_t j = 0; j < kTileCols; ++j)
      for (std::size_t h = 0; h < heads; ++h) {
        std::int32_t hi = 0, lo = 0;
        for (std::size_t c = 0; c < dim; ++c) {
          const int code = keys.get(v.key_codes, t0 + j, c);
          hi += q_hi[h * padded + c] * code;
          lo += q_lo[h * padded + c] * code;
        }
        scores[h * kTileCols + j] =
            qscale[h] * kernels::combine_digits(hi, lo, key_digits) + bias[h];
      }

    // Values: acc_c += wscale * (Σ_j W_j code_jc in digits) + Σ_j p_j min_j for every channel.
    const std::uint16_t skip = v.skipped(t0 / kTileCols);
    const std::uint8_t* value_row = v.value_codes + (t0 / kTileCols) * col_tiles * value_tile;
    for (std::size_t h = 0; h < heads; ++h) {
      float* p = &scores[h * kTileCols];
      float* acc = st.acc + h * dim;
      kernels::softmax_fold(st.max[h], st.sum[h], acc, dim, p, kTileCols, skip);
      for (std::size_t g = 0; g < value_groups; ++g) {
        float min_sum = 0.0f;
        for (std::size_t j = 0; j < kTileCols; ++j) {
          const GroupParams m = v.value_meta[(t0 + j) * value_groups + g];
          w[j] = p[j] * m.scale_f();
          min_sum += p[j] * m.min_f();
        }
        float wscale;
        kernels::quantize_tile_weights(w, kTileCols, value_digits, w_hi, w_lo, wscale);
        for (std::size_t c = g * v.value_group; c < (g + 1) * v.value_group; ++c) {
          std::int32_t hi = 0, lo = 0;
          for (std::size_t j = 0; j < kTileCols; ++j) {
            const int code = tile_get(value_row + (c / kTileRows) * value_tile, ValueBits,
                                      c % kTileRows, j);
            hi += w_hi[j] * code;
            lo += w_lo[j] * code;
          }
          acc[c] += wscale * kernels::combine_digits(hi, lo, value_digits) + min_sum;
        }
      }
    }
  }
}

/// Attention of st.heads pre-scaled queries over a full-precision block, folded into st.
inline void attend_full(const kernels::FullHeadView& v, const float* q, kernels::StateView st) {
  const std::size_t dim = v.head_dim;
  float s[kTileCols];
  for (std::size_t h = 0; h < st.heads; ++h) {
    const float* qh = q + h * dim;
    float* acc = st.acc + h * dim;
    for (std::size_t t0 = 0; t0 < v.tokens; t0 += kTileCols) {
      const std::size_t n = std::min(kTileCols, v.tokens - t0);
      for (std::size_t j = 0; j < n; ++j) {
        const float* k = v.keys + (t0 + j) * dim;
        float dot = 0.0f;
        for (std::size_t d = 0; d < dim; ++d) dot += qh[d] * k[d];
        s[j] = dot;
      }
      kernels::softmax_fold(st.max[h], st.sum[h], acc, dim, s, n);
      for (std::size_t j = 0; j < n; ++j) {
        const float* val = v.values + (t0 + j) * dim;
        for (std::size_t d = 0; d < dim; ++d) acc[d] += s[j] * val[d];
      }
    }
  }
}

}  // namespace scalar
}  // namespace logquant
