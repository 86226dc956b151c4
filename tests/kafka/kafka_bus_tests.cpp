// What the Kafka bus does beyond the bus contract, against a librdkafka
// mock cluster: clear errors for bad settings and an unreachable cluster,
// dead letters for foreign messages (listed, discarded), brokers going down
// and up in the middle of a relayed workload, a group member killed
// mid-batch (dead letters of failing handlers and the supervisor are in the
// broker bus contract suite).
#include "es/bus/envelope.hpp"
#include "es/bus/errors.hpp"
#include "es/bus/outbox_relay.hpp"
#include "es/kafka/kafka.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/testing/bus_contract_support.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include "child_process.hpp"
#include "mock_cluster.hpp"
#include "temp_dir.hpp"
#include "test_events.hpp"
#include <catch2/catch.hpp>
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>

using namespace es;
using namespace es::test;
using namespace es::testing::bus_contract;
using Catch::Contains;

namespace {

struct kafka_bus_test {
  // The cluster outlives the actor system (consumers leave their groups
  // as they end).
  mock_cluster cluster;
  caf::actor_system_config sys_cfg;
  caf::actor_system sys;
  kafka_bus_config cfg;

  kafka_bus_test() : sys(init(sys_cfg)) {
    cluster.topic("t.events", 4);
    cfg.bootstrap_servers = cluster.bootstrap();
    cfg.topic_prefix = "t";
    cfg.block = std::chrono::milliseconds(100);
    cfg.session_timeout = std::chrono::milliseconds(6000);
  }

  static caf::actor_system_config& init(caf::actor_system_config& c) {
    add_kafka_module(c);
    c.set("scheduler.max-threads", 2);
    return c;
  }

  event_bus_ptr open(const kafka_bus_config& c) {
    auto bus = make_kafka_bus(sys, c);
    if (!bus)
      FAIL("cannot open a Kafka bus: " << describe(bus.error()));
    return *bus;
  }

  event_bus_ptr open() {
    return open(cfg);
  }
};

} // namespace

TEST_CASE("a bad setting or an unreachable cluster is refused at once",
          "[kafka][bus][bad-input]") {
  caf::actor_system_config sys_cfg;
  add_kafka_module(sys_cfg);
  sys_cfg.set("scheduler.max-threads", 1);
  caf::actor_system sys{sys_cfg};
  auto refused = [&](kafka_bus_config c, kafka_errc code, const char* text) {
    auto bus = make_kafka_bus(sys, c);
    REQUIRE_FALSE(bus);
    CHECK(has_code(bus.error(), code));
    CHECK_THAT(describe(bus.error()), Contains(text));
  };
  kafka_bus_config c;
  c.bootstrap_servers = "127.0.0.1:1";
  c.connect_timeout = std::chrono::milliseconds(1500);
  refused(c, kafka_errc::connection_failed, "no metadata");
  kafka_bus_config bad = c;
  bad.compression_type = "bogus";
  refused(bad, kafka_errc::invalid_config, "compression");
  bad = c;
  bad.properties = {{"no.such.setting", "1"}};
  refused(bad, kafka_errc::invalid_config, "no.such.setting");
  bad = c;
  bad.topic_prefix = "";
  refused(bad, kafka_errc::invalid_config, "topic prefix");
}

TEST_CASE_METHOD(kafka_bus_test,
                 "messages that are not envelopes become dead letters and "
                 "the rest go on",
                 "[kafka][bus][bad-input]") {
  auto bus = open();
  collector handled;
  bus->subscribe_to_all_events(handled.handler());
  require_started(*bus);
  auto events = make_events(1, 5);
  publish_all(*bus, events);
  REQUIRE(handled.wait_for(5));
  REQUIRE_FALSE(bus->drain(arrival_timeout));
  auto dlq = bus->dead_letters();
  REQUIRE(dlq);
  {
    // A plain producer, as another program would use.
    char errstr[256];
    auto* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", cfg.bootstrap_servers.c_str(),
                      errstr, sizeof(errstr));
    auto* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    REQUIRE(rk != nullptr);
    std::string junk = "{not json";
    REQUIRE(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("t.events"),
                              RD_KAFKA_V_VALUE(junk.data(), junk.size()),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END)
            == RD_KAFKA_RESP_ERR_NO_ERROR);
    REQUIRE(rd_kafka_flush(rk, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
  }
  REQUIRE(eventually([&] {
    return *dlq->count() == 1;
  }));
  auto letters = dlq->list(10);
  REQUIRE(letters);
  REQUIRE(letters->size() == 1);
  CHECK(letters->front().raw == "{not json");
  CHECK_FALSE(letters->front().event.has_value());
  CHECK_THAT(letters->front().error, Contains("not an event envelope"));
  auto refused = dlq->replay(letters->front().id);
  REQUIRE_FALSE(refused);
  CHECK(has_code(refused.error(), store_errc::invalid_argument));
  REQUIRE_FALSE(bus->drain(arrival_timeout));
  auto info = read_kafka_bus_info(cfg);
  REQUIRE(info);
  CHECK(info->partitions == 4);
  CHECK(info->messages == 6);
  CHECK(info->dead_letters == 1);
  REQUIRE(info->lag.size() == 1);
  CHECK(info->lag[0].second == 0);
  CHECK(*dlq->discard(letters->front().id));
  CHECK(*dlq->count() == 0);
  CHECK_FALSE(*dlq->discard(letters->front().id));
}

