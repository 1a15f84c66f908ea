//! The conformance suite: one `async fn` per contract clause of
//! [`KeyStore`], each panicking with `[check name] what went wrong` on the
//! first violation.
#![allow(clippy::missing_panics_doc, reason = "every check panics on a violation, as the module docs say")]

use std::fmt;

use crate::clock::Timestamp;
use crate::digest::Digest;
use crate::operation::{
    Actor, Change, KeyUpdate, LeakDetails, LogEntry, Operation, OperationChanges, OperationCursor, OperationKind,
};
use crate::record::{Description, KeyKind, KeyRecord, KeyStatus, ReissueLinks, ServiceAccountId};
use crate::scope::{Scope, ScopeSet};
use crate::secret::MaskedKey;
use crate::store::{KeyStore, OldKeyFate, PageRequest, StoreError};
use crate::token::KeyId;

#[path = "conformance_controls.rs"]
mod controls;
#[path = "conformance_feed.rs"]
mod feed;
#[path = "conformance_idempotency.rs"]
mod idempotency;
#[path = "conformance_resources.rs"]
mod resources;
pub use controls::{
    controls_round_trip, controls_update, list_by_external_id, list_expiring, spend_credits, spend_credits_race,
};
pub use feed::change_feed;
pub use idempotency::idempotency_records;
pub use resources::resources;

/// One clause of the [`KeyStore`] contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// Every field survives insert → get exactly; unknown ids are `None`.
    InsertGetRoundTrip,
    /// A duplicate id is refused and writes nothing.
    DuplicateId,
    /// A second imported key with the same digest is refused and writes
    /// nothing; a native key may share an imported key's digest.
    DuplicateImportedDigest,
    /// `get_by_digest` finds imported keys only.
    GetByDigestFindsOnlyImported,
    /// `get_many` answers each id as `get` does, in the order asked
    /// (repeats and unknown ids included), also for a thousand ids at once.
    GetMany,
    /// Listing is id-ordered, pages with the cursor, and shows only the
    /// account's keys.
    ListPagination,
    /// Page sizes are clamped to `1..=PageRequest::MAX_LIMIT`.
    ListLimitClamp,
    /// Revoke marks the key revoked, is idempotent, and reports unknown ids.
    Revoke,
    /// Delete removes the key and its digest index entry, and reports
    /// unknown ids.
    Delete,
    /// Reissue with [`OldKeyFate::Revoke`] links and revokes the old key.
    ReissueRevoke,
    /// Reissue with [`OldKeyFate::ExpireAt`] limits the old key, never
    /// beyond its own expiry.
    ReissueExpireAt,
    /// Reissuing a revoked or already reissued key is a conflict and writes
    /// nothing; an unknown old key is `NotFound`.
    ReissueConflicts,
    /// A reissue that fails on a duplicate new id or digest leaves
    /// everything untouched.
    ReissueIsAtomic,
    /// Two concurrent reissues of one key: exactly one wins.
    ReissueRace,
    /// `touch_last_used` applies a batch, never moves a time backwards and
    /// ignores unknown ids.
    TouchLastUsed,
    /// Timestamps round-trip with nanosecond precision, across the
    /// whole `i64` range.
    TimestampPrecision,
    /// `commit` of an update changes the fields it sets and only those
    /// (a removed expiry included), returns the updated record, reports
    /// unknown ids, and refuses a revoked key or a new expiry on a reissued
    /// key without writing.
    Update,
    /// Every kind of `commit` writes its log entries, listed newest first;
    /// a deleted key's log stays readable; a refused change logs nothing.
    CommitLogs,
    /// A fault between the change and its record (an entry id already
    /// logged, so the record cannot be written) leaves neither the change
    /// nor any entry, for every kind of change.
    CommitIsAtomic,
    /// The operations log pages newest first with the cursor, without
    /// gaps or repeats, one key's entries only.
    OperationsPagination,
    /// `commit` of a [`Change::Note`] (a leak entry) appends only its
    /// entries, with their details, newest first, for a live or a revoked
    /// key, changing no record; an unknown or deleted key is `NotFound` and
    /// an entry id already logged is refused, writing nothing.
    CommitNote,
    /// `pepper_fingerprint` records the first fingerprint of a version and
    /// returns it from then on, whatever is proposed; versions are
    /// independent.
    PepperFingerprint,
    /// The enabled flag and every control survive insert → get and list
    /// exactly, at their extremes.
    ControlsRoundTrip,
    /// An update sets and clears each control and disables and enables a
    /// key, changing nothing else; an update that leaves the credits alone
    /// keeps a count spent meanwhile.
    ControlsUpdate,
    /// `spend_credits`: spent, exhausted at zero (nothing spent), unlimited,
    /// not found, a cost above one, a refill when due and only once per due
    /// instant, exact counts up to `Credits::MAX`.
    SpendCredits,
    /// Concurrent spends of one key's credits: exactly as many succeed as it
    /// had, and none is left.
    SpendCreditsRace,
    /// `list_by_external_id` lists one owner's keys across service accounts
    /// by id, pages with the cursor, and follows updates and deletes.
    ListByExternalId,
    /// `list_expiring` lists active keys with `window.start <= expires_at <
    /// window.end` across service accounts by id and pages with the cursor.
    ListExpiring,
    /// `ids_after` lists every key id (of every service account, revoked
    /// ones included) in ascending order, pages without gaps or repeats,
    /// and drops deleted ids. A store that keeps the trait's default (no
    /// id listing, so a shield in front of it never trusts its set) fails
    /// this check.
    IdsAfter,
    /// `operation` finds a log entry by id with its response snapshot, also
    /// after the key is deleted; an unknown id is `None`.
    OperationById,
    /// `commit` records an entry's idempotency claim with its change;
    /// `idempotency` reads it while live, per actor; a claim of a key with
    /// a live record is `IdempotencyKeyTaken` for every kind of change and
    /// writes nothing; an expired record is replaced; of two racing claims
    /// exactly one lands.
    IdempotencyRecords,
    /// Every commit appears once in the change feed, in commit order, one
    /// entry per changed key; pages give the same sequence; positions of
    /// another store, ahead of the store or behind pruning are refused as
    /// broken. A store without a feed passes.
    ChangeFeed,
    /// The default organization, cloud and folder exist; resources round
    /// trip through `commit_resource` and `resource`; unknown parents,
    /// taken ids and names (a service account's name in its whole cloud),
    /// titles off organizations, repeated log ids and deletes of
    /// non-empty parents are refused with the typed error and write
    /// nothing; listings page by name and by id; a service account's
    /// `last_authenticated_at` is its keys' latest use; deleting it deletes
    /// its keys with a log entry each and a `gone` feed entry each; each
    /// resource's log lists its operations newest first. A store that
    /// keeps no resources (the trait's defaults) fails it.
    Resources,
    /// Access policies bind on organizations, clouds and folders (not on
    /// service accounts, not on missing resources, not with a bad
    /// binding), a second binding of a template replaces the first,
    /// unbinding an unbound template is refused, every bind and unbind is
    /// logged and moves the resource head, listings by resource and in
    /// all are ordered, a log entry is found by id, and deleting a folder
    /// drops its bindings.
    AccessPolicies,
    /// Access bindings on every kind of resource: adds and removals apply
    /// in order (an added binding is there once), a replace drops the
    /// rest, a removal of an absent binding, a binding of a missing
    /// subject, a change on a missing resource and the loss of an
    /// organization's last admin are refused writing nothing, every change
    /// is logged and moves the resource head, listings by resource and in
    /// all are ordered, and deleting a resource drops its bindings and a
    /// deleted service account's bindings everywhere.
    AccessBindings,
}

