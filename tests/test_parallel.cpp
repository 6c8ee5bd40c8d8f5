// Multi-threaded decode attention (parallel.hpp): the chunk plan covers every (KV head, token) pair
// exactly once on legal boundaries, any thread count gives attend()'s answer up to float summation
// order, an engine's pool gives the std::thread helper's answer bit for bit, and bad arguments
// throw. Run for every ISA this CPU supports.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include <logquant/logquant.hpp>
#include <logquant/parallel.hpp>

namespace {

using logquant::AttentionChunk;
using logquant::AttentionState;
using logquant::CacheConfig;
using logquant::InvalidArgument;
using logquant::Isa;
using logquant::KVCache;

std::vector<float> random_floats(std::size_t n, std::mt19937& rng, float sd) {
  std::normal_distribution<float> dist(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

template <class Selector>
KVCache<Selector> filled_cache(const CacheConfig& cfg, Selector sel, std::size_t tokens, Isa isa,
                               unsigned seed) {
  KVCache<Selector> cache(cfg, std::move(sel), logquant::kernels::table_for(isa));
  std::mt19937 rng(seed);
  const std::size_t row = cfg.kv_heads * cfg.head_dim;
  // Keys with larger spread than values so the softmax is peaked, as real attention often is.
  const std::vector<float> keys = random_floats(tokens * row, rng, 2.0f);
  const std::vector<float> values = random_floats(tokens * row, rng, 1.0f);
  // Appended in uneven pieces, like a prefill followed by decode steps.
  for (std::size_t t = 0; t < tokens;) {
    const std::size_t n = std::min<std::size_t>(tokens - t, t < tokens / 2 ? 97 : 1);
    cache.append(&keys[t * row], &values[t * row], n);
    t += n;
  }
  return cache;
}

// The largest |a - b| over all elements, relative to the largest |b| (outputs are averages of
// values, so their scale is the values' scale).
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

// Tolerance against attend(). Splitting the cache changes two things, both rounding only:
// (1) float summation order of the softmax sums and of acc (and the merge's exp rescaling): a few
//     float ulps per term, ~1e-6 relative;
// (2) in the quantized kernels, each 16-token value tile's softmax weights are scaled to int8 by
//     the tile maximum p_j = exp(s_j - m), where m is the running maximum of the part; with another
//     m the p_j of a tile differ by a common factor times a rounding, so a weight that sits on a
//     rounding tie of the int8 grid can round the other way: an error of at most one int8 step
//     (1/254 of the tile's largest weight) on one token, which the softmax then dilutes.
// Measured over these caches, thread counts 1..8 and the scalar, AVX2 and AVX-512 kernels: at most
// 4.6e-6 relative. The tolerance, 2e-5, leaves 4x room; dropping a single token moves the output of
// these caches by 8e-4 or more (checked below), so the test still catches a lost or doubled chunk.
constexpr double kTolerance = 2e-5;

class Parallel : public ::testing::TestWithParam<Isa> {};

template <class Selector>
void check_thread_counts(const CacheConfig& cfg, Selector sel, std::size_t tokens,
                         std::size_t q_heads, Isa isa) {
  const KVCache<Selector> cache = filled_cache(cfg, std::move(sel), tokens, isa, 7);
  std::mt19937 rng(11);
  const std::vector<float> q = random_floats(q_heads * cfg.head_dim, rng, 1.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(cfg.head_dim));
  std::vector<float> ref(q.size()), out(q.size());
  cache.attend(q.data(), q_heads, ref.data(), scale);

  // One token dropped moves the output by far more than the tolerance (so the check can fail).
  {
    AttentionState st;
    cache.attend_partial(q.data(), q_heads, scale, 0, cache.attention_slots() - 1, st);
    std::vector<float> partial(q.size());
    st.finalize(partial.data());
    EXPECT_GT(max_rel_diff(partial, ref), 10 * kTolerance) << "test cannot tell a dropped token";
  }

  for (std::size_t threads = 1; threads <= 8; ++threads) {
    std::fill(out.begin(), out.end(), 0.0f);
    logquant::attend_parallel(cache, q.data(), q_heads, out.data(), scale, threads);
    EXPECT_LE(max_rel_diff(out, ref), kTolerance) << "threads = " << threads;

    // An engine's pool running the same plan, chunks in reverse order on one thread: the same
    // plan and merge order, so the same bits as the std::thread helper.
    std::vector<float> pooled(q.size());
    logquant::attend_parallel(cache, q.data(), q_heads, pooled.data(), scale, threads,
                              [](std::size_t count, const auto& job) {
                                for (std::size_t i = count; i-- > 0;) job(i);
                              });
    EXPECT_EQ(pooled, out) << "threads = " << threads;
  }
}

TEST_P(Parallel, LogQuantAnyThreadCountMatchesAttend) {
  CacheConfig cfg;
  cfg.head_dim = 64;
  cfg.kv_heads = 4;
  check_thread_counts(cfg, logquant::LogSelector(8), 1000, 8, GetParam());
}

TEST_P(Parallel, FourBitAndOddShapesMatchAttend) {
  CacheConfig cfg;
  cfg.head_dim = 48;
  cfg.kv_heads = 3;
  cfg.key_bits = 4;
  cfg.value_bits = 4;
  check_thread_counts(cfg, logquant::LogSelector(5), 333, 6, GetParam());
}

TEST_P(Parallel, RecentAndFullSelectorsMatchAttend) {
  CacheConfig cfg;
  cfg.head_dim = 32;
  cfg.kv_heads = 2;
  check_thread_counts(cfg, logquant::RecentSelector(64), 700, 4, GetParam());
  check_thread_counts(cfg, logquant::FullSelector(), 300, 2, GetParam());
}

TEST_P(Parallel, ShortCacheGivesFewerChunksAndStillMatches) {
  CacheConfig cfg;
  cfg.head_dim = 32;
  cfg.kv_heads = 1;
  check_thread_counts(cfg, logquant::LogSelector(2), 3, 1, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Isas, Parallel, ::testing::ValuesIn(logquant::kernels::supported_isas()),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(logquant::isa_name(info.param));
                         });

TEST(PlanChunks, CoversEveryHeadAndTokenOnceOnLegalBoundaries) {
  CacheConfig cfg;
  cfg.head_dim = 32;
  cfg.kv_heads = 8;
  const auto cache = filled_cache(cfg, logquant::LogSelector(10), 2000, Isa::kScalar, 3);
  const std::size_t nq = cache.quantized_block_size(), slots = cache.attention_slots();
  ASSERT_GT(nq, 0u);
  for (std::size_t parts = 1; parts <= 24; ++parts) {
    const std::vector<AttentionChunk> chunks = logquant::plan_chunks(cache, parts);
    ASSERT_FALSE(chunks.empty());
    EXPECT_LE(chunks.size(), parts);
    std::vector<int> seen(cfg.kv_heads * slots, 0);
    for (const AttentionChunk& c : chunks) {
      ASSERT_LT(c.kv_begin, c.kv_end);
      ASSERT_LE(c.kv_end, cfg.kv_heads);
      ASSERT_LT(c.begin, c.end);
      ASSERT_LE(c.end, slots);
      for (std::size_t b : {c.begin, c.end})
        EXPECT_TRUE(b >= nq || b % 16 == 0) << "boundary " << b << " inside the quantized block";
      for (std::size_t h = c.kv_begin; h < c.kv_end; ++h)
        for (std::size_t t = c.begin; t < c.end; ++t) ++seen[h * slots + t];
    }
    EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }))
        << "parts = " << parts;
  }
  // Two parts of an 8-head cache split the heads, not the tokens; three parts split the tokens.
  const auto two = logquant::plan_chunks(cache, 2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].kv_end, 4u);
  EXPECT_EQ(two[0].end, slots);
  const auto three = logquant::plan_chunks(cache, 3);
  ASSERT_EQ(three.size(), 3u);
  EXPECT_EQ(three[0].kv_end, 8u);
}

