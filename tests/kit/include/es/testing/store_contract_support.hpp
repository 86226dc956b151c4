// The sample events, builders and checks of the store contract suite.
//
// Part of the header-only contract suite (es/testing/store_contract.hpp):
// it includes <catch2/catch.hpp>, so only Catch2 v2 test programs include
// it; the es::testing library does not.
#pragma once

#include "es/store/errors.hpp"
#include "es/store/event_registry.hpp"
#include "es/store/event_store.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace es::testing::store_contract {

// -- sample events ------------------------------------------------------------

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

/// A registry that knows the sample events.
inline std::shared_ptr<event_registry> make_test_registry() {
  auto reg = std::make_shared<event_registry>();
  static_cast<void>(reg->add<item_added>());
  static_cast<void>(reg->add<note_written>());
  return reg;
}

/// An "ItemAdded" (or "NoteWritten") event for `stream` with a small JSON
/// payload; `n` varies the payload.
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

// -- checks -------------------------------------------------------------------

/// Returns the value or fails the test with the error.
template <class T>
T require(caf::expected<T> x) {
  if (!x)
    FAIL("unexpected error: " << describe(x.error()));
  return std::move(*x);
}

inline void require_code(const caf::error& err, store_errc code) {
  INFO("error: " << describe(err));
  REQUIRE(has_code(err, code));
}

template <class T>
void require_code(const caf::expected<T>& x, store_errc code) {
  REQUIRE_FALSE(x);
  require_code(x.error(), code);
}

inline recorded_events read_whole_stream(event_store& store,
                                         const stream_id& s) {
  recorded_events result;
  auto err = for_each_in_stream(store, s, read_stream_options{},
                                [&](recorded_event& ev) {
                                  result.push_back(ev);
                                  return caf::error{};
                                });
  REQUIRE_FALSE(err);
  return result;
}

inline recorded_events read_feed(event_store& store,
                                 read_all_options opts = {}) {
  recorded_events result;
  auto pos = for_each_in_feed(store, opts, [&](recorded_event& ev) {
    result.push_back(ev);
    return caf::error{};
  });
  REQUIRE(pos);
  return result;
}

} // namespace es::testing::store_contract
