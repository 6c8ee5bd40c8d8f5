// KVCache: exact attention when nothing is quantized, agreement with softmax attention over the
// dequantized cache for every selector and bit width (GQA included), chunking invariance bit for
// bit, partial-state merging, the memory formula, and bad input leaving the cache unchanged.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <logquant/logquant.hpp>

#include "reference.hpp"

namespace {

using namespace logquant;
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Data {
  std::vector<float> keys, values;  // [n][kv][dim]
};

// Keys with a few outlier channels and a sink-like first token, values Gaussian.
Data make_data(std::size_t n, std::size_t kv, std::size_t dim, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  Data d;
  d.keys.resize(n * kv * dim);
  d.values.resize(n * kv * dim);
  for (std::size_t t = 0; t < n; ++t)
    for (std::size_t h = 0; h < kv; ++h)
      for (std::size_t c = 0; c < dim; ++c) {
        float k = nd(rng);
        if (c % 16 == 3) k = 8.0f + 2.0f * k;  // outlier channels
        if (t == 0) k *= 3.0f;
        d.keys[(t * kv + h) * dim + c] = k;
        d.values[(t * kv + h) * dim + c] = nd(rng);
      }
  return d;
}

std::vector<float> random_queries(std::size_t q_heads, std::size_t dim, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> q(q_heads * dim);
  for (float& x : q) x = nd(rng);
  return q;
}

// softmax(scale q Kᵀ) V per query head, in double via Eigen, over keys/values [n][kv][dim].
std::vector<float> reference_attention(const std::vector<float>& keys, const std::vector<float>& values,
                                       std::size_t n, std::size_t kv, std::size_t dim,
                                       const std::vector<float>& q, std::size_t q_heads, float scale) {
  std::vector<float> out(q_heads * dim);
  const std::size_t per_kv = q_heads / kv;
  for (std::size_t h = 0; h < q_heads; ++h) {
    const std::size_t g = h / per_kv;
    Eigen::MatrixXd K(n, dim), V(n, dim);
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t c = 0; c < dim; ++c) {
        K(t, c) = keys[(t * kv + g) * dim + c];
        V(t, c) = values[(t * kv + g) * dim + c];
      }
    Eigen::VectorXd qv(dim);
    for (std::size_t c = 0; c < dim; ++c) qv(c) = q[h * dim + c];
    Eigen::VectorXd s = (K * qv) * static_cast<double>(scale);
    s.array() -= s.maxCoeff();
    Eigen::VectorXd p = s.array().exp();
    p /= p.sum();
    Eigen::VectorXd o = V.transpose() * p;
    for (std::size_t c = 0; c < dim; ++c) out[h * dim + c] = static_cast<float>(o(c));
  }
  return out;
}

double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

template <class Selector>
KVCache<Selector> filled(const CacheConfig& cfg, Selector sel, const Data& d, std::size_t n) {
  KVCache<Selector> cache(cfg, sel);
  cache.append(d.keys.data(), d.values.data(), n);
  return cache;
}

template <class Selector>
std::vector<float> attend(const KVCache<Selector>& cache, const std::vector<float>& q, std::size_t q_heads) {
  std::vector<float> out(q.size());
  cache.attend(q.data(), q_heads, out.data(), 1.0f / std::sqrt(float(cache.config().head_dim)));
  return out;
}

CacheConfig config(std::size_t dim, std::size_t kv, unsigned kb = 2, unsigned vb = 2) {
  CacheConfig cfg;
  cfg.head_dim = dim;
  cfg.kv_heads = kv;
  cfg.key_bits = kb;
  cfg.value_bits = vb;
  return cfg;
}

// Full precision, and any cache whose budget still covers every token: exact softmax attention.
// Tolerance 1e-5 relative: float accumulation over <= 600 tokens against a double reference.
TEST(KVCache, FullPrecisionIsExact) {
  const std::size_t dim = 64, kv = 2, n = 600, qh = 8;
  const Data d = make_data(n, kv, dim, 1);
  const auto q = random_queries(qh, dim, 2);
  const float scale = 1.0f / 8.0f;
  const auto ref = reference_attention(d.keys, d.values, n, kv, dim, q, qh, scale);
  EXPECT_LT(relative_error(attend(filled(config(dim, kv), FullSelector(), d, n), q, qh), ref), 1e-5);
  EXPECT_LT(relative_error(attend(filled(config(dim, kv), LogSelector(200), d, n), q, qh), ref), 1e-5);
  EXPECT_LT(relative_error(attend(filled(config(dim, kv), RecentSelector(600), d, n), q, qh), ref), 1e-5);
  EXPECT_LT(relative_error(attend(filled(config(dim, kv), SinkSelector(4, 596), d, n), q, qh), ref), 1e-5);
}

// attend and reconstruct against the independent reference of tests/reference.hpp (a naive
// quantizer and attention in double), storage as SPEC §2 specifies it: every complete aligned
// group of key_group positions quantized, read exactly where a copy of the selector keeps the
// token or the group is still open. Checks:
// - reconstruct() equals the reference's dequantized cache, element for element (FP tokens
//   exactly; a quantized element may be one step off only within 1e-4 of a step from a rounding
//   tie, where float and double evaluation may round differently);
// - attend is within kOperandShare x predicted_rms of attention in double over the reference
//   (RMS over heads and channels): the kernels' operand rounding costs at most 0.3 of what
//   b-bit quantization costs (logquant_ref::kOperandShare, as in test_kernels.cpp);
// - with b-bit keys and values, that bound rejects a quantizer one bit coarser: the reference with
//   one key bit or one value bit fewer is farther than the bound from the b-bit reference (with
//   mixed widths the coarser part dominates the bound, so those skip this check).
using logquant_ref::kOperandShare;

