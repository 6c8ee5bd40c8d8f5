// The AVX-VNNI attention kernels (logquant::avxvnni): attention_body.hpp, the AVX2 kernels, with
// their u8 x s8 products on VEX vpdpbusd. Zen 5 guest, LogQuant 2-bit W = 42, Llama-3-8B shape:
// medians 0.85-0.88 of the AVX2 kernels' time in L2 (`bash scripts/ab_kernel.sh HEAD l2 4096 3000
// avxvnni:avx2`), 0.86-0.99 cold (docs/performance.md, "AVX-VNNI").
#pragma once

#include "../../config.hpp"
#include "../x86_cpu.hpp"

#if LOGQUANT_HAVE_X86_KERNELS && LOGQUANT_HAVE_AVXVNNI_KERNELS
#include "../avx2/attention.hpp"  // the avx2 variant first: its helpers are shared (vec.hpp)

#define LOGQUANT_AVX2_BODY_NS avxvnni
#define LOGQUANT_AVX2_BODY_TARGET LOGQUANT_TARGET_AVXVNNI
#define LOGQUANT_AVX2_BODY_INLINE inline __attribute__((always_inline)) LOGQUANT_TARGET_AVXVNNI
#define LOGQUANT_AVX2_BODY_VNNI 1
#include "../avx2/attention_body.hpp"
#endif
