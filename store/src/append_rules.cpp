#include "append_rules.hpp"

#include "es/store/errors.hpp"
#include "es/store/json.hpp"

#include "rapidjson.hpp"
#include <rapidjson/encodings.h>
#include <rapidjson/memorystream.h>

#include <functional>
#include <set>
#include <unordered_set>

namespace es::detail {

namespace {

bool name_char(char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
    return true;
  if (first)
    return false;
  return (c >= '0' && c <= '9') || c == '.' || c == ':' || c == '/' || c == '-';
}

caf::error invalid(std::string text) {
  return make_store_error(store_errc::invalid_argument, std::move(text));
}

std::string event_label(size_t index, const event_data& ev) {
  return "event #" + std::to_string(index) + " (" + ev.event_id.to_string()
         + ")";
}

/// Discards what RapidJSON's UTF-8 validator copies.
struct discard_stream {
  using Ch = char;
  void Put(char) {
    // nop
  }
};

uint64_t mix(uint64_t seed, uint64_t x) {
  // A 64-bit variant of the usual hash_combine step.
  return seed ^ (x + 0x9e3779b97f4a7c15ULL + (seed << 12) + (seed >> 4));
}

} // namespace

bool is_storable_text(std::string_view text) {
  if (text.find('\0') != std::string_view::npos)
    return false;
  // ASCII needs no decoding: skip to the first byte that does.
  size_t i = 0;
  while (i < text.size() && static_cast<unsigned char>(text[i]) < 0x80)
    ++i;
  if (i == text.size())
    return true;
  rapidjson::MemoryStream in{text.data() + i, text.size() - i};
  discard_stream out;
  while (in.Tell() < text.size() - i)
    if (!rapidjson::UTF8<>::Validate(in, out))
      return false;
  return true;
}

size_t append_bytes(const event_batch& events) {
  size_t result = 0;
  for (const auto& ev : events)
    result += ev.payload.size() + ev.metadata.size() + ev.actor_id.size();
  return result;
}

uint64_t content_digest(std::string_view event_type, int32_t event_version,
                        std::string_view payload) {
  std::hash<std::string_view> h;
  auto result = mix(h(event_type), static_cast<uint64_t>(event_version));
  return mix(result, h(payload));
}

uint64_t content_digest(const event_data& ev) {
  return content_digest(ev.event_type, ev.event_version, ev.payload);
}

caf::expected<size_t> page_size(size_t max_count, const store_limits& limits) {
  if (max_count == 0)
    return make_store_error(store_errc::invalid_argument,
                            "max_count must be positive");
  return std::min(max_count, limits.max_page_size);
}

caf::expected<size_t> feed_page_size(const read_all_options& opts,
                                     const store_limits& limits) {
  if (opts.max_count == 0)
    return make_store_error(store_errc::invalid_argument,
                            "max_count must be positive");
  if (opts.after_position < 0)
    return make_store_error(store_errc::invalid_argument,
                            "after_position must not be negative");
  return std::min(opts.max_count, limits.max_page_size);
}

caf::error check_type_name(std::string_view what, std::string_view name) {
  if (name.empty())
    return invalid(std::string{what} + " must not be empty");
  if (name.size() > 200)
    return invalid(std::string{what} + " is longer than 200 characters");
  for (size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0)) {
      std::string msg{what};
      msg += " may contain only letters, digits and _.:/- and must start "
             "with a letter or _; character ";
      msg += std::to_string(i);
      msg += " is not allowed";
      return invalid(std::move(msg));
    }
  return caf::none;
}

