// esctl's output: aligned tables for people, JSON for scripts, and a
// progress line on stderr when stderr is a terminal.
#pragma once

#include "es/store/event.hpp"

#include "rapidjson.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace esctl {

/// Rows printed in columns as wide as their widest cell, two spaces apart,
/// under an upper-case header. Numbers are right-aligned.
class table {
public:
  explicit table(std::vector<std::string> header);

  /// Right-aligns column `index` (counted from 0).
  table& right(size_t index);

  void add(std::vector<std::string> row);

  bool empty() const {
    return rows_.empty();
  }

  /// Prints the header and the rows to stdout (no trailing spaces).
  void print() const;

private:
  std::vector<std::string> header_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

/// Writes compact JSON into a buffer; `print_json` sends it to stdout.
using json_writer = rapidjson::Writer<rapidjson::StringBuffer>;

/// Prints the buffer and a newline to stdout and flushes it.
void print_json(const rapidjson::StringBuffer& buf);

/// Writes `text` as embedded JSON when it is well-formed JSON (exactly as
/// stored, numbers untouched), as null when empty, else as a string.
void write_embedded_json(json_writer& w, std::string_view text);

void write_string(json_writer& w, std::string_view text);

/// Writes the UUID's text, or null.
void write_uuid(json_writer& w, const std::optional<es::uuid>& id);

/// Writes "YYYY-MM-DDTHH:MM:SS.ffffffZ", or null.
void write_time(json_writer& w, const std::optional<es::timestamp>& t);

/// The whole event as one JSON object (payload and metadata embedded).
void write_event(json_writer& w, const es::recorded_event& ev);

/// The text of an integer.
std::string num(int64_t x);

/// `text` cut to `width` characters, ending in "..." when cut.
std::string shorten(std::string text, size_t width);

/// A UUID's text, or "-" for none.
std::string uuid_or_dash(const std::optional<es::uuid>& id);

/// A timestamp's text, or "-" for none.
std::string time_or_dash(const std::optional<es::timestamp>& t);

/// "what: state" on one line of stderr, rewritten in place, when stderr is
/// a terminal; does nothing otherwise. Clears its line when destroyed.
class progress {
public:
  explicit progress(std::string what);
  ~progress();

  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;

  void update(const std::string& state);

private:
  std::string what_;
  bool active_;
};

} // namespace esctl
