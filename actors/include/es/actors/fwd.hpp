// Forward declarations of the actors module's types, for headers that only
// pass them around. (The store actor's handle, a typed actor, is declared
// in es/actors/store_actor.hpp.)
#pragma once

#include <cstdint>

namespace es {

template <class State>
class aggregate;

template <class A>
class aggregate_repository;

template <class A>
struct aggregate_actor_state;

template <class... Cmds>
struct command_list;

struct aggregate_metrics;
struct aggregate_options;
struct command_context;
struct command_envelope;
struct command_result;
struct region_options;
struct region_stats;
struct repository_options;
struct snapshot_policy;
struct store_actor_config;

enum class actors_errc : uint8_t;
enum class unhandled_event_policy : uint8_t;

} // namespace es
