// The fault-injecting PostgreSQL proxy against the real server, with raw
// libpq: traffic passes through unchanged, and each ready-made rule cuts
// where it says, with the outcome checked over a direct connection.
#include "pg_fixture.hpp"
#include "pg_proxy.hpp"
#include <catch2/catch.hpp>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace es;
using namespace es::test;
using namespace std::chrono_literals;

namespace {

/// Owns a PGresult.
using pg_result = std::unique_ptr<PGresult, decltype(&PQclear)>;

pg_result take(PGresult* res) {
  return {res, &PQclear};
}

/// Owns a PGconn.
class pg_conn {
public:
  explicit pg_conn(const std::string& dsn) : conn_(PQconnectdb(dsn.c_str())) {
    // nop
  }

  ~pg_conn() {
    PQfinish(conn_);
  }

  pg_conn(const pg_conn&) = delete;
  pg_conn& operator=(const pg_conn&) = delete;

  PGconn* get() const {
    return conn_;
  }

  pg_result exec(const std::string& sql) const {
    return take(PQexec(conn_, sql.c_str()));
  }

  bool ok() const {
    return PQstatus(conn_) == CONNECTION_OK;
  }

private:
  PGconn* conn_;
};

ExecStatusType status_of(const pg_result& res) {
  return PQresultStatus(res.get());
}

std::string sqlstate_of(const pg_result& res) {
  const char* state = PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
  return state != nullptr ? state : "";
}

uint32_t be32(std::string_view bytes) {
  uint32_t result = 0;
  for (size_t i = 0; i < 4 && i < bytes.size(); ++i)
    result = (result << 8) | static_cast<unsigned char>(bytes[i]);
  return result;
}

/// A proxy in front of the test server and a fresh schema holding
/// `t (id int PRIMARY KEY, note text)`, dropped afterwards.
struct proxy_fixture {
  /// FAILs with instructions when the server is not reachable.
  pg_admin admin;
  std::unique_ptr<pg_proxy> proxy;
  std::string schema;

  proxy_fixture() {
    auto server = pg_endpoint_of(pg_test_dsn());
    proxy = std::make_unique<pg_proxy>(server.host, server.port);
    schema = "es_t_" + uuid::random().to_string().substr(0, 8);
    admin.exec("CREATE SCHEMA " + schema);
    admin.exec("CREATE TABLE " + schema
               + ".t (id int PRIMARY KEY, note text NOT NULL)");
  }

  ~proxy_fixture() {
    // No FAIL in a destructor: a schema left behind is only clutter.
    std::string msg;
    admin.try_exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE", msg);
  }

  /// A connection through the proxy whose search_path is the schema.
  std::unique_ptr<pg_conn> connect() {
    auto conn = std::make_unique<pg_conn>(proxy->dsn(pg_dsn_for(schema)));
    require_pg_server(conn->get());
    return conn;
  }

  /// How many rows of `t` have `id`, seen over a direct connection.
  int rows_with(int id) {
    return std::stoi(admin.value("SELECT count(*) FROM " + schema
                                 + ".t WHERE id = " + std::to_string(id)));
  }

  /// Runs `query` until it returns `expected`; false after a deadline.
  bool await_value(const std::string& query, const std::string& expected) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (admin.value(query) == expected)
        return true;
      // Paces the polling: the server offers nothing to wait on.
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }

  /// Waits until backend `pid` has left pg_stat_activity, which it does
  /// after ending its transaction.
  bool backend_gone(int pid) {
    return await_value("SELECT count(*) FROM pg_stat_activity WHERE pid = "
                         + std::to_string(pid),
                       "0");
  }

  /// Waits until backend `pid` runs pg_sleep.
  bool backend_sleeping(int pid) {
    return await_value("SELECT count(*) FROM pg_stat_activity WHERE pid = "
                         + std::to_string(pid) + " AND wait_event = 'PgSleep'",
                       "1");
  }
};

/// Collects a pipeline's results up to its sync point or the connection's
/// end.
std::vector<ExecStatusType> drain_pipeline(PGconn* conn) {
  std::vector<ExecStatusType> statuses;
  for (int nulls = 0; nulls < 2 && statuses.size() < 16;) {
    auto res = take(PQgetResult(conn));
    if (res == nullptr) {
      ++nulls;
      continue;
    }
    nulls = 0;
    statuses.push_back(status_of(res));
    if (statuses.back() == PGRES_PIPELINE_SYNC)
      break;
  }
  return statuses;
}

