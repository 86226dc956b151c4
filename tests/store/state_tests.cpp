// The state store contract: every adapter of the snapshot, checkpoint and
// dead-letter ports must pass every test here. Tests of what only adapters
// on a shared database can do (leases across objects and processes) pass
// trivially for the others.
#include "es/store/errors.hpp"
#include "es/store/event.hpp"
#include "es/store/state_stores.hpp"
#include "es/store/uuid.hpp"

#include "state_fixtures.hpp"
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

// The adapters under test; other test binaries compile this file with their
// own list (for example the PostgreSQL adapters).
#ifdef ES_STATE_FIXTURES_HEADER
#  include ES_STATE_FIXTURES_HEADER
#endif
#ifndef ES_STATE_FIXTURES
#  define ES_STATE_FIXTURES memory_state_fixture, sqlite_state_fixture
#endif

using namespace es;
using namespace es::test;
using namespace std::chrono_literals;

namespace {

template <class T>
T require(caf::expected<T> x) {
  if (!x)
    FAIL("unexpected error: " << describe(x.error()));
  return std::move(*x);
}

int64_t micros(timestamp t) {
  return t.time_since_epoch().count();
}

int64_t micros(const std::optional<timestamp>& t) {
  return t ? micros(*t) : -1;
}

std::string text(const std::optional<uuid>& x) {
  return x ? x->to_string() : "(none)";
}

std::string text(dead_letter_status x) {
  return to_string(x);
}

/// A time in the current second with a microsecond part that a coarser
/// clock would lose, shifted by `offset`.
timestamp sample_time(std::chrono::microseconds offset = {}) {
  auto second = std::chrono::time_point_cast<std::chrono::seconds>(now_utc());
  return second + 123'457us + offset;
}

/// Returns once `now_utc()` is past `t`. Bounded, so a skewed clock fails
/// the test instead of hanging it.
void wait_until_past(timestamp t) {
  auto give_up = std::chrono::steady_clock::now() + 5s;
  while (now_utc() <= t && std::chrono::steady_clock::now() < give_up)
    std::this_thread::yield();
}

stream_id new_stream(std::string type = "Order") {
  return stream_id{std::move(type), uuid::random()};
}

/// JSON text with quotes, escapes, unicode and odd spacing: adapters must
/// keep it byte for byte.
const std::string tricky_json
  = R"({"name": "O'Brien \"the\" bold",  "city":"Zürich ☃ 😀",)"
    R"( "escaped":"\u00e9\\n", "nested" : {"b":2,"a":[1, 2.50]}})";

// -- snapshots ----------------------------------------------------------------

snapshot make_snapshot(const stream_id& stream, int64_t version,
                       std::string state = tricky_json) {
  snapshot result;
  result.stream = stream;
  result.version = version;
  result.schema_version = 1;
  result.state = std::move(state);
  result.created_at = sample_time(version * 1us);
  return result;
}

void check_snapshot(const snapshot& got, const snapshot& want) {
  CHECK(got.stream.aggregate_type == want.stream.aggregate_type);
  CHECK(got.stream.aggregate_id.to_string()
        == want.stream.aggregate_id.to_string());
  CHECK(got.version == want.version);
  CHECK(got.schema_version == want.schema_version);
  CHECK(got.state == want.state);
  CHECK(micros(got.created_at) == micros(want.created_at));
}

void check_stored(snapshot_store& store, const snapshot& want) {
  auto got = require(store.load(want.stream));
  REQUIRE(got.has_value());
  check_snapshot(*got, want);
}

// -- checkpoints --------------------------------------------------------------

checkpoint make_checkpoint(std::string projection, int64_t position) {
  checkpoint result;
  result.projection = std::move(projection);
  result.position = position;
  result.event_id = uuid::time_ordered();
  result.event_type = "ItemAdded";
  result.events_processed = position * 2 + 1;
  result.updated_at = sample_time(position * 1us);
  return result;
}

void check_checkpoint(const checkpoint& got, const checkpoint& want) {
  CHECK(got.projection == want.projection);
  CHECK(got.position == want.position);
  CHECK(got.event_id.to_string() == want.event_id.to_string());
  CHECK(got.event_type == want.event_type);
  CHECK(got.events_processed == want.events_processed);
  CHECK(micros(got.updated_at) == micros(want.updated_at));
}

void check_stored(checkpoint_store& store, const checkpoint& want) {
  auto got = require(store.load(want.projection));
  REQUIRE(got.has_value());
  check_checkpoint(*got, want);
}

// -- dead letters -------------------------------------------------------------

dead_letter make_dead_letter(std::string projection,
                             uuid event_id = uuid::time_ordered(),
                             int64_t position = 7) {
  dead_letter result;
  result.projection = std::move(projection);
  result.event_id = event_id;
  result.global_position = position;
  result.event_type = "ItemAdded";
  result.event_data = tricky_json;
  result.error_message = R"(cannot apply "ItemAdded": quantity < 0)";
  result.error_context = "handler: orders\nattempt: 1 ✗";
  result.retry_count = 0;
  result.first_failed_at = sample_time();
  result.last_failed_at = result.first_failed_at;
  return result;
}

void check_dead_letter(const dead_letter& got, const dead_letter& want) {
  CHECK(got.id == want.id);
  CHECK(got.projection == want.projection);
  CHECK(got.event_id.to_string() == want.event_id.to_string());
  CHECK(got.global_position == want.global_position);
  CHECK(got.event_type == want.event_type);
  CHECK(got.event_data == want.event_data);
  CHECK(got.error_message == want.error_message);
  CHECK(got.error_context == want.error_context);
  CHECK(got.retry_count == want.retry_count);
  CHECK(text(got.status) == text(want.status));
  CHECK(micros(got.first_failed_at) == micros(want.first_failed_at));
  CHECK(micros(got.last_failed_at) == micros(want.last_failed_at));
  CHECK(micros(got.resolved_at) == micros(want.resolved_at));
  CHECK(got.resolved_by == want.resolved_by);
}

dead_letter require_entry(dead_letter_store& store, int64_t id) {
  auto got = require(store.get(id));
  if (!got)
    FAIL("no dead letter with id " << id);
  return std::move(*got);
}

dead_letter_query query(std::optional<std::string> projection = std::nullopt,
                        std::optional<dead_letter_status> status = std::nullopt,
                        size_t limit = 100, size_t offset = 0) {
  dead_letter_query result;
  result.projection = std::move(projection);
  result.status = status;
  result.limit = limit;
  result.offset = offset;
  return result;
}

std::vector<int64_t> listed_ids(dead_letter_store& store,
                                const dead_letter_query& q) {
  std::vector<int64_t> result;
  for (const auto& entry : require(store.list(q)))
    result.push_back(entry.id);
  return result;
}

// -- recorded events ----------------------------------------------------------

recorded_event make_recorded_event(bool with_optionals) {
  recorded_event ev;
  ev.global_position = 4711;
  ev.event_id = uuid::time_ordered();
  ev.event_type = "ItemAdded";
  ev.event_version = 3;
  ev.aggregate_id = uuid::random();
  ev.aggregate_type = "Order";
  ev.aggregate_version = 12;
  ev.occurred_at = sample_time();
  ev.payload = tricky_json;
  if (with_optionals) {
    ev.tenant_id = uuid::random();
    ev.correlation_id = uuid::random();
    ev.causation_id = uuid::time_ordered();
    ev.actor_id = R"(user "Jürgen")";
    ev.metadata = R"({"trace": "a\"b", "ü": [1, 2]})";
  }
  return ev;
}

