// LogStepSelector: LogQuant's list demoted in steps of `step` tokens. Checked against an
// independent list-based reference, its invariants (FP count, sink, every demotion fresh and
// local), step == W reproducing LogSelector, chunking invariance, save/load, and a KVCache using it
// (exact attention while the budget covers every token, bit-exact chunking, every kernel set equal
// to the scalar reference on what it returns for the same cache).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include <logquant/logquant.hpp>

namespace {

using logquant::LogSelector;
using logquant::LogStepSelector;
using Positions = std::vector<std::size_t>;

// The rule written independently: a list A with budget 3W; when full, halve A[c .. c + 2 step)
// (keep even offsets), advance c by step, and wrap c to 0 after W.
struct Event {
  std::size_t token;
  Positions demoted;
};
Positions reference_step(std::size_t W, std::size_t g, std::size_t n, std::vector<Event>* events) {
  Positions A;
  std::size_t c = 0;
  for (std::size_t t = 0; t < n; ++t) {
    if (A.size() == 3 * W) {
      Positions next(A.begin(), A.begin() + static_cast<std::ptrdiff_t>(c)), gone;
      for (std::size_t j = c; j < c + 2 * g; ++j) ((j - c) % 2 == 0 ? next : gone).push_back(A[j]);
      next.insert(next.end(), A.begin() + static_cast<std::ptrdiff_t>(c + 2 * g), A.end());
      A = next;
      if (events) events->push_back({t, gone});
      c = (c + g) % W;
    }
    A.push_back(t);
  }
  return A;
}

std::vector<Event> run_events(LogStepSelector& s, std::size_t n) {
  std::vector<Event> ev;
  s.append(n, [&](std::size_t t, const std::size_t* p, std::size_t k) {
    ev.push_back({t, Positions(p, p + k)});
  });
  return ev;
}

TEST(LogStepSelector, MatchesIndependentReference) {
  for (std::size_t W : {1, 2, 3, 4, 6, 8, 12, 16, 32})
    for (std::size_t g = 1; g <= W; ++g) {
      if (W % g) continue;
      for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{5}, 3 * W, 3 * W + 1, 7 * W + 3, 40 * W + g + 1, 1000 + W}) {
        LogStepSelector s(W, g);
        std::vector<Event> expect;
        const Positions ref = reference_step(W, g, n, &expect);
        const std::vector<Event> got = run_events(s, n);
        ASSERT_EQ(s.full_precision_positions(), ref) << "W=" << W << " g=" << g << " n=" << n;
        ASSERT_EQ(got.size(), expect.size());
        for (std::size_t e = 0; e < got.size(); ++e) {
          ASSERT_EQ(got[e].token, expect[e].token);
          ASSERT_EQ(got[e].demoted, expect[e].demoted);
        }
      }
    }
}

TEST(LogStepSelector, StepEqualToWindowIsLogSelector) {
  for (std::size_t W : {1, 2, 3, 5, 8, 16, 32}) {
    LogSelector a(W);
    LogStepSelector b(W, W);
    std::vector<Event> ea, eb;
    for (std::size_t t = 0; t < 50 * W + 7; ++t) {
      a.append(1, [&](std::size_t tok, const std::size_t* p, std::size_t k) {
        ea.push_back({tok, Positions(p, p + k)});
      });
      b.append(1, [&](std::size_t tok, const std::size_t* p, std::size_t k) {
        eb.push_back({tok, Positions(p, p + k)});
      });
      ASSERT_EQ(a.full_precision_positions(), b.full_precision_positions()) << "W=" << W;
    }
    ASSERT_EQ(ea.size(), eb.size());
    for (std::size_t e = 0; e < ea.size(); ++e) ASSERT_EQ(ea[e].demoted, eb[e].demoted);
  }
}

