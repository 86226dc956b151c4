// The SQLite state stores: snapshots, checkpoints, dead letters.
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/state_stores.hpp"

#include "connection.hpp"
#include "schema.hpp"
#include "state_common.hpp"
#include "state_sql.hpp"
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>

namespace es {

namespace {

using detail::sqlite::connection;
using detail::sqlite::reset_guard;
using detail::sqlite::statement;
using detail::sqlite::translate;

int64_t micros(timestamp t) {
  return t.time_since_epoch().count();
}

timestamp from_micros(int64_t x) {
  return timestamp{std::chrono::microseconds{x}};
}

/// One connection shared under a mutex: these stores see little traffic.
class sqlite_state_base {
public:
  explicit sqlite_state_base(std::unique_ptr<connection> conn)
    : conn_(std::move(conn)) {
    // nop
  }

protected:
  /// Runs `fn(statement&)` on the prepared `sql` under the lock.
  template <class F>
  auto with(const std::string& sql, F fn)
    -> decltype(fn(std::declval<statement&>())) {
    std::lock_guard guard{mtx_};
    auto st = conn_->prepare(sql);
    if (!st)
      return std::move(st.error());
    reset_guard reset{**st};
    return fn(**st);
  }

  caf::error fail(int rc, const char* what) {
    return translate(rc, conn_->handle(), what);
  }

  int changes() {
    return sqlite3_changes(conn_->handle());
  }

  std::mutex mtx_;
  std::unique_ptr<connection> conn_;
};

class sqlite_snapshot_store final : public snapshot_store, sqlite_state_base {
public:
  using sqlite_state_base::sqlite_state_base;

  caf::expected<bool> save(const snapshot& snap) override {
    return with(
      "INSERT INTO snapshots (aggregate_type, aggregate_id,"
      " aggregate_version, schema_version, state, created_at)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
      " ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET"
      " aggregate_version = excluded.aggregate_version,"
      " schema_version = excluded.schema_version, state = excluded.state,"
      " created_at = excluded.created_at"
      " WHERE excluded.aggregate_version >= snapshots.aggregate_version",
      [&](statement& st) -> caf::expected<bool> {
        st.bind(1, std::string_view{snap.stream.aggregate_type});
        st.bind(2, snap.stream.aggregate_id);
        st.bind(3, snap.version);
        st.bind(4, int64_t{snap.schema_version});
        st.bind(5, std::string_view{snap.state});
        st.bind(6, micros(snap.created_at));
        auto rc = st.step();
        if (rc != SQLITE_DONE)
          return fail(rc, "cannot save snapshot");
        return changes() > 0;
      });
  }

  caf::expected<std::optional<snapshot>>
  load(const stream_id& stream) override {
    return with(
      "SELECT aggregate_version, schema_version, state, created_at"
      " FROM snapshots WHERE aggregate_type = ?1 AND aggregate_id = ?2",
      [&](statement& st) -> caf::expected<std::optional<snapshot>> {
        st.bind(1, std::string_view{stream.aggregate_type});
        st.bind(2, stream.aggregate_id);
        auto rc = st.step();
        if (rc == SQLITE_DONE)
          return std::optional<snapshot>{};
        if (rc != SQLITE_ROW)
          return fail(rc, "cannot load snapshot");
        snapshot s;
        s.stream = stream;
        s.version = st.int64_at(0);
        s.schema_version = static_cast<int32_t>(st.int64_at(1));
        s.state = st.text_at(2);
        s.created_at = from_micros(st.int64_at(3));
        return std::optional<snapshot>{std::move(s)};
      });
  }