caf::error normalize_append(const stream_id& stream, expected_version expected,
                            event_batch& events, const store_limits& limits,
                            const event_registry* registry) {
  if (auto err = check_type_name("aggregate_type", stream.aggregate_type))
    return err;
  if (stream.aggregate_id.is_nil())
    return invalid("aggregate_id must not be the nil UUID");
  if (expected.type() == expected_version::kind::exact && expected.value() < 0)
    return invalid("expected version must not be negative");
  if (events.empty())
    return invalid("an append needs at least one event");
  if (events.size() > limits.max_events_per_append)
    return invalid("an append may carry at most "
                   + std::to_string(limits.max_events_per_append)
                   + " events, got " + std::to_string(events.size()));
  if (auto bytes = append_bytes(events); bytes > limits.max_append_bytes)
    return make_store_error(store_errc::payload_too_large,
                            "an append of " + std::to_string(bytes)
                              + " bytes exceeds the limit of "
                              + std::to_string(limits.max_append_bytes));
  json::parse_limits payload_limits{limits.max_payload_bytes, 64};
  json::parse_limits metadata_limits{limits.max_metadata_bytes, 64};
  // Small batches (a command's events) compare ids pairwise and allocate
  // nothing; large ones use a set.
  constexpr size_t pairwise_limit = 32;
  std::unordered_set<uuid> ids;
  if (events.size() > pairwise_limit)
    ids.reserve(events.size());
  auto repeats = [&](size_t i) {
    const auto& id = events[i].event_id;
    if (events.size() > pairwise_limit)
      return !ids.insert(id).second;
    for (size_t j = 0; j < i; ++j)
      if (events[j].event_id == id)
        return true;
    return false;
  };
  const auto& tenant = events.front().tenant_id;
  for (size_t i = 0; i < events.size(); ++i) {
    auto& ev = events[i];
    if (ev.event_id.is_nil())
      return invalid(event_label(i, ev) + ": event_id must not be nil");
    if (repeats(i))
      return invalid(event_label(i, ev) + ": event_id repeats in the batch");
    if (auto err = check_type_name("event_type", ev.event_type))
      return invalid(event_label(i, ev) + ": " + error_description(err));
    bool control = is_stream_control_type(ev.event_type);
    if (!control && ev.event_type.rfind("es.", 0) == 0)
      return invalid(event_label(i, ev)
                     + ": event types starting with \"es.\" are the "
                       "store's own");
    if (control && events.size() > 1)
      return invalid(event_label(i, ev)
                     + ": a stream control event must be appended alone");
    if (ev.event_version < 1)
      return invalid(event_label(i, ev) + ": event_version must be >= 1");
    if (ev.aggregate_id.is_nil())
      ev.aggregate_id = stream.aggregate_id;
    else if (ev.aggregate_id != stream.aggregate_id)
      return invalid(event_label(i, ev)
                     + ": aggregate_id differs from the stream's");
    if (ev.aggregate_type.empty())
      ev.aggregate_type = stream.aggregate_type;
    else if (ev.aggregate_type != stream.aggregate_type)
      return invalid(event_label(i, ev)
                     + ": aggregate_type differs from the stream's");
    if (ev.aggregate_version < 0)
      return invalid(event_label(i, ev)
                     + ": aggregate_version must not be negative");
    if (ev.tenant_id != tenant)
      return make_store_error(store_errc::tenant_mismatch,
                              event_label(i, ev)
                                + ": all events of an append must belong to "
                                  "the same tenant");
    if (ev.tenant_id && ev.tenant_id->is_nil())
      return invalid(event_label(i, ev) + ": tenant_id must not be nil");
    if (ev.actor_id.size() > limits.max_actor_id_bytes)
      return make_store_error(store_errc::payload_too_large,
                              event_label(i, ev) + ": actor_id of "
                                + std::to_string(ev.actor_id.size())
                                + " bytes exceeds the limit of "
                                + std::to_string(limits.max_actor_id_bytes));
    if (!is_storable_text(ev.actor_id))
      return invalid(event_label(i, ev)
                     + ": actor_id must be UTF-8 text without NUL bytes");
    if (auto us = ev.occurred_at.time_since_epoch().count();
        us < min_occurred_at_us || us > max_occurred_at_us)
      return invalid(event_label(i, ev)
                     + ": occurred_at must lie in the years 1 to 9999 UTC");
    if (ev.payload.size() > limits.max_payload_bytes)
      return make_store_error(store_errc::payload_too_large,
                              event_label(i, ev) + ": payload of "
                                + std::to_string(ev.payload.size())
                                + " bytes exceeds the limit of "
                                + std::to_string(limits.max_payload_bytes));
    if (ev.metadata.size() > limits.max_metadata_bytes)
      return make_store_error(store_errc::payload_too_large,
                              event_label(i, ev) + ": metadata of "
                                + std::to_string(ev.metadata.size())
                                + " bytes exceeds the limit of "
                                + std::to_string(limits.max_metadata_bytes));
    if (auto err = json::validate(ev.payload, payload_limits, true))
      return make_store_error(static_cast<store_errc>(err.code()),
                              event_label(i, ev)
                                + ": payload: " + error_description(err));
    if (!ev.metadata.empty())
      if (auto err = json::validate(ev.metadata, metadata_limits, true))
        return make_store_error(static_cast<store_errc>(err.code()),
                                event_label(i, ev)
                                  + ": metadata: " + error_description(err));
    if (registry != nullptr && !control)
      if (auto err = registry->validate(ev))
        return make_store_error(static_cast<store_errc>(err.code()),
                                event_label(i, ev) + ": "
                                  + error_description(err));
  }
  return caf::none;
}

