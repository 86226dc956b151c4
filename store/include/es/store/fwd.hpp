// Forward declarations of the store module's types, for headers that only
// pass them around.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace es {

class checkpoint_store;
class dead_letter_store;
class event_registry;
class event_store;
class expected_version;
class outbox;
class outbox_claim;
class projection_lease;
class read_model_db;
class snapshot_store;
class sql_transaction;
class uuid;

struct all_slice;
struct append_request;
struct append_result;
struct checkpoint;
struct dead_letter;
struct dead_letter_query;
struct dead_letter_stats;
struct decoded_event;
struct event_data;
struct event_filter;
struct memory_store_config;
struct read_all_options;
struct read_stream_options;
struct recorded_event;
class event_view;
struct snapshot;
struct store_limits;
struct store_metrics;
struct stream_id;
struct stream_slice;

enum class store_errc : uint8_t;

using checkpoint_store_ptr = std::shared_ptr<checkpoint_store>;
using dead_letter_store_ptr = std::shared_ptr<dead_letter_store>;
using event_registry_ptr = std::shared_ptr<event_registry>;
using event_store_ptr = std::shared_ptr<event_store>;
using outbox_ptr = std::shared_ptr<outbox>;
using projection_lease_ptr = std::unique_ptr<projection_lease>;
using read_model_db_ptr = std::shared_ptr<read_model_db>;
using snapshot_store_ptr = std::shared_ptr<snapshot_store>;
using event_batch = std::vector<event_data>;
using recorded_events = std::vector<recorded_event>;

} // namespace es
