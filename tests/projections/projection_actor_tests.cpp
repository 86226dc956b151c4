// Projection actors on CAF's deterministic scheduler.
#include "es/sqlite/sqlite.hpp"
#include "es/store/state_stores.hpp"

#include "projection_fixture.hpp"
#include "temp_dir.hpp"
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <stdexcept>

using namespace es;
using namespace es::test;

TEST_CASE_METHOD(projection_fixture,
                 "a projection catches up, then goes live from the bus",
                 "[projections]") {
  for (int i = 0; i < 10; ++i)
    append_direct(5);
  auto proj = std::make_shared<recording_projection>("recorder");
  auto a = spawn(proj, config());
  CHECK(proj->seen() == range(1, 50));
  auto s = status(a);
  CHECK(s.state == projection_state::live);
  CHECK(s.position == 50);
  CHECK(s.lag_events == 0);
  append_published(3);
  append_published(4);
  sched.run();
  CHECK(proj->seen() == range(1, 57));
  auto cp = proj->name();
  s = status(a);
  CHECK(s.position == 57);
  CHECK(s.events_processed == 57);
}

TEST_CASE_METHOD(projection_fixture,
                 "events written elsewhere during live mode fill the gap",
                 "[projections]") {
  append_direct(3);
  auto proj = std::make_shared<recording_projection>("recorder");
  auto a = spawn(proj, config());
  // Written without the bus: the next live event reveals a gap.
  append_direct(4);
  append_published(2);
  sched.run();
  CHECK(proj->seen() == range(1, 9));
}

TEST_CASE_METHOD(projection_fixture,
                 "events appended during catch-up are delivered once, in "
                 "order (random interleavings)",
                 "[projections][property]") {
  auto seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (int i = 0; i < 20; ++i)
    append_direct(3);
  auto proj = std::make_shared<recording_projection>("recorder");
  auto c = config();
  c.page_size = 5;
  auto a = spawn_projection_actor(sys, proj, c);
  spawned.push_back(a);
  // Interleave scheduler steps with appends, published and not.
  int64_t appended = 60;
  for (int step = 0; step < 400; ++step) {
    switch (rng() % 4) {
      case 0: {
        int n = static_cast<int>(rng() % 3) + 1;
        append_published(n);
        appended += n;
        break;
      }
      case 1:
        if (rng() % 5 == 0) {
          append_direct(1);
          appended += 1;
        }
        break;
      // Every actor may be idle at this step: run_once would throw.
      default: sched.try_run_once();
    }
  }
  sched.run();
  // A last published append flushes any gap left by direct appends.
  append_published(1);
  ++appended;
  sched.run();
  CHECK(proj->seen() == range(1, appended));
  CHECK(status(a).state == projection_state::live);
}

TEST_CASE_METHOD(projection_fixture,
                 "without a bus the actor follows the store", "[projections]") {
  append_direct(5);
  auto proj = std::make_shared<recording_projection>("follower");
  auto c = config(false);
  c.poll_interval = std::chrono::milliseconds(50);
  auto a = spawn(proj, c);
  CHECK(proj->seen() == range(1, 5));
  append_direct(3);
  sched.run();
  CHECK(proj->seen().size() == 5);
  advance(std::chrono::milliseconds(60));
  CHECK(proj->seen() == range(1, 8));
}

TEST_CASE_METHOD(projection_fixture,
                 "filters by type, subscribed types and partitions",
                 "[projections]") {
  for (int i = 0; i < 6; ++i) {
    append_published(1, i % 2 ? "NoteWritten" : "ItemAdded");
  }
  sched.run();
  auto items = std::make_shared<recording_projection>(
    "items", std::vector<std::string>{"ItemAdded"});
  auto notes = std::make_shared<recording_projection>("notes");
  auto nc = config();
  nc.filter.event_types = {"NoteWritten"};
  spawn(items, config());
  spawn(notes, nc);
  CHECK(items->seen() == std::vector<int64_t>{1, 3, 5});
  CHECK(notes->seen() == std::vector<int64_t>{2, 4, 6});
  append_published(1, "NoteWritten");
  append_published(1, "ItemAdded");
  sched.run();
  CHECK(items->seen() == std::vector<int64_t>{1, 3, 5, 8});
  CHECK(notes->seen() == std::vector<int64_t>{2, 4, 6, 7});
  // Three partitions share the work without overlap.
  std::vector<std::shared_ptr<recording_projection>> workers;
  for (uint32_t k = 0; k < 3; ++k) {
    auto w = std::make_shared<recording_projection>("worker");
    auto c = config();
    c.partition = {k, 3};
    spawn(w, c);
    workers.push_back(w);
  }
  std::set<int64_t> all;
  size_t total = 0;
  for (auto& w : workers) {
    for (auto p : w->seen())
      all.insert(p);
    total += w->seen().size();
  }
  CHECK(total == 8);
  CHECK(all.size() == 8);
}

