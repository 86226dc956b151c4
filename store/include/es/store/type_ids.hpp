// CAF type ids of the store module's message types.
#pragma once

#include "es/store/event.hpp"
#include "es/store/event_store.hpp"
#include "es/store/expected_version.hpp"
#include "es/store/state_stores.hpp"
#include "es/store/uuid.hpp"

#include <caf/type_id.hpp>

#include <vector>

namespace caf {
class actor_system_config;
} // namespace caf

CAF_BEGIN_TYPE_ID_BLOCK(es_store, caf::first_custom_type_id)

CAF_ADD_TYPE_ID(es_store, (es::uuid))
CAF_ADD_TYPE_ID(es_store, (es::stream_id))
CAF_ADD_TYPE_ID(es_store, (es::event_data))
CAF_ADD_TYPE_ID(es_store, (es::recorded_event))
CAF_ADD_TYPE_ID(es_store, (es::expected_version))
CAF_ADD_TYPE_ID(es_store, (es::append_result))
CAF_ADD_TYPE_ID(es_store, (es::append_request))
CAF_ADD_TYPE_ID(es_store, (es::read_stream_options))
CAF_ADD_TYPE_ID(es_store, (es::stream_slice))
CAF_ADD_TYPE_ID(es_store, (es::event_filter))
CAF_ADD_TYPE_ID(es_store, (es::read_all_options))
CAF_ADD_TYPE_ID(es_store, (es::all_slice))
CAF_ADD_TYPE_ID(es_store, (es::store_metrics))
CAF_ADD_TYPE_ID(es_store, (es::snapshot))
CAF_ADD_TYPE_ID(es_store, (std::vector<es::snapshot>))
CAF_ADD_TYPE_ID(es_store, (es::checkpoint))
CAF_ADD_TYPE_ID(es_store, (es::dead_letter))
CAF_ADD_TYPE_ID(es_store, (std::vector<es::dead_letter>))
CAF_ADD_TYPE_ID(es_store, (es::dead_letter_stats))
CAF_ADD_TYPE_ID(es_store, (std::vector<es::event_data>))
CAF_ADD_TYPE_ID(es_store, (std::vector<es::recorded_event>))
CAF_ADD_TYPE_ID(es_store, (es::dead_letter_query))
CAF_ADD_TYPE_ID(es_store, (std::vector<es::append_request>))
CAF_ADD_TYPE_ID(es_store, (std::vector<es::append_result>))

CAF_END_TYPE_ID_BLOCK(es_store)

namespace es {

/// Registers the store module's message types and its error category with
/// `cfg`. Call once before creating the actor system.
void add_store_module(caf::actor_system_config& cfg);

} // namespace es
