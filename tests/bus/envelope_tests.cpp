// The broker wire format: envelopes round-trip every field, refuse what is
// not an envelope with a message naming the field, and carry headers; the
// deduper recognises redelivered events.
#include "es/bus/envelope.hpp"
#include "es/store/codec.hpp"
#include "es/store/errors.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace es;
using Catch::Contains;

namespace {

recorded_event full_event() {
  recorded_event ev;
  ev.event_id = uuid::random();
  ev.event_type = "ItemAdded";
  ev.event_version = 3;
  ev.aggregate_type = "Order";
  ev.aggregate_id = uuid::random();
  ev.aggregate_version = 7;
  ev.global_position = 123'456'789'012;
  ev.tenant_id = uuid::random();
  ev.occurred_at = *parse_timestamp("2026-11-30T02:19:12.345678Z");
  ev.correlation_id = uuid::random();
  ev.causation_id = uuid::random();
  ev.actor_id = "user:ada";
  ev.metadata
    = R"({"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"es=1","n":2})";
  ev.payload
    = R"({"sku":"pen é ☃ \"q\"","quantity":2,"price":1.5,"tags":["a",true,null],"big":-9223372036854775808})";
  return ev;
}

/// The envelope of `ev` with one member replaced (by JSON text).
std::string with_member(const recorded_event& ev, const std::string& name,
                        const std::string& json) {
  auto body = *encode_envelope(ev);
  auto key = "\"" + name + "\":";
  auto at = body.find(key);
  REQUIRE(at != std::string::npos);
  auto start = at + key.size();
  // Members of the envelope are scalars or objects without nested quotes
  // that matter here: cut at the next top-level comma.
  int depth = 0;
  bool in_string = false;
  size_t end = start;
  for (; end < body.size(); ++end) {
    char c = body[end];
    if (in_string) {
      if (c == '\\')
        ++end;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '{' || c == '[')
      ++depth;
    else if (c == '}' || c == ']') {
      if (depth == 0)
        break;
      --depth;
    } else if (c == ',' && depth == 0)
      break;
  }
  return body.substr(0, start) + json + body.substr(end);
}

void refused(const std::string& body, const std::string& says) {
  INFO(body);
  auto ev = decode_envelope(body);
  REQUIRE_FALSE(ev);
  CHECK(has_code(ev.error(), store_errc::malformed_payload));
  CHECK_THAT(describe(ev.error()), Contains(says));
}

} // namespace

TEST_CASE("an envelope carries every field of the event", "[envelope]") {
  auto ev = full_event();
  auto body = encode_envelope(ev);
  REQUIRE(body);
  // The payload and metadata are embedded objects, not strings.
  CHECK_THAT(*body, Contains(R"("payload":{"sku":)"));
  CHECK_THAT(*body, Contains(R"("metadata":{"traceparent":)"));
  CHECK_THAT(*body, Contains(R"("format":1)"));
  auto back = decode_envelope(*body);
  REQUIRE(back);
  CHECK(*back == ev);
}

TEST_CASE("payloads come back as the same JSON values, written compactly",
          "[envelope]") {
  // The stores hold what the codecs write (compact, UTF-8 unescaped);
  // other texts keep their values but not their spelling.
  auto ev = full_event();
  ev.payload = R"({ "a" : "\u00e9", "b" : [ 1 , 2.50 ] })";
  auto back = decode_envelope(*encode_envelope(ev));
  REQUIRE(back);
  CHECK(back->payload == "{\"a\":\"\u00e9\",\"b\":[1,2.5]}");
}

TEST_CASE("optional fields travel as null", "[envelope]") {
  auto ev = full_event();
  ev.tenant_id.reset();
  ev.correlation_id.reset();
  ev.causation_id.reset();
  ev.metadata.clear();
  ev.actor_id.clear();
  auto body = encode_envelope(ev);
  REQUIRE(body);
  CHECK_THAT(*body, Contains(R"("tenant_id":null)"));
  CHECK_THAT(*body, Contains(R"("metadata":null)"));
  auto back = decode_envelope(*body);
  REQUIRE(back);
  CHECK(*back == ev);
}

