// The NEON (ARMv8.0) kernels: kernels/generic/ compiled over neon/vec.hpp, and their table.
// Only dispatch.hpp includes this; it hands the table out only when supported().
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_NEON_KERNELS
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

#define LOGQUANT_KERNEL LOGQUANT_TARGET_NEON
#define LOGQUANT_KERNEL_INLINE LOGQUANT_NEON_INLINE

namespace logquant {
namespace neon {
#include "../generic/attention.hpp"
#include "../generic/dequantize.hpp"
#include "../generic/quantize.hpp"
#include "../generic/table.hpp"
}  // namespace neon
}  // namespace logquant

#undef LOGQUANT_KERNEL
#undef LOGQUANT_KERNEL_INLINE
#endif
