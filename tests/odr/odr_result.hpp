// What each translation unit of the ODR test computes. The test includes <logquant/logquant.hpp>
// in two translation units built with different flags and links them into one program; if a
// header defined something that is not inline, or let its behaviour depend on the flags a
// translation unit was built with, the link fails or the two answers below disagree.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

struct OdrResult {
  std::string isa;                        // kernels::default_table().isa, by name
  const void* table = nullptr;            // &kernels::default_table(): one per process
  std::vector<std::string> supported;     // kernels::supported_isas(), by name
  std::vector<std::size_t> fp_positions;  // LogSelector cache, then SinkSelector cache
  std::vector<std::size_t> quantized_positions;
  std::vector<std::size_t> sizes;         // size(), memory_bytes() of each cache
  std::vector<float> reconstructed;       // keys and values as attention sees them
  std::vector<float> attention;           // attend() outputs of both caches
};

OdrResult odr_run_plain();    // tu_plain.cpp: the enclosing build's flags
OdrResult odr_run_flagged();  // tu_flagged.cpp: extra flags (-mavx2 -mfma on x86-64)
