#include "es/store/log.hpp"

#include "rapidjson.hpp"
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <iostream>
#include <mutex>

namespace es {

namespace {

std::mutex sink_mtx;

void text_line(log_level level, std::string_view text, const log_context&) {
  std::cerr << "[eventsource " << to_string(level) << "] " << text << '\n';
}

void json_line(log_level level, std::string_view text, const log_context& ctx) {
  auto line = format_log_json(level, text, ctx);
  line += '\n';
  std::cerr << line;
}

log_record_sink& sink() {
  static log_record_sink instance = text_line;
  return instance;
}

std::atomic<log_level> lowest_level{log_level::warning};

} // namespace

const char* to_string(log_level x) {
  switch (x) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
  }
  return "?";
}

void set_log_sink(log_sink fn) {
  std::lock_guard guard{sink_mtx};
  if (!fn) {
    sink() = nullptr;
    return;
  }
  sink() = [fn = std::move(fn)](log_level level, std::string_view text,
                                const log_context&) {
    fn(level, text);
  };
}

void set_log_record_sink(log_record_sink fn) {
  std::lock_guard guard{sink_mtx};
  sink() = std::move(fn);
}

void set_log_format(log_format format) {
  std::lock_guard guard{sink_mtx};
  sink() = format == log_format::json ? json_line : text_line;
}

std::optional<log_format> parse_log_format(std::string_view text) {
  if (text == "text")
    return log_format::text;
  if (text == "json")
    return log_format::json;
  return std::nullopt;
}

void set_log_level(log_level lowest) {
  lowest_level = lowest;
}

void log(log_level level, std::string_view text) {
  log(level, text, log_context{});
}

void log(log_level level, std::string_view text, const log_context& ctx) {
  if (level < lowest_level.load(std::memory_order_relaxed))
    return;
  std::lock_guard guard{sink_mtx};
  if (sink())
    sink()(level, text, ctx);
}

std::string format_log_json(log_level level, std::string_view text,
                            const log_context& ctx) {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto us = duration_cast<microseconds>(now.time_since_epoch()).count();
  auto secs = static_cast<std::time_t>(us / 1'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char ts[40];
  auto n = std::strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(ts + n, sizeof(ts) - n, ".%06lldZ",
                static_cast<long long>(us % 1'000'000));
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  auto str = [&](const char* key, std::string_view value) {
    w.Key(key);
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartObject();
  str("ts", ts);
  str("level", to_string(level));
  str("module", ctx.module);
  str("message", text);
  if (!ctx.projection.empty())
    str("projection", ctx.projection);
  if (!ctx.event_id.empty())
    str("event_id", ctx.event_id);
  if (!ctx.aggregate_id.empty())
    str("aggregate_id", ctx.aggregate_id);
  if (ctx.position) {
    w.Key("position");
    w.Int64(*ctx.position);
  }
  if (ctx.lag) {
    w.Key("lag");
    w.Int64(*ctx.lag);
  }
  w.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

} // namespace es
