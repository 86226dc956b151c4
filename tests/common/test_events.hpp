// Event types and builders shared by the tests.
#pragma once

#include "es/store/event_registry.hpp"
#include "es/store/event_store.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace es::test {

struct item_added {
  static constexpr std::string_view event_type = "ItemAdded";
  static constexpr int32_t event_version = 1;
  std::string sku;
  int32_t quantity = 0;
  int64_t price_cents = 0;
  friend bool operator==(const item_added&, const item_added&) = default;
};

template <class F>
bool fields(F& f, item_added& x) {
  return f("sku", x.sku) && f("quantity", x.quantity)
         && f("price_cents", x.price_cents);
}

struct note_written {
  static constexpr std::string_view event_type = "NoteWritten";
  static constexpr int32_t event_version = 1;
  std::string text;
  friend bool operator==(const note_written&, const note_written&) = default;
};

template <class F>
bool fields(F& f, note_written& x) {
  return f("text", x.text);
}

/// Registers the test event types.
inline std::shared_ptr<event_registry> make_test_registry() {
  auto reg = std::make_shared<event_registry>();
  static_cast<void>(reg->add<item_added>());
  static_cast<void>(reg->add<note_written>());
  return reg;
}

/// An event for `stream` with a small JSON payload; `n` varies the payload.
inline event_data make_test_event(const stream_id& stream, int n = 0,
                                  std::string type = "ItemAdded") {
  event_data ev;
  ev.event_id = uuid::time_ordered();
  ev.event_type = std::move(type);
  ev.event_version = 1;
  ev.aggregate_id = stream.aggregate_id;
  ev.aggregate_type = stream.aggregate_type;
  ev.occurred_at = now_utc();
  if (ev.event_type == "NoteWritten")
    ev.payload = R"({"text":"note )" + std::to_string(n) + R"("})";
  else
    ev.payload = R"({"sku":"SKU-)" + std::to_string(n) + R"(","quantity":)"
                 + std::to_string(n % 7 + 1) + R"(,"price_cents":)"
                 + std::to_string(100 + n) + "}";
  return ev;
}

inline event_batch make_batch(const stream_id& stream, int count,
                              int first_n = 0) {
  event_batch result;
  for (int i = 0; i < count; ++i)
    result.push_back(make_test_event(stream, first_n + i));
  return result;
}

inline stream_id new_stream(std::string type = "Order") {
  return stream_id{std::move(type), uuid::random()};
}

} // namespace es::test
