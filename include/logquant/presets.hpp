// Named starting configurations: a CacheConfig and a selector chosen from measurements
// (docs/accuracy.md), so a user picks one line instead of five knobs. `accurate` uses 4-bit keys,
// far more accurate per byte than 2-bit keys in our measurements; `logquant` is the paper's method
// exactly as specified (SPEC §1), for comparison and reproduction.
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

/// Positions per key group in `accurate` (the library default, pinned here): a recent window
/// (full_precision - kAccurateSink) of at least 31 contains the open key group, so the cache holds
/// exactly `full_precision` FP tokens. For this shape with 4-bit keys, groups of 16 and 32 were
/// within 0.0003 nats of each other at equal memory (docs/accuracy.md).
inline constexpr std::size_t kAccurateKeyGroup = 32;

/// 4-bit keys in aligned groups of 32 positions, 2-bit values, the first 4 tokens and an exact
/// recent window in full precision. `full_precision` is the FP tokens the selector holds once the
/// window has filled (sink included, >= kAccurateSink + 1); a window shorter than
/// kAccurateKeyGroup - 1 also holds up to kAccurateKeyGroup - 1 tokens of the open key group.
/// Why: keys cause almost all of 2-bit quantization's error. On the development model every
/// 4-bit-key cache had several times lower KL than every 2-bit one of the same bytes, and among
/// 4-bit-key caches the selector and key group mattered far less (docs/accuracy.md).
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
  cfg.key_group = kAccurateKeyGroup;
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
