// The exceptions logquant throws, and the one helper every public entry point uses to check its
// arguments. Bad input always becomes an exception that names the argument and what was expected;
// it never becomes undefined behaviour or a silently wrong result.
#pragma once

#include <stdexcept>
#include <string>

namespace logquant {

/// An argument broke a documented precondition (shape, range, null pointer, NaN/Inf).
/// The message names the argument and the expected shape or range.
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A serialized cache could not be read: truncated, corrupted, another version or geometry.
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

// Throws InvalidArgument("logquant: <what>") unless `ok`. The message is built only on failure.
template <class MakeMessage>
inline void require(bool ok, MakeMessage&& make_message) {
  if (!ok) throw InvalidArgument("logquant: " + std::string(make_message()));
}

inline void require(bool ok, const char* message) {
  if (!ok) throw InvalidArgument(std::string("logquant: ") + message);
}

}  // namespace detail
}  // namespace logquant
