// The examples of docs/streams.md, run as tests: an atomic transfer
// between two streams, deleting and truncating streams, listing a causal
// chain.
#include "es/store/errors.hpp"
#include "es/store/event_store.hpp"
#include "es/store/memory_event_store.hpp"

#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

namespace {

es::event_data make(std::string type, std::string payload,
                    std::optional<es::uuid> correlation = std::nullopt) {
  es::event_data ev;
  ev.event_id = es::uuid::time_ordered();
  ev.event_type = std::move(type);
  ev.occurred_at = es::now_utc();
  ev.payload = std::move(payload);
  ev.correlation_id = correlation;
  return ev;
}

} // namespace

TEST_CASE("docs/streams.md: an atomic transfer between two accounts") {
  auto store = es::make_memory_event_store();
  es::stream_id from{"Account", es::uuid::random()};
  es::stream_id to{"Account", es::uuid::random()};
  REQUIRE(store->append(from, es::expected_version::no_stream(),
                        {make("Opened", R"({"balance":100})")}));
  REQUIRE(store->append(to, es::expected_version::no_stream(),
                        {make("Opened", R"({"balance":0})")}));
  int64_t from_version = 1;
  int64_t to_version = 1;
  std::ostringstream err;
  auto transfer = [&] {
    // [transfer]
    std::vector<es::append_request> transfer;
    transfer.push_back({from,
                        es::expected_version::exact(from_version),
                        {make("Debited", R"({"amount":30})")}});
    transfer.push_back({to,
                        es::expected_version::exact(to_version),
                        {make("Credited", R"({"amount":30})")}});
    auto res = store->append_atomic(std::move(transfer));
    if (!res) {
      // Nothing was written; a conflict names every stale stream.
      for (const auto& c : es::get_version_conflicts(res.error()))
        err << c.stream << " is at version " << c.actual << '\n';
      return false;
    }
    // One result per request, in order.
    from_version = (*res)[0].last_version;
    to_version = (*res)[1].last_version;
    // [/transfer]
    return true;
  };
  REQUIRE(transfer());
  CHECK(from_version == 2);
  CHECK(to_version == 2);
  // Someone else moved the source account meanwhile: the whole transfer is
  // refused and the destination is not credited.
  REQUIRE(store->append(from, es::expected_version::exact(2),
                        {make("Debited", R"({"amount":5})")}));
  CHECK_FALSE(transfer());
  CHECK(err.str() == es::to_string(from) + " is at version 3\n");
  CHECK(*store->stream_version(to) == 2);
}

TEST_CASE("docs/streams.md: deleting and truncating streams") {
  auto store = es::make_memory_event_store();
  es::stream_id cart{"Cart", es::uuid::random()};
  es::stream_id order{"Order", es::uuid::random()};
  for (int i = 0; i < 3; ++i) {
    REQUIRE(store->append(cart, es::expected_version::any(),
                          {make("ItemAdded", R"({"sku":"A"})")}));
    REQUIRE(store->append(order, es::expected_version::any(),
                          {make("LineAdded", R"({"sku":"B"})")}));
  }
  // [delete]
  // Soft: reads answer stream_deleted until the stream is written again
  // with no_stream or any, which starts it over.
  auto soft = es::delete_stream(*store, cart, es::deletion_mode::soft,
                                es::expected_version::exact(3));
  // Hard: a tombstone, no more appends ever.
  auto hard = es::delete_stream(*store, order, es::deletion_mode::hard);
  // [/delete]
  REQUIRE(soft);
  REQUIRE(hard);
  CHECK(es::has_code(store->read_stream(cart, {}).error(),
                     es::store_errc::stream_deleted));
  CHECK(es::has_code(
    store->append(order, es::expected_version::any(), {make("LineAdded", "{}")})
      .error(),
    es::store_errc::stream_deleted));
  es::stream_id ledger{"Ledger", es::uuid::random()};
  for (int i = 0; i < 5; ++i)
    REQUIRE(store->append(ledger, es::expected_version::any(),
                          {make("Posted", R"({"n":1})")}));
  // [truncate]
  // A snapshot holds the state as of version 4: hide versions 1 to 3.
  auto cut = es::truncate_stream(*store, ledger, 4);
  // [/truncate]
  REQUIRE(cut);
  auto slice = store->read_stream(ledger, {});
  REQUIRE(slice);
  CHECK(slice->first_version == 4);
  CHECK(slice->events.front().aggregate_version == 4);
}

TEST_CASE("docs/streams.md: a causal chain") {
  auto store = es::make_memory_event_store();
  auto request = es::uuid::random();
  es::stream_id order{"Order", es::uuid::random()};
  es::stream_id payment{"Payment", es::uuid::random()};
  REQUIRE(store->append(order, es::expected_version::any(),
                        {make("Placed", "{}", request)}));
  REQUIRE(store->append(payment, es::expected_version::any(),
                        {make("Charged", "{}", request)}));
  REQUIRE(store->append(order, es::expected_version::any(),
                        {make("Unrelated", "{}")}));
  std::vector<std::string> types;
  // [chain]
  es::read_all_options opts;
  for (;;) {
    auto page = store->read_correlated(request, opts);
    if (!page)
      break;
    for (const auto& ev : page->events)
      types.push_back(ev.event_type);
    if (page->end_of_feed)
      break;
    opts.after_position = page->next_position;
  }
  // [/chain]
  CHECK(types == std::vector<std::string>{"Placed", "Charged"});
}
