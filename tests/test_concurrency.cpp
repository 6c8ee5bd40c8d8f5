// The concurrency contract of KVCache (kv_cache.hpp): any number of threads may call const members
// (attend, attend_partial, save, memory, reconstruct) of a cache no thread is appending to, and get
// exactly the single-threaded answers; separate caches may be appended to from separate threads.
// CI also runs this file under ThreadSanitizer (.ci/run, stage tsan), which reports any data race.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <logquant/logquant.hpp>

namespace {

using namespace logquant;

constexpr std::size_t kThreads = 8;

CacheConfig config() {
  CacheConfig cfg;
  cfg.head_dim = 48;
  cfg.kv_heads = 2;
  return cfg;
}

std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

template <class S>
KVCache<S> filled(S selector, std::size_t n, std::uint32_t seed,
                  const kernels::KernelTable& table = kernels::default_table()) {
  const CacheConfig cfg = config();
  KVCache<S> c(cfg, std::move(selector), table);
  const std::size_t row = cfg.kv_heads * cfg.head_dim;
  const std::vector<float> k = random_floats(n * row, seed), v = random_floats(n * row, seed + 1);
  c.append(k.data(), v.data(), n);
  return c;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Runs body(thread index) on kThreads threads at once and joins them.
template <class Body>
void on_threads(Body body) {
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < kThreads; ++t) threads.emplace_back(body, t);
  for (std::thread& t : threads) t.join();
}

// Every thread attends with its own queries (and GQA shapes) many times; each answer must equal,
// bit for bit, the one computed on the main thread before the threads started.
template <class S>
void check_concurrent_attend(const KVCache<S>& cache) {
  const std::size_t dim = cache.config().head_dim, kv = cache.config().kv_heads;
  std::vector<std::vector<float>> q(kThreads), expected(kThreads);
  for (std::size_t t = 0; t < kThreads; ++t) {
    const std::size_t q_heads = kv * (1 + t % 3);
    q[t] = random_floats(q_heads * dim, 100 + static_cast<std::uint32_t>(t));
    expected[t].resize(q_heads * dim);
    cache.attend(q[t].data(), q_heads, expected[t].data(), 0.15f);
  }
  std::vector<int> mismatches(kThreads, 0);
  on_threads([&](std::size_t t) {
    const std::size_t q_heads = q[t].size() / dim;
    std::vector<float> out(q_heads * dim);
    for (int i = 0; i < 40; ++i) {
      cache.attend(q[t].data(), q_heads, out.data(), 0.15f);
      if (!same_bits(out, expected[t])) ++mismatches[t];
    }
  });
  for (std::size_t t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

// Every kernel table this CPU runs: each keeps its own scratch, which must be per thread.
TEST(Concurrency, ManyThreadsAttendEverySelectorAndTable) {
  for (Isa isa : kernels::supported_isas()) {
    SCOPED_TRACE(isa_name(isa));
    const kernels::KernelTable& table = kernels::table_for(isa);
    check_concurrent_attend(filled(LogSelector(8), 300, 1, table));
    check_concurrent_attend(filled(SinkSelector(4, 40), 300, 2, table));
    check_concurrent_attend(filled(RecentSelector(40), 300, 3, table));
    check_concurrent_attend(filled(FullSelector(), 100, 4, table));
  }
}

// Threads split one attention by token range (tile-aligned), each into its own state; the merged
// state equals the same split merged on one thread.
TEST(Concurrency, PartialAttentionPerThreadMerges) {
  const auto cache = filled(LogSelector(16), 500, 5);
  const std::size_t dim = cache.config().head_dim, q_heads = 2 * cache.config().kv_heads;
  const std::vector<float> q = random_floats(q_heads * dim, 6);
  const std::size_t nq = cache.quantized_block_size(), per = (nq / kThreads) / 16 * 16;
  auto range = [&](std::size_t t) {
    const std::size_t begin = t * per;
    return std::make_pair(begin, t + 1 == kThreads ? cache.attention_slots() : begin + per);
  };
  std::vector<AttentionState> parts(kThreads), serial(kThreads);
  for (std::size_t t = 0; t < kThreads; ++t)
    cache.attend_partial(q.data(), q_heads, 0.15f, range(t).first, range(t).second, serial[t]);
  on_threads([&](std::size_t t) {
    cache.attend_partial(q.data(), q_heads, 0.15f, range(t).first, range(t).second, parts[t]);
  });
  for (std::size_t t = 1; t < kThreads; ++t) {
    parts[0].merge(parts[t]);
    serial[0].merge(serial[t]);
  }
  EXPECT_TRUE(same_bits(parts[0].acc, serial[0].acc));
  EXPECT_TRUE(same_bits(parts[0].sum, serial[0].sum));
}

// save, memory and reconstruct are const too: running them while other threads attend is allowed.
TEST(Concurrency, SaveAndInspectWhileOthersAttend) {
  const auto cache = filled(SinkSelector(4, 40), 200, 7);
  std::ostringstream reference;
  cache.save(reference);
  const std::size_t dim = cache.config().head_dim, kv = cache.config().kv_heads;
  const std::vector<float> q = random_floats(kv * dim, 8);
  std::vector<float> expected(kv * dim);
  cache.attend(q.data(), kv, expected.data(), 0.2f);
  std::vector<int> bad(kThreads, 0);
  on_threads([&](std::size_t t) {
    for (int i = 0; i < 10; ++i) {
      if (t % 2 == 0) {
        std::ostringstream out;
        cache.save(out);
        if (out.str() != reference.str()) ++bad[t];
        if (cache.memory().total() != cache.memory_bytes()) ++bad[t];
        std::vector<float> k(cache.size() * kv * dim), v(k.size());
        cache.reconstruct(k.data(), v.data());
      } else {
        std::vector<float> out(kv * dim);
        cache.attend(q.data(), kv, out.data(), 0.2f);
        if (!same_bits(out, expected)) ++bad[t];
      }
    }
  });
  for (std::size_t t = 0; t < kThreads; ++t) EXPECT_EQ(bad[t], 0) << "thread " << t;
}

// Appends need exclusive access to their cache, but separate caches share nothing: each thread
// builds its own, and the results equal caches built one after another.
TEST(Concurrency, SeparateCachesAppendInParallel) {
  std::vector<std::string> parallel(kThreads), serial(kThreads);
  auto build = [](std::size_t t) {
    const auto c = filled(LogSelector(4 + t), 150 + 10 * t, 20 + static_cast<std::uint32_t>(t));
    std::ostringstream out;
    c.save(out);
    return out.str();
  };
  for (std::size_t t = 0; t < kThreads; ++t) serial[t] = build(t);
  on_threads([&](std::size_t t) { parallel[t] = build(t); });
  for (std::size_t t = 0; t < kThreads; ++t) EXPECT_EQ(parallel[t], serial[t]) << "thread " << t;
}

// A cache built on one thread is handed to others (the usual pattern: append on the engine's
// thread, then attend from workers once appends stop) and loaded copies attend the same.
TEST(Concurrency, LoadedCopiesAttendConcurrently) {
  const auto original = filled(LogSelector(8), 250, 30);
  std::stringstream bytes;
  original.save(bytes);
  const std::string saved = bytes.str();
  const std::size_t dim = original.config().head_dim, kv = original.config().kv_heads;
  const std::vector<float> q = random_floats(kv * dim, 31);
  std::vector<float> expected(kv * dim);
  original.attend(q.data(), kv, expected.data(), 0.2f);
  std::vector<int> bad(kThreads, 0);
  on_threads([&](std::size_t t) {
    std::istringstream in(saved);
    const auto copy = KVCache<LogSelector>::load(in);
    std::vector<float> out(kv * dim);
    copy.attend(q.data(), kv, out.data(), 0.2f);
    if (!same_bits(out, expected)) ++bad[t];
    original.attend(q.data(), kv, out.data(), 0.2f);
    if (!same_bits(out, expected)) ++bad[t];
  });
  for (std::size_t t = 0; t < kThreads; ++t) EXPECT_EQ(bad[t], 0) << "thread " << t;
}

}  // namespace
