#include "es/postgres/postgres.hpp"
#include "es/store/errors.hpp"
#include "es/store/outbox.hpp"

#include "connection.hpp"
#include "pool.hpp"

namespace es {

namespace {

using detail::pg::connection;
using detail::pg::params;
using detail::pg::pool;
using detail::pg::result;

class pg_outbox_claim final : public outbox_claim {
public:
  pg_outbox_claim(pool::lease conn, std::vector<outbox_entry> entries)
    : conn_(std::move(conn)), entries_(std::move(entries)) {
    // nop
  }

  ~pg_outbox_claim() override {
    if (open_)
      static_cast<void>(conn_->exec("ROLLBACK"));
  }

  const std::vector<outbox_entry>& entries() const override {
    return entries_;
  }

  caf::error mark_published(const std::vector<int64_t>& ids) override {
    if (!open_)
      return make_store_error(store_errc::invalid_argument,
                              "the claim was committed already");
    std::string list = "{";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0)
        list += ',';
      list += std::to_string(ids[i]);
    }
    list += '}';
    params ps;
    ps.add(list);
    auto r = conn_->run("es_outbox_published",
                        "UPDATE event_outbox SET status = 'published',"
                        " published_at = now() WHERE id = ANY ($1::bigint[])",
                        ps, true);
    return r ? caf::error{} : std::move(r.error());
  }

  caf::error mark_failed(int64_t id, const std::string& error) override {
    if (!open_)
      return make_store_error(store_errc::invalid_argument,
                              "the claim was committed already");
    params ps;
    ps.add(id);
    ps.add(error);
    auto r = conn_->run("es_outbox_failed",
                        "UPDATE event_outbox SET status = 'failed',"
                        " retry_count = retry_count + 1, last_error = $2"
                        " WHERE id = $1",
                        ps, true);
    return r ? caf::error{} : std::move(r.error());
  }

  caf::error commit() override {
    if (!open_)
      return caf::none;
    open_ = false;
    auto r = conn_->exec("COMMIT");
    return r ? caf::error{} : std::move(r.error());
  }

private:
  pool::lease conn_;
  std::vector<outbox_entry> entries_;
  bool open_ = true;
};

class pg_outbox final : public outbox {
public:
  explicit pg_outbox(const postgres_config& cfg) : pool_(cfg, 4) {
    // nop
  }

  caf::expected<std::unique_ptr<outbox_claim>>
  claim(size_t limit, int32_t max_retries,
        outbox_partition partition) override {
    if (auto err = validate(partition))
      return err;
    auto conn = pool_.take();
    if (!conn)
      return std::move(conn.error());
    auto begin = (*conn)->exec("BEGIN");
    if (!begin)
      return std::move(begin.error());
    params ps;
    ps.add(static_cast<int64_t>(limit));
    ps.add(int64_t{max_retries});
    ps.add(int64_t{partition.count});
    ps.add(int64_t{partition.index});
    // The partition as `outbox_partition::contains` computes it: the id's
    // last byte modulo the count.
    auto r = (*conn)->run(
      "es_outbox_claim_part",
      "SELECT id, event_id, global_position, event_type, aggregate_type,"
      " aggregate_id, tenant_id, retry_count, COALESCE(last_error, ''),"
      " created_at FROM event_outbox WHERE (status = 'pending'"
      " OR (status = 'failed' AND retry_count < $2))"
      " AND ($3 = 1 OR get_byte(uuid_send(aggregate_id), 15) % $3 = $4)"
      " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
      ps, true);
    if (!r) {
      static_cast<void>((*conn)->exec("ROLLBACK"));
      return std::move(r.error());
    }
    std::vector<outbox_entry> entries;
    for (int row = 0; row < r->rows(); ++row) {
      outbox_entry e;
      e.id = r->int8(row, 0);
      e.event_id = r->uuid_at(row, 1);
      e.global_position = r->int8(row, 2);
      e.event_type = r->text(row, 3);
      e.aggregate_type = r->text(row, 4);
      e.aggregate_id = r->uuid_at(row, 5);
      e.tenant_id = r->opt_uuid(row, 6);
      e.retry_count = r->int4(row, 7);
      e.last_error = r->text(row, 8);
      e.created_at = r->time_at(row, 9);
      entries.push_back(std::move(e));
    }
    return std::unique_ptr<outbox_claim>{
      new pg_outbox_claim(std::move(*conn), std::move(entries))};
  }

  caf::expected<int64_t> cleanup(std::chrono::seconds age) override {
    auto conn = pool_.take();
    if (!conn)
      return std::move(conn.error());
    params ps;
    ps.add(static_cast<int64_t>(age.count()));
    auto r = (*conn)->run(
      "es_outbox_cleanup",
      "WITH gone AS (DELETE FROM event_outbox WHERE status = 'published'"
      " AND published_at < now() - $1::bigint * interval '1 second'"
      " RETURNING 1) SELECT COUNT(*)::bigint FROM gone",
      ps, true);
    if (!r)
      return std::move(r.error());
    return r->int8(0, 0);
  }

  caf::expected<outbox_counts> counts() override {
    auto conn = pool_.take();
    if (!conn)
      return std::move(conn.error());
    auto r = (*conn)->run(
      "es_outbox_counts2",
      "SELECT COUNT(*) FILTER (WHERE status = 'pending')::bigint,"
      " COUNT(*) FILTER (WHERE status = 'published')::bigint,"
      " COUNT(*) FILTER (WHERE status = 'failed')::bigint,"
      " MIN(created_at) FILTER (WHERE status <> 'published')"
      " FROM event_outbox",
      params{}, true);
    if (!r)
      return std::move(r.error());
    outbox_counts result{r->int8(0, 0), r->int8(0, 1), r->int8(0, 2), {}};
    if (!r->is_null(0, 3))
      result.oldest_waiting = r->time_at(0, 3);
    return result;
  }

private:
  pool pool_;
};

} // namespace

caf::expected<outbox_ptr> make_postgres_outbox(const postgres_config& cfg) {
  if (cfg.migrate)
    if (auto err = postgres_migrate(cfg))
      return err;
  return outbox_ptr{std::make_shared<pg_outbox>(cfg)};
}

} // namespace es
