//! The change feed: every write a store commits, in commit order, so that a
//! node mirroring the store (the flood shield's membership set) catches up
//! from where it stopped instead of reloading every key.
//!
//! Each [`KeyStore::commit`](crate::KeyStore::commit) appends one
//! [`FeedChange`] per key it touches (two for a reissue) in the same
//! transaction or script as the change, so a change and its feed entry land
//! together. A reader starts at [`KeyStore::feed_head`](crate::KeyStore::feed_head)
//! (read *before* a full load, so nothing committed during the load is
//! missed) and pages on with
//! [`KeyStore::changes_after`](crate::KeyStore::changes_after).
//!
//! # Continuity
//!
//! A reader must never believe it is current when it is not. The feed says
//! it cannot continue from a position ([`FeedRead::Broken`]) when:
//! - the store is another one ([`FeedBreak::OtherStore`]): every store
//!   writes a random *epoch* when its schema is created, and each position
//!   carries the epoch it came from (a re-created database, another
//!   schema, a flushed Redis);
//! - entries after the position were pruned ([`FeedBreak::Pruned`]): the
//!   store records how far pruning went;
//! - the position is ahead of the store ([`FeedBreak::Backwards`]): a store
//!   restored from an older backup.
//!
//! The reader then does a full load and starts again from a new head.
//!
//! # Commit order
//!
//! A reader that advances past an entry must never later meet an entry
//! committed before it. SQLite has one writer at a time, and Redis runs each
//! script alone, so their sequence is commit order. PostgreSQL hands out
//! sequence numbers before commit, so its feed is read up to the oldest
//! transaction still running (`pg_snapshot_xmin`): an entry is read only
//! once every transaction that could commit one before it has ended, and
//! positions order by transaction id, then sequence.

use crate::token::KeyId;

/// Where a reader of a store's change feed stands. Opaque: it comes from
/// [`KeyStore::feed_head`](crate::KeyStore::feed_head) or a
/// [`FeedRead::Changes`] page, and is only meaningful to the store that
/// gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeedPosition {
    /// The store's epoch (see the module docs).
    pub(crate) epoch: u64,
    /// Entries after `(major, minor)` are unread (PostgreSQL: transaction
    /// id, sequence; Redis: the stream id's milliseconds and sequence; the
    /// other stores: 0, sequence).
    pub(crate) major: u64,
    pub(crate) minor: u64,
}

impl FeedPosition {
    /// A position of a store with `epoch`, before the entries after
    /// `(major, minor)`: for store implementations.
    #[must_use]
    pub fn new(epoch: u64, major: u64, minor: u64) -> Self {
        Self { epoch, major, minor }
    }

    /// The store epoch this position belongs to.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The position's two ordered parts (see [`FeedPosition::new`]).
    #[must_use]
    pub fn parts(&self) -> (u64, u64) {
        (self.major, self.minor)
    }
}

/// One committed change of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedChange {
    /// The key.
    pub key_id: KeyId,
    /// Whether the change removed the key (a delete); otherwise the key
    /// exists after it (created, updated, revoked, reissued).
    pub gone: bool,
}

impl FeedChange {
    /// A change of `key_id`, `gone` if it deleted the key.
    #[must_use]
    pub fn new(key_id: KeyId, gone: bool) -> Self {
        Self { key_id, gone }
    }
}

/// What [`KeyStore::changes_after`](crate::KeyStore::changes_after) read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedRead {
    /// The changes after the position asked, oldest first, and the position
    /// after them. Fewer changes than asked means the reader is current
    /// (as of the read).
    Changes {
        /// The changes, in commit order.
        changes: Vec<FeedChange>,
        /// Where to continue.
        next: FeedPosition,
    },
    /// The feed cannot continue from that position: load everything again.
    Broken(FeedBreak),
}

/// Why a feed cannot continue from a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeedBreak {
    /// The position is of another store (its epoch differs).
    #[error("the position belongs to another store (a re-created or replaced database)")]
    OtherStore,
    /// Entries after the position were pruned.
    #[error("changes after the position were pruned")]
    Pruned,
    /// The position is ahead of the store (restored from an older backup).
    #[error("the position is ahead of the store (restored from a backup?)")]
    Backwards,
}

/// The feed entries a change leaves: one per key it touches.
pub(crate) fn entries_of(change: &crate::operation::Change) -> Vec<FeedChange> {
    use crate::operation::Change;
    match change {
        Change::Insert(r) => vec![FeedChange::new(r.id, false)],
        Change::Update { id, .. } | Change::Revoke(id) => vec![FeedChange::new(*id, false)],
        Change::Delete(id) => vec![FeedChange::new(*id, true)],
        Change::Reissue { old, new, .. } => vec![FeedChange::new(*old, false), FeedChange::new(new.id, false)],
        // Only log entries: the key is unchanged.
        Change::Note(_) => vec![],
    }
}

/// A random epoch for an in-process feed.
pub(crate) fn random_epoch() -> u64 {
    let mut bytes = [0u8; 8];
    match crate::random::fill_random(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        // Uniqueness is all an epoch needs.
        Err(_) => std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), std::time::SystemTime::now()),
    }
}