std::vector<caf::error>
normalize_requests(std::vector<append_request>& requests,
                   const store_limits& limits, const event_registry* registry) {
  std::vector<caf::error> result(requests.size());
  size_t total = 0;
  for (const auto& req : requests)
    total += append_bytes(req.events);
  if (total > limits.max_append_bytes) {
    auto err = make_store_error(
      store_errc::payload_too_large,
      "an append_many call of " + std::to_string(total)
        + " bytes exceeds the limit of "
        + std::to_string(limits.max_append_bytes) + "; nothing was written");
    for (auto& x : result)
      x = err;
    return result;
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    auto& req = requests[i];
    result[i] = normalize_append(req.stream, req.expected, req.events, limits,
                                 registry);
  }
  return result;
}

caf::error normalize_atomic(std::vector<append_request>& requests,
                            const store_limits& limits,
                            const event_registry* registry) {
  if (requests.empty())
    return make_store_error(store_errc::invalid_argument,
                            "an atomic append needs at least one request");
  std::set<stream_id> streams;
  for (const auto& req : requests)
    if (!streams.insert(req.stream).second)
      return make_store_error(store_errc::invalid_argument,
                              "an atomic append names stream "
                                + to_string(req.stream)
                                + " twice; nothing was written");
  for (auto& err : normalize_requests(requests, limits, registry))
    if (err)
      return make_store_error(static_cast<store_errc>(err.code()),
                              "the atomic append was refused, nothing was "
                              "written: "
                                + error_description(err));
  return caf::none;
}

namespace {

constexpr std::string_view sibling_refused_text
  = "not written: another request of the atomic append was refused";

bool is_sibling_refusal(const caf::expected<append_result>& res) {
  return !res && has_code(res.error(), store_errc::internal)
         && error_description(res.error()) == sibling_refused_text;
}

} // namespace

caf::error atomic_sibling_refused() {
  return make_store_error(store_errc::internal,
                          std::string{sibling_refused_text});
}

caf::expected<std::vector<append_result>>
settle_atomic(std::vector<caf::expected<append_result>> results) {
  std::vector<caf::expected<append_result>> own;
  for (auto& res : results)
    if (!is_sibling_refusal(res))
      own.push_back(res);
  if (auto err = merge_atomic_errors(own))
    return err;
  if (own.size() < results.size())
    return make_store_error(store_errc::internal,
                            "an atomic append was refused without a reason");
  std::vector<append_result> out;
  out.reserve(results.size());
  for (auto& res : results)
    out.push_back(std::move(*res));
  return out;
}

