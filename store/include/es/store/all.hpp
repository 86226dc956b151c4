// Every public header of the store module (the core: no adapter; see
// es/sqlite/sqlite.hpp and es/postgres/postgres.hpp).
#pragma once

#include "es/store/codec.hpp"
#include "es/store/errors.hpp"
#include "es/store/event.hpp"
#include "es/store/event_registry.hpp"
#include "es/store/event_store.hpp"
#include "es/store/event_view.hpp"
#include "es/store/expected_version.hpp"
#include "es/store/fwd.hpp"
#include "es/store/histogram.hpp"
#include "es/store/json.hpp"
#include "es/store/log.hpp"
#include "es/store/memory_event_store.hpp"
#include "es/store/outbox.hpp"
#include "es/store/sql.hpp"
#include "es/store/state_stores.hpp"
#include "es/store/tenant_scope.hpp"
#include "es/store/tracing.hpp"
#include "es/store/type_ids.hpp"
#include "es/store/uuid.hpp"
