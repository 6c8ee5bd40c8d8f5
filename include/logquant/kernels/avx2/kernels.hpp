// The AVX2 kernels: kernels/generic/ compiled over avx2/vec.hpp, and their table. Only
// dispatch.hpp includes this; it hands the table out only when supported().
#pragma once

#include "../../config.hpp"
#include "../x86_cpu.hpp"

#if LOGQUANT_HAVE_X86_KERNELS
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

#define LOGQUANT_KERNEL LOGQUANT_TARGET_AVX2
#define LOGQUANT_KERNEL_INLINE LOGQUANT_AVX2_INLINE

LOGQUANT_X86_KERNELS_BEGIN

namespace logquant {
namespace avx2 {
#include "../generic/attention.hpp"
#include "../generic/dequantize.hpp"
#include "../generic/quantize.hpp"
#include "../generic/table.hpp"
}  // namespace avx2
}  // namespace logquant

LOGQUANT_X86_KERNELS_END

#undef LOGQUANT_KERNEL
#undef LOGQUANT_KERNEL_INLINE
#endif
