// The SQLite outbox: rows written with appends (`sqlite_config::outbox`),
// claimed by relays for a while, marked when a claim commits.
#include "es/sqlite/sqlite.hpp"
#include "es/store/errors.hpp"
#include "es/store/outbox.hpp"

#include "connection.hpp"
#include "schema.hpp"
#include <sqlite3.h>

#include <memory>
#include <mutex>
#include <string>

namespace es {

namespace {

using detail::sqlite::connection;
using detail::sqlite::reset_guard;
using detail::sqlite::translate;

int64_t now_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// The shared connection of an outbox and its claims.
struct outbox_db {
  std::mutex mtx;
  std::unique_ptr<connection> conn;

  /// Runs `fn` inside an IMMEDIATE transaction under the lock.
  template <class F>
  caf::error transact(F fn) {
    std::lock_guard guard{mtx};
    if (auto err = conn->exec("BEGIN IMMEDIATE"))
      return err;
    if (auto err = fn(*conn)) {
      static_cast<void>(conn->exec("ROLLBACK"));
      return err;
    }
    if (auto err = conn->exec("COMMIT")) {
      static_cast<void>(conn->exec("ROLLBACK"));
      return err;
    }
    return caf::none;
  }
};

using outbox_db_ptr = std::shared_ptr<outbox_db>;

class sqlite_outbox_claim final : public outbox_claim {
public:
  sqlite_outbox_claim(outbox_db_ptr db, std::vector<outbox_entry> entries)
    : db_(std::move(db)), entries_(std::move(entries)) {
    // nop
  }

  const std::vector<outbox_entry>& entries() const override {
    return entries_;
  }

  caf::error mark_published(const std::vector<int64_t>& ids) override {
    if (committed_)
      return make_store_error(store_errc::invalid_argument,
                              "the claim was committed already");
    published_.insert(published_.end(), ids.begin(), ids.end());
    return caf::none;
  }

  caf::error mark_failed(int64_t id, const std::string& error) override {
    if (committed_)
      return make_store_error(store_errc::invalid_argument,
                              "the claim was committed already");
    failed_.emplace_back(id, error);
    return caf::none;
  }

  caf::error commit() override {
    if (committed_)
      return caf::none;
    committed_ = true;
    auto now = now_micros();
    return db_->transact([&](connection& conn) -> caf::error {
      for (auto id : published_) {
        auto st = conn.prepare(
          "UPDATE event_outbox SET status = 'published', published_at = ?2,"
          " claimed_until = NULL WHERE id = ?1");
        if (!st)
          return std::move(st.error());
        reset_guard guard{**st};
        (*st)->bind(1, id);
        (*st)->bind(2, now);
        if (auto rc = (*st)->step(); rc != SQLITE_DONE)
          return translate(rc, conn.handle(), "cannot mark outbox rows");
      }
      for (auto& [id, error] : failed_) {
        auto st
          = conn.prepare("UPDATE event_outbox SET status = 'failed',"
                         " retry_count = retry_count + 1, last_error = ?2,"
                         " claimed_until = NULL WHERE id = ?1");
        if (!st)
          return std::move(st.error());
        reset_guard guard{**st};
        (*st)->bind(1, id);
        (*st)->bind(2, std::string_view{error});
        if (auto rc = (*st)->step(); rc != SQLITE_DONE)
          return translate(rc, conn.handle(), "cannot mark outbox rows");
      }
      return caf::none;
    });
  }

private:
  outbox_db_ptr db_;
  std::vector<outbox_entry> entries_;
  std::vector<int64_t> published_;
  std::vector<std::pair<int64_t, std::string>> failed_;
  bool committed_ = false;
};

class sqlite_outbox final : public outbox {
public:
  sqlite_outbox(std::unique_ptr<connection> conn,
                std::chrono::milliseconds claim_timeout)
    : db_(std::make_shared<outbox_db>()), claim_timeout_(claim_timeout) {
    db_->conn = std::move(conn);
  }