/// Text of `size` printable characters that differs with `seed`.
std::string payload(size_t size, uint32_t seed) {
  std::string result(size, ' ');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : result) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>('a' + (x >> 24) % 26);
  }
  return result;
}

/// What a recording rule saw of one message.
struct seen {
  uint64_t connection;
  bool from_client;
  char type;
  size_t size;
  /// The code of an untyped frontend message, the byte of an answer.
  uint32_t code;
};

/// A rule that records every message and forwards it. Read the log after
/// clear_rule, which no rule call outlives; the log must outlive the proxy.
pg_proxy_rule recorder(std::vector<seen>& log) {
  return [&log](const pg_message& msg) {
    uint32_t code = 0;
    if (msg.type == 0)
      code = msg.body.size() >= 4
               ? be32(msg.body)
               : static_cast<unsigned char>(msg.body.front());
    log.push_back(
      {msg.connection, msg.from_client, msg.type, msg.body.size(), code});
    return pg_proxy_action::forward;
  };
}

size_t count_of(const std::vector<seen>& log, bool from_client, char type) {
  size_t n = 0;
  for (const auto& m : log)
    if (m.from_client == from_client && m.type == type)
      ++n;
  return n;
}

/// The value `dsn` gives `keyword`, as libpq parses it; empty when unset.
std::string dsn_value(const std::string& dsn, const char* keyword) {
  char* err = nullptr;
  auto* opts = PQconninfoParse(dsn.c_str(), &err);
  if (opts == nullptr) {
    std::string msg = err != nullptr ? err : "out of memory";
    PQfreemem(err);
    FAIL("cannot parse '" << dsn << "': " << msg);
  }
  std::string result;
  for (auto* o = opts; o->keyword != nullptr; ++o)
    if (o->val != nullptr && std::strcmp(o->keyword, keyword) == 0)
      result = o->val;
  PQconninfoFree(opts);
  return result;
}

/// Big-endian bytes of `x`.
std::string int32(uint32_t x) {
  return std::string{static_cast<char>(x >> 24), static_cast<char>(x >> 16),
                     static_cast<char>(x >> 8), static_cast<char>(x)};
}

/// A client that speaks the protocol byte by byte.
class raw_client {
public:
  explicit raw_client(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    REQUIRE(fd_ >= 0);
    // A broken proxy fails the test instead of hanging it.
    timeval limit{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr)
            == 0);
  }

  ~raw_client() {
    close();
  }

  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  void close() {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
  }

  /// Sends `bytes` three at a time, so the proxy sees messages in pieces.
  void send_in_pieces(const std::string& bytes) {
    for (size_t pos = 0; pos < bytes.size(); pos += 3) {
      auto piece = std::min<size_t>(3, bytes.size() - pos);
      REQUIRE(::send(fd_, bytes.data() + pos, piece, MSG_NOSIGNAL)
              == static_cast<ssize_t>(piece));
    }
  }

  /// Reads `n` bytes, fewer at the end of the stream.
  std::string read_exactly(size_t n) {
    std::string result(n, '\0');
    size_t got = 0;
    while (got < n) {
      auto r = ::recv(fd_, result.data() + got, n - got, 0);
      if (r <= 0)
        break;
      got += static_cast<size_t>(r);
    }
    result.resize(got);
    return result;
  }

  /// Reads up to the end of the stream.
  std::string read_until_end() {
    std::string result;
    for (;;) {
      auto more = read_exactly(4096);
      result += more;
      if (more.size() < 4096)
        return result;
    }
  }

private:
  int fd_;
};

constexpr uint32_t protocol_3_0 = 196608;
constexpr uint32_t ssl_request = 80877103;
constexpr uint32_t gssenc_request = 80877104;
constexpr uint32_t cancel_request = 80877102;

} // namespace

