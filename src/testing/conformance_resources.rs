//! The resources check (part of [`conformance`](super)).

use super::{Check, insert, ok, random_bytes, record};
use crate::clock::Timestamp;
use crate::operation::{Actor, OperationCursor, OperationId, OperationKind};
use crate::record::{Description, ServiceAccountId};
use crate::resource::{
    Cloud, Folder, Organization, Resource, ResourceChange, ResourceCommit, ResourceCursor, ResourceError, ResourceId,
    ResourceKind, ResourceListing, ResourceLogEntry, ResourceName, ResourceOperationKind, ResourceOrder, ResourcePatch,
    ResourceRef, ServiceAccount,
};
use crate::store::feed::{FeedPosition, FeedRead};
use crate::store::{KeyStore, PageRequest, StoreError};
use crate::token::KeyId;

const C: Check = Check::Resources;

/// A fresh name: `prefix`, `-` and 12 random characters.
fn name(prefix: &str) -> ResourceName {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let tail: String = random_bytes::<12>().iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])).collect();
    ResourceName::new(&format!("{prefix}-{tail}")).unwrap_or_else(|e| panic!("[{C}] {e}"))
}

fn id() -> ResourceId {
    ResourceId::generate().unwrap_or_else(|e| panic!("[{C}] {e}"))
}

fn entry() -> ResourceLogEntry {
    let id = OperationId::generate().unwrap_or_else(|e| panic!("[{C}] {e}"));
    ResourceLogEntry::new(id, Actor::new("conformance").unwrap_or_else(|e| panic!("[{C}] {e}")), at(1))
}

/// A time with non-zero nanoseconds, `n` seconds into 2026.
fn at(n: u64) -> Timestamp {
    Timestamp::from_unix_nanos(1_767_225_600_123_456_789 + i64::try_from(n).unwrap_or(0) * 1_000_000_000)
}

async fn commit<S: KeyStore>(store: &S, change: ResourceChange) -> ResourceCommit {
    ok(C, "commit_resource", store.commit_resource(change, &entry()).await)
}

async fn create<S: KeyStore>(store: &S, r: Resource) -> Resource {
    let left = commit(store, ResourceChange::Create(r.clone())).await.resource;
    assert_eq!(left.as_ref(), Some(&r), "[{C}] create must return the resource as stored");
    r
}

/// Expects `change` refused with a [`ResourceError`] matching `want`, and
/// the resource's log unchanged.
async fn refused<S: KeyStore>(store: &S, change: ResourceChange, want: impl Fn(&ResourceError) -> bool) {
    let target = change.target();
    let before = log_of(store, &target).await.len();
    match store.commit_resource(change, &entry()).await {
        Err(StoreError::Resource(e)) if want(&e) => {}
        other => panic!("[{C}] a change to {target} should be refused, got {other:?}"),
    }
    assert_eq!(log_of(store, &target).await.len(), before, "[{C}] a refused change wrote a log entry");
}

async fn get<S: KeyStore>(store: &S, target: &ResourceRef) -> Option<Resource> {
    ok(C, "resource", store.resource(target).await)
}

async fn log_of<S: KeyStore>(store: &S, target: &ResourceRef) -> Vec<ResourceOperationKind> {
    let mut out = Vec::new();
    let mut page = PageRequest::<OperationCursor>::starting(1, None);
    loop {
        let p = ok(C, "resource_operations", store.resource_operations(target, page).await);
        assert!(p.items.len() <= 1, "[{C}] a log page longer than asked");
        out.extend(p.items.iter().map(|op| {
            assert_eq!(&op.resource, target, "[{C}] a log entry of another resource");
            op.kind
        }));
        match p.next {
            Some(next) => page = PageRequest::starting(1, Some(next)),
            None => return out,
        }
    }
}