TEST(PlanChunks, BalancesBytesNotTokens) {
  // A 2-bit token costs far less than a full-precision one, so the token split of two parts over
  // one KV head puts more than half of the tokens in the first (mostly quantized) part.
  CacheConfig cfg;
  cfg.head_dim = 64;
  cfg.kv_heads = 1;
  const auto cache = filled_cache(cfg, logquant::LogSelector(64), 1500, Isa::kScalar, 5);
  const auto chunks = logquant::plan_chunks(cache, 2);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_GT(chunks[0].end, cache.size() / 2 + 16);
}

TEST(ParallelArguments, BadArgumentsThrow) {
  CacheConfig cfg;
  cfg.head_dim = 32;
  cfg.kv_heads = 2;
  const auto cache = filled_cache(cfg, logquant::LogSelector(4), 100, Isa::kScalar, 9);
  std::vector<float> q(4 * 32, 0.5f), out(4 * 32);
  EXPECT_THROW(logquant::attend_parallel(cache, q.data(), 4, out.data(), 1.0f, 0), InvalidArgument);
  EXPECT_THROW(logquant::attend_parallel(cache, q.data(), 4, nullptr, 1.0f, 2), InvalidArgument);
  EXPECT_THROW(logquant::attend_parallel(cache, nullptr, 4, out.data(), 1.0f, 2), InvalidArgument);
  EXPECT_THROW(logquant::attend_parallel(cache, q.data(), 3, out.data(), 1.0f, 2), InvalidArgument);
  q[5] = std::nanf("");
  EXPECT_THROW(logquant::attend_parallel(cache, q.data(), 4, out.data(), 1.0f, 2), InvalidArgument);
  q[5] = 0.5f;
  EXPECT_THROW(logquant::plan_chunks(cache, 0), InvalidArgument);

  KVCache<logquant::LogSelector> empty(cfg, logquant::LogSelector(4));
  EXPECT_THROW(logquant::plan_chunks(empty, 2), InvalidArgument);
  EXPECT_THROW(logquant::attend_parallel(empty, q.data(), 4, out.data(), 1.0f, 2), InvalidArgument);

  AttentionState st;
  EXPECT_THROW(cache.attend_partial(q.data(), 4, 1.0f, 0, 16, 1, 1, st), InvalidArgument);
  EXPECT_THROW(cache.attend_partial(q.data(), 4, 1.0f, 0, 16, 0, 3, st), InvalidArgument);
  EXPECT_THROW(cache.attend_partial(q.data(), 4, 1.0f, 0, 16, 2, 1, st), InvalidArgument);
  EXPECT_NO_THROW(cache.attend_partial(q.data(), 4, 1.0f, 0, 16, 1, 2, st));
}

}  // namespace