TEST_CASE("an event whose payload is not an object is not encoded",
          "[envelope]") {
  auto ev = full_event();
  ev.payload = "[1,2]";
  auto body = encode_envelope(ev);
  REQUIRE_FALSE(body);
  CHECK_THAT(describe(body.error()), Contains("payload is not a JSON object"));
  ev.payload = "{";
  CHECK_FALSE(encode_envelope(ev));
}

TEST_CASE("what is not an envelope is refused, naming the field",
          "[envelope][bad-input]") {
  auto ev = full_event();
  auto ok = *encode_envelope(ev);
  auto with = [&](const std::string& name, const std::string& json) {
    return with_member(ev, name, json);
  };
  refused(with("format", "2"), "format 2 is not supported");
  refused(with("format", "\"1\""), "format is not an integer");
  refused(with("event_id", "\"nope\""), "event_id is not a UUID");
  refused(with("aggregate_id", "17"), "aggregate_id is not a string");
  refused(with("tenant_id", "\"x\""), "tenant_id is not a UUID");
  refused(with("event_version", "0"), "event_version 0 is out of range");
  refused(with("event_version", "1.5"), "event_version is not an integer");
  refused(with("event_type", "\"\""), "event_type is empty");
  refused(with("occurred_at", "\"yesterday\""), "occurred_at");
  refused(with("occurred_at", "\"10000-01-01T00:00:00Z\""), "occurred_at");
  refused(with("payload", "\"{}\""), "payload is not a JSON object");
  refused(with("payload", "null"), "payload is not a JSON object");
  refused(with("metadata", "[1]"), "metadata is not a JSON object");
  refused("[]", "not a JSON object");
  refused("{\"format\":1}", "event_id is missing");
  refused(R"({"event_id":"x"})", "format is missing");
  // Not JSON at all, or cut short.
  refused("", "invalid JSON");
  refused(ok.substr(0, ok.size() / 2), "invalid JSON");
  // Past the limits.
  json::parse_limits small;
  small.max_bytes = 64;
  auto big = decode_envelope(ok, small);
  REQUIRE_FALSE(big);
  CHECK(has_code(big.error(), store_errc::payload_too_large));
  // Unknown members are ignored (later formats may add some).
  auto extended = "{\"later\":{\"x\":[1]}," + ok.substr(1);
  auto back = decode_envelope(extended);
  REQUIRE(back);
  CHECK(*back == ev);
}

TEST_CASE("headers name the event for routing and tracing", "[envelope]") {
  auto ev = full_event();
  auto headers = envelope_headers(ev);
  std::vector<std::pair<std::string, std::string>> expected{
    {"message_id", ev.event_id.to_string()},
    {"event_type", "ItemAdded"},
    {"event_version", "3"},
    {"aggregate_type", "Order"},
    {"aggregate_id", ev.aggregate_id.to_string()},
    {"global_position", "123456789012"},
    {"tenant_id", ev.tenant_id->to_string()},
    {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    {"tracestate", "es=1"},
    {"content_type", "application/json"},
  };
  CHECK(headers == expected);
  // Without a tenant or trace context, those headers are left out; metadata
  // that is not an object (never stored, but possible on the wire) too.
  ev.tenant_id.reset();
  ev.metadata = R"({"traceparent":17})";
  CHECK(envelope_headers(ev).size() == 7);
  ev.metadata = "not json";
  CHECK(envelope_headers(ev).size() == 7);
}

TEST_CASE("the deduper skips redelivered events within its window",
          "[envelope][dedupe]") {
  event_deduper dedupe{3};
  auto a = uuid::random();
  auto b = uuid::random();
  CHECK_FALSE(dedupe.seen(a));
  // A handler that failed does not remember: the redelivery is handled.
  CHECK_FALSE(dedupe.seen(a));
  dedupe.remember(a);
  CHECK(dedupe.seen(a));
  dedupe.remember(a); // again: still one entry
  CHECK(dedupe.size() == 1);
  dedupe.remember(b);
  dedupe.remember(uuid::random());
  CHECK(dedupe.seen(a));
  // The window holds three ids: the fourth pushes out the oldest.
  dedupe.remember(uuid::random());
  CHECK_FALSE(dedupe.seen(a));
  CHECK(dedupe.seen(b));
  CHECK(dedupe.size() == 3);
  CHECK(event_deduper{0}.capacity() == 1);
}
