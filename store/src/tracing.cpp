#include "es/store/tracing.hpp"

#include "rapidjson.hpp"
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <atomic>
#include <mutex>
#include <random>

namespace es::tracing {

namespace {

std::atomic<bool> tracing_on{false};
std::mutex exporter_mtx;
std::shared_ptr<span_exporter> current_exporter;

std::shared_ptr<span_exporter> get_exporter() {
  std::lock_guard guard{exporter_mtx};
  return current_exporter;
}

/// Random ids from a per-thread generator.
template <size_t N>
std::array<uint8_t, N> random_id() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  std::array<uint8_t, N> result{};
  for (;;) {
    for (size_t i = 0; i < N; i += 8) {
      auto x = gen();
      for (size_t k = 0; k < 8 && i + k < N; ++k)
        result[i + k] = static_cast<uint8_t>(x >> (8 * k));
    }
    for (auto b : result)
      if (b != 0)
        return result;
  }
}

template <size_t N>
std::string hex(const std::array<uint8_t, N>& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string result;
  result.reserve(2 * N);
  for (auto b : bytes) {
    result += digits[b >> 4];
    result += digits[b & 0x0f];
  }
  return result;
}

int nibble(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

template <size_t N>
bool unhex(std::string_view text, std::array<uint8_t, N>& out) {
  if (text.size() != 2 * N)
    return false;
  for (size_t i = 0; i < N; ++i) {
    auto hi = nibble(text[2 * i]);
    auto lo = nibble(text[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return true;
}

template <size_t N>
bool all_zero(const std::array<uint8_t, N>& xs) {
  for (auto x : xs)
    if (x != 0)
      return false;
  return true;
}

} // namespace

span_exporter::~span_exporter() {
  // nop
}

bool span_context::valid() const noexcept {
  return !all_zero(trace_id) && !all_zero(span_id);
}

std::string span_context::trace_id_hex() const {
  return hex(trace_id);
}

std::string span_context::span_id_hex() const {
  return hex(span_id);
}

std::string span_context::traceparent() const {
  std::array<uint8_t, 1> f{flags};
  return "00-" + hex(trace_id) + "-" + hex(span_id) + "-" + hex(f);
}

std::optional<span_context> span_context::parse(std::string_view text) {
  // 00-<32>-<16>-<2>
  if (text.size() != 55 || text.substr(0, 3) != "00-" || text[35] != '-'
      || text[52] != '-')
    return std::nullopt;
  span_context result;
  std::array<uint8_t, 1> f{};
  if (!unhex(text.substr(3, 32), result.trace_id)
      || !unhex(text.substr(36, 16), result.span_id)
      || !unhex(text.substr(53, 2), f) || !result.valid())
    return std::nullopt;
  result.flags = f[0];
  return result;
}

void set_exporter(std::shared_ptr<span_exporter> exporter) {
  std::lock_guard guard{exporter_mtx};
  tracing_on.store(exporter != nullptr, std::memory_order_relaxed);
  current_exporter = std::move(exporter);
}

bool enabled() noexcept {
  return tracing_on.load(std::memory_order_relaxed);
}

uint64_t now_unix_ns() noexcept {
  return static_cast<uint64_t>(
    std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::system_clock::now().time_since_epoch())
      .count());
}

span::span(std::string_view name, span_kind kind,
           const std::optional<span_context>& parent) {
  if (!enabled())
    return;
  exporter_ = get_exporter();
  if (!exporter_)
    return;
  data_ = std::make_unique<span_data>();
  data_->name = name;
  data_->kind = kind;
  if (parent && parent->valid()) {
    data_->context.trace_id = parent->trace_id;
    data_->context.flags = parent->flags;
    data_->parent_span_id = parent->span_id;
  } else {
    data_->context.trace_id = random_id<16>();
  }
  data_->context.span_id = random_id<8>();
  data_->start_unix_ns = now_unix_ns();
}

span::span(span&&) noexcept = default;

span& span::operator=(span&& other) noexcept {
  if (this != &other) {
    end();
    data_ = std::move(other.data_);
    exporter_ = std::move(other.exporter_);
  }
  return *this;
}

span::~span() {
  end();
}

span_context span::context() const {
  return data_ ? data_->context : span_context{};
}

void span::set_attribute(std::string key, std::string value) {
  if (data_)
    data_->attributes.emplace_back(std::move(key), std::move(value));
}

void span::set_attribute(std::string key, int64_t value) {
  if (data_)
    data_->attributes.emplace_back(std::move(key), value);
}

void span::set_error(std::string message) {
  if (!data_)
    return;
  data_->error = true;
  data_->status_message = std::move(message);
}

void span::end() {
  if (!data_)
    return;
  data_->end_unix_ns = now_unix_ns();
  auto data = std::move(data_);
  auto exporter = std::move(exporter_);
  exporter->export_span(std::move(*data));
}

std::optional<span_context> extract(std::string_view metadata) {
  if (metadata.find("traceparent") == std::string_view::npos)
    return std::nullopt;
  rapidjson::Document doc;
  doc.Parse(metadata.data(), metadata.size());
  if (doc.HasParseError() || !doc.IsObject())
    return std::nullopt;
  auto i = doc.FindMember("traceparent");
  if (i == doc.MemberEnd() || !i->value.IsString())
    return std::nullopt;
  return span_context::parse(
    std::string_view{i->value.GetString(), i->value.GetStringLength()});
}

std::string inject(std::string_view metadata, const span_context& ctx) {
  rapidjson::Document doc;
  if (metadata.empty())
    doc.SetObject();
  else
    doc.Parse(metadata.data(), metadata.size());
  if (doc.HasParseError() || !doc.IsObject())
    return std::string{metadata};
  auto value = ctx.traceparent();
  auto i = doc.FindMember("traceparent");
  if (i != doc.MemberEnd())
    i->value.SetString(value.c_str(),
                       static_cast<rapidjson::SizeType>(value.size()),
                       doc.GetAllocator());
  else
    doc.AddMember(
      "traceparent",
      rapidjson::Value{value.c_str(),
                       static_cast<rapidjson::SizeType>(value.size()),
                       doc.GetAllocator()},
      doc.GetAllocator());
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  doc.Accept(w);
  return {buf.GetString(), buf.GetSize()};
}

} // namespace es::tracing
