// Token selectors: the SPEC §1 worked examples, the invariants of LogQuant's rule for many W and n,
// chunking invariance, and the baselines' documented FP counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include <logquant/logquant.hpp>

namespace {

using logquant::FullSelector;
using logquant::LogSelector;
using logquant::RecentSelector;
using logquant::SinkSelector;
using Positions = std::vector<std::size_t>;

Positions range(std::size_t a, std::size_t b) {
  Positions r(b - a);
  std::iota(r.begin(), r.end(), a);
  return r;
}
Positions concat(Positions a, const Positions& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// SPEC §1 pseudocode, written independently with erase on a list.
Positions reference_log(std::size_t W, std::size_t n) {
  Positions A;
  for (std::size_t t = 0; t < n; ++t) {
    if (A.size() == 3 * W) {
      Positions kept;
      for (std::size_t j = 0; j < 2 * W; j += 2) kept.push_back(A[j]);
      kept.insert(kept.end(), A.begin() + static_cast<std::ptrdiff_t>(2 * W), A.end());
      A = kept;
    }
    A.push_back(t);
  }
  return A;
}

Positions log_fp(std::size_t W, std::size_t n) {
  LogSelector s(W);
  s.append(n);
  return s.full_precision_positions();
}

TEST(LogSelector, SpecWorkedExamples) {
  EXPECT_EQ(log_fp(2, 5), range(0, 5));
  EXPECT_EQ(log_fp(2, 8), concat({0, 2}, range(4, 8)));
  EXPECT_EQ(log_fp(2, 13), concat({0, 8}, range(10, 13)));
  EXPECT_EQ(log_fp(2, 64), concat({0, 58}, range(60, 64)));
  EXPECT_EQ(log_fp(4, 12), range(0, 12));
  EXPECT_EQ(log_fp(4, 13), concat({0, 2, 4, 6}, range(8, 13)));
  EXPECT_EQ(log_fp(4, 17), concat({0, 4, 8, 10}, range(12, 17)));
  EXPECT_EQ(log_fp(4, 20), concat({0, 4, 8, 10}, range(12, 20)));
  EXPECT_EQ(log_fp(4, 33), concat({0, 20, 24, 26}, range(28, 33)));
  EXPECT_EQ(log_fp(4, 64), concat({0, 48, 52, 54}, range(56, 64)));
  EXPECT_EQ(log_fp(8, 200), concat({0, 160, 168, 172, 176, 178, 180, 182}, range(184, 200)));
}

// Invariants for every W up to 64 and n up to 1000 (and a few thousand for small W), one token at
// a time, checked against the reference rule after every token.
TEST(LogSelector, InvariantsAgainstReference) {
  for (std::size_t W = 1; W <= 64; ++W) {
    LogSelector s(W);
    std::set<std::size_t> demoted_ever;
    const std::size_t n_max = W <= 8 ? 3000 : 1000;
    for (std::size_t t = 0; t < n_max; ++t) {
      std::vector<std::pair<std::size_t, Positions>> events;
      s.append(1, [&](std::size_t trigger, const std::size_t* p, std::size_t count) {
        events.emplace_back(trigger, Positions(p, p + count));
      });
      const Positions fp = s.full_precision_positions();
      ASSERT_EQ(s.size(), t + 1);
      // A compression happens exactly when t = 3W, 4W, ... arrives and demotes exactly W tokens.
      const bool expect_event = t >= 3 * W && t % W == 0;
      ASSERT_EQ(events.size(), expect_event ? 1u : 0u) << "W=" << W << " t=" << t;
      if (expect_event) {
        ASSERT_EQ(events[0].first, t);
        ASSERT_EQ(events[0].second.size(), W);
        ASSERT_TRUE(std::is_sorted(events[0].second.begin(), events[0].second.end()));
        for (std::size_t p : events[0].second) {
          ASSERT_TRUE(demoted_ever.insert(p).second) << "demoted twice: " << p;
          ASSERT_NE(p, 0u) << "the sink was demoted";
        }
      }
      // FP count: n while n <= 3W, then cycling 2W+1 .. 3W.
      const std::size_t n = t + 1;
      if (n <= 3 * W) {
        ASSERT_EQ(fp.size(), n);
      } else {
        ASSERT_GE(fp.size(), 2 * W + 1);
        ASSERT_LE(fp.size(), 3 * W);
      }
      ASSERT_EQ(fp.front(), 0u);
      ASSERT_TRUE(std::is_sorted(fp.begin(), fp.end()));
      for (std::size_t p : fp) ASSERT_EQ(demoted_ever.count(p), 0u) << "demoted token came back";
      ASSERT_EQ(fp.size() + demoted_ever.size(), n);
      if (t % 97 == 0 || t + 1 == n_max) {
        ASSERT_EQ(fp, reference_log(W, n)) << "W=" << W;
      }
    }
  }
}

// Appending in random chunks gives the same FP set and the same demotion events as token by token.
template <class Selector>
void check_chunking(Selector make(), std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  auto run = [&](bool chunked) {
    Selector s = make();
    std::vector<std::pair<std::size_t, Positions>> events;
    auto record = [&](std::size_t trigger, const std::size_t* p, std::size_t count) {
      events.emplace_back(trigger, Positions(p, p + count));
    };
    std::size_t done = 0;
    while (done < n) {
      const std::size_t step =
          chunked ? std::min<std::size_t>(n - done, std::uniform_int_distribution<std::size_t>(0, 97)(rng)) : 1;
      s.append(step, record);
      done += step;
    }
    return std::make_pair(s.full_precision_positions(), events);
  };
  const auto one = run(false);
  for (int rep = 0; rep < 5; ++rep) ASSERT_EQ(run(true), one);
}

TEST(Selectors, ChunkingInvariance) {
  for (std::uint32_t seed = 1; seed <= 4; ++seed) {
    check_chunking<LogSelector>([] { return LogSelector(5); }, 1500, seed);
    check_chunking<LogSelector>([] { return LogSelector(1); }, 300, seed);
    check_chunking<RecentSelector>([] { return RecentSelector(40, 16); }, 1500, seed);
    check_chunking<SinkSelector>([] { return SinkSelector(4, 20, 8); }, 1500, seed);
    check_chunking<FullSelector>([] { return FullSelector(); }, 500, seed);
  }
}

TEST(RecentSelector, KeepsMostRecentAndDemotesInGroups) {
  RecentSelector s(10, 4);
  s.append(10);
  EXPECT_EQ(s.full_precision_positions(), range(0, 10));
  std::vector<Positions> events;
  s.append(1, [&](std::size_t trigger, const std::size_t* p, std::size_t c) {
    EXPECT_EQ(trigger, 10u);
    events.emplace_back(p, p + c);
  });
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], range(0, 4));
  EXPECT_EQ(s.full_precision_positions(), range(4, 11));
  // Documented cycle: between recent - group + 1 and recent.
  for (std::size_t t = 11; t < 500; ++t) {
    s.append(1);
    const auto fp = s.full_precision_positions();
    ASSERT_GE(fp.size(), 7u);
    ASSERT_LE(fp.size(), 10u);
    ASSERT_EQ(fp.back(), t);
    ASSERT_EQ(fp.front(), t + 1 - fp.size());
  }
  EXPECT_EQ(RecentSelector(3, 32).group(), 3u);  // group clamps to the window
}

