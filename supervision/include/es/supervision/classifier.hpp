// Error classification: what kind of failure, how bad, and whether a retry
// can help.
#pragma once

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace es {

enum class error_category : uint8_t {
  /// Likely to go away by itself (timeouts, busy database, lost connection).
  transient,
  /// Will fail the same way every time (bad data, unknown type).
  permanent,
  /// The platform is in trouble (disk, corrupt database, out of resources).
  infrastructure,
  /// The application's own rules or code refused.
  application,
  unknown,
};

enum class error_severity : uint8_t { low, medium, high, critical };

const char* to_string(error_category x);
const char* to_string(error_severity x);

/// The verdict on one error.
struct error_classification {
  error_category category = error_category::unknown;
  error_severity severity = error_severity::medium;
  bool retryable = false;
  std::string description;

  template <class Inspector>
  friend typename Inspector::result_type
  inspect(Inspector& f, error_classification& x) {
    return f(caf::meta::type_name("es.error_classification"), x.category,
             x.severity, x.retryable, x.description);
  }
};

/// Classifies `caf::error`s by rules, most specific first: custom rules
/// (newest first), then rules by category and code, by category alone, by
/// message pattern, and finally the error's own retryability
/// (`es::is_retryable`). Built-in rules cover the store, bus, actors and
/// supervision codes and CAF's `sec` codes. Thread-safe.
class error_classifier {
public:
  using rule = std::function<std::optional<error_classification>(
    const caf::error&, const std::string& text)>;

  error_classifier();

  /// Classifies `err` (which must not be empty).
  error_classification classify(const caf::error& err) const;

  /// Classifies every error of `category` with code `code`.
  void add_code_rule(caf::atom_value category, uint8_t code,
                     error_classification c);

  /// Classifies every error of `category` without a more specific rule.
  void add_category_rule(caf::atom_value category, error_classification c);

  /// Classifies errors whose description contains `pattern`.
  void add_pattern_rule(std::string pattern, error_classification c);

  /// Adds a rule of the application's own; newer rules win.
  void add_rule(rule r);

private:
  struct code_rule {
    caf::atom_value category;
    std::optional<uint8_t> code;
    error_classification c;
  };
  struct pattern_rule {
    std::string pattern;
    error_classification c;
  };

  mutable std::mutex mtx_;
  std::vector<rule> custom_;
  std::vector<code_rule> codes_;
  std::vector<pattern_rule> patterns_;
};

} // namespace es
