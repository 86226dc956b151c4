// error_classifier: the built-in classes and the precedence of custom, code,
// category and pattern rules.
#include "es/store/errors.hpp"
#include "es/supervision/classifier.hpp"
#include "es/supervision/errors.hpp"

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>
#include <caf/sec.hpp>

#include <catch2/catch.hpp>

#include <optional>
#include <string>

using namespace es;

namespace {

caf::error store_error(store_errc code) {
  return make_store_error(code, "details");
}

/// An error of a category no module registered.
caf::error foreign_error(uint8_t code, std::string text) {
  return caf::error{code, caf::atom("myapp"),
                    caf::make_message(std::move(text))};
}

error_classification verdict(error_category c, error_severity s, bool retry,
                             std::string description) {
  return {c, s, retry, std::move(description)};
}

} // namespace

TEST_CASE("built-in classes of store errors", "[classifier]") {
  error_classifier c;
  SECTION("storage_busy is transient and retryable") {
    auto x = c.classify(store_error(store_errc::storage_busy));
    CHECK(x.category == error_category::transient);
    CHECK(x.retryable);
    CHECK(x.severity == error_severity::medium);
  }
  SECTION("timeout and serialization_failure are transient too") {
    for (auto code : {store_errc::timeout, store_errc::serialization_failure}) {
      auto x = c.classify(store_error(code));
      CHECK(x.category == error_category::transient);
      CHECK(x.retryable);
    }
  }
  SECTION("connection_failed is infrastructure, retryable") {
    auto x = c.classify(store_error(store_errc::connection_failed));
    CHECK(x.category == error_category::infrastructure);
    CHECK(x.retryable);
    CHECK(x.severity == error_severity::high);
  }
  SECTION("corrupt_database is critical infrastructure, not retryable") {
    auto x = c.classify(store_error(store_errc::corrupt_database));
    CHECK(x.category == error_category::infrastructure);
    CHECK_FALSE(x.retryable);
    CHECK(x.severity == error_severity::critical);
  }
  SECTION("malformed_payload is permanent, not retryable") {
    auto x = c.classify(store_error(store_errc::malformed_payload));
    CHECK(x.category == error_category::permanent);
    CHECK_FALSE(x.retryable);
    for (auto code : {store_errc::unknown_event_type, store_errc::upcast_failed,
                      store_errc::invalid_uuid})
      CHECK(c.classify(store_error(code)).category
            == error_category::permanent);
  }
  SECTION("wrong_expected_version is application, not retryable") {
    auto x = c.classify(store_error(store_errc::wrong_expected_version));
    CHECK(x.category == error_category::application);
    CHECK_FALSE(x.retryable);
    CHECK(x.severity == error_severity::low);
    CHECK(c.classify(store_error(store_errc::tenant_mismatch)).category
          == error_category::application);
  }
}

TEST_CASE("built-in classes of CAF and supervision errors", "[classifier]") {
  error_classifier c;
  auto timeout = c.classify(caf::make_error(caf::sec::request_timeout));
  CHECK(timeout.category == error_category::transient);
  CHECK(timeout.retryable);
  auto down = c.classify(caf::make_error(caf::sec::request_receiver_down));
  CHECK(down.category == error_category::transient);
  CHECK(down.retryable);
  auto unexpected = c.classify(caf::make_error(caf::sec::unexpected_message));
  CHECK(unexpected.category == error_category::application);
  CHECK_FALSE(unexpected.retryable);
  // Other CAF codes: the category rule.
  auto other = c.classify(caf::make_error(caf::sec::runtime_error));
  CHECK(other.category == error_category::unknown);
  CHECK_FALSE(other.retryable);
  CHECK(other.description == "a runtime error");
  auto open = c.classify(
    caf::make_error(supervision_errc::circuit_open, "x", int64_t{5}));
  CHECK(open.category == error_category::transient);
  CHECK(open.retryable);
}

TEST_CASE("unknown errors fall back to patterns, then to retryability",
          "[classifier]") {
  error_classifier c;
  auto deadlock = c.classify(foreign_error(1, "deadlock detected"));
  CHECK(deadlock.category == error_category::transient);
  CHECK(deadlock.retryable);
  CHECK(deadlock.severity == error_severity::high);
  auto slow = c.classify(foreign_error(2, "statement timeout"));
  CHECK(slow.category == error_category::transient);
  CHECK(slow.retryable);
  auto plain = c.classify(foreign_error(3, "something else"));
  CHECK(plain.category == error_category::unknown);
  CHECK_FALSE(plain.retryable);
  CHECK(plain.description == "unclassified");
  // A store code without a rule of its own: the module's retryability.
  auto closed = c.classify(store_error(store_errc::closed));
  CHECK(closed.category == error_category::unknown);
  CHECK_FALSE(closed.retryable);
}