// SPEC §2: the complete aligned key groups of n positions, and which positions attention reads
// in full precision (the selector's, and the open group).
struct Storage {
  std::vector<std::vector<std::size_t>> groups;
  std::vector<bool> full_precision;
};

template <class Selector>
Storage storage_of(Selector sel, std::size_t n, std::size_t key_group) {
  Storage s;
  sel.append(n);
  s.full_precision.assign(n, false);
  for (std::size_t p : sel.full_precision_positions()) s.full_precision[p] = true;
  for (std::size_t p = n / key_group * key_group; p < n; ++p) s.full_precision[p] = true;
  for (std::size_t g = 0; g < n / key_group; ++g) {
    s.groups.emplace_back();
    for (std::size_t p = g * key_group; p < (g + 1) * key_group; ++p) s.groups.back().push_back(p);
  }
  return s;
}

struct Coarser {
  double keys = 0.0, values = 0.0;  // sums of squared distances / predicted_rms
  std::size_t heads = 0;
};

template <class Selector>
void check_against_reference(const CacheConfig& cfg, Selector sel, std::size_t n, std::size_t qh,
                             Coarser& coarse) {
  const std::size_t kv = cfg.kv_heads, dim = cfg.head_dim, row = kv * dim;
  const Data d = make_data(n, kv, dim, 3);
  const auto cache = filled(cfg, sel, d, n);
  ASSERT_GT(cache.quantized_size(), 0u);
  const std::size_t vg = cache.config().value_group;
  const Storage storage = storage_of(sel, n, cfg.key_group);
  EXPECT_EQ(cache.full_precision_size(),
            static_cast<std::size_t>(std::count(storage.full_precision.begin(),
                                                storage.full_precision.end(), true)));
  std::vector<float> rk(d.keys.size()), rv(d.values.size());
  cache.reconstruct(rk.data(), rv.data());
  const auto q = random_queries(qh, dim, 4);
  const float scale = 1.0f / std::sqrt(float(dim));
  std::vector<float> scaled(q.size());
  for (std::size_t i = 0; i < q.size(); ++i) scaled[i] = q[i] * scale;
  const auto got = attend(cache, q, qh);
  const std::size_t per_kv = qh / kv;
  using logquant_ref::quantize_head;
  for (std::size_t h = 0; h < kv; ++h) {
    SCOPED_TRACE("kv head " + std::to_string(h));
    const float* k = d.keys.data() + h * dim;
    const float* v = d.values.data() + h * dim;
    auto ref_at = [&](unsigned kb, unsigned vb) {
      return quantize_head(k, v, n, dim, row, storage.groups, vg, kb, vb, storage.full_precision);
    };
    const auto ref = ref_at(cfg.key_bits, cfg.value_bits);
    const auto exact = logquant_ref::exact_head(k, v, n, dim, row);
    // got (reconstruct) against want (the reference) for an input x: equal up to float evaluation
    // of min + code * scale (the reference's is in double), or one step apart where x lies within
    // 1e-4 of a step from a rounding tie.
    auto element_ok = [](float got, double want, double step, float x) {
      const double d = std::fabs(got - want);
      return d <= 1e-6 * (std::fabs(want) + step) ||
             (d <= 1.0001 * step && std::fabs(x - want) >= 0.4999 * step);
    };
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t c = 0; c < dim; ++c) {
        const std::size_t i = t * row + h * dim + c, j = t * dim + c;
        const float xk = k[t * row + c], xv = v[t * row + c];
        ASSERT_TRUE(element_ok(rk[i], ref.keys[j], ref.key_step[j], xk))
            << "key of token " << t << " channel " << c << ": " << rk[i] << ", reference "
            << ref.keys[j] << " (input " << xk << ")";
        ASSERT_TRUE(element_ok(rv[i], ref.values[j], ref.value_step[j], xv))
            << "value of token " << t << " channel " << c << ": " << rv[i] << ", reference "
            << ref.values[j] << " (input " << xv << ")";
      }
    const float* qk = scaled.data() + h * per_kv * dim;
    auto attend_ref = [&](const logquant_ref::Head& r) {
      return logquant_ref::attention(r.keys, r.values, n, dim, qk, per_kv);
    };
    const std::vector<double> want = attend_ref(ref);
    const std::vector<float> mine(got.begin() + h * per_kv * dim,
                                  got.begin() + (h + 1) * per_kv * dim);
    const double predicted = logquant_ref::predicted_rms(exact, ref, qk, per_kv);
    EXPECT_LE(logquant_ref::rms_difference(mine, want), kOperandShare * predicted)
        << "bits " << cfg.key_bits << "/" << cfg.value_bits << ", head_dim " << dim
        << ", key_group " << cfg.key_group << ", n " << n
        << ", predicted quantization cost " << predicted;
    // How far the references one bit coarser land, in units of the prediction, as a mean square
    // over heads: a head whose attention sits on one extreme token (the sink-like first token,
    // quantized by RecentSelector) hardly moves with one key bit fewer, so the check is made on
    // the mean over every head and selector of one bit width.
    if (cfg.key_bits != cfg.value_bits) continue;  // checked only for equal widths (above)
    const double dk = logquant_ref::rms_difference(
                          attend_ref(ref_at(cfg.key_bits - 1, cfg.value_bits)), want) / predicted;
    const double dv = logquant_ref::rms_difference(
                          attend_ref(ref_at(cfg.key_bits, cfg.value_bits - 1)), want) / predicted;
    coarse.keys += dk * dk;
    coarse.values += dv * dv;
    coarse.heads += 1;
  }
}

