// Quantize and pack, written once over an ISA's ops layer: the same bytes as scalar/quantize.hpp
// (tests compare every byte). Keys scan tokens with channels in lanes, so the per-channel minimum
// and maximum are lane-wise min/max in token order (the scalar's order, which also decides the
// sign of a zero minimum); values reduce across lanes and fix that sign up. Inputs must be finite
// and within the fp16 range: KVCache::append checks them, and unlike the scalar reference these
// kernels do not. Included like generic/attention.hpp; no include guard.

template <unsigned Bits>
LOGQUANT_KERNEL void quantize_key_group(const float* x, std::size_t tokens, std::size_t head_dim,
                                        std::size_t row_stride, GroupParams* meta,
                                        std::uint8_t* tiles) {
  const std::size_t col_tiles = tiles_for(head_dim), tb = tile_bytes(Bits);
  for (std::size_t ct = 0; ct < col_tiles; ++ct) {
    M m[kParts];
    F lowest[kParts], inv[kParts];  // per lane: the minimum, 1 / scale
    LOGQUANT_UNROLL
    for (std::size_t p = 0; p < kParts; ++p) {
      const std::size_t c = ct * kTileCols + p * kLanes;
      m[p] = first_lanes(c < head_dim ? head_dim - c : 0);
      F lo = loadz(x + c, m[p]), hi = lo;
      for (std::size_t t = 1; t < tokens; ++t) {
        const F v = loadz(x + t * row_stride + c, m[p]);
        lo = min(v, lo);  // operand order = std::min(lo, v): ties keep the earlier zero
        hi = max(v, hi);
      }
      const I params = fit_params<Bits>(lo, hi);
      store_params(meta + c, m[p], params);
      F scale;
      split_params(params, scale, lowest[p]);
      inv[p] = inverse_scale(scale);
    }
    std::uint8_t* col = tiles + ct * tb;
    for (std::size_t t = 0; t < tokens; ++t) {
      I codes[kParts];
      LOGQUANT_UNROLL
      for (std::size_t p = 0; p < kParts; ++p) {
        const std::size_t c = ct * kTileCols + p * kLanes;
        codes[p] = maskz_int(m[p], encode<Bits>(loadz(x + t * row_stride + c, m[p]), lowest[p], inv[p]));
      }
      or_tile_row<Bits>(codes, col + t / kTileRows * col_tiles * tb, t % kTileRows);
    }
  }
}

template <unsigned Bits>
LOGQUANT_KERNEL void quantize_value_token(const float* x, std::size_t head_dim, std::size_t group,
                                          std::size_t dense, GroupParams* meta,
                                          std::uint8_t* tiles) {
  const std::size_t j = dense % kTileCols, tb = tile_bytes(Bits);
  const std::size_t vec = j / (32 / Bits);  // the tile vector holding column j
  const int shift = column_shift(Bits, j);
  const std::size_t groups = head_dim / group;
  for (std::size_t g0 = 0; g0 < groups; g0 += kLanes) {  // metadata of kLanes groups at once
    const std::size_t ng = std::min<std::size_t>(kLanes, groups - g0);
    alignas(64) float lo[kLanes] = {}, hi[kLanes] = {};
    for (std::size_t i = 0; i < ng; ++i) {
      const float* xg = x + (g0 + i) * group;
      F l = set1(HUGE_VALF), h = set1(-HUGE_VALF);
      for (std::size_t c = 0; c < group; c += kLanes) {
        const M m = first_lanes(group - c);
        const F v = loadz(xg + c, m);
        l = select(m, min(v, l), l);
        h = select(m, max(v, h), h);
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
    const I params = fit_params<Bits>(load(lo), load(hi));
    store_params(meta + g0, first_lanes(ng), params);
    F scale, lowest;
    split_params(params, scale, lowest);
    alignas(64) float mins[kLanes], invs[kLanes];
    store(mins, lowest);
    store(invs, inverse_scale(scale));
    for (std::size_t i = 0; i < ng; ++i) {
      const std::size_t g = g0 + i;
      for (std::size_t c = g * group; c < (g + 1) * group; c += kLanes) {
        const M m = first_lanes((g + 1) * group - c);
        const I codes = maskz_int(m, encode<Bits>(loadz(x + c, m), set1(mins[i]), set1(invs[i])));
        // Channel c is row c % 16 of tile c / 16: its column-j dword.
        or_value_codes(tiles + c / kTileRows * tb + vec * kTileVectorBytes + c % kTileRows * 4,
                       codes, shift);
      }
    }
  }
}
