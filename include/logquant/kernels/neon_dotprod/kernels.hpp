// The NEON dotprod kernels: kernels/generic/ compiled over neon_dotprod/vec.hpp, and their table.
// Only dispatch.hpp includes this; it hands the table out only when supported().
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_NEON_DOTPROD_KERNELS
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../../quant/tile_layout.hpp"
#include "../common.hpp"
#include "../kernel_table.hpp"
#include "../views.hpp"
#include "vec.hpp"

#define LOGQUANT_KERNEL LOGQUANT_TARGET_NEON_DOTPROD
#define LOGQUANT_KERNEL_INLINE LOGQUANT_NEON_DOTPROD_INLINE

namespace logquant {
namespace neon_dotprod {
#include "../generic/attention.hpp"
#include "../generic/dequantize.hpp"
#include "../generic/quantize.hpp"
#include "../generic/table.hpp"
}  // namespace neon_dotprod
}  // namespace logquant

#undef LOGQUANT_KERNEL
#undef LOGQUANT_KERNEL_INLINE
#endif