TEST_CASE("a later keyword wins in a DSN; dsn() points at the proxy",
          "[postgres][proxy]") {
  // What libpq does with repeated keywords: the last one counts.
  CHECK(dsn_value("host=a port=1 host=b port=2", "host") == "b");
  CHECK(dsn_value("host=a port=1 host=b port=2", "port") == "2");
  // Nothing connects here, so the upstream need not exist.
  pg_proxy proxy{"127.0.0.1", 1};
  auto port = std::to_string(proxy.port());
  auto kv = proxy.dsn("hostaddr=10.0.0.1 host=db port=5 dbname=x "
                      "application_name='it\\'s'");
  CHECK(dsn_value(kv, "host") == "127.0.0.1");
  CHECK(dsn_value(kv, "hostaddr").empty());
  CHECK(dsn_value(kv, "port") == port);
  CHECK(dsn_value(kv, "dbname") == "x");
  CHECK(dsn_value(kv, "application_name") == "it's");
  auto uri = proxy.dsn("postgresql://u@db:5/x?connect_timeout=3");
  CHECK(dsn_value(uri, "host") == "127.0.0.1");
  CHECK(dsn_value(uri, "port") == port);
  CHECK(dsn_value(uri, "user") == "u");
  CHECK(dsn_value(uri, "dbname") == "x");
  CHECK(dsn_value(uri, "connect_timeout") == "3");
  CHECK_THROWS_AS(proxy.dsn("host='unterminated"), std::invalid_argument);
  auto server = pg_endpoint_of("host=db hostaddr=10.0.0.1 port=6543");
  CHECK(server.host == "10.0.0.1");
  CHECK(server.port == 6543);
  CHECK_THROWS_AS(pg_endpoint_of("host=/tmp port=1"), std::invalid_argument);
  CHECK(proxy.connections() == 0);
}

TEST_CASE("queries pass through the proxy unchanged", "[postgres][proxy]") {
  std::vector<seen> log; // outlives the proxy, which calls the recorder
  proxy_fixture fx;
  fx.proxy->set_rule(recorder(log));
  auto conn = fx.connect();
  auto* c = conn->get();
  CHECK(fx.proxy->connections() == 1);
  {
    auto res = conn->exec("SELECT 1 + 1, 'hello'::text");
    REQUIRE(status_of(res) == PGRES_TUPLES_OK);
    CHECK(std::string{PQgetvalue(res.get(), 0, 0)} == "2");
    CHECK(std::string{PQgetvalue(res.get(), 0, 1)} == "hello");
  }
  // An extended-protocol pipeline carrying several MB each way.
  std::vector<std::string> texts;
  for (uint32_t i = 0; i < 4; ++i)
    texts.push_back(payload(1'500'000 + i, i));
  REQUIRE(PQenterPipelineMode(c) == 1);
  for (const auto& text : texts) {
    const char* values[] = {text.c_str()};
    REQUIRE(PQsendQueryParams(c, "SELECT $1::text, length($1::text)", 1,
                              nullptr, values, nullptr, nullptr, 0)
            == 1);
  }
  REQUIRE(PQpipelineSync(c) == 1);
  for (const auto& text : texts) {
    auto res = take(PQgetResult(c));
    REQUIRE(status_of(res) == PGRES_TUPLES_OK);
    auto echoed
      = std::string_view{PQgetvalue(res.get(), 0, 0),
                         static_cast<size_t>(PQgetlength(res.get(), 0, 0))};
    CHECK(echoed.size() == text.size());
    CHECK((echoed == text));
    CHECK(std::string{PQgetvalue(res.get(), 0, 1)}
          == std::to_string(text.size()));
    auto terminator = take(PQgetResult(c));
    CHECK(terminator.get() == nullptr);
  }
  CHECK(status_of(take(PQgetResult(c))) == PGRES_PIPELINE_SYNC);
  REQUIRE(PQexitPipelineMode(c) == 1);
  CHECK(status_of(conn->exec("SELECT 1")) == PGRES_TUPLES_OK);
  fx.proxy->clear_rule();
  CHECK(fx.proxy->cuts() == 0);

  // The proxy framed every message: the untyped start (libpq asks for SSL
  // first unless told not to), then typed messages both ways.
  REQUIRE(log.size() > 4);
  for (const auto& m : log)
    CHECK(m.connection == 1);
  size_t i = 0;
  if (log[0].from_client && log[0].type == 0 && log[0].code == ssl_request) {
    CHECK_FALSE(log[1].from_client);
    CHECK(log[1].type == 0);
    CHECK(log[1].code == 'N');
    i = 2;
  }
  CHECK(log[i].from_client);
  CHECK(log[i].type == 0);
  CHECK(log[i].code == protocol_3_0);
  CHECK_FALSE(log[i + 1].from_client);
  CHECK(log[i + 1].type == 'R');
  CHECK(count_of(log, true, 'Q') == 2);
  CHECK(count_of(log, true, 'P') == 4);
  CHECK(count_of(log, true, 'B') == 4);
  CHECK(count_of(log, true, 'E') == 4);
  CHECK(count_of(log, true, 'S') == 1);
  CHECK(count_of(log, false, 'Z') == 4); // startup, 2 queries, the sync
  size_t big_binds = 0;
  size_t big_rows = 0;
  for (const auto& m : log) {
    big_binds += m.from_client && m.type == 'B' && m.size > 1'500'000;
    big_rows += !m.from_client && m.type == 'D' && m.size > 1'500'000;
  }
  CHECK(big_binds == 4);
  CHECK(big_rows == 4);
}

