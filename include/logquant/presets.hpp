// Named starting configurations: a CacheConfig and a selector chosen from measurements
// (docs/accuracy.md), so a user picks one line instead of five knobs. `accurate` is the most
// accurate cache we measured at a given memory; `logquant` is the paper's method exactly as
// specified (SPEC §1), for comparison and reproduction.
#pragma once

#include <cstddef>
#include <string>

#include "error.hpp"
#include "kv_cache.hpp"
#include "selector/log_selector.hpp"
#include "selector/sink_selector.hpp"

namespace logquant {
namespace presets {

/// A cache configuration and its selector; build the cache with
/// `KVCache<decltype(p.selector)> cache(p.config, p.selector);`.
template <class Selector>
struct Preset {
  CacheConfig config;
  Selector selector;
};

/// Attention-sink tokens kept by `accurate` (StreamingLLM's choice; position 0 is the one that
/// matters most).
inline constexpr std::size_t kAccurateSink = 4;

/// The most accurate cache per byte we measured: 4-bit keys, 2-bit values, the first 4 tokens and
/// an exact recent window in full precision (the window slides one token at a time; the storage
/// groups keys by position). `full_precision` is the FP tokens held once the window has filled
/// (sink included, >= kAccurateSink + 1). Keys cause almost all of 2-bit quantization's error; the
/// 2 extra bits per key cost less memory than the FP tokens a 2-bit cache needs to reach the same
/// accuracy (docs/accuracy.md, "Equal memory").
inline Preset<SinkSelector> accurate(std::size_t head_dim, std::size_t kv_heads,
                                     std::size_t full_precision) {
  detail::require(full_precision >= kAccurateSink + 1, [&] {
    return "presets::accurate: full_precision = " + std::to_string(full_precision) +
           " (expected >= " + std::to_string(kAccurateSink + 1) + ")";
  });
  CacheConfig cfg;
  cfg.head_dim = head_dim;
  cfg.kv_heads = kv_heads;
  cfg.key_bits = 4;
  cfg.value_bits = 2;
  return {cfg, SinkSelector(kAccurateSink, full_precision - kAccurateSink)};
}

/// LogQuant as the paper specifies it: 2-bit keys and values, budget 3W (SPEC §1).
inline Preset<LogSelector> logquant(std::size_t head_dim, std::size_t kv_heads,
                                    std::size_t window) {
  CacheConfig cfg;
  cfg.head_dim = head_dim;
  cfg.kv_heads = kv_heads;
  cfg.key_bits = 2;
  cfg.value_bits = 2;
  return {cfg, LogSelector(window)};
}

}  // namespace presets
}  // namespace logquant