void check_recorded_event(const recorded_event& got,
                          const recorded_event& want) {
  CHECK(got.global_position == want.global_position);
  CHECK(got.event_id.to_string() == want.event_id.to_string());
  CHECK(got.event_type == want.event_type);
  CHECK(got.event_version == want.event_version);
  CHECK(got.aggregate_id.to_string() == want.aggregate_id.to_string());
  CHECK(got.aggregate_type == want.aggregate_type);
  CHECK(got.aggregate_version == want.aggregate_version);
  CHECK(text(got.tenant_id) == text(want.tenant_id));
  CHECK(micros(got.occurred_at) == micros(want.occurred_at));
  CHECK(text(got.correlation_id) == text(want.correlation_id));
  CHECK(text(got.causation_id) == text(want.causation_id));
  CHECK(got.actor_id == want.actor_id);
  CHECK(got.metadata == want.metadata);
  CHECK(got.payload == want.payload);
  CHECK(got == want);
}

/// Returns `text` with the first `from` replaced by `to`.
std::string replaced(std::string text, std::string_view from,
                     std::string_view to) {
  auto pos = text.find(from);
  if (pos == std::string::npos)
    FAIL("'" << from << "' not in " << text);
  return text.replace(pos, from.size(), to);
}

} // namespace

// -- snapshot contract --------------------------------------------------------

TEMPLATE_TEST_CASE("a snapshot store has nothing for an unknown stream",
                   "[state][snapshot]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.snapshots();
  auto stream = new_stream();
  CHECK_FALSE(require(store->load(stream)).has_value());
  CHECK_FALSE(require(store->remove(stream)));
}

TEMPLATE_TEST_CASE("a snapshot round-trips every field", "[state][snapshot]",
                   ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.snapshots();
  auto snap = make_snapshot(new_stream("Order"), 42);
  snap.schema_version = 3;
  REQUIRE(require(store->save(snap)));
  auto got = require(store->load(snap.stream));
  REQUIRE(got.has_value());
  check_snapshot(*got, snap);
  CHECK(*got == snap);
}

TEMPLATE_TEST_CASE("a snapshot of an equal or higher version replaces the "
                   "stored one",
                   "[state][snapshot]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.snapshots();
  auto stream = new_stream();
  auto first = make_snapshot(stream, 5, R"({"v": "first"})");
  REQUIRE(require(store->save(first)));
  SECTION("an equal version") {
    auto again = make_snapshot(stream, 5, R"({"v": "again"})");
    again.schema_version = 2;
    again.created_at = first.created_at + 1s;
    CHECK(require(store->save(again)));
    check_stored(*store, again);
  }
  SECTION("a higher version") {
    auto newer = make_snapshot(stream, 6, R"({"v": "newer"})");
    newer.schema_version = 2;
    CHECK(require(store->save(newer)));
    check_stored(*store, newer);
  }
}

TEMPLATE_TEST_CASE("a late snapshot writer never replaces a newer snapshot",
                   "[state][snapshot]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.snapshots();
  auto stream = new_stream();
  auto newer = make_snapshot(stream, 8, R"({"v": "newer"})");
  REQUIRE(require(store->save(newer)));
  auto late = make_snapshot(stream, 7, R"({"v": "late"})");
  late.schema_version = 2;
  late.created_at = newer.created_at + 1s;
  CHECK_FALSE(require(store->save(late)));
  check_stored(*store, newer);
  late.version = 1;
  CHECK_FALSE(require(store->save(late)));
  check_stored(*store, newer);
}

TEMPLATE_TEST_CASE("removing a snapshot", "[state][snapshot]",
                   ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.snapshots();
  auto snap = make_snapshot(new_stream(), 9);
  REQUIRE(require(store->save(snap)));
  CHECK(require(store->remove(snap.stream)));
  CHECK_FALSE(require(store->load(snap.stream)).has_value());
  CHECK_FALSE(require(store->remove(snap.stream)));
  // Nothing of the removed snapshot blocks a lower version afterwards.
  auto lower = make_snapshot(snap.stream, 2, R"({"v": "rebuilt"})");
  CHECK(require(store->save(lower)));
  check_stored(*store, lower);
}

TEMPLATE_TEST_CASE("snapshots of the same id but another aggregate type are "
                   "separate",
                   "[state][snapshot]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.snapshots();
  auto id = uuid::random();
  stream_id order{"Order", id};
  stream_id invoice{"Invoice", id};
  auto order_snap = make_snapshot(order, 5, R"({"kind": "order"})");
  REQUIRE(require(store->save(order_snap)));
  CHECK_FALSE(require(store->load(invoice)).has_value());
  CHECK_FALSE(require(store->load(new_stream("Order"))).has_value());
  // A lower version of the other stream is not a late writer.
  auto invoice_snap = make_snapshot(invoice, 1, R"({"kind": "invoice"})");
  CHECK(require(store->save(invoice_snap)));
  check_stored(*store, order_snap);
  check_stored(*store, invoice_snap);
  CHECK(require(store->remove(order)));
  CHECK_FALSE(require(store->load(order)).has_value());
  check_stored(*store, invoice_snap);
}

