// The shredding event store: a decorator over any event store that
// encrypts personal fields on append and decrypts them on read.
#pragma once

#include "es/shred/key_store.hpp"
#include "es/shred/shredding_policy.hpp"
#include "es/store/event_store.hpp"
#include "es/store/state_stores.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace es {

/// The value an erased string field reads as (non-string fields read as
/// null).
inline constexpr std::string_view erased_marker = "[erased]";

/// The value a personal string field has in the stored payload: the
/// plaintext is in the `$pii` member, encrypted.
inline constexpr std::string_view encrypted_placeholder = "[encrypted]";

/// The payload member that holds the encrypted fields in storage (removed
/// when read through the shredding store).
inline constexpr std::string_view pii_member = "$pii";

/// The payload member a read event carries when some of its personal
/// fields were erased: an array of their names.
inline constexpr std::string_view erased_member = "$erased";

/// Wraps `inner` so that the personal fields `policy` names are stored
/// encrypted with their subject's key from `keys` (created on first use),
/// and read back decrypted by `read_stream`, `read_all` and `find_event`.
/// Aggregates, repositories and projections given the returned store need
/// no change.
///
/// Append: each personal member is replaced by `encrypted_placeholder`
/// (strings) or null (anything else) and its value (JSON text) is sealed
/// with XChaCha20-Poly1305 under a fresh random nonce, with the event id,
/// subject, key id and member name as associated data, into a `$pii`
/// member. The stream is recorded with the subject in `keys`. A batch
/// re-sent with the same event ids is answered as a replay when its
/// plaintext equals what is stored (the store's idempotency holds).
///
/// Read: personal members of a forgotten subject read as `erased_marker`
/// (strings) or null, and the payload gets an `$erased` member naming them
/// (`erased_fields`). A ciphertext that does not authenticate is an error
/// (`decryption_failed`), never an erased field.
///
/// Errors, beside the inner store's and the key store's:
/// `missing_subject`, `invalid_argument` (a payload that already has a
/// `$pii` or `$erased` member, or is not a JSON object when its type has a
/// rule), `decryption_failed`, `malformed_ciphertext`, `wrong_master_key`.
/// On every error of an append nothing is written. The inner store's
/// limits apply to the encrypted payload, which is larger than the plain
/// one.
///
/// Thread-safety: as the inner store.
caf::expected<event_store_ptr> make_shredding_store(event_store_ptr inner,
                                                    key_store_ptr keys,
                                                    shredding_policy policy);

/// Decrypts events that reached the caller without the shredding store
/// (from a bus fed by the outbox, a dead letter, an export), in place, as
/// the store's reads do. Events without a `$pii` member are left alone.
/// Errors: as the store's reads.
[[nodiscard]] caf::error decrypt_events(key_store& keys,
                                        std::vector<event_data*> events);

/// Returns the names of the personal fields erased from a read event
/// (empty when none was).
std::vector<std::string> erased_fields(const event_data& ev);

/// What `forget_subject` did.
struct subject_forgotten {
  /// Whether the subject had a key.
  bool key_deleted = false;
  /// The streams recorded as holding the subject's data.
  std::vector<stream_id> streams;
  /// Of them, the streams whose snapshot was deleted.
  std::vector<stream_id> snapshots_deleted;
};

/// Forgets `subject`: deletes the snapshots of the streams recorded for it
/// (when `snapshots` is given), then its key. Its events stay in the log
/// and replay with the personal fields erased; read models built from them
/// must be rebuilt. When deleting a snapshot fails, the key is kept and the
/// error returned, so the call can be repeated.
[[nodiscard]] caf::expected<subject_forgotten>
forget_subject(key_store& keys, const std::string& subject,
               snapshot_store* snapshots = nullptr);

} // namespace es
