// One KV head's quantized block built from float rows with the scalar reference quantizers, for
// the kernel tests (test_kernels.cpp, test_neon.cpp): both attention kernels under comparison
// read the same codes, and the SIMD quantizers are checked byte for byte separately.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <logquant/logquant.hpp>

namespace logquant_test {

struct QuantizedBlock {
  std::vector<std::uint8_t> key_codes, value_codes;
  std::vector<logquant::GroupParams> key_meta, value_meta;
  std::vector<std::uint32_t> group_first{0};
  logquant::kernels::QuantizedHeadView view;  // points into the vectors above: move, never copy
};

/// keys and values are [sum of group_sizes][dim]; key groups of the given sizes, in order.
inline QuantizedBlock pack_block(std::size_t dim, unsigned key_bits, unsigned value_bits,
                                 std::size_t value_group,
                                 const std::vector<std::size_t>& group_sizes, const float* keys,
                                 const float* values) {
  using logquant::tile_bytes;
  using logquant::tiles_for;
  const logquant::kernels::KernelTable& t = logquant::kernels::scalar_table();
  QuantizedBlock b;
  std::size_t tokens = 0;
  for (std::size_t n : group_sizes) tokens += n;
  const std::size_t col_tiles = tiles_for(dim), key_row = col_tiles * tile_bytes(key_bits);
  std::size_t first = 0;
  std::vector<std::uint8_t> whole_rows;
  for (std::size_t n : group_sizes) {  // as KVCache stores a group: quantized, then compacted
    whole_rows.assign(tiles_for(n) * key_row, 0);
    b.key_meta.resize(b.key_meta.size() + dim);
    t.quantize_key_group(keys + first * dim, n, dim, dim, key_bits,
                         &b.key_meta[b.key_meta.size() - dim], whole_rows.data());
    const std::size_t end = b.key_codes.size();
    b.key_codes.resize(end + logquant::KeyGroupTiles{key_bits, col_tiles, n}.bytes());
    logquant::compact_key_group(whole_rows.data(), n, col_tiles, key_bits, &b.key_codes[end]);
    first += n;
    b.group_first.push_back(static_cast<std::uint32_t>(first));
  }
  const std::size_t groups = dim / value_group, value_row = col_tiles * tile_bytes(value_bits);
  b.value_codes.assign(tiles_for(tokens) * value_row, 0);
  b.value_meta.resize(tokens * groups);
  for (std::size_t i = 0; i < tokens; ++i)
    t.quantize_value_token(values + i * dim, dim, value_group, value_bits, i,
                           &b.value_meta[i * groups], &b.value_codes[(i / 16) * value_row]);
  logquant::kernels::QuantizedHeadView& v = b.view;
  v.key_codes = b.key_codes.data();
  v.key_meta = b.key_meta.data();
  v.group_first = b.group_first.data();
  v.groups = group_sizes.size();
  v.value_codes = b.value_codes.data();
  v.value_meta = b.value_meta.data();
  v.tokens = tokens;
  v.head_dim = dim;
  v.value_group = value_group;
  v.key_bits = key_bits;
  v.value_bits = value_bits;
  return b;
}

}  // namespace logquant_test
