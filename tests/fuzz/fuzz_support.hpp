// Helpers shared by the libFuzzer targets: invariant checks that report
// and abort, so libFuzzer saves the input that broke them.
#pragma once

#include "es/store/errors.hpp"

#include <caf/error.hpp>

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <string_view>

namespace es::fuzz {

/// Prints `what` and aborts: libFuzzer reports a crash and keeps the input.
[[noreturn]] inline void fail(std::string_view what) {
  std::fprintf(stderr, "fuzz invariant broken: %.*s\n",
               static_cast<int>(what.size()), what.data());
  std::abort();
}

/// Aborts with `what` unless `cond` holds.
inline void check(bool cond, std::string_view what) {
  if (!cond)
    fail(what);
}

/// Aborts unless `err` is a store error with one of `codes`.
inline void check_code(const caf::error& err,
                       std::initializer_list<store_errc> codes,
                       std::string_view where) {
  for (auto code : codes)
    if (has_code(err, code))
      return;
  fail(std::string{where} + ": unexpected error " + describe(err));
}

/// Returns whether `text` is valid UTF-8 (no overlong forms, no encoded
/// surrogates, nothing above U+10FFFF). Written independently of RapidJSON
/// to serve as an oracle.
inline bool valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > text.size())
      return false;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xC0) != 0x80)
        return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF
        || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

} // namespace es::fuzz
