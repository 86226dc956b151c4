// The dead-letter actor over the in-memory store: its message protocol and
// replay into a projection. The actor is detached (its own thread), so these
// tests use the threaded scheduler and blocking requests.
#include "es/store/state_stores.hpp"
#include "es/supervision/actors.hpp"

#include <caf/response_promise.hpp>
#include <caf/result.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "supervision_fixture.hpp"
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

using namespace es;
using namespace es::test;

namespace {

// -- a projection that replays into a log -------------------------------------

struct projection_log {
  std::mutex mtx;
  std::vector<recorded_event> replayed;
  /// When set, every replay fails with it.
  caf::error fail_with;
  /// Keeps replays unanswered until `(caf::ok_atom)`.
  bool hold = false;
  bool released = false;
  std::optional<caf::response_promise> held;

  std::vector<recorded_event> events() {
    std::lock_guard guard{mtx};
    return replayed;
  }

  void fail(caf::error err) {
    std::lock_guard guard{mtx};
    fail_with = std::move(err);
  }
};

using projection_log_ptr = std::shared_ptr<projection_log>;

/// A replay target that also takes `(caf::ok_atom)`, which releases a held
/// replay.
using test_projection_actor
  = replay_target_actor::extend<caf::reacts_to<caf::ok_atom>>;

test_projection_actor::behavior_type
test_projection(test_projection_actor::pointer self, projection_log_ptr log) {
  return {
    [self, log](replay_atom, const recorded_event& ev) -> caf::result<void> {
      std::lock_guard guard{log->mtx};
      log->replayed.push_back(ev);
      if (log->fail_with)
        return log->fail_with;
      if (log->hold && !log->released) {
        auto rp = self->make_response_promise();
        log->held = rp;
        return rp;
      }
      return caf::unit;
    },
    [log](caf::ok_atom) {
      std::lock_guard guard{log->mtx};
      log->released = true;
      if (log->held) {
        log->held->deliver(caf::unit);
        log->held.reset();
      }
    },
  };
}

// -- test data ----------------------------------------------------------------

recorded_event make_event(int64_t position) {
  recorded_event ev;
  ev.event_id = uuid::time_ordered();
  ev.event_type = "ItemAdded";
  ev.event_version = 2;
  ev.aggregate_id = uuid::time_ordered();
  ev.aggregate_type = "Order";
  ev.aggregate_version = 3;
  ev.tenant_id = uuid::time_ordered();
  ev.occurred_at = now_utc();
  ev.correlation_id = uuid::time_ordered();
  ev.actor_id = "user-17";
  ev.metadata = R"({"source":"test"})";
  ev.payload = R"({"sku":"A-1","quantity":2,"price_cents":499})";
  ev.global_position = position;
  return ev;
}

dead_letter make_letter(const std::string& projection,
                        const recorded_event& ev) {
  dead_letter d;
  d.projection = projection;
  d.event_id = ev.event_id;
  d.global_position = ev.global_position;
  d.event_type = ev.event_type;
  d.event_data = encode_recorded_event(ev);
  d.error_message = "es_store.storage_busy: locked";
  d.error_context = "attempt 4";
  d.first_failed_at = now_utc();
  d.last_failed_at = d.first_failed_at;
  return d;
}

struct dlq_fixture : threaded_fixture {
  dead_letter_store_ptr store = make_memory_dead_letter_store();
  dead_letter_actor dlq;

  dlq_fixture() {
    dlq = keep(spawn_dead_letter_actor(sys, store));
  }

  int64_t add(const dead_letter& d) {
    auto id = ask<int64_t>(dlq, dlq_add_atom_v, d);
    REQUIRE(id);
    return *id;
  }

  /// Lists by projection and status (empty strings select all).
  std::vector<dead_letter> list(std::string projection, std::string status,
                                uint64_t limit = 100, uint64_t offset = 0) {
    dead_letter_query q;
    if (!projection.empty())
      q.projection = std::move(projection);
    if (!status.empty()) {
      q.status = parse_dead_letter_status(status);
      REQUIRE(q.status);
    }
    q.limit = limit;
    q.offset = offset;
    auto res = ask<std::vector<dead_letter>>(dlq, dlq_list_atom_v, q);
    REQUIRE(res);
    return *res;
  }

  std::optional<dead_letter> get(int64_t id) {
    auto res = ask<std::vector<dead_letter>>(dlq, dlq_get_atom_v, id);
    REQUIRE(res);
    REQUIRE(res->size() <= 1);
    if (res->empty())
      return std::nullopt;
    return res->front();
  }

  dead_letter_stats stats() {
    auto res = ask<dead_letter_stats>(dlq, dlq_stats_atom_v);
    REQUIRE(res);
    return *res;
  }

  test_projection_actor spawn_projection(projection_log_ptr log) {
    return keep(sys.spawn(test_projection, std::move(log)));
  }