TEST_CASE_METHOD(projection_fixture, "retries then succeeds, once",
                 "[projections][errors]") {
  append_direct(5);
  auto proj = std::make_shared<recording_projection>("flaky");
  proj->fail_at(3, 2);
  auto a = spawn(proj, config());
  // Stuck at 3 until the backoffs pass.
  CHECK(proj->seen() == range(1, 2));
  CHECK(status(a).position == 2);
  advance(std::chrono::milliseconds(100));
  CHECK(proj->seen() == range(1, 5));
  CHECK(proj->attempts(3) == 3);
  auto s = status(a);
  CHECK(s.errors.total == 0);
}

TEST_CASE_METHOD(projection_fixture,
                 "retry exhaustion sends the event to the dead-letter queue",
                 "[projections][errors]") {
  append_direct(5);
  auto proj = std::make_shared<recording_projection>("poisoned");
  proj->fail_at(2, -1);
  proj->throw_at(4);
  auto dlq = make_memory_dead_letter_store();
  auto checkpoints = make_memory_checkpoint_store();
  auto c = config();
  c.dead_letters = dlq;
  c.checkpoints = checkpoints;
  auto a = spawn(proj, c);
  advance(std::chrono::milliseconds(200));
  CHECK(proj->seen() == std::vector<int64_t>{1, 3, 5});
  CHECK(proj->attempts(2) == 3);
  auto letters = dlq->list({});
  REQUIRE(letters);
  REQUIRE(letters->size() == 2);
  CHECK((*letters)[0].global_position == 2);
  CHECK((*letters)[0].retry_count == 2);
  CHECK((*letters)[1].global_position == 4);
  CHECK((*letters)[1].error_message.find("boom at 4") != std::string::npos);
  auto ev = decode_recorded_event((*letters)[0].event_data);
  REQUIRE(ev);
  CHECK(ev->global_position == 2);
  // Every event is applied or dead-lettered; the checkpoint passed them.
  auto cp = checkpoints->load("poisoned");
  REQUIRE(cp);
  REQUIRE(cp->has_value());
  CHECK((*cp)->position == 5);
  auto s = status(a);
  CHECK(s.errors.total == 2);
  CHECK(s.errors.sent_to_dlq == 2);
  CHECK(s.health.level == health_level::warnings);
  // A replay of the dead letter through the actor succeeds once fixed.
  proj->fail_at(2, 0);
  auto h = self->request(a, caf::infinite, replay_atom_v, *ev);
  sched.run();
  bool replayed = false;
  h.receive(
    [&] {
      replayed = true;
    },
    [](caf::error& err) {
      FAIL(describe(err));
    });
  CHECK(replayed);
  CHECK(proj->seen() == std::vector<int64_t>{1, 3, 5, 2});
}

TEST_CASE_METHOD(projection_fixture, "the stop strategy halts at the error",
                 "[projections][errors]") {
  append_direct(5);
  auto proj = std::make_shared<recording_projection>("strict");
  proj->fail_at(3, -1);
  auto c = config();
  c.errors.strategy = error_strategy::stop;
  auto a = spawn(proj, c);
  CHECK(proj->seen() == range(1, 2));
  auto s = status(a);
  CHECK(s.state == projection_state::error);
  CHECK(s.position == 2);
  CHECK(s.health.level == health_level::errors);
  // Live events are acknowledged, not handled, so writers go on.
  append_published(2);
  sched.run();
  CHECK(proj->seen() == range(1, 2));
}

