//! The change feed check (part of [`conformance`](super)).

use std::time::Duration;

use super::{Check, insert, ok, record, reissue_of, service_account};
use crate::clock::Timestamp;
use crate::store::feed::{FeedBreak, FeedChange, FeedPosition, FeedRead};
use crate::store::{KeyStore, OldKeyFate};
use crate::token::KeyId;

const C: Check = Check::ChangeFeed;

/// Reads the feed from `from` in pages of `page` until `want` changes of
/// `ours` are seen (PostgreSQL shows a change once every older transaction
/// of the cluster has ended, so this waits up to 20 s); returns them and
/// the position after them.
async fn read_ours<S: KeyStore>(
    store: &S,
    from: FeedPosition,
    page: u32,
    ours: &[KeyId],
    want: usize,
) -> (Vec<FeedChange>, FeedPosition) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut at = from;
    let mut seen = Vec::new();
    loop {
        match ok(C, "changes_after", store.changes_after(at, page).await) {
            FeedRead::Changes { changes, next } => {
                assert!(changes.len() <= page as usize, "[{C}] a page longer than asked");
                seen.extend(changes.iter().filter(|c| ours.contains(&c.key_id)).copied());
                at = next;
                if changes.len() < page as usize && seen.len() >= want {
                    return (seen, at);
                }
            }
            other => panic!("[{C}] the feed broke while reading it: {other:?}"),
        }
        assert!(std::time::Instant::now() < deadline, "[{C}] only {} of {want} changes arrived: {seen:?}", seen.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`Check::ChangeFeed`]: every commit appears once, in commit order, one
/// entry per key it changes (two for a reissue, `gone` for a delete, none
/// for a note); pages of any size give the same sequence; a position of
/// another store, one ahead of the store and one behind pruning are each
/// refused as broken. A store without a feed (`feed_head` is `None`)
/// passes.
pub async fn change_feed<S: KeyStore>(store: &S) {
    let Some(head) = ok(C, "feed_head", store.feed_head().await) else { return };
    let sa = service_account();
    let (a, b) = (record(&sa), record(&sa));
    let c = reissue_of(&b);
    insert(store, C, &a).await;
    ok(C, "revoke", store.revoke(&a.id).await);
    insert(store, C, &b).await;
    ok(C, "delete", store.delete(&a.id).await);
    ok(C, "reissue", store.reissue(&b.id, c.clone(), OldKeyFate::Revoke).await);
    let ours = [a.id, b.id, c.id];
    let expected = vec![
        FeedChange::new(a.id, false),
        FeedChange::new(a.id, false),
        FeedChange::new(b.id, false),
        FeedChange::new(a.id, true),
        FeedChange::new(b.id, false),
        FeedChange::new(c.id, false),
    ];
    let (all, end) = read_ours(store, head, 1000, &ours, expected.len()).await;
    assert_eq!(all, expected, "[{C}] the feed's changes, in commit order");
    let (paged, _) = read_ours(store, head, 2, &ours, expected.len()).await;
    assert_eq!(paged, expected, "[{C}] pages of two give the same changes");
    match ok(C, "changes_after the end", store.changes_after(end, 1000).await) {
        FeedRead::Changes { changes, .. } => {
            assert!(changes.iter().all(|ch| !ours.contains(&ch.key_id)), "[{C}] a change was read twice: {changes:?}");
        }
        other => panic!("[{C}] reading from the end broke: {other:?}"),
    }

    let (major, minor) = end.parts();
    let other = FeedPosition::new(end.epoch() ^ 1, major, minor);
    let ahead = FeedPosition::new(end.epoch(), major + 1_000_000_000, minor);
    for (at, why) in [(other, FeedBreak::OtherStore), (ahead, FeedBreak::Backwards)] {
        let read = ok(C, "changes_after a bad position", store.changes_after(at, 10).await);
        assert_eq!(read, FeedRead::Broken(why), "[{C}] {at:?}");
    }

    // Pruning everything written so far: a reader from the head is behind
    // it; a reader at the end is not.
    let later = Timestamp::now().saturating_add(Duration::from_secs(1));
    let mut pruned = 0;
    while let n @ 1.. = ok(C, "prune_feed", store.prune_feed(later, 1000).await) {
        pruned += n;
    }
    assert!(pruned >= expected.len() as u64, "[{C}] pruned {pruned} entries");
    let read = ok(C, "changes_after a pruned position", store.changes_after(head, 10).await);
    assert_eq!(read, FeedRead::Broken(FeedBreak::Pruned), "[{C}] reading from before the pruning");
    let read = ok(C, "changes_after the end after pruning", store.changes_after(end, 10).await);
    assert!(matches!(read, FeedRead::Changes { .. }), "[{C}] the end is not behind pruning: {read:?}");
}
