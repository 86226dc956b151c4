#include "es/bus/envelope.hpp"

#include "es/store/codec.hpp"
#include "es/store/errors.hpp"

#include <cstdint>
#include <optional>

namespace es {

namespace {

caf::error bad(std::string what) {
  return make_store_error(store_errc::malformed_payload,
                          "envelope: " + std::move(what));
}

void write_optional_uuid(json::writer& out, std::string_view key,
                         const std::optional<uuid>& x) {
  out.key(key);
  if (x)
    out.string(x->to_string());
  else
    out.null();
}

/// Embeds the JSON object text `text` (empty: null when `allow_empty`).
caf::error write_object(json::writer& out, std::string_view key,
                        const std::string& text, bool allow_empty) {
  out.key(key);
  if (text.empty() && allow_empty) {
    out.null();
    return caf::none;
  }
  auto doc = json::document::parse(text);
  if (!doc)
    return bad(std::string{key} + " is not JSON: " + describe(doc.error()));
  if (doc->root().type() != json::kind::object)
    return bad(std::string{key} + " is not a JSON object");
  doc->root().write_to(out);
  return caf::none;
}

/// Reads the fields of an envelope's root object.
class reader {
public:
  explicit reader(json::value root) : root_(root) {
    // nop
  }

  caf::error error() const {
    return err_;
  }

  std::string text(std::string_view name) {
    auto v = member(name);
    if (!v)
      return {};
    auto s = v->as_string();
    if (!s) {
      fail(std::string{name} + " is not a string");
      return {};
    }
    return std::string{*s};
  }

  int64_t integer(std::string_view name) {
    auto v = member(name);
    if (!v)
      return 0;
    auto i = v->as_int64();
    if (!i) {
      fail(std::string{name} + " is not an integer");
      return 0;
    }
    return *i;
  }

  uuid id(std::string_view name) {
    auto s = text(name);
    if (err_)
      return {};
    auto x = uuid::parse(s);
    if (!x) {
      fail(std::string{name} + " is not a UUID");
      return {};
    }
    return *x;
  }

  std::optional<uuid> optional_id(std::string_view name) {
    auto v = root_.find(name);
    if (!v || v->type() == json::kind::null)
      return std::nullopt;
    return id(name);
  }

  /// The object member `name` as JSON text; "" for null when allowed.
  std::string object(std::string_view name, bool allow_null) {
    auto v = root_.find(name);
    if (allow_null && (!v || v->type() == json::kind::null))
      return {};
    if (!v) {
      fail(std::string{name} + " is missing");
      return {};
    }
    if (v->type() != json::kind::object) {
      fail(std::string{name} + " is not a JSON object");
      return {};
    }
    json::writer out;
    v->write_to(out);
    return out.str();
  }

private:
  std::optional<json::value> member(std::string_view name) {
    if (err_)
      return std::nullopt;
    auto v = root_.find(name);
    if (!v)
      fail(std::string{name} + " is missing");
    return v;
  }

  void fail(std::string what) {
    if (!err_)
      err_ = bad(std::move(what));
  }

  json::value root_;
  caf::error err_;
};

} // namespace

caf::expected<std::string> encode_envelope(const recorded_event& ev) {
  json::writer out;
  out.begin_object();
  out.key("format");
  out.integer(envelope_format);
  out.key("event_id");
  out.string(ev.event_id.to_string());
  out.key("event_type");
  out.string(ev.event_type);
  out.key("event_version");
  out.integer(ev.event_version);
  out.key("aggregate_type");
  out.string(ev.aggregate_type);
  out.key("aggregate_id");
  out.string(ev.aggregate_id.to_string());
  out.key("aggregate_version");
  out.integer(ev.aggregate_version);
  out.key("global_position");
  out.integer(ev.global_position);
  write_optional_uuid(out, "tenant_id", ev.tenant_id);
  out.key("occurred_at");
  out.string(format_timestamp(ev.occurred_at));
  write_optional_uuid(out, "correlation_id", ev.correlation_id);
  write_optional_uuid(out, "causation_id", ev.causation_id);
  out.key("actor_id");
  out.string(ev.actor_id);
  if (auto err = write_object(out, "metadata", ev.metadata, true))
    return err;
  if (auto err = write_object(out, "payload", ev.payload, false))
    return err;
  out.end_object();
  if (!out.ok())
    return bad("the event could not be written as JSON");
  return out.str();
}

caf::expected<recorded_event>
decode_envelope(std::string_view body, const json::parse_limits& limits) {
  auto doc = json::document::parse(body, limits);
  if (!doc)
    return std::move(doc.error());
  auto root = doc->root();
  if (root.type() != json::kind::object)
    return bad("not a JSON object");
  reader in{root};
  auto format = in.integer("format");
  if (in.error())
    return in.error();
  if (format != envelope_format)
    return bad("format " + std::to_string(format)
               + " is not supported (this library reads format "
               + std::to_string(envelope_format) + ")");
  recorded_event ev;
  ev.event_id = in.id("event_id");
  ev.event_type = in.text("event_type");
  auto version = in.integer("event_version");
  ev.aggregate_type = in.text("aggregate_type");
  ev.aggregate_id = in.id("aggregate_id");
  ev.aggregate_version = in.integer("aggregate_version");
  ev.global_position = in.integer("global_position");
  ev.tenant_id = in.optional_id("tenant_id");
  auto occurred = in.text("occurred_at");
  ev.correlation_id = in.optional_id("correlation_id");
  ev.causation_id = in.optional_id("causation_id");
  ev.actor_id = in.text("actor_id");
  ev.metadata = in.object("metadata", true);
  ev.payload = in.object("payload", false);
  if (in.error())
    return in.error();
  if (version < 1 || version > INT32_MAX)
    return bad("event_version " + std::to_string(version) + " is out of range");
  ev.event_version = static_cast<int32_t>(version);
  if (ev.event_type.empty())
    return bad("event_type is empty");
  auto at = parse_timestamp(occurred);
  if (!at)
    return bad("occurred_at: " + error_description(at.error()));
  ev.occurred_at = *at;
  return ev;
}

std::vector<std::pair<std::string, std::string>>
envelope_headers(const recorded_event& ev) {
  std::vector<std::pair<std::string, std::string>> result{
    {"message_id", ev.event_id.to_string()},
    {"event_type", ev.event_type},
    {"event_version", std::to_string(ev.event_version)},
    {"aggregate_type", ev.aggregate_type},
    {"aggregate_id", ev.aggregate_id.to_string()},
    {"global_position", std::to_string(ev.global_position)},
  };
  if (ev.tenant_id)
    result.emplace_back("tenant_id", ev.tenant_id->to_string());
  if (!ev.metadata.empty())
    if (auto doc = json::document::parse(ev.metadata);
        doc && doc->root().type() == json::kind::object)
      for (auto name : {"traceparent", "tracestate"})
        if (auto v = doc->root().find(name))
          if (auto s = v->as_string())
            result.emplace_back(name, std::string{*s});
  result.emplace_back("content_type", "application/json");
  return result;
}

event_deduper::event_deduper(size_t capacity)
  : capacity_(capacity > 0 ? capacity : 1) {
  // nop
}

bool event_deduper::seen(const uuid& id) const {
  return ids_.count(id) > 0;
}

void event_deduper::remember(const uuid& id) {
  if (!ids_.insert(id).second)
    return;
  order_.push_back(id);
  if (order_.size() > capacity_) {
    ids_.erase(order_.front());
    order_.pop_front();
  }
}

} // namespace es
