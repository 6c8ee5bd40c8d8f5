// Shared pieces of the benchmark suite: model shapes, the cache kinds compared, synthetic key and
// value data, the last-level-cache size that decides how many layers a "cold" benchmark rotates
// over, and a small spinning thread pool that stands in for an inference engine's own pool.
// Benchmark names are slash-separated key:value fields that scripts/bench_report.py parses.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <logquant/logquant.hpp>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace logquant_bench {

/// Attention geometry of one layer.
struct Shape {
  const char* name;
  std::size_t q_heads, kv_heads, head_dim;
};
/// Llama-3-8B: 32 query heads sharing 8 KV heads (GQA 4), head dim 128.
inline constexpr Shape kLlama3{"llama3-8b", 32, 8, 128};
/// The same heads at head dim 64 (small models: Llama-3.2-1B's GQA 4 with half-size heads).
inline constexpr Shape kHeadDim64{"hd64", 32, 8, 64};

/// The caches compared. Budgets follow the LogQuant paper: 128 full-precision tokens, so
/// LogQuant W = 42 (3W = 126) and KIVI R = 128 (an exact window); W = 48 is the nearest W that is a
/// multiple of 16, so its key groups need no row padding. kAccurate is the README's recommended
/// preset at the same budget: presets::accurate(head_dim, kv_heads, 128), 4-bit keys, 2-bit
/// values, sink 4 + the newest 124 tokens in full precision (an exact window).
enum class Kind {
  kFp32,
  kFp16,
  kFull,
  kLogQuant2W42,
  kLogQuant2W48,
  kKivi2,
  kLogQuant4W42,
  kAccurate
};
inline constexpr std::size_t kAccurateBudget = 128;

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kFp32: return "fp32";
    case Kind::kFp16: return "fp16";
    case Kind::kFull: return "full-kvcache";
    case Kind::kLogQuant2W42: return "logquant2-w42";
    case Kind::kLogQuant2W48: return "logquant2-w48";
    case Kind::kKivi2: return "kivi2-r128";
    case Kind::kLogQuant4W42: return "logquant4-w42";
    case Kind::kAccurate: return "accurate-k4v2";
  }
  return "?";
}
inline bool is_dense(Kind k) { return k == Kind::kFp32 || k == Kind::kFp16; }

inline logquant::CacheConfig config_for(const Shape& s, Kind k) {
  if (k == Kind::kAccurate)
    return logquant::presets::accurate(s.head_dim, s.kv_heads, kAccurateBudget).config;
  logquant::CacheConfig cfg;
  cfg.head_dim = s.head_dim;
  cfg.kv_heads = s.kv_heads;
  const unsigned bits = k == Kind::kLogQuant4W42 ? 4u : 2u;
  cfg.key_bits = cfg.value_bits = bits;
  return cfg;  // value_group 0: the library's default (64 at head dim 128)
}

/// Calls f(KVCache<Selector>) with a fresh cache of kind k (not a dense kind).
template <class F>
decltype(auto) with_cache(const Shape& s, Kind k, const logquant::kernels::KernelTable& table,
                          F&& f) {
  const logquant::CacheConfig cfg = config_for(s, k);
  switch (k) {
    case Kind::kLogQuant2W48:
      return f(logquant::KVCache<logquant::LogSelector>(cfg, logquant::LogSelector(48), table));
    case Kind::kKivi2:
      return f(logquant::KVCache<logquant::RecentSelector>(cfg, logquant::RecentSelector(128),
                                                           table));
    case Kind::kFull:
      return f(logquant::KVCache<logquant::FullSelector>(cfg, logquant::FullSelector(), table));
    case Kind::kAccurate:
      return f(logquant::KVCache<logquant::SinkSelector>(
          cfg, logquant::presets::accurate(s.head_dim, s.kv_heads, kAccurateBudget).selector,
          table));
    default:
      return f(logquant::KVCache<logquant::LogSelector>(cfg, logquant::LogSelector(42), table));
  }
}

/// Full-precision budget of a kind: the FP count at which the next append demotes.
inline std::size_t fp_budget(Kind k) {
  switch (k) {
    case Kind::kLogQuant2W48: return 3 * 48;
    case Kind::kKivi2: return 128;
    case Kind::kAccurate: return kAccurateBudget;
    case Kind::kFull: return 0;
    default: return 3 * 42;
  }
}
/// Tokens per demotion cycle (one demotion each); 16 for FullSelector, which never demotes.
inline std::size_t demotion_cycle(Kind k) {
  switch (k) {
    case Kind::kLogQuant2W48: return 48;
    case Kind::kKivi2: return 1;     // an exact window: every token demotes one
    case Kind::kAccurate: return 1;
    case Kind::kFull: return 16;
    default: return 42;
  }
}

/// Synthetic post-RoPE keys and values: a pool of `tokens` tokens, [tokens][kv_heads][head_dim].
/// Keys are N(0,1) plus a per-channel offset and a few outlier channels x8 (the structure that
/// makes per-channel key quantization matter); values N(0,1). Speed does not depend on the
/// numbers, but realistic ranges keep the softmax away from degenerate cases.
struct TokenPool {
  std::size_t tokens = 0, row = 0;
  std::vector<float> keys, values;

