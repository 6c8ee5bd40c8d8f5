// The AVX-512 kernel table and the CPU check that guards it (see x86_cpu.hpp for what "avx512"
// requires). Only dispatch.hpp includes this; it hands the table out only when supported() holds.
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_X86_KERNELS
#include "../kernel_table.hpp"
#include "../x86_cpu.hpp"
#include "attention.hpp"
#include "quantize.hpp"

namespace logquant {
namespace avx512 {

/// True when this CPU and OS run the AVX-512 kernels (F/BW/VL/DQ + VNNI, ZMM state enabled).
inline bool supported() { return kernels::x86_features().avx512_vnni; }

inline const kernels::KernelTable& table() {
  static const kernels::KernelTable t{Isa::kAvx512, &quantize_key_group, &quantize_value_token,
                                      &attend_quantized, &attend_full};
  return t;
}

}  // namespace avx512
}  // namespace logquant

#endif  // LOGQUANT_HAVE_X86_KERNELS
