// Includes RapidJSON with the project's settings. Every source that uses
// RapidJSON includes this header instead of RapidJSON's, so the settings are
// the same everywhere (one definition rule).
#pragma once

#include <stdexcept>

// RapidJSON asserts on misuse (reading a string as a number, ...). The
// project checks types before reading, so a failed assertion is a bug: throw
// instead of aborting, and let the adapter edge turn it into `internal`. The
// parse entry points in json.cpp catch it themselves.
#ifndef RAPIDJSON_ASSERT
#  define RAPIDJSON_ASSERT(x)                                                  \
    do {                                                                       \
      if (!(x))                                                                \
        throw std::logic_error("RapidJSON assertion failed: " #x);             \
    } while (false)
#endif
#define RAPIDJSON_HAS_STDSTRING 1

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
// The writer's 16-byte scan (used when RAPIDJSON_SSE2 is defined, as in
// json.cpp for the reader) lets the control characters 0x1A to 0x1F through
// unescaped in RapidJSON 1.1.0: every user gets the plain writer.
#ifdef RAPIDJSON_SSE2
#  undef RAPIDJSON_SSE2
#  include <rapidjson/writer.h>
#  define RAPIDJSON_SSE2
#else
#  include <rapidjson/writer.h>
#endif

namespace es::detail {

/// Parse flags for untrusted input: no recursion (deep nesting cannot
/// overflow the stack; json.cpp drops the flag for texts that cannot nest
/// deeply), UTF-8 validated, numbers handed over as text, in
/// situ (strings are decoded inside a copy of the text the caller owns).
///
/// Numbers come as text because RapidJSON 1.1.0's own conversion is wrong
/// for some valid input (with kParseFullPrecisionFlag it reads `0e308` as
/// 1e93 and `9e308` as a tiny negative number, and can fail an assertion).
/// Only the SAX guard in json.cpp may parse with these flags: it converts
/// each number with `std::from_chars` and refuses lone surrogate escapes.
constexpr unsigned untrusted_parse_flags
  = rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag
    | rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseInsituFlag;

/// `untrusted_parse_flags` without UTF-8 validation, for text known to hold
/// only ASCII bytes (checked by the caller).
constexpr unsigned ascii_parse_flags = rapidjson::kParseIterativeFlag
                                       | rapidjson::kParseNumbersAsStringsFlag
                                       | rapidjson::kParseInsituFlag;

} // namespace es::detail
