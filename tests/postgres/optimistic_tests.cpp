// The optimistic append path of the PostgreSQL store: groups decided on
// stream heads known without a lock, and decided again under the lock when
// those heads are stale, a request would be refused, or events are replays.
#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"
#include "es/store/outbox.hpp"

#include "pg_fixture.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <map>
#include <mutex>
#include <set>
#include <thread>

using namespace es;
using namespace es::test;

namespace {

event_store_ptr open_store(const postgres_config& cfg) {
  auto store = make_postgres_event_store(cfg);
  if (!store)
    FAIL("cannot open the PostgreSQL store: " << describe(store.error())
                                              << " (start the server with "
                                                 "`scripts/pg start`)");
  return *store;
}

/// Reads the whole feed.
std::vector<recorded_event> read_everything(event_store& store) {
  std::vector<recorded_event> all;
  read_all_options opts;
  for (;;) {
    auto page = store.read_all(opts);
    REQUIRE(page);
    if (page->events.empty())
      return all;
    for (auto& ev : page->events)
      all.push_back(std::move(ev));
    opts.after_position = page->next_position;
  }
}

/// Positions dense from 1 (in the overlapping feed: rising) and versions
/// contiguous from 1 per stream.
void check_log_shape(const std::vector<recorded_event>& all) {
  std::map<stream_id, int64_t> versions;
  std::set<uuid> ids;
  bool dense = pg_test_feed() == postgres_feed::serialized;
  for (size_t i = 0; i < all.size(); ++i) {
    if (dense)
      CHECK(all[i].global_position == static_cast<int64_t>(i + 1));
    else
      CHECK((i == 0 || all[i].global_position > all[i - 1].global_position));
    CHECK(ids.insert(all[i].event_id).second);
    auto& v = versions[stream_id{all[i].aggregate_type, all[i].aggregate_id}];
    CHECK(all[i].aggregate_version == v + 1);
    v = all[i].aggregate_version;
  }
}

} // namespace

TEST_CASE("a store alone decides its appends without deciding again",
          "[postgres][optimistic]") {
  postgres_fixture fx;
  auto store = open_store(fx.fresh_config());
  auto s = new_stream();
  REQUIRE(store->append(s, expected_version::no_stream(), make_batch(s, 2)));
  REQUIRE(store->append(s, expected_version::exact(2), make_batch(s, 1)));
  REQUIRE(store->append(s, expected_version::any(), make_batch(s, 3)));
  REQUIRE(
    store->append(s, expected_version::stream_exists(), make_batch(s, 1)));
  auto res = store->append(s, expected_version::exact(7), make_batch(s, 2));
  REQUIRE(res);
  CHECK(res->first_version == 8);
  CHECK(res->first_position == 8);
  CHECK(res->last_position == 9);
  CHECK(store->metrics().decided_again == 0);
  CHECK(store->metrics().transactions == 5);
  check_log_shape(read_everything(*store));
}

TEST_CASE("stale heads from another writer are decided again under the "
          "lock",
          "[postgres][optimistic]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  auto a = open_store(cfg);
  auto b = open_store(cfg);
  auto s = new_stream();
  REQUIRE(a->append(s, expected_version::no_stream(), make_batch(s, 2)));
  // b has never seen the stream: it reads the head, then knows version 3.
  auto b1 = b->append(s, expected_version::any(), make_batch(s, 1));
  REQUIRE(b1);
  CHECK(b1->first_version == 3);
  CHECK(b->metrics().decided_again == 0);
  // a still believes version 2: its insert collides and it decides again.
  auto a2 = a->append(s, expected_version::any(), make_batch(s, 1));
  REQUIRE(a2);
  CHECK(a2->first_version == 4);
  CHECK(a2->first_position == 4);
  CHECK(a->metrics().decided_again == 1);
  // b believes version 3; the caller rightly expects 4. A stale head never
  // turns into a false conflict.
  auto b_batch = make_batch(s, 2);
  auto b2 = b->append(s, expected_version::exact(4), b_batch);
  REQUIRE(b2);
  CHECK(b2->first_version == 5);
  CHECK(b->metrics().decided_again == 1);
  // Real conflicts still report the actual version.
  auto stale = b->append(s, expected_version::exact(3), make_batch(s, 1));
  REQUIRE_FALSE(stale);
  CHECK(has_code(stale.error(), store_errc::wrong_expected_version));
  auto conflict = get_version_conflict(stale.error());
  REQUIRE(conflict);
  CHECK(conflict->actual == 6);
  auto exists = a->append(s, expected_version::no_stream(), make_batch(s, 1));
  REQUIRE_FALSE(exists);
  CHECK(has_code(exists.error(), store_errc::wrong_expected_version));
  CHECK(get_version_conflict(exists.error())->actual == 6);
  // a replays b's events as new ones at versions 7 and 8: the event ids
  // collide, and deciding again finds the original result.
  auto before = a->metrics().decided_again;
  auto replay = a->append(s, expected_version::any(), b_batch);
  REQUIRE(replay);
  CHECK(replay->deduplicated);
  CHECK(replay->first_version == b2->first_version);
  CHECK(replay->first_position == b2->first_position);
  CHECK(replay->last_position == b2->last_position);
  CHECK(a->metrics().decided_again == before + 1);
  // A stream another writer created is refused to a no_stream append that
  // assumed it new.
  auto t = new_stream();
  REQUIRE(b->append(t, expected_version::no_stream(), make_batch(t, 1)));
  auto again = a->append(t, expected_version::no_stream(), make_batch(t, 1));
  REQUIRE_FALSE(again);
  CHECK(has_code(again.error(), store_errc::wrong_expected_version));
  auto all = read_everything(*a);
  CHECK(all.size() == 7);
  check_log_shape(all);
}

