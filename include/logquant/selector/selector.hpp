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
//
// KVCache::save / load (serialize.hpp) also need the selector's state. A selector that should be
// saved adds three members; one without them works everywhere else, and only save/load refuse to
// compile, with a message naming these members:
//
//   static constexpr const char* kStateName = "...";  // 1-16 bytes, names the type in a file
//   std::vector<std::uint64_t> save_state() const;     // parameters and progress, as integers
//   static S load_state(const std::vector<std::uint64_t>& state);  // exactly S, not a base
//
// load_state must throw logquant::FormatError for any words save_state cannot produce, since
// they may come from a corrupted or hostile file.
//
// KVCache::truncate (CacheConfig::rollback_tokens) needs a copy-assignable selector: the cache
// keeps a copy from before each journaled token and assigns it back to undo the token. One that
// is not works everywhere else; only truncate refuses to compile, saying so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../error.hpp"

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

template <class S, class = void>
struct is_serializable_selector : std::false_type {};

template <class S>
struct is_serializable_selector<
    S, std::void_t<decltype(S::kStateName), decltype(std::declval<const S&>().save_state()),
                   decltype(S::load_state(std::declval<const std::vector<std::uint64_t>&>()))>>
    : std::integral_constant<
          bool, std::is_convertible<decltype(S::kStateName), const char*>::value &&
                    std::is_same<decltype(std::declval<const S&>().save_state()),
                                 std::vector<std::uint64_t>>::value &&
                    std::is_same<decltype(S::load_state(
                                     std::declval<const std::vector<std::uint64_t>&>())),
                                 S>::value> {};

/// True when S also has kStateName, save_state() and a load_state() returning S (see the top of
/// this header), so KVCache<S>::save and load compile.
template <class S>
inline constexpr bool is_serializable_selector_v = is_serializable_selector<S>::value;

namespace detail {
// Word i of a selector state as a size_t; throws FormatError naming the selector and the word when
// it is missing or does not fit (a 32-bit build reading a 64-bit file).
inline std::size_t state_word(const std::vector<std::uint64_t>& state, std::size_t i,
                              const char* selector, const char* word) {
  if (i >= state.size())
    throw FormatError(std::string("logquant: ") + selector + " state: missing word '" + word + "'");
  if (state[i] > std::numeric_limits<std::size_t>::max())
    throw FormatError(std::string("logquant: ") + selector + " state: '" + word + "' = " +
                      std::to_string(state[i]) + " does not fit in size_t");
  return static_cast<std::size_t>(state[i]);
}

// Throws FormatError("logquant: <selector> state: <what>") unless `ok`.
template <class MakeMessage>
inline void state_require(bool ok, const char* selector, MakeMessage&& make_message) {
  if (!ok)
    throw FormatError(std::string("logquant: ") + selector + " state: " +
                      std::string(make_message()));
}
}  // namespace detail

}  // namespace logquant
