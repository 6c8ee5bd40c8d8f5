// Codes back to floats, written once over an ISA's ops layer: the same bits as
// scalar/dequantize.hpp (min + code * scale, the product exact). Keys are stored one position per
// lane, values one channel per lane (quant/tile_layout.hpp); the output is a position's channels in
// order, so keys take each position's row dwords across the lanes (row_words) and shift every lane
// by its column's offset, and values shift a tile vector by the position's column offset.
// Included like generic/attention.hpp; no include guard.

/// Lane l: the row dword at `row` (a tile's row r, tile vector 0) that holds column
/// part * kLanes + l of the tile: one broadcast, or one per dword the part spans.
template <unsigned Bits>
LOGQUANT_KERNEL_INLINE I row_words(const std::uint8_t* row, std::size_t part) {
  constexpr std::size_t kPerWord = 32 / Bits;  // columns per row dword
  const auto* bytes = reinterpret_cast<const std::int8_t*>(row);  // no lambda: it has no target
  const std::size_t c0 = part * kLanes;
  I x = broadcast4(bytes + c0 / kPerWord * kTileVectorBytes);
  for (std::size_t c = (c0 / kPerWord + 1) * kPerWord; c < c0 + kLanes; c += kPerWord)
    x = select_int(first_lanes(c - c0), x, broadcast4(bytes + c / kPerWord * kTileVectorBytes));
  return x;
}

/// Same contract as scalar::dequantize_keys. One key group at a time: a channel vector's metadata
/// is converted once for all the group's positions.
template <unsigned Bits>
LOGQUANT_KERNEL void dequantize_keys(const kernels::QuantizedHeadView& v, std::size_t begin,
                                     std::size_t end, float* out, std::size_t stride) {
  const std::size_t dim = v.head_dim, col_tiles = tiles_for(dim), tb = tile_bytes(Bits);
  alignas(64) std::int32_t shift[kParts][kLanes];
  for (std::size_t pt = 0; pt < kParts; ++pt)
    for (std::size_t l = 0; l < kLanes; ++l) shift[pt][l] = column_shift(Bits, pt * kLanes + l);
  const I mask = set1_int((1 << Bits) - 1);
  for (std::size_t g0 = begin; g0 < end;) {
    const std::size_t g1 = std::min(end, (g0 / v.key_group + 1) * v.key_group);
    const GroupParams* meta = v.key_meta + g0 / v.key_group * dim;
    for (std::size_t ct = 0; ct < col_tiles; ++ct)
      for (std::size_t pt = 0; pt < kParts && ct * kTileCols + pt * kLanes < dim; ++pt) {
        const std::size_t c = ct * kTileCols + pt * kLanes;
        const M m = first_lanes(dim - c);
        F scale, min;
        split_params(load_params(meta + c, m), scale, min);
        const I shifts = load_int(shift[pt]);
        for (std::size_t p = g0; p < g1; ++p) {
          const std::uint8_t* row = v.key_tile_row(p / kTileRows) + ct * tb + p % kTileRows * 4;
          const I codes = and_int(shift_right(row_words<Bits>(row, pt), shifts), mask);
          store(out + (p - begin) * stride + c, m, add(min, mul(to_float(codes), scale)));
        }
      }
    g0 = g1;
  }
}

/// Same contract as scalar::dequantize_values.
template <unsigned Bits>
LOGQUANT_KERNEL void dequantize_values(const kernels::QuantizedHeadView& v, std::size_t begin,
                                       std::size_t end, float* out, std::size_t stride) {
  const std::size_t dim = v.head_dim, groups = dim / v.value_group, tb = tile_bytes(Bits);
  const std::size_t row_bytes = tiles_for(dim) * tb;
  const I mask = set1_int((1 << Bits) - 1);
  for (std::size_t p = begin; p < end; ++p) {
    // Column j of every tile: tile vector j / (32 / Bits), at column_shift(Bits, j) in each row.
    const std::size_t j = p % kTileCols;
    const std::uint8_t* codes =
        v.value_codes + p / kTileCols * row_bytes + j / (32 / Bits) * kTileVectorBytes;
    const I shift = set1_int(column_shift(Bits, j));
    float* o = out + (p - begin) * stride;
    for (std::size_t c = 0; c < dim; c += kLanes) {  // a value group holds every lane of a vector
      const GroupParams meta = v.value_meta[p * groups + c / v.value_group];
      const I x = load_int(codes + c / kTileRows * tb + c % kTileRows * 4);
      const F code = to_float(and_int(shift_right(x, shift), mask));
      store(o + c, first_lanes(dim - c), add(set1(meta.min_f()), mul(code, set1(meta.scale_f()))));
    }
  }
}
