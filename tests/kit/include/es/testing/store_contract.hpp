// The event store contract suite: every event store adapter must pass every
// test here. It is how this repository tests its own adapters (memory,
// SQLite, PostgreSQL, the store actor behind the blocking facade), and how
// the author of another adapter checks theirs.
//
// Header-only and written for Catch2 v2: it includes <catch2/catch.hpp>
// and defines TEMPLATE_TEST_CASEs, so only a test program includes it (the
// es::testing library does not use Catch2). Include it in one file of a
// test program, after naming the fixtures to run it with:
//
//   #include "my_store_fixture.hpp"
//   #define ES_CONTRACT_FIXTURES my_store_fixture
//   #include "es/testing/store_contract.hpp"
//
// and link the program with es::testing, Catch2::Catch2WithMain and the
// adapter. ES_CONTRACT_FIXTURES is a comma-separated list of fixture types,
// found by unqualified lookup from namespace es::testing::store_contract
// (qualify them, or add a using-directive before the include). A fixture is
// a default-constructible class with
//
//   es::event_store_ptr open(std::shared_ptr<const es::event_registry>
//                              registry = {},
//                            es::store_limits limits = {});
//
// that returns a new, empty store on each call, which validates payloads
// against `registry` when given one and enforces `limits`; the fixture
// object lives for one test and may clean up in its destructor. Test names
// end in the fixture's name, so "*my_store_fixture" runs them all.
// es/testing/store_contract_bad_input.hpp is the suite's second part
// (hostile input); es/testing/store_contract_support.hpp holds its sample
// events and checks.
//
// The bus contract suite, es/testing/bus_contract.hpp, follows the same
// pattern for event buses.
#pragma once

#ifndef ES_CONTRACT_FIXTURES
#  error "define ES_CONTRACT_FIXTURES first: see the top of this file"
#endif

#include "es/store/errors.hpp"
#include "es/store/event_store.hpp"
#include "es/testing/store_contract_support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <limits>
#include <map>
#include <set>
#include <thread>
#include <vector>