TEST_CASE_METHOD(projection_fixture,
                 "continue and dead-letter-only strategies skip at once",
                 "[projections][errors]") {
  append_direct(4);
  auto skip = std::make_shared<recording_projection>("skipper");
  skip->fail_at(2, -1);
  auto c = config();
  c.errors.strategy = error_strategy::continue_on_error;
  auto dlq = make_memory_dead_letter_store();
  auto d = config();
  d.errors.strategy = error_strategy::dlq_only;
  d.dead_letters = dlq;
  auto direct = std::make_shared<recording_projection>("direct");
  direct->fail_at(3, -1);
  auto a = spawn(skip, c);
  auto b = spawn(direct, d);
  CHECK(skip->seen() == std::vector<int64_t>{1, 3, 4});
  CHECK(skip->attempts(2) == 1);
  CHECK(status(a).errors.skipped == 1);
  CHECK(direct->seen() == std::vector<int64_t>{1, 2, 4});
  CHECK(direct->attempts(3) == 1);
  CHECK((*dlq->stats()).failed == 1);
  CHECK(status(b).errors.sent_to_dlq == 1);
}

TEST_CASE_METHOD(projection_fixture,
                 "pause builds lag, resume catches up, reset rebuilds",
                 "[projections]") {
  append_direct(3);
  auto proj = std::make_shared<recording_projection>("pausable");
  auto a = spawn(proj, config());
  auto p = self->request(a, caf::infinite, pause_atom_v);
  sched.run();
  p.receive([](bool) {}, [](caf::error&) {});
  append_published(4);
  sched.run();
  auto s = status(a);
  CHECK(s.state == projection_state::paused);
  CHECK(s.lag_events == 4);
  auto r = self->request(a, caf::infinite, resume_atom_v);
  sched.run();
  r.receive([](bool) {}, [](caf::error&) {});
  CHECK(proj->seen() == range(1, 7));
  CHECK(status(a).lag_events == 0);
  auto x = self->request(a, caf::infinite, caf::reset_atom_v);
  sched.run();
  x.receive(
    [](bool ok) {
      CHECK(ok);
    },
    [](caf::error& err) {
      FAIL(describe(err));
    });
  CHECK(proj->resets() == 1);
  CHECK(proj->seen() == range(1, 7));
  CHECK(status(a).events_processed == 7);
}

TEST_CASE_METHOD(projection_fixture,
                 "a restarted projection resumes from its checkpoint",
                 "[projections]") {
  append_direct(6);
  auto checkpoints = make_memory_checkpoint_store();
  auto c = config();
  c.checkpoints = checkpoints;
  c.checkpointing = checkpoint_mode::every_event;
  auto first = std::make_shared<recording_projection>("resumable");
  auto a = spawn(first, c);
  CHECK(first->seen() == range(1, 6));
  self->send_exit(a, caf::exit_reason::kill);
  sched.run();
  append_direct(2);
  auto second = std::make_shared<recording_projection>("resumable");
  spawn(second, c);
  CHECK(second->seen() == range(7, 8));
}

TEST_CASE_METHOD(projection_fixture,
                 "error callbacks fire by severity and by category",
                 "[projections][errors]") {
  append_direct(4);
  auto proj = std::make_shared<recording_projection>("watched");
  proj->fail_at(2, -1);
  proj->throw_at(3);
  auto c = config();
  c.errors.strategy = error_strategy::continue_on_error;
  std::vector<int64_t> severe;
  std::vector<int64_t> transient;
  c.on_severity.emplace_back(error_severity::low, [&](const error_info& e) {
    severe.push_back(e.global_position);
  });
  c.on_severity.emplace_back(error_severity::critical,
                             [&](const error_info& e) {
                               severe.push_back(-e.global_position);
                             });
  c.on_category.emplace_back(error_category::transient,
                             [&](const error_info& e) {
                               transient.push_back(e.global_position);
                             });
  auto a = spawn(proj, c);
  CHECK(proj->seen() == std::vector<int64_t>{1, 4});
  // Both failures are at least of low severity; the exception (a bug in
  // the handler) is also critical. The busy store is transient, the
  // exception is not.
  CHECK(severe == std::vector<int64_t>{2, 3, -3});
  CHECK(transient == std::vector<int64_t>{2});
  CHECK(status(a).errors.total == 2);
}

