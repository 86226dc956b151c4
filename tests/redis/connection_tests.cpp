// The connection layer against a real Redis server (ES_TEST_REDIS_URL):
// login, commands, error replies, pipelines, binary-safe arguments,
// blocking reads with their own timeout, and a server restart.
#include "es/redis/redis.hpp"
#include "es/store/errors.hpp"

#include "connection.hpp"
#include "redis_fixture.hpp"
#include <catch2/catch.hpp>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

using namespace es;
using namespace es::test;
using detail::redis::connection;
using detail::redis::reply;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

/// A loopback port nothing listens on: bound once by the kernel's choice,
/// then closed.
uint16_t unused_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

} // namespace

TEST_CASE("a connection logs in with the right password", "[redis][connect]") {
  auto conn = connect_test_redis();
  CHECK_FALSE(conn.broken());
  auto pong = must(conn, {"PING"});
  CHECK(pong.is_status("PONG"));
  // The URL's database is selected.
  auto url = test_redis_url();
  auto info = must(conn, {"CLIENT", "INFO"});
  REQUIRE(info.is_string());
  CHECK(info.str().find(" db=" + std::to_string(url.db) + " ")
        != std::string::npos);
}

TEST_CASE("a wrong or missing password is authentication_failed",
          "[redis][connect]") {
  auto url = test_redis_url();
  REQUIRE_FALSE(url.password.empty()); // scripts/redis requires one
  SECTION("wrong password") {
    url.password = "not-the-password";
    auto conn = connection::open(url, seconds{2}, seconds{2});
    REQUIRE_FALSE(conn);
    CHECK(has_code(conn.error(), redis_errc::authentication_failed));
    auto text = describe(conn.error());
    CAPTURE(text);
    CHECK(text.find("WRONGPASS") != std::string::npos);
    CHECK(text.find("not-the-password") == std::string::npos);
    CHECK_FALSE(is_retryable(conn.error()));
  }
  SECTION("no password") {
    url.password.clear();
    auto conn = connection::open(url, seconds{2}, seconds{2});
    REQUIRE_FALSE(conn);
    CHECK(has_code(conn.error(), redis_errc::authentication_failed));
    CHECK(describe(conn.error()).find("NOAUTH") != std::string::npos);
  }
  SECTION("an unknown ACL user") {
    url.username = "no-such-user";
    auto conn = connection::open(url, seconds{2}, seconds{2});
    REQUIRE_FALSE(conn);
    CHECK(has_code(conn.error(), redis_errc::authentication_failed));
  }
}

TEST_CASE("the default user logs in with the Redis 6 ACL form too",
          "[redis][connect]") {
  auto url = test_redis_url();
  url.username = "default";
  auto conn = connection::open(url, seconds{2}, seconds{2});
  REQUIRE(conn);
  CHECK(must(*conn, {"ACL", "WHOAMI"}).str() == "default");
}

TEST_CASE("a database the server does not have is a server_error",
          "[redis][connect]") {
  auto url = test_redis_url();
  url.db = 100000;
  auto conn = connection::open(url, seconds{2}, seconds{2});
  REQUIRE_FALSE(conn);
  CHECK(has_code(conn.error(), redis_errc::server_error));
  CHECK(describe(conn.error()).find("SELECT 100000") != std::string::npos);
}

TEST_CASE("an unreachable server is connection_failed naming host:port",
          "[redis][connect]") {
  auto url = test_redis_url();
  url.host = "127.0.0.1";
  url.port = unused_port();
  auto conn = connection::open(url, seconds{2}, seconds{2});
  REQUIRE_FALSE(conn);
  CHECK(has_code(conn.error(), redis_errc::connection_failed));
  CHECK(is_retryable(conn.error()));
  auto text = describe(conn.error());
  CAPTURE(text);
  CHECK(text.find("127.0.0.1:" + std::to_string(url.port))
        != std::string::npos);
}

TEST_CASE("SET, GET and INCR round-trip", "[redis][commands]") {
  auto conn = connect_test_redis();
  test_keys keys;
  auto k = keys("value");
  auto n = keys("counter");
  CHECK(must(conn, {"SET", k, "hello"}).is_status("OK"));
  auto got = must(conn, {"GET", k});
  REQUIRE(got.is_string());
  CHECK(got.str() == "hello");
  CHECK(must(conn, {"GET", keys("missing")}).is_nil());
  for (int64_t i = 1; i <= 3; ++i) {
    auto x = must(conn, {"INCR", n});
    REQUIRE(x.is_integer());
    CHECK(x.integer() == i);
  }
  CHECK(must(conn, {"INCRBY", n, "-10"}).integer() == -7);
  CHECK(must(conn, {"GET", n}).str() == "-7");
  auto both = must(conn, {"MGET", k, n, keys("none")});
  REQUIRE(both.is_array());
  REQUIRE(both.size() == 3);
  CHECK(both[0].str() == "hello");
  CHECK(both[1].str() == "-7");
  CHECK(both[2].is_nil());
}