  /// Replays entry `id` into `projection`.
  caf::expected<bool> replay(int64_t id,
                             const test_projection_actor& projection) {
    return ask<bool>(dlq, dlq_replay_atom_v, id,
                     replay_target_actor{projection});
  }
};

} // namespace

TEST_CASE_METHOD(dlq_fixture, "dlq add, get and list", "[dlq]") {
  auto ev1 = make_event(10);
  auto ev2 = make_event(11);
  auto ev3 = make_event(12);
  auto id1 = add(make_letter("orders", ev1));
  auto id2 = add(make_letter("orders", ev2));
  auto id3 = add(make_letter("billing", ev3));
  CHECK(id1 != id2);
  CHECK(id2 != id3);
  auto got = get(id1);
  REQUIRE(got);
  CHECK(got->id == id1);
  CHECK(got->projection == "orders");
  CHECK(got->event_id == ev1.event_id);
  CHECK(got->global_position == 10);
  CHECK(got->event_type == "ItemAdded");
  CHECK(got->event_data == encode_recorded_event(ev1));
  CHECK(got->error_message == "es_store.storage_busy: locked");
  CHECK(got->error_context == "attempt 4");
  CHECK(got->retry_count == 0);
  CHECK(got->status == dead_letter_status::failed);
  CHECK_FALSE(got->resolved_at);
  CHECK_FALSE(get(9999));
  // Lists: all, by projection, by status, paged.
  CHECK(list("", "").size() == 3);
  auto orders = list("orders", "");
  REQUIRE(orders.size() == 2);
  CHECK(orders[0].id == id1);
  CHECK(orders[1].id == id2);
  CHECK(list("billing", "").size() == 1);
  CHECK(list("nobody", "").empty());
  CHECK(list("", "failed").size() == 3);
  CHECK(list("", "resolved").empty());
  auto page = list("", "", 1, 1);
  REQUIRE(page.size() == 1);
  CHECK(page[0].id == id2);
  CHECK(list("", "", 10, 3).empty());
  // The query takes a status, not a name: an unknown name does not parse
  // into one.
  CHECK_FALSE(parse_dead_letter_status("lost"));
}

TEST_CASE_METHOD(dlq_fixture, "dlq add of a repeated failure updates its entry",
                 "[dlq]") {
  auto ev = make_event(5);
  auto d = make_letter("orders", ev);
  auto id = add(d);
  d.error_message = "es_store.timeout: slow";
  auto again = add(d);
  CHECK(again == id);
  auto got = get(id);
  REQUIRE(got);
  CHECK(got->retry_count == 1);
  CHECK(got->error_message == "es_store.timeout: slow");
  CHECK(list("", "").size() == 1);
  // The same event in another projection is another entry.
  CHECK(add(make_letter("billing", ev)) != id);
}

TEST_CASE_METHOD(dlq_fixture, "dlq retrying, resolve and stats", "[dlq]") {
  auto id1 = add(make_letter("orders", make_event(1)));
  auto id2 = add(make_letter("orders", make_event(2)));
  auto id3 = add(make_letter("billing", make_event(3)));
  auto marked = ask<bool>(dlq, dlq_retrying_atom_v, id1);
  REQUIRE(marked);
  CHECK(*marked);
  CHECK(get(id1)->status == dead_letter_status::retrying);
  auto unknown = ask<bool>(dlq, dlq_retrying_atom_v, int64_t{999});
  REQUIRE(unknown);
  CHECK_FALSE(*unknown);
  auto resolved = ask<bool>(dlq, dlq_resolve_atom_v, id2, std::string{"alice"});
  REQUIRE(resolved);
  CHECK(*resolved);
  auto got = get(id2);
  REQUIRE(got);
  CHECK(got->status == dead_letter_status::resolved);
  CHECK(got->resolved_by == "alice");
  CHECK(got->resolved_at);
  unknown = ask<bool>(dlq, dlq_resolve_atom_v, int64_t{999}, std::string{"x"});
  REQUIRE(unknown);
  CHECK_FALSE(*unknown);
  CHECK(list("", "retrying").size() == 1);
  CHECK(list("", "resolved").size() == 1);
  CHECK(list("", "failed").size() == 1);
  auto s = stats();
  CHECK(s.total == 3);
  CHECK(s.failed == 1);
  CHECK(s.retrying == 1);
  CHECK(s.resolved == 1);
  // Unresolved per projection.
  CHECK(s.by_projection.at("orders") == 1);
  CHECK(s.by_projection.at("billing") == 1);
  REQUIRE(s.oldest_unresolved);
  CHECK(*s.oldest_unresolved == get(id1)->first_failed_at);
  static_cast<void>(id3);
}

