// The SIMD kernels of every test program but test_kernels and test_neon, compiled once: this is
// the program's LOGQUANT_KERNELS_IMPLEMENTATION unit (config.hpp, LOGQUANT_SEPARATE_KERNELS).
// Each unit that compiles the kernels itself spends ~25 s of GCC -O2 on them; without this, the
// suite's build did that in every test file.
#define LOGQUANT_KERNELS_IMPLEMENTATION
#include <logquant/kernels/dispatch.hpp>