namespace es::testing::store_contract {

TEMPLATE_TEST_CASE("an empty store has no events", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  CHECK(require(store->head_position()) == 0);
  CHECK(require(store->stream_version(s)) == 0);
  auto slice = require(store->read_stream(s, {}));
  CHECK(slice.events.empty());
  CHECK(slice.stream_version == 0);
  CHECK(slice.end_of_stream);
  auto all = require(store->read_all({}));
  CHECK(all.events.empty());
  CHECK(all.end_of_feed);
  CHECK(all.next_position == 0);
  CHECK_FALSE(require(store->find_event(uuid::random())).has_value());
  CHECK_FALSE(require(store->event_exists(uuid::random())));
}

TEMPLATE_TEST_CASE("a working store reports itself healthy", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto health = store->check_health();
  INFO(health.problem);
  CHECK(health.reachable);
  CHECK(health.missing_tables.empty());
  CHECK(health.schema_version == health.expected_schema_version);
  CHECK(health.problem.empty());
  CHECK(health.healthy());
  CHECK(health.latency_ms >= 0);
}

TEMPLATE_TEST_CASE("appended events read back unchanged", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  auto batch = make_batch(s, 3);
  batch[0].tenant_id.reset();
  batch[1].correlation_id = uuid::random();
  batch[1].causation_id = uuid::random();
  batch[1].actor_id = "user:42 'quoted' \"double\"";
  batch[2].metadata = R"({"trace":"abc","nested":{"n":[1,2,3]}})";
  batch[2].payload = R"({"sku":"Robert'); DROP TABLE events;--","quantity":1,)"
                     R"("price_cents":5,"note":"ünïcødé ✓"})";
  auto result = require(store->append(s, expected_version::no_stream(), batch));
  CHECK(result.stream == s);
  CHECK(result.first_version == 1);
  CHECK(result.last_version == 3);
  CHECK(result.first_position == 1);
  CHECK(result.last_position == 3);
  CHECK_FALSE(result.deduplicated);
  auto events = read_whole_stream(*store, s);
  REQUIRE(events.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    auto expected = batch[i];
    expected.aggregate_version = static_cast<int64_t>(i) + 1;
    CHECK(static_cast<const event_data&>(events[i]) == expected);
    CHECK(events[i].global_position == static_cast<int64_t>(i) + 1);
  }
  auto found = require(store->find_event(batch[1].event_id));
  REQUIRE(found.has_value());
  CHECK(*found == events[1]);
  CHECK(require(store->event_exists(batch[2].event_id)));
  CHECK(require(store->stream_version(s)) == 3);
  CHECK(require(store->head_position()) == 3);
}

TEMPLATE_TEST_CASE("events may leave stream fields to the store", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  auto ev = make_test_event(s);
  ev.aggregate_id = uuid{};
  ev.aggregate_type.clear();
  require(store->append(s, expected_version::any(), {ev}));
  auto events = read_whole_stream(*store, s);
  REQUIRE(events.size() == 1);
  CHECK(events[0].aggregate_id == s.aggregate_id);
  CHECK(events[0].aggregate_type == s.aggregate_type);
}

TEMPLATE_TEST_CASE("expected version semantics", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  SECTION("on a stream that does not exist") {
    require_code(
      store->append(s, expected_version::stream_exists(), make_batch(s, 1)),
      store_errc::wrong_expected_version);
    require_code(store->append(s, expected_version::exact(3), make_batch(s, 1)),
                 store_errc::wrong_expected_version);
    CHECK(
      require(store->append(s, expected_version::exact(0), make_batch(s, 1)))
        .last_version
      == 1);
  }
  SECTION("any appends whatever the version") {
    require(store->append(s, expected_version::any(), make_batch(s, 2)));
    auto r
      = require(store->append(s, expected_version::any(), make_batch(s, 1)));
    CHECK(r.first_version == 3);
  }
  SECTION("on a stream with events") {
    require(store->append(s, expected_version::no_stream(), make_batch(s, 2)));
    require_code(
      store->append(s, expected_version::no_stream(), make_batch(s, 1)),
      store_errc::wrong_expected_version);
    require_code(store->append(s, expected_version::exact(1), make_batch(s, 1)),
                 store_errc::wrong_expected_version);
    require_code(store->append(s, expected_version::exact(3), make_batch(s, 1)),
                 store_errc::wrong_expected_version);
    CHECK(require(store->append(s, expected_version::stream_exists(),
                                make_batch(s, 1)))
            .last_version
          == 3);
    CHECK(
      require(store->append(s, expected_version::exact(3), make_batch(s, 2)))
        .last_version
      == 5);
  }
  SECTION("a conflict carries stream, expected and actual version") {
    require(store->append(s, expected_version::no_stream(), make_batch(s, 4)));
    auto res = store->append(s, expected_version::exact(2), make_batch(s, 1));
    require_code(res, store_errc::wrong_expected_version);
    auto conflict = get_version_conflict(res.error());
    REQUIRE(conflict.has_value());
    CHECK(conflict->stream == to_string(s));
    CHECK(conflict->expected == "2");
    CHECK(conflict->actual == 4);
    CHECK_FALSE(is_retryable(res.error()));
    CHECK(require(store->stream_version(s)) == 4);
  }
  SECTION("explicit event versions must be the next ones") {
    auto batch = make_batch(s, 2);
    batch[0].aggregate_version = 1;
    batch[1].aggregate_version = 2;
    require(store->append(s, expected_version::any(), batch));
    auto stale = make_batch(s, 1);
    stale[0].aggregate_version = 2;
    auto res = store->append(s, expected_version::any(), stale);
    require_code(res, store_errc::wrong_expected_version);
    CHECK(get_version_conflict(res.error())->actual == 2);
    auto gap = make_batch(s, 1);
    gap[0].aggregate_version = 5;
    require_code(store->append(s, expected_version::any(), gap),
                 store_errc::wrong_expected_version);
  }
  SECTION("negative exact versions are invalid") {
    require_code(
      store->append(s, expected_version::exact(-3), make_batch(s, 1)),
      store_errc::invalid_argument);
  }
}

TEMPLATE_TEST_CASE("appends are idempotent by event id", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  auto batch = make_batch(s, 3);
  auto first = require(store->append(s, expected_version::no_stream(), batch));
  SECTION("re-sending the batch returns the original result") {
    auto again
      = require(store->append(s, expected_version::no_stream(), batch));
    CHECK(again.deduplicated);
    again.deduplicated = false;
    CHECK(again == first);
    // Even after the stream moved on.
    require(store->append(s, expected_version::exact(3), make_batch(s, 2)));
    auto third = require(store->append(s, expected_version::exact(0), batch));
    CHECK(third.first_version == 1);
    CHECK(third.last_version == 3);
    CHECK(third.deduplicated);
    CHECK(require(store->head_position()) == 5);
  }
  SECTION("a single event re-sent alone is a replay too") {
    auto again = require(store->append(s, expected_version::any(), {batch[1]}));
    CHECK(again.deduplicated);
    CHECK(again.first_version == 2);
    CHECK(again.first_position == first.first_position + 1);
  }
  SECTION("a batch mixing stored and new ids is refused") {
    auto mixed = make_batch(s, 2);
    mixed.insert(mixed.begin(), batch[2]);
    require_code(store->append(s, expected_version::any(), mixed),
                 store_errc::idempotency_conflict);
    auto tail_dup = make_batch(s, 2);
    tail_dup.push_back(batch[0]);
    auto res = store->append(s, expected_version::any(), tail_dup);
    REQUIRE_FALSE(res);
    INFO(describe(res.error()));
    CHECK((has_code(res.error(), store_errc::idempotency_conflict)
           || has_code(res.error(), store_errc::duplicate_event_id)));
    CHECK(require(store->head_position()) == 3);
  }
  SECTION("stored ids in another order are refused") {
    event_batch reordered{batch[1], batch[0]};
    require_code(store->append(s, expected_version::any(), reordered),
                 store_errc::idempotency_conflict);
  }
  SECTION("an id stored in another stream is a duplicate") {
    auto other = new_stream();
    auto ev = batch[0];
    ev.aggregate_id = other.aggregate_id;
    require_code(store->append(other, expected_version::any(), {ev}),
                 store_errc::duplicate_event_id);
    CHECK(require(store->stream_version(other)) == 0);
  }
  SECTION("an id repeated inside one batch is invalid") {
    auto dup = make_batch(s, 1);
    dup.push_back(dup[0]);
    require_code(store->append(s, expected_version::any(), dup),
                 store_errc::invalid_argument);
  }
  CHECK(read_feed(*store).size()
        == static_cast<size_t>(require(store->head_position())));
}

TEMPLATE_TEST_CASE("a replay must carry the same events", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  auto batch = make_batch(s, 2);
  auto first = require(store->append(s, expected_version::no_stream(), batch));
  auto changed = batch;
  SECTION("another payload under a stored id is refused") {
    changed[1].payload = R"({"sku":"SKU-X","quantity":9,"price_cents":1})";
    require_code(store->append(s, expected_version::any(), changed),
                 store_errc::idempotency_conflict);
  }
  SECTION("another type under a stored id is refused") {
    changed[0].event_type = "NoteWritten";
    changed[0].payload = R"({"text":"not the same event"})";
    require_code(store->append(s, expected_version::any(), changed),
                 store_errc::idempotency_conflict);
  }
  SECTION("another schema version under a stored id is refused") {
    changed[0].event_version = 2;
    require_code(store->append(s, expected_version::any(), changed),
                 store_errc::idempotency_conflict);
  }
  SECTION("explicit versions other than the stored ones are refused") {
    changed[0].aggregate_version = 5;
    changed[1].aggregate_version = 6;
    require_code(store->append(s, expected_version::any(), changed),
                 store_errc::idempotency_conflict);
  }
  SECTION("metadata, actor and time may differ on a retry") {
    for (auto& ev : changed) {
      ev.metadata = R"({"attempt":2})";
      ev.actor_id = "retrier";
      ev.occurred_at += std::chrono::seconds{5};
    }
    changed[0].aggregate_version = 1;
    auto again = require(store->append(s, expected_version::any(), changed));
    CHECK(again.deduplicated);
    CHECK(again.last_position == first.last_position);
  }
  CHECK(require(store->head_position()) == 2);
  CHECK(require(store->stream_version(s)) == 2);
}

TEMPLATE_TEST_CASE("a request repeated within one call shares its fate",
                   "[contract]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  auto t = new_stream();
  auto x = make_batch(s, 1);
  auto bad = make_batch(t, 1);
  bad[0].payload = "[1,2]";
  std::vector<append_request> reqs;
  reqs.push_back({s, expected_version::any(), x});
  reqs.push_back({s, expected_version::any(), x});
  reqs.push_back({t, expected_version::any(), bad});
  auto results = store->append_many(std::move(reqs));
  REQUIRE(results.size() == 3);
  auto first = require(results[0]);
  auto second = require(results[1]);
  CHECK_FALSE(first.deduplicated);
  CHECK(second.deduplicated);
  CHECK(second.first_version == first.first_version);
  CHECK(second.last_position == first.last_position);
  require_code(results[2], store_errc::malformed_payload);
  // Whatever the answer said is in the log.
  CHECK(require(store->event_exists(x[0].event_id)));
  CHECK(require(store->stream_version(s)) == 1);
  CHECK(require(store->stream_version(t)) == 0);
  CHECK(read_feed(*store).size() == 1);
}

TEMPLATE_TEST_CASE("a failing batch writes nothing", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  require(store->append(s, expected_version::any(), make_batch(s, 1)));
  auto batch = make_batch(s, 5);
  batch[3].payload = R"({"sku": "truncated)";
  require_code(store->append(s, expected_version::any(), batch),
               store_errc::malformed_payload);
  CHECK(require(store->stream_version(s)) == 1);
  CHECK(require(store->head_position()) == 1);
  for (const auto& ev : batch)
    CHECK_FALSE(require(store->event_exists(ev.event_id)));
}