// -- checkpoint contract ------------------------------------------------------

TEMPLATE_TEST_CASE("a checkpoint store has nothing for an unknown projection",
                   "[state][checkpoint]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  CHECK_FALSE(require(store->load("orders")).has_value());
  CHECK_FALSE(require(store->reset("orders")));
  CHECK(require(store->list()).empty());
}

TEMPLATE_TEST_CASE("a checkpoint round-trips every field",
                   "[state][checkpoint]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  auto cp = make_checkpoint("orders", 1234);
  SECTION("with the last event") {
    // nop
  }
  SECTION("with a nil event id") {
    cp.event_id = uuid{};
    cp.event_type.clear();
  }
  check_checkpoint(require(store->save(cp)), cp);
  check_stored(*store, cp);
  auto got = require(store->load(cp.projection));
  REQUIRE(got.has_value());
  CHECK(*got == cp);
}

TEMPLATE_TEST_CASE("checkpoints never move backwards", "[state][checkpoint]",
                   ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  auto stored = make_checkpoint("orders", 100);
  check_checkpoint(require(store->save(stored)), stored);
  auto lower = make_checkpoint("orders", 40);
  lower.updated_at = stored.updated_at + 1s;
  // The answer is the stored checkpoint, unchanged.
  check_checkpoint(require(store->save(lower)), stored);
  check_stored(*store, stored);
  lower.position = 99;
  check_checkpoint(require(store->save(lower)), stored);
  check_stored(*store, stored);
}

TEMPLATE_TEST_CASE("a checkpoint at an equal or higher position replaces the "
                   "stored one",
                   "[state][checkpoint]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  auto first = make_checkpoint("orders", 100);
  check_checkpoint(require(store->save(first)), first);
  SECTION("an equal position") {
    auto again = make_checkpoint("orders", 100);
    again.event_type = "NoteWritten";
    again.events_processed = first.events_processed + 5;
    again.updated_at = first.updated_at + 1s;
    check_checkpoint(require(store->save(again)), again);
    check_stored(*store, again);
  }
  SECTION("a higher position") {
    auto higher = make_checkpoint("orders", 150);
    higher.event_id = uuid{};
    check_checkpoint(require(store->save(higher)), higher);
    check_stored(*store, higher);
  }
}

TEMPLATE_TEST_CASE("resetting a checkpoint lets the projection start lower",
                   "[state][checkpoint]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  auto other = make_checkpoint("billing", 70);
  check_checkpoint(require(store->save(other)), other);
  auto cp = make_checkpoint("orders", 100);
  check_checkpoint(require(store->save(cp)), cp);
  CHECK(require(store->reset("orders")));
  CHECK_FALSE(require(store->load("orders")).has_value());
  CHECK_FALSE(require(store->reset("orders")));
  check_stored(*store, other);
  auto rebuilt = make_checkpoint("orders", 5);
  check_checkpoint(require(store->save(rebuilt)), rebuilt);
  check_stored(*store, rebuilt);
}

TEMPLATE_TEST_CASE("list returns every checkpoint ordered by projection name",
                   "[state][checkpoint]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  std::vector<std::string> names{"orders", "Billing",       "audit",
                                 "Zürich", "zeta",          "audit-2",
                                 "Ärger",  R"(o'brien "q")"};
  std::map<std::string, checkpoint> saved;
  int64_t position = 10;
  for (const auto& name : names) {
    auto cp = make_checkpoint(name, position++);
    check_checkpoint(require(store->save(cp)), cp);
    saved.emplace(name, cp);
  }
  // Saving again must not add entries.
  check_checkpoint(require(store->save(saved.at("audit"))), saved.at("audit"));
  auto sorted = names;
  std::sort(sorted.begin(), sorted.end());
  auto listed = require(store->list());
  std::vector<std::string> listed_names;
  for (const auto& cp : listed)
    listed_names.push_back(cp.projection);
  CHECK(listed_names == sorted);
  for (const auto& cp : listed) {
    INFO("projection " << cp.projection);
    auto i = saved.find(cp.projection);
    REQUIRE(i != saved.end());
    check_checkpoint(cp, i->second);
  }
}

TEMPLATE_TEST_CASE("projection names with quotes and unicode work",
                   "[state][checkpoint]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  std::vector<std::string> names{R"(it's "quoted")", "Zürich ☃ 😀",
                                 R"(back\slash)", "%_ wildcard",
                                 "x'; DROP TABLE projection_checkpoints; --"};
  int64_t position = 1;
  for (const auto& name : names) {
    INFO("projection " << name);
    auto cp = make_checkpoint(name, position++);
    check_checkpoint(require(store->save(cp)), cp);
    check_stored(*store, cp);
  }
  CHECK(require(store->list()).size() == names.size());
  CHECK_FALSE(require(store->load("Zurich ☃ 😀")).has_value());
  CHECK_FALSE(require(store->load("%")).has_value());
  for (const auto& name : names) {
    INFO("projection " << name);
    CHECK(require(store->reset(name)));
    CHECK_FALSE(require(store->load(name)).has_value());
  }
  CHECK(require(store->list()).empty());
}

// -- compare-and-set checkpoints ----------------------------------------------

namespace {

/// Checks that `res` is a `checkpoint_conflict` whose text names the
/// expected position and what was `found` ("position 5", "no checkpoint").
void check_conflict(const caf::expected<checkpoint>& res, int64_t expected,
                    const std::string& found) {
  REQUIRE_FALSE(res);
  auto text = describe(res.error());
  INFO("error: " << text);
  CHECK(has_code(res.error(), store_errc::checkpoint_conflict));
  CHECK_FALSE(is_retryable(res.error()));
  CHECK(text.find("expected position " + std::to_string(expected))
        != std::string::npos);
  CHECK(text.find("found " + found) != std::string::npos);
}

} // namespace

