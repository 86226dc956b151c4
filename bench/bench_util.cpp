#include "bench_util.hpp"

#include "es/store/json.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>

namespace es::bench {

run_result median_run(std::vector<run_result> runs) {
  std::sort(runs.begin(), runs.end(),
            [](const run_result& a, const run_result& b) {
              return a.events_per_sec() < b.events_per_sec();
            });
  auto result = std::move(runs[runs.size() / 2]);
  if (runs.size() > 1)
    result.note += "  (median of " + std::to_string(runs.size()) + ")";
  return result;
}

void print_json(const run_result& r) {
  json::writer out;
  out.begin_object();
  out.key("backend");
  out.string(r.backend);
  out.key("scenario");
  out.string(r.scenario);
  out.key("events");
  out.integer(r.events);
  out.key("writers");
  out.integer(r.writers);
  out.key("batch");
  out.integer(r.batch);
  out.key("seconds");
  out.number(r.seconds);
  out.key("events_per_sec");
  out.number(r.events_per_sec());
  out.key("p50_us");
  out.number(r.percentile(0.50));
  out.key("p99_us");
  out.number(r.percentile(0.99));
  out.end_object();
  std::cout << out.str() << std::endl;
}

namespace {

/// Whether `backend` names a run without request timeouts, which is held
/// against untimed baselines only.
bool untimed(const std::string& backend) {
  const std::string tail = "-untimed";
  return backend.size() > tail.size()
         && backend.compare(backend.size() - tail.size(), tail.size(), tail)
              == 0;
}

} // namespace

void print_table(const std::vector<run_result>& rows) {
  std::printf("\n%-14s %-13s %9s %7s %5s %9s %12s %9s %9s  %s\n", "backend",
              "scenario", "events", "writers", "batch", "seconds", "events/s",
              "p50 us", "p99 us", "ratio to raw");
  for (const auto& r : rows) {
    std::string ratio;
    if (r.backend.rfind("raw-", 0) != 0) {
      for (const auto& raw : rows)
        if (raw.backend.rfind("raw-", 0) == 0 && raw.scenario == r.scenario
            && raw.events_per_sec() > 0
            && (!untimed(r.backend) || untimed(raw.backend))) {
          char buf[64];
          std::snprintf(
            buf, sizeof(buf), "%s%.2fx %s", ratio.empty() ? "" : ", ",
            r.events_per_sec() / raw.events_per_sec(), raw.backend.c_str());
          ratio += buf;
        }
    }
    std::printf("%-14s %-13s %9lld %7d %5d %9.3f %12.0f %9.1f %9.1f  %s%s\n",
                r.backend.c_str(), r.scenario.c_str(),
                static_cast<long long>(r.events), r.writers, r.batch, r.seconds,
                r.events_per_sec(), r.percentile(0.50), r.percentile(0.99),
                ratio.c_str(), r.note.c_str());
  }
  std::printf("\n");
}

std::string sample_payload(int64_t n) {
  json::writer out;
  out.begin_object();
  out.key("order_id");
  out.string("3f2c8a4e-5b1d-4e7a-9c3b-2d1e0f9a8b7c");
  out.key("customer");
  out.string("customer-" + std::to_string(n % 9973));
  out.key("sku");
  out.string("SKU-" + std::to_string(n % 1000));
  out.key("quantity");
  out.integer(n % 7 + 1);
  out.key("unit_price_cents");
  out.integer(1999 + n % 500);
  out.key("currency");
  out.string("EUR");
  out.key("note");
  out.string("padding to make the payload about as large as a typical event");
  out.key("tags");
  out.begin_array();
  out.string("web");
  out.string("promo-" + std::to_string(n % 13));
  out.end_array();
  out.key("shipping");
  out.begin_object();
  out.key("method");
  out.string("standard");
  out.key("country");
  out.string("DE");
  out.end_object();
  out.end_object();
  return out.str();
}

} // namespace es::bench
