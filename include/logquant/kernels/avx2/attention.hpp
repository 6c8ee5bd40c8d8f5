// The AVX2 attention kernels (logquant::avx2): attention_body.hpp with vpmaddubsw + vpmaddwd.
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_X86_KERNELS
#include "vec.hpp"

#define LOGQUANT_AVX2_BODY_NS avx2
#define LOGQUANT_AVX2_BODY_TARGET LOGQUANT_TARGET_AVX2
#define LOGQUANT_AVX2_BODY_INLINE LOGQUANT_AVX2_INLINE
#define LOGQUANT_AVX2_BODY_VNNI 0
#include "attention_body.hpp"
#endif  // LOGQUANT_HAVE_X86_KERNELS