TEST_CASE("the untyped start is framed however the bytes arrive",
          "[postgres][proxy]") {
  std::vector<seen> log; // outlives the proxy, which calls the recorder
  proxy_fixture fx;
  fx.proxy->set_rule(recorder(log));
  raw_client client{fx.proxy->port()};
  client.send_in_pieces(int32(8) + int32(ssl_request));
  CHECK(client.read_exactly(1) == "N");
  std::string params = std::string{"user"} + '\0' + PQuser(fx.admin.handle())
                       + '\0' + "database" + '\0' + PQdb(fx.admin.handle())
                       + '\0' + '\0';
  client.send_in_pieces(int32(static_cast<uint32_t>(8 + params.size()))
                        + int32(protocol_3_0) + params);
  // Typed messages up to ReadyForQuery (the test server trusts us).
  for (int n = 0; n < 100; ++n) {
    auto header = client.read_exactly(5);
    REQUIRE(header.size() == 5);
    auto body = client.read_exactly(be32(header.substr(1)) - 4);
    if (header[0] == 'Z')
      break;
    if (header[0] == 'R')
      REQUIRE(be32(body) == 0); // AuthenticationOk
  }
  client.send_in_pieces(std::string{'X'} + int32(4)); // Terminate
  // The server ends the session; the proxy then closes our side.
  CHECK(client.read_exactly(1).empty());
  fx.proxy->clear_rule();
  CHECK(fx.proxy->cuts() == 0);
  REQUIRE(log.size() >= 5);
  CHECK(log[0].from_client);
  CHECK(log[0].type == 0);
  CHECK(log[0].code == ssl_request);
  CHECK_FALSE(log[1].from_client);
  CHECK(log[1].type == 0);
  CHECK(log[1].size == 1);
  CHECK(log[1].code == 'N');
  CHECK(log[2].from_client);
  CHECK(log[2].type == 0);
  CHECK(log[2].code == protocol_3_0);
  CHECK(log[2].size == 4 + params.size());
  CHECK(log[3].type == 'R');
  CHECK(count_of(log, false, 'Z') == 1);
  CHECK(count_of(log, true, 'X') == 1);
}

TEST_CASE("after an accepted GSSENCRequest the proxy stops parsing",
          "[postgres][proxy]") {
  std::vector<seen> log; // outlives the proxy, which calls the recorder
  proxy_fixture fx;
  fx.proxy->set_rule(recorder(log));
  raw_client client{fx.proxy->port()};
  client.send_in_pieces(int32(8) + int32(gssenc_request));
  auto answer = client.read_exactly(1);
  REQUIRE(answer.size() == 1);
  if (answer == "G") {
    // A server built with GSSAPI accepts on TCP even with no credentials
    // set up; what follows would be encrypted. Bytes that are no valid
    // message pass unparsed, and the server gives up on them.
    client.send_in_pieces(int32(2) + "zz");
    CHECK(client.read_until_end().size() < 1000);
  } else {
    CHECK(answer == "N");
  }
  client.close();
  fx.proxy->clear_rule();
  REQUIRE(log.size() >= 2);
  CHECK(log[0].from_client);
  CHECK(log[0].type == 0);
  CHECK(log[0].code == gssenc_request);
  CHECK_FALSE(log[1].from_client);
  CHECK(log[1].type == 0);
  CHECK(log[1].code == static_cast<unsigned char>(answer[0]));
  if (answer == "G")
    CHECK(log.size() == 2);
}

