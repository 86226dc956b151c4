// Fuzzes the envelope decode of stored rows: how the SQLite store turns the
// columns of an `events` row into a `recorded_event`.
//
// One database is made once per process; each input becomes the only row of
// its `events` table, written with a separate raw connection that ignores
// the table's CHECK constraints (a row from another writer, an older
// library or a damaged file), and is read back through the public store API:
// head_position, read_all, find_event, read_stream (both directions), then
// decoded with a registry and its time formatted, as readers do.
//
// Input: one line per column, in table order (global_position, event_id,
// event_type, event_version, aggregate_type, aggregate_id,
// aggregate_version, tenant_id, occurred_at, correlation_id, causation_id,
// actor_id, metadata, payload). A line is empty (a valid value for the
// column), "n" (NULL), "i<integer>", "r<real>", "t<text>" or "x<hex>" (a
// blob); missing lines are empty. Invariants: no crash, no exception; reads
// succeed and agree with each other; decode errors are the documented ones.
#include "es/sqlite/sqlite.hpp"
#include "es/store/codec.hpp"
#include "es/store/errors.hpp"
#include "es/store/event.hpp"
#include "es/store/event_registry.hpp"
#include "es/store/event_store.hpp"

#include "fuzz_support.hpp"
#include <sqlite3.h>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace es;
using es::fuzz::check;

namespace {

constexpr int column_count = 14;

/// Default lines: a valid row (Widget v1 at position 1 of its stream).
constexpr std::string_view defaults[column_count] = {
  "i1",
  "x0190a0c1d2e37f00800000000000000a",
  "tWidget",
  "i1",
  "tOrder",
  "x0190a0c1d2e37f00800000000000000b",
  "i1",
  "n",
  "i1700000000000000",
  "n",
  "n",
  "t",
  "t",
  R"(t{"name":"a"})",
};

struct widget {
  static constexpr std::string_view event_type = "Widget";
  static constexpr int32_t event_version = 1;
  std::string name;
};

template <class F>
bool fields(F& f, widget& x) {
  return f("name", x.name);
}

/// Opens the scratch database once: the store and a raw writer beside it.
struct fixture {
  std::filesystem::path dir;
  event_store_ptr store;
  sqlite3* raw = nullptr;
  sqlite3_stmt* insert = nullptr;
  event_registry registry;