impl Check {
    /// Every check, in the order [`run_all`] runs them.
    pub const ALL: &'static [Check] = &[
        Check::InsertGetRoundTrip,
        Check::DuplicateId,
        Check::DuplicateImportedDigest,
        Check::GetByDigestFindsOnlyImported,
        Check::GetMany,
        Check::ListPagination,
        Check::ListLimitClamp,
        Check::Revoke,
        Check::Delete,
        Check::ReissueRevoke,
        Check::ReissueExpireAt,
        Check::ReissueConflicts,
        Check::ReissueIsAtomic,
        Check::ReissueRace,
        Check::TouchLastUsed,
        Check::TimestampPrecision,
        Check::Update,
        Check::CommitLogs,
        Check::CommitIsAtomic,
        Check::OperationsPagination,
        Check::CommitNote,
        Check::PepperFingerprint,
        Check::ControlsRoundTrip,
        Check::ControlsUpdate,
        Check::SpendCredits,
        Check::SpendCreditsRace,
        Check::ListByExternalId,
        Check::ListExpiring,
        Check::IdsAfter,
        Check::OperationById,
        Check::IdempotencyRecords,
        Check::ChangeFeed,
        Check::Resources,
        Check::AccessPolicies,
        Check::AccessBindings,
    ];

    /// The check's name in `snake_case`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Check::InsertGetRoundTrip => "insert_get_round_trip",
            Check::DuplicateId => "duplicate_id",
            Check::DuplicateImportedDigest => "duplicate_imported_digest",
            Check::GetByDigestFindsOnlyImported => "get_by_digest_finds_only_imported",
            Check::GetMany => "get_many",
            Check::ListPagination => "list_pagination",
            Check::ListLimitClamp => "list_limit_clamp",
            Check::Revoke => "revoke",
            Check::Delete => "delete",
            Check::ReissueRevoke => "reissue_revoke",
            Check::ReissueExpireAt => "reissue_expire_at",
            Check::ReissueConflicts => "reissue_conflicts",
            Check::ReissueIsAtomic => "reissue_is_atomic",
            Check::ReissueRace => "reissue_race",
            Check::TouchLastUsed => "touch_last_used",
            Check::TimestampPrecision => "timestamp_precision",
            Check::Update => "update",
            Check::CommitLogs => "commit_logs",
            Check::CommitIsAtomic => "commit_is_atomic",
            Check::OperationsPagination => "operations_pagination",
            Check::CommitNote => "commit_note",
            Check::PepperFingerprint => "pepper_fingerprint",
            Check::ControlsRoundTrip => "controls_round_trip",
            Check::ControlsUpdate => "controls_update",
            Check::SpendCredits => "spend_credits",
            Check::SpendCreditsRace => "spend_credits_race",
            Check::ListByExternalId => "list_by_external_id",
            Check::ListExpiring => "list_expiring",
            Check::IdsAfter => "ids_after",
            Check::OperationById => "operation_by_id",
            Check::IdempotencyRecords => "idempotency_records",
            Check::ChangeFeed => "change_feed",
            Check::Resources => "resources",
            Check::AccessPolicies => "access_policies",
            Check::AccessBindings => "access_bindings",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs every check in [`Check::ALL`] against `store`.
pub async fn run_all<S: KeyStore>(store: &S) {
    for &check in Check::ALL {
        run(store, check).await;
    }
}

/// Runs one check against `store`.
pub async fn run<S: KeyStore>(store: &S, check: Check) {
    match check {
        Check::InsertGetRoundTrip => insert_get_round_trip(store).await,
        Check::DuplicateId => duplicate_id(store).await,
        Check::DuplicateImportedDigest => duplicate_imported_digest(store).await,
        Check::GetByDigestFindsOnlyImported => get_by_digest_finds_only_imported(store).await,
        Check::GetMany => get_many(store).await,
        Check::ListPagination => list_pagination(store).await,
        Check::ListLimitClamp => list_limit_clamp(store).await,
        Check::Revoke => revoke(store).await,
        Check::Delete => delete(store).await,
        Check::ReissueRevoke => reissue_revoke(store).await,
        Check::ReissueExpireAt => reissue_expire_at(store).await,
        Check::ReissueConflicts => reissue_conflicts(store).await,
        Check::ReissueIsAtomic => reissue_is_atomic(store).await,
        Check::ReissueRace => reissue_race(store).await,
        Check::TouchLastUsed => touch_last_used(store).await,
        Check::TimestampPrecision => timestamp_precision(store).await,
        Check::Update => update(store).await,
        Check::CommitLogs => commit_logs(store).await,
        Check::CommitIsAtomic => commit_is_atomic(store).await,
        Check::OperationsPagination => operations_pagination(store).await,
        Check::CommitNote => commit_note(store).await,
        Check::PepperFingerprint => pepper_fingerprint(store).await,
        Check::ControlsRoundTrip => controls::controls_round_trip(store).await,
        Check::ControlsUpdate => controls::controls_update(store).await,
        Check::SpendCredits => controls::spend_credits(store).await,
        Check::SpendCreditsRace => controls::spend_credits_race(store).await,
        Check::ListByExternalId => controls::list_by_external_id(store).await,
        Check::ListExpiring => controls::list_expiring(store).await,
        Check::IdsAfter => ids_after(store).await,
        Check::OperationById => operation_by_id(store).await,
        Check::IdempotencyRecords => idempotency::idempotency_records(store).await,
        Check::ChangeFeed => feed::change_feed(store).await,
        Check::Resources => resources::resources(store).await,
        Check::AccessPolicies => resources::access_policies(store).await,
        Check::AccessBindings => resources::access_bindings(store).await,
    }
}

// ----- record builders -----

pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap_or_else(|_| panic!("the OS random number generator failed"));
    b
}

/// A fresh random key id.
#[must_use]
pub fn key_id() -> KeyId {
    KeyId::generate().unwrap_or_else(|_| panic!("the OS random number generator failed"))
}

/// A fresh random digest.
#[must_use]
pub fn digest() -> Digest {
    Digest::from_bytes(random_bytes())
}

/// A fresh service account id (`conformance-` and 16 random characters),
/// so listings see only the keys of one check.
#[must_use]
pub fn service_account() -> ServiceAccountId {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let name: String = random_bytes::<16>().iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])).collect();
    ServiceAccountId::new(&format!("conformance-{name}")).unwrap_or_else(|e| panic!("{e}"))
}

fn scopes(names: &[&str]) -> ScopeSet {
    ScopeSet::new(names.iter().map(|n| Scope::new(n).unwrap_or_else(|e| panic!("{n}: {e}"))))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// An active native key of `service_account` with a random id and
/// digest, a description, two scopes, a creation time and an expiry with
/// non-zero nanoseconds, and no last use or links.
#[must_use]
pub fn record(service_account: &ServiceAccountId) -> KeyRecord {
    KeyRecord {
        id: key_id(),
        service_account_id: service_account.clone(),
        description: Description::new("conformance suite key").unwrap_or_else(|e| panic!("{e}")),
        created_at: Timestamp::from_unix_nanos(1_767_225_600_123_456_789),
        last_used_at: None,
        scopes: scopes(&["yc.monitoring.read", "yc.postbox.send"]),
        expires_at: Some(Timestamp::from_unix_nanos(1_893_456_000_987_654_321)),
        masked_key: MaskedKey::from_tail(b"Ab3_xZ"),
        pepper_version: 1,
        digest: digest(),
        status: KeyStatus::Active,
        enabled: true,
        kind: KeyKind::Native,
        controls: None,
        links: ReissueLinks::default(),
    }
}

/// Like [`record`], but an imported key.
#[must_use]
pub fn imported_record(service_account: &ServiceAccountId) -> KeyRecord {
    let r = record(service_account);
    // An imported key is always masked by its digest (see `KeyRecord::new`).
    KeyRecord { kind: KeyKind::Imported, masked_key: MaskedKey::of_digest(&r.digest), ..r }
}

/// A record for reissuing `old`: same owner, scopes and expiry, a fresh
/// id and digest, `reissued_from` set.
#[must_use]
pub fn reissue_of(old: &KeyRecord) -> KeyRecord {
    KeyRecord {
        links: ReissueLinks { replaced_by: None, reissued_from: Some(old.id) },
        description: old.description.clone(),
        scopes: old.scopes.clone(),
        expires_at: old.expires_at,
        ..record(&old.service_account_id)
    }
}

// ----- helpers -----

pub(super) fn ok<T>(check: Check, what: &str, r: Result<T, StoreError>) -> T {
    r.unwrap_or_else(|e| panic!("[{check}] {what} failed: {e} ({e:?})"))
}

pub(super) async fn insert<S: KeyStore>(store: &S, check: Check, r: &KeyRecord) {
    ok(check, "insert", store.insert(r.clone()).await);
}

pub(super) async fn get<S: KeyStore>(store: &S, check: Check, id: &KeyId) -> Option<KeyRecord> {
    ok(check, "get", store.get(id).await).map(|r| KeyRecord::clone(&r))
}

pub(super) async fn must_get<S: KeyStore>(store: &S, check: Check, id: &KeyId) -> KeyRecord {
    get(store, check, id).await.unwrap_or_else(|| panic!("[{check}] key {id} is missing"))
}

async fn list_all<S: KeyStore>(store: &S, check: Check, sa: &ServiceAccountId) -> Vec<KeyId> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let p = ok(check, "list", store.list(sa, page).await);
        out.extend(p.items.iter().map(|r| r.id));
        match p.next {
            Some(next) => page = PageRequest::after(PageRequest::MAX_LIMIT, next),
            None => return out,
        }
    }
}

