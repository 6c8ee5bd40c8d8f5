// One KV head's quantized block built from float rows with the scalar reference quantizers, for
// the kernel tests (test_kernels.cpp, test_neon.cpp): both attention kernels under comparison
// read the same codes, and the SIMD quantizers are checked byte for byte separately.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <logquant/logquant.hpp>

namespace logquant_test {

/// Which positions of a test block are full-precision overlay (the quantized pass skips them).
enum class Overlay {
  kNone,
  kSome,  // every 7th position, all of tile row 1, and position 0
  kAll,   // every position (FullSelector's quantized block)
};

/// The shape of a test block: `tokens` positions (a multiple of key_group) in aligned key groups.
struct Layout {
  std::size_t key_group;
  std::size_t tokens;
  Overlay overlay = Overlay::kNone;
};

struct QuantizedBlock {
  std::vector<std::uint8_t> key_codes, value_codes;
  std::vector<logquant::GroupParams> key_meta, value_meta;
  std::vector<std::uint16_t> full_precision;
  logquant::kernels::QuantizedHeadView view;  // points into the vectors above: move, never copy
};

/// keys and values are [layout.tokens][dim], quantized as KVCache stores them (QuantizedBlock).
inline QuantizedBlock pack_block(std::size_t dim, unsigned key_bits, unsigned value_bits,
                                 std::size_t value_group, const Layout& layout, const float* keys,
                                 const float* values) {
  using logquant::tile_bytes;
  using logquant::tiles_for;
  const logquant::kernels::KernelTable& t = logquant::kernels::scalar_table();
  QuantizedBlock b;
  const std::size_t tokens = layout.tokens, key_group = layout.key_group;
  const std::size_t col_tiles = tiles_for(dim), key_row = col_tiles * tile_bytes(key_bits);
  b.key_codes.assign(tokens / 16 * key_row, 0);
  b.key_meta.resize(tokens / key_group * dim);
  for (std::size_t g = 0; g < tokens / key_group; ++g)
    t.quantize_key_group(keys + g * key_group * dim, key_group, dim, dim, key_bits,
                         &b.key_meta[g * dim], &b.key_codes[g * key_group / 16 * key_row]);
  const std::size_t groups = dim / value_group, value_row = col_tiles * tile_bytes(value_bits);
  b.value_codes.assign(tokens / 16 * value_row, 0);
  b.value_meta.resize(tokens * groups);
  for (std::size_t i = 0; i < tokens; ++i)
    t.quantize_value_token(values + i * dim, dim, value_group, value_bits, i,
                           &b.value_meta[i * groups], &b.value_codes[(i / 16) * value_row]);
  b.full_precision.assign(tokens / 16, 0);
  for (std::size_t p = 0; p < tokens; ++p) {
    const bool fp = layout.overlay == Overlay::kAll ||
                    (layout.overlay == Overlay::kSome && (p % 7 == 0 || p / 16 == 1));
    if (fp) b.full_precision[p / 16] = static_cast<std::uint16_t>(b.full_precision[p / 16] | (1u << (p % 16)));
  }
  logquant::kernels::QuantizedHeadView& v = b.view;
  v.key_codes = b.key_codes.data();
  v.key_meta = b.key_meta.data();
  v.value_codes = b.value_codes.data();
  v.value_meta = b.value_meta.data();
  v.full_precision = b.full_precision.data();
  v.tokens = tokens;
  v.head_dim = dim;
  v.key_group = key_group;
  v.value_group = value_group;
  v.key_bits = key_bits;
  v.value_bits = value_bits;
  return b;
}

}  // namespace logquant_test