TEMPLATE_TEST_CASE("read_stream pages forwards and backwards", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  auto other = new_stream();
  for (int i = 0; i < 5; ++i) {
    require(store->append(s, expected_version::any(), make_batch(s, 5, i * 5)));
    require(
      store->append(other, expected_version::any(), make_batch(other, 1)));
  }
  SECTION("forwards in pages of 7") {
    read_stream_options opts;
    opts.max_count = 7;
    std::vector<int64_t> versions;
    int pages = 0;
    for (;;) {
      auto page = require(store->read_stream(s, opts));
      ++pages;
      CHECK(page.stream_version == 25);
      CHECK(page.events.size() <= 7);
      for (auto& ev : page.events)
        versions.push_back(ev.aggregate_version);
      if (page.end_of_stream)
        break;
      opts.from_version = page.next_version;
    }
    CHECK(pages == 4);
    REQUIRE(versions.size() == 25);
    for (size_t i = 0; i < versions.size(); ++i)
      CHECK(versions[i] == static_cast<int64_t>(i) + 1);
  }
  SECTION("backwards from the end") {
    read_stream_options opts;
    opts.direction = read_direction::backwards;
    opts.max_count = 10;
    auto page = require(store->read_stream(s, opts));
    REQUIRE(page.events.size() == 10);
    CHECK(page.events.front().aggregate_version == 25);
    CHECK(page.events.back().aggregate_version == 16);
    CHECK_FALSE(page.end_of_stream);
    CHECK(page.next_version == 15);
    opts.from_version = page.next_version;
    opts.max_count = 100;
    page = require(store->read_stream(s, opts));
    CHECK(page.events.size() == 15);
    CHECK(page.events.back().aggregate_version == 1);
    CHECK(page.end_of_stream);
  }
  SECTION("a version range") {
    read_stream_options opts;
    opts.from_version = 10;
    opts.to_version = 12;
    auto page = require(store->read_stream(s, opts));
    REQUIRE(page.events.size() == 3);
    CHECK(page.events.front().aggregate_version == 10);
    CHECK(page.end_of_stream);
    opts.direction = read_direction::backwards;
    opts.from_version = 12;
    opts.to_version = 10;
    page = require(store->read_stream(s, opts));
    REQUIRE(page.events.size() == 3);
    CHECK(page.events.front().aggregate_version == 12);
    CHECK(page.events.back().aggregate_version == 10);
    CHECK(page.end_of_stream);
  }
  SECTION("beyond the end") {
    read_stream_options opts;
    opts.from_version = 26;
    auto page = require(store->read_stream(s, opts));
    CHECK(page.events.empty());
    CHECK(page.end_of_stream);
  }
  SECTION("page size is capped and zero is invalid") {
    read_stream_options opts;
    opts.max_count = 0;
    require_code(store->read_stream(s, opts), store_errc::invalid_argument);
  }
}

TEMPLATE_TEST_CASE("read_stream of a long stream stays in pages", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  store_limits limits;
  limits.max_page_size = 64;
  auto store = fx.open(nullptr, limits);
  auto s = new_stream();
  for (int i = 0; i < 20; ++i)
    require(
      store->append(s, expected_version::any(), make_batch(s, 100, i * 100)));
  read_stream_options opts;
  opts.max_count = 1'000'000;
  size_t largest = 0;
  int64_t next = 1;
  auto err = for_each_in_stream(*store, s, opts, [&](recorded_event& ev) {
    if (ev.aggregate_version != next)
      return make_store_error(store_errc::internal, "out of order");
    ++next;
    return caf::error{};
  });
  REQUIRE_FALSE(err);
  CHECK(next == 2001);
  auto page = require(store->read_stream(s, opts));
  largest = page.events.size();
  CHECK(largest == 64);
}

