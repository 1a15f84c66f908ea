//! Coalesced last-used tracking.
//!
//! A successful verification notes the key in memory instead of writing to
//! the store. A key whose stored `last_used_at` is less than one interval
//! older than the *last flush* is not noted at all: no clock read, no lock,
//! no allocation (the common case). Notes are written in one batch by
//! [`LastUsed::take_due`] + the store's `touch_last_used`, at most once per
//! key per interval; a use becomes visible in the store within one interval
//! plus one flush period.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::clock::Timestamp;
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

    /// Notes a use of `record`; `now` is called only if the note is needed.
    #[inline]
    pub(crate) fn note(&self, record: &KeyRecord, now: impl FnOnce() -> Timestamp) {
        let epoch = Timestamp::from_unix_nanos(self.epoch.load(Ordering::Relaxed));
        if record.last_used_at.is_some_and(|t| epoch.duration_since(t) < self.interval) {
            return;
        }
        self.note_slow(record, now());
    }

    #[cold]
    fn note_slow(&self, record: &KeyRecord, now: Timestamp) {
        let mut map = self.shard(&record.id).lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(record.id).and_modify(|s| s.seen = s.seen.max(now)).or_insert(Slot { seen: now, written: None });
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
            kind: KeyKind::Native,
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
    fn old_written_notes_are_forgotten() {
        let lu = LastUsed::new(Duration::from_secs(60), t(0));
        lu.note(&rec(None), || t(0));
        let _ = lu.take_due(t(0));
        let _ = lu.take_due(t(100));
        assert!(lu.shards.iter().all(|s| s.lock().unwrap().is_empty()));
    }
}