caf::error make_stream_deleted(const stream_id& stream, bool for_good,
                               const std::optional<uuid>& tenant) {
  return caf::make_error(
    store_errc::stream_deleted,
    "stream " + to_string(stream)
      + (for_good ? " was deleted for good (tombstone)" : " was deleted"),
    tenant ? tenant->to_string() : std::string{});
}

stream_visibility visibility_of(int64_t head_version,
                                const std::vector<control_event>& controls) {
  stream_visibility result;
  int64_t deleted_at = 0;
  for (const auto& c : controls) {
    if (c.event_type == stream_tombstoned_type)
      return stream_visibility{true, head_version + 1};
    if (c.event_type == stream_deleted_type) {
      // Written again since: the deletion event opens what readers see,
      // so they know to start over.
      deleted_at = std::max(deleted_at, c.version);
      result.first_version = std::max(result.first_version, c.version);
    } else if (c.event_type == stream_truncated_type) {
      auto doc = json::document::parse(c.payload);
      if (!doc)
        continue;
      if (auto before = doc->root().find("before"))
        if (auto n = before->as_int64())
          result.first_version = std::max(result.first_version, *n);
    }
  }
  result.deleted = deleted_at > 0 && deleted_at == head_version;
  return result;
}

caf::error
check_and_assign_versions(const stream_id& stream, expected_version expected,
                          const stream_head& head, event_batch& events) {
  auto& first = events.front();
  bool control = is_stream_control_type(first.event_type);
  if (control) {
    if (head.version == 0)
      return make_store_error(store_errc::invalid_argument,
                              "stream " + to_string(stream)
                                + " does not exist: nothing to delete or "
                                  "truncate");
    if (!first.tenant_id)
      first.tenant_id = head.tenant_id;
  }
  // The tenant first: nothing about another tenant's stream (its version,
  // its deletion) may show in the answer.
  if (head.version > 0 && head.tenant_id != first.tenant_id)
    return make_store_error(store_errc::tenant_mismatch,
                            "stream " + to_string(stream)
                              + " belongs to another tenant");
  if (head.tombstoned)
    return make_stream_deleted(stream, true, head.tenant_id);
  if (first.event_type == stream_truncated_type) {
    std::optional<int64_t> n;
    if (auto doc = json::document::parse(first.payload))
      if (auto before = doc->root().find("before"))
        n = before->as_int64();
    if (!n || *n < 2 || *n > head.version + 1)
      return make_store_error(store_errc::invalid_argument,
                              "stream " + to_string(stream)
                                + ": truncate before must lie from 2 to "
                                + std::to_string(head.version + 1));
  }
  if (head.deleted) {
    // Soft-deleted: written again as if new, or deleted for good.
    auto kind = expected.type();
    bool anew = kind == expected_version::kind::no_stream
                || kind == expected_version::kind::any;
    if (!anew || (control && first.event_type != stream_tombstoned_type))
      return make_stream_deleted(stream, false, head.tenant_id);
  } else if (!expected.matches(head.version)) {
    return make_version_conflict(stream, expected, head.version);
  }
  for (size_t i = 0; i < events.size(); ++i) {
    auto next = head.version + 1 + static_cast<int64_t>(i);
    auto& ev = events[i];
    if (ev.aggregate_version == 0) {
      ev.aggregate_version = next;
    } else if (ev.aggregate_version != next) {
      // An explicit version states what the writer expected the stream to
      // be: a mismatch is a concurrency conflict.
      auto implied = ev.aggregate_version - 1 - static_cast<int64_t>(i);
      return make_version_conflict(
        stream, implied >= 0 ? expected_version::exact(implied) : expected,
        head.version);
    }
  }
  return caf::none;
}

