// The benchmark's LOGQUANT_KERNELS_IMPLEMENTATION unit (config.hpp, LOGQUANT_SEPARATE_KERNELS):
// the SIMD kernels are compiled here once instead of in each of the suite's units. The kernels
// are reached through the same function-pointer tables either way, so the timings are the same
// code as a header-only build's.
#define LOGQUANT_KERNELS_IMPLEMENTATION
#include <logquant/kernels/dispatch.hpp>