fn sorted(mut ids: Vec<KeyId>) -> Vec<KeyId> {
    ids.sort();
    ids
}

fn expect_duplicate(check: Check, what: &str, r: Result<(), StoreError>, id: KeyId) {
    match r {
        Err(StoreError::Duplicate(got)) => assert_eq!(got, id, "[{check}] {what}: Duplicate names the wrong id"),
        other => panic!("[{check}] {what}: expected Duplicate({id}), got {other:?}"),
    }
}

fn expect_not_found(check: Check, what: &str, r: Result<(), StoreError>, id: KeyId) {
    match r {
        Err(StoreError::NotFound(got)) => assert_eq!(got, id, "[{check}] {what}: NotFound names the wrong id"),
        other => panic!("[{check}] {what}: expected NotFound({id}), got {other:?}"),
    }
}

fn expect_conflict(check: Check, what: &str, r: Result<(), StoreError>, id: KeyId) {
    match r {
        Err(StoreError::Conflict { id: got, .. }) => {
            assert_eq!(got, id, "[{check}] {what}: Conflict names the wrong id");
        }
        other => panic!("[{check}] {what}: expected Conflict on {id}, got {other:?}"),
    }
}

// ----- the checks -----

/// [`Check::InsertGetRoundTrip`].
pub async fn insert_get_round_trip<S: KeyStore>(store: &S) {
    const C: Check = Check::InsertGetRoundTrip;
    let sa = service_account();
    // Every field set, away from defaults.
    let full = KeyRecord {
        description: Description::new("ключ for my-robot — every field set").unwrap_or_else(|e| panic!("{e}")),
        last_used_at: Some(Timestamp::from_unix_nanos(1_767_225_700_000_000_001)),
        scopes: scopes(&["yc.monitoring.manage", "yc.postbox.send", "yc.serverless.functions.invoke"]),
        pepper_version: u32::MAX,
        status: KeyStatus::Revoked,
        kind: KeyKind::Imported,
        links: ReissueLinks { replaced_by: Some(key_id()), reissued_from: Some(key_id()) },
        ..imported_record(&sa)
    };
    // Every optional field empty.
    let bare = KeyRecord {
        description: Description::default(),
        scopes: ScopeSet::default(),
        expires_at: None,
        masked_key: MaskedKey::from_tail(b""),
        pepper_version: 0,
        ..record(&sa)
    };
    let plain = record(&sa);
    for r in [&full, &bare, &plain] {
        insert(store, C, r).await;
        assert_eq!(&must_get(store, C, &r.id).await, r, "[{C}] record changed on the way through the store");
    }
    assert_eq!(get(store, C, &key_id()).await, None, "[{C}] an unknown id was found");
    let listed = ok(C, "list", store.list(&sa, PageRequest::first(10)).await);
    let mut expected = vec![full, bare, plain];
    expected.sort_by_key(|r| r.id);
    assert_eq!(listed.items, expected, "[{C}] list returns records different from those inserted");
}

/// [`Check::DuplicateId`].
pub async fn duplicate_id<S: KeyStore>(store: &S) {
    const C: Check = Check::DuplicateId;
    let first = record(&service_account());
    insert(store, C, &first).await;
    let other_sa = service_account();
    let clash = KeyRecord { id: first.id, ..imported_record(&other_sa) };
    expect_duplicate(C, "insert of an existing id", store.insert(clash.clone()).await, first.id);
    assert_eq!(must_get(store, C, &first.id).await, first, "[{C}] the existing key was changed");
    assert!(list_all(store, C, &other_sa).await.is_empty(), "[{C}] the refused key was listed");
    assert!(
        ok(C, "get_by_digest", store.get_by_digest(&clash.digest).await).is_none(),
        "[{C}] the refused key's digest was indexed"
    );
}

/// [`Check::DuplicateImportedDigest`].
pub async fn duplicate_imported_digest<S: KeyStore>(store: &S) {
    const C: Check = Check::DuplicateImportedDigest;
    let first = imported_record(&service_account());
    insert(store, C, &first).await;
    let other_sa = service_account();
    let clash = KeyRecord { digest: first.digest, ..imported_record(&other_sa) };
    expect_duplicate(C, "insert of an imported digest", store.insert(clash.clone()).await, clash.id);
    assert_eq!(get(store, C, &clash.id).await, None, "[{C}] the refused key was written");
    assert!(list_all(store, C, &other_sa).await.is_empty(), "[{C}] the refused key was listed");
    let found = ok(C, "get_by_digest", store.get_by_digest(&first.digest).await);
    assert_eq!(found.map(|r| r.id), Some(first.id), "[{C}] the digest no longer finds the first key");
    // Uniqueness covers imported digests only.
    let native = KeyRecord { digest: first.digest, ..record(&other_sa) };
    ok(C, "insert of a native key sharing an imported digest", store.insert(native.clone()).await);
    assert_eq!(must_get(store, C, &native.id).await, native);
}

/// [`Check::GetByDigestFindsOnlyImported`].
pub async fn get_by_digest_finds_only_imported<S: KeyStore>(store: &S) {
    const C: Check = Check::GetByDigestFindsOnlyImported;
    let sa = service_account();
    let native = record(&sa);
    let imported = imported_record(&sa);
    insert(store, C, &native).await;
    insert(store, C, &imported).await;
    let found = ok(C, "get_by_digest", store.get_by_digest(&native.digest).await);
    assert!(found.is_none(), "[{C}] a native key was found by digest");
    let found = ok(C, "get_by_digest", store.get_by_digest(&imported.digest).await);
    assert_eq!(found.as_deref(), Some(&imported), "[{C}] the imported key was not found by its digest");
    let found = ok(C, "get_by_digest", store.get_by_digest(&digest()).await);
    assert!(found.is_none(), "[{C}] an unknown digest was found");
}

