#include "es/testing/event_matching.hpp"

#include "es/store/errors.hpp"
#include "es/store/json.hpp"

#include <algorithm>
#include <numeric>
#include <vector>

namespace es::testing {

namespace {

/// Member indexes of an object, sorted by name (stable for duplicates).
std::vector<size_t> sorted_members(const json::value& obj) {
  std::vector<size_t> result(obj.size());
  std::iota(result.begin(), result.end(), size_t{0});
  std::stable_sort(result.begin(), result.end(), [&](size_t a, size_t b) {
    return obj.member_name(a) < obj.member_name(b);
  });
  return result;
}

void write_canonical(json::writer& out, const json::value& x) {
  switch (x.type()) {
    case json::kind::null: out.null(); return;
    case json::kind::boolean: out.boolean(*x.as_bool()); return;
    case json::kind::number:
      if (auto i = x.as_int64())
        out.integer(*i);
      else if (auto u = x.as_uint64())
        out.unsigned_integer(*u);
      else
        out.number(x.as_double().value_or(0));
      return;
    case json::kind::string: out.string(*x.as_string()); return;
    case json::kind::array:
      out.begin_array();
      for (size_t i = 0; i < x.size(); ++i)
        write_canonical(out, x.at(i));
      out.end_array();
      return;
    case json::kind::object:
      out.begin_object();
      for (auto i : sorted_members(x)) {
        out.key(x.member_name(i));
        write_canonical(out, x.member_value(i));
      }
      out.end_object();
      return;
  }
}

std::string canonical(const json::value& x) {
  json::writer out;
  write_canonical(out, x);
  return out.str();
}

std::string child_path(const std::string& path, std::string_view name) {
  if (path.empty())
    return std::string{name};
  return path + "." + std::string{name};
}

std::optional<json::value> member(const json::value& obj,
                                  std::string_view name) {
  return obj.find(name);
}

void diff_values(const std::string& path, const json::value& expected,
                 const json::value& actual, std::vector<std::string>& out) {
  auto where = path.empty() ? std::string{"payload"} : path;
  if (expected.type() != actual.type()) {
    out.push_back(where + ": expected " + canonical(expected) + ", got "
                  + canonical(actual));
    return;
  }
  switch (expected.type()) {
    case json::kind::object: {
      for (auto i : sorted_members(expected)) {
        auto name = expected.member_name(i);
        auto other = member(actual, name);
        if (!other)
          out.push_back(child_path(path, name) + ": missing (expected "
                        + canonical(expected.member_value(i)) + ")");
        else
          diff_values(child_path(path, name), expected.member_value(i), *other,
                      out);
      }
      for (auto i : sorted_members(actual)) {
        auto name = actual.member_name(i);
        if (!member(expected, name))
          out.push_back(child_path(path, name) + ": not expected, got "
                        + canonical(actual.member_value(i)));
      }
      return;
    }
    case json::kind::array: {
      auto n = std::min(expected.size(), actual.size());
      for (size_t i = 0; i < n; ++i)
        diff_values(path + "[" + std::to_string(i) + "]", expected.at(i),
                    actual.at(i), out);
      if (expected.size() != actual.size())
        out.push_back(where + ": expected " + std::to_string(expected.size())
                      + " elements, got " + std::to_string(actual.size()));
      return;
    }
    default: {
      auto e = canonical(expected);
      auto a = canonical(actual);
      if (e != a)
        out.push_back(where + ": expected " + e + ", got " + a);
      return;
    }
  }
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string result;
  for (const auto& part : parts) {
    if (!result.empty())
      result += sep;
    result += part;
  }
  return result;
}

std::string count_text(size_t n) {
  return std::to_string(n) + (n == 1 ? " event" : " events");
}

} // namespace

caf::expected<std::string> canonical_json(std::string_view text) {
  auto doc = json::document::parse(text);
  if (!doc)
    return std::move(doc.error());
  return canonical(doc->root());
}

std::string json_difference(std::string_view expected,
                            std::string_view actual) {
  auto e = json::document::parse(expected);
  auto a = json::document::parse(actual);
  if (!e || !a) {
    if (expected == actual)
      return {};
    return "payload: expected " + std::string{expected} + ", got "
           + std::string{actual};
  }
  std::vector<std::string> found;
  diff_values({}, e->root(), a->root(), found);
  return join(found, "; ");
}

std::string describe_payload(const event_data& ev) {
  auto text = canonical_json(ev.payload);
  return ev.event_type + " " + (text ? *text : ev.payload);
}

expected_event expected_event::json(std::string type,
                                    std::string payload_json) {
  expected_event result;
  result.type_ = std::move(type);
  auto canon = canonical_json(payload_json);
  result.payload_ = canon ? *canon : payload_json;
  auto want_type = result.type_;
  auto want = result.payload_;
  result.match_ = [want_type, want](const event_registry*,
                                    const event_data& actual) -> std::string {
    if (actual.event_type != want_type)
      return type_mismatch(want_type, actual);
    return json_difference(want, actual.payload);
  };
  return result;
}

std::string expected_event::describe() const {
  auto canon = canonical_json(payload_);
  return type_ + " " + (canon ? *canon : payload_);
}

std::string expected_event::difference(const event_registry* reg,
                                       const event_data& actual) const {
  return match_(reg, actual);
}

std::string expected_event::type_mismatch(const std::string& expected,
                                          const event_data& actual) {
  return "expected a " + expected + ", got " + describe_payload(actual);
}

std::string expected_event::undecodable(const event_data& actual,
                                        const caf::error& err) {
  return "cannot decode " + describe_payload(actual) + ": " + es::describe(err);
}

std::string
expected_event::typed_difference(const caf::expected<std::string>& lhs,
                                 const caf::expected<std::string>& rhs) {
  if (!lhs || !rhs)
    return "cannot encode the events to compare them: "
           + es::describe(!lhs ? lhs.error() : rhs.error());
  return json_difference(*lhs, *rhs);
}

std::string compare_events(const std::vector<expected_event>& expected,
                           const event_batch& actual,
                           const event_registry* reg) {
  if (expected.size() != actual.size()) {
    auto text = "expected " + count_text(expected.size()) + " "
                + list_types(expected) + ", got " + count_text(actual.size())
                + " " + list_types(actual);
    if (actual.size() > expected.size())
      text += "; the first extra one is "
              + describe_payload(actual[expected.size()]);
    else
      text
        += "; the first missing one is " + expected[actual.size()].describe();
    return text;
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    auto diff = expected[i].difference(reg, actual[i]);
    if (!diff.empty())
      return "event " + std::to_string(i + 1) + " of "
             + std::to_string(actual.size()) + " (" + expected[i].type()
             + "): " + diff;
  }
  return {};
}

std::string list_types(const event_batch& events) {
  std::vector<std::string> names;
  for (const auto& ev : events)
    names.push_back(ev.event_type);
  return "[" + join(names, ", ") + "]";
}

std::string list_types(const std::vector<expected_event>& events) {
  std::vector<std::string> names;
  for (const auto& ev : events)
    names.push_back(ev.type());
  return "[" + join(names, ", ") + "]";
}

} // namespace es::testing
