// A LogQuant selector that demotes in smaller steps. LogSelector halves the oldest 2W FP entries
// at once, so its FP count drops to 2W + 1 after every compression (mean about 2.5W) and each key
// group holds W tokens spread over a wide stretch of positions. LogStepSelector(W, step) keeps the
// same list A, budget 3W, sink and log-spaced tail, but halves that region 2 * step entries at a
// time, sweeping a cursor over it: W / step small events do what one LogQuant compression does, the
// FP count stays within [3W - step + 1, 3W], and each key group covers a local stretch of positions.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../error.hpp"
#include "selector.hpp"

namespace logquant {

class LogStepSelector {
 public:
  /// `window` is W >= 1 (FP budget 3W); `step` tokens are demoted per event and must divide W.
  /// step == W is exactly LogSelector(W).
  LogStepSelector(std::size_t window, std::size_t step) : window_(window), step_(step) {
    detail::require(window >= 1, "LogStepSelector: window W must be >= 1");
    detail::require(window <= (std::size_t{1} << 40),
                    "LogStepSelector: window W is unreasonably large");
    detail::require(step >= 1 && step <= window && window % step == 0, [&] {
      return "LogStepSelector: step must be in 1 .. W and divide W (W = " + std::to_string(window) +
             ", step = " + std::to_string(step) + ")";
    });
    fp_.reserve(std::min<std::size_t>(3 * window_, 4096));
  }

  std::size_t window() const { return window_; }
  std::size_t step() const { return step_; }
  /// The most FP tokens held at once.
  std::size_t capacity() const { return 3 * window_; }
  std::size_t size() const { return seen_; }
  std::vector<std::size_t> full_precision_positions() const { return fp_; }

  void append(std::size_t n) { append(n, IgnoreDemotions{}); }

  template <class OnDemote>
  void append(std::size_t n, OnDemote&& on_demote) {
    for (std::size_t i = 0; i < n; ++i) {
      if (fp_.size() == 3 * window_) demote_step(on_demote);
      fp_.push_back(seen_++);
    }
  }

  /// Serialization (selector.hpp). The state is W, step, size(), then the FP list A.
  static constexpr const char* kStateName = "logstep";
  std::vector<std::uint64_t> save_state() const {
    std::vector<std::uint64_t> state{window_, step_, seen_};
    state.insert(state.end(), fp_.begin(), fp_.end());
    return state;
  }
  /// A is a function of W, step and size(); the words must hold exactly that A (checked against
  /// a closed form, O(log W) per entry, never by replaying the tokens).
  static LogStepSelector load_state(const std::vector<std::uint64_t>& state) {
    const char* name = "LogStepSelector";
    const std::size_t w = detail::state_word(state, 0, name, "window");
    const std::size_t g = detail::state_word(state, 1, name, "step");
    const std::size_t seen = detail::state_word(state, 2, name, "size");
    detail::state_require(w >= 1 && w <= (std::size_t{1} << 40), name,
                          [&] { return "window W = " + std::to_string(w) + " (expected 1 .. 2^40)"; });
    detail::state_require(g >= 1 && g <= w && w % g == 0, name, [&] {
      return "step = " + std::to_string(g) + " (expected a divisor of W = " + std::to_string(w) + ")";
    });
    const std::size_t count = state.size() - 3;
    const Layout lay = layout(w, g, seen);
    detail::state_require(count == lay.count, name, [&] {
      return std::to_string(count) + " FP positions for W = " + std::to_string(w) + ", step = " +
             std::to_string(g) + " after " + std::to_string(seen) + " tokens (expected " +
             std::to_string(lay.count) + ")";
    });
    LogStepSelector s(w, g);
    s.seen_ = seen;
    s.cursor_ = lay.halved;
    s.fp_.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t p = detail::state_word(state, 3 + i, name, "FP position");
      detail::state_require(p == lay.entry(w, i), name, [&] {
        return "FP position " + std::to_string(i) + " = " + std::to_string(p) +
               " is not where W = " + std::to_string(w) + ", step = " + std::to_string(g) +
               " puts it after " + std::to_string(seen) + " tokens";
      });
      s.fp_[i] = p;
    }
    return s;
  }

 private:
  // The list A after `seen` tokens, in closed form. Events happen on arrivals 3W, 3W + step, ...;
  // after E of them, R = E / (W / step) rounds are complete (each is one LogQuant compression)
  // and the current round has halved its first `halved` = (E mod (W / step)) * step pairs. With
  // L(k) the list of a LogSelector after R compressions extended densely (k < W: log slot k,
  // else (R + 1)W + k - W), A[i] = L(2i) for i < halved and L(i + halved) after.
  struct Layout {
    std::size_t rounds = 0, halved = 0, count = 0;
    std::size_t list(std::size_t w, std::size_t k) const {
      return k < w ? log_slot(w, rounds, k) : (rounds + 1) * w + (k - w);
    }
    std::size_t entry(std::size_t w, std::size_t i) const {
      return i < halved ? list(w, 2 * i) : list(w, i + halved);
    }
  };
  static Layout layout(std::size_t w, std::size_t g, std::size_t seen) {
    Layout lay;
    if (seen <= 3 * w) {
      lay.count = seen;
      return lay;
    }
    const std::size_t events = (seen - 1 - 3 * w) / g + 1, per_round = w / g;
    lay.rounds = events / per_round;
    lay.halved = (events % per_round) * g;
    lay.count = seen - lay.rounds * w - lay.halved;
    return lay;
  }

  // Entry i of LogSelector's log-sparse part after k compressions (as in LogSelector).
  static std::size_t log_slot(std::size_t w, std::size_t k, std::size_t i) {
    const std::size_t kept = (w + 1) / 2;
    if (i == 0) return 0;  // the sink
    for (; k > 0 && i < kept; --k) i *= 2;
    return k == 0 ? i : k * w + w % 2 + 2 * (i - kept);
  }

  // Halve A[c .. c + 2 step) at the cursor c: demote its odd entries (step tokens, all from one
  // local stretch of positions). c advances by step; after W / step events the oldest 2W entries
  // of the round's start have been halved, exactly one LogQuant compression, and c returns to 0.
  // The cursor starts at even offsets, so A[0] (the sink) is always kept.
  template <class OnDemote>
  void demote_step(OnDemote& on_demote) {
    demoted_.clear();
    const std::size_t c = cursor_;
    std::size_t kept = c;
    for (std::size_t j = c; j < c + 2 * step_; ++j) {
      if ((j - c) % 2 == 0)
        fp_[kept++] = fp_[j];
      else
        demoted_.push_back(fp_[j]);
    }
    for (std::size_t j = c + 2 * step_; j < fp_.size(); ++j) fp_[kept++] = fp_[j];
    fp_.resize(kept);
    cursor_ = c + step_ == window_ ? 0 : c + step_;
    on_demote(seen_, demoted_.data(), demoted_.size());
  }

  std::size_t window_, step_;
  std::size_t seen_ = 0;
  std::size_t cursor_ = 0;            // entries of A already halved in the current round
  std::vector<std::size_t> fp_;       // the ordered list A
  std::vector<std::size_t> demoted_;  // scratch for one event
};

}  // namespace logquant
