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

/// The quantized block of one KV head (quant/quantized_block.hpp owns it and documents the layout):
/// positions [0, tokens), tokens a multiple of key_group.
///
/// Keys: a TileMatrix (quant/tile_layout.hpp) with rows = positions and columns = channels (padded
/// to 16): tile row r (positions [16 r, 16 r + 16)) starts at byte r * key_tile_row_bytes().
/// Key group g is positions [g * key_group, (g + 1) * key_group); key_meta[g * head_dim + c] is
/// channel c's (scale, min) over it.
///
/// Values: one tile matrix with rows = positions and columns = channels for addressing tiles,
/// but inside each tile rows are channels and columns are positions (so one 32-bit lane holds one
/// channel of 16 positions). value_meta[t * (head_dim / value_group) + g] is position t's group g.
///
/// Overlay: bit j of full_precision[r] is set when position 16 r + j is a full-precision token:
/// attention reads it from the FP block, so the quantized pass must give it no weight.
struct QuantizedHeadView {
  const std::uint8_t* key_codes = nullptr;
  const GroupParams* key_meta = nullptr;
  const std::uint8_t* value_codes = nullptr;
  const GroupParams* value_meta = nullptr;
  const std::uint16_t* full_precision = nullptr;  // [tokens / 16]

  std::size_t tokens = 0;
  std::size_t head_dim = 0;
  std::size_t key_group = 16;
  std::size_t value_group = 0;
  unsigned key_bits = 2;
  unsigned value_bits = 2;

  /// Bytes of one tile row of key codes (16 positions).
  std::size_t key_tile_row_bytes() const { return tiles_for(head_dim) * tile_bytes(key_bits); }
  /// Key tile row r (positions [16 r, 16 r + 16)).
  const std::uint8_t* key_tile_row(std::size_t r) const {
    return key_codes + r * key_tile_row_bytes();
  }
  /// The FP positions of tile row r, bit j for position 16 r + j.
  std::uint16_t skipped(std::size_t r) const { return full_precision[r]; }
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