TEST_CASE("a cut before the COMMIT reply loses the reply, not the commit",
          "[postgres][proxy]") {
  proxy_fixture fx;
  fx.proxy->set_rule(pg_rules::cut_before_command_complete("COMMIT"));
  auto conn = fx.connect();
  int pid = PQbackendPID(conn->get());
  REQUIRE(status_of(conn->exec("BEGIN")) == PGRES_COMMAND_OK);
  REQUIRE(status_of(conn->exec("INSERT INTO t VALUES (1, 'one')"))
          == PGRES_COMMAND_OK);
  auto res = conn->exec("COMMIT");
  INFO(PQerrorMessage(conn->get()));
  CHECK(status_of(res) == PGRES_FATAL_ERROR);
  CHECK(sqlstate_of(res).empty());
  CHECK_FALSE(conn->ok());
  CHECK(fx.proxy->cuts() == 1);
  REQUIRE(fx.backend_gone(pid));
  CHECK(fx.rows_with(1) == 1);
}

TEST_CASE("a cut before the client's COMMIT rolls the transaction back",
          "[postgres][proxy]") {
  proxy_fixture fx;
  fx.proxy->set_rule(pg_rules::cut_before_query("commit"));
  auto conn = fx.connect();
  int pid = PQbackendPID(conn->get());
  REQUIRE(status_of(conn->exec("BEGIN")) == PGRES_COMMAND_OK);
  REQUIRE(status_of(conn->exec("INSERT INTO t VALUES (1, 'one')"))
          == PGRES_COMMAND_OK);
  auto res = conn->exec("COMMIT");
  INFO(PQerrorMessage(conn->get()));
  CHECK(status_of(res) == PGRES_FATAL_ERROR);
  CHECK_FALSE(conn->ok());
  CHECK(fx.proxy->cuts() == 1);
  REQUIRE(fx.backend_gone(pid));
  CHECK(fx.rows_with(1) == 0);
}

TEST_CASE("an implicit-transaction pipeline commits at its Sync",
          "[postgres][proxy]") {
  proxy_fixture fx;
  bool cut_before_ready = GENERATE(true, false);
  if (cut_before_ready)
    fx.proxy->set_rule(pg_rules::cut_before_ready_after("INSERT"));
  else
    fx.proxy->set_rule(pg_rules::cut_before_sync_after_bind(""));
  auto conn = fx.connect();
  auto* c = conn->get();
  int pid = PQbackendPID(c);
  REQUIRE(PQenterPipelineMode(c) == 1);
  for (int id : {1, 2}) {
    auto text = std::to_string(id);
    const char* values[] = {text.c_str()};
    REQUIRE(PQsendQueryParams(c, "INSERT INTO t VALUES ($1::int, 'piped')", 1,
                              nullptr, values, nullptr, nullptr, 0)
            == 1);
  }
  REQUIRE(PQpipelineSync(c) == 1);
  auto statuses = drain_pipeline(c);
  INFO(PQerrorMessage(c));
  CHECK_FALSE(conn->ok());
  CHECK(fx.proxy->cuts() == 1);
  REQUIRE_FALSE(statuses.empty());
  CHECK(statuses.back() == PGRES_FATAL_ERROR);
  REQUIRE(fx.backend_gone(pid));
  if (cut_before_ready) {
    // The server committed at the Sync; the client saw both inserts
    // complete, then lost the connection instead of the sync point.
    CHECK(statuses
          == std::vector<ExecStatusType>{PGRES_COMMAND_OK, PGRES_COMMAND_OK,
                                         PGRES_FATAL_ERROR});
    CHECK(fx.rows_with(1) == 1);
    CHECK(fx.rows_with(2) == 1);
  } else {
    // Without the Sync the implicit transaction never commits, and the
    // server, which flushes its replies at the Sync, sent none.
    CHECK(statuses == std::vector<ExecStatusType>{PGRES_FATAL_ERROR});
    CHECK(fx.rows_with(1) == 0);
    CHECK(fx.rows_with(2) == 0);
  }
}

