// One KV head's quantized block built from float rows with the scalar reference quantizers, for
// the kernel tests (test_kernels.cpp, test_neon.cpp): both attention kernels under comparison
// read the same codes, and the SIMD quantizers are checked byte for byte separately.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
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

/// The library's own QuantizedBlock (one KV head) and the view kernels read from it.
struct QuantizedBlock {
  logquant::QuantizedBlock block;
  logquant::kernels::QuantizedHeadView view;  // points into `block`: move, never copy
};

/// keys and values are [layout.tokens][dim], quantized by the scalar kernels as KVCache stores
/// them, with the layout's FP overlay.
inline QuantizedBlock pack_block(std::size_t dim, unsigned key_bits, unsigned value_bits,
                                 std::size_t value_group, const Layout& layout, const float* keys,
                                 const float* values) {
  const std::size_t key_group = layout.key_group;
  QuantizedBlock b{logquant::QuantizedBlock(1, dim, key_bits, value_bits, key_group, value_group),
                   {}};
  for (std::size_t g = 0; g < layout.tokens / key_group; ++g)
    b.block.quantize_group(g, logquant::kernels::scalar_table().for_bits(key_bits, value_bits),
                           [&](std::size_t) {
      return std::make_pair(keys + g * key_group * dim, values + g * key_group * dim);
    });
  for (std::size_t p = 0; p < layout.tokens; ++p)
    b.block.set_full_precision(p, layout.overlay == Overlay::kAll ||
                                      (layout.overlay == Overlay::kSome &&
                                       (p % 7 == 0 || p / 16 == 1)));
  b.view = b.block.view(0);
  return b;
}

}  // namespace logquant_test
