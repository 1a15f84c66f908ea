//! The checks of the enabled flag and the key controls (part of
//! [`conformance`](super)).

use futures_util::future::join_all;

use super::{Check, commit, entry, insert, key_id, must_get, ok, record, service_account};
use crate::clock::Timestamp;
use crate::controls::{CreditSpend, Credits, ExternalId, KeyControls, Metadata, Refill, RefillPeriod};
use crate::operation::{Change, KeyUpdate, OperationKind};
use crate::record::{KeyRecord, KeyStatus};
use crate::store::{KeyStore, PageRequest, StoreError};
use crate::token::KeyId;

/// A fresh external owner id, so listings see only one check's keys.
fn external_id() -> ExternalId {
    ExternalId::new(&format!("cust_{}", key_id())).unwrap_or_else(|e| panic!("{e}"))
}

/// Every control set, at its extremes where it has them.
fn full_controls() -> KeyControls {
    let refill =
        Refill::new(Credits::MAX, RefillPeriod::Monthly).and_then(|r| r.at(23, 59)).unwrap_or_else(|e| panic!("{e}"));
    let credits = Credits::new(Credits::MAX)
        .unwrap_or_else(|e| panic!("{e}"))
        .refill(refill, Timestamp::from_unix_nanos(1_767_225_600_000_000_007));
    KeyControls::new()
        .metadata(
            Metadata::parse(r#"{"plan":"pro","limits":{"seats":5},"tags":["a","б"],"n":null}"#)
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .external_id(external_id())
        .allowed_ips("10.0.0.0/8,192.0.2.7,2001:db8::/32".parse().unwrap_or_else(|e| panic!("{e}")))
        .rate_limits("api=100/1s:burst=20,daily=10000/1d".parse().unwrap_or_else(|e| panic!("{e}")))
        .credits(credits)
}

fn with_controls(mut r: KeyRecord, c: KeyControls) -> KeyRecord {
    r.set_controls(c);
    r
}

fn credits(n: u64) -> Credits {
    Credits::new(n).unwrap_or_else(|e| panic!("{e}"))
}

async fn spend<S: KeyStore>(store: &S, c: Check, id: &KeyId, cost: u64, due: Option<Timestamp>) -> CreditSpend {
    ok(c, "spend_credits", store.spend_credits(id, cost, due).await)
}

async fn update<S: KeyStore>(store: &S, c: Check, key: &KeyRecord, u: KeyUpdate) -> KeyRecord {
    let got = commit(store, c, Change::Update { id: key.id, update: u }, &[entry(key, OperationKind::Update)]).await;
    let got = got.unwrap_or_else(|| panic!("[{c}] an update returned no record"));
    assert_eq!(must_get(store, c, &key.id).await, got, "[{c}] the stored record differs from the returned one");
    got
}

/// [`Check::ControlsRoundTrip`].
pub async fn controls_round_trip<S: KeyStore>(store: &S) {
    const C: Check = Check::ControlsRoundTrip;
    let sa = service_account();
    let mut disabled = with_controls(record(&sa), full_controls());
    disabled.enabled = false;
    let only_credits = with_controls(record(&sa), KeyControls::new().credits(credits(0)));
    let only_external = with_controls(record(&sa), KeyControls::new().external_id(external_id()));
    let plain_disabled = KeyRecord { enabled: false, ..record(&sa) };
    let plain = record(&sa);
    let mut all = vec![disabled, only_credits, only_external, plain_disabled, plain];
    for r in &all {
        insert(store, C, r).await;
        assert_eq!(&must_get(store, C, &r.id).await, r, "[{C}] record changed on the way through the store");
    }
    assert!(must_get(store, C, &all[4].id).await.controls.is_none(), "[{C}] a plain key grew controls");
    all.sort_by_key(|r| r.id);
    let listed = ok(C, "list", store.list(&sa, PageRequest::first(10)).await);
    assert_eq!(listed.items, all, "[{C}] list returns records different from those inserted");
}

/// [`Check::ControlsUpdate`].
pub async fn controls_update<S: KeyStore>(store: &S) {
    const C: Check = Check::ControlsUpdate;
    let key = record(&service_account());
    insert(store, C, &key).await;
    let full = full_controls();
    // Disable, then enable: nothing else changes.
    let got = update(store, C, &key, KeyUpdate::new().enabled(false)).await;
    assert_eq!(got, KeyRecord { enabled: false, ..key.clone() }, "[{C}] after disabling");
    let got = update(store, C, &key, KeyUpdate::new().enabled(true)).await;
    assert_eq!(got, key, "[{C}] after enabling again");
    // Set each control in turn.
    let mut expected = key.clone();
    let mut controls = KeyControls::new();
    let steps: Vec<(&str, KeyUpdate, KeyControls)> = vec![
        (
            "metadata",
            KeyUpdate::new().metadata(full.metadata.clone()),
            KeyControls { metadata: full.metadata.clone(), ..KeyControls::new() },
        ),
        (
            "external id",
            KeyUpdate::new().external_id(full.external_id.clone()),
            KeyControls { external_id: full.external_id.clone(), ..KeyControls::new() },
        ),
        (
            "allow-list",
            KeyUpdate::new().allowed_ips(full.allowed_ips.clone()),
            KeyControls { allowed_ips: full.allowed_ips.clone(), ..KeyControls::new() },
        ),
        (
            "rate limits",
            KeyUpdate::new().rate_limits(full.rate_limits.clone()),
            KeyControls { rate_limits: full.rate_limits.clone(), ..KeyControls::new() },
        ),
        (
            "credits",
            KeyUpdate::new().credits(full.credits),
            KeyControls { credits: full.credits, ..KeyControls::new() },
        ),
    ];
    for (what, u, delta) in steps {
        controls = merge(controls, delta);
        expected.set_controls(controls.clone());
        let got = update(store, C, &key, u).await;
        assert_eq!(got, expected, "[{C}] after setting the {what}");
    }
    assert_eq!(expected.controls(), &full, "[{C}] every control is set");
    // An update that leaves the credits alone keeps a spend made since.
    let spent = spend(store, C, &key.id, 5, None).await;
    assert_eq!(spent, CreditSpend::Spent { remaining: Credits::MAX - 5 }, "[{C}] spending from Credits::MAX");
    let got = update(store, C, &key, KeyUpdate::new().enabled(false).description(key.description.clone())).await;
    assert_eq!(
        got.controls().credits.map(|c| c.remaining),
        Some(Credits::MAX - 5),
        "[{C}] an update without credits wrote the count back"
    );
    assert!(!got.enabled, "[{C}] disabled with controls");
    // Clear each control in turn.
    let clears: Vec<(&str, KeyUpdate)> = vec![
        ("metadata", KeyUpdate::new().metadata(None)),
        ("external id", KeyUpdate::new().external_id(None)),
        ("allow-list", KeyUpdate::new().allowed_ips(None)),
        ("rate limits", KeyUpdate::new().rate_limits(None)),
    ];
    for (what, u) in clears {
        let got = update(store, C, &key, u).await;
        let c = got.controls();
        let cleared = match what {
            "metadata" => c.metadata.is_none(),
            "external id" => c.external_id.is_none(),
            "allow-list" => c.allowed_ips.is_none(),
            _ => c.rate_limits.is_none(),
        };
        assert!(cleared && c.credits.is_some(), "[{C}] clearing the {what}: {c:?}");
    }
    // Credits replaced as given (count, refill, last refill), then cleared.
    let replaced = credits(3);
    let got = update(store, C, &key, KeyUpdate::new().credits(Some(replaced))).await;
    assert_eq!(got.controls().credits, Some(replaced), "[{C}] credits replaced, refill removed");
    let got = update(store, C, &key, KeyUpdate::new().credits(None).enabled(true)).await;
    assert_eq!(got, key, "[{C}] with every control cleared and enabled again, the key is as it was");
    assert!(got.controls.is_none(), "[{C}] a key without controls holds None");
    assert_eq!(spend(store, C, &key.id, 1, None).await, CreditSpend::Unlimited, "[{C}] credits cleared");
}

/// `base` with the controls set in `delta` set.
fn merge(mut base: KeyControls, delta: KeyControls) -> KeyControls {
    base.metadata = delta.metadata.or(base.metadata);
    base.external_id = delta.external_id.or(base.external_id);
    base.allowed_ips = delta.allowed_ips.or(base.allowed_ips);
    base.rate_limits = delta.rate_limits.or(base.rate_limits);
    base.credits = delta.credits.or(base.credits);
    base
}

/// [`Check::SpendCredits`].
pub async fn spend_credits<S: KeyStore>(store: &S) {
    const C: Check = Check::SpendCredits;
    let sa = service_account();
    let remaining = |n| CreditSpend::Spent { remaining: n };
    // Spent, cost above one, exhausted at zero.
    let key = with_controls(record(&sa), KeyControls::new().credits(credits(5)));
    insert(store, C, &key).await;
    assert_eq!(spend(store, C, &key.id, 1, None).await, remaining(4), "[{C}] first spend");
    assert_eq!(spend(store, C, &key.id, 3, None).await, remaining(1), "[{C}] a cost of 3");
    assert_eq!(
        spend(store, C, &key.id, 2, None).await,
        CreditSpend::Exhausted { remaining: 1 },
        "[{C}] cost above what remains"
    );
    assert_eq!(spend(store, C, &key.id, 1, None).await, remaining(0), "[{C}] the last credit");
    assert_eq!(spend(store, C, &key.id, 1, None).await, CreditSpend::Exhausted { remaining: 0 }, "[{C}] at zero");
    assert_eq!(
        spend(store, C, &key.id, u64::MAX, None).await,
        CreditSpend::Exhausted { remaining: 0 },
        "[{C}] a huge cost"
    );
    assert_eq!(
        must_get(store, C, &key.id).await.controls().credits.map(|c| c.remaining),
        Some(0),
        "[{C}] the stored count"
    );
    // Unlimited and unknown keys.
    let plain = record(&sa);
    insert(store, C, &plain).await;
    assert_eq!(spend(store, C, &plain.id, 1, None).await, CreditSpend::Unlimited, "[{C}] a key without credits");
    let unknown = key_id();
    match store.spend_credits(&unknown, 1, None).await {
        Err(StoreError::NotFound(id)) => assert_eq!(id, unknown, "[{C}] NotFound names the wrong id"),
        other => panic!("[{C}] spending an unknown key: expected NotFound, got {other:?}"),
    }
    // Exact counts at the top of the range.
    let big = with_controls(record(&sa), KeyControls::new().credits(credits(Credits::MAX)));
    insert(store, C, &big).await;
    assert_eq!(spend(store, C, &big.id, 1, None).await, remaining(Credits::MAX - 1), "[{C}] Credits::MAX - 1");
    assert_eq!(spend(store, C, &big.id, Credits::MAX - 2, None).await, remaining(1), "[{C}] exact subtraction");
    refills(store, &sa).await;
}

/// The refill half of [`Check::SpendCredits`].
async fn refills<S: KeyStore>(store: &S, sa: &crate::record::ServiceAccountId) {
    const C: Check = Check::SpendCredits;
    let set_at = Timestamp::from_unix_nanos(1_767_225_600_000_000_001);
    let due = Timestamp::from_unix_nanos(1_767_312_000_000_000_000);
    let later = Timestamp::from_unix_nanos(1_767_398_400_000_000_000);
    let refill = Refill::new(3, RefillPeriod::Daily).unwrap_or_else(|e| panic!("{e}"));
    let key = with_controls(record(sa), KeyControls::new().credits(credits(1).refill(refill, set_at)));
    insert(store, C, &key).await;
    // Not due yet (the due instant is the last refill itself).
    assert_eq!(
        spend(store, C, &key.id, 1, Some(set_at)).await,
        CreditSpend::Spent { remaining: 0 },
        "[{C}] before a refill"
    );
    assert_eq!(
        spend(store, C, &key.id, 1, Some(set_at)).await,
        CreditSpend::Exhausted { remaining: 0 },
        "[{C}] before a refill, at zero"
    );
    // Due: refilled to the amount, then spent, in one step.
    assert_eq!(
        spend(store, C, &key.id, 2, Some(due)).await,
        CreditSpend::Spent { remaining: 1 },
        "[{C}] refilled then spent"
    );
    let stored = must_get(store, C, &key.id).await.controls().credits;
    assert_eq!(stored.map(|c| (c.remaining, c.refilled_at)), Some((1, Some(due))), "[{C}] the stored refill");
    // Not twice for the same due instant.
    assert_eq!(
        spend(store, C, &key.id, 1, Some(due)).await,
        CreditSpend::Spent { remaining: 0 },
        "[{C}] no second refill"
    );
    assert_eq!(
        spend(store, C, &key.id, 1, Some(due)).await,
        CreditSpend::Exhausted { remaining: 0 },
        "[{C}] no second refill at zero"
    );
    // A refill that cannot cover the cost spends nothing and reports the amount.
    assert_eq!(
        spend(store, C, &key.id, 4, Some(later)).await,
        CreditSpend::Exhausted { remaining: 3 },
        "[{C}] refill below the cost"
    );
    assert_eq!(
        spend(store, C, &key.id, 3, Some(later)).await,
        CreditSpend::Spent { remaining: 0 },
        "[{C}] the next refill"
    );
    // No due instant given: no refill.
    assert_eq!(
        spend(store, C, &key.id, 1, None).await,
        CreditSpend::Exhausted { remaining: 0 },
        "[{C}] without a due instant"
    );
    // A key without a refill ignores the due instant.
    let plain = with_controls(record(sa), KeyControls::new().credits(credits(0)));
    insert(store, C, &plain).await;
    assert_eq!(
        spend(store, C, &plain.id, 1, Some(later)).await,
        CreditSpend::Exhausted { remaining: 0 },
        "[{C}] no refill set"
    );
}

/// How many concurrent spends [`Check::SpendCreditsRace`] runs.
const RACERS: usize = 48;
/// The credits they race for.
const RACED: u64 = 20;

/// [`Check::SpendCreditsRace`].
pub async fn spend_credits_race<S: KeyStore>(store: &S) {
    const C: Check = Check::SpendCreditsRace;
    let key = with_controls(record(&service_account()), KeyControls::new().credits(credits(RACED)));
    insert(store, C, &key).await;
    let outcomes = join_all((0..RACERS).map(|_| store.spend_credits(&key.id, 1, None))).await;
    let mut spent = 0u64;
    let mut seen = Vec::new();
    for o in outcomes {
        match ok(C, "a concurrent spend", o) {
            CreditSpend::Spent { remaining } => {
                spent += 1;
                seen.push(remaining);
            }
            CreditSpend::Exhausted { remaining: 0 } => {}
            other => panic!("[{C}] unexpected outcome {other:?}"),
        }
    }
    assert_eq!(spent, RACED, "[{C}] {RACERS} spends of {RACED} credits");
    seen.sort_unstable();
    assert_eq!(seen, (0..RACED).collect::<Vec<_>>(), "[{C}] each count was left by exactly one spend");
    let left = must_get(store, C, &key.id).await.controls().credits.map(|c| c.remaining);
    assert_eq!(left, Some(0), "[{C}] credits left");
}

/// Every page of a listing, following the cursor with pages of `size`.
async fn all_pages<F, Fut>(c: Check, size: u32, mut list: F) -> Vec<KeyRecord>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<crate::store::Page<KeyRecord>, StoreError>>,
{
    let mut out = Vec::new();
    let mut page = PageRequest::first(size);
    for _ in 0..100 {
        let p = ok(c, "a listing", list(page).await);
        assert!(p.items.len() <= size as usize, "[{c}] a page larger than asked");
        out.extend(p.items);
        match p.next {
            Some(next) => page = PageRequest::after(size, next),
            None => return out,
        }
    }
    panic!("[{c}] the listing does not end");
}

fn ids(records: &[KeyRecord]) -> Vec<KeyId> {
    records.iter().map(|r| r.id).collect()
}

/// [`Check::ListByExternalId`].
pub async fn list_by_external_id<S: KeyStore>(store: &S) {
    const C: Check = Check::ListByExternalId;
    let owner = external_id();
    let other = external_id();
    let mut mine = Vec::new();
    // Keys of two service accounts, one revoked: all listed.
    for i in 0..5 {
        let sa = service_account();
        let mut r = with_controls(record(&sa), KeyControls::new().external_id(owner.clone()));
        if i == 0 {
            r.status = KeyStatus::Revoked;
        }
        insert(store, C, &r).await;
        mine.push(r);
    }
    let theirs = with_controls(record(&service_account()), KeyControls::new().external_id(other.clone()));
    insert(store, C, &theirs).await;
    insert(store, C, &record(&service_account())).await;
    mine.sort_by_key(|r| r.id);
    let listed = all_pages(C, 2, |p| store.list_by_external_id(&owner, p)).await;
    assert_eq!(listed, mine, "[{C}] one owner's keys, by id, in pages of 2");
    let listed = all_pages(C, 10, |p| store.list_by_external_id(&other, p)).await;
    assert_eq!(ids(&listed), [theirs.id], "[{C}] the other owner's key");
    let nobody = external_id();
    assert!(all_pages(C, 10, |p| store.list_by_external_id(&nobody, p)).await.is_empty(), "[{C}] an unknown owner");
    // An update moves a key to another owner; a delete removes it.
    // (Ids are random, so the revoked key may sit anywhere in `mine`; an
    // update of a revoked key is refused, so move and delete active ones.)
    let mut active = mine.iter().filter(|r| !r.is_revoked());
    let (Some(moved), Some(deleted)) = (active.next(), active.next()) else {
        panic!("[{C}] four of the five keys are active")
    };
    update(store, C, moved, KeyUpdate::new().external_id(Some(other.clone()))).await;
    ok(C, "delete", store.delete(&deleted.id).await);
    let expected: Vec<KeyId> = mine.iter().map(|r| r.id).filter(|id| *id != moved.id && *id != deleted.id).collect();
    assert_eq!(
        ids(&all_pages(C, 10, |p| store.list_by_external_id(&owner, p)).await),
        expected,
        "[{C}] after a move and a delete"
    );
    let mut theirs_now = vec![theirs.id, moved.id];
    theirs_now.sort();
    assert_eq!(
        ids(&all_pages(C, 10, |p| store.list_by_external_id(&other, p)).await),
        theirs_now,
        "[{C}] the moved key"
    );
    update(store, C, moved, KeyUpdate::new().external_id(None)).await;
    assert_eq!(
        ids(&all_pages(C, 10, |p| store.list_by_external_id(&other, p)).await),
        [theirs.id],
        "[{C}] a cleared owner"
    );
}

/// [`Check::ListExpiring`].
pub async fn list_expiring<S: KeyStore>(store: &S) {
    const C: Check = Check::ListExpiring;
    // A window far from every other check's expiries, unique to this run.
    let salt = key_id();
    let salt = i64::from(u16::from_le_bytes([salt.as_bytes()[0], salt.as_bytes()[1]]));
    let base = 4_000_000_000_000_000_000i64 + salt * 1_000_000_000_000;
    let t = |offset: i64| Timestamp::from_unix_nanos(base + offset);
    let (from, until) = (t(0), t(1_000));
    let at = |e: Option<Timestamp>, revoked: bool| {
        let mut r = record(&service_account());
        r.expires_at = e;
        if revoked {
            r.status = KeyStatus::Revoked;
        }
        r
    };
    let inside = [at(Some(t(0)), false), at(Some(t(1)), false), at(Some(t(500)), false), at(Some(t(999)), false)];
    let outside = [at(Some(t(-1)), false), at(Some(t(1_000)), false), at(Some(t(600)), true), at(None, false)];
    for r in inside.iter().chain(&outside) {
        insert(store, C, r).await;
    }
    let mut expected = inside.to_vec();
    expected.sort_by_key(|r| r.id);
    let listed = all_pages(C, 3, |p| store.list_expiring(from..until, p)).await;
    assert_eq!(ids(&listed), ids(&expected), "[{C}] active keys with from <= expires_at < until, by id");
    assert_eq!(listed, expected, "[{C}] the listed records");
    let listed = all_pages(C, 10, |p| store.list_expiring(t(1)..t(500), p)).await;
    assert_eq!(ids(&listed), [inside[1].id], "[{C}] a narrower window");
    assert!(all_pages(C, 10, |p| store.list_expiring(until..from, p)).await.is_empty(), "[{C}] an empty window");
}
