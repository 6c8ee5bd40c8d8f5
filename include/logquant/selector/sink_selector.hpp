// StreamingLLM-style selector: the first `sink` tokens stay in full precision forever, plus a
// recent window of `recent` tokens that, like RecentSelector, demotes its oldest `group` tokens at
// once when full. The FP count never exceeds sink + recent and, once the window has filled, cycles
// between sink + recent - group + 1 and sink + recent.
#pragma once

#include <algorithm>
#include <cstddef>
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

 private:
  std::size_t sink_, recent_, group_;
  std::size_t seen_ = 0;
  std::size_t first_;  // recent FP positions are [first_, seen_) once seen_ > sink_
  std::vector<std::size_t> demoted_;
};

}  // namespace logquant