TEMPLATE_TEST_CASE("save_if stores a checkpoint at the expected position",
                   "[state][checkpoint][cas]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  // 0 matches "no checkpoint".
  auto first = make_checkpoint("orders", 5);
  check_checkpoint(require(store->save_if(first, 0)), first);
  check_stored(*store, first);
  auto next = make_checkpoint("orders", 9);
  next.event_id = uuid{};
  check_checkpoint(require(store->save_if(next, 5)), next);
  check_stored(*store, next);
  // The same position again, with new counters.
  auto again = make_checkpoint("orders", 9);
  again.events_processed = next.events_processed + 3;
  again.updated_at = next.updated_at + 1s;
  check_checkpoint(require(store->save_if(again, 9)), again);
  check_stored(*store, again);
  // Other projections are not involved.
  auto billing = make_checkpoint("billing", 3);
  check_checkpoint(require(store->save_if(billing, 0)), billing);
  check_stored(*store, billing);
  check_stored(*store, again);
}

TEMPLATE_TEST_CASE("save_if refuses a checkpoint that moved",
                   "[state][checkpoint][cas]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  auto want = make_checkpoint("orders", 7);
  SECTION("no checkpoint is stored") {
    check_conflict(store->save_if(want, 2), 2, "no checkpoint");
    check_conflict(store->save_if(want, 7), 7, "no checkpoint");
    CHECK_FALSE(require(store->load("orders")).has_value());
  }
  SECTION("another position is stored") {
    auto stored = make_checkpoint("orders", 5);
    check_checkpoint(require(store->save(stored)), stored);
    for (int64_t expected : {int64_t{0}, int64_t{3}, int64_t{6}}) {
      INFO("expected " << expected);
      check_conflict(store->save_if(want, expected), expected, "position 5");
    }
    check_stored(*store, stored);
    // The writer that knows the position still gets through.
    check_checkpoint(require(store->save_if(want, 5)), want);
  }
}

TEMPLATE_TEST_CASE("after a reset, save_if expects position 0",
                   "[state][checkpoint][cas]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  auto old = make_checkpoint("orders", 50);
  check_checkpoint(require(store->save(old)), old);
  REQUIRE(require(store->reset("orders")));
  auto rebuilt = make_checkpoint("orders", 3);
  check_conflict(store->save_if(rebuilt, 50), 50, "no checkpoint");
  check_checkpoint(require(store->save_if(rebuilt, 0)), rebuilt);
  check_stored(*store, rebuilt);
  // A checkpoint stored at position 0 matches 0 as well.
  auto zero = make_checkpoint("billing", 0);
  check_checkpoint(require(store->save(zero)), zero);
  auto moved = make_checkpoint("billing", 2);
  check_checkpoint(require(store->save_if(moved, 0)), moved);
  check_stored(*store, moved);
}

TEMPLATE_TEST_CASE("save_if never moves a checkpoint backwards",
                   "[state][checkpoint][cas]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  auto stored = make_checkpoint("orders", 8);
  check_checkpoint(require(store->save(stored)), stored);
  auto lower = make_checkpoint("orders", 3);
  check_checkpoint(require(store->save_if(lower, 8)), stored);
  check_stored(*store, stored);
}

// -- leases -------------------------------------------------------------------

namespace {

/// Adapters whose stores share one database between objects and processes
/// (SQLite, PostgreSQL; the in-memory adapter's are per object).
template <class Fixture>
concept shares_database = requires(Fixture& fx) {
  fx.reopen_checkpoints();
};

/// Adapters whose leases live in a database session the test can end.
template <class Fixture>
concept has_lease_sessions = requires(Fixture& fx) {
  fx.end_lease_sessions();
};

void check_held(const caf::expected<projection_lease_ptr>& res,
                const std::string& name) {
  REQUIRE_FALSE(res);
  auto text = describe(res.error());
  INFO("error: " << text);
  CHECK(has_code(res.error(), store_errc::lease_held));
  CHECK_FALSE(is_retryable(res.error()));
  CHECK(text.find("'" + name + "'") != std::string::npos);
}

/// Tries `store.try_lease(name)` until it succeeds, a few milliseconds
/// apart, for at most `timeout`; FAILs on other errors and on timeout.
projection_lease_ptr lease_eventually(checkpoint_store& store,
                                      const std::string& name,
                                      std::chrono::milliseconds timeout) {
  auto give_up = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto res = store.try_lease(name);
    if (res)
      return std::move(*res);
    if (!has_code(res.error(), store_errc::lease_held))
      FAIL("cannot take the lease: " << describe(res.error()));
    if (std::chrono::steady_clock::now() > give_up)
      FAIL("the lease of " << name << " is still held after " << timeout.count()
                           << " ms: " << describe(res.error()));
    std::this_thread::sleep_for(5ms);
  }
}

/// A child process that takes the lease of a projection through a store of
/// its own on the fixture's database, tells the parent, and then holds it
/// until it is killed.
class lease_holder_process {
public:
  template <class Fixture>
  lease_holder_process(Fixture& fx, const std::string& name) {
    int ready[2];
    int hold[2];
    REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(hold, O_CLOEXEC) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::close(ready[0]);
      ::close(hold[1]);
      run_child(fx, name, ready[1], hold[0]);
    }
    ::close(ready[1]);
    ::close(hold[0]);
    ready_ = ready[0];
    hold_ = hold[1];
  }

  ~lease_holder_process() {
    kill();
    ::close(ready_);
    ::close(hold_);
  }

  lease_holder_process(const lease_holder_process&) = delete;
  lease_holder_process& operator=(const lease_holder_process&) = delete;

  /// Returns once the child holds the lease; FAILs if it exits first or
  /// takes longer than `timeout`.
  void wait_until_held(std::chrono::milliseconds timeout) {
    pollfd p{ready_, POLLIN, 0};
    int n;
    while ((n = ::poll(&p, 1, static_cast<int>(timeout.count()))) < 0
           && errno == EINTR) {
      // retry
    }
    REQUIRE(n == 1);
    char c = 0;
    if (::read(ready_, &c, 1) == 1)
      return;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    FAIL("the child exited before it held the lease, status " << status);
  }

  /// Kills the child with SIGKILL (no destructor, no clean-up of its own
  /// runs) and reaps it; returns its wait status.
  int kill() {
    int status = 0;
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    return status;
  }

