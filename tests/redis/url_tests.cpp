// Redis URLs and the module's errors: no server needed.
#include "es/redis/redis.hpp"
#include "es/store/errors.hpp"

#include <caf/actor_system_config.hpp>

#include "connection.hpp"
#include <catch2/catch.hpp>

#include <string>

using namespace es;

namespace {

redis_url parse_ok(const std::string& text) {
  auto url = parse_redis_url(text);
  if (!url)
    FAIL("'" << text << "' should parse: " << describe(url.error()));
  return *url;
}

} // namespace

TEST_CASE("a Redis URL names host, port, credentials and database",
          "[redis][url]") {
  SECTION("omitted parts keep their defaults") {
    auto url = parse_ok("redis://cache.internal");
    CHECK(url.host == "cache.internal");
    CHECK(url.port == 6379);
    CHECK(url.db == 0);
    CHECK(url.username.empty());
    CHECK(url.password.empty());
    CHECK_FALSE(url.tls);
    CHECK(parse_ok("redis://").host == "127.0.0.1");
    CHECK(parse_ok("redis://h/").db == 0);
    CHECK(parse_ok("redis://h:6380").db == 0);
  }
  SECTION("every part") {
    auto url = parse_ok("redis://alice:s3cret@10.0.0.7:6380/3");
    CHECK(url.host == "10.0.0.7");
    CHECK(url.port == 6380);
    CHECK(url.username == "alice");
    CHECK(url.password == "s3cret");
    CHECK(url.db == 3);
  }
  SECTION("a password without a user, and a user without a password") {
    auto url = parse_ok("redis://:es-test-pass@127.0.0.1:56379/0");
    CHECK(url.username.empty());
    CHECK(url.password == "es-test-pass");
    CHECK(url.port == 56379);
    url = parse_ok("redis://bob@h");
    CHECK(url.username == "bob");
    CHECK(url.password.empty());
  }
  SECTION("percent-encoded user info is decoded") {
    auto url = parse_ok("redis://us%65r:p%40ss%2Fw%C3%B6rd%3a%25@h");
    CHECK(url.username == "user");
    CHECK(url.password == "p@ss/w\xC3\xB6rd:%");
  }
  SECTION("an unescaped '@' or '/' stays in the password") {
    auto url = parse_ok("redis://:a@b/c@h:7000/2");
    CHECK(url.password == "a@b/c");
    CHECK(url.host == "h");
    CHECK(url.port == 7000);
    CHECK(url.db == 2);
  }
  SECTION("IPv6 hosts in brackets") {
    auto url = parse_ok("redis://:pw@[::1]:6390/1");
    CHECK(url.host == "::1");
    CHECK(url.port == 6390);
    CHECK(url.db == 1);
    CHECK(parse_ok("redis://[2001:db8::7]").host == "2001:db8::7");
    CHECK(parse_ok("redis://[2001:db8::7]").port == 6379);
  }
  SECTION("rediss:// asks for TLS; schemes ignore case") {
    auto url = parse_ok("rediss://:pw@h:6380");
    CHECK(url.tls);
    CHECK(url.port == 6380);
    CHECK(parse_ok("REDIS://h").host == "h");
    CHECK(parse_ok("Rediss://h").tls);
  }
  SECTION("the largest port and database") {
    CHECK(parse_ok("redis://h:65535").port == 65535);
    CHECK(parse_ok("redis://h/2147483647").db == 2147483647);
  }
}

TEST_CASE("malformed Redis URLs are refused with invalid_url", "[redis][url]") {
  auto bad = GENERATE(
    as<std::string>{}, "", "localhost:6379", "redis:/h", "http://h",
    "unix:///tmp/redis.sock", "redis://h:", "redis://h:0", "redis://h:65536",
    "redis://h:abc", "redis://h:+80", "redis://h:6379x", "redis://h/x",
    "redis://h/-1", "redis://h/1/2", "redis://h/2147483648", "redis://[::1",
    "redis://[::1]6379", "redis://[zz]", "redis://[]", "redis://::1:6379",
    "redis://h?db=1", "redis://h#x", "redis://h st", "redis://:%4@h",
    "redis://:%zz@h", "redis://%@h");
  CAPTURE(bad);
  auto url = parse_redis_url(bad);
  REQUIRE_FALSE(url);
  CHECK(has_code(url.error(), redis_errc::invalid_url));
  CHECK(
    describe(url.error()).rfind("es_redis.invalid_url: invalid Redis URL", 0)
    == 0);
}

TEST_CASE("errors about a URL never show its password", "[redis][url]") {
  auto url = parse_redis_url("redis://:topsecret%zz@h");
  REQUIRE_FALSE(url);
  CHECK(describe(url.error()).find("topsecret") == std::string::npos);
  auto ok = parse_ok("redis://alice:topsecret@[::1]:6390/4");
  CHECK(to_string(ok) == "redis://alice:***@[::1]:6390/4");
  CHECK(to_string(parse_ok("rediss://h")) == "rediss://h:6379/0");
}

TEST_CASE("rediss:// is refused: hiredis 0.14 has no TLS",
          "[redis][url][connect]") {
  auto url = parse_ok("rediss://:pw@127.0.0.1:6380");
  auto conn = detail::redis::connection::open(url, std::chrono::seconds{1},
                                              std::chrono::seconds{1});
  REQUIRE_FALSE(conn);
  CHECK(has_code(conn.error(), redis_errc::tls_unsupported));
  auto text = describe(conn.error());
  CAPTURE(text);
  CHECK(text.find("TLS") != std::string::npos);
  CHECK(text.find("hiredis 0.14") != std::string::npos);
  CHECK(text.find("pw") == std::string::npos);
}

TEST_CASE("the module's errors render by name and say whether to retry",
          "[redis][errors]") {
  CHECK(describe(make_redis_error(redis_errc::timeout, "x"))
        == "es_redis.timeout: x");
  CHECK(describe(make_redis_error(redis_errc::server_error, "ERR y"))
        == "es_redis.server_error: ERR y");
  CHECK(is_retryable(make_redis_error(redis_errc::connection_failed, "x")));
  CHECK(is_retryable(make_redis_error(redis_errc::timeout, "x")));
  CHECK_FALSE(
    is_retryable(make_redis_error(redis_errc::authentication_failed, "x")));
  CHECK_FALSE(is_retryable(make_redis_error(redis_errc::server_error, "x")));
  CHECK_FALSE(is_retryable(make_redis_error(redis_errc::invalid_url, "x")));
  CHECK(std::string{to_string(redis_errc::tls_unsupported)}
        == "tls_unsupported");
  caf::actor_system_config cfg;
  add_redis_module(cfg); // registers the bus module too; must not throw
}

TEST_CASE("error replies become errors only when asked", "[redis][errors]") {
  using detail::redis::reply;
  CHECK_FALSE(to_error(reply::make_status("OK"), "SET"));
  auto err
    = to_error(reply::make_error("WRONGTYPE Operation against a key"), "INCR");
  CHECK(has_code(err, redis_errc::server_error));
  CHECK(describe(err)
        == "es_redis.server_error: INCR: WRONGTYPE Operation against a key");
  CHECK(has_code(
    to_error(reply::make_error("NOAUTH Authentication required."), "GET"),
    redis_errc::authentication_failed));
  auto tree
    = reply::make_array({reply{}, reply::make_integer(42),
                         reply::make_string(std::string{"a\0\"", 3}),
                         reply::make_status("OK"), reply::make_error("ERR x")});
  CHECK(to_string(tree) == R"([nil, :42, "a\x00\"", +OK, -ERR x])");
}