TEST_CASE_METHOD(dlq_fixture, "dlq purge removes old resolved entries only",
                 "[dlq]") {
  auto id1 = add(make_letter("orders", make_event(1)));
  auto id2 = add(make_letter("orders", make_event(2)));
  REQUIRE(*ask<bool>(dlq, dlq_resolve_atom_v, id1, std::string{"bob"}));
  // Resolved just now: not older than an hour.
  auto purged = ask<int64_t>(dlq, dlq_purge_atom_v, int64_t{3600});
  REQUIRE(purged);
  CHECK(*purged == 0);
  CHECK(stats().total == 2);
  // Once the clock has moved past the resolution time (a microsecond),
  // an age of zero purges it; the failed entry stays.
  auto resolved_at = *get(id1)->resolved_at;
  while (now_utc() <= resolved_at) {
    // spin: the clock's next tick, not another thread
  }
  purged = ask<int64_t>(dlq, dlq_purge_atom_v, int64_t{0});
  REQUIRE(purged);
  CHECK(*purged == 1);
  CHECK_FALSE(get(id1));
  CHECK(get(id2));
  CHECK(stats().total == 1);
}

TEST_CASE_METHOD(dlq_fixture,
                 "dlq replay sends the stored event and resolves the entry",
                 "[dlq][replay]") {
  auto ev = make_event(42);
  auto id = add(make_letter("orders", ev));
  auto log = std::make_shared<projection_log>();
  auto projection = spawn_projection(log);
  auto res = replay(id, projection);
  REQUIRE(res);
  CHECK(*res);
  auto replayed = log->events();
  REQUIRE(replayed.size() == 1);
  CHECK(replayed[0] == ev);
  auto got = get(id);
  REQUIRE(got);
  CHECK(got->status == dead_letter_status::resolved);
  CHECK(got->resolved_by == "replay");
  CHECK(got->resolved_at);
  CHECK(got->retry_count == 0);
  auto s = stats();
  CHECK(s.resolved == 1);
  CHECK(s.by_projection.empty());
}

TEST_CASE_METHOD(dlq_fixture,
                 "dlq replay marks the entry retrying while the projection "
                 "works",
                 "[dlq][replay]") {
  auto ev = make_event(7);
  auto id = add(make_letter("orders", ev));
  auto log = std::make_shared<projection_log>();
  log->hold = true;
  auto projection = spawn_projection(log);
  auto pending = self->request(dlq, std::chrono::seconds(30), dlq_replay_atom_v,
                               id, replay_target_actor{projection});
  // The actor handles its mailbox in order: the replay before this get.
  auto during = get(id);
  REQUIRE(during);
  CHECK(during->status == dead_letter_status::retrying);
  self->send(projection, caf::ok_atom_v);
  auto res = collect<bool>(pending);
  REQUIRE(res);
  CHECK(*res);
  CHECK(get(id)->status == dead_letter_status::resolved);
}

TEST_CASE_METHOD(dlq_fixture,
                 "dlq replay failure returns the error and records it",
                 "[dlq][replay]") {
  auto ev = make_event(8);
  auto id = add(make_letter("orders", ev));
  auto log = std::make_shared<projection_log>();
  log->fail(make_store_error(store_errc::malformed_payload, "still broken"));
  auto projection = spawn_projection(log);
  auto res = replay(id, projection);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), store_errc::malformed_payload));
  CHECK(describe(res.error()).find("still broken") != std::string::npos);
  auto replayed = log->events();
  REQUIRE(replayed.size() == 1);
  CHECK(replayed[0] == ev);
  auto got = get(id);
  REQUIRE(got);
  CHECK(got->status == dead_letter_status::failed);
  CHECK(got->retry_count == 1);
  CHECK(got->error_message.find("still broken") != std::string::npos);
  CHECK(got->resolved_by.empty());
  // Again: the count grows; still one entry.
  res = replay(id, projection);
  REQUIRE_FALSE(res);
  CHECK(get(id)->retry_count == 2);
  CHECK(stats().total == 1);
  // Once the projection is fixed, a replay resolves it.
  log->fail(caf::error{});
  res = replay(id, projection);
  REQUIRE(res);
  CHECK(*res);
  CHECK(get(id)->status == dead_letter_status::resolved);
  CHECK(log->events().size() == 3);
}

TEST_CASE_METHOD(dlq_fixture,
                 "dlq replay of an unknown or unreadable entry fails at once",
                 "[dlq][replay]") {
  auto log = std::make_shared<projection_log>();
  auto projection = spawn_projection(log);
  auto res = replay(int64_t{404}, projection);
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), supervision_errc::not_found));
  auto d = make_letter("orders", make_event(1));
  d.event_data = "this is not an event";
  auto id = add(d);
  res = replay(id, projection);
  REQUIRE_FALSE(res);
  // Nothing reached the projection and the entry is untouched.
  CHECK(log->events().empty());
  auto got = get(id);
  REQUIRE(got);
  CHECK(got->status == dead_letter_status::failed);
  CHECK(got->retry_count == 0);
}
