#include "es/store/log.hpp"

#include <atomic>
#include <iostream>
#include <mutex>

namespace es {

namespace {

std::mutex sink_mtx;

log_sink& sink() {
  static log_sink instance = [](log_level level, std::string_view text) {
    std::cerr << "[eventsource " << to_string(level) << "] " << text << '\n';
  };
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
  sink() = std::move(fn);
}

void set_log_level(log_level lowest) {
  lowest_level = lowest;
}

void log(log_level level, std::string_view text) {
  if (level < lowest_level.load(std::memory_order_relaxed))
    return;
  std::lock_guard guard{sink_mtx};
  if (sink())
    sink()(level, text);
}

} // namespace es
