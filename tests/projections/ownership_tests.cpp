// Two instances of one transactional read model on one SQLite file, on real
// threads: without leases the compare-and-set on the checkpoint keeps the
// read model exact; with leases one applies while the other stands by.
#include "es/projections/projection_actor.hpp"
#include "es/projections/type_ids.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/memory_event_store.hpp"
#include "es/store/sql.hpp"

#include <caf/actor_system.hpp>
#include <caf/after.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/system_messages.hpp>

#include "read_model_helpers.hpp"
#include "temp_dir.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

using namespace es;
using namespace es::test;
using namespace std::chrono_literals;

namespace {

/// Holds the first `parties` calls of `read_all` until all of them arrived
/// (or 10 s passed). Each projection actor loads its checkpoint before its
/// first read, so the instances all start from the same checkpoint and race
/// for the same first batch.
class racing_store : public failing_store {
public:
  racing_store(event_store_ptr inner, int parties)
    : failing_store(std::move(inner)), parties_(parties) {
    // nop
  }

  caf::expected<all_slice> read_all(const read_all_options& o) override {
    {
      std::unique_lock guard{mtx_};
      if (arrived_ < parties_) {
        ++arrived_;
        cv_.notify_all();
        cv_.wait_for(guard, 10s, [this] {
          return arrived_ >= parties_;
        });
      }
    }
    return failing_store::read_all(o);
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  int parties_;
  int arrived_ = 0;
};

/// Counts its handler's calls, those of transactions rolled back included.
class observed_read_model : public counting_read_model {
public:
  using counting_read_model::counting_read_model;

  caf::error handle(sql_transaction& tx, const recorded_event& ev) override {
    ++calls;
    return counting_read_model::handle(tx, ev);
  }

  using counting_read_model::handle;

  std::atomic<int> calls{0};
};

/// One instance of the projection: its own connection to the shared file.
struct instance {
  std::shared_ptr<observed_read_model> model;
  projection_actor_handle actor;
};

/// Two projection actors of one read model on one SQLite file, a third
/// connection to read the result, and a store of 200 events.
struct two_instances {
  temp_dir dir;
  event_store_ptr events = make_memory_event_store();
  /// What the projections read: the first reads of both wait for each
  /// other.
  event_store_ptr store;
  threaded_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  std::shared_ptr<counting_read_model> reader;
  instance a;
  instance b;

  /// The first `racing_reads` reads of the feed wait for each other.
  explicit two_instances(int racing_reads)
    : store(std::make_shared<racing_store>(events, racing_reads)) {
    fill(*events, 40, 5);
    reader = std::make_shared<counting_read_model>(open());
  }

  ~two_instances() {
    for (auto* x : {&a, &b})
      if (x->actor)
        self->send_exit(x->actor, caf::exit_reason::user_shutdown);
  }

  read_model_db_ptr open() {
    auto db = make_sqlite_read_model_db(dir.file("read.db"));
    REQUIRE(db);
    return std::move(*db);
  }

  instance make() {
    instance x;
    x.model = std::make_shared<observed_read_model>(open());
    return x;
  }

  subscription_config config(ownership owner) {
    auto c = base_config(store);
    c.owner = owner;
    c.lease_retry_interval = 10ms;
    c.batch_size = 5;
    c.page_size = 20;
    // A writer waiting for SQLite's lock is not a failure here.
    c.errors.retry.max_retries = 50;
    return c;
  }

  void spawn(instance& x, const subscription_config& c) {
    x.actor = spawn_projection_actor(sys, x.model, c);
    REQUIRE(x.actor);
  }

  projection_status status(const instance& x) {
    projection_status result;
    self->request(x.actor, 10s, status_atom_v)
      .receive(
        [&](projection_status& s) {
          result = std::move(s);
        },
        [&](caf::error& err) {
          FAIL(describe(err));
        });
    return result;
  }

  /// The checkpoint as stored in the file.
  int64_t stored_position() {
    auto cp = reader->db().checkpoints()->load("counts");
    REQUIRE(cp);
    return *cp ? (*cp)->position : 0;
  }