TEMPLATE_TEST_CASE("the global feed orders all streams", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  std::vector<stream_id> streams;
  for (int i = 0; i < 5; ++i)
    streams.push_back(new_stream(i % 2 == 0 ? "Order" : "Customer"));
  std::vector<uuid> appended;
  for (int round = 0; round < 10; ++round)
    for (auto& s : streams) {
      auto batch = make_batch(s, round % 3 + 1);
      for (auto& ev : batch)
        appended.push_back(ev.event_id);
      require(store->append(s, expected_version::any(), batch));
    }
  SECTION("pages of 7 deliver every event once, in append order") {
    read_all_options opts;
    opts.max_count = 7;
    auto feed = read_feed(*store, opts);
    REQUIRE(feed.size() == appended.size());
    for (size_t i = 0; i < feed.size(); ++i) {
      CHECK(feed[i].event_id == appended[i]);
      CHECK(feed[i].global_position == static_cast<int64_t>(i) + 1);
    }
  }
  SECTION("a checkpoint resumes exactly after it") {
    read_all_options opts;
    opts.after_position = 17;
    opts.max_count = 3;
    auto page = require(store->read_all(opts));
    REQUIRE(page.events.size() == 3);
    CHECK(page.events.front().global_position == 18);
    CHECK(page.next_position == 20);
    CHECK_FALSE(page.end_of_feed);
  }
  SECTION("reading at the head returns nothing and stays put") {
    auto head = require(store->head_position());
    read_all_options opts;
    opts.after_position = head;
    auto page = require(store->read_all(opts));
    CHECK(page.events.empty());
    CHECK(page.end_of_feed);
    CHECK(page.next_position == head);
  }
  SECTION("checkpoints near the largest position read nothing") {
    // Found by tests/fuzz/fuzz_stored_row: the page's window end overflowed.
    auto head = require(store->head_position());
    for (bool filtered : {false, true}) {
      read_all_options opts;
      opts.after_position = std::numeric_limits<int64_t>::max() - 1;
      if (filtered)
        opts.filter.aggregate_types = {"Order"};
      auto page = require(store->read_all(opts));
      CHECK(page.events.empty());
      CHECK(page.end_of_feed);
      CHECK(page.next_position == opts.after_position);
      CHECK(page.next_position > head);
    }
  }
  SECTION("negative positions are invalid") {
    read_all_options opts;
    opts.after_position = -1;
    require_code(store->read_all(opts), store_errc::invalid_argument);
  }
}

TEMPLATE_TEST_CASE("visit_all hands out read_all's page in place", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto tenant = uuid::random();
  auto order = new_stream("Order");
  auto customer = new_stream("Customer");
  for (int i = 0; i < 6; ++i) {
    auto s = i % 3 == 2 ? customer : order;
    event_batch batch{make_test_event(s, i, i % 2 ? "NoteWritten" : "Placed")};
    auto& ev = batch[0];
    // Every optional field set on some events and empty on others (the
    // tenant per stream: streams cannot mix tenants).
    if (i % 2 == 0) {
      ev.correlation_id = uuid::random();
      ev.causation_id = uuid::random();
      ev.actor_id = "user-" + std::to_string(i);
      ev.metadata = R"({"n":)" + std::to_string(i) + "}";
    }
    if (s == order)
      ev.tenant_id = tenant;
    require(store->append(s, expected_version::any(), batch));
  }
  auto visit = [&](const read_all_options& opts, size_t stop_after = 0) {
    recorded_events seen;
    auto page = require(store->visit_all(opts, [&](const event_view& ev) {
      auto copy = ev.to_event();
      // Every accessor reads what the copy holds.
      CHECK(copy.global_position == ev.global_position());
      CHECK(copy.event_type == ev.event_type());
      CHECK(copy.payload == ev.payload());
      CHECK(copy.metadata == ev.metadata());
      CHECK(copy.actor_id == ev.actor_id());
      CHECK(copy.aggregate_type == ev.aggregate_type());
      CHECK(copy.aggregate_id == ev.aggregate_id());
      CHECK(copy.aggregate_version == ev.aggregate_version());
      CHECK(copy.tenant_id == ev.tenant_id());
      CHECK(copy.correlation_id == ev.correlation_id());
      CHECK(copy.causation_id == ev.causation_id());
      CHECK(copy.occurred_at == ev.occurred_at());
      CHECK(copy.event_version == ev.event_version());
      CHECK(copy.event_id == ev.event_id());
      CHECK(opts.filter.matches(ev) == opts.filter.matches(copy));
      seen.push_back(std::move(copy));
      return stop_after == 0 || seen.size() < stop_after;
    }));
    CHECK(page.events.empty());
    return std::make_pair(std::move(seen), page);
  };
  SECTION("the same events and bounds as read_all") {
    for (size_t count : {size_t{1}, size_t{4}, size_t{100}}) {
      read_all_options opts;
      opts.after_position = 1;
      opts.max_count = count;
      auto expected = require(store->read_all(opts));
      auto [seen, page] = visit(opts);
      CHECK(seen == expected.events);
      CHECK(page.next_position == expected.next_position);
      CHECK(page.end_of_feed == expected.end_of_feed);
      CHECK(page.gaps_final == expected.gaps_final);
    }
  }
  SECTION("a filter applies as in read_all") {
    for (auto f : {event_filter{{"Placed"}, {}, std::nullopt},
                   event_filter{{}, {"Customer"}, std::nullopt},
                   event_filter{{}, {}, tenant}}) {
      read_all_options opts;
      opts.filter = f;
      auto expected = require(store->read_all(opts));
      auto [seen, page] = visit(opts);
      CHECK_FALSE(seen.empty());
      CHECK(seen == expected.events);
      CHECK(page.next_position == expected.next_position);
    }
  }
  SECTION("the visitor ends the page after the event it declines") {
    read_all_options opts;
    auto [seen, page] = visit(opts, 2);
    REQUIRE(seen.size() == 2);
    CHECK(seen[1].global_position == 2);
    CHECK(page.next_position == 2);
    CHECK_FALSE(page.end_of_feed);
    opts.after_position = page.next_position;
    auto [rest, last] = visit(opts);
    CHECK(rest.size() == 4);
    CHECK(rest.front().global_position == 3);
    CHECK(last.end_of_feed);
  }
  SECTION("bad options fail as in read_all") {
    read_all_options opts;
    opts.after_position = -1;
    bool called = false;
    require_code(store->visit_all(opts,
                                  [&](const event_view&) {
                                    called = true;
                                    return true;
                                  }),
                 store_errc::invalid_argument);
    CHECK_FALSE(called);
  }
}

