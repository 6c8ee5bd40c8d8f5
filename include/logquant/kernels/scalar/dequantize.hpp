// Scalar reference: decode codes back to floats, GroupQuantizer::decode (min + code * scale) per
// value. code * scale is exact in float (at most 8 + 11 significant bits), so the one rounding is
// the addition's, and every SIMD path gives the same bits whether or not it fuses the two.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../quant/group_quantizer.hpp"
#include "../../quant/tile_layout.hpp"
#include "../views.hpp"

namespace logquant {
namespace scalar {

/// Same contract as kernels::DequantizeFn (kernel_table.hpp), keys: channel c of position p
/// decodes with key_meta[(p / key_group) * head_dim + c].
template <unsigned Bits>
void dequantize_keys(const kernels::QuantizedHeadView& v, std::size_t begin, std::size_t end,
                     float* out, std::size_t stride) {
  const TileMatrix m{Bits, tiles_for(v.head_dim)};
  for (std::size_t p = begin; p < end; ++p)
    for (std::size_t c = 0; c < v.head_dim; ++c)
      out[(p - begin) * stride + c] = GroupQuantizer<Bits>::decode(
          m.get(v.key_codes, p, c), v.key_meta[p / v.key_group * v.head_dim + c]);
}

/// Values: channel c of position p decodes with value_meta[p * groups + c / value_group]; inside
/// a tile, rows are channels and columns positions (views.hpp).
template <unsigned Bits>
void dequantize_values(const kernels::QuantizedHeadView& v, std::size_t begin, std::size_t end,
                       float* out, std::size_t stride) {
  const std::size_t groups = v.head_dim / v.value_group;
  const std::size_t row_bytes = tiles_for(v.head_dim) * tile_bytes(Bits);
  for (std::size_t p = begin; p < end; ++p)
    for (std::size_t c = 0; c < v.head_dim; ++c) {
      const std::uint8_t* tile =
          v.value_codes + p / kTileCols * row_bytes + c / kTileRows * tile_bytes(Bits);
      out[(p - begin) * stride + c] =
          GroupQuantizer<Bits>::decode(tile_get(tile, Bits, c % kTileRows, p % kTileCols),
                                       v.value_meta[p * groups + c / v.value_group]);
    }
}

}  // namespace scalar
}  // namespace logquant
