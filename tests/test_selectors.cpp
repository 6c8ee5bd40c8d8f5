// Token selectors: the SPEC §1 worked examples, the invariants of LogQuant's rule for many W and n,
// chunking invariance, and the baselines' exact windows (FP sets, one-token demotions, state).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
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
    check_chunking<RecentSelector>([] { return RecentSelector(40); }, 1500, seed);
    check_chunking<SinkSelector>([] { return SinkSelector(4, 20); }, 1500, seed);
    check_chunking<FullSelector>([] { return FullSelector(); }, 500, seed);
  }
}

// The exact window: FP positions [0, min(size, sink)) and [max(sink, size - recent), size).
Positions sink_window_fp(std::size_t sink, std::size_t recent, std::size_t size) {
  const std::size_t first = size > sink + recent ? size - recent : sink;
  return concat(range(0, std::min(size, sink)), first < size ? range(first, size) : Positions{});
}

using Events = std::vector<std::pair<std::size_t, Positions>>;

// Appends n tokens to `s` in chunks drawn by `next_chunk`, checking after every append that the
// FP positions are exactly the window, and in every callback that it reports one position, the
// oldest window position, before the trigger enters. Returns the demotion events.
template <class Selector, class NextChunk>
Events run_exact_window(Selector s, std::size_t n, NextChunk&& next_chunk) {
  const std::size_t sink = s.sink(), recent = s.recent();
  Events events;
  std::size_t window_first = sink;  // the test's own model of the window start
  while (s.size() < n) {
    const std::size_t step = std::min(n - s.size(), next_chunk());
    s.append(step, [&](std::size_t trigger, const std::size_t* p, std::size_t count) {
      EXPECT_EQ(s.size(), trigger);  // called before the trigger enters
      EXPECT_EQ(count, 1u) << "trigger " << trigger;
      EXPECT_EQ(trigger - window_first, recent) << "demoted before the window was full";
      EXPECT_EQ(p[0], window_first) << "trigger " << trigger << ": not the oldest window position";
      ++window_first;
      events.emplace_back(trigger, Positions(p, p + count));
    });
    const Positions fp = s.full_precision_positions();
    EXPECT_EQ(fp, sink_window_fp(sink, recent, s.size())) << "size " << s.size();
    if (s.size() > sink) {
      EXPECT_EQ(fp.size(), sink + std::min(s.size() - sink, recent));
    } else {
      EXPECT_EQ(fp.size(), s.size());
    }
    if (::testing::Test::HasFailure()) break;
  }
  return events;
}

// Every token from sink + recent on demotes exactly the token `recent` before it.
Events expected_events(std::size_t sink, std::size_t recent, std::size_t n) {
  Events e;
  for (std::size_t t = sink + recent; t < n; ++t) e.emplace_back(t, Positions{t - recent});
  return e;
}

// One token at a time, one call, fixed and random chunk sizes (zero-sized chunks included): the
// same exact window after every append and the same callback sequence.
template <class Selector>
void check_exact_window(const Selector& fresh, std::size_t n) {
  SCOPED_TRACE("sink " + std::to_string(fresh.sink()) + ", recent " +
               std::to_string(fresh.recent()) + ", n " + std::to_string(n));
  const Events want = expected_events(fresh.sink(), fresh.recent(), n);
  ASSERT_EQ(run_exact_window(fresh, n, [] { return std::size_t{1}; }), want);
  ASSERT_EQ(run_exact_window(fresh, n, [n] { return n; }), want);
  for (std::size_t c : {2, 3, 7, 16, 33})
    ASSERT_EQ(run_exact_window(fresh, n, [c] { return c; }), want) << "chunks of " << c;
  for (std::uint32_t seed = 1; seed <= 3; ++seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> chunk(0, 2 * (fresh.sink() + fresh.recent()) + 3);
    ASSERT_EQ(run_exact_window(fresh, n, [&] { return chunk(rng); }), want) << "seed " << seed;
  }
}

TEST(SinkSelector, ExactWindowEveryChunking) {
  for (std::size_t sink : {0, 1, 3, 4, 7})
    for (std::size_t recent : {1, 2, 5, 16, 33}) check_exact_window(SinkSelector(sink, recent), 300);
}

TEST(RecentSelector, ExactWindowEveryChunking) {
  for (std::size_t recent : {1, 2, 3, 10, 48, 128}) check_exact_window(RecentSelector(recent), 400);
}

TEST(RecentSelector, KeepsExactlyTheNewest) {
  RecentSelector s(10);
  s.append(10);
  EXPECT_EQ(s.full_precision_positions(), range(0, 10));
  Events events;
  s.append(1, [&](std::size_t trigger, const std::size_t* p, std::size_t c) {
    events.emplace_back(trigger, Positions(p, p + c));
  });
  EXPECT_EQ(events, (Events{{10, {0}}}));
  EXPECT_EQ(s.full_precision_positions(), range(1, 11));
  s.append(489);
  EXPECT_EQ(s.full_precision_positions(), range(490, 500));
}

