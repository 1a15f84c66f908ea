//! Idempotency records: which change an `Idempotency-Key` made, kept in the
//! store with the change itself.
//!
//! A caller that wants a change made at most once per key attaches an
//! [`IdempotencyClaim`] to the change's log entry
//! ([`LogEntry::with_idempotency`](crate::LogEntry::with_idempotency)).
//! [`KeyStore::commit`](crate::KeyStore::commit) then writes, in the same
//! transaction or script as the change and its log entries, an
//! [`IdempotencyRecord`]: the claim and the id of the entry that carried it.
//! If a live record for the same actor and key is there already, the whole
//! commit is refused with [`StoreError::IdempotencyKeyTaken`](crate::StoreError::IdempotencyKeyTaken) and nothing is
//! written; the caller then reads the record
//! ([`KeyStore::idempotency`](crate::KeyStore::idempotency)) and answers
//! with the change it names. Because the record lands with the change, a
//! retry on any node, after any restart, finds it; and of two nodes racing
//! with one key exactly one change lands.
//!
//! The answer itself is not stored: the operations log already keeps each
//! entry's response snapshot ([`KeyStore::operation`](crate::KeyStore::operation)),
//! from which the answer is rebuilt (never with a secret).
//!
//! A record is live until its `expires_at`; stores ignore an expired record
//! when reading, replace it when the same key is claimed again, and purge a
//! bounded number of expired records on each claiming write.
//!
//! ```
//! use std::time::Duration;
//! use api_keys::store::idempotency::{IdempotencyClaim, IdempotencyKey};
//! use api_keys::{Actor, Timestamp};
//!
//! let key = IdempotencyKey::of("8e0f6b53-6a40-4c1e-9e3c-3f0b2d6f1a11");
//! let now = Timestamp::from_unix_seconds(1_800_000_000)?;
//! let claim = IdempotencyClaim::new(Actor::new("ops")?, key, [7; 32], now, Duration::from_secs(86_400));
//! assert!(claim.is_live_at(now) && !claim.is_live_at(claim.expires_at));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::clock::Timestamp;
use crate::operation::{Actor, OperationId};

/// How many expired records a claiming write purges at most.
pub const PURGE_BATCH: u32 = 32;

/// A client's idempotency key as stored: a SHA-256 of its text (the
/// client's key never reaches the store as it was sent).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdempotencyKey([u8; 32]);

impl IdempotencyKey {
    /// The stored form of the key text `client_key` (e.g. a UUID in its
    /// canonical lower-case form).
    #[must_use]
    pub fn of(client_key: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"api-keys idempotency key v1\0");
        h.update(client_key.as_bytes());
        Self(h.finalize().into())
    }

    /// A key from its 32 stored bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 stored bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The bytes in lower-case hex.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", &self.to_hex()[..12])
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A claim of an idempotency key, carried by the log entry of the change it
/// makes (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdempotencyClaim {
    /// Whose key it is: keys of different actors never meet.
    pub actor: Actor,
    /// The key.
    pub key: IdempotencyKey,
    /// A digest of the request the key was sent with; a repeat with
    /// another request is refused by the caller, not replayed.
    pub fingerprint: [u8; 32],
    /// When the claim was made.
    pub created_at: Timestamp,
    /// When the record stops counting (is ignored and may be replaced).
    pub expires_at: Timestamp,
}

impl IdempotencyClaim {
    /// A claim by `actor` of `key` for a request with `fingerprint`, made
    /// at `now` and kept for `ttl`.
    #[must_use]
    pub fn new(actor: Actor, key: IdempotencyKey, fingerprint: [u8; 32], now: Timestamp, ttl: Duration) -> Self {
        Self { actor, key, fingerprint, created_at: now, expires_at: now.saturating_add(ttl) }
    }

    /// Whether it still counts at `now` (`now < expires_at`).
    #[must_use]
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

/// A claim as recorded: with the id of the log entry that carried it,
/// whose response snapshot answers a repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdempotencyRecord {
    /// The claim.
    pub claim: IdempotencyClaim,
    /// The log entry of the change it made.
    pub operation: OperationId,
}

impl IdempotencyRecord {
    /// The record of `claim` made by the change logged as `operation`.
    #[must_use]
    pub fn new(claim: IdempotencyClaim, operation: OperationId) -> Self {
        Self { claim, operation }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_their_text_and_claims_expire() {
        let a = IdempotencyKey::of("8e0f6b53-6a40-4c1e-9e3c-3f0b2d6f1a11");
        assert_eq!(a, IdempotencyKey::of("8e0f6b53-6a40-4c1e-9e3c-3f0b2d6f1a11"));
        assert_ne!(a, IdempotencyKey::of("8e0f6b53-6a40-4c1e-9e3c-3f0b2d6f1a12"));
        assert_eq!(IdempotencyKey::from_bytes(*a.as_bytes()), a);
        assert_eq!(a.to_hex().len(), 64);
        assert!(!format!("{a:?}").contains("8e0f6b53"), "Debug shows the stored form only");
        let now = Timestamp::from_unix_nanos(1_000);
        let c = IdempotencyClaim::new(Actor::system(), a, [1; 32], now, Duration::from_nanos(10));
        assert_eq!(c.expires_at, Timestamp::from_unix_nanos(1_010));
        assert!(c.is_live_at(Timestamp::from_unix_nanos(1_009)));
        assert!(!c.is_live_at(Timestamp::from_unix_nanos(1_010)));
    }
}
