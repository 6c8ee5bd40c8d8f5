// Scalar reference: quantize and pack one key group (per channel) or one value token (per group of
// channels) straight into the tile layout. Every SIMD quantize kernel must produce the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../quant/group_quantizer.hpp"
#include "../../quant/tile_layout.hpp"
#include "../common.hpp"

namespace logquant {
namespace scalar {

/// Keys: `tokens` rows of head_dim floats, `row_stride` floats apart, form one group per channel.
/// Writes meta[head_dim] and ORs codes into the zeroed tile rows at `tiles`
/// (tiles_for(tokens) x tiles_for(head_dim) tiles).
template <unsigned Bits>
void quantize_key_group(const float* x, std::size_t tokens, std::size_t head_dim,
                        std::size_t row_stride, GroupParams* meta, std::uint8_t* tiles) {
  using Q = GroupQuantizer<Bits>;
  const TileMatrix matrix{Bits, tiles_for(head_dim)};
  for (std::size_t c = 0; c < head_dim; ++c) {
    const GroupParams p = Q::fit(x + c, tokens, row_stride);
    const float min = p.min_f(), inv = Q::inverse(p);
    for (std::size_t t = 0; t < tokens; ++t)
      matrix.put(tiles, t, c, Q::encode(x[t * row_stride + c], min, inv));
    meta[c] = p;
  }
}

/// Values: one token's head_dim floats in groups of `group` channels. Writes meta[head_dim/group]
/// and ORs the codes into column `dense % 16` of the zeroed token-tile row at `tiles`
/// (tiles_for(head_dim) tiles, tile rows = channels).
template <unsigned Bits>
void quantize_value_token(const float* x, std::size_t head_dim, std::size_t group,
                          std::size_t dense, GroupParams* meta, std::uint8_t* tiles) {
  using Q = GroupQuantizer<Bits>;
  for (std::size_t g = 0; g < head_dim / group; ++g) {
    const GroupParams p = Q::fit(x + g * group, group);
    const float min = p.min_f(), inv = Q::inverse(p);
    for (std::size_t c = g * group; c < (g + 1) * group; ++c)
      tile_put(tiles + (c / kTileRows) * tile_bytes(Bits), Bits, c % kTileRows, dense % kTileCols,
               Q::encode(x[c], min, inv));
    meta[g] = p;
  }
}

}  // namespace scalar
}  // namespace logquant