/// Every member of `listing` in `order`, in pages of `size`.
async fn list_all<S: KeyStore>(
    store: &S,
    listing: &ResourceListing,
    order: ResourceOrder,
    size: u32,
) -> Vec<ResourceRef> {
    let mut out = Vec::new();
    let mut page = PageRequest::<ResourceCursor>::starting(size, None);
    loop {
        let p = ok(C, "list_resources", store.list_resources(listing, order, page).await);
        assert!(p.items.len() <= size as usize, "[{C}] a page longer than asked");
        out.extend(p.items.iter().map(Resource::reference));
        match p.next {
            Some(next) => page = PageRequest::starting(size, Some(next)),
            None => return out,
        }
    }
}

/// Reads the feed from `head` until every key of `keys` was seen deleted
/// (PostgreSQL shows a change once every older transaction of the cluster
/// has ended, so earlier changes of the keys may come first, and this
/// waits up to 20 s).
async fn gone_in_feed<S: KeyStore>(store: &S, head: FeedPosition, keys: &[KeyId]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (mut at, mut gone) = (head, std::collections::BTreeSet::new());
    loop {
        match ok(C, "changes_after", store.changes_after(at, 100).await) {
            FeedRead::Changes { changes, next } => {
                gone.extend(changes.iter().filter(|c| c.gone && keys.contains(&c.key_id)).map(|c| c.key_id));
                at = next;
            }
            other => panic!("[{C}] the feed broke while reading it: {other:?}"),
        }
        if gone.len() == keys.len() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "[{C}] the feed shows {gone:?} of {keys:?} deleted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn account(folder: ResourceId, n: &ResourceName) -> Resource {
    Resource::ServiceAccount(ServiceAccount::new(id().into(), folder, at(0), n.clone()))
}

fn sa_ref(r: &Resource) -> ServiceAccountId {
    match r.reference() {
        ResourceRef::ServiceAccount(id) => id,
        other => panic!("[{C}] {other} is not a service account"),
    }
}

/// [`Check::Resources`]: see its docs.
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
pub async fn resources<S: KeyStore>(store: &S) {
    // The defaults.
    let default_org = ResourceRef::Organization(ResourceId::default_organization());
    let default_folder = ResourceRef::Folder(ResourceId::default_folder());
    for r in [&default_org, &ResourceRef::Cloud(ResourceId::default_cloud()), &default_folder] {
        let found = get(store, r).await.unwrap_or_else(|| panic!("[{C}] the default {r} is missing"));
        assert_eq!(found.name().as_str(), "default", "[{C}] the default {r}'s name");
    }
    let by_name = ok(
        C,
        "find_resource",
        store
            .find_resource(
                &ResourceListing::Folders(ResourceId::default_cloud()),
                &ResourceName::new("default").unwrap_or_else(|e| panic!("{e}")),
            )
            .await,
    );
    assert_eq!(by_name.map(|r| r.reference()), Some(default_folder.clone()), "[{C}] the default folder by name");

    // A hierarchy of our own.
    let org = create(
        store,
        Resource::Organization(
            Organization::new(id(), at(0), name("org")).with_title(Description::new("Conformance").unwrap_or_default()),
        ),
    )
    .await;
    let org_id = ResourceId::new(org.reference().id()).unwrap_or_else(|e| panic!("{e}"));
    let cloud = create(
        store,
        Resource::Cloud(
            Cloud::new(id(), org_id, at(0), name("cloud")).with_labels("env=test".parse().unwrap_or_default()),
        ),
    )
    .await;
    let cloud_id = ResourceId::new(cloud.reference().id()).unwrap_or_else(|e| panic!("{e}"));
    let (n1, n2) = (name("a"), name("b"));
    let f1 = create(store, Resource::Folder(Folder::new(id(), cloud_id, at(0), n1.clone()))).await;
    let f2 = create(store, Resource::Folder(Folder::new(id(), cloud_id, at(0), n2.clone()))).await;
    let (f1_id, f2_id) = (
        ResourceId::new(f1.reference().id()).unwrap_or_else(|e| panic!("{e}")),
        ResourceId::new(f2.reference().id()).unwrap_or_else(|e| panic!("{e}")),
    );
    let (robot_a, robot_b) = (name("robot-a"), name("robot-b"));
    let a = create(store, account(f1_id, &robot_a)).await;
    let b = create(store, account(f2_id, &robot_b)).await;
    assert_eq!(get(store, &a.reference()).await.as_ref(), Some(&a), "[{C}] a service account round trip");
    assert_eq!(get(store, &cloud.reference()).await.as_ref(), Some(&cloud), "[{C}] a cloud round trip");
    assert_eq!(get(store, &org.reference()).await.as_ref(), Some(&org), "[{C}] an organization round trip");

    // Refusals write nothing.
    let unknown = ResourceRef::Organization(id());
    refused(store, ResourceChange::Create(Resource::Cloud(Cloud::new(id(), id(), at(0), name("c")))), |e| {
        matches!(e, ResourceError::ParentNotFound { kind: ResourceKind::Organization, .. })
    })
    .await;
    refused(store, ResourceChange::Create(account(id(), &name("lost"))), |e| {
        matches!(e, ResourceError::ParentNotFound { kind: ResourceKind::Folder, .. })
    })
    .await;
    refused(store, ResourceChange::Create(Resource::Folder(Folder::new(id(), cloud_id, at(0), n1.clone()))), |e| {
        matches!(e, ResourceError::NameTaken { kind: ResourceKind::Folder, scope: Some(ResourceKind::Cloud), .. })
    })
    .await;
    // A service account's name is unique in its cloud, not only its folder.
    refused(store, ResourceChange::Create(account(f2_id, &robot_a)), |e| {
        matches!(e, ResourceError::NameTaken { kind: ResourceKind::ServiceAccount, .. })
    })
    .await;
    refused(store, ResourceChange::Create(f1.clone()), |e| matches!(e, ResourceError::AlreadyExists { .. })).await;
    refused(store, ResourceChange::Delete(unknown.clone()), |e| matches!(e, ResourceError::NotFound { .. })).await;
    refused(
        store,
        ResourceChange::Update { target: b.reference(), patch: ResourcePatch::new().name(robot_a.clone()) },
        |e| matches!(e, ResourceError::NameTaken { .. }),
    )
    .await;
    refused(
        store,
        ResourceChange::Update {
            target: f1.reference(),
            patch: ResourcePatch::new().title(Description::new("t").unwrap_or_default()),
        },
        |e| matches!(e, ResourceError::InvalidChange { .. }),
    )
    .await;
    for (parent, child) in
        [(&f1, ResourceKind::ServiceAccount), (&cloud, ResourceKind::Folder), (&org, ResourceKind::Cloud)]
    {
        refused(
            store,
            ResourceChange::Delete(parent.reference()),
            move |e| matches!(e, ResourceError::HasChildren { child: c, .. } if *c == child),
        )
        .await;
    }
    let used = entry();
    ok(C, "commit_resource", store.commit_resource(ResourceChange::Create(account(f2_id, &name("x"))), &used).await);
    match store.commit_resource(ResourceChange::Create(account(f2_id, &name("y"))), &used).await {
        Err(StoreError::DuplicateOperation(id)) if id == used.id => {}
        other => panic!("[{C}] a repeated log entry id must be refused, got {other:?}"),
    }
    assert!(get(store, &a.reference()).await.is_some(), "[{C}] account a vanished");
    assert!(
        store
            .find_resource(&ResourceListing::ServiceAccountsOfCloud(cloud_id), &robot_a)
            .await
            .ok()
            .flatten()
            .is_some(),
        "[{C}] find by name in the cloud"
    );

    // Two creates racing for one name in one cloud: exactly one lands.
    let contested = name("race");
    let (x, y) = (account(f1_id, &contested), account(f2_id, &contested));
    let (ex, ey) = (entry(), entry());
    let (rx, ry) = tokio::join!(
        store.commit_resource(ResourceChange::Create(x.clone()), &ex),
        store.commit_resource(ResourceChange::Create(y.clone()), &ey),
    );
    assert_eq!(usize::from(rx.is_ok()) + usize::from(ry.is_ok()), 1, "[{C}] racing creates of one name: {rx:?} {ry:?}");
    for (r, resource) in [(rx, &x), (ry, &y)] {
        match r {
            Ok(_) => {
                commit(store, ResourceChange::Delete(resource.reference())).await;
            }
            Err(StoreError::Resource(ResourceError::NameTaken { .. })) => {
                assert!(get(store, &resource.reference()).await.is_none(), "[{C}] the refused create wrote its row");
            }
            Err(e) => panic!("[{C}] the losing create must be NameTaken, got {e:?}"),
        }
    }

    // Listings: by name and by id, in pages of one.
    let folders = ResourceListing::Folders(cloud_id);
    let mut want = [(n1.clone(), f1.reference()), (n2.clone(), f2.reference())];
    want.sort();
    let names: Vec<_> = want.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(list_all(store, &folders, ResourceOrder::Name, 1).await, names, "[{C}] folders by name");
    let mut ids = names.clone();
    ids.sort_by(|x, y| x.id().cmp(y.id()));
    assert_eq!(list_all(store, &folders, ResourceOrder::Id, 1).await, ids, "[{C}] folders by id");
    assert_eq!(
        list_all(store, &ResourceListing::ServiceAccounts(f1_id), ResourceOrder::Name, 10).await,
        vec![a.reference()],
        "[{C}] the service accounts of a folder"
    );
    assert_eq!(
        list_all(store, &ResourceListing::ServiceAccountsOfCloud(cloud_id), ResourceOrder::Id, 1).await.len(),
        3,
        "[{C}] the service accounts of a cloud"
    );
    assert!(
        list_all(store, &ResourceListing::Clouds(org_id), ResourceOrder::Name, 5).await == vec![cloud.reference()],
        "[{C}] the clouds of an organization"
    );
    assert!(
        list_all(store, &ResourceListing::Organizations, ResourceOrder::Id, 1000).await.contains(&org.reference()),
        "[{C}] the organizations"
    );
    assert!(
        list_all(store, &ResourceListing::Folders(id()), ResourceOrder::Name, 5).await.is_empty(),
        "[{C}] an unknown parent lists nothing"
    );
    let in_f1 = ResourceListing::ServiceAccounts(f1_id);
    let found = ok(C, "find_resource", store.find_resource(&in_f1, &robot_b).await);
    assert!(found.is_none(), "[{C}] robot-b is not in folder a");

    // Updates.
    let robot_c = name("robot-c");
    let updated = commit(
        store,
        ResourceChange::Update {
            target: a.reference(),
            patch: ResourcePatch::new().name(robot_c.clone()).labels("team=web".parse().unwrap_or_default()),
        },
    )
    .await
    .resource
    .unwrap_or_else(|| panic!("[{C}] an update returns the resource"));
    assert_eq!(updated.name(), &robot_c, "[{C}] the new name");
    assert_eq!(get(store, &a.reference()).await, Some(updated.clone()), "[{C}] the update is stored");
    // The old name is free again.
    let again = create(store, account(f2_id, &robot_a)).await;
    assert!(get(store, &again.reference()).await.is_some(), "[{C}] a freed name is usable");

    // The last use of an account's keys, read when the account is read.
    let sa = sa_ref(&a);
    let (k1, k2) = (record(&sa), record(&sa));
    insert(store, C, &k1).await;
    insert(store, C, &k2).await;
    ok(C, "touch_last_used", store.touch_last_used(&[(k1.id, at(10)), (k2.id, at(20))]).await);
    let read = get(store, &a.reference()).await.and_then(Resource::into_service_account);
    assert_eq!(read.and_then(|sa| sa.last_authenticated_at), Some(at(20)), "[{C}] last_authenticated_at");
    let described = ResourcePatch::new().description(Description::new("used").unwrap_or_default());
    let left = commit(store, ResourceChange::Update { target: a.reference(), patch: described }).await.resource;
    let left = left.and_then(Resource::into_service_account).unwrap_or_else(|| panic!("[{C}] no account returned"));
    assert_eq!(left.last_authenticated_at, None, "[{C}] a commit returns the account as written");

    // Deleting the account deletes its keys, with their log entries and
    // feed entries.
    // A delete whose log entry cannot be written deletes nothing.
    match store.commit_resource(ResourceChange::Delete(a.reference()), &used).await {
        Err(StoreError::DuplicateOperation(id)) if id == used.id => {}
        other => panic!("[{C}] a delete with a repeated log entry id must be refused, got {other:?}"),
    }
    assert!(get(store, &a.reference()).await.is_some(), "[{C}] a refused delete removed the account");
    // (Listed, not read by id: a cache in front of the store must not hold
    // the keys before the delete below.)
    let kept = ok(C, "list", store.list(&sa, PageRequest::first(10)).await).items.len();
    assert_eq!(kept, 2, "[{C}] a refused delete removed keys");
    let head = ok(C, "feed_head", store.feed_head().await);
    let done = commit(store, ResourceChange::Delete(a.reference())).await;
    let mut keys = vec![k1.id, k2.id];
    keys.sort();
    assert_eq!(done.deleted_keys, keys, "[{C}] the keys deleted with the account");
    for k in &keys {
        assert!(ok(C, "get", store.get(k).await).is_none(), "[{C}] key {k} outlived its account");
        let log = super::log_of(store, C, k).await;
        let last = log.first().unwrap_or_else(|| panic!("[{C}] key {k} has no log"));
        assert_eq!((last.kind, last.actor.as_str()), (OperationKind::Delete, "conformance"), "[{C}] the key's log");
        assert_eq!(last.service_account_id, sa, "[{C}] the key's log names the account");
    }
    if let Some(head) = head {
        gone_in_feed(store, head, &keys).await;
    }
    assert!(get(store, &a.reference()).await.is_none(), "[{C}] the account outlived its delete");
    assert_eq!(
        log_of(store, &a.reference()).await,
        [
            ResourceOperationKind::Delete,
            ResourceOperationKind::Update,
            ResourceOperationKind::Update,
            ResourceOperationKind::Create
        ],
        "[{C}] the account's log, newest first"
    );

    // Empty parents can go, bottom up.
    for r in list_all(store, &ResourceListing::ServiceAccountsOfCloud(cloud_id), ResourceOrder::Id, 100).await {
        commit(store, ResourceChange::Delete(r)).await;
    }
    for r in [f1.reference(), f2.reference(), cloud.reference(), org.reference()] {
        commit(store, ResourceChange::Delete(r.clone())).await;
        assert!(get(store, &r).await.is_none(), "[{C}] {r} outlived its delete");
    }
    refused(store, ResourceChange::Delete(org.reference()), |e| matches!(e, ResourceError::NotFound { .. })).await;
}

/// [`Check::AccessPolicies`]: see its docs.
pub(super) async fn access_policies<S: KeyStore>(store: &S) {
    use crate::access_policy::{ALLOWED_SCOPES, AccessPolicyBinding, DENY_KEY_CREATION, MAX_KEY_LIFETIME};
    const P: Check = Check::AccessPolicies;
    let folder =
        create(store, Resource::Folder(Folder::new(id(), ResourceId::default_cloud(), at(0), name("pol")))).await;
    let on = folder.reference();
    let bindings_on =
        |r: ResourceRef| async move { ok(P, "access_policy_bindings", store.access_policy_bindings(Some(&r)).await) };
    let head = ok(P, "resource_head", store.resource_head().await);
    let deny = AccessPolicyBinding::new(DENY_KEY_CREATION);
    let days = |d: &str| AccessPolicyBinding::new(MAX_KEY_LIFETIME).with_parameter("max_lifetime", d);
    for b in [deny.clone(), days("30d"), days("7d")] {
        let left = commit(store, ResourceChange::BindAccessPolicy { target: on.clone(), binding: b }).await;
        assert_eq!(left.resource.map(|r| r.reference()), Some(on.clone()), "[{P}] a bind returns its resource");
    }
    let later = ok(P, "resource_head", store.resource_head().await);
    assert!(later >= head + 3, "[{P}] three binds move the head from {head} by 3 at least, to {later}");
    // The second lifetime binding replaced the first.
    assert_eq!(
        bindings_on(on.clone()).await,
        vec![(on.clone(), days("7d")), (on.clone(), deny.clone())],
        "[{P}] bindings"
    );
    let all = ok(P, "access_policy_bindings", store.access_policy_bindings(None).await);
    assert!(all.contains(&(on.clone(), days("7d"))), "[{P}] every binding lists this one");
    assert_eq!(log_of(store, &on).await.len(), 4, "[{P}] a create and three binds logged");

    // Refused, writing nothing.
    let sa = create(store, account(ResourceId::new(on.id()).unwrap_or_else(|e| panic!("{e}")), &name("robot"))).await;
    refused(store, ResourceChange::BindAccessPolicy { target: sa.reference(), binding: deny.clone() }, |e| {
        matches!(e, ResourceError::AccessPolicy(_))
    })
    .await;
    let bad = AccessPolicyBinding::new(ALLOWED_SCOPES);
    refused(store, ResourceChange::BindAccessPolicy { target: on.clone(), binding: bad }, |e| {
        matches!(e, ResourceError::AccessPolicy(_))
    })
    .await;
    let missing = ResourceRef::Folder(id());
    match store
        .commit_resource(ResourceChange::BindAccessPolicy { target: missing, binding: deny.clone() }, &entry())
        .await
    {
        Err(StoreError::Resource(ResourceError::NotFound { .. })) => {}
        other => panic!("[{P}] a bind on a missing folder should be refused, got {other:?}"),
    }
    let unbind = |t: &str| ResourceChange::UnbindAccessPolicy { target: on.clone(), template_id: t.to_owned() };
    refused(store, unbind(ALLOWED_SCOPES), |e| matches!(e, ResourceError::PolicyNotBound { .. })).await;

    // An entry is found by id, from the log of its resource.
    let logged = entry();
    ok(P, "commit_resource", store.commit_resource(unbind(DENY_KEY_CREATION), &logged).await);
    let found = ok(P, "resource_operation", store.resource_operation(&logged.id).await)
        .unwrap_or_else(|| panic!("[{P}] the unbind's entry is not found by id"));
    assert_eq!((found.id, &found.resource, found.kind), (logged.id, &on, ResourceOperationKind::Update), "[{P}] by id");
    assert_eq!(found.response.map(|r| r.reference()), Some(on.clone()), "[{P}] with the resource as left");
    // An idempotency claim is recorded with a resource change, naming its
    // entry; a second change claiming the key is refused whole.
    {
        use crate::store::idempotency::{IdempotencyClaim, IdempotencyKey, IdempotencyRecord};
        let actor = Actor::new("conformance").unwrap_or_else(|e| panic!("{e}"));
        let key = IdempotencyKey::of(&format!("resource-claim-{}", on.id()));
        let claim = IdempotencyClaim::new(actor.clone(), key, [7; 32], at(1), std::time::Duration::from_secs(3600));
        let claimed = entry().with_idempotency(claim.clone());
        let bind = |b: AccessPolicyBinding| ResourceChange::BindAccessPolicy { target: on.clone(), binding: b };
        ok(P, "commit_resource", store.commit_resource(bind(deny.clone()), &claimed).await);
        let record = ok(P, "idempotency", store.idempotency(&actor, &key, at(2)).await);
        assert_eq!(record, Some(IdempotencyRecord::new(claim.clone(), claimed.id)), "[{P}] the claim is recorded");
        let twin = entry().with_idempotency(claim);
        match store.commit_resource(unbind(DENY_KEY_CREATION), &twin).await {
            Err(StoreError::IdempotencyKeyTaken) => {}
            other => panic!("[{P}] a second claim of the key should be refused, got {other:?}"),
        }
        assert_eq!(bindings_on(on.clone()).await.len(), 2, "[{P}] the refused change wrote nothing");
        commit(store, unbind(DENY_KEY_CREATION)).await;
    }
    let unknown = OperationId::generate().unwrap_or_else(|e| panic!("{e}"));
    assert!(ok(P, "resource_operation", store.resource_operation(&unknown).await).is_none(), "[{P}] unknown id");
    assert_eq!(bindings_on(on.clone()).await, vec![(on.clone(), days("7d"))], "[{P}] after an unbind");
    // A deleted folder's bindings go with it.
    commit(store, ResourceChange::Delete(sa.reference())).await;
    commit(store, ResourceChange::Delete(on.clone())).await;
    assert!(bindings_on(on.clone()).await.is_empty(), "[{P}] a deleted folder keeps no bindings");
    let all = ok(P, "access_policy_bindings", store.access_policy_bindings(None).await);
    assert!(all.iter().all(|(r, _)| *r != on), "[{P}] nor does the list of all");
}

/// [`Check::AccessBindings`]: see its docs.
pub(super) async fn access_bindings<S: KeyStore>(store: &S) {
    use crate::access_binding::{AccessBinding, AccessBindingDelta, AccessBindingError, Role, Subject};
    const P: Check = Check::AccessBindings;
    let folder =
        create(store, Resource::Folder(Folder::new(id(), ResourceId::default_cloud(), at(0), name("acl")))).await;
    let on = folder.reference();
    let folder_id = ResourceId::new(on.id()).unwrap_or_else(|e| panic!("{e}"));
    let robot = create(store, account(folder_id, &name("robot"))).await;
    let other = create(store, account(folder_id, &name("other"))).await;
    let subject = |r: &Resource| match r.reference() {
        ResourceRef::ServiceAccount(sa) => Subject::service_account(sa),
        _ => panic!("[{P}] not an account"),
    };
    let (me, them) = (subject(&robot), subject(&other));
    let change = |target: &ResourceRef, deltas: Vec<AccessBindingDelta>, replace: bool| {
        ResourceChange::UpdateAccessBindings { target: target.clone(), deltas, replace }
    };
    let add = |role, s: &Subject| AccessBindingDelta::add(AccessBinding::new(role, s.clone()));
    let remove = |role, s: &Subject| AccessBindingDelta::remove(AccessBinding::new(role, s.clone()));
    let bindings_on = |r: ResourceRef| async move { ok(P, "access_bindings", store.access_bindings(Some(&r)).await) };
    let head = ok(P, "resource_head", store.resource_head().await);
    let left = commit(
        store,
        change(&on, vec![add(Role::Viewer, &me), add(Role::Editor, &them), add(Role::Viewer, &me)], false),
    )
    .await;
    assert_eq!(left.resource.map(|r| r.reference()), Some(on.clone()), "[{P}] a change returns its resource");
    commit(store, change(&robot.reference(), vec![add(Role::ServiceAccountsAdmin, &them)], false)).await;
    let later = ok(P, "resource_head", store.resource_head().await);
    assert!(later >= head + 2, "[{P}] two changes move the head from {head} by 2 at least, to {later}");
    let folder_bindings = vec![
        (on.clone(), AccessBinding::new(Role::Viewer, me.clone())),
        (on.clone(), AccessBinding::new(Role::Editor, them.clone())),
    ];
    let mut sorted = folder_bindings.clone();
    sorted.sort();
    assert_eq!(bindings_on(on.clone()).await, sorted, "[{P}] an added binding is there once, in order");
    let all = ok(P, "access_bindings", store.access_bindings(None).await);
    assert!(all.windows(2).all(|w| w[0] <= w[1]), "[{P}] all bindings in order");
    for b in &folder_bindings {
        assert!(all.contains(b), "[{P}] every binding lists {b:?}");
    }
    assert!(all.contains(&(robot.reference(), AccessBinding::new(Role::ServiceAccountsAdmin, them.clone()))));

    // Refused, writing nothing.
    let ghost = Subject::service_account(crate::ServiceAccountId::new(id().as_str()).unwrap_or_else(|e| panic!("{e}")));
    refused(store, change(&on, vec![add(Role::Admin, &ghost)], false), |e| {
        matches!(e, ResourceError::AccessBinding(AccessBindingError::SubjectNotFound(_)))
    })
    .await;
    refused(store, change(&on, vec![add(Role::Admin, &me), remove(Role::Admin, &them)], false), |e| {
        matches!(e, ResourceError::AccessBinding(AccessBindingError::NotBound { .. }))
    })
    .await;
    match store.commit_resource(change(&ResourceRef::Folder(id()), vec![add(Role::Viewer, &me)], false), &entry()).await
    {
        Err(StoreError::Resource(ResourceError::NotFound { .. })) => {}
        other => panic!("[{P}] a change on a missing folder should be refused, got {other:?}"),
    }
    assert_eq!(bindings_on(on.clone()).await, sorted, "[{P}] refused changes wrote nothing");
    // An organization keeps an admin once it has one.
    let org = create(store, Resource::Organization(Organization::new(id(), at(0), name("aclorg")))).await;
    let o = org.reference();
    commit(store, change(&o, vec![add(Role::Admin, &me)], false)).await;
    refused(store, change(&o, vec![remove(Role::Admin, &me)], false), |e| {
        matches!(e, ResourceError::AccessBinding(AccessBindingError::LastAdmin(_)))
    })
    .await;
    refused(store, change(&o, vec![add(Role::Viewer, &them)], true), |e| {
        matches!(e, ResourceError::AccessBinding(AccessBindingError::LastAdmin(_)))
    })
    .await;
    commit(store, change(&o, vec![add(Role::Admin, &them), remove(Role::Admin, &me)], false)).await;
    assert_eq!(bindings_on(o.clone()).await, vec![(o.clone(), AccessBinding::new(Role::Admin, them.clone()))]);

    // A replace drops the rest.
    commit(store, change(&on, vec![add(Role::Admin, &them)], true)).await;
    assert_eq!(bindings_on(on.clone()).await, vec![(on.clone(), AccessBinding::new(Role::Admin, them.clone()))]);
    assert_eq!(log_of(store, &on).await.len(), 3, "[{P}] a create and two changes logged");

    // A deleted account's bindings go everywhere; a deleted resource's too.
    commit(store, ResourceChange::Delete(other.reference())).await;
    assert!(bindings_on(on.clone()).await.is_empty(), "[{P}] a deleted subject keeps no binding on the folder");
    assert!(bindings_on(o.clone()).await.is_empty(), "[{P}] nor on the organization");
    commit(store, change(&on, vec![add(Role::Viewer, &me)], false)).await;
    commit(store, ResourceChange::Delete(robot.reference())).await;
    commit(store, ResourceChange::Delete(on.clone())).await;
    commit(store, ResourceChange::Delete(o.clone())).await;
    let all = ok(P, "access_bindings", store.access_bindings(None).await);
    assert!(all.iter().all(|(r, _)| *r != on && *r != o), "[{P}] deleted resources keep no bindings");
}