TEMPLATE_TEST_CASE("read_all filters by type, aggregate type and tenant",
                   "[contract]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto tenant_a = uuid::random();
  auto tenant_b = uuid::random();
  auto order = new_stream("Order");
  auto customer = new_stream("Customer");
  auto order_b = new_stream("Order");
  for (int i = 0; i < 10; ++i) {
    event_batch b1{
      make_test_event(order, i, i % 2 ? "NoteWritten" : "ItemAdded")};
    b1[0].tenant_id = tenant_a;
    require(store->append(order, expected_version::any(), b1));
    event_batch b2{make_test_event(customer, i, "NoteWritten")};
    b2[0].tenant_id = tenant_a;
    require(store->append(customer, expected_version::any(), b2));
    event_batch b3{make_test_event(order_b, i)};
    b3[0].tenant_id = tenant_b;
    require(store->append(order_b, expected_version::any(), b3));
  }
  auto count = [&](event_filter f, size_t page = 4) {
    read_all_options opts;
    opts.filter = std::move(f);
    opts.max_count = page;
    auto feed = read_feed(*store, opts);
    for (auto& ev : feed)
      CHECK(opts.filter.matches(ev));
    for (size_t i = 1; i < feed.size(); ++i)
      CHECK(feed[i - 1].global_position < feed[i].global_position);
    return feed.size();
  };
  CHECK(count({}) == 30);
  CHECK(count({{"NoteWritten"}, {}, std::nullopt}) == 15);
  CHECK(count({{"ItemAdded"}, {"Order"}, std::nullopt}) == 15);
  CHECK(count({{}, {"Customer"}, std::nullopt}) == 10);
  CHECK(count({{}, {}, tenant_a}) == 20);
  CHECK(count({{}, {}, tenant_b}) == 10);
  CHECK(count({{"ItemAdded"}, {}, tenant_a}) == 5);
  CHECK(count({{"NoSuchType"}, {}, std::nullopt}) == 0);
  CHECK(count({{}, {}, uuid::random()}) == 0);
  CHECK(
    count({{"ItemAdded", "NoteWritten"}, {"Order", "Customer"}, std::nullopt},
          1)
    == 30);
  SECTION("a filtered page reports how far it looked") {
    read_all_options opts;
    opts.filter.aggregate_types = {"Customer"};
    opts.max_count = 100;
    auto page = require(store->read_all(opts));
    CHECK(page.events.size() == 10);
    CHECK(page.end_of_feed);
    CHECK(page.next_position == 30);
  }
}

TEMPLATE_TEST_CASE("tenants cannot share a stream", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto s = new_stream();
  auto a = uuid::random();
  auto batch = make_batch(s, 1);
  batch[0].tenant_id = a;
  require(store->append(s, expected_version::any(), batch));
  auto other = make_batch(s, 1);
  other[0].tenant_id = uuid::random();
  require_code(store->append(s, expected_version::any(), other),
               store_errc::tenant_mismatch);
  auto none = make_batch(s, 1);
  require_code(store->append(s, expected_version::any(), none),
               store_errc::tenant_mismatch);
  auto mixed = make_batch(new_stream(), 2);
  mixed[0].tenant_id = a;
  require_code(store->append(mixed[0].stream(), expected_version::any(), mixed),
               store_errc::tenant_mismatch);
  CHECK(require(store->head_position()) == 1);
}

TEMPLATE_TEST_CASE("UUID edge cases", "[contract]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  uuid::bytes_type ff;
  ff.fill(0xFF);
  stream_id max_id{"Order", uuid{ff}};
  require(
    store->append(max_id, expected_version::any(), make_batch(max_id, 2)));
  CHECK(require(store->stream_version(max_id)) == 2);
  SECTION("the same id under another aggregate type is another stream") {
    stream_id other{"Customer", max_id.aggregate_id};
    CHECK(require(store->stream_version(other)) == 0);
    require(store->append(other, expected_version::no_stream(),
                          make_batch(other, 1)));
    CHECK(require(store->stream_version(other)) == 1);
    CHECK(require(store->stream_version(max_id)) == 2);
  }
  SECTION("nil ids are refused") {
    stream_id nil_stream{"Order", uuid{}};
    require_code(
      store->append(nil_stream, expected_version::any(), make_batch(max_id, 1)),
      store_errc::invalid_argument);
    auto batch = make_batch(max_id, 1);
    batch[0].event_id = uuid{};
    require_code(store->append(max_id, expected_version::any(), batch),
                 store_errc::invalid_argument);
    batch = make_batch(max_id, 1);
    batch[0].tenant_id = uuid{};
    require_code(store->append(max_id, expected_version::any(), batch),
                 store_errc::invalid_argument);
  }
  SECTION("an event whose aggregate id differs from the stream's") {
    auto batch = make_batch(new_stream(), 1);
    require_code(store->append(max_id, expected_version::any(), batch),
                 store_errc::invalid_argument);
  }
  SECTION("ids that differ in one bit are different") {
    auto bytes = ff;
    bytes[15] = 0xFE;
    stream_id near{"Order", uuid{bytes}};
    CHECK(require(store->stream_version(near)) == 0);
  }
}

TEMPLATE_TEST_CASE("append_many gives each request its own result",
                   "[contract]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto a = new_stream();
  auto b = new_stream();
  require(store->append(b, expected_version::any(), make_batch(b, 2)));
  std::vector<append_request> reqs;
  reqs.push_back({a, expected_version::no_stream(), make_batch(a, 2)});
  reqs.push_back({b, expected_version::exact(5), make_batch(b, 1)});
  reqs.push_back({a, expected_version::exact(2), make_batch(a, 1)});
  auto bad = make_batch(b, 1);
  bad[0].payload = "[]";
  reqs.push_back({b, expected_version::any(), bad});
  reqs.push_back({b, expected_version::exact(2), make_batch(b, 1)});
  auto results = store->append_many(std::move(reqs));
  REQUIRE(results.size() == 5);
  REQUIRE(results[0]);
  CHECK(results[0]->last_version == 2);
  require_code(results[1], store_errc::wrong_expected_version);
  REQUIRE(results[2]);
  CHECK(results[2]->last_version == 3);
  require_code(results[3], store_errc::malformed_payload);
  REQUIRE(results[4]);
  CHECK(results[4]->last_version == 3);
  CHECK(require(store->head_position()) == 6);
  auto feed = read_feed(*store);
  REQUIRE(feed.size() == 6);
  CHECK(results[0]->first_position == 3);
  CHECK(results[4]->last_position == 6);
}