private:
  /// Never returns, and never runs the parent's destructors or Catch2's
  /// handlers: the exit code tells how far it got.
  template <class Fixture>
  [[noreturn]] static void
  run_child(Fixture& fx, const std::string& name, int ready, int hold) {
    int code = 0;
    try {
      auto store = fx.reopen_checkpoints();
      if (!store)
        ::_exit(3);
      auto lease = (*store)->try_lease(name);
      if (!lease)
        ::_exit(4);
      char c = 'L';
      if (::write(ready, &c, 1) != 1)
        ::_exit(5);
      // Blocks until killed (or the parent went away).
      while (::read(hold, &c, 1) < 0 && errno == EINTR) {
        // retry
      }
    } catch (...) {
      code = 6;
    }
    ::_exit(code);
  }

  pid_t pid_ = -1;
  int ready_ = -1;
  int hold_ = -1;
};

} // namespace

TEMPLATE_TEST_CASE("a projection has one lease at a time", "[state][lease]",
                   ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  auto first = require(store->try_lease("orders"));
  CHECK(first->projection() == "orders");
  CHECK_FALSE(first->check());
  check_held(store->try_lease("orders"), "orders");
  check_held(store->try_lease("orders"), "orders");
  // Refused attempts leave the holder alone.
  CHECK_FALSE(first->check());
  first.reset();
  auto second = require(store->try_lease("orders"));
  CHECK_FALSE(second->check());
  check_held(store->try_lease("orders"), "orders");
}

TEMPLATE_TEST_CASE("leases of different projections are independent",
                   "[state][lease]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  std::vector<std::string> names{"orders",           "billing",    "Orders",
                                 R"(it's "quoted")", "Zürich ☃ 😀", "orders/2"};
  std::vector<projection_lease_ptr> leases;
  for (const auto& name : names) {
    INFO("projection " << name);
    leases.push_back(require(store->try_lease(name)));
    CHECK(leases.back()->projection() == name);
  }
  for (size_t i = 0; i < names.size(); ++i) {
    INFO("projection " << names[i]);
    CHECK_FALSE(leases[i]->check());
    check_held(store->try_lease(names[i]), names[i]);
  }
  // Releasing one frees that one only.
  leases[1].reset();
  auto billing = require(store->try_lease("billing"));
  check_held(store->try_lease("orders"), "orders");
  CHECK_FALSE(leases[0]->check());
}

TEMPLATE_TEST_CASE("a lease may outlive its store", "[state][lease]",
                   ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.checkpoints();
  auto lease = require(store->try_lease("orders"));
  store.reset();
  CHECK_FALSE(lease->check());
  if constexpr (shares_database<TestType>) {
    auto other = require(fx.reopen_checkpoints());
    check_held(other->try_lease("orders"), "orders");
    lease.reset();
    auto taken = require(other->try_lease("orders"));
    CHECK_FALSE(taken->check());
  } else {
    lease.reset();
    SUCCEED("the lease was released after its store");
  }
}

TEMPLATE_TEST_CASE("stores on one database share leases and checkpoints",
                   "[state][lease][cas]", ES_STATE_FIXTURES) {
  TestType fx;
  if constexpr (shares_database<TestType>) {
    auto a = fx.checkpoints();
    auto b = require(fx.reopen_checkpoints());
    auto db = require(fx.reopen_as_read_model());
    auto c = db->checkpoints();
    REQUIRE(c != nullptr);
    auto held_by_a = require(a->try_lease("orders"));
    check_held(b->try_lease("orders"), "orders");
    check_held(c->try_lease("orders"), "orders");
    held_by_a.reset();
    auto held_by_c = require(c->try_lease("orders"));
    check_held(a->try_lease("orders"), "orders");
    check_held(b->try_lease("orders"), "orders");
    // Another name is free everywhere.
    auto billing = require(b->try_lease("billing"));
    // Two writers that both read position 0: the second one loses.
    auto from_a = make_checkpoint("orders", 5);
    auto from_b = make_checkpoint("orders", 5);
    check_checkpoint(require(a->save_if(from_a, 0)), from_a);
    check_conflict(b->save_if(from_b, 0), 0, "position 5");
    check_conflict(c->save_if(from_b, 0), 0, "position 5");
    check_stored(*b, from_a);
  } else {
    SUCCEED(TestType::name << " stores share nothing");
  }
}

TEMPLATE_TEST_CASE("a lease held by a killed process is free again",
                   "[state][lease][process]", ES_STATE_FIXTURES) {
  TestType fx;
  if constexpr (shares_database<TestType>) {
    auto store = fx.checkpoints();
    lease_holder_process child{fx, "orders"};
    child.wait_until_held(30s);
    check_held(store->try_lease("orders"), "orders");
    // Not a lease of this process: other names stay free.
    auto billing = require(store->try_lease("billing"));
    auto status = child.kill();
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    // The OS (file locks) or the database (a session whose client is gone)
    // releases it; the database may take a moment to notice.
    auto lease = lease_eventually(*store, "orders", 30s);
    CHECK_FALSE(lease->check());
    check_held(store->try_lease("orders"), "orders");
  } else {
    SUCCEED(TestType::name << " leases do not leave the store object");
  }
}

TEMPLATE_TEST_CASE("a lease whose database session ends is lost",
                   "[state][lease]", ES_STATE_FIXTURES) {
  TestType fx;
  if constexpr (has_lease_sessions<TestType>) {
    auto store = fx.checkpoints();
    auto lease = require(store->try_lease("orders"));
    REQUIRE_FALSE(lease->check());
    REQUIRE(fx.end_lease_sessions() == 1);
    auto lost = lease->check();
    INFO("check: " << describe(lost));
    CHECK(has_code(lost, store_errc::lease_lost));
    CHECK(describe(lost).find("'orders'") != std::string::npos);
    // Lost stays lost.
    CHECK(has_code(lease->check(), store_errc::lease_lost));
    auto successor = lease_eventually(*store, "orders", 30s);
    CHECK_FALSE(successor->check());
    // Dropping the lost lease does not release its successor's.
    lease.reset();
    CHECK_FALSE(successor->check());
    check_held(store->try_lease("orders"), "orders");
  } else {
    SUCCEED(TestType::name << " leases have no session to end");
  }
}

