#include "output.hpp"

#include "es/store/codec.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace esctl {

table::table(std::vector<std::string> header)
  : header_(std::move(header)), right_(header_.size(), false) {
  // nop
}

table& table::right(size_t index) {
  right_.at(index) = true;
  return *this;
}

void table::add(std::vector<std::string> row) {
  row.resize(header_.size());
  rows_.push_back(std::move(row));
}

void table::print() const {
  std::vector<size_t> width(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  };
  measure(header_);
  for (const auto& row : rows_)
    measure(row);
  auto line = [&](const std::vector<std::string>& row) {
    std::string out;
    for (size_t i = 0; i < row.size(); ++i) {
      auto pad = std::string(width[i] - row[i].size(), ' ');
      if (i > 0)
        out += "  ";
      out += right_[i] ? pad + row[i] : row[i] + pad;
    }
    while (!out.empty() && out.back() == ' ')
      out.pop_back();
    std::printf("%s\n", out.c_str());
  };
  line(header_);
  for (const auto& row : rows_)
    line(row);
  std::fflush(stdout);
}

void print_json(const rapidjson::StringBuffer& buf) {
  std::printf("%s\n", buf.GetString());
  std::fflush(stdout);
}

namespace {

/// Accepts any well-formed JSON and builds nothing.
struct json_validator
  : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, json_validator> {
  bool Default() {
    return true;
  }
};

} // namespace

void write_embedded_json(json_writer& w, std::string_view text) {
  if (text.empty()) {
    w.Null();
    return;
  }
  // Numbers as strings: the validator converts nothing, and the stored
  // text goes out exactly as it is.
  rapidjson::Reader reader;
  json_validator handler;
  std::string copy{text};
  rapidjson::StringStream in{copy.c_str()};
  constexpr unsigned flags = rapidjson::kParseIterativeFlag
                             | rapidjson::kParseValidateEncodingFlag
                             | rapidjson::kParseNumbersAsStringsFlag;
  if (!reader.Parse<flags>(in, handler)) {
    write_string(w, text);
    return;
  }
  auto type = copy.front() == '{'   ? rapidjson::kObjectType
              : copy.front() == '[' ? rapidjson::kArrayType
                                    : rapidjson::kStringType;
  w.RawValue(copy.c_str(), copy.size(), type);
}

void write_string(json_writer& w, std::string_view text) {
  w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
}

void write_uuid(json_writer& w, const std::optional<es::uuid>& id) {
  if (id)
    write_string(w, id->to_string());
  else
    w.Null();
}

void write_time(json_writer& w, const std::optional<es::timestamp>& t) {
  if (t)
    write_string(w, es::format_timestamp(*t));
  else
    w.Null();
}

void write_event(json_writer& w, const es::recorded_event& ev) {
  w.StartObject();
  w.Key("global_position");
  w.Int64(ev.global_position);
  w.Key("event_id");
  write_uuid(w, ev.event_id);
  w.Key("event_type");
  write_string(w, ev.event_type);
  w.Key("event_version");
  w.Int(ev.event_version);
  w.Key("aggregate_type");
  write_string(w, ev.aggregate_type);
  w.Key("aggregate_id");
  write_uuid(w, ev.aggregate_id);
  w.Key("aggregate_version");
  w.Int64(ev.aggregate_version);
  w.Key("tenant_id");
  write_uuid(w, ev.tenant_id);
  w.Key("occurred_at");
  write_time(w, ev.occurred_at);
  w.Key("correlation_id");
  write_uuid(w, ev.correlation_id);
  w.Key("causation_id");
  write_uuid(w, ev.causation_id);
  w.Key("actor_id");
  write_string(w, ev.actor_id);
  w.Key("metadata");
  write_embedded_json(w, ev.metadata);
  w.Key("payload");
  write_embedded_json(w, ev.payload);
  w.EndObject();
}

std::string num(int64_t x) {
  return std::to_string(x);
}

std::string shorten(std::string text, size_t width) {
  if (text.size() > width && width > 3)
    text = text.substr(0, width - 3) + "...";
  return text;
}

std::string uuid_or_dash(const std::optional<es::uuid>& id) {
  return id ? id->to_string() : "-";
}

std::string time_or_dash(const std::optional<es::timestamp>& t) {
  return t ? es::format_timestamp(*t) : "-";
}

progress::progress(std::string what)
  : what_(std::move(what)), active_(isatty(STDERR_FILENO) == 1) {
  // nop
}

progress::~progress() {
  if (active_)
    std::fprintf(stderr, "\r\033[K");
}

void progress::update(const std::string& state) {
  if (!active_)
    return;
  std::fprintf(stderr, "\r\033[K%s: %s", what_.c_str(), state.c_str());
  std::fflush(stderr);
}

} // namespace esctl