/// [`Check::ListPagination`].
pub async fn list_pagination<S: KeyStore>(store: &S) {
    const C: Check = Check::ListPagination;
    let sa = service_account();
    let other = service_account();
    let mut mine = Vec::new();
    for i in 0..5 {
        let r = record(&sa);
        insert(store, C, &r).await;
        mine.push(r);
        if i % 2 == 0 {
            insert(store, C, &record(&other)).await;
        }
    }
    mine.sort_by_key(|r| r.id);
    let ids: Vec<KeyId> = mine.iter().map(|r| r.id).collect();

    // Pages of two: 2 + 2 + 1, each cursor the last id of its page.
    let p1 = ok(C, "list", store.list(&sa, PageRequest::first(2)).await);
    assert_eq!(p1.items, mine[0..2], "[{C}] first page");
    assert_eq!(p1.next, Some(ids[1]), "[{C}] first page cursor");
    let p2 = ok(C, "list", store.list(&sa, PageRequest::after(2, ids[1])).await);
    assert_eq!(p2.items, mine[2..4], "[{C}] second page");
    assert_eq!(p2.next, Some(ids[3]), "[{C}] second page cursor");
    let p3 = ok(C, "list", store.list(&sa, PageRequest::after(2, ids[3])).await);
    assert_eq!(p3.items, mine[4..5], "[{C}] last page");
    assert_eq!(p3.next, None, "[{C}] the last page has a cursor");

    // A page exactly as large as what is left has no cursor.
    let all = ok(C, "list", store.list(&sa, PageRequest::first(5)).await);
    assert_eq!((all.items.len(), all.next), (5, None), "[{C}] a page of exactly all keys");
    // The cursor is a position, not a member: any id works.
    let zero = KeyId::parse("00000000000000000000").unwrap_or_else(|e| panic!("{e}"));
    let from_zero = ok(C, "list", store.list(&sa, PageRequest::after(10, zero)).await);
    assert_eq!(from_zero.items, mine, "[{C}] listing after the smallest id");
    let past_end = ok(C, "list", store.list(&sa, PageRequest::after(10, ids[4])).await);
    assert!(past_end.items.is_empty() && past_end.next.is_none(), "[{C}] listing after the last id");
    // Limits are clamped: 0 behaves as 1, huge as MAX_LIMIT.
    let one = ok(C, "list", store.list(&sa, PageRequest::first(0)).await);
    assert_eq!((one.items.len(), one.next), (1, Some(ids[0])), "[{C}] limit 0 is clamped to 1");
    let huge = ok(C, "list", store.list(&sa, PageRequest::first(u32::MAX)).await);
    assert_eq!((huge.items.len(), huge.next), (5, None), "[{C}] a huge limit lists everything");
    // Other accounts: neither leaked nor empty.
    assert_eq!(list_all(store, C, &other).await.len(), 3, "[{C}] the other account's keys");
    let nobody = ok(C, "list", store.list(&service_account(), PageRequest::first(10)).await);
    assert!(nobody.items.is_empty() && nobody.next.is_none(), "[{C}] an account without keys");
}

/// [`Check::ListLimitClamp`]: inserts `PageRequest::MAX_LIMIT + 1` keys.
pub async fn list_limit_clamp<S: KeyStore>(store: &S) {
    const C: Check = Check::ListLimitClamp;
    let sa = service_account();
    let max = PageRequest::MAX_LIMIT as usize;
    let mut ids = Vec::with_capacity(max + 1);
    for _ in 0..=max {
        let r = record(&sa);
        ids.push(r.id);
        insert(store, C, &r).await;
    }
    ids.sort();
    let first = ok(C, "list", store.list(&sa, PageRequest::first(u32::MAX)).await);
    assert_eq!(first.items.len(), max, "[{C}] a page holds at most MAX_LIMIT keys");
    assert_eq!(first.next, Some(ids[max - 1]), "[{C}] cursor of a clamped page");
    assert!(first.items.iter().map(|r| r.id).eq(ids[..max].iter().copied()), "[{C}] order of a clamped page");
    let rest = ok(C, "list", store.list(&sa, PageRequest::after(u32::MAX, ids[max - 1])).await);
    assert_eq!(rest.items.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[max]], "[{C}] the page after");
    assert_eq!(rest.next, None, "[{C}] cursor after the last page");
}

/// [`Check::Revoke`].
pub async fn revoke<S: KeyStore>(store: &S) {
    const C: Check = Check::Revoke;
    let r = record(&service_account());
    insert(store, C, &r).await;
    ok(C, "revoke", store.revoke(&r.id).await);
    let expected = KeyRecord { status: KeyStatus::Revoked, ..r.clone() };
    assert_eq!(must_get(store, C, &r.id).await, expected, "[{C}] revoke must change the status only");
    ok(C, "second revoke (idempotent)", store.revoke(&r.id).await);
    assert_eq!(must_get(store, C, &r.id).await, expected, "[{C}] a second revoke changed the key");
    let unknown = key_id();
    expect_not_found(C, "revoke of an unknown id", store.revoke(&unknown).await, unknown);
    assert_eq!(get(store, C, &unknown).await, None, "[{C}] revoke created a key");
}

/// [`Check::Delete`].
pub async fn delete<S: KeyStore>(store: &S) {
    const C: Check = Check::Delete;
    let sa = service_account();
    let native = record(&sa);
    let imported = imported_record(&sa);
    insert(store, C, &native).await;
    insert(store, C, &imported).await;
    ok(C, "delete", store.delete(&imported.id).await);
    assert_eq!(get(store, C, &imported.id).await, None, "[{C}] a deleted key was found");
    let by_digest = ok(C, "get_by_digest", store.get_by_digest(&imported.digest).await);
    assert!(by_digest.is_none(), "[{C}] a deleted key was found by digest");
    assert_eq!(list_all(store, C, &sa).await, [native.id], "[{C}] listing after delete");
    expect_not_found(C, "second delete", store.delete(&imported.id).await, imported.id);
    let unknown = key_id();
    expect_not_found(C, "delete of an unknown id", store.delete(&unknown).await, unknown);
    // The digest index entry went with the key: the digest is free again.
    let again = KeyRecord { digest: imported.digest, ..imported_record(&sa) };
    ok(C, "re-import of a deleted digest", store.insert(again.clone()).await);
    let found = ok(C, "get_by_digest", store.get_by_digest(&imported.digest).await);
    assert_eq!(found.map(|r| r.id), Some(again.id), "[{C}] the re-imported digest");
    assert_eq!(must_get(store, C, &native.id).await, native, "[{C}] delete touched another key");
}

/// [`Check::ReissueRevoke`].
pub async fn reissue_revoke<S: KeyStore>(store: &S) {
    const C: Check = Check::ReissueRevoke;
    let old = record(&service_account());
    insert(store, C, &old).await;
    let new = reissue_of(&old);
    ok(C, "reissue", store.reissue(&old.id, new.clone(), OldKeyFate::Revoke).await);
    let expected_old = KeyRecord {
        status: KeyStatus::Revoked,
        links: ReissueLinks { replaced_by: Some(new.id), reissued_from: None },
        ..old.clone()
    };
    assert_eq!(must_get(store, C, &old.id).await, expected_old, "[{C}] the old key after reissue");
    assert_eq!(must_get(store, C, &new.id).await, new, "[{C}] the new key");
    assert_eq!(
        list_all(store, C, &old.service_account_id).await,
        sorted(vec![old.id, new.id]),
        "[{C}] both keys are listed"
    );
}

/// [`Check::ReissueExpireAt`].
pub async fn reissue_expire_at<S: KeyStore>(store: &S) {
    const C: Check = Check::ReissueExpireAt;
    let sa = service_account();
    let grace_end = Timestamp::from_unix_nanos(1_800_000_000_000_000_007);
    let cases = [
        // (old expiry, expected old expiry after the reissue)
        (Some(Timestamp::from_unix_nanos(1_900_000_000_000_000_000)), Some(grace_end)), // grace ends first
        (
            Some(Timestamp::from_unix_nanos(1_800_000_000_000_000_006)),
            Some(Timestamp::from_unix_nanos(1_800_000_000_000_000_006)),
        ), // never extended
        (None, Some(grace_end)),                                                        // no expiry: the grace sets one
    ];
    for (before, after) in cases {
        let old = KeyRecord { expires_at: before, ..record(&sa) };
        insert(store, C, &old).await;
        let new = reissue_of(&old);
        ok(C, "reissue", store.reissue(&old.id, new.clone(), OldKeyFate::ExpireAt(grace_end)).await);
        let expected_old = KeyRecord {
            expires_at: after,
            links: ReissueLinks { replaced_by: Some(new.id), reissued_from: None },
            ..old.clone()
        };
        assert_eq!(
            must_get(store, C, &old.id).await,
            expected_old,
            "[{C}] old key with expiry {before:?}: must stay active until {after:?}"
        );
        assert_eq!(must_get(store, C, &new.id).await, new, "[{C}] the new key");
    }
}

