#include "es/ops/otlp_exporter.hpp"

#include "es/store/errors.hpp"

#include "rapidjson.hpp"
#include <httplib.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace es::ops {

namespace {

template <size_t N>
std::string hex(const std::array<uint8_t, N>& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string result;
  for (auto b : bytes) {
    result += digits[b >> 4];
    result += digits[b & 0x0f];
  }
  return result;
}

} // namespace

std::string otlp_json(const std::vector<tracing::span_data>& spans,
                      const std::string& service_name) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  auto str = [&](const char* key, const std::string& value) {
    w.Key(key);
    w.String(value.c_str(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartObject();
  w.Key("resourceSpans");
  w.StartArray();
  w.StartObject();
  w.Key("resource");
  w.StartObject();
  w.Key("attributes");
  w.StartArray();
  w.StartObject();
  str("key", "service.name");
  w.Key("value");
  w.StartObject();
  str("stringValue", service_name);
  w.EndObject();
  w.EndObject();
  w.EndArray();
  w.EndObject();
  w.Key("scopeSpans");
  w.StartArray();
  w.StartObject();
  w.Key("scope");
  w.StartObject();
  str("name", "eventsource");
  w.EndObject();
  w.Key("spans");
  w.StartArray();
  for (const auto& sp : spans) {
    w.StartObject();
    // OTLP/JSON writes ids as hex and 64-bit integers as strings.
    str("traceId", hex(sp.context.trace_id));
    str("spanId", hex(sp.context.span_id));
    if (sp.parent_span_id)
      str("parentSpanId", hex(*sp.parent_span_id));
    str("name", sp.name);
    w.Key("kind");
    w.Int(static_cast<int>(sp.kind));
    str("startTimeUnixNano", std::to_string(sp.start_unix_ns));
    str("endTimeUnixNano", std::to_string(sp.end_unix_ns));
    w.Key("attributes");
    w.StartArray();
    for (const auto& [key, value] : sp.attributes) {
      w.StartObject();
      str("key", key);
      w.Key("value");
      w.StartObject();
      if (auto* s = std::get_if<std::string>(&value))
        str("stringValue", *s);
      else
        str("intValue", std::to_string(std::get<int64_t>(value)));
      w.EndObject();
      w.EndObject();
    }
    w.EndArray();
    w.Key("status");
    w.StartObject();
    // 1: ok, 2: error.
    w.Key("code");
    w.Int(sp.error ? 2 : 1);
    if (sp.error)
      str("message", sp.status_message);
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  w.EndArray();
  w.EndObject();
  w.EndArray();
  w.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

struct otlp_http_exporter::impl {
  otlp_config cfg;
  std::string host;
  int port = 80;
  std::string path;
  mutable std::mutex mtx;
  std::condition_variable wake;
  std::condition_variable sent;
  std::deque<tracing::span_data> queue;
  /// Spans taken off the queue and not sent yet.
  size_t in_flight = 0;
  bool stopping = false;
  bool flush_requested = false;
  otlp_stats stats;
  std::thread worker;

  void run() {
    httplib::Client client{host, port};
    client.set_connection_timeout(cfg.timeout);
    client.set_read_timeout(cfg.timeout);
    client.set_write_timeout(cfg.timeout);
    std::unique_lock guard{mtx};
    for (;;) {
      wake.wait_for(guard, cfg.flush_interval, [this] {
        return stopping || flush_requested || queue.size() >= cfg.max_batch;
      });
      if (queue.empty()) {
        flush_requested = false;
        sent.notify_all();
        if (stopping)
          return;
        continue;
      }
      std::vector<tracing::span_data> batch;
      while (!queue.empty() && batch.size() < cfg.max_batch) {
        batch.push_back(std::move(queue.front()));
        queue.pop_front();
      }
      in_flight = batch.size();
      guard.unlock();
      auto body = otlp_json(batch, cfg.service_name);
      auto res = client.Post(path.c_str(), body, "application/json");
      bool ok = res && res->status >= 200 && res->status < 300;
      guard.lock();
      in_flight = 0;
      if (ok)
        stats.exported += batch.size();
      else
        ++stats.failed_requests;
      if (queue.empty()) {
        flush_requested = false;
        sent.notify_all();
      }
    }
  }
};

caf::expected<std::shared_ptr<otlp_http_exporter>>
otlp_http_exporter::make(otlp_config cfg) {
  auto ptr = std::make_unique<impl>();
  std::string url = cfg.endpoint;
  if (url.rfind("http://", 0) != 0)
    return make_store_error(store_errc::invalid_argument,
                            "the OTLP endpoint must be http://HOST[:PORT], "
                            "got '"
                              + url + "'");
  auto rest = url.substr(7);
  while (!rest.empty() && rest.back() == '/')
    rest.pop_back();
  auto slash = rest.find('/');
  std::string base_path;
  if (slash != std::string::npos) {
    base_path = rest.substr(slash);
    rest = rest.substr(0, slash);
  }
  auto colon = rest.rfind(':');
  ptr->host = rest.substr(0, colon);
  if (colon != std::string::npos) {
    try {
      size_t used = 0;
      ptr->port = std::stoi(rest.substr(colon + 1), &used);
      if (used != rest.size() - colon - 1)
        ptr->port = -1;
    } catch (...) {
      ptr->port = -1;
    }
  }
  if (ptr->host.empty() || ptr->port <= 0 || ptr->port > 65535)
    return make_store_error(store_errc::invalid_argument,
                            "bad host or port in the OTLP endpoint '" + url
                              + "'");
  ptr->path = base_path + "/v1/traces";
  ptr->cfg = std::move(cfg);
  auto* raw = ptr.get();
  ptr->worker = std::thread{[raw] {
    raw->run();
  }};
  return std::make_shared<otlp_http_exporter>(std::move(ptr));
}

otlp_http_exporter::otlp_http_exporter(std::unique_ptr<impl> ptr)
  : impl_(std::move(ptr)) {
  // nop
}

otlp_http_exporter::~otlp_http_exporter() {
  {
    std::lock_guard guard{impl_->mtx};
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->worker.joinable())
    impl_->worker.join();
}

void otlp_http_exporter::export_span(tracing::span_data span) {
  bool full_batch = false;
  {
    std::lock_guard guard{impl_->mtx};
    if (impl_->queue.size() >= impl_->cfg.max_queue) {
      ++impl_->stats.dropped;
      return;
    }
    impl_->queue.push_back(std::move(span));
    full_batch = impl_->queue.size() >= impl_->cfg.max_batch;
  }
  if (full_batch)
    impl_->wake.notify_one();
}

void otlp_http_exporter::flush() {
  std::unique_lock guard{impl_->mtx};
  if (impl_->queue.empty() && impl_->in_flight == 0)
    return;
  impl_->flush_requested = true;
  impl_->wake.notify_one();
  impl_->sent.wait(guard, [this] {
    return impl_->queue.empty() && impl_->in_flight == 0;
  });
}

otlp_stats otlp_http_exporter::stats() const {
  std::lock_guard guard{impl_->mtx};
  return impl_->stats;
}

caf::expected<std::unique_ptr<otlp_tracing>>
otlp_tracing::start(otlp_config cfg) {
  auto exporter = otlp_http_exporter::make(std::move(cfg));
  if (!exporter)
    return std::move(exporter.error());
  return std::make_unique<otlp_tracing>(std::move(*exporter));
}

otlp_tracing::otlp_tracing(std::shared_ptr<otlp_http_exporter> exporter)
  : exporter_(std::move(exporter)) {
  tracing::set_exporter(exporter_);
}

otlp_tracing::~otlp_tracing() {
  tracing::set_exporter(nullptr);
  exporter_->flush();
}

} // namespace es::ops
