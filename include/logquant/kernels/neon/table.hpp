// The NEON kernel table. NEON (Advanced SIMD) is mandatory on AArch64, so it is always supported
// where it is compiled; the ARMv8.2 dotprod extension is not, so the table's attention entry is
// the SDOT flavour or the ARMv8.0 baseline, chosen once here (vec.hpp, cpu_has_dotprod). Only
// dispatch.hpp includes this.
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_NEON_KERNELS
#include "../kernel_table.hpp"
#include "attention.hpp"
#include "quantize.hpp"

namespace logquant {
namespace neon {

/// True where the NEON kernels are compiled: every AArch64 CPU runs them.
inline bool supported() { return true; }

/// Attention reads the bit widths from the view (the NEON kernels predate the per-width table),
/// so every width pair gets the same entry.
inline const kernels::KernelTable& table() {
  static const kernels::KernelTable t = [] {
    const kernels::AttendQuantizedFn a = detail::best_attend_quantized();
    return kernels::KernelTable{
        Isa::kNeon,
        {&quantize_key_group<2>, &quantize_key_group<4>, &quantize_key_group<8>},
        {&quantize_value_token<2>, &quantize_value_token<4>, &quantize_value_token<8>},
        {{a, a, a}, {a, a, a}, {a, a, a}},
        &attend_full};
  }();
  return t;
}

}  // namespace neon
}  // namespace logquant

#endif  // LOGQUANT_HAVE_NEON_KERNELS
