// Compiler and ISA detection. SIMD kernels are compiled with target attributes, not -m flags, so
// one binary carries AVX2 and AVX-512 code and still runs on a CPU without them; these macros say
// which kernel families this compiler can build at all. LOGQUANT_SCALAR_ONLY turns them all off.
#pragma once

#if !defined(LOGQUANT_SCALAR_ONLY)
#define LOGQUANT_SCALAR_ONLY 0
#endif

// LOGQUANT_SEPARATE_KERNELS=1 compiles the SIMD kernels in one translation unit instead of in
// every one that includes logquant (each such unit otherwise spends ~20 s of GCC -O2 on them, README):
// define it for every unit of the program (a target-wide compile definition), and in exactly one
// unit also define LOGQUANT_KERNELS_IMPLEMENTATION before including <logquant/logquant.hpp>.
// Leaving that unit out is a link error (undefined logquant::kernels::compiled_isas()). Mixing
// units with and without LOGQUANT_SEPARATE_KERNELS in one program is not supported.
#if !defined(LOGQUANT_SEPARATE_KERNELS)
#define LOGQUANT_SEPARATE_KERNELS 0
#endif

#if !LOGQUANT_SCALAR_ONLY && (defined(__x86_64__) || defined(_M_X64)) && \
    (defined(__GNUC__) || defined(__clang__))
#define LOGQUANT_HAVE_X86_KERNELS 1
#else
#define LOGQUANT_HAVE_X86_KERNELS 0
#endif

// NEON kernels: little-endian AArch64 with GCC or Clang (they read tile bytes as 32-bit lanes and
// use GNU vector initialisers and attributes).
#if !LOGQUANT_SCALAR_ONLY && defined(__aarch64__) && defined(__ARM_NEON) && \
    !defined(__AARCH64EB__) && (defined(__GNUC__) || defined(__clang__))
#define LOGQUANT_HAVE_NEON_KERNELS 1
#else
#define LOGQUANT_HAVE_NEON_KERNELS 0
#endif
// The NEON kernels on SDOT (ARMv8.2 dotprod), chosen at run time: with -march=...+dotprod, or by
// target attribute with GCC 10 and later. Clang before 17 declares the intrinsics only under
// __ARM_FEATURE_DOTPROD, so without that flag it builds the ARMv8.0 kernels alone.
#if LOGQUANT_HAVE_NEON_KERNELS && \
    (defined(__ARM_FEATURE_DOTPROD) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 10))
#define LOGQUANT_HAVE_NEON_DOTPROD_KERNELS 1
#else
#define LOGQUANT_HAVE_NEON_DOTPROD_KERNELS 0
#endif

// Fully unrolls a short loop with a compile-time trip count (heads of a block, vectors of a tile),
// so its per-iteration accumulators live in registers: GCC 12 at -O2 kept them in memory
// otherwise (measured: a 16K-token decode at Llama-3-8B shape went from 6.3 to 3.9 ms).
#if defined(__clang__)
#define LOGQUANT_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define LOGQUANT_UNROLL _Pragma("GCC unroll 16")
#else
#define LOGQUANT_UNROLL
#endif

#if defined(__GNUC__) || defined(__clang__)
#define LOGQUANT_RESTRICT __restrict__
#else
#define LOGQUANT_RESTRICT
#endif
