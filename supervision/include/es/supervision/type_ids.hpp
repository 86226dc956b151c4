// CAF type ids and atoms of the supervision module, chained after the
// store's.
#pragma once

#include "es/store/type_ids.hpp"
#include "es/supervision/child.hpp"
#include "es/supervision/circuit_breaker.hpp"
#include "es/supervision/classifier.hpp"
#include "es/supervision/error_handling.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/type_id.hpp>

#include <memory>

namespace caf {
class actor_system_config;
} // namespace caf

CAF_BEGIN_TYPE_ID_BLOCK(es_supervision, caf::id_block::es_store::end)

CAF_ADD_TYPE_ID(es_supervision, (es::error_classification))
CAF_ADD_TYPE_ID(es_supervision, (es::error_info))
CAF_ADD_TYPE_ID(es_supervision, (es::error_stats))
CAF_ADD_TYPE_ID(es_supervision, (es::health_status))
CAF_ADD_TYPE_ID(es_supervision, (es::circuit_breaker_stats))
CAF_ADD_TYPE_ID(es_supervision, (es::child_status))
CAF_ADD_TYPE_ID(es_supervision, (std::vector<es::child_status>))

CAF_ADD_ATOM(es_supervision, es, retry_atom, "retry")
CAF_ADD_ATOM(es_supervision, es, breaker_stats_atom, "brkstats")
CAF_ADD_ATOM(es_supervision, es, children_atom, "children")
CAF_ADD_ATOM(es_supervision, es, child_atom, "child")
CAF_ADD_ATOM(es_supervision, es, supervise_atom, "supervise")
CAF_ADD_ATOM(es_supervision, es, restart_atom, "restart")
CAF_ADD_ATOM(es_supervision, es, stop_atom, "stop")
CAF_ADD_ATOM(es_supervision, es, dlq_add_atom, "dlqadd")
CAF_ADD_ATOM(es_supervision, es, dlq_list_atom, "dlqlist")
CAF_ADD_ATOM(es_supervision, es, dlq_get_atom, "dlqget")
CAF_ADD_ATOM(es_supervision, es, dlq_retrying_atom, "dlqretry")
CAF_ADD_ATOM(es_supervision, es, dlq_resolve_atom, "dlqresolve")
CAF_ADD_ATOM(es_supervision, es, dlq_stats_atom, "dlqstats")
CAF_ADD_ATOM(es_supervision, es, dlq_purge_atom, "dlqpurge")
CAF_ADD_ATOM(es_supervision, es, dlq_replay_atom, "dlqreplay")
CAF_ADD_ATOM(es_supervision, es, replay_atom, "replay")

CAF_END_TYPE_ID_BLOCK(es_supervision)

// Child factories are local closures: they never cross the network.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<es::child_factory>)

namespace es {

/// Registers the supervision module's types and error category (and the
/// store's).
void add_supervision_module(caf::actor_system_config& cfg);

} // namespace es