TEST(SinkSelector, KeepsSinkAndRecentWindow) {
  SinkSelector s(4, 8);
  s.append(3);
  EXPECT_EQ(s.full_precision_positions(), range(0, 3));
  s.append(9);  // 12 tokens: exactly sink + recent
  EXPECT_EQ(s.full_precision_positions(), range(0, 12));
  s.append(1);
  EXPECT_EQ(s.full_precision_positions(), concat(range(0, 4), range(5, 13)));
  s.append(387);
  EXPECT_EQ(s.full_precision_positions(), concat(range(0, 4), range(392, 400)));
}

// save_state is {sink, recent, size}; load_state restores the window and the selector goes on
// exactly as the original would, at every size around and well past the window filling.
template <class Selector>
void check_state_round_trip(const Selector& fresh, std::size_t max_n) {
  for (std::size_t n = 0; n <= max_n; ++n) {
    Selector a = fresh;
    a.append(n);
    const std::vector<std::uint64_t> state = a.save_state();
    ASSERT_EQ(state, (std::vector<std::uint64_t>{fresh.sink(), fresh.recent(), n}));
    Selector b = Selector::load_state(state);
    ASSERT_EQ(b.size(), n);
    ASSERT_EQ(b.full_precision_positions(), a.full_precision_positions()) << "n " << n;
    ASSERT_EQ(b.save_state(), state);
    Events ea, eb;
    a.append(40, [&](std::size_t t, const std::size_t* p, std::size_t c) { ea.emplace_back(t, Positions(p, p + c)); });
    b.append(40, [&](std::size_t t, const std::size_t* p, std::size_t c) { eb.emplace_back(t, Positions(p, p + c)); });
    ASSERT_EQ(eb, ea) << "n " << n;
    ASSERT_EQ(b.full_precision_positions(), sink_window_fp(fresh.sink(), fresh.recent(), n + 40));
  }
}

TEST(SinkSelector, StateRoundTripsAtEverySize) {
  for (std::size_t sink : {0, 1, 4, 9})
    for (std::size_t recent : {1, 2, 7, 20}) check_state_round_trip(SinkSelector(sink, recent), 120);
  for (std::size_t recent : {1, 5, 24}) check_state_round_trip(RecentSelector(recent), 120);
}

// The state is exactly 3 words: the old 4-word {sink, recent, group, size} is refused, naming the
// count; so are other counts, a zero window, an overflowing sum, and (RecentSelector) a sink.
TEST(SinkSelector, LoadStateRefusesBadWords) {
  using W = std::vector<std::uint64_t>;
  const std::size_t max = std::numeric_limits<std::size_t>::max();
  for (const W& old : {W{4, 8, 8, 100}, W{0, 8, 4, 3}}) {
    try {
      SinkSelector::load_state(old);
      FAIL() << "a 4-word state loaded";
    } catch (const logquant::FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("4 words (expected 3)"), std::string::npos) << e.what();
    }
    EXPECT_THROW(RecentSelector::load_state(old), logquant::FormatError);
  }
  EXPECT_THROW(SinkSelector::load_state(W{}), logquant::FormatError);
  EXPECT_THROW(SinkSelector::load_state(W{4, 8}), logquant::FormatError);
  EXPECT_THROW(SinkSelector::load_state(W{4, 8, 1, 2, 3}), logquant::FormatError);
  EXPECT_THROW(SinkSelector::load_state(W{4, 0, 10}), logquant::FormatError);  // recent 0
  EXPECT_THROW(SinkSelector::load_state(W{max - 7, 8, 0}), logquant::FormatError);
  EXPECT_NO_THROW(SinkSelector::load_state(W{max - 8, 8, 100}));
  EXPECT_THROW(RecentSelector::load_state(W{1, 8, 20}), logquant::FormatError);  // a sink
  EXPECT_NO_THROW(RecentSelector::load_state(W{0, 8, 20}));
}

// Arguments: the window must be >= 1, and sink + recent (capacity()) must not wrap.
TEST(SinkSelector, ValidatesItsArguments) {
  const std::size_t max = std::numeric_limits<std::size_t>::max();
  EXPECT_THROW(SinkSelector(4, 0), logquant::InvalidArgument);
  try {
    SinkSelector bad(max - 7, 8);
    FAIL() << "sink + recent wrapped to " << bad.capacity();
  } catch (const logquant::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("sink ("), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("overflows"), std::string::npos) << e.what();
  }
  EXPECT_THROW(SinkSelector(max, 1), logquant::InvalidArgument);
  EXPECT_EQ(SinkSelector(max - 8, 8).capacity(), max);  // the largest sum is fine
  EXPECT_EQ(SinkSelector(0, 8).full_precision_positions(), Positions{});
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