TEST(KVCache, AttendAndReconstructMatchIndependentReference) {
  for (auto [kb, vb] : {std::pair<unsigned, unsigned>{2, 2}, {4, 4}, {8, 8}, {4, 2}, {2, 8}}) {
    Coarser coarse;
    for (std::size_t dim : {8u, 64u, 80u, 128u}) {
      SCOPED_TRACE("bits " + std::to_string(kb) + "/" + std::to_string(vb) + ", head_dim " +
                   std::to_string(dim));
      CacheConfig cfg = config(dim, 2, kb, vb);
      cfg.key_group = 16;
      check_against_reference(cfg, LogSelector(10), 400, 8, coarse);
      cfg.key_group = 64;
      check_against_reference(cfg, RecentSelector(48), 300, 2, coarse);
      cfg.key_group = 32;
      check_against_reference(cfg, LogStepSelector(12, 4), 300, 4, coarse);
      cfg.kv_heads = 1;
      cfg.key_group = 48;
      check_against_reference(cfg, SinkSelector(4, 40), 300, 4, coarse);
    }
    if (kb != vb) continue;  // with mixed widths the coarser part dominates the bound
    const double keys = std::sqrt(coarse.keys / coarse.heads);
    const double values = std::sqrt(coarse.values / coarse.heads);
    EXPECT_GT(keys, kOperandShare) << "a " << kb - 1 << "/" << vb << "-bit reference passes";
    EXPECT_GT(values, kOperandShare) << "a " << kb << "/" << vb - 1 << "-bit reference passes";
    std::printf("%u/%u bits: one key bit fewer is %.2f x predicted away, one value bit %.2f x\n",
                kb, vb, keys, values);
  }
}


// Reconstruction is exact for FP tokens and within half a step for quantized ones.
TEST(KVCache, ReconstructKeepsFullPrecisionTokensExact) {
  const CacheConfig cfg = config(32, 2);
  const Data d = make_data(300, 2, 32, 9);
  const auto cache = filled(cfg, LogSelector(8), d, 300);
  std::vector<float> rk(d.keys.size()), rv(d.values.size());
  cache.reconstruct(rk.data(), rv.data());
  for (std::size_t p : cache.full_precision_positions())
    for (std::size_t i = 0; i < 64; ++i) {
      ASSERT_EQ(rk[p * 64 + i], d.keys[p * 64 + i]);
      ASSERT_EQ(rv[p * 64 + i], d.values[p * 64 + i]);
    }
  EXPECT_EQ(cache.full_precision_positions().size() + cache.quantized_size(), 300u);
}

