#include "es/supervision/classifier.hpp"

#include "es/store/errors.hpp"
#include "es/supervision/errors.hpp"

namespace es {

const char* to_string(error_category x) {
  switch (x) {
    case error_category::transient: return "transient";
    case error_category::permanent: return "permanent";
    case error_category::infrastructure: return "infrastructure";
    case error_category::application: return "application";
    case error_category::unknown: return "unknown";
  }
  return "unknown";
}

const char* to_string(error_severity x) {
  switch (x) {
    case error_severity::low: return "low";
    case error_severity::medium: return "medium";
    case error_severity::high: return "high";
    case error_severity::critical: return "critical";
  }
  return "medium";
}

namespace {

error_classification make(error_category c, error_severity s, bool retry,
                          std::string description) {
  return {c, s, retry, std::move(description)};
}

template <class Enum>
uint8_t code_of(Enum e) {
  return static_cast<uint8_t>(e);
}

} // namespace

error_classifier::error_classifier() {
  using c = error_category;
  using s = error_severity;
  auto store = caf::atom("es_store");
  auto add = [&](caf::atom_value cat, uint8_t code, error_classification x) {
    codes_.push_back({cat, code, std::move(x)});
  };
  // The store's codes.
  for (auto e : {store_errc::storage_busy, store_errc::timeout,
                 store_errc::serialization_failure})
    add(store, code_of(e),
        make(c::transient, s::medium, true, "the database is busy"));
  add(store, code_of(store_errc::connection_failed),
      make(c::infrastructure, s::high, true, "the database is unreachable"));
  add(store, code_of(store_errc::commit_outcome_unknown),
      make(c::infrastructure, s::high, true,
           "a commit's outcome is unknown; retry with the same event ids"));
  for (auto e : {store_errc::io_error, store_errc::corrupt_database,
                 store_errc::migration_failed, store_errc::schema_too_new,
                 store_errc::authentication_failed,
                 store_errc::unknown_database, store_errc::permission_denied})
    add(store, code_of(e),
        make(c::infrastructure, s::critical, false,
             "the database cannot be used"));
  for (auto e : {store_errc::malformed_payload, store_errc::payload_too_large,
                 store_errc::unknown_event_type, store_errc::upcast_failed,
                 store_errc::invalid_argument, store_errc::invalid_uuid})
    add(store, code_of(e),
        make(c::permanent, s::high, false, "the event cannot be processed"));
  for (auto e :
       {store_errc::wrong_expected_version, store_errc::duplicate_event_id,
        store_errc::idempotency_conflict, store_errc::tenant_mismatch})
    add(store, code_of(e),
        make(c::application, s::low, false, "a concurrency or tenancy rule"));
  add(store, code_of(store_errc::internal),
      make(c::unknown, s::critical, false, "a bug in the library"));
  // Other modules.
  codes_.push_back(
    {caf::atom("es_actors"), std::nullopt,
     make(c::application, s::medium, false, "the application refused")});
  codes_.push_back(
    {caf::atom("es_bus"), std::nullopt,
     make(c::application, s::medium, false, "a handler failed")});
  // A projection handler that threw (projections_errc::handler_failed,
  // code 1 of "es_proj"; that module sits above this one, and its codes
  // keep their numbers): a bug in the handler, whatever the exception
  // says. Its other codes fall through to `is_retryable` below.
  add(caf::atom("es_proj"), 1,
      make(c::unknown, s::critical, false, "a projection handler threw"));
  add(caf::atom("es_superv"), code_of(supervision_errc::circuit_open),
      make(c::transient, s::medium, true, "the circuit breaker is open"));
  // CAF's own codes.
  auto sys = caf::atom("system");
  for (auto e :
       {caf::sec::request_timeout, caf::sec::request_receiver_down,
        caf::sec::cannot_connect_to_node, caf::sec::remote_lookup_failed})
    add(sys, code_of(e),
        make(c::transient, s::medium, true, "an actor did not answer"));
  for (auto e : {caf::sec::unexpected_message, caf::sec::unexpected_response,
                 caf::sec::invalid_argument})
    add(sys, code_of(e),
        make(c::application, s::high, false, "a protocol mismatch"));
  codes_.push_back(
    {sys, std::nullopt, make(c::unknown, s::medium, false, "a runtime error")});
  // Message patterns drivers use for transient trouble.
  patterns_.push_back(
    {"deadlock", make(c::transient, s::high, true, "a deadlock")});
  patterns_.push_back(
    {"timeout", make(c::transient, s::medium, true, "a timeout")});
}

error_classification error_classifier::classify(const caf::error& err) const {
  auto text = describe(err);
  std::lock_guard guard{mtx_};
  for (auto i = custom_.rbegin(); i != custom_.rend(); ++i)
    if (auto c = (*i)(err, text))
      return *c;
  for (auto i = codes_.rbegin(); i != codes_.rend(); ++i)
    if (i->category == err.category() && i->code && *i->code == err.code())
      return i->c;
  for (auto i = codes_.rbegin(); i != codes_.rend(); ++i)
    if (i->category == err.category() && !i->code)
      return i->c;
  for (auto i = patterns_.rbegin(); i != patterns_.rend(); ++i)
    if (text.find(i->pattern) != std::string::npos)
      return i->c;
  auto retry = is_retryable(err);
  return make(retry ? error_category::transient : error_category::unknown,
              error_severity::medium, retry, "unclassified");
}

void error_classifier::add_code_rule(caf::atom_value category, uint8_t code,
                                     error_classification c) {
  std::lock_guard guard{mtx_};
  codes_.push_back({category, code, std::move(c)});
}

void error_classifier::add_category_rule(caf::atom_value category,
                                         error_classification c) {
  std::lock_guard guard{mtx_};
  codes_.push_back({category, std::nullopt, std::move(c)});
}

void error_classifier::add_pattern_rule(std::string pattern,
                                        error_classification c) {
  std::lock_guard guard{mtx_};
  patterns_.push_back({std::move(pattern), std::move(c)});
}

void error_classifier::add_rule(rule r) {
  std::lock_guard guard{mtx_};
  custom_.push_back(std::move(r));
}

} // namespace es