TEST_CASE_METHOD(kafka_bus_test,
                 "relayed through Kafka, every committed event is handled "
                 "once, in order, while the brokers go down and up",
                 "[kafka][bus][relay][faults]") {
  temp_dir dir;
  sqlite_config sc;
  sc.path = dir.file("relay.db");
  sc.outbox = true;
  auto store = make_sqlite_event_store(sc);
  REQUIRE(store);
  auto outbox = make_sqlite_outbox(sc.path);
  REQUIRE(outbox);
  cfg.delivery_timeout = std::chrono::milliseconds(2000);
  auto bus = open();
  std::mutex mtx;
  std::condition_variable cv;
  event_deduper dedupe;
  std::map<uuid, std::vector<int64_t>> versions;
  size_t handled = 0;
  bus->subscribe_to_all_events([&](const recorded_event& ev) {
    std::lock_guard guard{mtx};
    if (!dedupe.seen(ev.event_id)) {
      dedupe.remember(ev.event_id);
      versions[ev.aggregate_id].push_back(ev.aggregate_version);
      ++handled;
      cv.notify_all();
    }
    return caf::error{};
  });
  require_started(*bus);
  outbox_relay_config rc;
  rc.outbox = *outbox;
  rc.store = *store;
  rc.bus = bus;
  rc.batch_size = 16;
  rc.poll_interval = std::chrono::milliseconds(20);
  rc.backoff.initial_delay = std::chrono::milliseconds(20);
  rc.backoff.max_delay = std::chrono::milliseconds(200);
  auto relay = spawn_outbox_relay(sys, rc);
  REQUIRE(relay);
  std::vector<stream_id> streams;
  for (int i = 0; i < 10; ++i)
    streams.push_back(new_stream());
  auto append_round = [&](int rounds) {
    for (int r = 0; r < rounds; ++r)
      for (auto& s : streams)
        REQUIRE((*store)->append(s, expected_version::any(), make_batch(s, 1)));
  };
  append_round(5);
  {
    std::unique_lock guard{mtx};
    REQUIRE(cv.wait_for(guard, std::chrono::seconds(60), [&] {
      return handled >= 20;
    }));
  }
  // Every broker down while the writers go on: publishes fail and the
  // relay keeps the rows; then the brokers come back.
  cluster.down();
  append_round(5);
  REQUIRE(eventually([&] {
    return (*outbox)->counts()->pending > 0;
  }));
  cluster.up();
  {
    std::unique_lock guard{mtx};
    REQUIRE(cv.wait_for(guard, std::chrono::seconds(90), [&] {
      return handled >= 100;
    }));
    CHECK(handled == 100);
    std::vector<int64_t> expected;
    for (int64_t v = 1; v <= 10; ++v)
      expected.push_back(v);
    for (const auto& s : streams)
      CHECK(versions[s.aggregate_id] == expected);
  }
  caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
  REQUIRE(eventually(
    [&] {
      return (*outbox)->counts()->published == 100;
    },
    std::chrono::seconds(30)));
}

TEST_CASE_METHOD(kafka_bus_test,
                 "another member handles the batch of a member killed "
                 "mid-batch",
                 "[kafka][bus][faults]") {
  // The member's rebalance limit short, so the group does not wait long
  // for it to come back once it is dead.
  auto url = "kafka://" + cluster.bootstrap()
             + "?session.timeout.ms=6000&max.poll.interval.ms=8000";
  // The doomed member: handles two events of its batch, then hangs in the
  // third until it is killed; it owns every partition while alone.
  child_process doomed{{ES_BUS_MEMBER, url, "t", "workers", "2"}};
  REQUIRE(doomed.line() == "ready");
  cfg.consumer_group = "workers";
  auto publisher = open();
  auto events = make_events(5, 2);
  publish_all(*publisher, events);
  std::set<uuid> handled_by_doomed;
  for (auto l = doomed.line(); !l.empty() && l != "stalled";
       l = doomed.line()) {
    REQUIRE(l.rfind("handled ", 0) == 0);
    handled_by_doomed.insert(*uuid::parse(l.substr(8)));
  }
  REQUIRE(handled_by_doomed.size() == 2);
  // Killed mid-batch: nothing of the batch was committed. Once the group
  // drops it (session timeout), the live member gets its partitions from
  // the committed offsets.
  doomed.kill_now();
  auto live = open();
  collector seen;
  live->subscribe_to_all_events(seen.handler());
  require_started(*live);
  // The group waits for the dead member's session to end first. The live
  // member handles every event the doomed one did not (and those of the
  // doomed one's unfinished batch again: at least once).
  auto covered = [&] {
    auto all = seen.ids();
    all.insert(handled_by_doomed.begin(), handled_by_doomed.end());
    return all == ids_of(events);
  };
  REQUIRE(eventually(covered, std::chrono::seconds(90)));
  auto in_live = seen.ids();
  CHECK(in_live.size() >= events.size() - handled_by_doomed.size());
  // The group committed everything (the live bus published nothing, so
  // its drain would not wait: poll the cluster instead).
  CHECK(eventually([&] {
    auto info = read_kafka_bus_info(cfg, {"workers"});
    return info && info->lag.size() == 1 && info->lag[0].second == 0;
  }));
}