// dequantize(begin, end) is reconstruct()'s rows [begin, end) bit for bit, for ranges anywhere
// (inside key groups and tiles, over the FP tail, empty), rotation included; with nothing
// quantized it returns the input exactly. A bad range or a null output throws and writes nothing.
TEST(KVCache, DequantizeIsReconstructOverAnyRange) {
  CacheConfig cfg = config(32, 2);
  cfg.rotate = true;
  const Data d = make_data(300, 2, 32, 9);
  const std::size_t row = 64;
  const auto cache = filled(cfg, LogSelector(8), d, 300);
  std::vector<float> rk(d.keys.size()), rv(d.values.size());
  cache.reconstruct(rk.data(), rv.data());
  std::mt19937 rng(4);
  for (int i = 0; i < 60; ++i) {
    std::size_t b = rng() % 301, e = rng() % 301;
    if (b > e) std::swap(b, e);
    std::vector<float> k((e - b) * row + 1, 9.0f), v(k.size(), 9.0f);
    cache.dequantize(b, e, k.data(), v.data());
    ASSERT_EQ(0, std::memcmp(k.data(), &rk[b * row], (e - b) * row * sizeof(float))) << b << " " << e;
    ASSERT_EQ(0, std::memcmp(v.data(), &rv[b * row], (e - b) * row * sizeof(float))) << b << " " << e;
    ASSERT_EQ(k.back(), 9.0f);  // nothing past the range
  }
  const auto full = filled(config(32, 2), FullSelector(), d, 300);
  std::vector<float> k(100 * row), v(100 * row);
  full.dequantize(150, 250, k.data(), v.data());
  EXPECT_TRUE(std::equal(k.begin(), k.end(), d.keys.begin() + 150 * row));
  EXPECT_TRUE(std::equal(v.begin(), v.end(), d.values.begin() + 150 * row));

  std::fill(k.begin(), k.end(), 9.0f);
  EXPECT_THROW(cache.dequantize(5, 4, k.data(), v.data()), InvalidArgument);
  EXPECT_THROW(cache.dequantize(250, 301, k.data(), v.data()), InvalidArgument);
  EXPECT_THROW(cache.dequantize(0, 1, nullptr, v.data()), InvalidArgument);
  EXPECT_THROW(cache.dequantize(0, 1, k.data(), static_cast<float*>(nullptr)), InvalidArgument);
  std::vector<std::uint16_t> h(100 * row, 7);
  EXPECT_THROW(cache.dequantize(0, 301, h.data(), h.data()), InvalidArgument);
  EXPECT_TRUE(std::all_of(k.begin(), k.end(), [](float x) { return x == 9.0f; }));
  EXPECT_TRUE(std::all_of(h.begin(), h.end(), [](std::uint16_t x) { return x == 7; }));
  try {
    cache.dequantize(250, 301, k.data(), v.data());
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("KVCache::dequantize: range [250, 301)"), std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(cache.dequantize(7, 7, static_cast<float*>(nullptr), nullptr));
}

// attend_causal row r against softmax attention in double over reconstruct()'s positions up to
// row r's own. With 8-bit codes (two-digit operands, rounding near 1e-4) and with FullSelector,
// row r's query is 4x the key of the next position outside the outlier channels (which would
// favour the sink-like first token), so attending one position too far moves the output by O(1),
// not by a rounding; 2-bit caches get random queries, whose int8 operands round less. Tolerance:
// 3x what attend() of the same query is from the reference over the whole cache, at least 2e-3
// with 8-bit codes;
// FullSelector (nothing quantized) within 1e-5 of the exact inputs. The last row is attend()'s
// output, bit for bit where the rows' own positions are all full precision.
template <class Selector>
void check_causal(const CacheConfig& cfg, Selector sel, std::size_t n_tokens, bool exact) {
  const std::size_t kv = cfg.kv_heads, dim = cfg.head_dim, row = kv * dim, n = 300, qh = 2 * kv;
  const Data d = make_data(n + 1, kv, dim, 21);
  const auto cache = filled(cfg, sel, d, n);
  std::vector<float> rk(n * row), rv(n * row);
  cache.reconstruct(rk.data(), rv.data());
  const std::vector<float>& keys = exact ? d.keys : rk;
  const std::vector<float>& values = exact ? d.values : rv;
  const float scale = 1.0f / std::sqrt(float(dim));
  const std::size_t first = n - n_tokens;
  const bool pointed = exact || cfg.key_bits == 8;
  std::vector<float> q = random_queries(n_tokens * qh, dim, 6);
  const std::vector<float> last_q = random_queries(qh, dim, 5);
  for (std::size_t r = 0; r < n_tokens; ++r)
    for (std::size_t h = 0; h < qh; ++h)
      for (std::size_t c = 0; c < dim; ++c) {
        float& x = q[(r * qh + h) * dim + c];
        if (r + 1 == n_tokens) x = last_q[h * dim + c];
        else if (pointed) x = c % 16 == 3 ? 0.0f : 4.0f * d.keys[((first + r + 1) * kv + h / 2) * dim + c];
      }
  std::vector<float> out(q.size());
  cache.attend_causal(q.data(), n_tokens, qh, out.data(), scale);
  const std::vector<float> whole = attend(cache, last_q, qh);
  // The kernels' error for a query: attend() over the whole cache against the reference.
  auto tolerance = [&](const std::vector<float>& query) {
    const double e = relative_error(attend(cache, query, qh),
                                    reference_attention(keys, values, n, kv, dim, query, qh, scale));
    return exact ? 1e-5 : std::max(pointed ? 2e-3 : 1e-4, 3 * e);
  };
  const double floor = tolerance(last_q);
  for (std::size_t r = 0; r < n_tokens; ++r) {
    const std::vector<float> qr(q.begin() + r * qh * dim, q.begin() + (r + 1) * qh * dim);
    const double bound = r + 1 == n_tokens ? floor : tolerance(qr);
    const std::vector<float> got(out.begin() + r * qh * dim, out.begin() + (r + 1) * qh * dim);
    const std::vector<float> want = reference_attention(keys, values, first + r + 1, kv, dim, qr, qh, scale);
    ASSERT_LE(relative_error(got, want), bound) << "row " << r << " of " << n_tokens;
  }
  const std::vector<float> last(out.end() - qh * dim, out.end());
  bool own_positions_fp = true;
  for (std::size_t p : cache.quantized_positions()) own_positions_fp = own_positions_fp && p < first;
  if (own_positions_fp) {
    EXPECT_EQ(last, whole) << "the last row differs from attend()";
  } else {
    EXPECT_LE(relative_error(last, whole), floor);
  }
}

TEST(KVCache, AttendCausalIsCausalAttentionOverReconstruct) {
  for (std::size_t n_tokens : {1u, 5u, 16u, 40u}) {
    SCOPED_TRACE("n_tokens " + std::to_string(n_tokens));
    CacheConfig cfg = config(32, 2);
    cfg.key_group = 16;
    check_causal(cfg, LogSelector(8), n_tokens, false);
    check_causal(cfg, SinkSelector(2, 10), n_tokens, false);
    // An exact window of 2: the rows' own positions are read from their codes, row by row.
    check_causal(cfg, RecentSelector(2), n_tokens, false);
    cfg.key_bits = cfg.value_bits = 8;
    check_causal(cfg, RecentSelector(2), n_tokens, false);
    check_causal(cfg, SinkSelector(2, 10), n_tokens, false);
    cfg.key_group = 32;
    cfg.key_bits = 4;
    cfg.value_bits = 2;
    cfg.rotate = true;
    check_causal(cfg, LogSelector(8), n_tokens, false);
    check_causal(config(32, 2), FullSelector(), n_tokens, true);
  }
  const auto cache = filled(config(32, 2), LogSelector(8), make_data(20, 2, 32, 1), 20);
  std::vector<float> q(3 * 4 * 32, 0.1f), out(q.size());
  EXPECT_THROW(cache.attend_causal(q.data(), 0, 4, out.data(), 1.0f), InvalidArgument);
  EXPECT_THROW(cache.attend_causal(q.data(), 21, 4, out.data(), 1.0f), InvalidArgument);
  EXPECT_THROW(cache.attend_causal(q.data(), 3, 3, out.data(), 1.0f), InvalidArgument);
  EXPECT_THROW(cache.attend_causal(q.data(), 3, 4, nullptr, 1.0f), InvalidArgument);
  q[2 * 4 * 32 + 5] = NAN;  // the last row's
  EXPECT_THROW(cache.attend_causal(q.data(), 3, 4, out.data(), 1.0f), InvalidArgument);
}

// One append of n tokens or any split of it: bit-identical attend output and memory.
TEST(KVCache, ChunkingInvarianceIsBitExact) {
  const CacheConfig cfg = config(64, 2, 2, 2);
  const std::size_t n = 1000;
  const Data d = make_data(n, 2, 64, 5);
  const auto q = random_queries(4, 64, 6);
  const auto whole = filled(cfg, LogSelector(12), d, n);
  const auto expect = attend(whole, q, 4);
  std::mt19937 rng(8);
  for (int rep = 0; rep < 6; ++rep) {
    KVCache<LogSelector> cache(cfg, LogSelector(12));
    std::size_t done = 0;
    while (done < n) {
      const std::size_t step = std::min<std::size_t>(n - done, rng() % (rep < 3 ? 5 : 200));
      cache.append(d.keys.data() + done * 128, d.values.data() + done * 128, step);
      done += step;
    }
    ASSERT_EQ(attend(cache, q, 4), expect);
    ASSERT_EQ(cache.memory_bytes(), whole.memory_bytes());
    ASSERT_EQ(cache.full_precision_positions(), whole.full_precision_positions());
  }
}

// reserve(n) runs a copy of the selector ahead and makes room for exactly what n tokens need, for
// every selector: appending up to n tokens afterwards (in any chunks) allocates nothing, and the
// cache attends bit for bit as one that was never reserved. Without reserve the same appends grow
// the allocation (so the check can fail). A copy holds only what it uses; a fork reserves too.
template <class Selector>
void check_reserve(Selector sel, std::size_t before, std::size_t total) {
  const CacheConfig cfg = config(32, 2, 2, 2);
  const Data d = make_data(total, 2, 32, 21);
  const auto q = random_queries(4, 32, 22);
  auto grown = filled(cfg, sel, d, before);
  auto reserved = filled(cfg, sel, d, before);
  reserved.reserve(total);
  const std::size_t room = reserved.allocated_bytes();
  EXPECT_GE(room, reserved.memory_bytes());
  std::mt19937 rng(23);
  auto append_to = [&](auto& cache, std::size_t from, std::size_t to, bool fixed) {
    const std::size_t bytes = cache.allocated_bytes();
    for (std::size_t done = from; done < to;) {
      const std::size_t step = std::min<std::size_t>(to - done, 1 + rng() % 40);
      cache.append(d.keys.data() + done * 64, d.values.data() + done * 64, step);
      done += step;
      if (fixed) {
        ASSERT_EQ(cache.allocated_bytes(), bytes) << "after " << done << " tokens";
      }
    }
  };
  append_to(reserved, before, total, true);
  const std::size_t grown_bytes = grown.allocated_bytes();
  append_to(grown, before, total, false);
  EXPECT_GT(grown.allocated_bytes(), grown_bytes) << "the unreserved cache should have grown";
  EXPECT_EQ(attend(reserved, q, 4), attend(grown, q, 4));
  EXPECT_EQ(reserved.memory_bytes(), grown.memory_bytes());

  // A fork at `before` tokens, reserved, decodes to `total` without allocating.
  const auto prefix = filled(cfg, sel, d, before);
  auto fork = prefix;
  EXPECT_LE(fork.allocated_bytes(), prefix.allocated_bytes());
  fork.reserve(total);
  append_to(fork, before, total, true);
  EXPECT_EQ(attend(fork, q, 4), attend(grown, q, 4));

  // Never shrinks; a size at or below size() changes nothing.
  reserved.reserve(before);
  reserved.reserve(total);
  EXPECT_EQ(reserved.allocated_bytes(), room);
}

TEST(KVCache, ReserveMakesLaterAppendsAllocationFree) {
  {
    SCOPED_TRACE("LogSelector(8)");
    check_reserve(LogSelector(8), 37, 700);
  }
  {
    SCOPED_TRACE("RecentSelector(32)");
    check_reserve(RecentSelector(32), 5, 600);
  }
  {
    SCOPED_TRACE("SinkSelector(4, 40)");
    check_reserve(SinkSelector(4, 40), 100, 650);
  }
  {
    SCOPED_TRACE("FullSelector");
    check_reserve(FullSelector(), 10, 300);
  }
}

TEST(KVCache, ReserveRejectsImpossibleSizes) {
  KVCache<LogSelector> cache(config(32, 2), LogSelector(8));
  try {
    cache.reserve(std::size_t{1} << 32);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("KVCache::reserve: tokens = 4294967296"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(cache.size(), 0u);
}

// Splitting the cache into parts (16-aligned in the quantized block) and merging the partial
// states equals attending the whole, up to float summation order: a split changes where the running
// maximum rises and so how often sums are rescaled, a few ulp per rescale (1e-5 relative; measured
// 3e-6 with the AVX-512 kernels, whose exp differs from std::exp in the last bits).
TEST(KVCache, MergedPartialStatesEqualWhole) {
  const CacheConfig cfg = config(64, 2);
  const Data d = make_data(900, 2, 64, 12);
  const auto cache = filled(cfg, RecentSelector(100), d, 900);
  const auto q = random_queries(6, 64, 13);
  const auto expect = attend(cache, q, 6);
  const std::size_t nq = cache.quantized_block_size(), slots = cache.attention_slots();
  for (std::vector<std::size_t> cuts : {std::vector<std::size_t>{0, slots}, {0, 16, slots},
                                        {0, 320, nq, slots}, {0, 48, 512, nq, nq + 7, slots}}) {
    AttentionState total(6, 64), part;
    for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
      cache.attend_partial(q.data(), 6, 0.125f, cuts[i], cuts[i + 1], part);
      total.merge(part);
    }
    std::vector<float> out(q.size());
    total.finalize(out.data());
    EXPECT_LT(relative_error(out, expect), 1e-5);
  }
  AttentionState s;
  EXPECT_THROW(cache.attend_partial(q.data(), 6, 0.125f, 5, slots, s), InvalidArgument);
  EXPECT_THROW(cache.attend_partial(q.data(), 6, 0.125f, 0, slots + 1, s), InvalidArgument);
  // A boundary inside the quantized block must be a multiple of 16, the end as much as the begin
  // (a value tile's int8 weights are quantized over the whole tile); inside the FP block any is.
  ASSERT_TRUE(nq > 48 && nq % 32 == 0) << nq;  // whole key groups of 32
  for (std::size_t end : {std::size_t{17}, std::size_t{40}, nq - 1}) {
    try {
      cache.attend_partial(q.data(), 6, 0.125f, 0, end, s);
      ADD_FAILURE() << "end " << end << " inside the quantized block [0, " << nq << ") was accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("multiples of 16"), std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW(cache.attend_partial(q.data(), 6, 0.125f, 16, nq + 7, s));
}

// memory_bytes follows the formula documented in kv_cache.hpp.
TEST(KVCache, MemoryMatchesDocumentedFormula) {
  const std::size_t dim = 64, kv = 4, W = 20, n = 1000;
  CacheConfig cfg = config(dim, kv);
  cfg.key_group = 32;
  const Data d = make_data(n, kv, dim, 21);
  const auto cache = filled(cfg, LogSelector(W), d, n);
  const std::size_t nb = cache.quantized_block_size(), nf = cache.full_precision_size();
  // Complete groups up to the last with a quantized token: 992 positions are complete, and the
  // last group, 960 .. 991, lies in LogQuant's dense window.
  ASSERT_EQ(nb, 960u);
  ASSERT_EQ(cache.quantized_size() + nf, n);
  const std::size_t groups = nb / 32;
  const std::size_t value_group = 64;  // the default for head_dim 64
  const std::size_t key_codes = nb * dim * 2 / 8;
  const std::size_t value_codes = nb * dim * 2 / 8;
  const std::size_t meta = (groups * dim + nb * (dim / value_group)) * 4;
  const std::size_t per_head = key_codes + value_codes + meta + nf * dim * 8;
  EXPECT_EQ(cache.memory_bytes(), kv * per_head + nb / 16 * 2 + 8 * nf);
  const MemoryReport r = cache.memory();
  EXPECT_EQ(r.code_bytes, kv * (key_codes + value_codes));
  EXPECT_EQ(r.quantized_block_tokens, nb);
  EXPECT_NEAR(r.quantized_bits_per_value(),
              8.0 * (key_codes + value_codes + meta) / (2.0 * nb * dim), 1e-9);
  // 2 bits + per-channel key metadata (32 bits per 32 tokens) and per-token value metadata (32
  // bits per 64 channels): (2 + 1 + 2 + 0.5) / 2 = 2.75, exactly: no padding.
  EXPECT_DOUBLE_EQ(r.quantized_bits_per_value(), 2.75);
  // A cache that keeps everything stores no codes: fp32 rows and their positions only.
  const auto full = filled(cfg, FullSelector(), d, n);
  EXPECT_EQ(full.quantized_block_size(), 0u);
  EXPECT_EQ(full.memory_bytes(), n * kv * dim * 8 + 8 * n);
}

// LogQuant's error on a realistic cache is well below plain 2-bit with no FP tokens (every token
// quantized in groups of 32, the same quantizer).
TEST(KVCache, LogQuantBeatsPlainTwoBit) {
  const std::size_t dim = 64, kv = 1, n = 2048, qh = 4;
  Data d = make_data(n, kv, dim, 31);
  // A query aligned with a few recent keys draws attention to them, as in decode.
  auto q = random_queries(qh, dim, 32);
  for (std::size_t h = 0; h < qh; ++h)
    for (std::size_t c = 0; c < dim; ++c) q[h * dim + c] = 0.5f * q[h * dim + c] + d.keys[(n - 3) * dim + c];
  const float scale = 0.125f;
  const auto ref = reference_attention(d.keys, d.values, n, kv, dim, q, qh, scale);
  const auto cache = filled(config(dim, kv), LogSelector(42), d, n);
  const double log_err = relative_error(attend(cache, q, qh), ref);
  // Plain 2-bit: quantize every token (keys per channel in groups of 32 tokens, values per token).
  std::vector<float> pk(d.keys), pv(d.values);
  using Q = GroupQuantizer<2>;
  for (std::size_t t0 = 0; t0 < n; t0 += 32)
    for (std::size_t c = 0; c < dim; ++c) {
      std::uint8_t codes[32];
      const GroupParams p = Q::quantize(&d.keys[t0 * dim + c], 32, dim, codes);
      for (std::size_t j = 0; j < 32; ++j) pk[(t0 + j) * dim + c] = Q::decode(codes[j], p);
    }
  for (std::size_t t = 0; t < n; ++t) {
    std::uint8_t codes[64];
    const GroupParams p = Q::quantize(&d.values[t * dim], dim, 1, codes);
    for (std::size_t c = 0; c < dim; ++c) pv[t * dim + c] = Q::decode(codes[c], p);
  }
  const double plain_err = relative_error(reference_attention(pk, pv, n, kv, dim, q, qh, scale), ref);
  EXPECT_LT(log_err, 0.5 * plain_err) << "LogQuant " << log_err << " plain 2-bit " << plain_err;
}

template <class Selector>
void expect_unchanged_after_throw(KVCache<Selector>& cache, const std::function<void()>& bad,
                                  const std::string& needle) {
  const std::size_t size = cache.size(), bytes = cache.memory_bytes();
  const auto fp = cache.full_precision_positions();
  try {
    bad();
    FAIL() << "no exception (expected one mentioning '" << needle << "')";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  EXPECT_EQ(cache.size(), size);
  EXPECT_EQ(cache.memory_bytes(), bytes);
  EXPECT_EQ(cache.full_precision_positions(), fp);
}

TEST(KVCache, BadInputThrowsAndLeavesCacheUnchanged) {
  const CacheConfig cfg = config(16, 2);
  Data d = make_data(50, 2, 16, 41);
  KVCache<LogSelector> cache(cfg, LogSelector(4));
  std::vector<float> out(4 * 16);
  const auto q = random_queries(4, 16, 42);
  EXPECT_THROW(cache.attend(q.data(), 4, out.data(), 0.25f), InvalidArgument);  // empty cache
  cache.append(d.keys.data(), d.values.data(), 20);

  expect_unchanged_after_throw(cache, [&] { cache.append(nullptr, d.values.data(), 3); }, "keys is null");
  expect_unchanged_after_throw(cache, [&] { cache.append(d.keys.data(), nullptr, 3); }, "values is null");
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 1e6f}) {
    Data b = d;
    b.keys[20 * 32 + 29 * 1] = bad;  // in the 2nd token of the next append... 
    b.keys[22 * 32 + 5] = bad;
    expect_unchanged_after_throw(cache, [&] { cache.append(b.keys.data() + 20 * 32, b.values.data(), 10); }, "keys");
    b = d;
    b.values[25 * 32 + 1] = bad;
    expect_unchanged_after_throw(cache, [&] { cache.append(d.keys.data(), b.values.data() + 20 * 32, 10); }, "values");
  }
  auto bad_q = q;
  bad_q[7] = std::numeric_limits<float>::quiet_NaN();
  expect_unchanged_after_throw(cache, [&] { cache.attend(bad_q.data(), 4, out.data(), 0.25f); }, "queries");
  expect_unchanged_after_throw(cache, [&] { cache.attend(q.data(), 3, out.data(), 0.25f); }, "q_heads = 3");
  expect_unchanged_after_throw(cache, [&] { cache.attend(q.data(), 0, out.data(), 0.25f); }, "q_heads = 0");
  expect_unchanged_after_throw(cache, [&] { cache.attend(nullptr, 4, out.data(), 0.25f); }, "queries is null");
  expect_unchanged_after_throw(cache, [&] { cache.attend(q.data(), 4, nullptr, 0.25f); }, "out is null");
  cache.append(nullptr, nullptr, 0);  // zero tokens: a no-op, null allowed
  EXPECT_EQ(cache.size(), 20u);

  // Configuration errors name the field.
  auto bad_cfg = [](auto mutate, const std::string& needle) {
    CacheConfig c = config(64, 2);
    mutate(c);
    try {
      KVCache<FullSelector> x(c, FullSelector());
      FAIL() << needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  bad_cfg([](CacheConfig& c) { c.head_dim = 0; }, "head_dim");
  bad_cfg([](CacheConfig& c) { c.kv_heads = 0; }, "kv_heads");
  bad_cfg([](CacheConfig& c) { c.key_bits = 3; }, "key_bits");
  bad_cfg([](CacheConfig& c) { c.value_bits = 1; }, "value_bits");
  bad_cfg([](CacheConfig& c) { c.value_group = 24; }, "value_group");
  bad_cfg([](CacheConfig& c) { c.value_group = 8; }, "value_group");  // not a multiple of 16
  bad_cfg([](CacheConfig& c) { c.key_group = 8; }, "key_group = 8");
  bad_cfg([](CacheConfig& c) { c.key_group = 40; }, "key_group = 40");
  bad_cfg([](CacheConfig& c) { c.key_group = 2048; }, "key_group = 2048");
}

// A selector written by a user works with the cache: here, keep only the last token in FP and
// demote in pairs.
class PairSelector {
 public:
  std::size_t size() const { return seen_; }
  std::vector<std::size_t> full_precision_positions() const {
    std::vector<std::size_t> fp;
    for (std::size_t p = first_; p < seen_; ++p) fp.push_back(p);
    return fp;
  }
  void append(std::size_t n) { append(n, IgnoreDemotions{}); }
  template <class F>
  void append(std::size_t n, F&& on_demote) {
    for (std::size_t i = 0; i < n; ++i) {
      if (seen_ - first_ == 2) {
        const std::size_t p[2] = {first_, first_ + 1};
        first_ += 2;
        on_demote(seen_, p, 2);
      }
      ++seen_;
    }
  }

 private:
  std::size_t seen_ = 0, first_ = 0;
};

// A selector that breaks its contract (demotes a position twice, or one it never reported) gets
// std::logic_error, and the cache stays as it was before that demotion: the blocks consistent.
class BrokenSelector {
 public:
  explicit BrokenSelector(std::vector<std::size_t> bad) : bad_(std::move(bad)) {}
  std::size_t size() const { return seen_; }
  std::vector<std::size_t> full_precision_positions() const {  // it demotes nothing valid
    std::vector<std::size_t> fp(seen_);
    for (std::size_t p = 0; p < seen_; ++p) fp[p] = p;
    return fp;
  }
  void append(std::size_t n) { append(n, IgnoreDemotions{}); }
  template <class F>
  void append(std::size_t n, F&& on_demote) {
    for (std::size_t i = 0; i < n; ++i) {
      if (seen_ == 40) on_demote(seen_, bad_.data(), bad_.size());
      ++seen_;
    }
  }

 private:
  std::vector<std::size_t> bad_;
  std::size_t seen_ = 0;
};

TEST(KVCache, BrokenSelectorLeavesTheCacheConsistent) {
  CacheConfig cfg = config(16, 1);
  cfg.key_group = 16;
  const Data d = make_data(41, 1, 16, 61);
  // Position 3 lies in the complete group 0, which a valid demotion of it would quantize first.
  for (const std::vector<std::size_t>& bad :
       {std::vector<std::size_t>{3, 3}, std::vector<std::size_t>{3, 45}}) {
    KVCache<BrokenSelector> cache(cfg, BrokenSelector(bad));
    cache.append(d.keys.data(), d.values.data(), 40);
    const auto q = random_queries(2, 16, 62);
    const auto before = attend(cache, q, 2);
    const std::size_t fp = cache.full_precision_size(), bytes = cache.memory_bytes();
    EXPECT_THROW(cache.append(d.keys.data() + 40 * 16, d.values.data() + 40 * 16, 1),
                 std::logic_error);
    EXPECT_EQ(cache.full_precision_size(), fp);
    EXPECT_EQ(cache.quantized_size() + cache.full_precision_size(), 40u);
    EXPECT_EQ(cache.memory_bytes(), bytes);
    EXPECT_EQ(attend(cache, q, 2), before);
  }
}

TEST(KVCache, UserSelector) {
  static_assert(is_selector_v<PairSelector>);
  CacheConfig cfg = config(16, 1);
  cfg.key_group = 16;
  Coarser unused;
  check_against_reference(cfg, PairSelector(), 101, 2, unused);
}

// Storage by position (SPEC §2): keys constant per channel within every aligned key group and
// values constant within every token (fp16-exact numbers) quantize with scale 0, so reconstruct()
// gives them back exactly, under every selector and any chunking. A key group that mixed two
// aligned groups, or a value group that mixed tokens, would see two numbers and round them.
template <class Selector>
void expect_piecewise_constant_exact(Selector sel, std::size_t key_group) {
  const std::size_t dim = 48, kv = 2, row = kv * dim, n = 333;
  CacheConfig cfg = config(dim, kv, 2, 2);
  cfg.key_group = key_group;
  std::vector<float> keys(n * row), values(n * row);
  for (std::size_t t = 0; t < n; ++t)
    for (std::size_t i = 0; i < row; ++i) {
      keys[t * row + i] = static_cast<float>(static_cast<int>((t / key_group * 37 + i * 11) % 61) - 30) / 8.0f;
      values[t * row + i] = static_cast<float>(static_cast<int>((t * 13 + i / dim * 5) % 41) - 20) / 4.0f;
    }
  std::mt19937 rng(static_cast<std::uint32_t>(key_group));
  for (int chunking = 0; chunking < 3; ++chunking) {
    SCOPED_TRACE("chunking " + std::to_string(chunking));
    KVCache<Selector> cache(cfg, sel);
    for (std::size_t done = 0; done < n;) {
      const std::size_t step =
          chunking == 0 ? n : chunking == 1 ? 1 : std::min<std::size_t>(n - done, 1 + rng() % 40);
      cache.append(&keys[done * row], &values[done * row], step);
      done += step;
    }
    ASSERT_GT(cache.quantized_size(), 0u);
    std::vector<float> rk(keys.size()), rv(values.size());
    cache.reconstruct(rk.data(), rv.data());
    ASSERT_EQ(rk, keys);
    ASSERT_EQ(rv, values);
  }
}

TEST(KVCache, PiecewiseConstantKeysAndValuesReconstructExactly) {
  for (std::size_t group : {16u, 64u, 112u}) {
    SCOPED_TRACE("key_group " + std::to_string(group));
    expect_piecewise_constant_exact(LogSelector(10), group);
    expect_piecewise_constant_exact(LogStepSelector(12, 4), group);
    expect_piecewise_constant_exact(RecentSelector(40), group);
    expect_piecewise_constant_exact(SinkSelector(4, 40), group);
    expect_piecewise_constant_exact(PairSelector(), group);
  }
}

// The FP set is the selector's plus the open key group (SPEC §2): a token leaves full precision
// when the selector demoted it and its group is complete, never before, so the cache holds at
// most key_group - 1 FP tokens beyond its selector's.
TEST(KVCache, FullPrecisionSetIsSelectorsPlusOpenGroup) {
  const std::size_t dim = 16, n = 700;
  CacheConfig cfg = config(dim, 1);
  cfg.key_group = 64;
  const Data d = make_data(n, 1, dim, 51);
  KVCache<LogSelector> cache(cfg, LogSelector(8));
  for (std::size_t t = 0; t < n; ++t) {
    cache.append(&d.keys[t * dim], &d.values[t * dim], 1);
    const std::size_t size = t + 1, open = size / 64 * 64;
    std::vector<std::size_t> want;
    for (std::size_t p : cache.selector().full_precision_positions())
      if (p < open) want.push_back(p);
    for (std::size_t p = open; p < size; ++p) want.push_back(p);
    ASSERT_EQ(cache.full_precision_positions(), want) << "size " << size;
    ASSERT_LE(cache.full_precision_size(), cache.selector().full_precision_positions().size() + 63);
    // The block ends with the last complete group that has a token out of full precision.
    std::size_t block = 0;
    for (std::size_t g = 0; g < open / 64; ++g)
      for (std::size_t p = g * 64; p < (g + 1) * 64; ++p)
        if (!std::binary_search(want.begin(), want.end(), p)) block = (g + 1) * 64;
    ASSERT_EQ(cache.quantized_block_size(), block) << "size " << size;
  }
}

}  // namespace
