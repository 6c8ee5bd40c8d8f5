// The LOGQUANT_KERNELS_IMPLEMENTATION unit of this project's own programs (the tests but
// test_kernels and test_neon, the fuzz replays, the benchmark): the SIMD kernels are compiled
// here once instead of in each of their units (config.hpp, LOGQUANT_SEPARATE_KERNELS). The
// kernels are reached through the same function-pointer tables as in a header-only build, so the
// benchmark times the same code.
#define LOGQUANT_KERNELS_IMPLEMENTATION
#include <logquant/kernels/dispatch.hpp>
