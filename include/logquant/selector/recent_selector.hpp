// KIVI's selector (arXiv 2402.02750): the most recent tokens stay in full precision. Keys are
// quantized per channel over a group of tokens, so tokens leave the window in groups: when a token
// arrives with `recent` FP tokens held, the oldest `group` of them are demoted together. The FP
// count therefore never exceeds `recent` and, once the window has filled, cycles between
// recent - group + 1 and recent (group is clamped to recent). It is a sink window with no sink.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sink_selector.hpp"

namespace logquant {

class RecentSelector : public SinkSelector {
 public:
  explicit RecentSelector(std::size_t recent, std::size_t group = kDefaultGroup)
      : SinkSelector(0, recent, group) {}

  /// Serialization (selector.hpp): SinkSelector's state with sink = 0, under its own name so a
  /// file says which of the two wrote it.
  static constexpr const char* kStateName = "recent";
  static RecentSelector load_state(const std::vector<std::uint64_t>& state) {
    const SinkSelector base = SinkSelector::load_state(state);
    detail::state_require(base.sink() == 0, "RecentSelector", [&] {
      return "sink = " + std::to_string(base.sink()) + " (expected 0)";
    });
    RecentSelector s(base.recent(), base.group());
    static_cast<SinkSelector&>(s) = base;
    return s;
  }
};

}  // namespace logquant
