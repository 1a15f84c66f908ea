//! Coalesced last-used tracking.
//!
//! A successful verification notes the key in memory instead of writing to
//! the store. A key whose stored `last_used_at` is less than one interval
//! older than the *last flush* is not noted at all: no clock read, no lock,
//! no allocation (the common case). Notes are written in one batch by
//! [`LastUsed::take_due`] + the store's `touch_last_used`, at most once per
//! key per interval; a use becomes visible in the store within one interval
//! plus one flush period.
//!
//! A key not yet written (or stale) is handed to the queue below — a mutex
//! and a map insert — once per flush period, not once per use, when the
//! store lends a "seen at" cell with the record ([`crate::RecordView`]; the
//! memory store keeps one in each entry): the first use after a flush
//! stores its time in the cell, later uses see a time at or after the last
//! flush and return at once (one load of a line the lookup already
//! brought). Two threads hammering one unflushed key thus write that line
//! once per flush period. The time written for such a key is its first use
//! after the latest flush, which keeps the bound above.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::clock::Timestamp;
#[cfg(test)]
use crate::record::KeyRecord;
use crate::token::KeyId;

const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Slot {
    seen: Timestamp,
    written: Option<Timestamp>,
}

#[derive(Debug)]
pub(crate) struct LastUsed {
    interval: Duration,
    /// Unix nanos of the latest flush (or construction): the reference
    /// point for "is the stored last_used_at stale?".
    epoch: AtomicI64,
    shards: Box<[Mutex<HashMap<KeyId, Slot>>]>,
}

