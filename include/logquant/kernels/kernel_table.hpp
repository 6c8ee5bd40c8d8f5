// The kernel table: one struct of function pointers per ISA, filled once at start-up by dispatch.hpp,
// with one entry per bit width, so a cache picks its kernels once (for_bits) and no kernel call
// dispatches on a width. Kernels take views (pointers and sizes), never vector types, so the
// dispatch boundary sits here, above every loop.
#pragma once

#include <cstddef>
#include <cstdint>

#include "views.hpp"

namespace logquant {

/// Instruction sets logquant has kernels for. kAvxVnni: the AVX2 kernels with VEX vpdpbusd
/// (AVX-VNNI CPUs without AVX-512, e.g. Intel client cores since Alder Lake). kNeon: ARMv8.0
/// Advanced SIMD, every AArch64 CPU; kNeonDotprod: the same with SDOT (ARMv8.2 dotprod).
enum class Isa { kScalar, kAvx2, kAvx512, kNeon, kAvxVnni, kNeonDotprod };

/// The name LOGQUANT_ISA uses for an ISA: "scalar", "avx2", "avxvnni", "avx512", "neon" or
/// "neon_dotprod".
inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvxVnni: return "avxvnni";
    case Isa::kAvx512: return "avx512";
    case Isa::kNeon: return "neon";
    case Isa::kNeonDotprod: return "neon_dotprod";
  }
  return "unknown";
}

namespace kernels {

/// Keys: `tokens` rows of head_dim floats, `row_stride` apart, quantized per channel into meta
/// [head_dim] and ORed into the zeroed tile rows at `tiles` (scalar/quantize.hpp).
using QuantizeKeyGroupFn = void (*)(const float* x, std::size_t tokens, std::size_t head_dim,
                                    std::size_t row_stride, GroupParams* meta,
                                    std::uint8_t* tiles);
/// Values: one token in groups of `group` channels into meta [head_dim / group] and column
/// `dense % 16` of the token-tile row at `tiles`.
using QuantizeValueTokenFn = void (*)(const float* x, std::size_t head_dim, std::size_t group,
                                      std::size_t dense, GroupParams* meta, std::uint8_t* tiles);
using AttendQuantizedFn = void (*)(const QuantizedHeadView& v, const float* q, std::size_t begin,
                                   std::size_t end, StateView st);
using AttendFullFn = void (*)(const FullHeadView& v, const float* q, StateView st);
/// Keys or values of positions [begin, end) of a quantized block (begin <= end <= v.tokens) as
/// floats, GroupQuantizer::decode of every code: position p's head_dim floats at
/// out + (p - begin) * stride. Overlay positions are decoded from their codes too (zeros in a
/// group not yet quantized): the caller writes its FP tokens over them.
using DequantizeFn = void (*)(const QuantizedHeadView& v, std::size_t begin, std::size_t end,
                              float* out, std::size_t stride);

/// Where a bit width (2, 4 or 8) sits in a table's per-width entries.
inline constexpr std::size_t bits_index(unsigned bits) { return bits == 2 ? 0 : bits == 4 ? 1 : 2; }

/// One ISA's kernels for one pair of bit widths: what a cache calls.
struct CacheKernels {
  Isa isa;
  QuantizeKeyGroupFn quantize_key_group;
  QuantizeValueTokenFn quantize_value_token;
  AttendQuantizedFn attend_quantized;
  AttendFullFn attend_full;
  DequantizeFn dequantize_keys;
  DequantizeFn dequantize_values;
};

struct KernelTable {
  Isa isa;
  QuantizeKeyGroupFn quantize_key_group[3];      // [bits_index(key bits)]
  QuantizeValueTokenFn quantize_value_token[3];  // [bits_index(value bits)]
  AttendQuantizedFn attend_quantized[3][3];      // [key bits][value bits]
  AttendFullFn attend_full;
  DequantizeFn dequantize_keys[3];    // [bits_index(key bits)]
  DequantizeFn dequantize_values[3];  // [bits_index(value bits)]

  /// The kernels of a cache with these bit widths, chosen once when the cache is made.
  CacheKernels for_bits(unsigned key_bits, unsigned value_bits) const {
    const std::size_t k = bits_index(key_bits), v = bits_index(value_bits);
    return {isa,         quantize_key_group[k], quantize_value_token[v], attend_quantized[k][v],
            attend_full, dequantize_keys[k],    dequantize_values[v]};
  }
};

}  // namespace kernels
}  // namespace logquant