/// [`Check::ReissueConflicts`].
pub async fn reissue_conflicts<S: KeyStore>(store: &S) {
    const C: Check = Check::ReissueConflicts;
    let sa = service_account();
    // A revoked key.
    let revoked = KeyRecord { status: KeyStatus::Revoked, ..record(&sa) };
    insert(store, C, &revoked).await;
    let new = reissue_of(&revoked);
    expect_conflict(
        C,
        "reissue of a revoked key",
        store.reissue(&revoked.id, new.clone(), OldKeyFate::Revoke).await,
        revoked.id,
    );
    assert_eq!(get(store, C, &new.id).await, None, "[{C}] a refused reissue wrote the new key");
    assert_eq!(must_get(store, C, &revoked.id).await, revoked, "[{C}] a refused reissue changed the old key");
    // An already reissued key (still active in its grace period).
    let old = record(&sa);
    insert(store, C, &old).await;
    let first = reissue_of(&old);
    let grace = OldKeyFate::ExpireAt(Timestamp::from_unix_nanos(1_800_000_000_000_000_000));
    ok(C, "first reissue", store.reissue(&old.id, first.clone(), grace).await);
    let after_first = must_get(store, C, &old.id).await;
    let second = reissue_of(&old);
    expect_conflict(C, "second reissue", store.reissue(&old.id, second.clone(), grace).await, old.id);
    assert_eq!(get(store, C, &second.id).await, None, "[{C}] a refused reissue wrote the new key");
    assert_eq!(must_get(store, C, &old.id).await, after_first, "[{C}] a refused reissue changed the old key");
    // An unknown key.
    let unknown = key_id();
    let orphan = reissue_of(&KeyRecord { id: unknown, ..record(&sa) });
    expect_not_found(
        C,
        "reissue of an unknown key",
        store.reissue(&unknown, orphan.clone(), OldKeyFate::Revoke).await,
        unknown,
    );
    assert_eq!(get(store, C, &orphan.id).await, None, "[{C}] a reissue of an unknown key wrote the new key");
    assert_eq!(
        list_all(store, C, &sa).await,
        sorted(vec![revoked.id, old.id, first.id]),
        "[{C}] listing after refused reissues"
    );
}

/// [`Check::ReissueIsAtomic`].
pub async fn reissue_is_atomic<S: KeyStore>(store: &S) {
    const C: Check = Check::ReissueIsAtomic;
    let sa = service_account();
    let old = record(&sa);
    let existing = imported_record(&sa);
    insert(store, C, &old).await;
    insert(store, C, &existing).await;
    // The new id is taken.
    let clash_id = KeyRecord { id: existing.id, ..reissue_of(&old) };
    let r = store.reissue(&old.id, clash_id, OldKeyFate::Revoke).await;
    expect_duplicate(C, "reissue onto an existing id", r, existing.id);
    // The new imported digest is taken.
    let clash_digest = KeyRecord { kind: KeyKind::Imported, digest: existing.digest, ..reissue_of(&old) };
    let r = store.reissue(&old.id, clash_digest.clone(), OldKeyFate::ExpireAt(Timestamp::from_unix_nanos(1))).await;
    expect_duplicate(C, "reissue onto an existing imported digest", r, clash_digest.id);
    assert_eq!(get(store, C, &clash_digest.id).await, None, "[{C}] a failed reissue wrote the new key");
    assert_eq!(must_get(store, C, &old.id).await, old, "[{C}] a failed reissue changed the old key");
    assert_eq!(must_get(store, C, &existing.id).await, existing, "[{C}] a failed reissue changed another key");
    assert_eq!(list_all(store, C, &sa).await, sorted(vec![old.id, existing.id]), "[{C}] listing after failures");
    // And the old key can still be reissued afterwards.
    let fine = reissue_of(&old);
    ok(C, "reissue after failed attempts", store.reissue(&old.id, fine.clone(), OldKeyFate::Revoke).await);
    assert_eq!(must_get(store, C, &fine.id).await, fine);
}

/// [`Check::ReissueRace`].
pub async fn reissue_race<S: KeyStore>(store: &S) {
    const C: Check = Check::ReissueRace;
    let old = record(&service_account());
    insert(store, C, &old).await;
    let a = reissue_of(&old);
    let b = reissue_of(&old);
    // A grace period ending after the old key's own expiry leaves its
    // status and expiry as they were, so only the "already reissued"
    // rule can stop the second reissue.
    let grace = OldKeyFate::ExpireAt(Timestamp::from_unix_nanos(i64::MAX));
    let (ra, rb) = tokio::join!(store.reissue(&old.id, a.clone(), grace), store.reissue(&old.id, b.clone(), grace));
    let (winner, loser, lost) = match (ra, rb) {
        (Ok(()), lost) => (a, b, lost),
        (lost, Ok(())) => (b, a, lost),
        (ra, rb) => panic!("[{C}] both concurrent reissues failed: {ra:?}, {rb:?}"),
    };
    expect_conflict(C, "the losing concurrent reissue", lost, old.id);
    assert_eq!(get(store, C, &loser.id).await, None, "[{C}] the losing reissue wrote its key");
    assert_eq!(must_get(store, C, &winner.id).await, winner, "[{C}] the winning key");
    let now_old = must_get(store, C, &old.id).await;
    assert_eq!(now_old.links.replaced_by, Some(winner.id), "[{C}] the old key must point at the winner");
}

/// [`Check::IdsAfter`].
pub async fn ids_after<S: KeyStore>(store: &S) {
    const C: Check = Check::IdsAfter;
    let (a, b) = (service_account(), service_account());
    let mut made: Vec<KeyRecord> = (0..5).map(|i| record(if i % 2 == 0 { &a } else { &b })).collect();
    made.push(imported_record(&b));
    for r in &made {
        insert(store, C, r).await;
    }
    ok(C, "revoke", store.revoke(&made[1].id).await);
    let gone = made.pop().map(|r| r.id).unwrap_or_else(|| unreachable!());
    ok(C, "delete", store.delete(&gone).await);
    // Pages of two; other checks' keys may share the store.
    let mut seen: Vec<KeyId> = Vec::new();
    let mut after = None;
    loop {
        let page = ok(C, "ids_after", store.ids_after(after, 2).await);
        assert!(page.windows(2).all(|w| w[0] < w[1]), "[{C}] a page is not in ascending order: {page:?}");
        if let (Some(last), Some(first)) = (seen.last(), page.first()) {
            assert!(last < first, "[{C}] a page starts at or before the previous page's end");
        }
        assert!(after.is_none_or(|a| page.iter().all(|id| *id > a)), "[{C}] a page holds an id not after the cursor");
        seen.extend(page.iter().copied());
        match page.last() {
            Some(last) if page.len() >= 2 => after = Some(*last),
            _ => break,
        }
    }
    for r in &made {
        assert!(seen.contains(&r.id), "[{C}] key {} (of {}) is not listed", r.id, r.service_account_id);
    }
    assert!(!seen.contains(&gone), "[{C}] a deleted key is still listed");
    let last = made.iter().map(|r| r.id).max().unwrap_or_else(|| unreachable!());
    let rest = ok(C, "ids_after the largest", store.ids_after(Some(last), 1000).await);
    assert!(rest.iter().all(|id| *id > last), "[{C}] ids_after(largest) lists an id not after it");
}

