// The scalar kernels' table: the specification every other ISA's table is tested against, and
// the fallback dispatch always has.
#pragma once

#include "../kernel_table.hpp"
#include "attention.hpp"
#include "dequantize.hpp"
#include "quantize.hpp"

namespace logquant {
namespace scalar {
inline constexpr Isa kIsa = Isa::kScalar;
#include "../generic/table.hpp"
}  // namespace scalar

namespace kernels {
inline const KernelTable& scalar_table() { return scalar::table(); }
}  // namespace kernels
}  // namespace logquant