TEMPLATE_TEST_CASE("append_atomic writes every stream or none", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open(make_test_registry());
  auto a = new_stream();
  auto b = new_stream("Invoice");
  auto c = new_stream();
  require(store->append(b, expected_version::no_stream(), make_batch(b, 2)));
  // Both streams at once: one result per request, in order, positions in
  // request order.
  std::vector<append_request> first;
  first.push_back({a, expected_version::no_stream(), make_batch(a, 2)});
  first.push_back({b, expected_version::exact(2), make_batch(b, 1, 10)});
  auto sent = first;
  auto done = require(store->append_atomic(std::move(first)));
  REQUIRE(done.size() == 2);
  CHECK(done[0].stream == a);
  CHECK(done[0].first_version == 1);
  CHECK(done[0].last_version == 2);
  CHECK(done[0].first_position == 3);
  CHECK(done[1].stream == b);
  CHECK(done[1].last_version == 3);
  CHECK(done[1].last_position == 5);
  CHECK_FALSE(done[0].deduplicated);
  CHECK(require(store->head_position()) == 5);
  // Two stale expectations and one good one: refused as a whole, naming
  // both conflicts; the good stream stays empty.
  std::vector<append_request> stale;
  stale.push_back({c, expected_version::no_stream(), make_batch(c, 1)});
  stale.push_back({a, expected_version::exact(1), make_batch(a, 1)});
  stale.push_back({b, expected_version::no_stream(), make_batch(b, 1)});
  auto refused = store->append_atomic(std::move(stale));
  require_code(refused, store_errc::wrong_expected_version);
  auto conflicts = get_version_conflicts(refused.error());
  REQUIRE(conflicts.size() == 2);
  CHECK(conflicts[0].stream == to_string(a));
  CHECK(conflicts[0].actual == 2);
  CHECK(conflicts[1].stream == to_string(b));
  CHECK(conflicts[1].actual == 3);
  REQUIRE(get_version_conflict(refused.error()));
  CHECK(get_version_conflict(refused.error())->stream == to_string(a));
  CHECK(require(store->stream_version(c)) == 0);
  CHECK(require(store->head_position()) == 5);
  // A request the registry refuses refuses the call.
  std::vector<append_request> bad;
  bad.push_back({c, expected_version::any(), make_batch(c, 1)});
  auto broken = make_batch(a, 1);
  broken[0].payload = R"({"sku":7})";
  bad.push_back({a, expected_version::any(), broken});
  require_code(store->append_atomic(std::move(bad)),
               store_errc::malformed_payload);
  // The same stream twice, or nothing at all, is not an atomic append.
  std::vector<append_request> twice;
  twice.push_back({c, expected_version::any(), make_batch(c, 1)});
  twice.push_back({c, expected_version::any(), make_batch(c, 1)});
  require_code(store->append_atomic(std::move(twice)),
               store_errc::invalid_argument);
  require_code(store->append_atomic({}), store_errc::invalid_argument);
  CHECK(require(store->stream_version(c)) == 0);
  CHECK(require(store->head_position()) == 5);
  // The first call sent again: answered from the log, nothing written.
  auto again = require(store->append_atomic(std::move(sent)));
  REQUIRE(again.size() == 2);
  CHECK(again[0].deduplicated);
  CHECK(again[1].deduplicated);
  CHECK(again[0].first_position == 3);
  CHECK(again[1].last_position == 5);
  CHECK(require(store->head_position()) == 5);
  CHECK(read_feed(*store).size() == 5);
}

TEMPLATE_TEST_CASE("racing atomic appends never both win a shared stream",
                   "[contract]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  constexpr int writers = 6;
  constexpr int calls = 30;
  std::vector<stream_id> shared;
  for (int i = 0; i < 4; ++i)
    shared.push_back(new_stream("Account"));
  struct outcome {
    std::vector<uuid> ids;
    std::vector<stream_id> streams;
    bool written = false;
  };
  std::vector<std::vector<outcome>> outcomes(writers);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      for (int i = 0; i < calls; ++i) {
        // Two of the shared streams (overlapping between writers) and one
        // of its own, each at the version just read.
        const auto& x = shared[(w + i) % shared.size()];
        const auto& y = shared[(w + 2 * i + 1) % shared.size()];
        std::vector<stream_id> picked{x, new_stream()};
        if (!(y == x))
          picked.push_back(y);
        std::vector<append_request> reqs;
        outcome out;
        bool read_failed = false;
        for (const auto& s : picked) {
          auto v = store->stream_version(s);
          if (!v) {
            read_failed = true;
            break;
          }
          auto batch = make_batch(s, 1 + (i + w) % 2, w * 1000 + i);
          for (const auto& ev : batch)
            out.ids.push_back(ev.event_id);
          reqs.push_back({s, expected_version::exact(*v), std::move(batch)});
        }
        if (read_failed) {
          ++failures;
          continue;
        }
        out.streams = picked;
        auto res = store->append_atomic(std::move(reqs));
        if (res)
          out.written = true;
        else if (!has_code(res.error(), store_errc::wrong_expected_version)
                 && !is_retryable(res.error()))
          ++failures;
        outcomes[w].push_back(std::move(out));
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(failures == 0);
  // Each call's events are all stored or none; every stream's version is
  // the number of events that winning calls wrote to it, so no two calls
  // won the same version of a shared stream.
  std::set<stream_id> written;
  int wins = 0;
  for (const auto& per_writer : outcomes)
    for (const auto& out : per_writer) {
      size_t stored = 0;
      for (const auto& id : out.ids)
        stored += require(store->event_exists(id)) ? 1 : 0;
      CHECK(stored == (out.written ? out.ids.size() : 0));
      if (!out.written)
        continue;
      ++wins;
      written.insert(out.streams.begin(), out.streams.end());
    }
  auto feed = read_feed(*store);
  std::map<stream_id, int64_t> last;
  for (size_t i = 0; i < feed.size(); ++i) {
    CHECK(feed[i].global_position == static_cast<int64_t>(i) + 1);
    auto& v = last[feed[i].stream()];
    CHECK(feed[i].aggregate_version == v + 1);
    v = feed[i].aggregate_version;
  }
  for (const auto& s : shared)
    CHECK(require(store->stream_version(s)) == last[s]);
  CHECK(last.size() == written.size());
  CHECK(wins > 0);
  INFO("atomic calls written: " << wins);
}

TEMPLATE_TEST_CASE("read_correlated lists a causal chain", "[contract]",
                   ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto a = new_stream();
  auto b = new_stream("Shipment");
  auto root = make_test_event(a, 1);
  auto chain = root.event_id;
  // Noise before, between and after the chain's events.
  require(store->append(b, expected_version::any(), make_batch(b, 2)));
  require(store->append(a, expected_version::no_stream(), {root}));
  std::vector<uuid> expected{chain};
  for (int i = 0; i < 5; ++i) {
    auto s = i % 2 == 0 ? b : a;
    auto batch = make_batch(s, 2, 10 * i);
    batch[0].correlation_id = chain;
    batch[0].causation_id = expected.back();
    batch[1].correlation_id = uuid::random();
    if (i == 3) {
      batch[0].event_type = "NoteWritten";
      batch[0].payload = R"({"text":"x"})";
    }
    expected.push_back(batch[0].event_id);
    require(store->append(s, expected_version::any(), batch));
  }
  auto all = require(store->read_correlated(chain, read_all_options{}));
  CHECK(all.end_of_feed);
  REQUIRE(all.events.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i)
    CHECK(all.events[i].event_id == expected[i]);
  for (size_t i = 1; i < all.events.size(); ++i)
    CHECK(all.events[i].global_position > all.events[i - 1].global_position);
  // In pages of two.
  read_all_options opts;
  opts.max_count = 2;
  std::vector<uuid> paged;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = require(store->read_correlated(chain, opts));
    for (const auto& ev : page.events)
      paged.push_back(ev.event_id);
    opts.after_position = page.next_position;
    if (page.end_of_feed)
      break;
  }
  CHECK(paged == expected);
  // With a filter.
  read_all_options notes;
  notes.filter.event_types = {"NoteWritten"};
  auto only = require(store->read_correlated(chain, notes));
  REQUIRE(only.events.size() == 1);
  CHECK(only.events[0].event_id == expected[4]);
  // An id nobody used.
  auto none = require(store->read_correlated(uuid::random(), {}));
  CHECK(none.events.empty());
  CHECK(none.end_of_feed);
}

