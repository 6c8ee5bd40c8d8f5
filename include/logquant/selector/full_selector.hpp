// The full-precision baseline: nothing is ever demoted. The accuracy reference and the speed
// baseline every quantized policy is compared with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "selector.hpp"

namespace logquant {

class FullSelector {
 public:
  std::size_t size() const { return seen_; }
  std::vector<std::size_t> full_precision_positions() const {
    std::vector<std::size_t> fp(seen_);
    for (std::size_t p = 0; p < seen_; ++p) fp[p] = p;
    return fp;
  }
  void append(std::size_t n) { seen_ += n; }
  template <class OnDemote>
  void append(std::size_t n, OnDemote&&) {
    seen_ += n;
  }

  /// Serialization (selector.hpp): the state is the one word size().
  static constexpr const char* kStateName = "full";
  std::vector<std::uint64_t> save_state() const { return {seen_}; }
  static FullSelector load_state(const std::vector<std::uint64_t>& state) {
    detail::state_require(state.size() == 1, "FullSelector", [&] {
      return std::to_string(state.size()) + " words (expected 1)";
    });
    FullSelector s;
    s.seen_ = detail::state_word(state, 0, "FullSelector", "size");
    return s;
  }

 private:
  std::size_t seen_ = 0;
};

}  // namespace logquant