TEST_CASE("outbox rows written on the optimistic path carry the events' "
          "positions",
          "[postgres][optimistic][outbox]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.outbox = true;
  auto a = open_store(cfg);
  auto b = open_store(cfg);
  auto s = new_stream();
  auto u = new_stream();
  REQUIRE(a->append(s, expected_version::no_stream(), make_batch(s, 3)));
  REQUIRE(b->append(u, expected_version::no_stream(), make_batch(u, 2)));
  REQUIRE(b->append(s, expected_version::any(), make_batch(s, 1)));
  REQUIRE(a->append(s, expected_version::any(), make_batch(s, 2)));
  auto ob = make_postgres_outbox(cfg);
  REQUIRE(ob);
  auto claim = (*ob)->claim(100);
  REQUIRE(claim);
  std::map<uuid, int64_t> outbox_positions;
  for (const auto& e : (*claim)->entries())
    outbox_positions[e.event_id] = e.global_position;
  auto all = read_everything(*a);
  REQUIRE(all.size() == 8);
  CHECK(outbox_positions.size() == all.size());
  for (const auto& ev : all)
    CHECK(outbox_positions[ev.event_id] == ev.global_position);
}

TEST_CASE("many writers on several connections contend for the same "
          "streams and every acknowledged result matches the log",
          "[postgres][optimistic][concurrency]") {
  postgres_fixture fx;
  auto cfg = fx.fresh_config();
  cfg.writer_connections = 4;
  auto first = open_store(cfg);
  auto second = open_store(cfg);
  std::vector<stream_id> streams;
  for (int i = 0; i < 4; ++i)
    streams.push_back(new_stream());
  constexpr int writers = 8;
  constexpr int appends_per_writer = 40;
  std::mutex mtx;
  std::map<uuid, append_result> acked; // by first event id
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      auto& store = w % 2 == 0 ? *first : *second;
      for (int k = 0; k < appends_per_writer; ++k) {
        const auto& s = streams[(w + k) % streams.size()];
        auto batch = make_batch(s, 1 + (k % 3));
        auto id = batch.front().event_id;
        auto res = store.append(s, expected_version::any(), std::move(batch));
        std::lock_guard guard{mtx};
        if (res)
          acked.emplace(id, *res);
        else
          failures.push_back(describe(res.error()));
      }
    });
  for (auto& t : threads)
    t.join();
  INFO((failures.empty() ? std::string{} : failures.front()));
  CHECK(failures.empty());
  auto all = read_everything(*first);
  check_log_shape(all);
  std::map<uuid, const recorded_event*> by_id;
  for (const auto& ev : all)
    by_id[ev.event_id] = &ev;
  size_t events = 0;
  for (const auto& [id, res] : acked) {
    auto i = by_id.find(id);
    REQUIRE(i != by_id.end());
    CHECK(i->second->global_position == res.first_position);
    CHECK(i->second->aggregate_version == res.first_version);
    events += static_cast<size_t>(res.last_position - res.first_position + 1);
  }
  CHECK(acked.size() == writers * appends_per_writer);
  CHECK(events == all.size());
}
