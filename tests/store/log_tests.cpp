// The log hook: text and JSON lines, record sinks with their context.
#include "es/store/log.hpp"

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <regex>
#include <string>
#include <vector>

using namespace es;

TEST_CASE("a JSON log line holds the record's fields", "[log]") {
  log_context ctx;
  ctx.module = "projections";
  ctx.projection = "order_summary";
  ctx.event_id = "0190a3c4-0000-7000-8000-000000000001";
  ctx.position = 41;
  ctx.lag = 7;
  auto line = format_log_json(log_level::warning,
                              "a \"quoted\"\nmessage \x01 here", ctx);
  CHECK(line.find('\n') == std::string::npos);
  rapidjson::Document doc;
  doc.Parse(line.c_str(), line.size());
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  CHECK(
    std::regex_match(std::string{doc["ts"].GetString()},
                     std::regex{R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)"}));
  CHECK(std::string{doc["level"].GetString()} == "warning");
  CHECK(std::string{doc["module"].GetString()} == "projections");
  CHECK(std::string{doc["message"].GetString()}
        == "a \"quoted\"\nmessage \x01 here");
  CHECK(std::string{doc["projection"].GetString()} == "order_summary");
  CHECK(std::string{doc["event_id"].GetString()} == ctx.event_id);
  CHECK(doc["position"].GetInt64() == 41);
  CHECK(doc["lag"].GetInt64() == 7);
  // Fields not set are left out.
  CHECK_FALSE(doc.HasMember("aggregate_id"));
  auto bare = format_log_json(log_level::error, "x", log_context{});
  rapidjson::Document b;
  b.Parse(bare.c_str(), bare.size());
  REQUIRE_FALSE(b.HasParseError());
  CHECK(std::string{b["module"].GetString()} == "eventsource");
  CHECK(b.MemberCount() == 4);
}

TEST_CASE("record sinks get the context, text sinks the text, levels filter",
          "[log]") {
  std::vector<std::string> seen;
  set_log_record_sink(
    [&](log_level level, std::string_view text, const log_context& ctx) {
      seen.push_back(std::string{to_string(level)} + " "
                     + std::string{ctx.module} + " " + std::string{text});
    });
  log(log_level::warning, "plain");
  log(log_level::error, "with context", log_context{"relay"});
  log(log_level::info, "filtered out");
  set_log_level(log_level::debug);
  log(log_level::debug, "now shown", log_context{"bus"});
  set_log_level(log_level::warning);
  CHECK(seen
        == std::vector<std::string>{"warning eventsource plain",
                                    "error relay with context",
                                    "debug bus now shown"});
  std::vector<std::string> texts;
  set_log_sink([&](log_level, std::string_view text) {
    texts.emplace_back(text);
  });
  log(log_level::error, "only the text", log_context{"store"});
  CHECK(texts == std::vector<std::string>{"only the text"});
  set_log_format(log_format::text);
  CHECK(parse_log_format("json") == log_format::json);
  CHECK(parse_log_format("text") == log_format::text);
  CHECK_FALSE(parse_log_format("xml"));
}
