// The second part of the event store contract suite: bad input gets a clear
// error, no crash, and nothing written. Header-only, for Catch2 v2 test
// programs, used like es/testing/store_contract.hpp (define
// ES_CONTRACT_FIXTURES first; see there for what a fixture is). It may go
// in the same file as the first part or in another one.
#pragma once

#ifndef ES_CONTRACT_FIXTURES
#  error "define ES_CONTRACT_FIXTURES first: see the top of this file"
#endif

#include "es/store/errors.hpp"
#include "es/store/event_store.hpp"
#include "es/testing/store_contract_support.hpp"

#include <catch2/catch.hpp>

#include <limits>
#include <string>
#include <vector>

namespace es::testing::store_contract {

/// Appends `batch` and checks it fails with `code` and leaves the store
/// untouched.
inline void refuse(event_store& store, const stream_id& s, event_batch batch,
                   store_errc code) {
  auto before = store.head_position();
  REQUIRE(before);
  auto res = store.append(s, expected_version::any(), batch);
  REQUIRE_FALSE(res);
  INFO(describe(res.error()));
  CHECK(has_code(res.error(), code));
  CHECK_FALSE(error_description(res.error()).empty());
  CHECK(*store.head_position() == *before);
  for (const auto& ev : batch)
    CHECK_FALSE(*store.event_exists(ev.event_id));
}

inline event_batch with_payload(const stream_id& s, std::string payload) {
  auto batch = make_batch(s, 2);
  batch[1].payload = std::move(payload);
  return batch;
}

TEMPLATE_TEST_CASE("malformed and hostile JSON payloads are refused",
                   "[bad-input]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  for (std::string payload :
       {std::string{""}, std::string{"{"}, std::string{R"({"sku":"x")"},
        std::string{R"({"sku":"x"}garbage)"}, std::string{"null"},
        std::string{"42"}, std::string{R"("a string")"}, std::string{"[1,2,3]"},
        std::string{R"({'single':'quotes'})"}, std::string{R"({"a":01})"},
        std::string{"{\"a\":\"\xFF\xFE\"}"}, std::string{"{\"a\":\"\\uD800\"}"},
        std::string{"{\"a\":1}\0{\"b\":2}", 15},
        "{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}"}) {
    INFO("payload: " << payload.substr(0, 40));
    refuse(*store, s, with_payload(s, payload), store_errc::malformed_payload);
  }
}

TEMPLATE_TEST_CASE("metadata must be a JSON object", "[bad-input]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  auto batch = make_batch(s, 1);
  batch[0].metadata = "[\"not\", \"an object\"]";
  refuse(*store, s, batch, store_errc::malformed_payload);
  batch[0].metadata = "{\"trace\": ";
  refuse(*store, s, batch, store_errc::malformed_payload);
}

TEMPLATE_TEST_CASE("oversized payloads hit the configured limit", "[bad-input]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  store_limits limits;
  limits.max_payload_bytes = 1024;
  limits.max_metadata_bytes = 128;
  limits.max_events_per_append = 10;
  auto store = fx.open(nullptr, limits);
  auto s = new_stream();
  auto big = R"({"blob":")" + std::string(1024, 'x') + R"("})";
  refuse(*store, s, with_payload(s, big), store_errc::payload_too_large);
  auto batch = make_batch(s, 1);
  batch[0].metadata = R"({"m":")" + std::string(200, 'y') + R"("})";
  refuse(*store, s, batch, store_errc::payload_too_large);
  refuse(*store, s, make_batch(s, 11), store_errc::invalid_argument);
  // Just under the limits is fine.
  auto fits = R"({"blob":")" + std::string(1000, 'x') + R"("})";
  REQUIRE(store->append(s, expected_version::any(), with_payload(s, fits)));
  REQUIRE(store->append(s, expected_version::any(), make_batch(s, 10)));
}

TEMPLATE_TEST_CASE("actor ids follow the text rules of every column",
                   "[bad-input]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  store_limits limits;
  limits.max_actor_id_bytes = 64;
  auto store = fx.open(nullptr, limits);
  auto s = new_stream();
  auto with_actor = [&](std::string actor) {
    auto batch = make_batch(s, 2);
    batch[1].actor_id = std::move(actor);
    return batch;
  };
  refuse(*store, s, with_actor(std::string("user\0root", 9)),
         store_errc::invalid_argument);
  refuse(*store, s, with_actor("caf\xc3\x28"), store_errc::invalid_argument);
  refuse(*store, s, with_actor("surrogate \xed\xa0\x80"),
         store_errc::invalid_argument);
  refuse(*store, s, with_actor("overlong \xc0\xaf"),
         store_errc::invalid_argument);
  refuse(*store, s, with_actor(std::string(65, 'a')),
         store_errc::payload_too_large);
  // Valid UTF-8 up to the limit is stored as given.
  auto fine
    = with_actor("J\xc3\xbcrgen \xf0\x9f\x98\x80 " + std::string(51, 'a'));
  REQUIRE(fine[1].actor_id.size() == 64);
  REQUIRE(store->append(s, expected_version::any(), fine));
  auto back = store->find_event(fine[1].event_id);
  REQUIRE(back);
  REQUIRE(*back);
  CHECK((*back)->actor_id == fine[1].actor_id);
}