TEST_CASE("add_code_rule overrides the built-in class of one code",
          "[classifier]") {
  error_classifier c;
  auto store = caf::atom("es_store");
  c.add_code_rule(store, static_cast<uint8_t>(store_errc::storage_busy),
                  verdict(error_category::infrastructure,
                          error_severity::critical, false, "no more waiting"));
  auto x = c.classify(store_error(store_errc::storage_busy));
  CHECK(x.category == error_category::infrastructure);
  CHECK_FALSE(x.retryable);
  CHECK(x.description == "no more waiting");
  // Other codes keep theirs.
  CHECK(c.classify(store_error(store_errc::timeout)).category
        == error_category::transient);
  // The newest rule for a code wins.
  c.add_code_rule(
    store, static_cast<uint8_t>(store_errc::storage_busy),
    verdict(error_category::transient, error_severity::low, true, "newest"));
  CHECK(c.classify(store_error(store_errc::storage_busy)).description
        == "newest");
}

TEST_CASE("add_category_rule covers codes without a rule of their own",
          "[classifier]") {
  error_classifier c;
  c.add_category_rule(caf::atom("es_store"),
                      verdict(error_category::permanent, error_severity::high,
                              false, "store default"));
  // event_not_found had no rule: now the category's.
  auto x = c.classify(store_error(store_errc::event_not_found));
  CHECK(x.category == error_category::permanent);
  CHECK(x.description == "store default");
  // Code rules are more specific and still win.
  CHECK(c.classify(store_error(store_errc::storage_busy)).category
        == error_category::transient);
  // A category rule replaces the built-in one of CAF's codes.
  c.add_category_rule(caf::atom("system"),
                      verdict(error_category::infrastructure,
                              error_severity::critical, false, "CAF trouble"));
  auto y = c.classify(caf::make_error(caf::sec::runtime_error));
  CHECK(y.category == error_category::infrastructure);
  CHECK(y.description == "CAF trouble");
  CHECK(c.classify(caf::make_error(caf::sec::request_timeout)).category
        == error_category::transient);
  // A new category.
  c.add_category_rule(
    caf::atom("myapp"),
    verdict(error_category::application, error_severity::low, false, "my app"));
  CHECK(c.classify(foreign_error(9, "deadlock")).description == "my app");
}

TEST_CASE("add_pattern_rule classifies by the error's text", "[classifier]") {
  error_classifier c;
  c.add_pattern_rule("quota exceeded",
                     verdict(error_category::infrastructure,
                             error_severity::high, true, "quota"));
  auto x = c.classify(foreign_error(1, "tenant 7: quota exceeded"));
  CHECK(x.category == error_category::infrastructure);
  CHECK(x.retryable);
  CHECK(x.description == "quota");
  CHECK(c.classify(foreign_error(1, "quota fine")).description
        == "unclassified");
  // The newest pattern wins over the built-in "timeout".
  c.add_pattern_rule("timeout", verdict(error_category::permanent,
                                        error_severity::low, false, "mine"));
  CHECK(c.classify(foreign_error(2, "lock timeout")).description == "mine");
  // Patterns never override code rules.
  c.add_pattern_rule("details", verdict(error_category::permanent,
                                        error_severity::low, false, "text"));
  CHECK(c.classify(store_error(store_errc::storage_busy)).category
        == error_category::transient);
}

TEST_CASE("add_rule: custom rules win, newest first", "[classifier]") {
  error_classifier c;
  int consulted = 0;
  c.add_rule(
    [&](const caf::error& err,
        const std::string& text) -> std::optional<error_classification> {
      ++consulted;
      if (has_code(err, store_errc::storage_busy)
          && text.find("details") != std::string::npos)
        return verdict(error_category::permanent, error_severity::critical,
                       false, "older rule");
      return std::nullopt;
    });
  auto x = c.classify(store_error(store_errc::storage_busy));
  CHECK(x.category == error_category::permanent);
  CHECK(x.description == "older rule");
  CHECK(consulted == 1);
  // A rule that declines falls through to the built-in classes.
  CHECK(c.classify(store_error(store_errc::timeout)).category
        == error_category::transient);
  // A newer rule is asked first.
  c.add_rule([](const caf::error& err,
                const std::string&) -> std::optional<error_classification> {
    if (err.category() == caf::atom("es_store"))
      return verdict(error_category::application, error_severity::low, false,
                     "newer rule");
    return std::nullopt;
  });
  consulted = 0;
  CHECK(c.classify(store_error(store_errc::storage_busy)).description
        == "newer rule");
  CHECK(consulted == 0);
  // The text the rule sees is describe(err).
  std::string seen;
  c.add_rule(
    [&](const caf::error&,
        const std::string& text) -> std::optional<error_classification> {
      seen = text;
      return std::nullopt;
    });
  static_cast<void>(c.classify(store_error(store_errc::io_error)));
  CHECK(seen == "es_store.io_error: details");
}

TEST_CASE("category and severity names", "[classifier]") {
  CHECK(std::string{to_string(error_category::infrastructure)}
        == "infrastructure");
  CHECK(std::string{to_string(error_severity::critical)} == "critical");
}