TEST(SinkSelector, KeepsSinkAndRecentWindow) {
  SinkSelector s(4, 8, 4);
  s.append(3);
  EXPECT_EQ(s.full_precision_positions(), range(0, 3));
  s.append(9);  // 12 tokens: exactly sink + recent
  EXPECT_EQ(s.full_precision_positions(), range(0, 12));
  s.append(1);
  EXPECT_EQ(s.full_precision_positions(), concat(range(0, 4), range(8, 13)));
  for (std::size_t t = 13; t < 400; ++t) {
    s.append(1);
    const auto fp = s.full_precision_positions();
    ASSERT_EQ(Positions(fp.begin(), fp.begin() + 4), range(0, 4));
    ASSERT_GE(fp.size(), 4u + 8 - 4 + 1);
    ASSERT_LE(fp.size(), 12u);
    ASSERT_EQ(fp.back(), t);
  }
}

// Arguments: the window and group must be >= 1, and sink + recent (capacity()) must not wrap.
// The same checks guard load_state, which must throw FormatError for words a file could hold.
TEST(SinkSelector, ValidatesItsArguments) {
  const std::size_t max = std::numeric_limits<std::size_t>::max();
  EXPECT_THROW(SinkSelector(4, 0), logquant::InvalidArgument);
  EXPECT_THROW(SinkSelector(4, 8, 0), logquant::InvalidArgument);
  try {
    SinkSelector bad(max - 7, 8);
    FAIL() << "sink + recent wrapped to " << bad.capacity();
  } catch (const logquant::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("sink ("), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("overflows"), std::string::npos) << e.what();
  }
  EXPECT_THROW(SinkSelector(max, 1), logquant::InvalidArgument);
  EXPECT_EQ(SinkSelector(max - 8, 8).capacity(), max);  // the largest sum is fine
  EXPECT_EQ(SinkSelector(0, 8, 4).full_precision_positions(), Positions{});
  EXPECT_EQ(SinkSelector(7, 8, 32).group(), 8u);  // group clamps to the window
  EXPECT_THROW(SinkSelector::load_state({max - 7, 8, 8, 0}), logquant::FormatError);
  EXPECT_THROW(SinkSelector::load_state({4, 0, 1, 0}), logquant::FormatError);
  EXPECT_NO_THROW(SinkSelector::load_state({max - 8, 8, 8, 100}));
}

TEST(FullSelector, KeepsEverything) {
  FullSelector s;
  s.append(0);
  EXPECT_TRUE(s.full_precision_positions().empty());
  s.append(77);
  EXPECT_EQ(s.full_precision_positions(), range(0, 77));
  EXPECT_EQ(s.size(), 77u);
}

TEST(Selectors, BadArgumentsThrow) {
  EXPECT_THROW(LogSelector(0), logquant::InvalidArgument);
  EXPECT_THROW(RecentSelector(0), logquant::InvalidArgument);
  EXPECT_THROW(RecentSelector(4, 0), logquant::InvalidArgument);
  EXPECT_THROW(SinkSelector(4, 0), logquant::InvalidArgument);
  try {
    LogSelector bad(0);
    FAIL();
  } catch (const logquant::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("window W"), std::string::npos);
  }
}

static_assert(logquant::is_selector_v<LogSelector>);
static_assert(logquant::is_selector_v<RecentSelector>);
static_assert(logquant::is_selector_v<SinkSelector>);
static_assert(logquant::is_selector_v<FullSelector>);
static_assert(!logquant::is_selector_v<int>);

}  // namespace