  caf::expected<bool> remove(const stream_id& stream) override {
    return with("DELETE FROM snapshots WHERE aggregate_type = ?1"
                " AND aggregate_id = ?2",
                [&](statement& st) -> caf::expected<bool> {
                  st.bind(1, std::string_view{stream.aggregate_type});
                  st.bind(2, stream.aggregate_id);
                  auto rc = st.step();
                  if (rc != SQLITE_DONE)
                    return fail(rc, "cannot delete snapshot");
                  return changes() > 0;
                });
  }
};

/// Binds the fields of `cp` to ?1 ... ?6 in column order.
void bind_checkpoint(statement& st, const checkpoint& cp) {
  st.bind(1, std::string_view{cp.projection});
  st.bind(2, cp.position);
  if (cp.event_id.is_nil())
    st.bind_null(3);
  else
    st.bind(3, cp.event_id);
  st.bind(4, std::string_view{cp.event_type});
  st.bind(5, cp.events_processed);
  st.bind(6, micros(cp.updated_at));
}

checkpoint read_checkpoint(const statement& st) {
  checkpoint cp;
  cp.projection = st.text_at(0);
  cp.position = st.int64_at(1);
  cp.event_id = st.is_null(2) ? uuid{} : st.uuid_at(2);
  cp.event_type = st.text_at(3);
  cp.events_processed = st.int64_at(4);
  cp.updated_at = from_micros(st.int64_at(5));
  return cp;
}

} // namespace

namespace detail::sqlite {

caf::expected<std::optional<checkpoint>>
load_checkpoint(connection& conn, const std::string& projection) {
  auto st = conn.prepare(
    "SELECT projection_name, global_position, event_id, event_type,"
    " events_processed, updated_at FROM projection_checkpoints"
    " WHERE projection_name = ?1");
  if (!st)
    return std::move(st.error());
  reset_guard reset{**st};
  (*st)->bind(1, std::string_view{projection});
  auto rc = (*st)->step();
  if (rc == SQLITE_DONE)
    return std::optional<checkpoint>{};
  if (rc != SQLITE_ROW)
    return translate(rc, conn.handle(), "cannot load checkpoint");
  return std::optional<checkpoint>{read_checkpoint(**st)};
}

caf::expected<checkpoint> save_checkpoint(connection& conn,
                                          const checkpoint& cp) {
  {
    auto st = conn.prepare(
      "INSERT INTO projection_checkpoints (projection_name, global_position,"
      " event_id, event_type, events_processed, updated_at)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
      " ON CONFLICT (projection_name) DO UPDATE SET"
      " global_position = excluded.global_position,"
      " event_id = excluded.event_id, event_type = excluded.event_type,"
      " events_processed = excluded.events_processed,"
      " updated_at = excluded.updated_at"
      " WHERE excluded.global_position >= "
      "projection_checkpoints.global_position");
    if (!st)
      return std::move(st.error());
    reset_guard reset{**st};
    bind_checkpoint(**st, cp);
    auto rc = (*st)->step();
    if (rc != SQLITE_DONE)
      return translate(rc, conn.handle(), "cannot save checkpoint");
  }
  auto stored = load_checkpoint(conn, cp.projection);
  if (!stored)
    return std::move(stored.error());
  if (!*stored)
    return make_store_error(store_errc::internal, "checkpoint vanished");
  return std::move(**stored);
}

caf::expected<checkpoint> save_checkpoint_if(connection& conn,
                                             const checkpoint& cp,
                                             int64_t expected_position) {
  // The caller's write transaction holds SQLite's only write lock, so
  // nothing moves the checkpoint between these statements.
  auto run = [&](const char* sql, bool bind_expected) -> caf::expected<bool> {
    auto st = conn.prepare(sql);
    if (!st)
      return std::move(st.error());
    reset_guard reset{**st};
    bind_checkpoint(**st, cp);
    if (bind_expected)
      (*st)->bind(7, expected_position);
    auto rc = (*st)->step();
    if (rc != SQLITE_DONE)
      return translate(rc, conn.handle(), "cannot save checkpoint");
    return sqlite3_changes(conn.handle()) > 0;
  };
  auto updated = run(
    "UPDATE projection_checkpoints SET global_position = ?2, event_id = ?3,"
    " event_type = ?4, events_processed = ?5, updated_at = ?6"
    " WHERE projection_name = ?1 AND global_position = ?7"
    " AND global_position <= ?2",
    true);
  if (!updated)
    return std::move(updated.error());
  if (*updated)
    return cp;
  if (expected_position == 0) {
    auto inserted = run(
      "INSERT INTO projection_checkpoints (projection_name, global_position,"
      " event_id, event_type, events_processed, updated_at)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (projection_name)"
      " DO NOTHING",
      false);
    if (!inserted)
      return std::move(inserted.error());
    if (*inserted)
      return cp;
  }
  auto stored = load_checkpoint(conn, cp.projection);
  if (!stored)
    return std::move(stored.error());
  if (!*stored)
    return make_checkpoint_conflict(cp.projection, expected_position,
                                    std::nullopt);
  if ((*stored)->position == expected_position
      && cp.position < expected_position)
    return std::move(**stored); // Never backwards.
  return make_checkpoint_conflict(cp.projection, expected_position,
                                  (*stored)->position);
}

caf::expected<int64_t> add_dead_letter(connection& conn, const dead_letter& e) {
  auto st = conn.prepare(
    "INSERT INTO dead_letter_queue (projection_name, event_id,"
    " global_position, event_type, event_data, error_message,"
    " error_context, retry_count, status, first_failed_at, last_failed_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'failed', ?9, ?10)"
    " ON CONFLICT (projection_name, event_id) DO UPDATE SET"
    " retry_count = dead_letter_queue.retry_count + 1,"
    " last_failed_at = excluded.last_failed_at,"
    " error_message = excluded.error_message,"
    " error_context = excluded.error_context, status = 'failed',"
    " resolved_at = NULL, resolved_by = NULL RETURNING id");
  if (!st)
    return std::move(st.error());
  reset_guard reset{**st};
  (*st)->bind(1, std::string_view{e.projection});
  (*st)->bind(2, e.event_id);
  (*st)->bind(3, e.global_position);
  (*st)->bind(4, std::string_view{e.event_type});
  (*st)->bind(5, std::string_view{e.event_data});
  (*st)->bind(6, std::string_view{e.error_message});
  (*st)->bind(7, std::string_view{e.error_context});
  (*st)->bind(8, int64_t{e.retry_count});
  (*st)->bind(9, micros(e.first_failed_at));
  (*st)->bind(10, micros(e.last_failed_at));
  auto rc = (*st)->step();
  if (rc != SQLITE_ROW)
    return translate(rc, conn.handle(), "cannot add dead letter");
  auto id = (*st)->int64_at(0);
  rc = (*st)->step();
  if (rc != SQLITE_DONE)
    return translate(rc, conn.handle(), "cannot add dead letter");
  return id;
}

caf::expected<bool> mark_processed(connection& conn,
                                   const std::string& projection,
                                   const uuid& event_id) {
  auto st = conn.prepare("INSERT INTO processed_events (projection_name,"
                         " event_id, processed_at) VALUES (?1, ?2, ?3)"
                         " ON CONFLICT DO NOTHING");
  if (!st)
    return std::move(st.error());
  reset_guard reset{**st};
  (*st)->bind(1, std::string_view{projection});
  (*st)->bind(2, event_id);
  (*st)->bind(3, micros(now_utc()));
  auto rc = (*st)->step();
  if (rc != SQLITE_DONE)
    return translate(rc, conn.handle(), "cannot record processed event");
  return sqlite3_changes(conn.handle()) > 0;
}

} // namespace detail::sqlite

namespace {

// -- leases -------------------------------------------------------------------

/// FNV-1a: a 64-bit hash that every build and process computes alike (unlike
/// std::hash), so all of them agree on a projection's lock file.
uint64_t fnv1a(std::string_view x) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : x) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

/// `<database>.lease-<16 hex digits of the name's hash>`.
std::string lease_file(const std::string& database, const std::string& name) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016" PRIx64, fnv1a(name));
  return database + ".lease-" + hex;
}

