// HadamardRotation and rotated caches: the rotation is orthogonal (round trip, norms, dot
// products), deterministic for a seed, and a rotated cache keeps the exactness properties —
// full precision reproduces exact attention, chunking invariance is bit for bit, and attend equals
// attention over the (un-rotated) dequantized cache.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include <logquant/logquant.hpp>

namespace {

using namespace logquant;

std::vector<float> gaussian(std::size_t n, std::uint32_t seed, float outlier = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = nd(rng) + (i % 16 == 5 ? outlier : 0.0f);
  return x;
}

class RotationDims : public ::testing::TestWithParam<std::size_t> {};

// Rotating then inverse-rotating returns the input within float tolerance: each of the log2(dim)
// butterfly stages and the normalisation round once, so 1e-5 relative to the vector's norm.
TEST_P(RotationDims, RoundTripsAndPreservesDotProducts) {
  const std::size_t dim = GetParam();
  const HadamardRotation r(dim, 42);
  auto x = gaussian(dim, 1, 20.0f), y = gaussian(dim, 2);
  const auto x0 = x, y0 = y;
  double dot0 = 0, norm0 = 0;
  for (std::size_t i = 0; i < dim; ++i) {
    dot0 += double(x[i]) * y[i];
    norm0 += double(x[i]) * x[i];
  }
  r.forward(x.data());
  r.forward(y.data());
  double dot1 = 0, norm1 = 0, moved = 0;
  for (std::size_t i = 0; i < dim; ++i) {
    dot1 += double(x[i]) * y[i];
    norm1 += double(x[i]) * x[i];
    moved += std::fabs(x[i] - x0[i]);
  }
  EXPECT_NEAR(dot1, dot0, 1e-5 * std::sqrt(norm0) * dim);
  EXPECT_NEAR(norm1, norm0, 1e-5 * norm0);
  EXPECT_GT(moved, 0.0);  // it is not the identity
  r.inverse(x.data());
  for (std::size_t i = 0; i < dim; ++i) EXPECT_NEAR(x[i], x0[i], 1e-5 * std::sqrt(norm0)) << i;
}

INSTANTIATE_TEST_SUITE_P(HeadDims, RotationDims, ::testing::Values(1, 8, 16, 64, 80, 96, 128, 256));

TEST(Rotation, SpreadsAnOutlierChannel) {
  const std::size_t dim = 128;
  std::vector<float> x(dim, 0.0f);
  x[7] = 100.0f;
  HadamardRotation(dim, 3).forward(x.data());
  for (float v : x) EXPECT_NEAR(std::fabs(v), 100.0f / std::sqrt(128.0f), 1e-3);
}

TEST(Rotation, DeterministicForASeed) {
  auto a = gaussian(64, 9), b = a, c = a;
  HadamardRotation(64, 5).forward(a.data());
  HadamardRotation(64, 5).forward(b.data());
  HadamardRotation(64, 6).forward(c.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  HadamardRotation().forward(c.data());  // identity
}

CacheConfig rotated_config(std::size_t dim, std::size_t kv) {
  CacheConfig cfg;
  cfg.head_dim = dim;
  cfg.kv_heads = kv;
  cfg.rotate = true;
  return cfg;
}

// Softmax attention in double over [n][kv][dim] keys/values.
std::vector<float> reference(const std::vector<float>& k, const std::vector<float>& v, std::size_t n,
                             std::size_t kv, std::size_t dim, const std::vector<float>& q,
                             std::size_t qh, float scale) {
  std::vector<float> out(qh * dim);
  for (std::size_t h = 0; h < qh; ++h) {
    const std::size_t g = h / (qh / kv);
    std::vector<double> s(n);
    double m = -1e300;
    for (std::size_t t = 0; t < n; ++t) {
      double d = 0;
      for (std::size_t c = 0; c < dim; ++c) d += double(q[h * dim + c]) * k[(t * kv + g) * dim + c];
      s[t] = d * scale;
      m = std::max(m, s[t]);
    }
    double sum = 0;
    std::vector<double> o(dim, 0.0);
    for (std::size_t t = 0; t < n; ++t) {
      const double p = std::exp(s[t] - m);
      sum += p;
      for (std::size_t c = 0; c < dim; ++c) o[c] += p * v[(t * kv + g) * dim + c];
    }
    for (std::size_t c = 0; c < dim; ++c) out[h * dim + c] = static_cast<float>(o[c] / sum);
  }
  return out;
}

double rel(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

TEST(RotatedCache, FullPrecisionStaysExact) {
  const std::size_t dim = 96, kv = 2, n = 300, qh = 4;
  const auto k = gaussian(n * kv * dim, 3, 6.0f), v = gaussian(n * kv * dim, 4), q = gaussian(qh * dim, 5);
  KVCache<FullSelector> cache(rotated_config(dim, kv), FullSelector());
  cache.append(k.data(), v.data(), n);
  std::vector<float> out(qh * dim);
  cache.attend(q.data(), qh, out.data(), 0.1f);
  EXPECT_LT(rel(out, reference(k, v, n, kv, dim, q, qh, 0.1f)), 1e-5);
  std::vector<float> rk(k.size()), rv(v.size());
  cache.reconstruct(rk.data(), rv.data());
  EXPECT_LT(rel(rk, k), 1e-6);
  EXPECT_LT(rel(rv, v), 1e-6);
}

TEST(RotatedCache, AttendMatchesDequantizedAndChunkingIsExact) {
  const std::size_t dim = 64, kv = 2, n = 800, qh = 8;
  const auto k = gaussian(n * kv * dim, 6, 8.0f), v = gaussian(n * kv * dim, 7), q = gaussian(qh * dim, 8);
  KVCache<LogSelector> whole(rotated_config(dim, kv), LogSelector(16));
  whole.append(k.data(), v.data(), n);
  std::vector<float> out(qh * dim);
  whole.attend(q.data(), qh, out.data(), 0.125f);
  std::vector<float> rk(k.size()), rv(v.size());
  whole.reconstruct(rk.data(), rv.data());
  const auto deq = reference(rk, rv, n, kv, dim, q, qh, 0.125f);
  const auto exact = reference(k, v, n, kv, dim, q, qh, 0.125f);
  // Same bound as the unrotated cache (test_kv_cache.cpp): operand rounding below a fifth of the
  // quantization error.
  EXPECT_LT(rel(out, deq), 0.2 * rel(deq, exact) + 2e-3);

  KVCache<LogSelector> chunked(rotated_config(dim, kv), LogSelector(16));
  for (std::size_t done = 0, step = 1; done < n; done += step, step = step % 37 + 3) {
    step = std::min(step, n - done);
    chunked.append(k.data() + done * kv * dim, v.data() + done * kv * dim, step);
  }
  std::vector<float> out2(qh * dim);
  chunked.attend(q.data(), qh, out2.data(), 0.125f);
  EXPECT_EQ(out, out2);
}

}  // namespace
