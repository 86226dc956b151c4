// Sends spans to an OpenTelemetry collector over OTLP/HTTP with JSON
// encoding (POST <endpoint>/v1/traces), batched from a thread of its own.
#pragma once

#include "es/store/tracing.hpp"

#include <caf/expected.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace es::ops {

struct otlp_config {
  /// The collector's base URL, for example "http://127.0.0.1:4318"; spans
  /// go to `<endpoint>/v1/traces`. Plain HTTP.
  std::string endpoint = "http://127.0.0.1:4318";
  /// The `service.name` resource attribute.
  std::string service_name = "eventsource";
  /// Spans per request, and how long a span may wait for its batch.
  size_t max_batch = 512;
  std::chrono::milliseconds flush_interval{1'000};
  /// Spans queued at most; more are dropped (and counted) rather than
  /// slowing the application down.
  size_t max_queue = 65'536;
  std::chrono::milliseconds timeout{5'000};
};

/// What the exporter did since it started.
struct otlp_stats {
  uint64_t exported = 0;
  uint64_t dropped = 0;
  uint64_t failed_requests = 0;
};

/// A span exporter for `es::tracing::set_exporter`. Thread-safe.
class otlp_http_exporter : public tracing::span_exporter {
public:
  /// Errors: an endpoint that is not `http://HOST[:PORT]`.
  static caf::expected<std::shared_ptr<otlp_http_exporter>>
  make(otlp_config cfg);

  /// Sends what is queued, then stops.
  ~otlp_http_exporter() override;

  void export_span(tracing::span_data span) override;

  /// Sends everything queued now and waits until it is sent (or failed).
  void flush();

  otlp_stats stats() const;

  struct impl;

  explicit otlp_http_exporter(std::unique_ptr<impl> ptr);

private:
  std::unique_ptr<impl> impl_;
};

/// Sends the process's spans to a collector while it lives: installs an
/// `otlp_http_exporter` with `tracing::set_exporter`; destroying it turns
/// tracing off and sends what is queued.
class otlp_tracing {
public:
  /// Errors: those of `otlp_http_exporter::make`.
  static caf::expected<std::unique_ptr<otlp_tracing>> start(otlp_config cfg);

  explicit otlp_tracing(std::shared_ptr<otlp_http_exporter> exporter);

  ~otlp_tracing();

  otlp_tracing(const otlp_tracing&) = delete;
  otlp_tracing& operator=(const otlp_tracing&) = delete;

  otlp_http_exporter& exporter() {
    return *exporter_;
  }

private:
  std::shared_ptr<otlp_http_exporter> exporter_;
};

/// The OTLP/JSON body for `spans` (`resourceSpans` with one scope).
std::string otlp_json(const std::vector<tracing::span_data>& spans,
                      const std::string& service_name);

} // namespace es::ops
