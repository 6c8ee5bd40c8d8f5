// LogQuant's token selector (SPEC §1): a budget of 3W full-precision tokens. When a token arrives
// with the budget full, the odd entries of the oldest 2W FP tokens are demoted (W tokens, one key
// group) and the even ones survive at half the density, so kept tokens thin out exponentially with
// distance. Position 0, the attention sink, is always entry 0 and is never demoted.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
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
    // Capped: 3W slots of a huge (accepted) W would be a huge allocation up front.
    fp_.reserve(std::min<std::size_t>(3 * window_, 4096));
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

  /// Serialization (selector.hpp). The state is W, size(), then the FP list A.
  static constexpr const char* kStateName = "log";
  std::vector<std::uint64_t> save_state() const {
    std::vector<std::uint64_t> state{window_, seen_};
    state.insert(state.end(), fp_.begin(), fp_.end());
    return state;
  }
  /// A is a function of W and size(); the words must hold exactly that A (checked in
  /// O(W log W), never by replaying the tokens).
  static LogSelector load_state(const std::vector<std::uint64_t>& state) {
    const char* name = "LogSelector";
    const std::size_t w = detail::state_word(state, 0, name, "window");
    const std::size_t seen = detail::state_word(state, 1, name, "size");
    detail::state_require(w >= 1 && w <= (std::size_t{1} << 40), name,
                          [&] { return "window W = " + std::to_string(w) + " (expected 1 .. 2^40)"; });
    const std::size_t count = state.size() - 2;
    // Before the first compression A = [0, seen); afterwards W log-sparse slots and a dense window
    // [seen - (count - W), seen), with count - 2W - 1 tokens appended since the last compression.
    // (count is the number of words present, so the work below is bounded by the input.)
    const bool compressed = seen > 3 * w;
    const bool length_ok = compressed ? count >= 2 * w + 1 && count <= 3 * w &&
                                            count - 2 * w - 1 == (seen - 1 - 3 * w) % w
                                      : count == seen;
    detail::state_require(length_ok, name, [&] {
      return std::to_string(count) + " FP positions for W = " + std::to_string(w) +
             " after " + std::to_string(seen) + " tokens";
    });
    LogSelector s(w);
    s.seen_ = seen;
    s.fp_.resize(count);
    const std::size_t compressions = compressed ? (seen - 1 - 3 * w) / w + 1 : 0;
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t p = detail::state_word(state, 2 + i, name, "FP position");
      const bool ok = !compressed ? p == i
                      : i < w     ? p == log_slot(w, compressions, i)
                                  : p == seen - (count - w) + (i - w);
      detail::state_require(ok, name, [&] {
        return "FP position " + std::to_string(i) + " = " + std::to_string(p) +
               " is not where W = " + std::to_string(w) + " puts it after " +
               std::to_string(seen) + " tokens";
      });
      s.fp_[i] = p;
    }
    return s;
  }

 private:
  // Entry i of the log-sparse part after k compressions, SPEC §1 unrolled. Before any, the part
  // is [0, W). Compression k (token (k + 2)W arriving) keeps the even entries of the old part,
  // then every other token of [kW, (k + 1)W) from offset W % 2; so entry i < ceil(W/2) is entry 2i
  // of the part before, and doubling i reaches a block within log2(W) steps.
  static std::size_t log_slot(std::size_t w, std::size_t k, std::size_t i) {
    const std::size_t kept = (w + 1) / 2;
    if (i == 0) return 0;  // the sink
    for (; k > 0 && i < kept; --k) i *= 2;
    return k == 0 ? i : k * w + w % 2 + 2 * (i - kept);
  }

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
