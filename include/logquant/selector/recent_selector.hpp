// KIVI's selector (arXiv 2402.02750): the newest `recent` tokens stay in full precision, an exact
// window. When a token arrives with `recent` FP tokens held, the single oldest of them is demoted,
// so once the window has filled the FP count is exactly `recent`. KIVI quantizes keys per channel
// over groups of tokens; that grouping is the storage's job, by position, so the window slides one
// token at a time rather than demoting a group at once. It is a sink window with no sink.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sink_selector.hpp"

namespace logquant {

class RecentSelector : public SinkSelector {
 public:
  explicit RecentSelector(std::size_t recent) : SinkSelector(0, recent) {}

  /// Serialization (selector.hpp): SinkSelector's state with sink = 0, under its own name so a
  /// file says which of the two wrote it.
  static constexpr const char* kStateName = "recent";
  static RecentSelector load_state(const std::vector<std::uint64_t>& state) {
    const SinkSelector base = SinkSelector::load_state(state);
    detail::state_require(base.sink() == 0, "RecentSelector", [&] {
      return "sink = " + std::to_string(base.sink()) + " (expected 0)";
    });
    RecentSelector s(base.recent());
    static_cast<SinkSelector&>(s) = base;
    return s;
  }
};

}  // namespace logquant
