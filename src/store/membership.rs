//! The flood shield's membership set: 64-bit fingerprints in a sorted
//! array, 8 bytes per id, plus a small delta of recent changes.
//!
//! A hash set of `u64` costs about 18.9 bytes per id (9 bytes a bucket at a
//! load factor of at most 7/8, rounded up to a power of two). A sorted
//! `Vec<u64>` costs exactly 8 and answers by binary search (about 23 steps
//! for 10 million ids, all in one cache-friendly array). Changes land in two
//! small hash sets — `added` (not in the array) and `removed` (in the
//! array, gone since) — that are folded into the array once they hold more
//! than [`Membership::delta_limit`] entries: a linear merge from the back
//! into the array's own allocation (grown once, exactly), so the array never
//! exists twice.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Folds already-random 64-bit fingerprints: no second hash needed.
#[derive(Default)]
struct Fold(u64);

impl Hasher for Fold {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Delta = HashSet<u64, BuildHasherDefault<Fold>>;

/// The delta is folded in once it holds more than this many entries, or
/// one per `DELTA_SHARE` ids of the array if that is more.
const DELTA_MIN: usize = 4096;
const DELTA_SHARE: usize = 256;

/// A set of 64-bit fingerprints (see the module docs).
#[derive(Default)]
pub(crate) struct Membership {
    /// Sorted, without duplicates.
    sorted: Vec<u64>,
    /// Members not in `sorted`.
    added: Delta,
    /// Entries of `sorted` that are no longer members.
    removed: Delta,
}

impl Membership {
    /// A set of `fingerprints` (any order, duplicates allowed), reusing
    /// their allocation.
    pub(crate) fn from_unsorted(mut fingerprints: Vec<u64>) -> Self {
        fingerprints.sort_unstable();
        fingerprints.dedup();
        fingerprints.shrink_to_fit();
        Self { sorted: fingerprints, ..Self::default() }
    }

    /// Empties the set and hands back its array's allocation (empty), so a
    /// reload can fill the same memory instead of building beside it.
    pub(crate) fn take_allocation(&mut self) -> Vec<u64> {
        let mut v = std::mem::take(&mut self.sorted);
        v.clear();
        *self = Self::default();
        v
    }

    fn in_array(&self, f: u64) -> bool {
        self.sorted.binary_search(&f).is_ok()
    }

    /// Whether `f` is a member.
    pub(crate) fn contains(&self, f: u64) -> bool {
        if self.added.contains(&f) {
            return true;
        }
        self.in_array(f) && !self.removed.contains(&f)
    }

    /// Adds `f`.
    pub(crate) fn insert(&mut self, f: u64) {
        if self.removed.remove(&f) || self.in_array(f) {
            return;
        }
        self.added.insert(f);
        self.fold_if_due();
    }

    /// Removes `f`.
    pub(crate) fn remove(&mut self, f: u64) {
        if self.added.remove(&f) || !self.in_array(f) {
            return;
        }
        self.removed.insert(f);
        self.fold_if_due();
    }

    /// How many fingerprints are members.
    pub(crate) fn len(&self) -> usize {
        self.sorted.len() - self.removed.len() + self.added.len()
    }

    /// Heap bytes held: the array's capacity and the delta's tables
    /// (estimated as the standard hash set lays them out: 9 bytes a bucket,
    /// at most 7 elements per 8 buckets).
    pub(crate) fn heap_bytes(&self) -> usize {
        let delta = self.added.capacity() + self.removed.capacity();
        self.sorted.capacity() * 8 + delta.div_ceil(7) * 8 * 9
    }

    /// The most delta entries kept before folding them into the array.
    pub(crate) fn delta_limit(&self) -> usize {
        DELTA_MIN.max(self.sorted.len() / DELTA_SHARE)
    }

    fn fold_if_due(&mut self) {
        if self.added.len() + self.removed.len() > self.delta_limit() {
            self.fold();
        }
    }

    /// Folds the delta into the array: drops the removed entries, then
    /// merges the added ones from the back into the array's own
    /// allocation, grown once by exactly their number. Linear in the
    /// array.
    pub(crate) fn fold(&mut self) {
        if !self.removed.is_empty() {
            let removed = std::mem::take(&mut self.removed);
            self.sorted.retain(|f| !removed.contains(f));
        }
        if self.added.is_empty() {
            return;
        }
        let mut add: Vec<u64> = self.added.drain().collect();
        self.added = Delta::default();
        add.sort_unstable();
        let old = self.sorted.len();
        self.sorted.reserve_exact(add.len());
        self.sorted.resize(old + add.len(), 0);
        // Fill from the back: the larger of the two tails goes last.
        let (mut i, mut out) = (old, old + add.len());
        while let Some(&a) = add.last() {
            out -= 1;
            match i.checked_sub(1).and_then(|p| self.sorted.get(p).copied()) {
                Some(s) if s > a => {
                    i -= 1;
                    self.sorted[out] = s;
                }
                _ => {
                    self.sorted[out] = a;
                    add.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A small deterministic generator (xorshift) for the model test.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn behaves_as_a_set_across_folds() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        let initial: Vec<u64> = (0..20_000).map(|_| next(&mut state) % 50_000).collect();
        let mut model: BTreeSet<u64> = initial.iter().copied().collect();
        let mut set = Membership::from_unsorted(initial);
        assert_eq!(set.len(), model.len());
        for step in 0..200_000 {
            let f = next(&mut state) % 50_000;
            if step % 3 == 0 {
                set.remove(f);
                model.remove(&f);
            } else {
                set.insert(f);
                model.insert(f);
            }
            if step % 997 == 0 {
                let probe = next(&mut state) % 50_000;
                assert_eq!(set.contains(probe), model.contains(&probe), "step {step}, {probe}");
                assert_eq!(set.len(), model.len(), "step {step}");
            }
        }
        for f in 0..50_000 {
            assert_eq!(set.contains(f), model.contains(&f), "{f}");
        }
        set.fold();
        assert!(set.added.is_empty() && set.removed.is_empty());
        assert_eq!(set.sorted, model.iter().copied().collect::<Vec<_>>(), "folded array is sorted and exact");
    }

    #[test]
    fn the_delta_stays_small() {
        let mut set = Membership::from_unsorted((0..1_000_000).map(|i| i * 2).collect());
        for i in 0..100_000u64 {
            set.insert(i * 2 + 1);
            set.remove(i * 4);
            assert!(set.added.len() + set.removed.len() <= set.delta_limit());
        }
        assert_eq!(set.len(), 1_000_000 + 100_000 - 100_000);
        // The array and a delta of at most 1/256 of it: about 8 bytes an id.
        let per_id = set.heap_bytes() as f64 / set.len() as f64;
        assert!(per_id < 8.5, "{per_id} bytes per id");
    }

    #[test]
    fn an_emptied_set_lends_its_allocation() {
        let mut set = Membership::from_unsorted((0..10_000).collect());
        let v = set.take_allocation();
        assert!(v.is_empty() && v.capacity() >= 10_000);
        assert_eq!(set.len(), 0);
        assert!(!set.contains(5));
    }
}
