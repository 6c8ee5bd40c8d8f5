// LogQuant's token selector (SPEC §1): a budget of 3W full-precision tokens. When a token arrives
// with the budget full, the odd entries of the oldest 2W FP tokens are demoted (W tokens, one key
// group) and the even ones survive at half the density, so kept tokens thin out exponentially with
// distance. Position 0, the attention sink, is always entry 0 and is never demoted.
#pragma once

#include <cstddef>
#include <vector>

#include "../error.hpp"
#include "selector.hpp"

namespace logquant {

class LogSelector {
 public:
  /// `window` is W >= 1; the FP budget is 3W tokens.
  explicit LogSelector(std::size_t window) : window_(window) {
    detail::require(window >= 1, "LogSelector: window W must be >= 1");
    detail::require(window <= (std::size_t{1} << 40), "LogSelector: window W is unreasonably large");
    fp_.reserve(3 * window_);
  }

  std::size_t window() const { return window_; }
  /// The most FP tokens held at once.
  std::size_t capacity() const { return 3 * window_; }
  std::size_t size() const { return seen_; }
  std::vector<std::size_t> full_precision_positions() const { return fp_; }

  void append(std::size_t n) { append(n, IgnoreDemotions{}); }

  template <class OnDemote>
  void append(std::size_t n, OnDemote&& on_demote) {
    for (std::size_t i = 0; i < n; ++i) {
      if (fp_.size() == 3 * window_) compress(on_demote);
      fp_.push_back(seen_++);
    }
  }

 private:
  // Demote A[1], A[3], ..., A[2W-1]; keep A[0], A[2], ..., A[2W-2] followed by A[2W .. 3W-1].
  template <class OnDemote>
  void compress(OnDemote& on_demote) {
    demoted_.clear();
    std::size_t kept = 0;
    for (std::size_t j = 0; j < 2 * window_; ++j) {
      if (j % 2 == 0)
        fp_[kept++] = fp_[j];
      else
        demoted_.push_back(fp_[j]);
    }
    for (std::size_t j = 2 * window_; j < 3 * window_; ++j) fp_[kept++] = fp_[j];
    fp_.resize(kept);
    on_demote(seen_, demoted_.data(), demoted_.size());
  }

  std::size_t window_;
  std::size_t seen_ = 0;
  std::vector<std::size_t> fp_;       // the ordered list A of SPEC §1
  std::vector<std::size_t> demoted_;  // scratch for one compression
};

}  // namespace logquant