// -- dead-letter contract -----------------------------------------------------

TEMPLATE_TEST_CASE("an empty dead-letter store", "[state][dead_letter]",
                   ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.dead_letters();
  CHECK_FALSE(require(store->get(1)).has_value());
  CHECK(require(store->list(query())).empty());
  CHECK_FALSE(require(store->mark_retrying(1)));
  CHECK_FALSE(require(store->mark_resolved(1, "alice")));
  auto stats = require(store->stats());
  CHECK(stats.total == 0);
  CHECK(stats.failed == 0);
  CHECK(stats.retrying == 0);
  CHECK(stats.resolved == 0);
  CHECK(stats.by_projection.empty());
  CHECK_FALSE(stats.oldest_unresolved.has_value());
  CHECK(require(store->purge_resolved(0s)) == 0);
}

TEMPLATE_TEST_CASE("a dead letter round-trips every field",
                   "[state][dead_letter]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.dead_letters();
  auto entry = make_dead_letter("orders");
  entry.retry_count = 2;
  entry.last_failed_at = entry.first_failed_at + 1500us;
  entry.id = require(store->add(entry));
  check_dead_letter(require_entry(*store, entry.id), entry);
  auto other = make_dead_letter("orders");
  auto other_id = require(store->add(other));
  CHECK(other_id != entry.id);
  check_dead_letter(require_entry(*store, entry.id), entry);
  auto listed = require(store->list(query()));
  REQUIRE(listed.size() == 2);
  check_dead_letter(listed.front(), entry);
}

TEMPLATE_TEST_CASE("a new dead letter is always failed and unresolved",
                   "[state][dead_letter]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.dead_letters();
  auto entry = make_dead_letter("orders");
  entry.status = dead_letter_status::resolved;
  entry.resolved_at = entry.first_failed_at;
  entry.resolved_by = "alice";
  auto got = require_entry(*store, require(store->add(entry)));
  CHECK(text(got.status) == "failed");
  CHECK_FALSE(got.resolved_at.has_value());
  CHECK(got.resolved_by.empty());
  auto stats = require(store->stats());
  CHECK(stats.failed == 1);
  CHECK(stats.resolved == 0);
}

TEMPLATE_TEST_CASE("a repeated failure updates its dead letter",
                   "[state][dead_letter]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.dead_letters();
  auto first = make_dead_letter("orders");
  first.retry_count = 1;
  auto id = require(store->add(first));
  SECTION("while it is failed") {
    // nop
  }
  SECTION("while it is retried") {
    REQUIRE(require(store->mark_retrying(id)));
    REQUIRE(text(require_entry(*store, id).status) == "retrying");
  }
  SECTION("after it was resolved") {
    REQUIRE(require(store->mark_resolved(id, "alice")));
    REQUIRE(require_entry(*store, id).resolved_at.has_value());
  }
  auto again = first;
  again.first_failed_at = first.first_failed_at + 2s;
  again.last_failed_at = first.first_failed_at + 2s + 250us;
  again.error_message = "still broken: \"quantity\"";
  // The stored count goes up by one, whatever the caller passes.
  again.retry_count = 5;
  CHECK(require(store->add(again)) == id);
  auto got = require_entry(*store, id);
  CHECK(got.retry_count == 2);
  CHECK(micros(got.last_failed_at) == micros(again.last_failed_at));
  CHECK(micros(got.first_failed_at) == micros(first.first_failed_at));
  CHECK(got.error_message == again.error_message);
  CHECK(text(got.status) == "failed");
  CHECK_FALSE(got.resolved_at.has_value());
  CHECK(got.resolved_by.empty());
  CHECK(got.event_data == first.event_data);
  CHECK(listed_ids(*store, query()) == std::vector<int64_t>{id});
  again.last_failed_at += 1s;
  CHECK(require(store->add(again)) == id);
  got = require_entry(*store, id);
  CHECK(got.retry_count == 3);
  CHECK(micros(got.last_failed_at) == micros(again.last_failed_at));
}

TEMPLATE_TEST_CASE("the same event failing in another projection is another "
                   "dead letter",
                   "[state][dead_letter]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.dead_letters();
  auto event_id = uuid::time_ordered();
  auto orders = make_dead_letter("orders", event_id);
  orders.id = require(store->add(orders));
  auto billing = make_dead_letter("billing", event_id);
  billing.error_message = "billing failed";
  billing.id = require(store->add(billing));
  CHECK(billing.id != orders.id);
  check_dead_letter(require_entry(*store, orders.id), orders);
  check_dead_letter(require_entry(*store, billing.id), billing);
  CHECK(listed_ids(*store, query("orders")) == std::vector<int64_t>{orders.id});
  CHECK(listed_ids(*store, query("billing"))
        == std::vector<int64_t>{billing.id});
}