  TokenPool(const Shape& s, std::size_t n, unsigned seed = 1) : tokens(n), row(s.kv_heads * s.head_dim) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> offset(row), gain(row, 1.0f);
    for (std::size_t c = 0; c < row; ++c) {
      offset[c] = 0.5f * normal(rng);
      if (c % 37 == 5) gain[c] = 8.0f;
    }
    keys.resize(n * row);
    values.resize(n * row);
    for (std::size_t i = 0; i < n * row; ++i) {
      keys[i] = offset[i % row] + gain[i % row] * normal(rng);
      values[i] = normal(rng);
    }
  }
  const float* key(std::size_t t) const { return &keys[(t % tokens) * row]; }
  const float* value(std::size_t t) const { return &values[(t % tokens) * row]; }
};

/// Appends `n` tokens from the pool to any cache with append(keys, values, count), in pieces
/// that never wrap around the pool.
template <class Cache>
void fill(Cache& cache, const TokenPool& pool, std::size_t n, std::size_t first = 0) {
  for (std::size_t t = 0; t < n;) {
    const std::size_t start = (first + t) % pool.tokens;
    const std::size_t count = std::min(n - t, pool.tokens - start);
    cache.append(pool.key(start), pool.value(start), count);
    t += count;
  }
}

/// Bytes of the last-level cache (L3) that core 0 sees: LOGQUANT_BENCH_LLC_MIB if set, else sysfs,
/// else sysconf; 32 MiB if none says. sysfs before sysconf: on an AMD EPYC guest glibc's sysconf
/// reported 320 MiB (the whole socket's L3 across its CCDs) where the core's own L3 is 32 MiB,
/// which made the cold benchmarks build 10x the layers they need, so setting them up dominated
/// the suite. The override is for guests that show no cache in sysfs (a Zen 5 guest: sysconf
/// said 508 MiB, CPUID's cache leaves were empty), where only the operator knows the CCD's L3.
inline std::size_t llc_bytes() {
  if (const char* mib = std::getenv("LOGQUANT_BENCH_LLC_MIB")) {
    const long v = std::atol(mib);
    if (v > 0) return static_cast<std::size_t>(v) << 20;
  }
  std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index3/size");
  std::size_t kib = 0;
  if (f >> kib && kib > 0) return kib * 1024;
#ifdef _SC_LEVEL3_CACHE_SIZE
  const long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (v > 0) return static_cast<std::size_t>(v);
#endif
  return std::size_t{32} << 20;
}

/// Layers a cold benchmark rotates over: enough that their bytes are >= 3x the LLC (so each
/// layer's cache has been evicted by the time it comes round again, as in a real decode step that
/// also streams the model's weights), at least 2, at most 256.
inline std::size_t cold_layers(std::size_t bytes_per_layer) {
  const std::size_t want = 3 * llc_bytes();
  const std::size_t n = (want + bytes_per_layer - 1) / std::max<std::size_t>(bytes_per_layer, 1);
  return std::clamp<std::size_t>(n, 2, 256);
}

/// A fixed set of spinning worker threads, alive only while a benchmark runs: run(count, job)
/// calls job(i) for i in [0, count), index i on thread i % threads (thread 0 is the caller), and
/// returns when all are done. Spinning (not sleeping) between jobs is what engines' decode pools
/// do, so hand-off costs ~100 ns rather than a futex wake-up.
class SpinPool {
 public:
  explicit SpinPool(std::size_t threads) : threads_(std::max<std::size_t>(threads, 1)) {
    for (std::size_t w = 1; w < threads_; ++w) workers_.emplace_back([this, w] { work(w); });
  }
  ~SpinPool() {
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    for (std::thread& t : workers_) t.join();
  }
  SpinPool(const SpinPool&) = delete;
  SpinPool& operator=(const SpinPool&) = delete;

  std::size_t size() const { return threads_; }

  template <class Job>
  void run(std::size_t count, const Job& job) {
    job_ = &job;
    call_ = [](const void* j, std::size_t i) { (*static_cast<const Job*>(j))(i); };
    count_ = count;
    pending_.store(threads_ - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    for (std::size_t i = 0; i < count; i += threads_) job(i);
    while (pending_.load(std::memory_order_acquire) != 0) pause();
  }

 private:
  static void pause() {
#if defined(__x86_64__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
  }
  void work(std::size_t w) {
    std::uint64_t seen = 0;
    for (;;) {
      std::uint64_t g;
      while ((g = generation_.load(std::memory_order_acquire)) == seen) pause();
      seen = g;
      if (stop_.load(std::memory_order_acquire)) return;
      for (std::size_t i = w; i < count_; i += threads_) call_(job_, i);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::size_t threads_;
  std::vector<std::thread> workers_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::size_t> pending_{0};
  std::atomic<bool> stop_{false};
  const void* job_ = nullptr;
  void (*call_)(const void*, std::size_t) = nullptr;
  std::size_t count_ = 0;
};

/// Every ISA the library has kernels for on this CPU, best first.
inline std::vector<logquant::Isa> bench_isas() { return logquant::kernels::supported_isas(); }

}  // namespace logquant_bench
