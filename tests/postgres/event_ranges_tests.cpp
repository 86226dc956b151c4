// The range-partitioned events table: partitions prepared ahead (rows the
// default partition took moved out), old ones detached, and what readers
// and writers see before and after. The contract suite runs on this layout
// too (postgres_range_fixture).
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"
#include "es/store/event_store.hpp"

#include "pg_fixture.hpp"
#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <vector>

using namespace es;
using namespace es::test;

namespace {

event_data make(int n) {
  event_data ev;
  ev.event_id = uuid::time_ordered();
  ev.event_type = "Posted";
  ev.occurred_at = now_utc();
  ev.payload = R"({"n":)" + std::to_string(n) + "}";
  return ev;
}

template <class T>
T take(caf::expected<T> x) {
  if (!x)
    FAIL("unexpected error: " << describe(x.error()));
  return std::move(*x);
}

std::vector<std::string> names(const event_ranges_report& r) {
  std::vector<std::string> result;
  for (const auto& x : r.ranges)
    result.push_back(x.name);
  return result;
}

recorded_events whole_feed(event_store& store) {
  recorded_events result;
  auto pos = for_each_in_feed(store, {}, [&](recorded_event& ev) {
    result.push_back(ev);
    return caf::error{};
  });
  REQUIRE(pos);
  return result;
}

} // namespace

TEST_CASE("range partitions are prepared ahead and detached behind",
          "[postgres][ranges]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.events_range_size = 10;
  auto store = take(make_postgres_event_store(cfg));
  // Only the first range exists: positions beyond it land in the default
  // partition, and nothing is refused.
  std::vector<stream_id> streams;
  std::vector<uuid> ids;
  for (int i = 0; i < 5; ++i)
    streams.push_back({"Ledger", uuid::random()});
  for (int i = 0; i < 35; ++i) {
    auto ev = make(i);
    ids.push_back(ev.event_id);
    take(store->append(streams[i % 5], expected_version::any(), {ev}));
  }
  auto before = take(postgres_event_ranges(cfg));
  CHECK(before.range_size == 10);
  CHECK(before.head == 35);
  CHECK(names(before) == std::vector<std::string>{"events_r0"});
  CHECK(before.default_rows == 25);
  // Prepared one range past the head's: the default partition's rows move
  // into their ranges.
  auto after = take(postgres_prepare_event_ranges(cfg, 1));
  CHECK(names(after)
        == std::vector<std::string>{"events_r0", "events_r1", "events_r2",
                                    "events_r3", "events_r4"});
  CHECK(after.default_rows == 0);
  CHECK(after.ranges[3].first_position == 31);
  CHECK(after.ranges[3].last_position == 40);
  CHECK(
    fx.admin.value("SELECT count(*) FROM " + fx.schemas.back() + ".events_r2")
    == "10");
  // Preparing again changes nothing.
  CHECK(names(take(postgres_prepare_event_ranges(cfg, 1))) == names(after));
  // Everything reads back, and appends go on.
  auto feed = whole_feed(*store);
  REQUIRE(feed.size() == 35);
  for (size_t i = 0; i < feed.size(); ++i)
    CHECK(feed[i].global_position == static_cast<int64_t>(i) + 1);
  take(store->append(streams[0], expected_version::exact(7), {make(35)}));
  // Detached up to position 25: the two ranges wholly below leave the log
  // (their tables stay for archiving), later events are untouched.
  auto detached = take(postgres_detach_event_ranges(cfg, 25));
  CHECK(detached == std::vector<std::string>{"events_r0", "events_r1"});
  CHECK(
    fx.admin.value("SELECT count(*) FROM " + fx.schemas.back() + ".events_r0")
    == "10");
  auto rest = whole_feed(*store);
  REQUIRE(rest.size() == 16);
  CHECK(rest.front().global_position == 21);
  CHECK_FALSE(take(store->find_event(ids[0])).has_value());
  CHECK(take(store->find_event(ids[20])).has_value());
  CHECK(names(take(postgres_event_ranges(cfg)))
        == std::vector<std::string>{"events_r2", "events_r3", "events_r4"});
  // A detached event's id stays taken: sending it again writes nothing.
  auto old = make(0);
  old.event_id = ids[0];
  auto again = store->append(streams[0], expected_version::any(), {old});
  REQUIRE_FALSE(again);
  INFO(describe(again.error()));
  CHECK(has_code(again.error(), store_errc::duplicate_event_id));
  CHECK(take(store->head_position()) == 36);
  // Streams keep their versions: the next append follows the head.
  auto next
    = take(store->append(streams[1], expected_version::exact(7), {make(36)}));
  CHECK(next.last_version == 8);
}

TEST_CASE("range partitions come back after every one was detached",
          "[postgres][ranges]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.events_range_size = 10;
  auto store = take(make_postgres_event_store(cfg));
  stream_id ledger{"Ledger", uuid::random()};
  for (int i = 0; i < 10; ++i)
    take(store->append(ledger, expected_version::any(), {make(i)}));
  CHECK(take(postgres_detach_event_ranges(cfg, 10))
        == std::vector<std::string>{"events_r0"});
  CHECK(take(postgres_event_ranges(cfg)).ranges.empty());
  // The detached range's table stays; preparing creates the next ones.
  auto fresh = take(postgres_prepare_event_ranges(cfg, 1));
  CHECK(names(fresh) == std::vector<std::string>{"events_r1"});
  stream_id other{"Ledger", uuid::random()};
  take(store->append(other, expected_version::no_stream(), {make(10)}));
  CHECK(
    fx.admin.value("SELECT count(*) FROM " + fx.schemas.back() + ".events_r1")
    == "1");
  CHECK(take(postgres_event_ranges(cfg)).default_rows == 0);
}

TEST_CASE("range maintenance refuses what it cannot do", "[postgres][ranges]") {
  postgres_fixture fx;
  auto plain = fx.fresh_config();
  take(make_postgres_event_store(plain));
  auto not_ranged = postgres_event_ranges(plain);
  REQUIRE_FALSE(not_ranged);
  CHECK(has_code(not_ranged.error(), store_errc::invalid_argument));
  CHECK(has_code(postgres_prepare_event_ranges(plain, 1).error(),
                 store_errc::invalid_argument));
  auto both = fx.fresh_config();
  both.events_partitions = 4;
  both.events_range_size = 100;
  auto refused = make_postgres_event_store(both);
  REQUIRE_FALSE(refused);
  CHECK(has_code(refused.error(), store_errc::invalid_argument));
  auto cfg = fx.fresh_config();
  cfg.events_range_size = 10;
  auto store = take(make_postgres_event_store(cfg));
  take(store->append({"Ledger", uuid::random()}, expected_version::any(),
                     {make(1)}));
  CHECK(has_code(postgres_prepare_event_ranges(cfg, -1).error(),
                 store_errc::invalid_argument));
  CHECK(has_code(postgres_detach_event_ranges(cfg, 2).error(),
                 store_errc::invalid_argument));
  // Nothing detached when no whole range lies below the bound.
  CHECK(take(postgres_detach_event_ranges(cfg, 1)).empty());
  CHECK(whole_feed(*store).size() == 1);
}
