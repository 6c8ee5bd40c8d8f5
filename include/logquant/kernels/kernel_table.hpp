// The kernel table: one struct of function pointers per ISA, filled once at start-up by dispatch.hpp
// and held by each cache. Kernels take views (pointers and sizes), never vector types, so the
// dispatch boundary sits here, above every loop.
#pragma once

#include <cstddef>
#include <cstdint>

#include "scalar/attention.hpp"
#include "scalar/quantize.hpp"
#include "views.hpp"

namespace logquant {

/// Instruction sets logquant has kernels for. kAvxVnni: the AVX2 kernels with VEX vpdpbusd
/// (AVX-VNNI CPUs without AVX-512, e.g. Intel client cores since Alder Lake).
enum class Isa { kScalar, kAvx2, kAvx512, kNeon, kAvxVnni };

/// The name LOGQUANT_ISA uses for an ISA: "scalar", "avx2", "avxvnni", "avx512" or "neon".
inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvxVnni: return "avxvnni";
    case Isa::kAvx512: return "avx512";
    case Isa::kNeon: return "neon";
  }
  return "unknown";
}

namespace kernels {

struct KernelTable {
  Isa isa;
  void (*quantize_key_group)(const float* x, std::size_t tokens, std::size_t head_dim,
                             std::size_t row_stride, unsigned bits, GroupParams* meta,
                             std::uint8_t* tiles);
  void (*quantize_value_token)(const float* x, std::size_t head_dim, std::size_t group,
                               unsigned bits, std::size_t dense, GroupParams* meta,
                               std::uint8_t* tiles);
  void (*attend_quantized)(const QuantizedHeadView& v, const float* q, std::size_t begin,
                           std::size_t end, StateView st);
  void (*attend_full)(const FullHeadView& v, const float* q, StateView st);
};

inline const KernelTable& scalar_table() {
  static const KernelTable table{Isa::kScalar, &scalar::quantize_key_group,
                                 &scalar::quantize_value_token, &scalar::attend_quantized,
                                 &scalar::attend_full};
  return table;
}

}  // namespace kernels
}  // namespace logquant
