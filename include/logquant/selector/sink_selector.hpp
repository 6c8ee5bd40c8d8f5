// StreamingLLM-style selector: the first `sink` tokens stay in full precision forever, plus a
// recent window of `recent` tokens that, like RecentSelector, demotes its oldest `group` tokens at
// once when full. The FP count never exceeds sink + recent and, once the window has filled, cycles
// between sink + recent - group + 1 and sink + recent.
#pragma once

#include <algorithm>
#include <type_traits>
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
  static constexpr std::size_t kDefaultGroup = 32;

  SinkSelector(std::size_t sink, std::size_t recent, std::size_t group = kDefaultGroup)
      : sink_(sink), recent_(recent), group_(std::min(group, recent)), first_(sink) {
    detail::require(recent >= 1, "recent window R must be >= 1 (SinkSelector, RecentSelector)");
    detail::require(group >= 1, "group must be >= 1 (SinkSelector, RecentSelector)");
    // capacity() = sink + recent must not wrap around.
    detail::require(sink <= std::numeric_limits<std::size_t>::max() - recent, [&] {
      return "SinkSelector: sink (" + std::to_string(sink) + ") + recent (" +
             std::to_string(recent) + ") overflows std::size_t (expected a sum below 2^" +
             std::to_string(8 * sizeof(std::size_t)) + ")";
    });
  }

  std::size_t sink() const { return sink_; }
  std::size_t recent() const { return recent_; }
  std::size_t group() const { return group_; }
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
        demoted_.clear();
        for (std::size_t p = first_; p < first_ + group_; ++p) demoted_.push_back(p);
        first_ += group_;
        on_demote(seen_, demoted_.data(), demoted_.size());
      }
      ++seen_;
    }
  }

  /// Serialization (selector.hpp). The state is sink, recent, group (as clamped) and size(); the
  /// start of the recent window follows from them.
  static constexpr const char* kStateName = "sink";
  std::vector<std::uint64_t> save_state() const { return {sink_, recent_, group_, seen_}; }
  static SinkSelector load_state(const std::vector<std::uint64_t>& state) {
    const char* name = "SinkSelector";
    detail::state_require(state.size() == 4, name, [&] {
      return std::to_string(state.size()) + " words (expected 4)";
    });
    const std::size_t sink = detail::state_word(state, 0, name, "sink");
    const std::size_t recent = detail::state_word(state, 1, name, "recent");
    const std::size_t group = detail::state_word(state, 2, name, "group");
    const std::size_t seen = detail::state_word(state, 3, name, "size");
    detail::state_require(recent >= 1 && group >= 1 && group <= recent, name, [&] {
      return "recent = " + std::to_string(recent) + ", group = " + std::to_string(group) +
             " (expected 1 <= group <= recent)";
    });
    detail::state_require(sink <= std::numeric_limits<std::size_t>::max() - recent, name, [&] {
      return "sink = " + std::to_string(sink) + ", recent = " + std::to_string(recent) +
             " (their sum overflows)";
    });
    SinkSelector s(sink, recent, group);
    s.seen_ = seen;
    // Demotions happen as tokens sink + recent + j * group arrive (j = 0, 1, ...). Nothing here
    // overflows: it only runs when seen - sink > recent >= group.
    if (seen > sink && seen - sink > recent)
      s.first_ = sink + ((seen - 1 - sink - recent) / group + 1) * group;
    return s;
  }

 private:
  std::size_t sink_, recent_, group_;
  std::size_t seen_ = 0;
  std::size_t first_;  // recent FP positions are [first_, seen_) once seen_ > sink_
  std::vector<std::size_t> demoted_;
};

}  // namespace logquant
