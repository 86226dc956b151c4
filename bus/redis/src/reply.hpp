// One answer of a Redis server as an owning value tree.
#pragma once

#include <caf/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace es::detail::redis {

/// One answer of a Redis server (RESP2), copied out of hiredis's reply tree
/// so that it outlives the connection and needs no hiredis header. An error
/// reply is a value like any other: the server answered, the connection is
/// fine, and the caller decides what the error means (see `to_error`).
class reply {
public:
  /// What the server sent.
  enum class kind : uint8_t { nil, status, error, integer, string, array };

  /// A nil reply (a missing key, a blocking read that timed out, ...).
  reply() = default;

  static reply make_status(std::string text);
  static reply make_error(std::string message);
  static reply make_integer(int64_t x);
  static reply make_string(std::string bytes);
  static reply make_array(std::vector<reply> elements);

  kind type() const noexcept {
    return kind_;
  }

  bool is_nil() const noexcept {
    return kind_ == kind::nil;
  }

  bool is_status() const noexcept {
    return kind_ == kind::status;
  }

  /// Whether this is a status reply that reads `text`, for example "OK".
  bool is_status(std::string_view text) const noexcept {
    return kind_ == kind::status && str_ == text;
  }

  bool is_error() const noexcept {
    return kind_ == kind::error;
  }

  bool is_integer() const noexcept {
    return kind_ == kind::integer;
  }

  bool is_string() const noexcept {
    return kind_ == kind::string;
  }

  bool is_array() const noexcept {
    return kind_ == kind::array;
  }

  /// The bytes of a string reply (binary-safe: may hold NUL bytes), the text
  /// of a status reply or the message of an error reply ("ERR ...",
  /// "WRONGTYPE ..."); empty for the other kinds.
  const std::string& str() const noexcept {
    return str_;
  }

  /// The value of an integer reply; 0 for the other kinds.
  int64_t integer() const noexcept {
    return integer_;
  }

  /// The elements of an array reply; empty for the other kinds.
  const std::vector<reply>& elements() const noexcept {
    return elements_;
  }

  /// The number of elements of an array reply.
  size_t size() const noexcept {
    return elements_.size();
  }

  /// Element `i` of an array reply; `i` must be less than `size()`.
  const reply& operator[](size_t i) const {
    return elements_[i];
  }

private:
  kind kind_ = kind::nil;
  int64_t integer_ = 0;
  std::string str_;
  std::vector<reply> elements_;
};

/// Returns the name of `x`, for example "status".
const char* to_string(reply::kind x);

/// Renders `x` for diagnostics and test messages in a RESP-like notation:
/// `nil`, `+OK`, `-ERR ...`, `:42`, `"bytes"` (non-printable bytes as
/// \xNN) and `[a, b]`.
std::string to_string(const reply& x);

/// Turns an error reply into an error of the Redis module for a caller that
/// treats it as a failure: NOAUTH and WRONGPASS become
/// `authentication_failed`, everything else `server_error`; the description
/// names `what` (for example the command) and keeps the server's message.
/// Returns no error for a reply that is not an error.
[[nodiscard]] caf::error to_error(const reply& x, std::string_view what);

} // namespace es::detail::redis
