// presets.hpp: each preset builds a working cache with the documented geometry, reproduces exact
// attention while its budget covers every token, and rejects budgets it cannot honour.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <logquant/logquant.hpp>

namespace {

std::vector<float> gaussian(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

TEST(Presets, AccurateGeometry) {
  const auto p = logquant::presets::accurate(128, 8, 96);
  EXPECT_EQ(p.config.head_dim, 128u);
  EXPECT_EQ(p.config.kv_heads, 8u);
  EXPECT_EQ(p.config.key_bits, 4u);
  EXPECT_EQ(p.config.value_bits, 2u);
  EXPECT_EQ(p.config.key_group, 32u);
  EXPECT_EQ(p.selector.sink(), logquant::presets::kAccurateSink);
  EXPECT_EQ(p.selector.recent(), 96u - logquant::presets::kAccurateSink);
  EXPECT_THROW(logquant::presets::accurate(128, 8, 4), logquant::InvalidArgument);
  EXPECT_EQ(logquant::presets::accurate(128, 8, 5).selector.recent(), 1u);  // the smallest window
  const auto l = logquant::presets::logquant(128, 8, 32);
  EXPECT_EQ(l.config.key_bits, 2u);
  EXPECT_EQ(l.selector.capacity(), 96u);
}

// While nothing is demoted, the cache is exact; past the budget the FP set is exactly the sink and
// the newest budget - 4 tokens (the window is longer than a key group, so the open group adds
// none), and memory is below fp32.
TEST(Presets, AccurateCacheIsExactUntilFullAndBoundedAfter) {
  const std::size_t dim = 64, kv = 2, qh = 4, budget = 48;
  const std::size_t sink = logquant::presets::kAccurateSink;
  const auto p = logquant::presets::accurate(dim, kv, budget);
  logquant::KVCache<logquant::SinkSelector> cache(p.config, p.selector);
  const auto k = gaussian(400 * kv * dim, 1), v = gaussian(400 * kv * dim, 2);
  const auto q = gaussian(qh * dim, 3);
  cache.append(k.data(), v.data(), budget);
  std::vector<float> out(qh * dim);
  cache.attend(q.data(), qh, out.data(), 0.125f);
  for (std::size_t h = 0; h < qh; ++h) {
    const std::size_t g = h / (qh / kv);
    std::vector<double> s(budget);
    double m = -1e300, sum = 0;
    for (std::size_t t = 0; t < budget; ++t) {
      double d = 0;
      for (std::size_t c = 0; c < dim; ++c) d += double(q[h * dim + c]) * k[(t * kv + g) * dim + c];
      m = std::max(m, s[t] = 0.125 * d);
    }
    for (double& x : s) sum += (x = std::exp(x - m));
    for (std::size_t c = 0; c < dim; ++c) {
      double o = 0;
      for (std::size_t t = 0; t < budget; ++t) o += s[t] / sum * v[(t * kv + g) * dim + c];
      ASSERT_NEAR(out[h * dim + c], o, 1e-5);
    }
  }
  for (std::size_t t = budget; t < 400; ++t) {
    cache.append(k.data() + t * kv * dim, v.data() + t * kv * dim, 1);
    // The selector's FP set is exactly the sink and the newest tokens; the open key group (SPEC
    // §2) lies inside the window, so the cache holds no FP token beyond the selector's.
    const std::vector<std::size_t> fp = cache.selector().full_precision_positions();
    ASSERT_EQ(fp.size(), budget);
    for (std::size_t i = 0; i < budget; ++i)
      ASSERT_EQ(fp[i], i < sink ? i : t + 1 - budget + i) << "t " << t << ", i " << i;
    ASSERT_EQ(cache.full_precision_size(), budget) << "t " << t;
  }
  EXPECT_LT(cache.memory_bytes(), 400 * kv * dim * 2 * sizeof(float));
}

// A window shorter than a key group: the cache holds the open key group too, at most
// key_group - 1 FP tokens beyond the selector's, and exactly the selector's when a group completes.
TEST(Presets, AccurateShortWindowHoldsTheOpenGroup) {
  const std::size_t dim = 16, kv = 1, budget = 8;
  const auto p = logquant::presets::accurate(dim, kv, budget);
  logquant::KVCache<logquant::SinkSelector> cache(p.config, p.selector);
  const std::size_t group = p.config.key_group;
  const auto k = gaussian(200 * kv * dim, 4), v = gaussian(200 * kv * dim, 5);
  for (std::size_t t = 0; t < 200; ++t) {
    cache.append(k.data() + t * kv * dim, v.data() + t * kv * dim, 1);
    ASSERT_EQ(cache.selector().full_precision_positions().size(), std::min(t + 1, budget));
    ASSERT_LE(cache.full_precision_size(), budget + group - 1) << "t " << t;
    if ((t + 1) % group == 0) {
      ASSERT_EQ(cache.full_precision_size(), budget) << "t " << t;
    }
  }
}

}  // namespace
