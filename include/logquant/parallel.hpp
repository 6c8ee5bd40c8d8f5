// Multi-threaded decode attention. A decode step is split into chunks, each a range of KV heads and
// a range of cached tokens; each chunk fills its own partial softmax state, and the states are
// merged in chunk order at the end (attention_state.hpp). attend_parallel runs the chunks on
// std::threads; an engine with its own thread pool calls plan_chunks / attend_chunk /
// finalize_chunks itself, or passes its pool to attend_parallel as a callable.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "attention_state.hpp"
#include "error.hpp"
#include "kv_cache.hpp"
#include "quant/tile_layout.hpp"

namespace logquant {

/// One unit of parallel attention work: cached tokens [begin, end) (storage order, as
/// KVCache::attend_partial takes them) of KV heads [kv_begin, kv_end).
struct AttentionChunk {
  std::size_t kv_begin = 0, kv_end = 0;
  std::size_t begin = 0, end = 0;
};

namespace detail {
// Bytes attention reads per quantized and per full-precision token (all KV heads): the cost model
// that balances token ranges. Attention is bound by memory bandwidth, and a full-precision token
// costs about 13x a 2-bit one, so splitting by token count alone would leave the thread holding the
// FP block with ~10% more work at 16K context.
inline void token_costs(const CacheConfig& cfg, double& quantized, double& full) {
  const double dim = static_cast<double>(cfg.head_dim), heads = static_cast<double>(cfg.kv_heads);
  quantized = heads * (dim * (cfg.key_bits + cfg.value_bits) / 8.0 +
                       4.0 * dim / static_cast<double>(cfg.value_group));
  full = heads * dim * 8.0;
}
}  // namespace detail

/// Splits a decode step over `cache` into at most `parts` chunks of about equal cost (bytes read).
/// KV heads are split first: into g = gcd(parts, kv_heads) groups; each group's tokens are then cut
/// into parts / g ranges, with boundaries inside the quantized block on multiples of 16 (a value
/// tile is never split). Empty ranges are dropped, so a short cache may give fewer chunks than
/// `parts`. Chunks are ordered by KV-head group, then by token range. Throws when parts == 0 or the
/// cache is empty.
template <class Selector>
std::vector<AttentionChunk> plan_chunks(const KVCache<Selector>& cache, std::size_t parts) {
  detail::require(parts >= 1, "plan_chunks: parts must be >= 1");
  detail::require(cache.size() > 0, "plan_chunks: the cache is empty (append tokens first)");
  const CacheConfig& cfg = cache.config();
  const std::size_t head_groups = std::gcd(parts, cfg.kv_heads);
  const std::size_t token_parts = parts / head_groups;

  // Boundaries b_0 = 0 < ... < b_token_parts = attention_slots() (the quantized block's
  // positions, then the FP block: KVCache::attend_partial), by cost.
  const std::size_t nq = cache.quantized_block_size(), n = cache.attention_slots();
  double cq = 0, cf = 0;
  detail::token_costs(cfg, cq, cf);
  const double total = cq * static_cast<double>(nq) + cf * static_cast<double>(n - nq);
  std::vector<std::size_t> bounds{0};
  for (std::size_t i = 1; i < token_parts; ++i) {
    const double target = total * static_cast<double>(i) / static_cast<double>(token_parts);
    std::size_t b;
    if (target < cq * static_cast<double>(nq)) {
      // Nearest multiple of 16 inside the quantized block.
      const double t = target / cq;
      b = static_cast<std::size_t>(t / kTileCols + 0.5) * kTileCols;
      b = std::min(b, nq);
    } else {
      b = nq + static_cast<std::size_t>((target - cq * static_cast<double>(nq)) / cf + 0.5);
      b = std::min(b, n);
    }
    bounds.push_back(std::max(b, bounds.back()));
  }
  bounds.push_back(n);

  std::vector<AttentionChunk> chunks;
  const std::size_t heads_per_group = cfg.kv_heads / head_groups;
  for (std::size_t g = 0; g < head_groups; ++g)
    for (std::size_t i = 0; i + 1 < bounds.size(); ++i)
      if (bounds[i] < bounds[i + 1])
        chunks.push_back(AttentionChunk{g * heads_per_group, (g + 1) * heads_per_group, bounds[i],
                                        bounds[i + 1]});
  return chunks;
}

/// Attention over one chunk into `state` (reset to q_heads x head_dim first). Thread-safe: any
/// number of chunks of one cache may run at once, each with its own state, while nobody appends.
template <class Selector>
void attend_chunk(const KVCache<Selector>& cache, const float* queries, std::size_t q_heads,
                  float scale, const AttentionChunk& chunk, AttentionState& state) {
  cache.attend_partial(queries, q_heads, scale, chunk.begin, chunk.end, chunk.kv_begin,
                       chunk.kv_end, state);
}

/// Merges states[1..] into states[0] in order and writes the attention output [q_heads][head_dim].
/// The fixed order makes the result depend only on the chunk plan, not on thread timing.
inline void finalize_chunks(std::vector<AttentionState>& states, float* out) {
  detail::require(!states.empty(), "finalize_chunks: no states");
  for (std::size_t i = 1; i < states.size(); ++i) states[0].merge(states[i]);
  states[0].finalize(out);
}

/// Decode attention with an engine's own thread pool: `run(count, job)` must call job(i) once for
/// every i in [0, count), in any order and on any threads, and return when all calls have returned
/// (e.g. a parallel_for). The step is planned with plan_chunks(cache, parts), so it reads the same
/// as attend() up to float summation order.
template <class Selector, class Run>
void attend_parallel(const KVCache<Selector>& cache, const float* queries, std::size_t q_heads,
                     float* out, float scale, std::size_t parts, Run&& run) {
  detail::require(out != nullptr, "attend_parallel: out is null");
  const std::vector<AttentionChunk> chunks = plan_chunks(cache, parts);
  // Reused across steps (no allocation per step). The reference matters: a lambda naming a
  // thread_local directly would see the *running* thread's instance, not this one.
  thread_local std::vector<AttentionState> reused;
  std::vector<AttentionState>& states = reused;
  states.resize(chunks.size());
  std::vector<std::exception_ptr> errors(chunks.size());
  run(chunks.size(), [&](std::size_t i) {
    try {
      attend_chunk(cache, queries, q_heads, scale, chunks[i], states[i]);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  });
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  finalize_chunks(states, out);
}

/// Decode attention on `threads` threads (the caller's and threads - 1 new std::threads, started
/// and joined in this call). Results equal attend()'s up to float summation order (see
/// tests/test_parallel.cpp for the tolerance). Starting threads costs tens of microseconds per
/// call; an engine with a pool should use the overload above. Throws when threads == 0.
template <class Selector>
void attend_parallel(const KVCache<Selector>& cache, const float* queries, std::size_t q_heads,
                     float* out, float scale, std::size_t threads) {
  detail::require(threads >= 1, [&] {
    return "attend_parallel: threads = " + std::to_string(threads) + " (expected >= 1)";
  });
  attend_parallel(cache, queries, q_heads, out, scale, threads,
                  [](std::size_t count, const auto& job) {
                    std::vector<std::thread> pool;
                    pool.reserve(count > 0 ? count - 1 : 0);
                    for (std::size_t i = 1; i < count; ++i) pool.emplace_back(job, i);
                    if (count > 0) job(0);
                    for (std::thread& t : pool) t.join();
                  });
}

}  // namespace logquant