/// [`Check::TouchLastUsed`].
pub async fn touch_last_used<S: KeyStore>(store: &S) {
    const C: Check = Check::TouchLastUsed;
    let sa = service_account();
    let t = Timestamp::from_unix_nanos;
    let never = record(&sa);
    let newer = KeyRecord { last_used_at: Some(t(2_000)), ..record(&sa) };
    // 9 → 10 digits: a textual comparison would get this wrong.
    let digits = KeyRecord { last_used_at: Some(t(999_999_999)), ..record(&sa) };
    // One nanosecond apart at today's magnitude: a float comparison would not see it.
    let close = KeyRecord { last_used_at: Some(t(1_800_000_000_000_000_000)), ..record(&sa) };
    let negative = KeyRecord { last_used_at: Some(t(-20)), ..record(&sa) };
    for r in [&never, &newer, &digits, &close, &negative] {
        insert(store, C, r).await;
    }
    let unknown = key_id();
    let batch = [
        (never.id, t(5)),
        (newer.id, t(1_000)), // older than stored: ignored
        (digits.id, t(1_000_000_000)),
        (unknown, t(7)), // unknown: ignored
        (close.id, t(1_800_000_000_000_000_001)),
        (never.id, t(3)), // older duplicate in the same batch: the newest wins
        (negative.id, t(-3)),
    ];
    ok(C, "touch_last_used", store.touch_last_used(&batch).await);
    ok(C, "empty touch_last_used", store.touch_last_used(&[]).await);
    let expect = [
        (&never, t(5)),
        (&newer, t(2_000)),
        (&digits, t(1_000_000_000)),
        (&close, t(1_800_000_000_000_000_001)),
        (&negative, t(-3)),
    ];
    for (r, at) in expect {
        let got = must_get(store, C, &r.id).await;
        assert_eq!(got.last_used_at, Some(at), "[{C}] last_used_at of a key touched from {:?}", r.last_used_at);
        assert_eq!(KeyRecord { last_used_at: r.last_used_at, ..got }, *r, "[{C}] touch changed another field");
    }
    assert_eq!(get(store, C, &unknown).await, None, "[{C}] touching an unknown id created a key");
}

/// [`Check::PepperFingerprint`].
pub async fn pepper_fingerprint<S: KeyStore>(store: &S) {
    const C: Check = Check::PepperFingerprint;
    // Random versions: the suite may run on a store other checks share.
    let v = u32::from_le_bytes(random_bytes()) & 0x7FFF_FFFF;
    let (first, second, other) =
        (Digest::from_bytes(random_bytes()), Digest::from_bytes(random_bytes()), Digest::from_bytes(random_bytes()));
    let got = ok(C, "first fingerprint", store.pepper_fingerprint(v, first).await);
    assert!(got == first, "[{C}] the first fingerprint of a version is recorded and returned");
    let got = ok(C, "second fingerprint", store.pepper_fingerprint(v, second).await);
    assert!(got == first, "[{C}] a later proposal never replaces the recorded fingerprint");
    let got = ok(C, "other version", store.pepper_fingerprint(v + 1, other).await);
    assert!(got == other, "[{C}] each version has its own fingerprint");
    let got = ok(C, "first again", store.pepper_fingerprint(v, other).await);
    assert!(got == first, "[{C}] recording another version changed nothing");
}

/// [`Check::TimestampPrecision`].
pub async fn timestamp_precision<S: KeyStore>(store: &S) {
    const C: Check = Check::TimestampPrecision;
    let sa = service_account();
    let t = Timestamp::from_unix_nanos;
    for (created, expires) in [
        (t(1_767_225_600_000_000_001), t(1_767_225_600_999_999_999)),
        (t(-1_234_567_891), t(-1)),
        (t(0), t(i64::MAX)),
        (t(i64::MIN), t(i64::MAX - 1)),
    ] {
        let r =
            KeyRecord { created_at: created, expires_at: Some(expires), last_used_at: Some(expires), ..record(&sa) };
        insert(store, C, &r).await;
        let got = must_get(store, C, &r.id).await;
        assert_eq!(
            (got.created_at, got.expires_at, got.last_used_at),
            (created, Some(expires), Some(expires)),
            "[{C}] timestamps must round-trip to the nanosecond"
        );
    }
}

// ----- the operations log -----

/// A log entry for `key` with a fresh id, by actor `conformance`.
#[must_use]
pub fn entry(key: &KeyRecord, kind: OperationKind) -> LogEntry {
    let actor = Actor::new("conformance").unwrap_or_else(|e| panic!("{e}"));
    let changes = OperationChanges { description: Some(key.description.clone()), ..OperationChanges::default() };
    LogEntry::new(key.id, kind, actor, Timestamp::from_unix_nanos(1_767_225_600_000_000_007), changes)
        .unwrap_or_else(|_| panic!("the OS random number generator failed"))
}

pub(super) fn recorded(entries: &[LogEntry], sa: &ServiceAccountId) -> Vec<Operation> {
    entries.iter().map(|e| e.recorded(sa)).collect()
}

pub(super) async fn log_of<S: KeyStore>(store: &S, check: Check, id: &KeyId) -> Vec<Operation> {
    let mut out = Vec::new();
    let mut page = PageRequest::<OperationCursor>::starting(PageRequest::MAX_LIMIT, None);
    loop {
        let p = ok(check, "operations", store.operations(id, page).await);
        out.extend(p.items);
        match p.next {
            Some(next) => page = PageRequest::starting(PageRequest::MAX_LIMIT, Some(next)),
            None => return out,
        }
    }
}

pub(super) async fn commit<S: KeyStore>(
    store: &S,
    check: Check,
    change: Change,
    log: &[LogEntry],
) -> Option<KeyRecord> {
    ok(check, "commit", store.commit(change, log).await)
}

/// [`Check::Update`].
pub async fn update<S: KeyStore>(store: &S) {
    const C: Check = Check::Update;
    let sa = service_account();
    let key = record(&sa);
    insert(store, C, &key).await;
    let description = Description::new("renamed").unwrap_or_else(|e| panic!("{e}"));
    // Description only: scopes and expiry stay.
    let change = KeyUpdate::new().description(description.clone());
    let got =
        commit(store, C, Change::Update { id: key.id, update: change }, &[entry(&key, OperationKind::Update)]).await;
    let expected = KeyRecord { description: description.clone(), ..key.clone() };
    assert_eq!(got.as_ref(), Some(&expected), "[{C}] the returned record after a description update");
    assert_eq!(must_get(store, C, &key.id).await, expected, "[{C}] the stored record after a description update");
    // Scopes and a removed expiry; the description stays.
    let new_scopes = scopes(&["yc.postbox.send"]);
    let change = KeyUpdate::new().scopes(new_scopes.clone()).expires_at(None);
    let got =
        commit(store, C, Change::Update { id: key.id, update: change }, &[entry(&key, OperationKind::Update)]).await;
    let expected = KeyRecord { scopes: new_scopes, expires_at: None, ..expected };
    assert_eq!(got.as_ref(), Some(&expected), "[{C}] the returned record after a scopes/expiry update");
    assert_eq!(must_get(store, C, &key.id).await, expected, "[{C}] the stored record after a scopes/expiry update");
    // An expiry again, to the nanosecond.
    let at = Timestamp::from_unix_nanos(1_900_000_000_000_000_001);
    let change = KeyUpdate::new().expires_at(Some(at));
    commit(store, C, Change::Update { id: key.id, update: change }, &[entry(&key, OperationKind::Update)]).await;
    let expected = KeyRecord { expires_at: Some(at), ..expected };
    assert_eq!(must_get(store, C, &key.id).await, expected, "[{C}] the stored record after setting an expiry");
    // Unknown id.
    let unknown = record(&sa);
    let r = store
        .commit(
            Change::Update { id: unknown.id, update: KeyUpdate::new().expires_at(None) },
            &[entry(&unknown, OperationKind::Update)],
        )
        .await;
    expect_not_found(C, "update of an unknown key", r.map(drop), unknown.id);
    // A revoked key.
    let revoked = KeyRecord { status: KeyStatus::Revoked, ..record(&sa) };
    insert(store, C, &revoked).await;
    let r = store
        .commit(
            Change::Update { id: revoked.id, update: KeyUpdate::new().description(description.clone()) },
            &[entry(&revoked, OperationKind::Update)],
        )
        .await;
    expect_conflict(C, "update of a revoked key", r.map(drop), revoked.id);
    assert_eq!(must_get(store, C, &revoked.id).await, revoked, "[{C}] a refused update changed a revoked key");
    // A reissued key: no new expiry (its grace period), but a description.
    let reissued =
        KeyRecord { links: ReissueLinks { replaced_by: Some(key_id()), reissued_from: None }, ..record(&sa) };
    insert(store, C, &reissued).await;
    let r = store
        .commit(
            Change::Update {
                id: reissued.id,
                update: KeyUpdate::new().description(description.clone()).expires_at(None),
            },
            &[entry(&reissued, OperationKind::Update)],
        )
        .await;
    expect_conflict(C, "a new expiry on a reissued key", r.map(drop), reissued.id);
    assert_eq!(must_get(store, C, &reissued.id).await, reissued, "[{C}] a refused update changed a reissued key");
    commit(
        store,
        C,
        Change::Update { id: reissued.id, update: KeyUpdate::new().description(description.clone()) },
        &[entry(&reissued, OperationKind::Update)],
    )
    .await;
    assert_eq!(must_get(store, C, &reissued.id).await.description, description, "[{C}] a reissued key's description");
}

