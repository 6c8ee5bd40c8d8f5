// The AVX-VNNI kernel table and its CPU check (AVX2 + FMA + F16C + AVX-VNNI with YMM state; see
// x86_cpu.hpp): the AVX2 quantizers (no dot products there) and avxvnni's attention. Only
// dispatch.hpp includes this; it hands the table out only when supported().
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_X86_KERNELS
#include "../x86_cpu.hpp"
#if LOGQUANT_HAVE_AVXVNNI_KERNELS
#include "../avx2/quantize.hpp"
#include "../kernel_table.hpp"
#include "attention.hpp"

namespace logquant {
namespace avxvnni {

/// True when this CPU and OS run the AVX-VNNI kernels.
inline bool supported() { return kernels::x86_features().avx_vnni; }

inline const kernels::KernelTable& table() {
  static const kernels::KernelTable t{Isa::kAvxVnni, &avx2::quantize_key_group,
                                      &avx2::quantize_value_token, &attend_quantized, &attend_full};
  return t;
}

}  // namespace avxvnni
}  // namespace logquant

#endif  // LOGQUANT_HAVE_AVXVNNI_KERNELS
#endif  // LOGQUANT_HAVE_X86_KERNELS
