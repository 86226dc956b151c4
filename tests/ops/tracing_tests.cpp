// Tracing: a command's trace, carried in event metadata, reaches the store
// writer, the bus and a projection that reads the log through a store of
// its own (as another process would), and arrives at an OTLP/HTTP receiver
// with its parent links intact. Off, nothing is traced or injected.
#include "es/actors/aggregate_region.hpp"
#include "es/actors/store_actor.hpp"
#include "es/bus/in_process_bus.hpp"
#include "es/ops/otlp_exporter.hpp"
#include "es/projections/coordinator.hpp"
#include "es/projections/type_ids.hpp"
#include "es/sqlite/sqlite.hpp"
#include "es/store/tracing.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include "order.hpp"
#include "temp_dir.hpp"
#include "views.hpp"
#include <catch2/catch.hpp>
#include <httplib.h>
#include <rapidjson/document.h>
#include <sqlite3.h>

#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace es;
using namespace es::test;

namespace {

struct tracing_config : caf::actor_system_config {
  tracing_config() {
    add_projections_module(*this);
    add_message_types<caf::id_block::orders>();
    set("scheduler.max-threads", 2);
  }
};

/// A collector's /v1/traces endpoint: keeps every request body.
struct receiver {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mtx;
  std::vector<std::string> bodies;

  receiver() {
    server.Post("/v1/traces",
                [this](const httplib::Request& req, httplib::Response& res) {
                  {
                    std::lock_guard guard{mtx};
                    bodies.push_back(req.body);
                  }
                  res.set_content("{}", "application/json");
                });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread{[this] {
      server.listen_after_bind();
    }};
    while (!server.is_running())
      std::this_thread::yield();
  }

  ~receiver() {
    server.stop();
    thread.join();
  }
};

struct seen_span {
  std::string name;
  std::string trace;
  std::string id;
  std::string parent;
  int kind = 0;
  int status = 0;
  std::map<std::string, std::string> attributes;
};

/// Every span in the OTLP/JSON bodies; FAILs on a malformed body.
std::vector<seen_span> spans_in(const std::vector<std::string>& bodies,
                                std::string& service) {
  std::vector<seen_span> result;
  for (const auto& body : bodies) {
    rapidjson::Document doc;
    doc.Parse(body.c_str(), body.size());
    REQUIRE_FALSE(doc.HasParseError());
    for (const auto& rs : doc["resourceSpans"].GetArray()) {
      service
        = rs["resource"]["attributes"][0]["value"]["stringValue"].GetString();
      for (const auto& ss : rs["scopeSpans"].GetArray())
        for (const auto& sp : ss["spans"].GetArray()) {
          seen_span s;
          s.name = sp["name"].GetString();
          s.trace = sp["traceId"].GetString();
          s.id = sp["spanId"].GetString();
          if (sp.HasMember("parentSpanId"))
            s.parent = sp["parentSpanId"].GetString();
          s.kind = sp["kind"].GetInt();
          s.status = sp["status"]["code"].GetInt();
          CHECK(std::stoull(sp["endTimeUnixNano"].GetString())
                >= std::stoull(sp["startTimeUnixNano"].GetString()));
          for (const auto& a : sp["attributes"].GetArray()) {
            const auto& v = a["value"];
            s.attributes[a["key"].GetString()]
              = v.HasMember("stringValue") ? v["stringValue"].GetString()
                                           : v["intValue"].GetString();
          }
          CHECK(s.trace.size() == 32);
          CHECK(s.id.size() == 16);
          result.push_back(std::move(s));
        }
    }
  }
  return result;
}

std::vector<seen_span> named(const std::vector<seen_span>& xs,
                             const std::string& name) {
  std::vector<seen_span> result;
  for (const auto& x : xs)
    if (x.name == name)
      result.push_back(x);
  return result;
}

} // namespace

