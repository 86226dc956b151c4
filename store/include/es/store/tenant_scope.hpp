// Tenant-scoped handles: decorators over the event store and the state
// store ports through which a caller sees and writes one tenant's rows only.
#pragma once

#include "es/store/event_store.hpp"
#include "es/store/state_stores.hpp"
#include "es/store/uuid.hpp"

#include <optional>
#include <string>

namespace es {

/// Wraps `store` so that the caller sees and writes only the rows of
/// `tenant`. Returns nullptr when `store` is null. A nil `tenant` gives a
/// handle that sees nothing and whose appends the adapters refuse.
///
/// Appends (`append`, `append_many`, `append_atomic`): events without a
/// tenant get `tenant`; an event naming another tenant refuses its request
/// (the whole call for `append_atomic`) with `tenant_mismatch`, and nothing
/// of it is written. A stream of another tenant refuses the append with
/// `tenant_mismatch` too, whatever the expected version: a version conflict
/// on such a stream, or a replay of its events, is reported as
/// `tenant_mismatch`, so no version or position of it is revealed. Deleting
/// or truncating a stream of another tenant (`delete_stream`,
/// `truncate_stream` through this handle) is refused the same way.
///
/// Stream reads (`read_stream`, `stream_version`): a stream of another
/// tenant, or of no tenant, reads as a stream that does not exist (an empty
/// page, version 0). Deciding so costs one more read of the stream's last
/// event when a page holds no event but the stream has a version, and
/// `stream_version` reads the last event with the version.
///
/// Feed reads (`read_all`, `read_correlated`): the filter's tenant is set
/// to `tenant`; a filter naming another tenant is refused with
/// `tenant_mismatch`.
///
/// `find_event`, `event_exists`: an event of another tenant is not found.
///
/// Forwarded unchanged: `name`, `blocking`, `head_position`, `metrics`,
/// `check_health`, `limits`. Positions are global: the head position, and
/// the positions of the tenant's own events, tell how many events the
/// store holds in total, and the metrics count every tenant's calls on the
/// adapter.
///
/// Not hidden: whether an event id is taken (`duplicate_event_id`,
/// `idempotency_conflict` name the refused id, not where it is stored).
/// Another tenant's deleted stream reads as missing (`stream_deleted`
/// names the stream's tenant) and refuses writes as its live streams do.
///
/// Thread-safety: as `store`.
event_store_ptr for_tenant(event_store_ptr store, uuid tenant);

/// Returns the tenant of a handle made by `for_tenant`, or nothing for any
/// other store.
std::optional<uuid> scoped_tenant(const event_store& store);

/// Wraps `snapshots` so that only snapshots of streams of `tenant` can be
/// saved, loaded or removed. Whose a stream is comes from `events` (a handle
/// from `for_tenant`, or the unscoped store: either works), by reading the
/// stream's last event: a stream is the tenant's when its events are.
///
/// `load` and `remove` of a stream that is not the tenant's behave as if
/// it had no snapshot (nothing, false). `save` of such a stream, or of a
/// stream without events, is refused with `tenant_mismatch`. Each call
/// reads the stream's last event first. Returns nullptr when an argument is
/// null. Thread-safety: as the stores given.
snapshot_store_ptr for_tenant(snapshot_store_ptr snapshots,
                              event_store_ptr events, uuid tenant);

/// Returns the prefix a scoped checkpoint store gives projection names:
/// "tenant/<tenant id>/".
std::string tenant_checkpoint_prefix(const uuid& tenant);

/// Wraps `checkpoints` so that each tenant has its own namespace of
/// projection names: the projection "orders" of tenant T is stored as
/// "tenant/T/orders" (see `tenant_checkpoint_prefix`), and its lease is that
/// name's lease. The tenant sees its names without the prefix, and `list`
/// returns only its own checkpoints. The same projection code can so run
/// once per tenant on one checkpoint table; an operator with the unscoped
/// store sees every tenant's checkpoints under their prefixed names.
/// Returns nullptr when `checkpoints` is null. Thread-safety: as
/// `checkpoints`.
checkpoint_store_ptr for_tenant(checkpoint_store_ptr checkpoints, uuid tenant);

/// Wraps `dead_letters` so that only dead letters of `tenant`'s events are
/// seen and changed. An entry's tenant is that of its event: of the event
/// it carries (`event_data`), or, when that does not decode, of the stored
/// event with its id, looked up through `events` (as for snapshots, a
/// scoped or the unscoped store). Projection names are kept as they are
/// (an entry's event already says whose it is).
///
/// `add` of an entry whose event is another tenant's (or unknown) is
/// refused with `tenant_mismatch`. `get`, `mark_retrying`, `mark_resolved`
/// of another tenant's entry behave as for an unknown id (nothing, false).
/// `list` and `stats` cover the tenant's entries only; both read the
/// entries matching the query page by page and keep the tenant's, so they
/// cost as much as listing every entry matching the query. `purge_resolved`
/// is refused with `permission_denied`: the port cannot purge one tenant's
/// entries only, so purging belongs to an operator with the unscoped store.
/// Returns nullptr when an argument is null. Thread-safety: as the stores
/// given.
dead_letter_store_ptr for_tenant(dead_letter_store_ptr dead_letters,
                                 event_store_ptr events, uuid tenant);

} // namespace es