impl LastUsed {
    pub(crate) fn new(interval: Duration, now: Timestamp) -> Self {
        Self {
            interval,
            epoch: AtomicI64::new(now.unix_nanos()),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    fn shard(&self, id: &KeyId) -> &Mutex<HashMap<KeyId, Slot>> {
        &self.shards[id.shard(SHARDS)]
    }

    /// Notes a use of `record` (a store that lends no "seen at" cell);
    /// `now` is called only if the note is needed.
    #[cfg(test)]
    #[inline]
    pub(crate) fn note(&self, record: &KeyRecord, now: impl FnOnce() -> Timestamp) {
        self.note_use(&record.id, record.last_used_at, None, now);
    }

    /// Notes a use of key `id` whose stored last use is `last_used_at`.
    /// With the store's `seen` cell, a key already noted since the latest
    /// flush returns after one load; `now` is called only if a note is
    /// needed.
    #[inline]
    pub(crate) fn note_use(
        &self,
        id: &KeyId,
        last_used_at: Option<Timestamp>,
        seen: Option<&AtomicI64>,
        now: impl FnOnce() -> Timestamp,
    ) {
        let epoch_nanos = self.epoch.load(Ordering::Relaxed);
        let epoch = Timestamp::from_unix_nanos(epoch_nanos);
        if last_used_at.is_some_and(|t| epoch.duration_since(t) < self.interval) {
            return;
        }
        if let Some(seen) = seen
            && seen.load(Ordering::Relaxed) >= epoch_nanos
        {
            return;
        }
        let now = now();
        if let Some(seen) = seen {
            seen.store(now.unix_nanos(), Ordering::Relaxed);
        }
        self.note_slow(id, now);
    }

    #[cold]
    fn note_slow(&self, id: &KeyId, now: Timestamp) {
        let mut map = self.shard(id).lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(*id).and_modify(|s| s.seen = s.seen.max(now)).or_insert(Slot { seen: now, written: None });
    }

    /// Takes the notes due for writing at `now` and marks them written;
    /// forgets notes older than the interval that were already written.
    pub(crate) fn take_due(&self, now: Timestamp) -> Vec<(KeyId, Timestamp)> {
        self.epoch.fetch_max(now.unix_nanos(), Ordering::Relaxed);
        let mut due = Vec::new();
        for shard in &*self.shards {
            let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, slot) in map.iter_mut() {
                let is_due = match slot.written {
                    None => true,
                    Some(w) => slot.seen > w && slot.seen.duration_since(w) >= self.interval,
                };
                if is_due {
                    due.push((*id, slot.seen));
                    slot.written = Some(slot.seen);
                }
            }
            map.retain(|_, s| s.written != Some(s.seen) || now.duration_since(s.seen) < self.interval);
        }
        due
    }

    /// Puts back notes whose write failed so the next flush retries them.
    pub(crate) fn restore(&self, failed: &[(KeyId, Timestamp)]) {
        for (id, seen) in failed {
            let mut map = self.shard(id).lock().unwrap_or_else(PoisonError::into_inner);
            let slot = map.entry(*id).or_insert(Slot { seen: *seen, written: None });
            slot.written = None;
            slot.seen = slot.seen.max(*seen);
        }
    }

    /// Notes waiting (for tests and metrics).
    pub(crate) fn pending(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .values()
                    .filter(|slot| slot.written != Some(slot.seen))
                    .count()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::record::{Description, KeyKind, KeyStatus, ReissueLinks, ServiceAccountId};
    use crate::scope::ScopeSet;
    use crate::secret::MaskedKey;

    fn rec(last: Option<Timestamp>) -> KeyRecord {
        KeyRecord {
            id: KeyId::generate().unwrap(),
            service_account_id: ServiceAccountId::new("sa").unwrap(),
            description: Description::default(),
            created_at: Timestamp::UNIX_EPOCH,
            last_used_at: last,
            scopes: ScopeSet::default(),
            expires_at: None,
            masked_key: MaskedKey::default(),
            pepper_version: 1,
            digest: Digest::from_bytes([0; 32]),
            status: KeyStatus::Active,
            enabled: true,
            kind: KeyKind::Native,
            controls: None,
            links: ReissueLinks::default(),
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_seconds(s).unwrap()
    }

    #[test]
    fn coalesces_to_one_write_per_interval() {
        let lu = LastUsed::new(Duration::from_secs(60), t(1000));
        let r = rec(None);
        for s in 0..10 {
            lu.note(&r, || t(1000 + s));
        }
        assert_eq!(lu.take_due(t(1010)), vec![(r.id, t(1009))]);
        // More uses within the interval: nothing due.
        lu.note(&r, || t(1020));
        assert!(lu.take_due(t(1020)).is_empty());
        // After the interval since the last write, the latest use is due.
        lu.note(&r, || t(1070));
        assert_eq!(lu.take_due(t(1070)), vec![(r.id, t(1070))]);
    }

    #[test]
    fn fresh_records_are_not_noted_and_the_clock_is_not_read() {
        let lu = LastUsed::new(Duration::from_secs(60), t(1030));
        lu.note(&rec(Some(t(1000))), || panic!("clock read for a fresh record"));
        assert_eq!(lu.pending(), 0);
        // Staleness is judged against the last flush.
        let _ = lu.take_due(t(1060));
        lu.note(&rec(Some(t(1000))), || t(1061));
        assert_eq!(lu.pending(), 1);
    }

    #[test]
    fn failed_writes_are_retried() {
        let lu = LastUsed::new(Duration::from_secs(60), t(0));
        let r = rec(None);
        lu.note(&r, || t(5));
        let due = lu.take_due(t(5));
        lu.restore(&due);
        assert_eq!(lu.take_due(t(6)), due);
    }

    #[test]
    fn a_seen_cell_notes_an_unflushed_key_once_per_flush() {
        let lu = LastUsed::new(Duration::from_secs(60), t(1000));
        let id = KeyId::generate().unwrap();
        let seen = AtomicI64::new(i64::MIN);
        lu.note_use(&id, None, Some(&seen), || t(1001));
        assert_eq!(seen.load(Ordering::Relaxed), t(1001).unix_nanos());
        // Noted since the last flush: no clock read, no queue.
        lu.note_use(&id, None, Some(&seen), || panic!("clock read for a key already noted"));
        assert_eq!(lu.take_due(t(1002)), vec![(id, t(1001))]);
        // After a flush the next use is noted again (the store has not
        // been written yet in this test: last_used_at is still None).
        lu.note_use(&id, None, Some(&seen), || t(1003));
        assert_eq!(lu.pending(), 1);
        // A stored last use within the interval of the flush: nothing.
        lu.note_use(&id, Some(t(1002)), Some(&seen), || panic!("clock read for a fresh record"));
    }

    #[test]
    fn old_written_notes_are_forgotten() {
        let lu = LastUsed::new(Duration::from_secs(60), t(0));
        lu.note(&rec(None), || t(0));
        let _ = lu.take_due(t(0));
        let _ = lu.take_due(t(100));
        assert!(lu.shards.iter().all(|s| s.lock().unwrap().is_empty()));
    }
}
