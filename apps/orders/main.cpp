// orders: the demo of the framework. Drives a mixed order workload through
// an aggregate region on the embedded SQLite store (or PostgreSQL) while two
// projections keep read models beside it; verifies, shows and
// administers what it wrote (status, dead letters, rebuilds). One file per
// command: run.cpp, verify.cpp, show.cpp, admin.cpp (status, dlq, rebuild).
#include "es/store/errors.hpp"
#include "es/store/log.hpp"
#ifdef ORDERS_WITH_OPS
#  include "es/ops/otlp_exporter.hpp"
#endif

#include <caf/actor_system.hpp>

#include "cli.hpp"

#include <iostream>
#include <string>
#include <vector>

namespace orders {

namespace {

constexpr const char* usage = R"(usage: orders COMMAND [options]

commands:
  run                  drive a mixed order workload through the Order region
                       while the projections order_summary and customer_stats
                       keep their read models (see --views); on an existing
                       store the order_summary read model catches up from its
                       checkpoint first and unfinished orders are continued
  verify               replay the log into fresh in-memory models and compare
                       them with every aggregate and with both read models;
                       exit 1 on a difference
  show ORDER_ID        print one order's history: its state after each event
  status               the projections' checkpoints and lag, and the
                       dead-letter queue
  dlq list             dead letters (--projection, --status, --limit)
  dlq replay ID|all    hand dead letters back to their projection; resolved
                       on success, failure recorded otherwise
  dlq resolve ID       mark a dead letter resolved by hand (--by)
  dlq purge            delete resolved entries (--older-than-days)
  rebuild PROJECTION   clear a read model and replay the whole log into it,
                       with a progress bar; exit 1 if events of it are
                       left in the dead-letter queue

run --http=HOST:PORT serves /live, /ready, /health and /metrics (see
docs/operations.md); --log-format=json writes the library's log records as
one JSON object per line on stderr; --otlp=http://HOST:PORT sends traces to
an OpenTelemetry collector.

Options can also be set in caf-application.ini (section [global]).
)";

} // namespace

} // namespace orders

namespace {

bool wants_help(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help" || arg == "-?")
      return true;
  }
  return false;
}

} // namespace

int main(int argc, char** argv) {
  // CAF stops parsing options at the first positional argument, so take
  // the command words out first: `orders run --orders=10` and
  // `orders --orders=10 run` both work.
  std::vector<std::string> words;
  std::vector<char*> options{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-')
      options.push_back(argv[i]);
    else
      words.emplace_back(argv[i]);
  }
  orders::orders_config cfg;
  if (wants_help(argc, argv))
    std::cout << orders::usage << "\n";
  if (auto err = cfg.parse(static_cast<int>(options.size()), options.data())) {
    std::cerr << "orders: " << caf::to_string(err) << "\n" << orders::usage;
    return 2;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  if (!cfg.remainder.empty()) {
    std::cerr << "orders: unknown option " << cfg.remainder.front() << "\n";
    return 2;
  }
  if (words.empty()) {
    std::cerr << orders::usage;
    return 2;
  }
  if (auto format = es::parse_log_format(cfg.log_format)) {
    es::set_log_format(*format);
  } else {
    std::cerr << "orders: --log-format must be text or json\n";
    return 2;
  }
  const auto& command = words.front();
  std::vector<std::string> args(words.begin() + 1, words.end());
  auto want_args = [&](size_t n, const char* what) {
    if (args.size() == n)
      return true;
    std::cerr << "orders: " << command << " takes " << what << "\n";
    return false;
  };
  if (command == "verify")
    return want_args(0, "no arguments") ? orders::verify(cfg) : 2;
  if (command == "show")
    return want_args(1, "an ORDER_ID") ? orders::show(cfg, args[0]) : 2;
  if (command == "status")
    return want_args(0, "no arguments") ? orders::status(cfg) : 2;
  if (command != "run" && command != "dlq" && command != "rebuild") {
    std::cerr << "orders: unknown command " << command << "\n" << orders::usage;
    return 2;
  }
  if (command == "run" && !want_args(0, "no arguments"))
    return 2;
  if (command == "rebuild" && !want_args(1, "a PROJECTION name"))
    return 2;
#ifdef ORDERS_WITH_OPS
  // Traces go out while the command runs; what is queued is sent before
  // the program ends.
  std::unique_ptr<es::ops::otlp_tracing> tracing;
  if (!cfg.otlp.empty()) {
    es::ops::otlp_config oc;
    oc.endpoint = cfg.otlp;
    oc.service_name = "orders";
    auto started = es::ops::otlp_tracing::start(oc);
    if (!started) {
      std::cerr << "orders: --otlp: " << es::describe(started.error()) << "\n";
      return 2;
    }
    tracing = std::move(*started);
  }
#else
  if (!cfg.otlp.empty()) {
    std::cerr << "orders: --otlp: this build has no es::ops\n";
    return 2;
  }
#endif
  caf::actor_system sys{cfg};
  if (command == "run")
    return orders::run(sys, cfg);
  if (command == "dlq")
    return orders::dlq(sys, cfg, args);
  return orders::rebuild(sys, cfg, args[0]);
}