// FP count within [3W - step + 1, 3W] once filled; token 0 kept; each event demotes `step` FP
// tokens never demoted before, all older than the arriving token; after each full round
// (W / step events) the list equals LogSelector's.
TEST(LogStepSelector, Invariants) {
  for (std::size_t W : {4, 8, 16, 32})
    for (std::size_t g : {1, 2, 4, 8, 16, 32}) {
      if (g > W || W % g) continue;
      LogStepSelector s(W, g);
      LogSelector log(W);
      std::set<std::size_t> demoted_ever;
      std::size_t events = 0;
      for (std::size_t t = 0; t < 60 * W; ++t) {
        const Positions before = s.full_precision_positions();
        s.append(1, [&](std::size_t tok, const std::size_t* p, std::size_t k) {
          ASSERT_EQ(tok, t);
          ASSERT_EQ(k, g);
          for (std::size_t i = 0; i < k; ++i) {
            ASSERT_LT(p[i], t);
            ASSERT_NE(p[i], 0u) << "the sink was demoted";
            ASSERT_TRUE(std::binary_search(before.begin(), before.end(), p[i]));
            ASSERT_TRUE(demoted_ever.insert(p[i]).second) << "position demoted twice";
          }
          ++events;
        });
        log.append(1);
        const Positions fp = s.full_precision_positions();
        ASSERT_EQ(fp.front(), 0u);
        ASSERT_TRUE(std::is_sorted(fp.begin(), fp.end()));
        ASSERT_EQ(fp.back(), t);
        if (t + 1 > 3 * W) {
          ASSERT_GE(fp.size(), 3 * W - g + 1);
          ASSERT_LE(fp.size(), 3 * W);
        }
        ASSERT_EQ(fp.size() + demoted_ever.size(), t + 1);
        if (events % (W / g) == 0) {
          ASSERT_EQ(fp, log.full_precision_positions()) << "t=" << t;
        }
      }
    }
}

TEST(LogStepSelector, ChunkingInvariance) {
  std::mt19937 rng(3);
  for (std::size_t W : {6, 16}) {
    for (std::size_t g : {std::size_t{1}, std::size_t{2}, std::size_t{3}, W}) {
      if (W % g) continue;
      LogStepSelector whole(W, g);
      const std::vector<Event> expect = run_events(whole, 700);
      for (int rep = 0; rep < 5; ++rep) {
        LogStepSelector s(W, g);
        std::vector<Event> got;
        std::size_t done = 0;
        while (done < 700) {
          const std::size_t k = std::min<std::size_t>(700 - done, rng() % 40);
          for (const Event& e : run_events(s, k)) got.push_back(e);
          done += k;
        }
        ASSERT_EQ(s.full_precision_positions(), whole.full_precision_positions());
        ASSERT_EQ(got.size(), expect.size());
        for (std::size_t e = 0; e < got.size(); ++e) {
          ASSERT_EQ(got[e].token, expect[e].token);
          ASSERT_EQ(got[e].demoted, expect[e].demoted);
        }
      }
    }
  }
}

TEST(LogStepSelector, BadArgumentsThrow) {
  EXPECT_THROW(LogStepSelector(0, 1), logquant::InvalidArgument);
  EXPECT_THROW(LogStepSelector(8, 0), logquant::InvalidArgument);
  EXPECT_THROW(LogStepSelector(8, 16), logquant::InvalidArgument);
  EXPECT_THROW(LogStepSelector(12, 5), logquant::InvalidArgument);
}

// save_state / load_state round-trip at every size (load_state checks the closed form against the
// list append built), and words no save_state produces are refused.
TEST(LogStepSelector, StateRoundTripAndRejectsForgeries) {
  for (std::size_t W : {3, 8, 12})
    for (std::size_t g : {std::size_t{1}, std::size_t{3}, std::size_t{4}, W}) {
      if (W % g) continue;
      LogStepSelector s(W, g);
      for (std::size_t t = 0; t < 20 * W; ++t) {
        s.append(1);
        const std::vector<std::uint64_t> st = s.save_state();
        LogStepSelector r = LogStepSelector::load_state(st);
        ASSERT_EQ(r.full_precision_positions(), s.full_precision_positions()) << W << " " << g << " " << t;
        // Continuing the loaded selector gives the same future.
        LogStepSelector a = s, b = r;
        a.append(2 * W + 1);
        b.append(2 * W + 1);
        ASSERT_EQ(a.full_precision_positions(), b.full_precision_positions());
        if (st.size() > 4) {
          std::vector<std::uint64_t> bad = st;
          bad[4] += 1;
          EXPECT_THROW(LogStepSelector::load_state(bad), logquant::FormatError);
          bad = st;
          bad.pop_back();
          EXPECT_THROW(LogStepSelector::load_state(bad), logquant::FormatError);
        }
      }
    }
  EXPECT_THROW(LogStepSelector::load_state({8, 3, 0}), logquant::FormatError);
  EXPECT_THROW(LogStepSelector::load_state({8}), logquant::FormatError);
}

// --- In a KVCache -----------------------------------------------------------------------------