/// [`Check::CommitLogs`].
pub async fn commit_logs<S: KeyStore>(store: &S) {
    const C: Check = Check::CommitLogs;
    let sa = service_account();
    let key = record(&sa);
    let other = record(&sa);
    let created = entry(&key, OperationKind::Create);
    commit(store, C, Change::Insert(key.clone()), std::slice::from_ref(&created)).await;
    commit(store, C, Change::Insert(other.clone()), &[entry(&other, OperationKind::Create)]).await;
    assert_eq!(must_get(store, C, &key.id).await, key, "[{C}] a committed insert");
    let updated = entry(&key, OperationKind::Update);
    let change = KeyUpdate::new().description(Description::default());
    commit(store, C, Change::Update { id: key.id, update: change }, std::slice::from_ref(&updated)).await;
    let new = reissue_of(&KeyRecord { description: Description::default(), ..key.clone() });
    let (reissued_old, reissued_new) = (entry(&key, OperationKind::Reissue), entry(&new, OperationKind::Reissue));
    let fate = OldKeyFate::ExpireAt(Timestamp::from_unix_nanos(1_800_000_000_000_000_000));
    commit(
        store,
        C,
        Change::Reissue { old: key.id, new: new.clone(), fate },
        &[reissued_old.clone(), reissued_new.clone()],
    )
    .await;
    assert_eq!(must_get(store, C, &new.id).await, new, "[{C}] a committed reissue's new key");
    assert_eq!(
        must_get(store, C, &key.id).await.links.replaced_by,
        Some(new.id),
        "[{C}] a committed reissue's old key"
    );
    let revoked = entry(&key, OperationKind::Revoke);
    commit(store, C, Change::Revoke(key.id), std::slice::from_ref(&revoked)).await;
    assert!(must_get(store, C, &key.id).await.is_revoked(), "[{C}] a committed revoke");
    // A refused change logs nothing.
    let r = store.commit(Change::Insert(key.clone()), &[entry(&key, OperationKind::Create)]).await;
    expect_duplicate(C, "a committed insert of an existing id", r.map(drop), key.id);
    let deleted = entry(&key, OperationKind::Delete);
    commit(store, C, Change::Delete(key.id), std::slice::from_ref(&deleted)).await;
    assert_eq!(get(store, C, &key.id).await, None, "[{C}] a committed delete");
    // Newest first, and still readable after the delete.
    assert_eq!(
        log_of(store, C, &key.id).await,
        recorded(&[deleted, revoked, reissued_old, updated, created], &sa),
        "[{C}] the deleted key's log, newest first"
    );
    assert_eq!(log_of(store, C, &new.id).await, recorded(&[reissued_new], &sa), "[{C}] the new key's log");
    assert_eq!(log_of(store, C, &other.id).await.len(), 1, "[{C}] another key's log");
    assert!(log_of(store, C, &key_id()).await.is_empty(), "[{C}] an unknown key's log");
    let r = store.commit(Change::Delete(key.id), &[entry(&key, OperationKind::Delete)]).await;
    expect_not_found(C, "a committed delete of a deleted key", r.map(drop), key.id);
    assert_eq!(log_of(store, C, &key.id).await.len(), 5, "[{C}] a refused delete was logged");
}

/// [`Check::OperationById`].
pub async fn operation_by_id<S: KeyStore>(store: &S) {
    const C: Check = Check::OperationById;
    let sa = service_account();
    let key = record(&sa);
    let created = entry(&key, OperationKind::Create).with_response(key.info());
    commit(store, C, Change::Insert(key.clone()), std::slice::from_ref(&created)).await;
    let mut after = key.clone();
    after.description = Description::default();
    let updated = entry(&key, OperationKind::Update).with_response(after.info());
    let change = KeyUpdate::new().description(Description::default());
    commit(store, C, Change::Update { id: key.id, update: change }, std::slice::from_ref(&updated)).await;
    let found = ok(C, "operation", store.operation(&updated.id).await);
    assert_eq!(found, Some(updated.recorded(&sa)), "[{C}] an update entry by id, with its response");
    let deleted = entry(&key, OperationKind::Delete);
    commit(store, C, Change::Delete(key.id), std::slice::from_ref(&deleted)).await;
    let found = ok(C, "operation", store.operation(&created.id).await);
    assert_eq!(found, Some(created.recorded(&sa)), "[{C}] a deleted key's create entry by id");
    let found = ok(C, "operation", store.operation(&deleted.id).await);
    assert_eq!(found.map(|op| (op.kind, op.response)), Some((OperationKind::Delete, None)), "[{C}] a delete entry");
    let unknown = crate::OperationId::generate().unwrap_or_else(|_| panic!("the OS random number generator failed"));
    assert_eq!(ok(C, "operation", store.operation(&unknown).await), None, "[{C}] an unknown operation id");
}

/// [`Check::CommitIsAtomic`].
pub async fn commit_is_atomic<S: KeyStore>(store: &S) {
    const C: Check = Check::CommitIsAtomic;
    let sa = service_account();
    let key = record(&sa);
    let logged = entry(&key, OperationKind::Create);
    commit(store, C, Change::Insert(key.clone()), std::slice::from_ref(&logged)).await;
    // Each change carries, as its last entry, one whose id is logged
    // already: the record cannot be written after the change.
    let poisoned = |r: &KeyRecord, kind| LogEntry { id: logged.id, ..entry(r, kind) };
    let fresh = record(&sa);
    let new = reissue_of(&key);
    let changes: Vec<(&str, Change, Vec<LogEntry>)> = vec![
        ("insert", Change::Insert(fresh.clone()), vec![poisoned(&fresh, OperationKind::Create)]),
        (
            "update",
            Change::Update {
                id: key.id,
                update: KeyUpdate::new().description(Description::default()).expires_at(None),
            },
            vec![poisoned(&key, OperationKind::Update)],
        ),
        ("revoke", Change::Revoke(key.id), vec![poisoned(&key, OperationKind::Revoke)]),
        (
            "reissue",
            Change::Reissue { old: key.id, new: new.clone(), fate: OldKeyFate::Revoke },
            vec![entry(&key, OperationKind::Reissue), poisoned(&new, OperationKind::Reissue)],
        ),
        ("delete", Change::Delete(key.id), vec![poisoned(&key, OperationKind::Delete)]),
        ("note", Change::Note(key.id), vec![leak_entry(&key, "note"), poisoned(&key, OperationKind::Leak)]),
    ];
    for (what, change, log) in changes {
        match store.commit(change, &log).await {
            Err(StoreError::DuplicateOperation(id)) => {
                assert_eq!(id, logged.id, "[{C}] {what}: DuplicateOperation names the wrong id");
            }
            other => panic!("[{C}] {what} with an unrecordable entry: expected DuplicateOperation, got {other:?}"),
        }
        assert_eq!(must_get(store, C, &key.id).await, key, "[{C}] {what}: the change landed without its record");
        assert_eq!(get(store, C, &fresh.id).await, None, "[{C}] {what}: an insert landed without its record");
        assert_eq!(get(store, C, &new.id).await, None, "[{C}] {what}: a reissue landed without its record");
        assert_eq!(
            log_of(store, C, &key.id).await,
            recorded(std::slice::from_ref(&logged), &sa),
            "[{C}] {what}: a record landed without its change"
        );
        assert!(log_of(store, C, &new.id).await.is_empty(), "[{C}] {what}: a record landed without its change");
    }
    assert_eq!(list_all(store, C, &sa).await, vec![key.id], "[{C}] listing after refused commits");
}