  fixture() {
    auto base = std::filesystem::temp_directory_path() / "es-fuzz-row-XXXXXX";
    auto tmpl = base.string();
    check(mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed");
    dir = tmpl;
    sqlite_config cfg;
    cfg.path = (dir / "events.db").string();
    cfg.synchronous = sqlite_sync::off;
    cfg.read_connections = 1;
    auto made = make_sqlite_event_store(cfg);
    check(static_cast<bool>(made), "cannot open the store");
    store = std::move(*made);
    check(sqlite3_open(cfg.path.c_str(), &raw) == SQLITE_OK, "cannot open db");
    sqlite3_busy_timeout(raw, 5000);
    check(sqlite3_exec(raw,
                       "PRAGMA ignore_check_constraints = ON;"
                       " PRAGMA synchronous = OFF",
                       nullptr, nullptr, nullptr)
            == SQLITE_OK,
          "pragmas failed");
    const char* sql
      = "INSERT INTO events (global_position, event_id, event_type,"
        " event_version, aggregate_type, aggregate_id, aggregate_version,"
        " tenant_id, occurred_at, correlation_id, causation_id, actor_id,"
        " metadata, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
        " ?10, ?11, ?12, ?13, ?14)";
    check(sqlite3_prepare_v2(raw, sql, -1, &insert, nullptr) == SQLITE_OK,
          "cannot prepare the insert");
    check(!registry.add<widget>(), "registry set-up failed");
  }

  ~fixture() {
    sqlite3_finalize(insert);
    sqlite3_close(raw);
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

fixture& env() {
  static fixture f;
  return f;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/// Binds one input line as parameter `i`; `text` outlives the insert.
void bind(sqlite3_stmt* st, int i, std::string_view line) {
  if (line.empty() || line == "n") {
    sqlite3_bind_null(st, i);
    return;
  }
  auto tag = line.front();
  auto rest = line.substr(1);
  if (tag == 'i') {
    int64_t x = 0;
    auto res = std::from_chars(rest.data(), rest.data() + rest.size(), x);
    if (res.ec == std::errc{} && res.ptr == rest.data() + rest.size()) {
      sqlite3_bind_int64(st, i, x);
      return;
    }
  } else if (tag == 'r') {
    std::string copy{rest};
    sqlite3_bind_double(st, i, std::strtod(copy.c_str(), nullptr));
    return;
  } else if (tag == 'x') {
    std::vector<uint8_t> bytes;
    for (size_t k = 0; k + 1 < rest.size(); k += 2) {
      auto hi = hex_digit(rest[k]);
      auto lo = hex_digit(rest[k + 1]);
      if (hi < 0 || lo < 0)
        break;
      bytes.push_back(static_cast<uint8_t>(hi * 16 + lo));
    }
    sqlite3_bind_blob(st, i, bytes.data(), static_cast<int>(bytes.size()),
                      SQLITE_TRANSIENT);
    return;
  }
  // 't', and anything unreadable, binds the rest as text.
  sqlite3_bind_text(st, i, rest.data(), static_cast<int>(rest.size()),
                    SQLITE_TRANSIENT);
}

/// Replaces the table's content with the row of `input`; false if SQLite
/// refuses it (a NOT NULL column bound to NULL, a non-integer position).
bool store_row(fixture& f, std::string_view input) {
  std::string_view lines[column_count];
  for (int i = 0; i < column_count; ++i) {
    auto nl = input.find('\n');
    lines[i] = input.substr(0, nl);
    input = nl == std::string_view::npos ? std::string_view{}
                                         : input.substr(nl + 1);
    if (lines[i].empty())
      lines[i] = defaults[i];
  }
  check(
    sqlite3_exec(f.raw, "BEGIN; DELETE FROM events", nullptr, nullptr, nullptr)
      == SQLITE_OK,
    "cannot clear the table");
  for (int i = 0; i < column_count; ++i)
    bind(f.insert, i + 1, lines[i]);
  auto rc = sqlite3_step(f.insert);
  sqlite3_reset(f.insert);
  sqlite3_clear_bindings(f.insert);
  auto end = rc == SQLITE_DONE ? "COMMIT" : "ROLLBACK";
  check(sqlite3_exec(f.raw, end, nullptr, nullptr, nullptr) == SQLITE_OK,
        "cannot end the transaction");
  return rc == SQLITE_DONE;
}

/// Returns the stored event id's bytes if it is a 16-byte blob.
std::optional<uuid> stored_event_id(fixture& f) {
  sqlite3_stmt* st = nullptr;
  check(sqlite3_prepare_v2(f.raw,
                           "SELECT event_id FROM events WHERE"
                           " typeof(event_id) = 'blob'"
                           " AND length(event_id) = 16",
                           -1, &st, nullptr)
          == SQLITE_OK,
        "cannot prepare the id query");
  std::optional<uuid> result;
  if (sqlite3_step(st) == SQLITE_ROW) {
    uuid id;
    std::memcpy(id.bytes().data(), sqlite3_column_blob(st, 0), 16);
    result = id;
  }
  sqlite3_finalize(st);
  return result;
}

template <class T>
const T& ok(const caf::expected<T>& x, std::string_view what) {
  if (!x)
    fuzz::fail(std::string{what} + " failed: " + describe(x.error()));
  return *x;
}

/// Does with an event what readers do: decode it, format its time.
void consume(fixture& f, const recorded_event& ev) {
  auto decoded = f.registry.decode(ev);
  if (!decoded)
    fuzz::check_code(decoded.error(),
                     {store_errc::unknown_event_type,
                      store_errc::malformed_payload, store_errc::upcast_failed},
                     "decode");
  static_cast<void>(format_timestamp(ev.occurred_at));
  static_cast<void>(to_string(ev.stream()));
}

void run(std::string_view input) {
  auto& f = env();
  if (!store_row(f, input))
    return;
  auto& store = *f.store;
  auto head = ok(store.head_position(), "head_position");
  // The row is the whole feed: reading after the position before it finds
  // it, whatever the position.
  std::optional<recorded_event> row;
  if (head > 0) {
    read_all_options opts;
    opts.after_position = head - 1;
    auto page = ok(store.read_all(opts), "read_all");
    check(page.events.size() == 1, "read_all misses the row");
    row = page.events.front();
    check(row->global_position == head, "read_all reads another position");
    check(page.end_of_feed && page.next_position == head,
          "read_all does not end at the head");
  }
  auto page = ok(store.read_all({}), "read_all from 0");
  check(page.events.size() <= 1, "read_all from 0 finds several rows");
  if (!page.events.empty())
    check(row && page.events.front() == *row, "read_all pages disagree");
  // A position at or below 0 lies outside the feed: only find_event can
  // reach such a row.
  if (auto id = stored_event_id(f)) {
    auto found = ok(store.find_event(*id), "find_event");
    check(found.has_value(), "find_event misses the row");
    check(found->event_id == *id, "find_event reads another id");
    if (row)
      check(*found == *row, "find_event and read_all disagree");
    row = *found;
  }
  if (!row)
    return;
  consume(f, *row);
  auto stream = row->stream();
  if (row->event_type == stream_deleted_type
      || row->event_type == stream_tombstoned_type) {
    // The row deletes its stream (at a version the stream reads may take
    // for one below the deletion, when it is damaged): reads answer or
    // say the stream was deleted, and fail no other way.
    auto v = store.stream_version(stream);
    check(v || has_code(v.error(), store_errc::stream_deleted),
          "stream_version of a deleted stream");
    auto slice = store.read_stream(stream, {});
    check(slice || has_code(slice.error(), store_errc::stream_deleted),
          "read_stream of a deleted stream");
    return;
  }
  auto version = ok(store.stream_version(stream), "stream_version");
  for (auto dir : {read_direction::forwards, read_direction::backwards}) {
    read_stream_options opts;
    opts.direction = dir;
    auto slice = ok(store.read_stream(stream, opts), "read_stream");
    check(slice.stream_version == version, "read_stream sees another head");
    check(slice.events.size() <= 1, "read_stream finds several rows");
    for (const auto& ev : slice.events) {
      check(ev == *row, "read_stream and read_all disagree");
      consume(f, ev);
    }
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    run({reinterpret_cast<const char*>(data), size});
  } catch (const std::exception& e) {
    fuzz::fail(std::string{"exception escaped: "} + e.what());
  }
  return 0;
}