caf::expected<std::optional<append_result>>
check_replay(const stream_id& stream, const event_batch& events,
             const location_lookup& lookup, bool check_all) {
  auto first = lookup(events.front().event_id);
  if (!first)
    return std::move(first.error());
  // A new event alone (a command's usual append) needs no more.
  if (!*first && (!check_all || events.size() == 1))
    return std::nullopt;
  std::vector<std::optional<stored_location>> found;
  found.reserve(events.size());
  found.push_back(std::move(*first));
  for (size_t i = 1; i < events.size(); ++i) {
    auto loc = lookup(events[i].event_id);
    if (!loc)
      return std::move(loc.error());
    found.push_back(std::move(*loc));
  }
  size_t stored = 0;
  for (size_t i = 0; i < found.size(); ++i) {
    if (!found[i])
      continue;
    ++stored;
    if (found[i]->stream != stream)
      return make_store_error(store_errc::duplicate_event_id,
                              "event " + events[i].event_id.to_string()
                                + " is already stored in stream "
                                + to_string(found[i]->stream));
  }
  if (stored == 0)
    return std::nullopt;
  bool exact_replay = stored == found.size();
  for (size_t i = 1; exact_replay && i < found.size(); ++i)
    exact_replay = found[i]->version == found[i - 1]->version + 1;
  if (!exact_replay)
    return make_store_error(store_errc::idempotency_conflict,
                            "stream " + to_string(stream) + ": "
                              + std::to_string(stored) + " of "
                              + std::to_string(found.size())
                              + " event ids are already stored, not as "
                                "this batch");
  for (size_t i = 0; i < found.size(); ++i) {
    const auto& ev = events[i];
    if (ev.aggregate_version != 0 && ev.aggregate_version != found[i]->version)
      return make_store_error(
        store_errc::idempotency_conflict,
        "event " + ev.event_id.to_string() + " is stored at version "
          + std::to_string(found[i]->version) + ", not at version "
          + std::to_string(ev.aggregate_version));
    if (content_digest(ev) != found[i]->digest)
      return make_store_error(store_errc::idempotency_conflict,
                              "event " + ev.event_id.to_string()
                                + " is already stored with another type, "
                                  "schema version or payload: an event id "
                                  "may not be reused for other content");
  }
  append_result result;
  result.stream = stream;
  result.first_version = found.front()->version;
  result.last_version = found.back()->version;
  result.first_position = found.front()->position;
  result.last_position = found.back()->position;
  result.deduplicated = true;
  return std::optional<append_result>{std::move(result)};
}

void metrics_counter::count(const caf::expected<append_result>& res) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  if (!res) {
    if (has_code(res.error(), store_errc::wrong_expected_version))
      conflicts_.fetch_add(1, std::memory_order_relaxed);
  } else if (res->deduplicated) {
    deduplicated_.fetch_add(1, std::memory_order_relaxed);
  } else {
    auto n = res->last_version - res->first_version + 1;
    events_.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
  }
}

void settle_health(store_health& h, const caf::error& err,
                   std::chrono::steady_clock::time_point start) {
  h.latency_ms = std::chrono::duration<double, std::milli>(
                   std::chrono::steady_clock::now() - start)
                   .count();
  if (err)
    h.problem = describe(err);
  else if (!h.missing_tables.empty())
    h.problem = "tables missing (run the migrations)";
  else if (h.schema_version != h.expected_schema_version)
    h.problem = "schema version " + std::to_string(h.schema_version)
                + ", this library expects "
                + std::to_string(h.expected_schema_version);
}

store_metrics metrics_counter::snapshot() const {
  store_metrics result;
  result.append_requests = requests_.load(std::memory_order_relaxed);
  result.events_appended = events_.load(std::memory_order_relaxed);
  result.transactions = transactions_.load(std::memory_order_relaxed);
  result.version_conflicts = conflicts_.load(std::memory_order_relaxed);
  result.deduplicated = deduplicated_.load(std::memory_order_relaxed);
  result.decided_again = decided_again_.load(std::memory_order_relaxed);
  result.append_seconds = append_seconds_.snapshot();
  result.group_size = group_size_.snapshot();
  result.reads = reads_.load(std::memory_order_relaxed);
  result.events_read = events_read_.load(std::memory_order_relaxed);
  return result;
}

} // namespace es::detail