TEST_CASE("an error reply is a reply, and the connection stays usable",
          "[redis][commands]") {
  auto conn = connect_test_redis();
  test_keys keys;
  auto k = keys("text");
  CHECK(must(conn, {"SET", k, "not a number"}).is_status("OK"));
  auto res = conn.command({"INCR", k});
  REQUIRE(res); // the server answered: not a caf::error
  REQUIRE(res->is_error());
  CHECK(res->str().rfind("ERR", 0) == 0);
  CHECK(has_code(to_error(*res, "INCR"), redis_errc::server_error));
  CHECK_FALSE(conn.broken());
  auto unknown = must(conn, {"NO-SUCH-COMMAND", "x"});
  CHECK(unknown.is_error());
  CHECK(must(conn, {"GET", k}).str() == "not a number");
}

TEST_CASE("a pipeline of 1000 XADDs takes one call", "[redis][pipeline]") {
  auto conn = connect_test_redis();
  test_keys keys;
  auto stream = keys("stream");
  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < 1000; ++i)
    cmds.push_back({"XADD", stream, "*", "n", std::to_string(i)});
  auto replies = conn.pipeline(cmds);
  REQUIRE(replies);
  REQUIRE(replies->size() == 1000);
  for (const auto& r : *replies)
    REQUIRE(r.is_string()); // the entry id
  auto len = must(conn, {"XLEN", stream});
  REQUIRE(len.is_integer());
  CHECK(len.integer() == 1000);
  // The last entry holds the last value.
  auto last = must(conn, {"XREVRANGE", stream, "+", "-", "COUNT", "1"});
  REQUIRE(last.size() == 1);
  CHECK(last[0][0].str() == (*replies)[999].str());
  CHECK(last[0][1][1].str() == "999");
}

TEST_CASE("an error reply in a pipeline does not stop the others",
          "[redis][pipeline]") {
  auto conn = connect_test_redis();
  test_keys keys;
  auto k = keys("text");
  auto replies = conn.pipeline(
    {{"SET", k, "abc"}, {"INCR", k}, {"APPEND", k, "def"}, {"GET", k}});
  REQUIRE(replies);
  REQUIRE(replies->size() == 4);
  CHECK((*replies)[0].is_status("OK"));
  CHECK((*replies)[1].is_error());
  CHECK((*replies)[2].integer() == 6);
  CHECK((*replies)[3].str() == "abcdef");
  auto none = conn.pipeline({});
  REQUIRE(none);
  CHECK(none->empty());
  // An empty command is refused before anything is sent.
  auto refused = conn.pipeline({{"PING"}, {}});
  REQUIRE_FALSE(refused);
  CHECK(has_code(refused.error(), redis_errc::protocol_error));
  CHECK(must(conn, {"PING"}).is_status("PONG"));
}

TEST_CASE("arguments and replies are binary-safe", "[redis][commands]") {
  auto conn = connect_test_redis();
  test_keys keys;
  const std::string binary{"a\0b\0\0c\xff\x01", 8};
  const std::string utf8 = "gr\xC3\xB6\xC3\x9F"
                           "e \xE2\x9C\x93 \xE6\x97\xA5\xE6\x9C\xAC";
  auto k = keys(std::string{"key\0with nul", 12});
  CHECK(must(conn, {"SET", k, binary}).is_status("OK"));
  auto got = must(conn, {"GET", k});
  REQUIRE(got.is_string());
  CHECK(got.str().size() == 8);
  CHECK(got.str() == binary);
  auto u = keys("utf8");
  CHECK(must(conn, {"SET", u, utf8}).is_status("OK"));
  CHECK(must(conn, {"GET", u}).str() == utf8);
  CHECK(must(conn, {"STRLEN", u}).integer()
        == static_cast<int64_t>(utf8.size()));
  // Stream fields too, through a pipeline.
  auto s = keys("stream");
  auto replies
    = conn.pipeline({{"XADD", s, "*", binary, utf8}, {"XRANGE", s, "-", "+"}});
  REQUIRE(replies);
  const auto& entries = (*replies)[1];
  REQUIRE(entries.size() == 1);
  CHECK(entries[0][1][0].str() == binary);
  CHECK(entries[0][1][1].str() == utf8);
}