TEMPLATE_TEST_CASE("occurred_at must lie in the years 1 to 9999", "[bad-input]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  auto at = [&](int64_t us) {
    auto batch = make_batch(s, 1);
    batch[0].occurred_at = timestamp{std::chrono::microseconds{us}};
    return batch;
  };
  // 4714 BC (PostgreSQL's own limit is 4713 BC) and the far future.
  refuse(*store, s, at(-210'900'000'000'000'000), store_errc::invalid_argument);
  refuse(*store, s, at(-62'135'596'800'000'001), store_errc::invalid_argument);
  refuse(*store, s, at(253'402'300'800'000'000), store_errc::invalid_argument);
  refuse(*store, s, at(std::numeric_limits<int64_t>::max()),
         store_errc::invalid_argument);
  // The edges themselves read back exactly.
  for (int64_t us : {int64_t{-62'135'596'800'000'000},
                     int64_t{253'402'300'799'999'999}, int64_t{0}}) {
    auto batch = at(us);
    REQUIRE(store->append(s, expected_version::any(), batch));
    auto back = store->find_event(batch[0].event_id);
    REQUIRE(back);
    REQUIRE(*back);
    CHECK((*back)->occurred_at.time_since_epoch().count() == us);
  }
}

TEMPLATE_TEST_CASE("appends and calls have a size limit", "[bad-input]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  store_limits limits;
  limits.max_append_bytes = 4096;
  auto store = fx.open(nullptr, limits);
  auto s = new_stream();
  auto big = [&](int n) {
    auto batch = make_batch(s, n);
    for (auto& ev : batch)
      ev.actor_id = std::string(900, 'a');
    return batch;
  };
  refuse(*store, s, big(5), store_errc::payload_too_large);
  REQUIRE(store->append(s, expected_version::any(), big(4)));
  // The actor facade sends a call's requests as separate appends, so only
  // adapters see (and limit) a call as a whole.
  if (store->name() == "actor")
    return;
  // A call whose requests fit alone but not together is refused whole.
  auto t = new_stream();
  std::vector<append_request> reqs;
  reqs.push_back({s, expected_version::any(), big(3)});
  reqs.push_back({t, expected_version::any(), big(3)});
  auto ids = std::vector<uuid>{};
  for (const auto& r : reqs)
    for (const auto& ev : r.events)
      ids.push_back(ev.event_id);
  auto results = store->append_many(std::move(reqs));
  REQUIRE(results.size() == 2);
  for (auto& res : results) {
    REQUIRE_FALSE(res);
    CHECK(has_code(res.error(), store_errc::payload_too_large));
  }
  for (const auto& id : ids)
    CHECK_FALSE(*store->event_exists(id));
  CHECK(*store->head_position() == 4);
}

TEMPLATE_TEST_CASE("type names with SQL-meaningful characters are refused",
                   "[bad-input]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  for (std::string name :
       {std::string{"Order'; DROP TABLE events;--"}, std::string{"a b"},
        std::string{"x\"y"}, std::string{"1Order"}, std::string{""},
        std::string{"Ordér"}, std::string{"semi;colon"},
        std::string{"per%cent"}, std::string{"nul\0byte", 8},
        std::string(201, 'a')}) {
    INFO("name: " << name);
    auto s = new_stream();
    auto batch = make_batch(s, 1);
    batch[0].event_type = name;
    refuse(*store, s, batch, store_errc::invalid_argument);
    stream_id bad_stream{name, uuid::random()};
    auto res = store->append(bad_stream, expected_version::any(),
                             make_batch(bad_stream, 1));
    REQUIRE_FALSE(res);
    CHECK(has_code(res.error(), store_errc::invalid_argument));
  }
  // Reads with hostile filter strings match nothing and break nothing.
  read_all_options opts;
  opts.filter.event_types = {"x' OR '1'='1", "\"]", "\\"};
  auto page = store->read_all(opts);
  REQUIRE(page);
  CHECK(page->events.empty());
  auto s = new_stream("Ok.Name:v1/x-y_z");
  REQUIRE(store->append(s, expected_version::any(), make_batch(s, 1)));
}

TEMPLATE_TEST_CASE("with a registry, unknown types and wrong field types "
                   "are refused",
                   "[bad-input]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open(make_test_registry());
  auto s = new_stream();
  auto unknown = make_batch(s, 1);
  unknown[0].event_type = "NotRegistered";
  refuse(*store, s, unknown, store_errc::unknown_event_type);
  auto future = make_batch(s, 1);
  future[0].event_version = 2;
  refuse(*store, s, future, store_errc::unknown_event_type);
  refuse(*store, s,
         with_payload(s, R"({"sku":"x","quantity":"three","price_cents":1})"),
         store_errc::malformed_payload);
  refuse(*store, s, with_payload(s, R"({"sku":"x","price_cents":1})"),
         store_errc::malformed_payload);
  refuse(*store, s,
         with_payload(s, R"({"sku":"x","quantity":99999999999,)"
                         R"("price_cents":1})"),
         store_errc::malformed_payload);
  REQUIRE(store->append(s, expected_version::any(), make_batch(s, 3)));
}

} // namespace es::testing::store_contract
