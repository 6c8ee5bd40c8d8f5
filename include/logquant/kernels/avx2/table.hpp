// The AVX2 kernel table and the CPU check that guards it (AVX2 + FMA + F16C with YMM state; see
// x86_cpu.hpp). Only dispatch.hpp includes this; it hands the table out only when supported().
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_X86_KERNELS
#include "../kernel_table.hpp"
#include "../x86_cpu.hpp"
#include "attention.hpp"
#include "quantize.hpp"

namespace logquant {
namespace avx2 {

/// True when this CPU and OS run the AVX2 kernels.
inline bool supported() { return kernels::x86_features().avx2; }

inline const kernels::KernelTable& table() {
  static const kernels::KernelTable t{Isa::kAvx2, &quantize_key_group, &quantize_value_token,
                                      &attend_quantized, &attend_full};
  return t;
}

}  // namespace avx2
}  // namespace logquant

#endif  // LOGQUANT_HAVE_X86_KERNELS