// -- catching up from SQLite, in place ----------------------------------------

namespace {

struct sqlite_dir {
  temp_dir dir;

  event_store_ptr open_store() {
    sqlite_config cfg;
    cfg.path = dir.file("events.db");
    auto store = make_sqlite_event_store(cfg);
    if (!store)
      throw std::runtime_error(describe(store.error()));
    return *store;
  }
};

/// The deterministic fixture on a SQLite store: catch-up pages reach the
/// projection as views into SQLite's rows.
struct sqlite_projection_fixture : sqlite_dir, projection_fixture {
  sqlite_projection_fixture() : projection_fixture(open_store()) {
    // nop
  }

  /// The fixture's configuration, on the deterministic scheduler although
  /// the store blocks.
  subscription_config sqlite_config() {
    auto c = config();
    c.detached = false;
    return c;
  }
};

/// Keeps an owning copy of every event it is handed, and how many of them
/// came as views of owning events.
class copying_projection : public projection {
public:
  std::string name() const override {
    return "copier";
  }

  caf::error handle(const recorded_event& ev) override {
    kept_.push_back(ev);
    ++owned_;
    return caf::none;
  }

  caf::error handle_view(const event_view& ev) override {
    if (ev.owned() != nullptr)
      return handle(*ev.owned());
    if (ev.global_position() == fail_at_ && failures_-- > 0)
      return make_store_error(store_errc::storage_busy, "not now");
    kept_.push_back(ev.to_event());
    return caf::none;
  }

  void fail_at(int64_t pos, int times) {
    fail_at_ = pos;
    failures_ = times;
  }

  const recorded_events& kept() const {
    return kept_;
  }

  int owned() const {
    return owned_;
  }

private:
  recorded_events kept_;
  int owned_ = 0;
  int64_t fail_at_ = 0;
  int failures_ = 0;
};

recorded_events whole_feed(event_store& store) {
  recorded_events result;
  auto end = for_each_in_feed(store, {}, [&](recorded_event& ev) {
    result.push_back(ev);
    return caf::error{};
  });
  REQUIRE(end);
  return result;
}

/// Keeps every checkpoint saved through it, then saves it in memory.
class saved_checkpoints : public checkpoint_store {
public:
  bool blocking() const override {
    return false;
  }

  caf::expected<checkpoint> save(const checkpoint& cp) override {
    saved_.push_back(cp);
    return inner_->save(cp);
  }

  caf::expected<checkpoint> save_if(const checkpoint& cp,
                                    int64_t expected_position) override {
    saved_.push_back(cp);
    return inner_->save_if(cp, expected_position);
  }

  caf::expected<projection_lease_ptr>
  try_lease(const std::string& name) override {
    return inner_->try_lease(name);
  }

  caf::expected<std::optional<checkpoint>>
  load(const std::string& projection) override {
    return inner_->load(projection);
  }

  caf::expected<bool> reset(const std::string& projection) override {
    return inner_->reset(projection);
  }

  caf::expected<std::vector<checkpoint>> list() override {
    return inner_->list();
  }

  const std::vector<checkpoint>& saved() const {
    return saved_;
  }

private:
  checkpoint_store_ptr inner_ = make_memory_checkpoint_store();
  std::vector<checkpoint> saved_;
};

} // namespace

TEST_CASE_METHOD(sqlite_projection_fixture,
                 "catching up from SQLite hands out rows in place, then goes "
                 "live from the bus",
                 "[projections][in-place]") {
  for (int i = 0; i < 6; ++i)
    append_direct(4);
  auto proj = std::make_shared<copying_projection>();
  // A retryable failure in the middle of a page: the policy retries it
  // from an owning copy, after the backoff.
  proj->fail_at(10, 1);
  auto a = spawn(proj, sqlite_config());
  CHECK(proj->kept().size() == 9);
  advance(std::chrono::milliseconds(50));
  auto feed = whole_feed(*store);
  REQUIRE(feed.size() == 24);
  CHECK(proj->kept() == feed);
  // Read in place, except the retried event, which came from its copy.
  CHECK(proj->owned() == 1);
  append_published(3);
  sched.run();
  feed = whole_feed(*store);
  CHECK(proj->kept() == feed);
  CHECK(proj->owned() == 4);
  auto s = status(a);
  CHECK(s.state == projection_state::live);
  CHECK(s.position == 27);
  CHECK(s.events_processed == 27);
}

