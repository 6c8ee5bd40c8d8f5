// StreamingLLM-style selector: the first `sink` tokens stay in full precision forever, plus an
// exact recent window of the newest `recent` tokens. The window slides one token at a time: when
// a token arrives and the window already holds `recent` tokens, its single oldest token is
// demoted (one on_demote call with count 1). The FP count is exactly min(size, sink) +
// min(size - sink, recent) (the second term 0 while size <= sink), constant once the window has
// filled. Tokens are not demoted in groups: grouping keys for per-channel quantization is the
// storage's job, by position, independent of demotion events.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../error.hpp"
#include "selector.hpp"

namespace logquant {

class SinkSelector {
 public:
  SinkSelector(std::size_t sink, std::size_t recent) : sink_(sink), recent_(recent), first_(sink) {
    detail::require(recent >= 1, "recent window R must be >= 1 (SinkSelector, RecentSelector)");
    // capacity() = sink + recent must not wrap around.
    detail::require(sink <= std::numeric_limits<std::size_t>::max() - recent, [&] {
      return "SinkSelector: sink (" + std::to_string(sink) + ") + recent (" +
             std::to_string(recent) + ") overflows std::size_t (expected a sum below 2^" +
             std::to_string(8 * sizeof(std::size_t)) + ")";
    });
  }

  std::size_t sink() const { return sink_; }
  std::size_t recent() const { return recent_; }
  std::size_t capacity() const { return sink_ + recent_; }
  std::size_t size() const { return seen_; }

  std::vector<std::size_t> full_precision_positions() const {
    std::vector<std::size_t> fp;
    for (std::size_t p = 0; p < std::min(seen_, sink_); ++p) fp.push_back(p);
    for (std::size_t p = first_; p < seen_; ++p) fp.push_back(p);
    return fp;
  }

  void append(std::size_t n) { append(n, IgnoreDemotions{}); }

  template <class OnDemote>
  void append(std::size_t n, OnDemote&& on_demote) {
    for (std::size_t i = 0; i < n; ++i) {
      if (seen_ >= first_ && seen_ - first_ == recent_) {
        const std::size_t oldest = first_++;
        on_demote(seen_, &oldest, std::size_t{1});
      }
      ++seen_;
    }
  }

  /// Serialization (selector.hpp). The state is sink, recent and size(); the start of the recent
  /// window follows from them.
  static constexpr const char* kStateName = "sink";
  std::vector<std::uint64_t> save_state() const { return {sink_, recent_, seen_}; }
  static SinkSelector load_state(const std::vector<std::uint64_t>& state) {
    const char* name = "SinkSelector";
    detail::state_require(state.size() == 3, name, [&] {
      return std::to_string(state.size()) + " words (expected 3)";
    });
    const std::size_t sink = detail::state_word(state, 0, name, "sink");
    const std::size_t recent = detail::state_word(state, 1, name, "recent");
    const std::size_t seen = detail::state_word(state, 2, name, "size");
    detail::state_require(recent >= 1, name, [&] {
      return "recent = " + std::to_string(recent) + " (expected >= 1)";
    });
    detail::state_require(sink <= std::numeric_limits<std::size_t>::max() - recent, name, [&] {
      return "sink = " + std::to_string(sink) + ", recent = " + std::to_string(recent) +
             " (their sum overflows)";
    });
    SinkSelector s(sink, recent);
    s.seen_ = seen;
    // One demotion per token past sink + recent: the window is the newest `recent` tokens. No
    // overflow: seen - sink > recent here.
    if (seen > sink && seen - sink > recent) s.first_ = seen - recent;
    return s;
  }

 private:
  std::size_t sink_, recent_;
  std::size_t seen_ = 0;
  std::size_t first_;  // recent FP positions are [first_, seen_) once seen_ > sink_
};

}  // namespace logquant