TEST_CASE("a blocking read passes its own timeout", "[redis][blocking]") {
  // A command timeout shorter than the read's BLOCK time: the situation
  // the per-call timeout exists for (hiredis would apply the connection's).
  auto conn = connect_test_redis(milliseconds{100});
  test_keys keys;
  auto s = keys("empty-stream");
  // An empty stream (MKSTREAM creates it without entries).
  CHECK(
    must(conn, {"XGROUP", "CREATE", s, "g", "$", "MKSTREAM"}).is_status("OK"));
  REQUIRE(must(conn, {"XLEN", s}).integer() == 0);
  SECTION("nil after BLOCK 200, and the connection stays usable") {
    auto start = std::chrono::steady_clock::now();
    auto res = conn.command({"XREAD", "BLOCK", "200", "STREAMS", s, "$"},
                            milliseconds{2000});
    auto waited = std::chrono::steady_clock::now() - start;
    REQUIRE(res);
    CHECK(res->is_nil());
    CHECK(waited >= milliseconds{190});
    CHECK(waited < milliseconds{2000});
    CHECK_FALSE(conn.broken());
    CHECK(must(conn, {"PING"}).is_status("PONG"));
    CHECK(conn.command_timeout() == milliseconds{100});
    // XREADGROUP, as the bus will read, behaves the same.
    res = conn.command(
      {"XREADGROUP", "GROUP", "g", "c1", "BLOCK", "200", "STREAMS", s, ">"},
      milliseconds{2000});
    REQUIRE(res);
    CHECK(res->is_nil());
    CHECK(must(conn, {"PING"}).is_status("PONG"));
  }
  SECTION("without its own timeout the command timeout ends it") {
    // The 100 ms command timeout is back in force after a call that had
    // its own: a longer BLOCK now times out and breaks the connection.
    auto ok = conn.command({"XREAD", "BLOCK", "150", "STREAMS", s, "$"},
                           milliseconds{2000});
    REQUIRE(ok);
    auto res = conn.command({"XREAD", "BLOCK", "1000", "STREAMS", s, "$"});
    REQUIRE_FALSE(res);
    CHECK(has_code(res.error(), redis_errc::timeout));
    CHECK(is_retryable(res.error()));
    CHECK(conn.broken());
    auto later = conn.command({"PING"});
    REQUIRE_FALSE(later);
    CHECK(has_code(later.error(), redis_errc::connection_failed));
  }
}

TEST_CASE("a moved-from connection is broken, the new owner works",
          "[redis][connect]") {
  auto conn = connect_test_redis();
  connection other = std::move(conn);
  CHECK(conn.broken()); // NOLINT(bugprone-use-after-move): that is the test
  auto res = conn.command({"PING"});
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), redis_errc::connection_failed));
  CHECK(must(other, {"PING"}).is_status("PONG"));
  conn = std::move(other);
  CHECK(must(conn, {"PING"}).is_status("PONG"));
}

TEST_CASE("a server restart breaks the old connection, a new one works",
          "[redis][restart]") {
  const char* restart = std::getenv("ES_TEST_REDIS_RESTART");
  if (restart == nullptr || *restart == '\0')
    FAIL("set ES_TEST_REDIS_RESTART to a command that restarts the test "
         "server (scripts/test sets it to `scripts/redis restart`)");
  auto conn = connect_test_redis();
  test_keys keys;
  auto k = keys("before-restart");
  CHECK(must(conn, {"SET", k, "x"}).is_status("OK"));
  REQUIRE(std::system(restart) == 0);
  auto res = conn.command({"PING"});
  REQUIRE_FALSE(res);
  CHECK(has_code(res.error(), redis_errc::connection_failed));
  CHECK(is_retryable(res.error()));
  CHECK(conn.broken());
  // Later calls fail fast with the same code, saying why.
  auto again = conn.pipeline({{"PING"}});
  REQUIRE_FALSE(again);
  CHECK(has_code(again.error(), redis_errc::connection_failed));
  CHECK(describe(again.error()).find("broken") != std::string::npos);
  auto fresh = connect_test_redis();
  CHECK(must(fresh, {"PING"}).is_status("PONG"));
  // The test server logs every write before answering (AOF, fsync always):
  // what it acknowledged survives the restart.
  CHECK(must(fresh, {"GET", k}).str() == "x");
}