TEMPLATE_TEST_CASE("a soft-deleted stream reads as deleted until written again",
                   "[contract][deletion]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open(make_test_registry());
  auto a = new_stream();
  auto other = new_stream();
  require(store->append(a, expected_version::no_stream(), make_batch(a, 3)));
  require(
    store->append(other, expected_version::no_stream(), make_batch(other, 2)));
  // A stale expectation deletes nothing; a stream without events cannot be
  // deleted.
  require_code(
    delete_stream(*store, a, deletion_mode::soft, expected_version::exact(2)),
    store_errc::wrong_expected_version);
  require_code(delete_stream(*store, new_stream(), deletion_mode::soft),
               store_errc::invalid_argument);
  auto del = require(
    delete_stream(*store, a, deletion_mode::soft, expected_version::exact(3)));
  CHECK(del.first_version == 4);
  CHECK(del.first_position == 6);
  require_code(store->read_stream(a, {}), store_errc::stream_deleted);
  require_code(store->stream_version(a), store_errc::stream_deleted);
  require_code(store->append(a, expected_version::exact(4), make_batch(a, 1)),
               store_errc::stream_deleted);
  require_code(
    store->append(a, expected_version::stream_exists(), make_batch(a, 1)),
    store_errc::stream_deleted);
  require_code(truncate_stream(*store, a, 2), store_errc::stream_deleted);
  require_code(delete_stream(*store, a, deletion_mode::soft),
               store_errc::stream_deleted);
  // The deletion is an event of the feed, with the stream's identity.
  auto feed = read_feed(*store);
  REQUIRE(feed.size() == 6);
  CHECK(feed.back().event_type == stream_deleted_type);
  CHECK(feed.back().stream() == a);
  CHECK(feed.back().aggregate_version == 4);
  // Other streams are untouched.
  CHECK(read_whole_stream(*store, other).size() == 2);
  // Written again: versions continue; readers see the deletion event, then
  // the new events.
  auto again = require(
    store->append(a, expected_version::no_stream(), make_batch(a, 2, 50)));
  CHECK(again.first_version == 5);
  CHECK(require(store->stream_version(a)) == 6);
  auto slice = require(store->read_stream(a, {}));
  CHECK(slice.first_version == 4);
  CHECK(slice.stream_version == 6);
  REQUIRE(slice.events.size() == 3);
  CHECK(slice.events[0].event_type == stream_deleted_type);
  CHECK(slice.events[1].aggregate_version == 5);
  CHECK(slice.events[2].aggregate_version == 6);
  read_stream_options back;
  back.direction = read_direction::backwards;
  auto backwards = require(store->read_stream(a, back));
  REQUIRE(backwards.events.size() == 3);
  CHECK(backwards.events.back().aggregate_version == 4);
  CHECK(backwards.end_of_stream);
  // A soft-deleted stream may be deleted for good.
  require(delete_stream(*store, a, deletion_mode::soft));
  require(delete_stream(*store, a, deletion_mode::hard));
  require_code(store->append(a, expected_version::any(), make_batch(a, 1)),
               store_errc::stream_deleted);
}

TEMPLATE_TEST_CASE("a hard-deleted stream takes no more events",
                   "[contract][deletion]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto a = new_stream();
  auto tenant = uuid::random();
  auto batch = make_batch(a, 2);
  for (auto& ev : batch)
    ev.tenant_id = tenant;
  require(store->append(a, expected_version::no_stream(), batch));
  auto tomb = require(delete_stream(*store, a, deletion_mode::hard));
  CHECK(tomb.last_version == 3);
  require_code(store->read_stream(a, {}), store_errc::stream_deleted);
  require_code(store->stream_version(a), store_errc::stream_deleted);
  for (auto ev : {expected_version::any(), expected_version::no_stream(),
                  expected_version::exact(3)}) {
    auto more = make_batch(a, 1);
    more[0].tenant_id = tenant;
    require_code(store->append(a, ev, more), store_errc::stream_deleted);
  }
  require_code(delete_stream(*store, a, deletion_mode::hard),
               store_errc::stream_deleted);
  require_code(delete_stream(*store, a, deletion_mode::soft),
               store_errc::stream_deleted);
  // The tombstone carries the stream's tenant into the feed.
  auto feed = read_feed(*store);
  REQUIRE(feed.size() == 3);
  CHECK(feed.back().event_type == stream_tombstoned_type);
  CHECK(feed.back().tenant_id == tenant);
  CHECK(require(store->head_position()) == 3);
}