std::vector<float> gaussian(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

// softmax(scale q·k) v in double, over n tokens [n][kv][dim], query heads grouped onto kv heads.
std::vector<double> exact_attention(const std::vector<float>& k, const std::vector<float>& v,
                                    std::size_t n, std::size_t kv, std::size_t dim,
                                    const std::vector<float>& q, std::size_t qh, double scale) {
  std::vector<double> out(qh * dim, 0.0);
  for (std::size_t h = 0; h < qh; ++h) {
    const std::size_t g = h / (qh / kv);
    std::vector<double> s(n);
    double m = -1e300, sum = 0;
    for (std::size_t t = 0; t < n; ++t) {
      double d = 0;
      for (std::size_t c = 0; c < dim; ++c) d += double(q[h * dim + c]) * k[(t * kv + g) * dim + c];
      m = std::max(m, s[t] = d * scale);
    }
    for (double& x : s) sum += (x = std::exp(x - m));
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t c = 0; c < dim; ++c) out[h * dim + c] += s[t] / sum * v[(t * kv + g) * dim + c];
  }
  return out;
}

logquant::CacheConfig cfg(std::size_t dim, std::size_t kv, bool rotate) {
  logquant::CacheConfig c;
  c.head_dim = dim;
  c.kv_heads = kv;
  c.rotate = rotate;
  return c;
}

TEST(LogStepSelectorCache, UncoveredBudgetIsExact) {
  const std::size_t dim = 64, kv = 2, qh = 4, n = 300;
  const auto k = gaussian(n * kv * dim, 1), v = gaussian(n * kv * dim, 2), q = gaussian(qh * dim, 3);
  for (bool rotate : {false, true}) {
    logquant::KVCache<LogStepSelector> cache(cfg(dim, kv, rotate), LogStepSelector(100, 25));
    cache.append(k.data(), v.data(), n);
    ASSERT_EQ(cache.quantized_positions().size(), 0u);
    std::vector<float> out(qh * dim);
    cache.attend(q.data(), qh, out.data(), 0.125f);
    const auto ref = exact_attention(k, v, n, kv, dim, q, qh, 0.125);
    for (std::size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-5) << rotate;
  }
}

// Appending in one call or in pieces gives bit-identical caches; and every kernel set the CPU
// supports returns the scalar reference's output to kernel tolerance on a quantized cache.
TEST(LogStepSelectorCache, ChunkingInvarianceAndKernelSets) {
  const std::size_t dim = 64, kv = 2, qh = 4, n = 700;
  const auto k = gaussian(n * kv * dim, 4), v = gaussian(n * kv * dim, 5), q = gaussian(qh * dim, 6);
  for (bool rotate : {false, true}) {
    logquant::KVCache<LogStepSelector> whole(cfg(dim, kv, rotate), LogStepSelector(32, 8));
    whole.append(k.data(), v.data(), n);
    std::vector<float> expect(qh * dim), out(qh * dim);
    whole.attend(q.data(), qh, expect.data(), 0.125f);
    std::mt19937 rng(7);
    for (int rep = 0; rep < 3; ++rep) {
      logquant::KVCache<LogStepSelector> c(cfg(dim, kv, rotate), LogStepSelector(32, 8));
      for (std::size_t done = 0; done < n;) {
        const std::size_t s = std::min<std::size_t>(n - done, rng() % 50);
        c.append(k.data() + done * kv * dim, v.data() + done * kv * dim, s);
        done += s;
      }
      c.attend(q.data(), qh, out.data(), 0.125f);
      ASSERT_EQ(out, expect);
      ASSERT_EQ(c.memory_bytes(), whole.memory_bytes());
    }
    logquant::KVCache<LogStepSelector> scalar(cfg(dim, kv, rotate), LogStepSelector(32, 8),
                                              logquant::kernels::table_for(logquant::Isa::kScalar));
    scalar.append(k.data(), v.data(), n);
    std::vector<float> ref(qh * dim);
    scalar.attend(q.data(), qh, ref.data(), 0.125f);
    for (logquant::Isa isa : logquant::kernels::supported_isas()) {
      logquant::KVCache<LogStepSelector> c(cfg(dim, kv, rotate), LogStepSelector(32, 8),
                                           logquant::kernels::table_for(isa));
      c.append(k.data(), v.data(), n);
      c.attend(q.data(), qh, out.data(), 0.125f);
      for (std::size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], ref[i], 2e-3) << logquant::isa_name(isa);
    }
  }
}

}  // namespace