/// [`Check::OperationsPagination`].
pub async fn operations_pagination<S: KeyStore>(store: &S) {
    const C: Check = Check::OperationsPagination;
    let sa = service_account();
    let key = record(&sa);
    let other = record(&sa);
    commit(store, C, Change::Insert(key.clone()), &[entry(&key, OperationKind::Create)]).await;
    commit(store, C, Change::Insert(other.clone()), &[entry(&other, OperationKind::Create)]).await;
    let mut written = Vec::new();
    for i in 0..24 {
        let e = entry(&key, OperationKind::Update);
        let text = format!("step {i}");
        let change = KeyUpdate::new().description(Description::new(&text).unwrap_or_else(|e| panic!("{e}")));
        commit(store, C, Change::Update { id: key.id, update: change }, std::slice::from_ref(&e)).await;
        written.push(e.id);
        // Interleave another key's entries.
        let change = KeyUpdate::new().description(Description::new(&text).unwrap_or_else(|e| panic!("{e}")));
        commit(store, C, Change::Update { id: other.id, update: change }, &[entry(&other, OperationKind::Update)])
            .await;
    }
    written.reverse();
    let mut seen = Vec::new();
    let mut page = PageRequest::<OperationCursor>::starting(10, None);
    let mut sizes = Vec::new();
    loop {
        let p = ok(C, "operations", store.operations(&key.id, page).await);
        sizes.push(p.items.len());
        assert!(p.items.iter().all(|e| e.key_id == key.id), "[{C}] another key's entry in the log");
        seen.extend(p.items.iter().map(|e| e.id));
        match p.next {
            Some(next) => page = PageRequest::starting(10, Some(next)),
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 5], "[{C}] page sizes over 25 entries");
    assert_eq!(&seen[..24], &written[..], "[{C}] entries newest first, no gaps or repeats");
    assert_eq!(seen.len(), 25, "[{C}] the create entry comes last");
    let clamped = ok(C, "operations", store.operations(&key.id, PageRequest::starting(0, None)).await);
    assert_eq!(clamped.items.len(), 1, "[{C}] a page size of 0 is clamped to 1");
}

/// A leak entry for `key` with a fresh id, found at `https://github.com/o/r/blob/1/<file>`
/// (source `content`), by actor `conformance`.
#[must_use]
pub fn leak_entry(key: &KeyRecord, file: &str) -> LogEntry {
    let actor = Actor::new("conformance").unwrap_or_else(|e| panic!("{e}"));
    let place = LeakDetails::new(Some("content"), Some(&format!("https://github.com/o/r/blob/1/{file}")), "");
    LogEntry::new(
        key.id,
        OperationKind::Leak,
        actor,
        Timestamp::from_unix_nanos(1_767_225_600_000_000_009),
        OperationChanges::of_leak(place),
    )
    .unwrap_or_else(|_| panic!("the OS random number generator failed"))
}

/// [`Check::CommitNote`].
pub async fn commit_note<S: KeyStore>(store: &S) {
    const C: Check = Check::CommitNote;
    let sa = service_account();
    let live = record(&sa);
    let created = entry(&live, OperationKind::Create);
    commit(store, C, Change::Insert(live.clone()), std::slice::from_ref(&created)).await;
    let first = leak_entry(&live, "config.py");
    let got = commit(store, C, Change::Note(live.id), std::slice::from_ref(&first)).await;
    assert_eq!(got, None, "[{C}] a note returns no record");
    assert_eq!(must_get(store, C, &live.id).await, live, "[{C}] a note changed the live key");
    let second = leak_entry(&live, ".env");
    commit(store, C, Change::Note(live.id), std::slice::from_ref(&second)).await;
    let log = log_of(store, C, &live.id).await;
    assert_eq!(log, recorded(&[second.clone(), first.clone(), created], &sa), "[{C}] the live key's log, newest first");
    let leak = log[0].changes.leak.as_ref().unwrap_or_else(|| panic!("[{C}] the leak details are missing"));
    assert_eq!(
        (log[0].kind, leak.url(), leak.source()),
        (OperationKind::Leak, Some("https://github.com/o/r/blob/1/.env"), Some("content")),
        "[{C}] the leak entry's details"
    );
    // The same entry again is refused and writes nothing.
    match store.commit(Change::Note(live.id), std::slice::from_ref(&first)).await {
        Err(StoreError::DuplicateOperation(id)) => assert_eq!(id, first.id, "[{C}] the refused entry's id"),
        other => panic!("[{C}] a note with a logged entry id: expected DuplicateOperation, got {other:?}"),
    }
    assert_eq!(log_of(store, C, &live.id).await.len(), 3, "[{C}] a refused note was logged");
    // A revoked key's log takes notes too; the record stays as it is.
    let revoked = KeyRecord { status: KeyStatus::Revoked, ..record(&sa) };
    insert(store, C, &revoked).await;
    let note = leak_entry(&revoked, "main.go");
    commit(store, C, Change::Note(revoked.id), std::slice::from_ref(&note)).await;
    assert_eq!(must_get(store, C, &revoked.id).await, revoked, "[{C}] a note changed the revoked key");
    assert_eq!(log_of(store, C, &revoked.id).await, recorded(&[note], &sa), "[{C}] the revoked key's log");
    // Unknown and deleted keys: NotFound, nothing logged.
    let unknown = record(&sa);
    let r = store.commit(Change::Note(unknown.id), &[leak_entry(&unknown, "x")]).await;
    expect_not_found(C, "a note for an unknown key", r.map(drop), unknown.id);
    assert!(log_of(store, C, &unknown.id).await.is_empty(), "[{C}] an unknown key's note was logged");
    commit(store, C, Change::Delete(revoked.id), &[entry(&revoked, OperationKind::Delete)]).await;
    let r = store.commit(Change::Note(revoked.id), &[leak_entry(&revoked, "y")]).await;
    expect_not_found(C, "a note for a deleted key", r.map(drop), revoked.id);
    assert_eq!(log_of(store, C, &revoked.id).await.len(), 2, "[{C}] a deleted key's note was logged");
}

/// [`Check::GetMany`].
pub async fn get_many<S: KeyStore>(store: &S) {
    const C: Check = Check::GetMany;
    let sa = service_account();
    let live = record(&sa);
    let revoked = KeyRecord { status: KeyStatus::Revoked, ..record(&sa) };
    let imported = imported_record(&sa);
    for r in [&live, &revoked, &imported] {
        insert(store, C, r).await;
    }
    let unknown = key_id();
    let asked = [live.id, unknown, revoked.id, live.id, imported.id];
    let got: Vec<Option<KeyRecord>> =
        ok(C, "get_many", store.get_many(&asked).await).into_iter().map(|r| r.map(|r| KeyRecord::clone(&r))).collect();
    let want = vec![Some(live.clone()), None, Some(revoked.clone()), Some(live.clone()), Some(imported.clone())];
    assert_eq!(got, want, "[{C}] one answer per id, in order");
    assert!(ok(C, "get_many", store.get_many(&[]).await).is_empty(), "[{C}] no ids, no answers");
    // A large batch: three known ids among a thousand unknown ones.
    let mut many: Vec<KeyId> = (0..1_000).map(|_| key_id()).collect();
    many[0] = imported.id;
    many[500] = live.id;
    many[999] = revoked.id;
    let got = ok(C, "get_many", store.get_many(&many).await);
    assert_eq!(got.len(), many.len(), "[{C}] one answer per id in a large batch");
    let found: Vec<(usize, KeyId)> =
        got.iter().enumerate().filter_map(|(i, r)| r.as_ref().map(|r| (i, r.id))).collect();
    assert_eq!(found, [(0, imported.id), (500, live.id), (999, revoked.id)], "[{C}] a large batch's answers");
}