TEMPLATE_TEST_CASE("truncate_stream hides the versions before a bound",
                   "[contract][deletion]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto a = new_stream();
  require(store->append(a, expected_version::no_stream(), make_batch(a, 5)));
  require_code(truncate_stream(*store, a, 1), store_errc::invalid_argument);
  require_code(truncate_stream(*store, a, 7), store_errc::invalid_argument);
  require_code(truncate_stream(*store, new_stream(), 2),
               store_errc::invalid_argument);
  require_code(truncate_stream(*store, a, 3, expected_version::exact(4)),
               store_errc::wrong_expected_version);
  auto cut = require(truncate_stream(*store, a, 4, expected_version::exact(5)));
  CHECK(cut.last_version == 6);
  auto slice = require(store->read_stream(a, {}));
  CHECK(slice.first_version == 4);
  REQUIRE(slice.events.size() == 3);
  CHECK(slice.events[0].aggregate_version == 4);
  CHECK(slice.events[2].event_type == stream_truncated_type);
  read_stream_options from_two;
  from_two.from_version = 2;
  from_two.max_count = 1;
  auto page = require(store->read_stream(a, from_two));
  REQUIRE(page.events.size() == 1);
  CHECK(page.events[0].aggregate_version == 4);
  read_stream_options back;
  back.direction = read_direction::backwards;
  back.to_version = 1;
  auto backwards = require(store->read_stream(a, back));
  REQUIRE(backwards.events.size() == 3);
  CHECK(backwards.events.back().aggregate_version == 4);
  // Appends go on; a later, lower bound hides nothing more.
  auto more
    = require(store->append(a, expected_version::exact(6), make_batch(a, 1)));
  CHECK(more.first_version == 7);
  require(truncate_stream(*store, a, 2));
  CHECK(require(store->read_stream(a, {})).first_version == 4);
  // The feed keeps everything.
  CHECK(read_feed(*store).size() == 8);
}

TEMPLATE_TEST_CASE("the store's event types are reserved",
                   "[contract][deletion]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto a = new_stream();
  auto own = make_batch(a, 1);
  own[0].event_type = "es.Something";
  require_code(store->append(a, expected_version::any(), own),
               store_errc::invalid_argument);
  require(store->append(a, expected_version::any(), make_batch(a, 1)));
  auto mixed = make_batch(a, 1);
  mixed.push_back(make_test_event(a));
  mixed.back().event_type = std::string{stream_deleted_type};
  mixed.back().payload = "{}";
  require_code(store->append(a, expected_version::any(), mixed),
               store_errc::invalid_argument);
  CHECK(require(store->stream_version(a)) == 1);
}

TEMPLATE_TEST_CASE("a hard delete racing appenders cuts the stream once",
                   "[contract][deletion]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  auto a = new_stream();
  require(store->append(a, expected_version::no_stream(), make_batch(a, 1)));
  constexpr int writers = 4;
  constexpr int appends = 40;
  std::atomic<int> failures{0};
  std::atomic<bool> deleted{false};
  std::vector<std::vector<uuid>> acked(writers);
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      for (int i = 0; i < appends; ++i) {
        auto batch = make_batch(a, 1, w * 100 + i);
        auto id = batch[0].event_id;
        auto res = store->append(a, expected_version::any(), batch);
        if (res)
          acked[w].push_back(id);
        else if (!has_code(res.error(), store_errc::stream_deleted)
                 && !is_retryable(res.error()))
          ++failures;
        if (w == 0 && i == appends / 2) {
          auto del = delete_stream(*store, a, deletion_mode::hard);
          if (!del)
            ++failures;
          deleted = true;
        }
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(failures == 0);
  CHECK(deleted);
  // Every acknowledged event lies before the tombstone, the tombstone is
  // the stream's last event, and nothing follows it.
  std::vector<recorded_event> stream_events;
  for (auto& ev : read_feed(*store))
    if (ev.stream() == a)
      stream_events.push_back(ev);
  REQUIRE_FALSE(stream_events.empty());
  CHECK(stream_events.back().event_type == stream_tombstoned_type);
  std::set<uuid> before;
  for (size_t i = 0; i < stream_events.size(); ++i) {
    CHECK(stream_events[i].aggregate_version == static_cast<int64_t>(i) + 1);
    before.insert(stream_events[i].event_id);
  }
  size_t total = 0;
  for (const auto& ids : acked)
    for (const auto& id : ids) {
      CHECK(before.count(id) == 1);
      ++total;
    }
  CHECK(stream_events.size() == total + 2);
}

TEMPLATE_TEST_CASE("concurrent appenders", "[contract]", ES_CONTRACT_FIXTURES) {
  TestType fx;
  auto store = fx.open();
  constexpr int writers = 8;
  constexpr int appends = 40;
  auto shared = new_stream("Counter");
  std::atomic<int> conflicts{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      auto own = new_stream();
      int64_t own_version = 0;
      for (int i = 0; i < appends; ++i) {
        // Each writer owns one stream, with exact versions.
        auto r = store->append(own, expected_version::exact(own_version),
                               make_batch(own, 1 + i % 3, i));
        if (!r || r->first_version != own_version + 1)
          ++failures;
        else
          own_version = r->last_version;
        // And all writers contend on one stream with read-then-write.
        for (;;) {
          auto v = store->stream_version(shared);
          if (!v) {
            ++failures;
            break;
          }
          auto r2 = store->append(shared, expected_version::exact(*v),
                                  make_batch(shared, 1, w * 1000 + i));
          if (r2)
            break;
          if (has_code(r2.error(), store_errc::wrong_expected_version))
            ++conflicts;
          else if (!is_retryable(r2.error())) {
            ++failures;
            break;
          }
        }
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(failures == 0);
  CHECK(require(store->stream_version(shared)) == writers * appends);
  // Every position from 1 to the head exactly once, every stream contiguous.
  auto feed = read_feed(*store);
  auto head = require(store->head_position());
  REQUIRE(feed.size() == static_cast<size_t>(head));
  std::map<stream_id, int64_t> last;
  std::set<uuid> ids;
  for (size_t i = 0; i < feed.size(); ++i) {
    CHECK(feed[i].global_position == static_cast<int64_t>(i) + 1);
    auto& v = last[feed[i].stream()];
    CHECK(feed[i].aggregate_version == v + 1);
    v = feed[i].aggregate_version;
    CHECK(ids.insert(feed[i].event_id).second);
  }
  CHECK(last.size() == writers + 1);
  INFO("conflicts seen: " << conflicts.load());
}

} // namespace es::testing::store_contract
