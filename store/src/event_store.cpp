#include "es/store/event_store.hpp"

#include "es/store/errors.hpp"

#include <caf/message.hpp>
#include <caf/message_builder.hpp>

#include <algorithm>
#include <chrono>

namespace es {

std::string to_string(const stream_id& x) {
  std::string result = x.aggregate_type;
  result += '/';
  result += x.aggregate_id.to_string();
  return result;
}

std::string to_string(expected_version x) {
  switch (x.type()) {
    case expected_version::kind::any: return "any";
    case expected_version::kind::no_stream: return "no_stream";
    case expected_version::kind::stream_exists: return "stream_exists";
    case expected_version::kind::exact: return std::to_string(x.value());
  }
  return "?";
}

caf::error make_version_conflict(const stream_id& stream,
                                 expected_version expected, int64_t actual) {
  auto desc = "stream " + to_string(stream) + ": expected version "
              + to_string(expected) + ", actual version "
              + std::to_string(actual);
  return caf::make_error(store_errc::wrong_expected_version, std::move(desc),
                         to_string(stream), to_string(expected), actual);
}

caf::error
merge_atomic_errors(const std::vector<caf::expected<append_result>>& results) {
  caf::error first;
  std::vector<version_conflict> conflicts;
  for (const auto& res : results) {
    if (res)
      continue;
    if (!first)
      first = res.error();
    for (auto& c : get_version_conflicts(res.error()))
      conflicts.push_back(std::move(c));
  }
  if (conflicts.empty())
    return first;
  std::string desc = "the atomic append was refused, nothing was written:";
  for (const auto& c : conflicts)
    desc += " stream " + c.stream + " expected version " + c.expected
            + ", actual version " + std::to_string(c.actual) + ";";
  desc.pop_back();
  caf::message_builder ctx;
  ctx.append(std::move(desc));
  for (auto& c : conflicts) {
    ctx.append(std::move(c.stream));
    ctx.append(std::move(c.expected));
    ctx.append(c.actual);
  }
  return caf::error{static_cast<uint8_t>(store_errc::wrong_expected_version),
                    caf::atom("es_store"), ctx.to_message()};
}

std::string describe_event(const recorded_event& ev) {
  std::string result = "event ";
  result += ev.event_id.to_string();
  result += " at position ";
  result += std::to_string(ev.global_position);
  result += " (stream ";
  result += to_string(ev.stream());
  result += " version ";
  result += std::to_string(ev.aggregate_version);
  result += ", ";
  result += ev.event_type;
  result += " v";
  result += std::to_string(ev.event_version);
  result += ')';
  return result;
}

caf::error in_event_context(const caf::error& err, const recorded_event& ev) {
  if (!err)
    return err;
  auto text = describe_event(ev);
  auto desc = error_description(err);
  // Already in context (wrapped once by an inner layer).
  if (desc.rfind(text, 0) == 0)
    return err;
  text += ": ";
  text += desc.empty() ? describe(err) : desc;
  return caf::error{err.code(), err.category(), caf::make_message(text)};
}

bool event_filter::matches(const event_data& ev) const {
  if (tenant_id && ev.tenant_id != tenant_id)
    return false;
  auto contains = [](const std::vector<std::string>& xs, const std::string& x) {
    return xs.empty() || std::find(xs.begin(), xs.end(), x) != xs.end();
  };
  return contains(event_types, ev.event_type)
         && contains(aggregate_types, ev.aggregate_type);
}

bool event_filter::matches(const event_view& ev) const {
  // Reads only the fields the filter names (each read of a row view is a
  // call into the store's library).
  if (tenant_id && ev.tenant_id() != tenant_id)
    return false;
  auto contains = [](const std::vector<std::string>& xs, std::string_view x) {
    return std::find(xs.begin(), xs.end(), x) != xs.end();
  };
  return (event_types.empty() || contains(event_types, ev.event_type()))
         && (aggregate_types.empty()
             || contains(aggregate_types, ev.aggregate_type()));
}

recorded_event event_view::to_event() const {
  if (const auto* ev = owned())
    return *ev;
  recorded_event ev;
  ev.global_position = global_position();
  ev.event_id = event_id();
  ev.event_type = event_type();
  ev.event_version = event_version();
  ev.aggregate_type = aggregate_type();
  ev.aggregate_id = aggregate_id();
  ev.aggregate_version = aggregate_version();
  ev.tenant_id = tenant_id();
  ev.occurred_at = occurred_at();
  ev.correlation_id = correlation_id();
  ev.causation_id = causation_id();
  ev.actor_id = actor_id();
  ev.metadata = metadata();
  ev.payload = payload();
  return ev;
}

bool is_stream_control_type(std::string_view event_type) noexcept {
  return event_type == stream_deleted_type
         || event_type == stream_tombstoned_type
         || event_type == stream_truncated_type;
}

namespace {

caf::expected<append_result>
append_control(event_store& store, const stream_id& stream,
               std::string_view type, std::string payload,
               expected_version expected) {
  event_data ev;
  ev.event_id = uuid::time_ordered();
  ev.event_type = std::string{type};
  ev.occurred_at = now_utc();
  ev.payload = std::move(payload);
  return store.append(stream, expected, {std::move(ev)});
}

} // namespace

caf::expected<append_result>
delete_stream(event_store& store, const stream_id& stream, deletion_mode mode,
              expected_version expected) {
  return append_control(store, stream,
                        mode == deletion_mode::hard ? stream_tombstoned_type
                                                    : stream_deleted_type,
                        "{}", expected);
}

std::optional<uuid> deleted_stream_tenant(const caf::error& err) {
  if (!has_code(err, store_errc::stream_deleted))
    return std::nullopt;
  const auto& ctx = err.context();
  if (ctx.size() < 2 || !ctx.match_element<std::string>(1))
    return std::nullopt;
  auto parsed = uuid::parse(ctx.get_as<std::string>(1));
  if (!parsed)
    return std::nullopt;
  return *parsed;
}

caf::expected<append_result>
truncate_stream(event_store& store, const stream_id& stream, int64_t before,
                expected_version expected) {
  if (before < 2)
    return make_store_error(store_errc::invalid_argument,
                            "truncate before must be at least 2");
  return append_control(store, stream, stream_truncated_type,
                        "{\"before\":" + std::to_string(before) + "}",
                        expected);
}

event_store::~event_store() {
  // nop
}

std::vector<caf::expected<append_result>>
event_store::append_many(std::vector<append_request> requests) {
  std::vector<caf::expected<append_result>> results;
  results.reserve(requests.size());
  for (auto& req : requests)
    results.emplace_back(
      append(req.stream, req.expected, std::move(req.events)));
  return results;
}

caf::expected<std::vector<append_result>>
event_store::append_atomic(std::vector<append_request>) {
  return make_store_error(store_errc::invalid_argument,
                          "the " + name()
                            + " store does not support atomic appends to "
                              "several streams");
}

caf::expected<all_slice>
event_store::read_correlated(const uuid& correlation_id,
                             const read_all_options& options) {
  // Without an index: scan the feed page by page until a page of matches is
  // full or the feed ends.
  all_slice result;
  auto opts = options;
  auto wanted = std::min(options.max_count, limits().max_page_size);
  opts.max_count = limits().max_page_size;
  for (;;) {
    auto page = read_all(opts);
    if (!page)
      return std::move(page.error());
    for (auto& ev : page->events) {
      if (ev.correlation_id != correlation_id && ev.event_id != correlation_id)
        continue;
      result.events.push_back(std::move(ev));
      if (result.events.size() == wanted) {
        result.next_position = result.events.back().global_position;
        result.end_of_feed = false;
        return result;
      }
    }
    opts.after_position = page->next_position;
    if (page->end_of_feed) {
      result.next_position = opts.after_position;
      result.end_of_feed = true;
      return result;
    }
  }
}

caf::expected<all_slice>
event_store::visit_all(const read_all_options& options,
                       const std::function<bool(const event_view&)>& fn) {
  auto page = read_all(options);
  if (!page)
    return page;
  for (const auto& ev : page->events) {
    if (!fn(recorded_event_view{ev})) {
      page->next_position = ev.global_position;
      page->end_of_feed = false;
      break;
    }
  }
  page->events.clear();
  return page;
}

store_health event_store::check_health() {
  store_health result;
  auto start = std::chrono::steady_clock::now();
  auto head = head_position();
  result.latency_ms = std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - start)
                        .count();
  result.reachable = static_cast<bool>(head);
  if (!head)
    result.problem = describe(head.error());
  return result;
}

caf::expected<bool> event_store::event_exists(const uuid& event_id) {
  auto res = find_event(event_id);
  if (!res)
    return std::move(res.error());
  return res->has_value();
}

caf::error
for_each_in_stream(event_store& store, const stream_id& stream,
                   read_stream_options options,
                   const std::function<caf::error(recorded_event&)>& fn) {
  for (;;) {
    auto page = store.read_stream(stream, options);
    if (!page)
      return std::move(page.error());
    for (auto& ev : page->events)
      if (auto err = fn(ev))
        return err;
    if (page->end_of_stream || page->events.empty())
      return caf::none;
    options.from_version = page->next_version;
  }
}

caf::expected<int64_t>
for_each_in_feed(event_store& store, read_all_options options,
                 const std::function<caf::error(recorded_event&)>& fn) {
  for (;;) {
    auto page = store.read_all(options);
    if (!page)
      return std::move(page.error());
    for (auto& ev : page->events)
      if (auto err = fn(ev))
        return err;
    options.after_position = page->next_position;
    if (page->end_of_feed)
      return options.after_position;
  }
}

} // namespace es