TEMPLATE_TEST_CASE("listing dead letters filters, orders by id and pages",
                   "[state][dead_letter]", ES_STATE_FIXTURES) {
  using enum dead_letter_status;
  TestType fx;
  auto store = fx.dead_letters();
  // Projection and final status of each entry, in the order added.
  std::vector<std::pair<std::string, dead_letter_status>> plan{
    {"a", failed},   {"b", failed},   {"a", retrying},
    {"a", resolved}, {"b", retrying}, {"a", failed}};
  std::vector<int64_t> ids;
  for (const auto& [projection, status] : plan) {
    auto id = require(store->add(make_dead_letter(projection)));
    if (status == retrying)
      REQUIRE(require(store->mark_retrying(id)));
    else if (status == resolved)
      REQUIRE(require(store->mark_resolved(id, "alice")));
    ids.push_back(id);
  }
  // Ids grow with every entry, so "ordered by id" means "oldest first".
  REQUIRE(std::is_sorted(ids.begin(), ids.end()));
  REQUIRE(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
  using ids_t = std::vector<int64_t>;
  auto pick = [&](std::initializer_list<size_t> indexes) {
    ids_t result;
    for (auto i : indexes)
      result.push_back(ids[i]);
    return result;
  };
  CHECK(listed_ids(*store, query()) == ids);
  CHECK(listed_ids(*store, query("a")) == pick({0, 2, 3, 5}));
  CHECK(listed_ids(*store, query("b")) == pick({1, 4}));
  CHECK(listed_ids(*store, query("c")).empty());
  CHECK(listed_ids(*store, query(std::nullopt, failed)) == pick({0, 1, 5}));
  CHECK(listed_ids(*store, query(std::nullopt, retrying)) == pick({2, 4}));
  CHECK(listed_ids(*store, query(std::nullopt, resolved)) == pick({3}));
  CHECK(listed_ids(*store, query("a", failed)) == pick({0, 5}));
  CHECK(listed_ids(*store, query("b", retrying)) == pick({4}));
  CHECK(listed_ids(*store, query("b", resolved)).empty());
  CHECK(listed_ids(*store, query(std::nullopt, std::nullopt, 2))
        == pick({0, 1}));
  CHECK(listed_ids(*store, query(std::nullopt, std::nullopt, 2, 2))
        == pick({2, 3}));
  CHECK(listed_ids(*store, query(std::nullopt, std::nullopt, 100, 5))
        == pick({5}));
  CHECK(listed_ids(*store, query(std::nullopt, std::nullopt, 100, 6)).empty());
  CHECK(listed_ids(*store, query(std::nullopt, std::nullopt, 0)).empty());
  CHECK(listed_ids(*store, query("a", std::nullopt, 2, 1)) == pick({2, 3}));
  CHECK(listed_ids(*store, query("a", failed, 1, 1)) == pick({5}));
  // Listed entries are whole.
  auto listed = require(store->list(query("a", resolved)));
  REQUIRE(listed.size() == 1);
  check_dead_letter(listed.front(), require_entry(*store, ids[3]));
}

TEMPLATE_TEST_CASE("marking an unknown dead letter returns false",
                   "[state][dead_letter]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.dead_letters();
  auto entry = make_dead_letter("orders");
  entry.id = require(store->add(entry));
  for (int64_t unknown :
       {entry.id + 1, entry.id + 1000, int64_t{0}, int64_t{-1}}) {
    INFO("id " << unknown);
    CHECK_FALSE(require(store->mark_retrying(unknown)));
    CHECK_FALSE(require(store->mark_resolved(unknown, "alice")));
    CHECK_FALSE(require(store->get(unknown)).has_value());
  }
  check_dead_letter(require_entry(*store, entry.id), entry);
}

TEMPLATE_TEST_CASE("marking a dead letter retrying and resolved",
                   "[state][dead_letter]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.dead_letters();
  auto entry = make_dead_letter("orders");
  entry.id = require(store->add(entry));
  REQUIRE(require(store->mark_retrying(entry.id)));
  entry.status = dead_letter_status::retrying;
  check_dead_letter(require_entry(*store, entry.id), entry);
  auto before = now_utc();
  REQUIRE(require(store->mark_resolved(entry.id, R"(alice "ops" Ørsted)")));
  auto after = now_utc();
  auto got = require_entry(*store, entry.id);
  CHECK(text(got.status) == "resolved");
  CHECK(got.resolved_by == R"(alice "ops" Ørsted)");
  REQUIRE(got.resolved_at.has_value());
  CHECK(micros(*got.resolved_at) >= micros(before));
  CHECK(micros(*got.resolved_at) <= micros(after));
  // Nothing else changes.
  entry.status = dead_letter_status::resolved;
  entry.resolved_at = got.resolved_at;
  entry.resolved_by = got.resolved_by;
  check_dead_letter(got, entry);
}

// A resolution without a name still records when it happened, so the entry
// is purged like any other (this once failed on SQLite).
TEMPLATE_TEST_CASE("a dead letter resolved without a name still records when",
                   "[state][dead_letter]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.dead_letters();
  auto id = require(store->add(make_dead_letter("orders")));
  auto before = now_utc();
  REQUIRE(require(store->mark_resolved(id, "")));
  auto got = require_entry(*store, id);
  CHECK(text(got.status) == "resolved");
  CHECK(got.resolved_by.empty());
  REQUIRE(got.resolved_at.has_value());
  CHECK(micros(*got.resolved_at) >= micros(before));
  wait_until_past(*got.resolved_at);
  CHECK(require(store->purge_resolved(0s)) == 1);
  CHECK_FALSE(require(store->get(id)).has_value());
}

TEMPLATE_TEST_CASE("dead-letter stats count by status and projection",
                   "[state][dead_letter]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.dead_letters();
  auto t0 = sample_time();
  auto add = [&](std::string projection, std::chrono::microseconds age) {
    auto entry = make_dead_letter(std::move(projection));
    entry.first_failed_at = t0 - age;
    entry.last_failed_at = t0;
    return require(store->add(entry));
  };
  add("orders", 3h);
  auto oldest_resolved = add("orders", 5h);
  auto retrying = add("orders", 2h);
  add("billing", 1h);
  auto billing_resolved = add("billing", 4h);
  auto only_resolved = add("audit", 6h);
  REQUIRE(require(store->mark_resolved(oldest_resolved, "alice")));
  REQUIRE(require(store->mark_retrying(retrying)));
  REQUIRE(require(store->mark_resolved(billing_resolved, "replay")));
  REQUIRE(require(store->mark_resolved(only_resolved, "replay")));
  auto stats = require(store->stats());
  CHECK(stats.total == 6);
  CHECK(stats.failed == 2);
  CHECK(stats.retrying == 1);
  CHECK(stats.resolved == 3);
  CHECK(stats.by_projection
        == std::map<std::string, int64_t>{{"billing", 1}, {"orders", 2}});
  REQUIRE(stats.oldest_unresolved.has_value());
  CHECK(micros(*stats.oldest_unresolved) == micros(t0 - 3h));
  // A repeated failure makes a resolved entry count as unresolved again.
  auto again = make_dead_letter("audit");
  again.event_id = require_entry(*store, only_resolved).event_id;
  REQUIRE(require(store->add(again)) == only_resolved);
  stats = require(store->stats());
  CHECK(stats.failed == 3);
  CHECK(stats.resolved == 2);
  CHECK(stats.by_projection
        == std::map<std::string, int64_t>{
          {"audit", 1}, {"billing", 1}, {"orders", 2}});
  REQUIRE(stats.oldest_unresolved.has_value());
  CHECK(micros(*stats.oldest_unresolved) == micros(t0 - 6h));
}

TEMPLATE_TEST_CASE("purging deletes only resolved dead letters older than "
                   "the age",
                   "[state][dead_letter]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.dead_letters();
  auto add = [&](std::string projection) {
    auto entry = make_dead_letter(std::move(projection));
    // Failing long ago does not make an unresolved entry purgeable.
    entry.first_failed_at -= 24h * 30;
    return require(store->add(entry));
  };
  auto resolved_a = add("orders");
  auto resolved_b = add("billing");
  auto failed = add("orders");
  auto retrying = add("orders");
  auto refailed = add("billing");
  REQUIRE(require(store->mark_resolved(resolved_a, "alice")));
  REQUIRE(require(store->mark_resolved(resolved_b, "replay")));
  REQUIRE(require(store->mark_retrying(retrying)));
  REQUIRE(require(store->mark_resolved(refailed, "alice")));
  auto entry = require_entry(*store, refailed);
  REQUIRE(require(store->add(entry)) == refailed);
  auto latest = std::max(*require_entry(*store, resolved_a).resolved_at,
                         *require_entry(*store, resolved_b).resolved_at);
  std::vector<int64_t> unresolved{failed, retrying, refailed};
  SECTION("an age of zero purges every resolved entry") {
    // "Resolved more than 0 s ago" holds once the clock moved on.
    wait_until_past(latest);
    CHECK(require(store->purge_resolved(0s)) == 2);
    CHECK_FALSE(require(store->get(resolved_a)).has_value());
    CHECK_FALSE(require(store->get(resolved_b)).has_value());
    CHECK(listed_ids(*store, query()) == unresolved);
    CHECK(require(store->purge_resolved(0s)) == 0);
    auto stats = require(store->stats());
    CHECK(stats.total == 3);
    CHECK(stats.resolved == 0);
  }
  SECTION("a large age purges nothing") {
    CHECK(require(store->purge_resolved(24h)) == 0);
    CHECK(require(store->get(resolved_a)).has_value());
    CHECK(require(store->get(resolved_b)).has_value());
    CHECK(listed_ids(*store, query()).size() == 5);
  }
}

// -- recorded events as dead-letter data --------------------------------------

TEMPLATE_TEST_CASE("an encoded recorded event survives a dead letter",
                   "[state][dead_letter][codec]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.dead_letters();
  bool with_optionals = false;
  SECTION("with every optional field") {
    with_optionals = true;
  }
  SECTION("without optional fields") {
    with_optionals = false;
  }
  auto ev = make_recorded_event(with_optionals);
  auto encoded = encode_recorded_event(ev);
  REQUIRE_FALSE(encoded.empty());
  check_recorded_event(require(decode_recorded_event(encoded)), ev);
  auto entry = make_dead_letter("orders", ev.event_id, ev.global_position);
  entry.event_data = encoded;
  auto got = require_entry(*store, require(store->add(entry)));
  CHECK(got.event_data == encoded);
  check_recorded_event(require(decode_recorded_event(got.event_data)), ev);
}

TEMPLATE_TEST_CASE("malformed event data does not decode",
                   "[state][dead_letter][codec]", ES_STATE_FIXTURES) {
  TestType fx;
  auto store = fx.dead_letters();
  // A dead letter keeps whatever text it gets; decoding tells it is bad.
  auto entry = make_dead_letter("orders");
  entry.event_data = "not an encoded event";
  auto got = require_entry(*store, require(store->add(entry)));
  CHECK(got.event_data == "not an encoded event");
  auto bad = decode_recorded_event(got.event_data);
  REQUIRE_FALSE(bad);
  INFO("error: " << describe(bad.error()));
  CHECK(has_code(bad.error(), store_errc::malformed_payload));
  // Each variant breaks one thing in an encoding that decodes.
  const std::string valid
    = R"({"global_position":1,)"
      R"("event_id":"0190a6b2-1c2d-7e3f-8a4b-5c6d7e8f9a0b",)"
      R"("event_type":"ItemAdded","event_version":1,)"
      R"("aggregate_id":"5f0c1e2d-3b4a-4c5d-9e6f-7a8b9c0d1e2f",)"
      R"("aggregate_type":"Order","aggregate_version":1,)"
      R"("occurred_at_us":1700000000123457,"actor_id":"","metadata":"",)"
      R"("payload":"{}"})";
  auto baseline = require(decode_recorded_event(valid));
  CHECK(micros(baseline.occurred_at) == 1700000000123457);
  CHECK_FALSE(baseline.tenant_id.has_value());
  std::vector<std::string> variants{
    "",
    "{",
    "null",
    "[]",
    "{}",
    valid.substr(0, valid.size() - 1),
    replaced(valid, "0190a6b2-1c2d-7e3f-8a4b-5c6d7e8f9a0b", "not-a-uuid"),
    replaced(valid, R"("event_version":1)", R"("event_version":"1")"),
    replaced(valid, R"("event_version":1)", R"("event_version":4294967296)"),
    replaced(valid, "1700000000123457", R"("yesterday")"),
    replaced(valid, R"(,"payload":"{}")", ""),
    replaced(valid, R"("payload":"{}")", R"("payload":{})"),
    replaced(valid, R"("actor_id":"",)", R"("actor_id":"","tenant_id":42,)"),
  };
  for (const auto& input : variants) {
    INFO("input: " << input);
    auto result = decode_recorded_event(input);
    REQUIRE_FALSE(result);
    INFO("error: " << describe(result.error()));
    CHECK(has_code(result.error(), store_errc::malformed_payload));
  }
}