TEST_CASE("traceparent: format, parsing and metadata", "[tracing]") {
  auto ctx = tracing::span_context::parse(
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  REQUIRE(ctx);
  CHECK(ctx->trace_id_hex() == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(ctx->span_id_hex() == "00f067aa0ba902b7");
  CHECK(ctx->flags == 1);
  CHECK(ctx->traceparent()
        == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  for (const char* bad :
       {"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"})
    CHECK_FALSE(tracing::span_context::parse(bad));
  auto meta = tracing::inject(R"({"source":"test"})", *ctx);
  CHECK(
    meta
    == R"({"source":"test","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})");
  auto back = tracing::extract(meta);
  REQUIRE(back);
  CHECK(back->traceparent() == ctx->traceparent());
  CHECK(tracing::extract(tracing::inject("", *ctx)));
  // Not an object: left alone, and nothing to extract.
  CHECK(tracing::inject("[1]", *ctx) == "[1]");
  CHECK_FALSE(tracing::extract(R"({"traceparent": 5})"));
  CHECK_FALSE(tracing::extract("not json traceparent"));
  // Off: spans are inactive and cost no exporter call.
  tracing::set_exporter(nullptr);
  tracing::span off{"x", tracing::span_kind::internal};
  CHECK_FALSE(off.active());
  CHECK_FALSE(off.context().valid());
}

TEST_CASE("bad OTLP endpoints are refused", "[tracing]") {
  for (const char* bad :
       {"https://collector:4318", "collector:4318", "http://", "http://:4318",
        "http://host:0", "http://host:99999", "http://host:12x"}) {
    INFO(bad);
    ops::otlp_config cfg;
    cfg.endpoint = bad;
    CHECK_FALSE(ops::otlp_http_exporter::make(cfg));
  }
}

TEST_CASE("a command's trace reaches the store, the bus and a projection "
          "reading the log elsewhere, with its parent links",
          "[tracing]") {
  receiver rx;
  REQUIRE(rx.port > 0);
  ops::otlp_config oc;
  oc.endpoint = "http://127.0.0.1:" + std::to_string(rx.port);
  oc.service_name = "tracing-test";
  oc.flush_interval = std::chrono::milliseconds(20);
  auto exporter = ops::otlp_http_exporter::make(oc);
  REQUIRE(exporter);
  temp_dir dir;
  sqlite_config sc;
  sc.path = dir.file("events.db");
  auto store = make_sqlite_event_store(sc);
  REQUIRE(store);
  // The projection's own store object on the same file: what another
  // process would read.
  auto elsewhere = make_sqlite_event_store(sc);
  REQUIRE(elsewhere);
  auto registry = orders::make_registry();
  auto v = orders::open_views(dir.file("views.db"), registry, false);
  REQUIRE(v);
  tracing_config cfg;
  caf::actor_system sys{cfg};
  auto bus = make_in_process_bus(sys);
  std::atomic<int> handled{0};
  bus->subscribe_to_all_events([&](const recorded_event&) -> caf::error {
    ++handled;
    return caf::none;
  });
  REQUIRE_FALSE(bus->start());
  store_actor_config sac;
  sac.bus = bus->handle();
  aggregate_options ao;
  ao.store = spawn_store_actor(sys, *store, sac);
  ao.registry = registry;
  auto region = spawn_region<orders::order>(sys, ao, {});
  projection_coordinator pc{sys};
  subscription_config sub;
  sub.store = *elsewhere;
  sub.poll_interval = std::chrono::milliseconds(5);
  REQUIRE_FALSE(pc.add(v->summary, sub));
  caf::scoped_actor self{sys};
  auto send = [&](const uuid& id, auto cmd) {
    bool ok = false;
    self
      ->request(region, std::chrono::seconds(10), command_envelope::to(id),
                std::move(cmd))
      .receive(
        [&](const command_result&) {
          ok = true;
        },
        [&](const caf::error& err) {
          FAIL(describe(err));
        });
    return ok;
  };
  tracing::set_exporter(*exporter);
  auto id = uuid::random();
  REQUIRE(send(id, orders::create_order{"alice"}));
  REQUIRE(send(id, orders::add_item{"sku-1", 2, 500}));
  REQUIRE_FALSE(pc.wait_until_caught_up(
    orders::order_summary_view::projection_name, std::chrono::seconds(30)));
  REQUIRE_FALSE(bus->drain(std::chrono::seconds(30)));
  CHECK(handled.load() == 2);
  (*exporter)->flush();
  tracing::set_exporter(nullptr);
  std::vector<std::string> bodies;
  {
    std::lock_guard guard{rx.mtx};
    bodies = rx.bodies;
  }
  std::string service;
  auto spans = spans_in(bodies, service);
  CHECK(service == "tracing-test");
  auto commands = named(spans, "eventsource.aggregate.handle_command");
  REQUIRE(commands.size() == 2);
  for (auto cmd : commands) {
    INFO("command span " << cmd.id);
    CHECK(cmd.parent.empty());
    CHECK(cmd.status == 1);
    CHECK(cmd.attributes["eventsource.aggregate.id"] == id.to_string());
    auto children = [&](const std::string& name) {
      std::vector<seen_span> result;
      for (const auto& s : named(spans, name))
        if (s.trace == cmd.trace && s.parent == cmd.id)
          result.push_back(s);
      return result;
    };
    auto appends = children("eventsource.event_store.append_events");
    REQUIRE(appends.size() == 1);
    CHECK(appends[0].attributes["db.system"] == "sqlite");
    CHECK(appends[0].attributes["eventsource.event.count"] == "1");
    auto handles = children("eventsource.projection.handle");
    REQUIRE(handles.size() == 1);
    CHECK(handles[0].attributes["eventsource.projection"] == "order_summary");
    CHECK(handles[0].kind == 5);
    auto publishes = children("eventsource.event_bus.publish");
    REQUIRE(publishes.size() == 1);
    auto dispatches = named(spans, "eventsource.event_bus.dispatch");
    CHECK(std::count_if(dispatches.begin(), dispatches.end(),
                        [&](const seen_span& s) {
                          return s.trace == cmd.trace
                                 && s.parent == publishes[0].id;
                        })
          == 1);
    CHECK(children("eventsource.event_bus.handle").size() == 1);
  }
  // The trace context is in the stored events' metadata.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(sc.path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db,
                             "SELECT metadata FROM events ORDER BY "
                             "global_position",
                             -1, &st, nullptr)
          == SQLITE_OK);
  std::vector<std::string> traces;
  while (sqlite3_step(st) == SQLITE_ROW) {
    auto* text = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    auto ctx = tracing::extract(text != nullptr ? text : "");
    REQUIRE(ctx);
    traces.push_back(ctx->trace_id_hex() + "/" + ctx->span_id_hex());
  }
  CHECK(traces
        == std::vector<std::string>{commands[0].trace + "/" + commands[0].id,
                                    commands[1].trace + "/" + commands[1].id});
  // Off again: a third command is neither traced nor stamped.
  auto before = bodies.size();
  REQUIRE(send(id, orders::pay_order{1000}));
  REQUIRE_FALSE(pc.wait_until_caught_up(
    orders::order_summary_view::projection_name, std::chrono::seconds(30)));
  (*exporter)->flush();
  {
    std::lock_guard guard{rx.mtx};
    CHECK(rx.bodies.size() == before);
  }
  sqlite3_reset(st);
  int rows = 0;
  std::string last;
  while (sqlite3_step(st) == SQLITE_ROW) {
    ++rows;
    auto* text = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    last = text != nullptr ? text : "";
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  CHECK(rows == 3);
  CHECK(last.find("traceparent") == std::string::npos);
  CHECK((*exporter)->stats().exported == spans.size());
  CHECK((*exporter)->stats().dropped == 0);
  pc.stop();
  self->send_exit(region, caf::exit_reason::user_shutdown);
  self->send_exit(caf::actor_cast<caf::actor>(ao.store),
                  caf::exit_reason::user_shutdown);
  static_cast<void>(bus->stop(std::chrono::seconds(10)));
}