caf::error file_error(const std::string& what, const std::string& file,
                      int code) {
  return make_store_error(store_errc::io_error,
                          what + " " + file + ": " + std::strerror(code));
}

bool same_file(const struct stat& x, const struct stat& y) {
  return x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/// An exclusive `flock` on the projection's lock file. flock locks belong to
/// the open file description: two leases in one process exclude each other
/// like leases in two processes, and the kernel drops the lock the moment
/// the last descriptor closes, also when the process dies (kill -9). A
/// child forked while the lease is held shares the lock until it exits or
/// execs (the descriptor is close-on-exec).
class file_lease final : public projection_lease {
public:
  file_lease(std::string name, std::string file, int fd, struct stat id)
    : name_(std::move(name)), file_(std::move(file)), fd_(fd), id_(id) {
    // nop
  }

  ~file_lease() override {
    // The file stays: removing it would let a process that opened it just
    // before lock a file nobody else can find any more.
    ::close(fd_);
  }

  const std::string& projection() const override {
    return name_;
  }

  /// Lost only when the lock file was removed or replaced (another inode at
  /// its path): then a newcomer would lock another file.
  caf::error check() override {
    struct stat now;
    if (::stat(file_.c_str(), &now) == 0 && same_file(now, id_))
      return caf::none;
    return make_store_error(store_errc::lease_lost,
                            "the lease of projection '" + name_
                              + "' is lost: its lock file " + file_
                              + " was removed or replaced");
  }

private:
  std::string name_;
  std::string file_;
  int fd_;
  struct stat id_;
};

/// Writes who holds the lease into the lock file, for `lease_held` errors
/// of others. Best effort: the lock, not the text, is the lease.
void note_holder(int fd, const std::string& name) {
  auto text = "pid " + std::to_string(::getpid()) + ", projection " + name;
  if (::ftruncate(fd, 0) == 0)
    if (::pwrite(fd, text.data(), text.size(), 0) < 0)
      return;
}

/// The text `note_holder` wrote, if any.
std::string read_holder(int fd) {
  char buf[256];
  auto n = ::pread(fd, buf, sizeof(buf), 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string{};
}

caf::expected<projection_lease_ptr> take_file_lease(const std::string& database,
                                                    const std::string& name) {
  auto file = lease_file(database, name);
  // A file replaced between our open and our lock is not the lock file any
  // more: try again with the new one.
  for (int attempt = 0; attempt < 16; ++attempt) {
    int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      return file_error("cannot open the lock file", file, errno);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      auto code = errno;
      auto holder = read_holder(fd);
      ::close(fd);
      if (code == EINTR)
        continue;
      if (code != EWOULDBLOCK)
        return file_error("cannot lock", file, code);
      std::string msg = "projection '" + name
                        + "' is leased by another holder (lock file " + file;
      if (!holder.empty())
        msg += ", held by " + holder;
      return make_store_error(store_errc::lease_held, msg + ")");
    }
    struct stat by_fd;
    struct stat by_path;
    if (::fstat(fd, &by_fd) != 0) {
      auto code = errno;
      ::close(fd);
      return file_error("cannot stat", file, code);
    }
    if (::stat(file.c_str(), &by_path) != 0 || !same_file(by_fd, by_path)) {
      ::close(fd);
      continue;
    }
    note_holder(fd, name);
    return projection_lease_ptr{
      std::make_unique<file_lease>(name, std::move(file), fd, by_fd)};
  }
  return make_store_error(store_errc::io_error,
                          "the lock file " + file + " keeps being replaced");
}

class sqlite_checkpoint_store final : public checkpoint_store,
                                      sqlite_state_base {
public:
  /// `database` is the canonical path of the database file (empty if there
  /// is none: then there are no leases).
  sqlite_checkpoint_store(std::unique_ptr<connection> conn,
                          std::string database)
    : sqlite_state_base(std::move(conn)), database_(std::move(database)) {
    // nop
  }

  caf::expected<checkpoint> save(const checkpoint& cp) override {
    std::lock_guard guard{mtx_};
    return detail::sqlite::save_checkpoint(*conn_, cp);
  }

  caf::expected<checkpoint> save_if(const checkpoint& cp,
                                    int64_t expected_position) override {
    std::lock_guard guard{mtx_};
    if (auto err = conn_->exec("BEGIN IMMEDIATE"))
      return err;
    auto res
      = detail::sqlite::save_checkpoint_if(*conn_, cp, expected_position);
    if (!res) {
      static_cast<void>(conn_->exec("ROLLBACK"));
      return res;
    }
    if (auto err = conn_->exec("COMMIT")) {
      static_cast<void>(conn_->exec("ROLLBACK"));
      return err;
    }
    return res;
  }

  caf::expected<projection_lease_ptr>
  try_lease(const std::string& name) override {
    if (database_.empty())
      return make_store_error(store_errc::invalid_argument,
                              "leases need a database file");
    return take_file_lease(database_, name);
  }

  caf::expected<std::optional<checkpoint>>
  load(const std::string& projection) override {
    std::lock_guard guard{mtx_};
    return detail::sqlite::load_checkpoint(*conn_, projection);
  }

  caf::expected<bool> reset(const std::string& projection) override {
    return with("DELETE FROM projection_checkpoints"
                " WHERE projection_name = ?1",
                [&](statement& st) -> caf::expected<bool> {
                  st.bind(1, std::string_view{projection});
                  auto rc = st.step();
                  if (rc != SQLITE_DONE)
                    return fail(rc, "cannot reset checkpoint");
                  return changes() > 0;
                });
  }

  caf::expected<std::vector<checkpoint>> list() override {
    return with("SELECT projection_name, global_position, event_id, event_type,"
                " events_processed, updated_at FROM projection_checkpoints"
                " ORDER BY projection_name",
                [&](statement& st) -> caf::expected<std::vector<checkpoint>> {
                  std::vector<checkpoint> result;
                  int rc;
                  while ((rc = st.step()) == SQLITE_ROW)
                    result.push_back(read_checkpoint(st));
                  if (rc != SQLITE_DONE)
                    return fail(rc, "cannot list checkpoints");
                  return result;
                });
  }

private:
  std::string database_;
};

constexpr const char* dead_letter_columns
  = "id, projection_name, event_id, global_position, event_type, event_data,"
    " error_message, error_context, retry_count, status, first_failed_at,"
    " last_failed_at, resolved_at, resolved_by";

dead_letter read_dead_letter(const statement& st) {
  dead_letter d;
  d.id = st.int64_at(0);
  d.projection = st.text_at(1);
  d.event_id = st.uuid_at(2);
  d.global_position = st.int64_at(3);
  d.event_type = st.text_at(4);
  d.event_data = st.text_at(5);
  d.error_message = st.text_at(6);
  d.error_context = st.text_at(7);
  d.retry_count = static_cast<int32_t>(st.int64_at(8));
  d.status = parse_dead_letter_status(st.text_at(9))
               .value_or(dead_letter_status::failed);
  d.first_failed_at = from_micros(st.int64_at(10));
  d.last_failed_at = from_micros(st.int64_at(11));
  if (!st.is_null(12))
    d.resolved_at = from_micros(st.int64_at(12));
  d.resolved_by = st.text_at(13);
  return d;
}

class sqlite_dead_letter_store final : public dead_letter_store,
                                       sqlite_state_base {
public:
  using sqlite_state_base::sqlite_state_base;

  caf::expected<int64_t> add(const dead_letter& e) override {
    std::lock_guard guard{mtx_};
    return detail::sqlite::add_dead_letter(*conn_, e);
  }

  caf::expected<std::optional<dead_letter>> get(int64_t id) override {
    return with(
      std::string{"SELECT "} + dead_letter_columns
        + " FROM dead_letter_queue WHERE id = ?1",
      [&](statement& st) -> caf::expected<std::optional<dead_letter>> {
        st.bind(1, id);
        auto rc = st.step();
        if (rc == SQLITE_DONE)
          return std::optional<dead_letter>{};
        if (rc != SQLITE_ROW)
          return fail(rc, "cannot read dead letter");
        return std::optional<dead_letter>{read_dead_letter(st)};
      });
  }

  caf::expected<std::vector<dead_letter>>
  list(const dead_letter_query& q) override {
    return with(
      std::string{"SELECT "} + dead_letter_columns
        + " FROM dead_letter_queue WHERE (?1 IS NULL OR projection_name = ?1)"
          " AND (?2 IS NULL OR status = ?2) ORDER BY id LIMIT ?3 OFFSET ?4",
      [&](statement& st) -> caf::expected<std::vector<dead_letter>> {
        std::string status = q.status ? to_string(*q.status) : "";
        if (q.projection)
          st.bind(1, std::string_view{*q.projection});
        else
          st.bind_null(1);
        if (q.status)
          st.bind(2, std::string_view{status});
        else
          st.bind_null(2);
        st.bind(3, static_cast<int64_t>(q.limit));
        st.bind(4, static_cast<int64_t>(q.offset));
        std::vector<dead_letter> result;
        int rc;
        while ((rc = st.step()) == SQLITE_ROW)
          result.push_back(read_dead_letter(st));
        if (rc != SQLITE_DONE)
          return fail(rc, "cannot list dead letters");
        return result;
      });
  }

  caf::expected<bool> mark_retrying(int64_t id) override {
    return with("UPDATE dead_letter_queue SET status = 'retrying'"
                " WHERE id = ?1",
                [&](statement& st) -> caf::expected<bool> {
                  st.bind(1, id);
                  return run_update(st);
                });
  }

  caf::expected<bool> mark_resolved(int64_t id,
                                    const std::string& by) override {
    return with("UPDATE dead_letter_queue SET status = 'resolved',"
                " resolved_at = ?2, resolved_by = ?3 WHERE id = ?1",
                [&](statement& st) -> caf::expected<bool> {
                  st.bind(1, id);
                  st.bind(2, micros(now_utc()));
                  st.bind(3, std::string_view{by});
                  return run_update(st);
                });
  }

  caf::expected<dead_letter_stats> stats() override {
    return with("SELECT status, projection_name, COUNT(*), MIN(first_failed_at)"
                " FROM dead_letter_queue GROUP BY status, projection_name",
                [&](statement& st) -> caf::expected<dead_letter_stats> {
                  dead_letter_stats result;
                  int rc;
                  while ((rc = st.step()) == SQLITE_ROW) {
                    auto status = parse_dead_letter_status(st.text_at(0))
                                    .value_or(dead_letter_status::failed);
                    auto n = st.int64_at(2);
                    result.total += n;
                    switch (status) {
                      case dead_letter_status::failed:
                        result.failed += n;
                        break;
                      case dead_letter_status::retrying:
                        result.retrying += n;
                        break;
                      case dead_letter_status::resolved:
                        result.resolved += n;
                        break;
                    }
                    if (status != dead_letter_status::resolved) {
                      result.by_projection[st.text_at(1)] += n;
                      auto oldest = from_micros(st.int64_at(3));
                      if (!result.oldest_unresolved
                          || oldest < *result.oldest_unresolved)
                        result.oldest_unresolved = oldest;
                    }
                  }
                  if (rc != SQLITE_DONE)
                    return fail(rc, "cannot count dead letters");
                  return result;
                });
  }

  caf::expected<int64_t> purge_resolved(std::chrono::seconds age) override {
    return with("DELETE FROM dead_letter_queue WHERE status = 'resolved'"
                " AND resolved_at < ?1",
                [&](statement& st) -> caf::expected<int64_t> {
                  st.bind(1, micros(now_utc() - age));
                  auto rc = st.step();
                  if (rc != SQLITE_DONE)
                    return fail(rc, "cannot purge dead letters");
                  return int64_t{changes()};
                });
  }

private:
  caf::expected<bool> run_update(statement& st) {
    auto rc = st.step();
    if (rc != SQLITE_DONE)
      return fail(rc, "cannot update dead letter");
    return changes() > 0;
  }
};

caf::expected<std::unique_ptr<connection>> open_state(const std::string& path) {
  return detail::sqlite::open_migrated(path, 500, "a SQLite state store");
}

} // namespace

caf::expected<snapshot_store_ptr>
make_sqlite_snapshot_store(const std::string& path) {
  auto conn = open_state(path);
  if (!conn)
    return std::move(conn.error());
  return snapshot_store_ptr{
    std::make_shared<sqlite_snapshot_store>(std::move(*conn))};
}

caf::expected<checkpoint_store_ptr>
make_sqlite_checkpoint_store(const std::string& path) {
  auto conn = open_state(path);
  if (!conn)
    return std::move(conn.error());
  // Lock files go next to the file itself, however it was named ("db",
  // "./db", a symlink), so every store on it agrees on them. Resolved now:
  // the working directory may change later.
  std::error_code ec;
  auto database = std::filesystem::canonical(path, ec);
  return checkpoint_store_ptr{std::make_shared<sqlite_checkpoint_store>(
    std::move(*conn), ec ? std::string{} : database.string())};
}

caf::expected<dead_letter_store_ptr>
make_sqlite_dead_letter_store(const std::string& path) {
  auto conn = open_state(path);
  if (!conn)
    return std::move(conn.error());
  return dead_letter_store_ptr{
    std::make_shared<sqlite_dead_letter_store>(std::move(*conn))};
}

} // namespace es