TEST_CASE("a cut after a unique violation delivers the error, then closes",
          "[postgres][proxy]") {
  proxy_fixture fx;
  fx.admin.exec("INSERT INTO " + fx.schema + ".t VALUES (1, 'first')");
  fx.proxy->set_rule(pg_rules::cut_after_error("23505"));
  auto conn = fx.connect();
  auto* c = conn->get();
  // An error of another class passes.
  CHECK(sqlstate_of(conn->exec("SELECT 1/0")) == "22012");
  REQUIRE(conn->ok());
  const char* insert = "INSERT INTO t VALUES (1, 'again')";
  SECTION("PQexec keeps the last result: the lost connection's") {
    auto res = conn->exec(insert);
    std::string msg = PQresultErrorMessage(res.get());
    std::string conn_msg = PQerrorMessage(c);
    INFO(conn_msg);
    CHECK(status_of(res) == PGRES_FATAL_ERROR);
    // The result tells only of the lost connection, without a SQLSTATE; the
    // connection's message holds the server's error too.
    CHECK(msg.find("server closed the connection") != std::string::npos);
    CHECK(msg.find("duplicate key") == std::string::npos);
    CHECK(sqlstate_of(res).empty());
    CHECK(conn_msg.find("duplicate key") != std::string::npos);
  }
  SECTION("PQgetResult returns the error, then the lost connection") {
    REQUIRE(PQsendQuery(c, insert) == 1);
    auto error = take(PQgetResult(c));
    CHECK(sqlstate_of(error) == "23505");
    auto lost = take(PQgetResult(c));
    INFO(PQresultErrorMessage(lost.get()));
    CHECK(status_of(lost) == PGRES_FATAL_ERROR);
    CHECK(sqlstate_of(lost).empty());
    auto end = take(PQgetResult(c));
    CHECK(end.get() == nullptr);
  }
  CHECK_FALSE(conn->ok());
  CHECK(fx.proxy->cuts() == 1);
}

TEST_CASE("a cancel request passes; cut_all closes what is open",
          "[postgres][proxy]") {
  proxy_fixture fx;
  auto conn = fx.connect();
  auto* c = conn->get();
  int pid = PQbackendPID(c);
  REQUIRE(PQsendQuery(c, "SELECT pg_sleep(30)") == 1);
  // A cancel that arrives before the query runs is lost.
  REQUIRE(fx.backend_sleeping(pid));
  // The CancelRequest goes through the proxy on a connection of its own.
  auto* cancel = PQgetCancel(c);
  REQUIRE(cancel != nullptr);
  char err[256] = {};
  CHECK(PQcancel(cancel, err, sizeof err) == 1);
  PQfreeCancel(cancel);
  auto res = take(PQgetResult(c));
  INFO(PQresStatus(status_of(res)) << ": " << PQresultErrorMessage(res.get()));
  CHECK(sqlstate_of(res) == "57014");
  auto terminator = take(PQgetResult(c));
  CHECK(terminator.get() == nullptr);
  CHECK(fx.proxy->connections() == 2);
  REQUIRE(status_of(conn->exec("SELECT 1")) == PGRES_TUPLES_OK);
  fx.proxy->cut_all();
  CHECK(fx.proxy->cuts() == 1); // the cancel connection had ended
  CHECK(status_of(conn->exec("SELECT 1")) == PGRES_FATAL_ERROR);
  CHECK_FALSE(conn->ok());
  CHECK(fx.backend_gone(pid));
}

TEST_CASE("destroying the proxy with open connections returns promptly",
          "[postgres][proxy]") {
  proxy_fixture fx;
  auto idle = fx.connect();
  auto busy = fx.connect();
  int busy_pid = PQbackendPID(busy->get());
  REQUIRE(PQsendQuery(busy->get(), "SELECT pg_sleep(30)") == 1);
  auto start = std::chrono::steady_clock::now();
  fx.proxy.reset();
  auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed < 5s);
  auto res = take(PQgetResult(busy->get()));
  CHECK(status_of(res) == PGRES_FATAL_ERROR);
  CHECK_FALSE(busy->ok());
  CHECK(status_of(idle->exec("SELECT 1")) == PGRES_FATAL_ERROR);
  CHECK_FALSE(idle->ok());
  // The sleeping backend notices its client only when it next talks to it.
  fx.admin.value("SELECT pg_terminate_backend(" + std::to_string(busy_pid)
                 + ")");
  CHECK(fx.backend_gone(busy_pid));
}