TEST_CASE_METHOD(sqlite_projection_fixture,
                 "a projection that handles only copies works the same on "
                 "SQLite, and dead letters keep the whole event",
                 "[projections][in-place][errors]") {
  for (int i = 0; i < 3; ++i)
    append_direct(5);
  auto proj = std::make_shared<recording_projection>("poisoned");
  proj->fail_at(2, -1);
  proj->throw_at(9);
  auto dlq = make_memory_dead_letter_store();
  auto checkpoints = make_memory_checkpoint_store();
  auto c = sqlite_config();
  c.dead_letters = dlq;
  c.checkpoints = checkpoints;
  auto a = spawn(proj, c);
  advance(std::chrono::milliseconds(200));
  auto expected = range(1, 15);
  expected.erase(std::remove(expected.begin(), expected.end(), 9),
                 expected.end());
  expected.erase(expected.begin() + 1);
  CHECK(proj->seen() == expected);
  CHECK(proj->attempts(2) == 3);
  auto letters = dlq->list({});
  REQUIRE(letters);
  REQUIRE(letters->size() == 2);
  auto feed = whole_feed(*store);
  for (size_t i = 0; i < 2; ++i) {
    auto ev = decode_recorded_event((*letters)[i].event_data);
    REQUIRE(ev);
    auto pos = i == 0 ? 2 : 9;
    CHECK(*ev == feed[static_cast<size_t>(pos - 1)]);
  }
  auto cp = checkpoints->load("poisoned");
  REQUIRE(cp);
  REQUIRE(cp->has_value());
  CHECK((*cp)->position == 15);
  CHECK(status(a).errors.sent_to_dlq == 2);
}

TEST_CASE_METHOD(sqlite_projection_fixture,
                 "every checkpoint of pages read in place names the last "
                 "event handled",
                 "[projections][in-place]") {
  // The second partition of two skips the streams of the first.
  partition_spec part{1, 2};
  auto write = [&](bool owned, int n) {
    auto s = new_stream();
    while (part.owns(s.aggregate_id) != owned)
      s = new_stream();
    event_batch batch;
    for (int i = 0; i < n; ++i)
      batch.push_back(
        make_test_event(s, i, i % 3 == 0 ? "NoteWritten" : "ItemAdded"));
    REQUIRE(store->append(s, expected_version::no_stream(), batch));
  };
  // Pages of 40. The first reads the id and time of every event it
  // handles; the later ones, expected to be as long, only in their last
  // rows. Page 2 handles its first half only (its last handled event is
  // looked up after the page), page 3 handles its last event among its
  // last rows, and page 4 ends the feed early (looked up again).
  write(true, 40);
  write(true, 20);
  write(false, 20);
  write(true, 29);
  write(false, 11);
  write(true, 5);
  auto checkpoints = std::make_shared<saved_checkpoints>();
  auto c = sqlite_config();
  c.page_size = 40;
  c.partition = part;
  c.checkpoints = checkpoints;
  auto proj = std::make_shared<recording_projection>("in-place-checkpoints");
  auto a = spawn(proj, c);
  auto feed = whole_feed(*store);
  REQUIRE(feed.size() == 125);
  CHECK(proj->seen().size() == 94);
  CHECK(status(a).position == 125);
  std::vector<int64_t> positions;
  for (const auto& cp : checkpoints->saved()) {
    positions.push_back(cp.position);
    // The last event at or below the checkpoint that the partition owns.
    auto i = static_cast<size_t>(cp.position);
    while (i > 0 && !part.owns(feed[i - 1].aggregate_id))
      --i;
    REQUIRE(i > 0);
    INFO("checkpoint at " << cp.position);
    CHECK(cp.event_id == feed[i - 1].event_id);
    CHECK(cp.event_type == feed[i - 1].event_type);
  }
  CHECK(positions == std::vector<int64_t>{40, 80, 120, 125});
}