  /// Polls `done` until it holds or 30 s passed: the actors report
  /// progress, nothing signals it.
  void wait_until(const std::function<bool()>& done, const char* what) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!done()) {
      INFO("waiting until " << what);
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::sleep_for(5ms);
    }
  }
};

bool at(const projection_status& s, projection_state state, int64_t pos) {
  return s.state == state && s.position == pos;
}

} // namespace

TEST_CASE("two instances without leases racing on one read model count "
          "every event once",
          "[projections][ownership][transactional]") {
  two_instances t{2};
  t.a = t.make();
  t.b = t.make();
  auto c = t.config(ownership::none);
  t.spawn(t.a, c);
  t.spawn(t.b, c);
  t.wait_until(
    [&] {
      return at(t.status(t.a), projection_state::live, 200)
             && at(t.status(t.b), projection_state::live, 200);
    },
    "both instances are live at 200");
  // Both first batches ran on positions 1-5 from checkpoint 0: one
  // committed, the other's checkpoint write found 5 and rolled its batch
  // back, so the handlers ran more often than there are events ...
  CHECK(t.a.model->calls + t.b.model->calls > 200);
  // ... and yet every event counts once.
  CHECK(t.stored_position() == 200);
  CHECK(t.reader->total() == 200);
  auto letters = t.reader->db().dead_letters()->list({});
  REQUIRE(letters);
  CHECK(letters->empty());
  // New events: whichever instance applies them, they count once.
  fill(*t.events, 4, 5);
  t.wait_until(
    [&] {
      return at(t.status(t.a), projection_state::live, 220)
             && at(t.status(t.b), projection_state::live, 220);
    },
    "both instances are live at 220");
  CHECK(t.stored_position() == 220);
  CHECK(t.reader->total() == 220);
}

TEST_CASE("with leases one instance applies while the other stands by, "
          "then takes over",
          "[projections][ownership][transactional]") {
  two_instances t{0};
  t.a = t.make();
  t.b = t.make();
  auto c = t.config(ownership::standby);
  t.spawn(t.a, c);
  t.spawn(t.b, c);
  projection_status sa;
  projection_status sb;
  t.wait_until(
    [&] {
      sa = t.status(t.a);
      sb = t.status(t.b);
      return (at(sa, projection_state::live, 200)
              && sb.state == projection_state::standby)
             || (at(sb, projection_state::live, 200)
                 && sa.state == projection_state::standby);
    },
    "one instance is live at 200, the other a standby");
  bool a_holds = sa.state == projection_state::live;
  auto& holder = a_holds ? t.a : t.b;
  auto& standby = a_holds ? t.b : t.a;
  const auto& standby_status = a_holds ? sb : sa;
  INFO(standby_status.detail);
  CHECK(standby_status.detail.find("standby") != std::string::npos);
  // A standby reports how far the holder got.
  CHECK(standby_status.position == 200);
  // Each event ran through one handler, once; the standby's never ran.
  CHECK(holder.model->calls == 200);
  CHECK(standby.model->calls == 0);
  CHECK(t.reader->total() == 200);
  // The holder ends (its lease with it); the standby takes over from the
  // checkpoint and applies only what is new. The events come after the
  // holder is gone: sent earlier, the holder could still apply them.
  t.self->monitor(holder.actor);
  t.self->send_exit(holder.actor, caf::exit_reason::user_shutdown);
  bool ended = false;
  t.self->receive(
    [&](const caf::down_msg&) {
      ended = true;
    },
    caf::after(std::chrono::seconds(30)) >>
      [] {
        // nop
      });
  REQUIRE(ended);
  holder.actor = projection_actor_handle{};
  fill(*t.events, 4, 5);
  t.wait_until(
    [&] {
      return at(t.status(standby), projection_state::live, 220);
    },
    "the standby took over and is live at 220");
  CHECK(standby.model->calls == 20);
  CHECK(holder.model->calls == 200);
  CHECK(t.stored_position() == 220);
  CHECK(t.reader->total() == 220);
}
