// Plain views of one KV head's storage, the only thing kernels see: pointers, sizes and strides,
// no vector types and no containers, so every ISA's kernels share one signature (the dispatch
// boundary). Layouts are documented in quant/tile_layout.hpp and kv_cache.hpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../quant/group_quantizer.hpp"
#include "../quant/tile_layout.hpp"

namespace logquant {
namespace kernels {

/// The quantized block of one KV head. Quantized tokens are numbered 0 .. tokens-1 in demotion
/// order ("dense index").
///
/// Keys: key group i holds dense indices [group_first[i], group_first[i+1]); its codes are a
/// KeyGroupTiles matrix (quant/tile_layout.hpp) with rows = the group's tokens and columns =
/// channels (padded to 16), starting at byte group_first[i] * key_row_bytes() of key_codes (groups
/// are stored back to back, the last tile row of each cut to its rows); key_meta[i * head_dim + c]
/// is channel c's (scale, min) over the group.
///
/// Values: one tile matrix with rows = dense index and columns = channels for addressing tiles,
/// but inside each tile rows are channels and columns are tokens (so one 32-bit lane holds one
/// channel of 16 tokens). value_meta[t * (head_dim / value_group) + g] is token t's group g.
struct QuantizedHeadView {
  const std::uint8_t* key_codes = nullptr;
  const GroupParams* key_meta = nullptr;
  const std::uint32_t* group_first = nullptr;  // [groups + 1]
  std::size_t groups = 0;

  const std::uint8_t* value_codes = nullptr;
  const GroupParams* value_meta = nullptr;

  std::size_t tokens = 0;
  std::size_t head_dim = 0;
  std::size_t value_group = 0;
  unsigned key_bits = 2;
  unsigned value_bits = 2;

  /// Bytes of one token row of key codes.
  std::size_t key_row_bytes() const {
    return KeyGroupTiles::row_bytes(key_bits, tiles_for(head_dim));
  }
  /// Key group g's codes and layout.
  const std::uint8_t* key_group_codes(std::size_t g) const {
    return key_codes + group_first[g] * key_row_bytes();
  }
  KeyGroupTiles key_group_tiles(std::size_t g) const {
    return KeyGroupTiles{key_bits, tiles_for(head_dim), group_first[g + 1] - group_first[g]};
  }
};

/// The full-precision block of one KV head: `tokens` rows of head_dim floats each.
struct FullHeadView {
  const float* keys = nullptr;
  const float* values = nullptr;
  std::size_t tokens = 0;
  std::size_t head_dim = 0;
};

/// Where a kernel accumulates: the partial states of the `heads` query heads that share one KV
/// head (GQA), m and l [heads], acc [heads][head_dim].
struct StateView {
  float* max;
  float* sum;
  float* acc;
  std::size_t heads;
};

}  // namespace kernels
}  // namespace logquant
