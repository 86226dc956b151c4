#include "es/store/errors.hpp"

#include <caf/message.hpp>

#include <array>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace es {

const char* to_string(store_errc x) {
  switch (x) {
    case store_errc::wrong_expected_version: return "wrong_expected_version";
    case store_errc::duplicate_event_id: return "duplicate_event_id";
    case store_errc::idempotency_conflict: return "idempotency_conflict";
    case store_errc::event_not_found: return "event_not_found";
    case store_errc::unknown_event_type: return "unknown_event_type";
    case store_errc::malformed_payload: return "malformed_payload";
    case store_errc::payload_too_large: return "payload_too_large";
    case store_errc::invalid_argument: return "invalid_argument";
    case store_errc::invalid_uuid: return "invalid_uuid";
    case store_errc::duplicate_registration: return "duplicate_registration";
    case store_errc::upcast_failed: return "upcast_failed";
    case store_errc::storage_busy: return "storage_busy";
    case store_errc::connection_failed: return "connection_failed";
    case store_errc::timeout: return "timeout";
    case store_errc::serialization_failure: return "serialization_failure";
    case store_errc::io_error: return "io_error";
    case store_errc::corrupt_database: return "corrupt_database";
    case store_errc::migration_failed: return "migration_failed";
    case store_errc::schema_too_new: return "schema_too_new";
    case store_errc::tenant_mismatch: return "tenant_mismatch";
    case store_errc::closed: return "closed";
    case store_errc::internal: return "internal";
    case store_errc::authentication_failed: return "authentication_failed";
    case store_errc::unknown_database: return "unknown_database";
    case store_errc::permission_denied: return "permission_denied";
    case store_errc::commit_outcome_unknown: return "commit_outcome_unknown";
    case store_errc::checkpoint_conflict: return "checkpoint_conflict";
    case store_errc::lease_held: return "lease_held";
    case store_errc::lease_lost: return "lease_lost";
    case store_errc::pool_exhausted: return "pool_exhausted";
    case store_errc::stream_deleted: return "stream_deleted";
  }
  return "unknown";
}

bool is_retryable(store_errc x) {
  switch (x) {
    case store_errc::storage_busy:
    case store_errc::connection_failed:
    case store_errc::timeout:
    case store_errc::serialization_failure:
    case store_errc::commit_outcome_unknown:
    case store_errc::pool_exhausted: return true;
    default: return false;
  }
}

namespace {

struct category_info {
  error_code_renderer render;
  error_code_classifier retryable;
};

const char* render_store(uint8_t code) {
  return to_string(static_cast<store_errc>(code));
}

bool classify_store(uint8_t code) {
  return is_retryable(static_cast<store_errc>(code));
}

const char* render_sec(uint8_t code) {
  // CAF's to_string(sec) returns std::string; render every code once.
  static const auto names = [] {
    std::array<std::string, 256> result;
    for (size_t i = 0; i < result.size(); ++i)
      result[i] = caf::to_string(static_cast<caf::sec>(i));
    return result;
  }();
  return names[code].c_str();
}

bool classify_sec(uint8_t code) {
  switch (static_cast<caf::sec>(code)) {
    case caf::sec::request_timeout:
    case caf::sec::request_receiver_down:
    case caf::sec::remote_lookup_failed:
    case caf::sec::cannot_connect_to_node: return true;
    default: return false;
  }
}

class category_table {
public:
  category_table() {
    map_.emplace(caf::atom("es_store"),
                 category_info{render_store, classify_store});
    map_.emplace(caf::atom("system"), category_info{render_sec, classify_sec});
  }

  void add(caf::atom_value cat, category_info info) {
    std::unique_lock guard{mtx_};
    map_.insert_or_assign(cat, info);
  }

  std::optional<category_info> find(caf::atom_value cat) const {
    std::shared_lock guard{mtx_};
    auto i = map_.find(cat);
    if (i == map_.end())
      return std::nullopt;
    return i->second;
  }

private:
  struct atom_hash {
    size_t operator()(caf::atom_value x) const noexcept {
      return std::hash<uint64_t>{}(static_cast<uint64_t>(x));
    }
  };
  mutable std::shared_mutex mtx_;
  std::unordered_map<caf::atom_value, category_info, atom_hash> map_;
};

category_table& categories() {
  static category_table table;
  return table;
}

} // namespace

bool is_retryable(const caf::error& err) {
  if (!err)
    return false;
  if (auto info = categories().find(err.category()))
    return info->retryable(err.code());
  return false;
}

caf::error make_store_error(store_errc code, std::string description) {
  return caf::make_error(code, std::move(description));
}

std::vector<version_conflict> get_version_conflicts(const caf::error& err) {
  std::vector<version_conflict> result;
  if (!has_code(err, store_errc::wrong_expected_version))
    return result;
  // (description, then stream, expected, actual for each conflict)
  const auto& ctx = err.context();
  if (ctx.empty() || !ctx.match_element<std::string>(0))
    return result;
  for (size_t i = 1; i + 2 < ctx.size(); i += 3) {
    if (!ctx.match_element<std::string>(i)
        || !ctx.match_element<std::string>(i + 1)
        || !ctx.match_element<int64_t>(i + 2))
      break;
    result.push_back(version_conflict{ctx.get_as<std::string>(i),
                                      ctx.get_as<std::string>(i + 1),
                                      ctx.get_as<int64_t>(i + 2)});
  }
  return result;
}

std::optional<version_conflict> get_version_conflict(const caf::error& err) {
  auto all = get_version_conflicts(err);
  if (all.empty())
    return std::nullopt;
  return std::move(all.front());
}

bool register_error_category(caf::atom_value category,
                             error_code_renderer renderer,
                             error_code_classifier retryable) {
  categories().add(category, category_info{renderer, retryable});
  return true;
}

std::string error_description(const caf::error& err) {
  if (!err)
    return {};
  const auto& ctx = err.context();
  if (!ctx.empty() && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return {};
}

std::string describe(const caf::error& err) {
  if (!err)
    return "no error";
  std::string result = caf::to_string(err.category());
  result += '.';
  if (auto info = categories().find(err.category()))
    result += info->render(err.code());
  else
    result += std::to_string(err.code());
  auto desc = error_description(err);
  if (!desc.empty()) {
    result += ": ";
    result += desc;
  } else if (!err.context().empty()) {
    result += ": ";
    result += caf::to_string(err.context());
  }
  return result;
}

} // namespace es
