// What a token selector is. A selector decides which cached positions stay in full precision (FP);
// the cache quantizes exactly the positions a selector demotes, once, as one key group. Any type
// with the members below works with KVCache, including one a user writes:
//
//   std::size_t size() const;                               // tokens appended so far
//   std::vector<std::size_t> full_precision_positions() const;  // ascending
//   void append(std::size_t n);                             // n >= 0 new tokens at the end
//   template <class F> void append(std::size_t n, F&& on_demote);
//
// append(n, on_demote) processes the n tokens one at a time. When token t's arrival demotes
// positions, it calls on_demote(t, positions, count) *before* t enters: positions are ascending,
// all < t and all currently FP; they leave the FP set for good. Appending in one call or in any
// split must give the same sequence of calls (chunking invariance).
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

namespace logquant {

/// The callback type used when demotions are not needed.
struct IgnoreDemotions {
  void operator()(std::size_t, const std::size_t*, std::size_t) const noexcept {}
};

template <class S, class = void>
struct is_selector : std::false_type {};

template <class S>
struct is_selector<
    S, std::void_t<decltype(std::declval<const S&>().size()),
                   decltype(std::declval<const S&>().full_precision_positions()),
                   decltype(std::declval<S&>().append(std::size_t{})),
                   decltype(std::declval<S&>().append(std::size_t{}, IgnoreDemotions{}))>>
    : std::is_same<decltype(std::declval<const S&>().full_precision_positions()),
                   std::vector<std::size_t>> {};

/// True when S has the selector interface described at the top of this header.
template <class S>
inline constexpr bool is_selector_v = is_selector<S>::value;

}  // namespace logquant