  caf::expected<std::unique_ptr<outbox_claim>>
  claim(size_t limit, int32_t max_retries,
        outbox_partition partition) override {
    if (auto err = validate(partition))
      return err;
    std::vector<outbox_entry> entries;
    auto now = now_micros();
    auto until
      = now
        + std::chrono::duration_cast<std::chrono::microseconds>(claim_timeout_)
            .count();
    auto err = db_->transact([&](connection& conn) -> caf::error {
      auto st = conn.prepare(
        "SELECT id, event_id, global_position, event_type, aggregate_type,"
        " aggregate_id, tenant_id, retry_count, COALESCE(last_error, ''),"
        " created_at FROM event_outbox WHERE (status = 'pending'"
        " OR (status = 'failed' AND retry_count < ?1))"
        " AND (claimed_until IS NULL OR claimed_until < ?2) ORDER BY id");
      if (!st)
        return std::move(st.error());
      reset_guard guard{**st};
      (*st)->bind(1, int64_t{max_retries});
      (*st)->bind(2, now);
      int rc;
      while (entries.size() < limit && (rc = (*st)->step()) == SQLITE_ROW) {
        outbox_entry e;
        e.aggregate_id = (*st)->uuid_at(5);
        // The partition as `outbox_partition::contains` says; rows of other
        // partitions are skipped here (SQLite has no byte function).
        if (!partition.contains(e.aggregate_id))
          continue;
        e.id = (*st)->int64_at(0);
        e.event_id = (*st)->uuid_at(1);
        e.global_position = (*st)->int64_at(2);
        e.event_type = (*st)->text_at(3);
        e.aggregate_type = (*st)->text_at(4);
        e.tenant_id = (*st)->opt_uuid_at(6);
        e.retry_count = static_cast<int32_t>((*st)->int64_at(7));
        e.last_error = (*st)->text_at(8);
        e.created_at = timestamp{std::chrono::microseconds{(*st)->int64_at(9)}};
        entries.push_back(std::move(e));
      }
      for (const auto& e : entries) {
        auto up = conn.prepare(
          "UPDATE event_outbox SET claimed_until = ?2 WHERE id = ?1");
        if (!up)
          return std::move(up.error());
        reset_guard g{**up};
        (*up)->bind(1, e.id);
        (*up)->bind(2, until);
        if (auto rc2 = (*up)->step(); rc2 != SQLITE_DONE)
          return translate(rc2, conn.handle(), "cannot claim outbox rows");
      }
      return caf::none;
    });
    if (err)
      return err;
    return std::unique_ptr<outbox_claim>{
      new sqlite_outbox_claim(db_, std::move(entries))};
  }

  caf::expected<int64_t> cleanup(std::chrono::seconds age) override {
    int64_t removed = 0;
    auto cutoff
      = now_micros()
        - std::chrono::duration_cast<std::chrono::microseconds>(age).count();
    auto err = db_->transact([&](connection& conn) -> caf::error {
      auto st = conn.prepare("DELETE FROM event_outbox WHERE status ="
                             " 'published' AND published_at < ?1");
      if (!st)
        return std::move(st.error());
      reset_guard guard{**st};
      (*st)->bind(1, cutoff);
      if (auto rc = (*st)->step(); rc != SQLITE_DONE)
        return translate(rc, conn.handle(), "cannot clean up the outbox");
      removed = sqlite3_changes(conn.handle());
      return caf::none;
    });
    if (err)
      return err;
    return removed;
  }

  caf::expected<outbox_counts> counts() override {
    std::lock_guard guard{db_->mtx};
    auto st = db_->conn->prepare(
      "SELECT COALESCE(SUM(status = 'pending'), 0),"
      " COALESCE(SUM(status = 'published'), 0),"
      " COALESCE(SUM(status = 'failed'), 0),"
      " MIN(CASE WHEN status <> 'published' THEN created_at END)"
      " FROM event_outbox");
    if (!st)
      return std::move(st.error());
    reset_guard reset{**st};
    auto rc = (*st)->step();
    if (rc != SQLITE_ROW)
      return translate(rc, db_->conn->handle(), "cannot count outbox rows");
    outbox_counts c{
      (*st)->int64_at(0), (*st)->int64_at(1), (*st)->int64_at(2), {}};
    if (!(*st)->is_null(3))
      c.oldest_waiting
        = timestamp{std::chrono::microseconds{(*st)->int64_at(3)}};
    return c;
  }

private:
  outbox_db_ptr db_;
  std::chrono::milliseconds claim_timeout_;
};

} // namespace

caf::expected<outbox_ptr>
make_sqlite_outbox(const std::string& path,
                   std::chrono::milliseconds claim_timeout) {
  auto conn = detail::sqlite::open_migrated(path, 500, "a SQLite outbox");
  if (!conn)
    return std::move(conn.error());
  return outbox_ptr{
    std::make_shared<sqlite_outbox>(std::move(*conn), claim_timeout)};
}

} // namespace es
