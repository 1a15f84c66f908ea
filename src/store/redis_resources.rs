//! Resources in the [`RedisStore`]: organizations, clouds, folders and
//! service accounts ([`crate::resource`]), their listings, name indexes and
//! operations log, and the upgrade of a store written by a release before
//! them. The keys are in the layout table of [`redis`](super::redis).
//!
//! Every change is one Lua script: the record, the listing indexes (which
//! are also the name uniqueness indexes), the log entry and, for a service
//! account's delete, its keys with their log and feed entries (through the
//! same wrappers as every key change). Reads are pipelines over the
//! indexes; no request `SCAN`s.
//!
//! # Set-up and upgrade
//! The default organization, cloud and folder are written, and the
//! service accounts the keys of an earlier release name (the members of
//! `{p}:sa:*`) become accounts in the default folder, once per store: by
//! [`RedisStoreBuilder::connect`](super::redis::RedisStoreBuilder::connect),
//! or by the first resource call of a store made otherwise. Then the mark
//! `{p}:resources:built` is set. Every resource call checks the mark (in
//! its script, or pipelined with its read) and sets the store up first if
//! it is missing, so a flushed store gets its defaults back. Each step
//! writes only what is missing, so many nodes may do it at once.
//!
//! An account from the upgrade is named by its id where the id is a valid
//! name, else `sa-` and 16 random hex digits (as the SQL migration names
//! it), and was created when its earliest key was. Keys written by a node
//! of the earlier release after the mark (a rolling upgrade) get no
//! account: delete the mark once every node runs this release, and the
//! next resource call runs the upgrade again (it creates only what is
//! missing, the defaults included).

use std::sync::LazyLock;

use crate::access_binding::{AccessBinding, AccessBindingDelta};
use crate::access_policy::AccessPolicyBinding;

use ::redis::aio::ConnectionLike;
use ::redis::{Script, Value, cmd, pipe};
use serde::{Deserialize, Serialize};

use super::feed::FeedChange;
use super::key_store::{Page, PageRequest, StoreError, next_after};
use super::redis::{
    CAS_ATTEMPTS, Call, LogArgs, RedisStore, change_script, log_reply, redis_error, reply_text, scan, zrange_by_lex,
};
use crate::clock::Timestamp;
use crate::operation::{Actor, OperationCursor, OperationId};
use crate::record::ServiceAccountId;
use crate::resource::{
    Cloud, DEFAULT_CLOUD_ID, DEFAULT_FOLDER_ID, Folder, Organization, Resource, ResourceChange, ResourceCommit,
    ResourceCursor, ResourceError, ResourceId, ResourceKind, ResourceListing, ResourceLogEntry, ResourceName,
    ResourceOperation, ResourceOperationKind, ResourceOperationPage, ResourceOrder, ResourcePage, ResourceRef,
    ServiceAccount, name_taken,
};
use crate::store::backend::timed;
use crate::token::KeyId;

/// One resource change, wrapped by `change_script` (so the keys of a
/// deleted service account get their log and feed entries in it).
///
/// KEYS: 1 the record, 2 its log, 3 the log entry id index, 4 the log
/// sequence counter, 5 the set-up mark, 6 the parent's record (create) or
/// the by-id index of the children (delete), 7 the account's key index
/// (`{p}:sa:<id>`, a service account's delete), 8 the digest index, 9 the
/// external-id index, then `P` pairs of listing indexes (by name, by id; the
/// first pair's by-name index is where the name must be unique), then the
/// records of the `N` keys to delete, then the access policy bindings
/// (`{p}:policies`), then the access bindings (`{p}:access`).
///
/// ARGV: 1 `create` | `update` | `delete`, 2 the id, 3 the stored JSON
/// expected (update, delete), 4 the new JSON (create, update), 5 the old
/// name, 6 the new name, 7 for a create `''` (no parent), `-` (the parent
/// must exist) or the cloud the parent folder must be in; for a delete `c`
/// (refused while children are indexed), `k` (the account's keys must be
/// exactly the `N` given) or `''`; 8 the log entry's id, 9 its JSON, 10 the
/// `parent` field, 11 the `scope` field, 12 `P`, 13 `N`, then the `N` key
/// ids, then the prefix of the deleted resource's bindings' fields, its
/// access bindings' field, and a deleted service account's id (`''` for
/// another kind), whose bindings as a subject go too.
///
/// Returns `ok`, or before writing anything: `upgrade` (no mark: set the
/// store up and retry), `resdup` (the log entry id is taken), `exists`,
/// `parent`, `taken`, `gone`, `children`, `changed` (the record or the
/// parent differs from what was read: read again), `keys` (the account's
/// keys changed: read again).
const COMMIT_LUA: &str = r"
if redis.call('EXISTS', KEYS[5]) == 0 then return 'upgrade' end
if redis.call('HEXISTS', KEYS[3], ARGV[8]) == 1 then return 'resdup' end
local p, n, op, id = tonumber(ARGV[12]), tonumber(ARGV[13]), ARGV[1], ARGV[2]
local function taken(name)
  return #redis.call('ZRANGEBYLEX', KEYS[10], '[' .. name .. '\0', '(' .. name .. '\1', 'LIMIT', 0, 1) > 0
end
if op == 'create' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
  if ARGV[7] ~= '' then
    if redis.call('EXISTS', KEYS[6]) == 0 then return 'parent' end
    if ARGV[7] ~= '-' and redis.call('HGET', KEYS[6], 'parent') ~= ARGV[7] then return 'changed' end
  end
  if taken(ARGV[6]) then return 'taken' end
  redis.call('HSET', KEYS[1], 'json', ARGV[4], 'name', ARGV[6], 'parent', ARGV[10], 'scope', ARGV[11])
  for i = 0, p - 1 do
    redis.call('ZADD', KEYS[10 + 2 * i], 0, ARGV[6] .. '\0' .. id)
    redis.call('ZADD', KEYS[11 + 2 * i], 0, id)
  end
else
  if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
  if redis.call('HGET', KEYS[1], 'json') ~= ARGV[3] then return 'changed' end
  if op == 'update' then
    if ARGV[6] ~= ARGV[5] then
      if taken(ARGV[6]) then return 'taken' end
      for i = 0, p - 1 do
        redis.call('ZREM', KEYS[10 + 2 * i], ARGV[5] .. '\0' .. id)
        redis.call('ZADD', KEYS[10 + 2 * i], 0, ARGV[6] .. '\0' .. id)
      end
    end
    redis.call('HSET', KEYS[1], 'json', ARGV[4], 'name', ARGV[6])
  else
    if ARGV[7] == 'c' and redis.call('ZCARD', KEYS[6]) > 0 then return 'children' end
    if ARGV[7] == 'k' then
      if redis.call('ZCARD', KEYS[7]) ~= n then return 'keys' end
      for i = 1, n do
        if not redis.call('ZSCORE', KEYS[7], ARGV[13 + i]) then return 'keys' end
      end
      for i = 1, n do
        local rec, key = KEYS[9 + 2 * p + i], ARGV[13 + i]
        local ext = redis.call('HGET', rec, 'external_id')
        if ext then redis.call('ZREM', KEYS[9], ext .. ' ' .. key) end
        local kind = redis.call('HGET', rec, 'kind')
        local digest = redis.call('HGET', rec, 'digest')
        redis.call('DEL', rec)
        redis.call('ZREM', KEYS[7], key)
        if kind == 'imported' and digest and redis.call('HGET', KEYS[8], digest) == key then
          redis.call('HDEL', KEYS[8], digest)
        end
      end
    end
    redis.call('DEL', KEYS[1])
    for i = 0, p - 1 do
      redis.call('ZREM', KEYS[10 + 2 * i], ARGV[5] .. '\0' .. id)
      redis.call('ZREM', KEYS[11 + 2 * i], id)
    end
    local bound, prefix = KEYS[10 + 2 * p + n], ARGV[14 + n]
    for _, f in ipairs(redis.call('HKEYS', bound)) do
      if string.sub(f, 1, #prefix) == prefix then redis.call('HDEL', bound, f) end
    end
    local access = KEYS[11 + 2 * p + n]
    redis.call('HDEL', access, ARGV[15 + n])
    if ARGV[16 + n] ~= '' then
      local all = redis.call('HGETALL', access)
      for i = 1, #all, 2 do
        local kept = {}
        for _, b in ipairs(cjson.decode(all[i + 1])) do
          if not (b.subjectType == 'serviceAccount' and b.subjectId == ARGV[16 + n]) then
            kept[#kept + 1] = b
          end
        end
        if #kept == 0 then
          redis.call('HDEL', access, all[i])
        elseif #kept < #cjson.decode(all[i + 1]) then
          redis.call('HSET', access, all[i], cjson.encode(kept))
        end
      end
    end
  end
end
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[2], seq, ARGV[9])
redis.call('HSET', KEYS[3], ARGV[8], seq .. '@' .. KEYS[2])
return 'ok'
";

/// Writes what is missing of one resource, with no log entry: the set-up
/// of the defaults and of the accounts of earlier keys.
///
/// KEYS: 1 the record, 2 its parent's record (or the record itself when it
/// has none), then `P` pairs of listing indexes (by name, by id; the first
/// by-name index is where the name must be unique). ARGV: 1 the id, 2 the
/// name, 3 its JSON, 4 a second name, 5 its JSON (used where the first is
/// taken; `''`: none), 6 the `parent` field, 7 the `scope` field, 8 `P`,
/// 9 `1` if it has a parent.
/// Returns `ok`, `exists` (nothing to do), `parent` (no parent) or `taken`
/// (both names are; nothing written).
const ENSURE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
if ARGV[9] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then return 'parent' end
local function taken(name)
  return #redis.call('ZRANGEBYLEX', KEYS[3], '[' .. name .. '\0', '(' .. name .. '\1', 'LIMIT', 0, 1) > 0
end
local name, json = ARGV[2], ARGV[3]
if taken(name) then
  if ARGV[4] == '' or taken(ARGV[4]) then return 'taken' end
  name, json = ARGV[4], ARGV[5]
end
redis.call('HSET', KEYS[1], 'json', json, 'name', name, 'parent', ARGV[6], 'scope', ARGV[7])
for i = 0, tonumber(ARGV[8]) - 1 do
  redis.call('ZADD', KEYS[3 + 2 * i], 0, name .. '\0' .. ARGV[1])
  redis.call('ZADD', KEYS[4 + 2 * i], 0, ARGV[1])
end
return 'ok'
";

/// Binds or unbinds an access policy and logs it as an update of the
/// resource (run inside the change wrappers, which record its
/// idempotency claim).
///
/// KEYS: 1 the record, 2 its log, 3 `{p}:resopids`, 4 `{p}:resseq`, 5 the
/// set-up mark, 6 `{p}:policies`. ARGV: 1 `bind` | `unbind`, 2 the
/// binding's field (`<kind>:<id>:<template>`), 3 its parameters (JSON), 4
/// the log entry's id, 5 its JSON.
/// Returns `ok`, or before writing anything: `upgrade`, `resdup`, `gone`
/// (no such resource), `unbound` (nothing to unbind).
const POLICY_LUA: &str = r"
if redis.call('EXISTS', KEYS[5]) == 0 then return 'upgrade' end
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 1 then return 'resdup' end
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if ARGV[1] == 'bind' then
  redis.call('HSET', KEYS[6], ARGV[2], ARGV[3])
elseif redis.call('HDEL', KEYS[6], ARGV[2]) == 0 then
  return 'unbound'
end
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[2], seq, ARGV[5])
redis.call('HSET', KEYS[3], ARGV[4], seq .. '@' .. KEYS[2])
return 'ok'
";

/// Sets the access bindings of a resource, logged as its update.
///
/// KEYS: 1 the resource's record, 2 its log, 3 `{p}:resopids`, 4 the
/// sequence counter, 5 the set-up mark, 6 `{p}:access`, then the records
/// of the subjects added. ARGV: 1 the resource's field (`<kind>:<id>`), 2
/// the bindings' JSON read (`''`: none), 3 the new JSON (`''`: none), 4
/// the log entry's id, 5 its JSON, 6 the subject count.
/// Returns `ok`, or before writing anything: `upgrade`, `resdup`, `gone`,
/// `subject:<i>` (the i-th subject does not exist), `changed` (the
/// bindings differ from what was read: read again).
const ACCESS_LUA: &str = r"
if redis.call('EXISTS', KEYS[5]) == 0 then return 'upgrade' end
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 1 then return 'resdup' end
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
for i = 1, tonumber(ARGV[6]) do
  if redis.call('EXISTS', KEYS[6 + i]) == 0 then return 'subject:' .. i end
end
if (redis.call('HGET', KEYS[6], ARGV[1]) or '') ~= ARGV[2] then return 'changed' end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[6], ARGV[1])
else
  redis.call('HSET', KEYS[6], ARGV[1], ARGV[3])
end
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[2], seq, ARGV[5])
redis.call('HSET', KEYS[3], ARGV[4], seq .. '@' .. KEYS[2])
return 'ok'
";

/// The resource scripts, loaded once.
struct ResourceScripts {
    commit: Script,
    ensure: Script,
    policy: Script,
    access: Script,
}

static SCRIPTS: LazyLock<ResourceScripts> = LazyLock::new(|| ResourceScripts {
    commit: change_script(COMMIT_LUA),
    ensure: Script::new(ENSURE_LUA),
    policy: change_script(POLICY_LUA),
    access: change_script(ACCESS_LUA),
});

/// The field of a resource's access bindings in `{p}:access`:
/// `<kind>:<id>`.
fn access_field(on: &ResourceRef) -> String {
    format!("{}:{}", on.kind().as_str(), on.id())
}

/// The field of a binding in `{p}:policies`: `<kind>:<id>:<template>`
/// (the prefix up to the template is [`policy_prefix`]).
fn policy_field(on: &ResourceRef, template: &str) -> String {
    format!("{}{template}", policy_prefix(on))
}

/// `<kind>:<id>:`, the prefix of every binding on `on`.
fn policy_prefix(on: &ResourceRef) -> String {
    format!("{}:{}:", on.kind().as_str(), on.id())
}

/// A resource log entry as stored (JSON, a member of `{p}:resops:…`).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredOperation {
    id: OperationId,
    kind: ResourceOperationKind,
    actor: Actor,
    created_at: Timestamp,
    response: Option<Resource>,
}

/// A record as read: its stored JSON and index fields.
struct Stored {
    json: String,
    resource: Resource,
    parent: String,
    scope: String,
}

/// What a commit's script is given, read before it (see [`COMMIT_LUA`]).
struct Plan {
    /// KEYS[6]: the parent's record (create) or the children's by-id index
    /// (delete), else the record.
    slot6: String,
    /// KEYS[7]: the account's key index (a service account's delete), else
    /// the record.
    slot7: String,
    /// The stored JSON the record must still hold (update, delete).
    expected: String,
    /// The new JSON (create, update).
    json: String,
    old_name: String,
    new_name: String,
    /// ARGV[7].
    mode: String,
    /// The `parent` and `scope` fields.
    parent: String,
    scope: String,
    /// The resource as the change leaves it.
    left: Option<Resource>,
    /// The keys a service account's delete deletes, in id order.
    keys_gone: Vec<KeyId>,
}

/// What one attempt of a commit came to.
enum Attempt {
    Done(ResourceCommit),
    /// Something changed since it was read: again.
    Again,
    /// The store is not set up: set it up, then again.
    SetUp,
}

/// The short name of a listing in index keys.
fn listing_tag(listing: &ResourceListing) -> &'static str {
    match listing {
        ResourceListing::Clouds(_) => "clouds",
        ResourceListing::Folders(_) => "folders",
        ResourceListing::ServiceAccounts(_) => "accounts",
        ResourceListing::ServiceAccountsOfCloud(_) => "cloudaccounts",
        _ => "organizations",
    }
}

/// The error for a stored resource `what` that does not decode.
fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("a stored resource {what} does not decode"))
}

/// `value` as JSON.
fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|_| StoreError::Corrupt("a resource does not serialise".to_owned()))
}

/// The listings a resource is in, given its `parent` and `scope` fields:
/// the first is where its name is unique.
fn listings_of(kind: ResourceKind, parent: &str, scope: &str) -> Result<Vec<ResourceListing>, StoreError> {
    let id = |text: &str| ResourceId::new(text).map_err(|_| corrupt("parent"));
    Ok(match kind {
        ResourceKind::Cloud => vec![ResourceListing::Clouds(id(parent)?)],
        ResourceKind::Folder => vec![ResourceListing::Folders(id(parent)?)],
        ResourceKind::ServiceAccount => {
            vec![ResourceListing::ServiceAccountsOfCloud(id(scope)?), ResourceListing::ServiceAccounts(id(parent)?)]
        }
        _ => vec![ResourceListing::Organizations],
    })
}

/// The listing of the children of `target`, if it can have any.
fn children_of(target: &ResourceRef) -> Option<(ResourceListing, ResourceKind)> {
    match target {
        ResourceRef::Organization(id) => Some((ResourceListing::Clouds(*id), ResourceKind::Cloud)),
        ResourceRef::Cloud(id) => Some((ResourceListing::Folders(*id), ResourceKind::Folder)),
        ResourceRef::Folder(id) => Some((ResourceListing::ServiceAccounts(*id), ResourceKind::ServiceAccount)),
        _ => None,
    }
}

/// `name\0id`: a member of a by-name index.
fn by_name_member(name: &str, id: &str) -> String {
    format!("{name}\0{id}")
}

/// `sa-` and 16 random hex digits: the name of an earlier account whose id
/// is not a valid name, as the SQL migration names it.
fn generated_name() -> Result<ResourceName, StoreError> {
    let mut bytes = [0u8; 8];
    crate::random::fill_random(&mut bytes).map_err(ResourceError::from)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    ResourceName::new(&format!("sa-{hex}")).map_err(StoreError::from)
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// `{p}:<name>`.
    fn res_name(&self, name: &str) -> String {
        format!("{{{}}}:{name}", self.prefix)
    }

    /// `{p}:res:<kind>:<id>`: a resource's record.
    fn res_key(&self, kind: ResourceKind, id: &str) -> String {
        format!("{{{}}}:res:{}:{id}", self.prefix, kind.as_str())
    }

    /// `{p}:resops:<kind>:<id>`: a resource's operations log.
    fn res_ops_key(&self, target: &ResourceRef) -> String {
        format!("{{{}}}:resops:{}:{}", self.prefix, target.kind().as_str(), target.id())
    }

    /// `{p}:resources:built`: the set-up mark.
    fn res_mark(&self) -> String {
        self.res_name("resources:built")
    }

    /// The by-name and by-id indexes of a listing:
    /// `{p}:resix:<listing>:<parent>:name` and `…:id` (no parent part for
    /// organizations).
    fn index_keys(&self, listing: &ResourceListing) -> [String; 2] {
        let tag = listing_tag(listing);
        let base = match listing.parent() {
            Some(parent) => format!("{{{}}}:resix:{tag}:{}", self.prefix, parent.id()),
            None => format!("{{{}}}:resix:{tag}", self.prefix),
        };
        [format!("{base}:name"), format!("{base}:id")]
    }

    /// Sets the store up if its mark is missing: see the module docs.
    ///
    /// # Errors
    /// The store's error.
    pub(super) async fn set_up_resources(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mark = self.res_mark();
        let built: bool =
            timed(self.timeout, async { cmd("EXISTS").arg(&mark).query_async(&mut conn).await.map_err(redis_error) })
                .await?;
        if built { Ok(()) } else { self.upgrade_resources().await }
    }

    /// Writes the defaults and the accounts of earlier keys (what is
    /// missing of them), then sets the mark. Each step is bounded by the
    /// store timeout.
    async fn upgrade_resources(&self) -> Result<(), StoreError> {
        let now = Timestamp::now();
        for seed in [
            Resource::Organization(Organization::default_at(now)),
            Resource::Cloud(Cloud::default_at(now)),
            Resource::Folder(Folder::default_at(now)),
        ] {
            let (parent, scope) = match &seed {
                Resource::Cloud(c) => (c.organization_id.to_string(), c.organization_id.to_string()),
                Resource::Folder(f) => (f.cloud_id.to_string(), f.cloud_id.to_string()),
                _ => (String::new(), String::new()),
            };
            self.ensure(&seed, None, &parent, &scope).await?;
        }
        let mut conn = self.conn.clone();
        let account_prefix = self.res_name("sa:");
        let pattern = format!("{account_prefix}*");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = timed(self.timeout, async {
                scan(cursor, &pattern, 1000).query_async(&mut conn).await.map_err(redis_error)
            })
            .await?;
            // Not an account id: not an index this store wrote.
            let accounts: Vec<ServiceAccountId> =
                keys.iter().filter_map(|key| ServiceAccountId::new(key.strip_prefix(&account_prefix)?).ok()).collect();
            for (account, created) in self.first_keys(&mut conn, &accounts).await? {
                self.upgrade_account(&account, created).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mark = self.res_mark();
        timed(self.timeout, async {
            cmd("SET").arg(&mark).arg("1").query_async::<()>(&mut conn).await.map_err(redis_error)
        })
        .await
    }

    /// Of `accounts`, those that are no service account yet and have keys,
    /// each with the creation time of its earliest key (three pipelines).
    async fn first_keys(
        &self,
        conn: &mut C,
        accounts: &[ServiceAccountId],
    ) -> Result<Vec<(ServiceAccountId, i64)>, StoreError> {
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        timed(self.timeout, async {
            let mut p = pipe();
            for a in accounts {
                p.cmd("EXISTS").arg(self.res_key(ResourceKind::ServiceAccount, a.as_str()));
            }
            let made: Vec<bool> = p.query_async(conn).await.map_err(redis_error)?;
            let todo: Vec<&ServiceAccountId> =
                accounts.iter().zip(made).filter_map(|(a, made)| (!made).then_some(a)).collect();
            if todo.is_empty() {
                return Ok(Vec::new());
            }
            let mut p = pipe();
            for a in &todo {
                p.cmd("ZRANGE").arg(self.account_key(a)).arg(0).arg(-1);
            }
            let keys: Vec<Vec<String>> = p.query_async(conn).await.map_err(redis_error)?;
            let mut p = pipe();
            for id in keys.iter().flatten() {
                p.cmd("HGET").arg(self.res_name(&format!("key:{id}"))).arg("created_at");
            }
            let times: Vec<Option<String>> = if keys.iter().all(Vec::is_empty) {
                Vec::new()
            } else {
                p.query_async(conn).await.map_err(redis_error)?
            };
            let mut times = times.into_iter();
            let mut out = Vec::new();
            for (a, ids) in todo.into_iter().zip(&keys) {
                let first = times.by_ref().take(ids.len()).flatten().filter_map(|t| t.parse::<i64>().ok()).min();
                // No key left: no account, as the SQL migration makes none.
                if let Some(first) = first {
                    out.push((a.clone(), first));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Makes an account of `account`, whose keys an earlier release wrote
    /// (the earliest at `created`, unix nanoseconds), in the default folder
    /// unless it exists.
    async fn upgrade_account(&self, account: &ServiceAccountId, created: i64) -> Result<(), StoreError> {
        let folder = ResourceId::default_folder();
        let sa = |name: ResourceName| {
            Resource::ServiceAccount(ServiceAccount::new(
                account.clone(),
                folder,
                Timestamp::from_unix_nanos(created),
                name,
            ))
        };
        for _ in 0..CAS_ATTEMPTS {
            let fallback = sa(generated_name()?);
            let first = match ResourceName::new(account.as_str()) {
                Ok(name) => sa(name),
                Err(_) => sa(generated_name()?),
            };
            if self.ensure(&first, Some(&fallback), DEFAULT_FOLDER_ID, DEFAULT_CLOUD_ID).await? {
                return Ok(());
            }
        }
        Err(StoreError::unavailable(format!("no free name for service account {account} in the default cloud")))
    }

    /// Writes `resource` (or `fallback`, under its name, where the name is
    /// taken) with `parent` and `scope` fields unless it exists
    /// ([`ENSURE_LUA`]). `false` if both names are taken.
    async fn ensure(
        &self,
        resource: &Resource,
        fallback: Option<&Resource>,
        parent: &str,
        scope: &str,
    ) -> Result<bool, StoreError> {
        let target = resource.reference();
        let record = self.res_key(target.kind(), target.id());
        let parent_key = match resource.parent() {
            Some(p) => self.res_key(p.kind(), p.id()),
            None => record.clone(),
        };
        let listings = listings_of(target.kind(), parent, scope)?;
        let mut inv = SCRIPTS.ensure.prepare_invoke();
        inv.key(&record).key(&parent_key);
        for l in &listings {
            let [name, id] = self.index_keys(l);
            inv.key(name).key(id);
        }
        inv.arg(target.id()).arg(resource.name().as_str()).arg(to_json(resource)?);
        match fallback {
            Some(f) => inv.arg(f.name().as_str()).arg(to_json(f)?),
            None => inv.arg("").arg(""),
        };
        inv.arg(parent).arg(scope).arg(listings.len()).arg(u8::from(resource.parent().is_some()));
        let mut conn = self.conn.clone();
        let reply: Value =
            timed(self.timeout, async { inv.invoke_async(&mut conn).await.map_err(redis_error) }).await?;
        match reply_text(reply)?.as_str() {
            "ok" | "exists" | "parent" => Ok(true),
            "taken" => Ok(false),
            _ => Err(StoreError::Corrupt("redis returned an unexpected script reply".to_owned())),
        }
    }

    /// The stored record of `target`, and whether the store is set up.
    async fn read_record(&self, conn: &mut C, target: &ResourceRef) -> Result<(bool, Option<Stored>), StoreError> {
        let mut p = pipe();
        p.cmd("EXISTS").arg(self.res_mark());
        p.cmd("HMGET").arg(self.res_key(target.kind(), target.id())).arg(&["json", "parent", "scope"][..]);
        let (built, fields): (bool, Vec<Option<String>>) = p.query_async(conn).await.map_err(redis_error)?;
        let mut fields = fields.into_iter();
        let (Some(json), parent, scope) = (fields.next().flatten(), fields.next().flatten(), fields.next().flatten())
        else {
            return Ok((built, None));
        };
        let resource = decode_resource(&json)?;
        if resource.reference() != *target {
            return Err(corrupt("record"));
        }
        Ok((
            built,
            Some(Stored { json, resource, parent: parent.unwrap_or_default(), scope: scope.unwrap_or_default() }),
        ))
    }

    /// Sets each service account's `last_authenticated_at`: the latest
    /// `last_used_at` of its keys (two pipelines, whatever the count).
    async fn with_last_use(&self, conn: &mut C, resources: &mut [Resource]) -> Result<(), StoreError> {
        let accounts: Vec<usize> = resources
            .iter()
            .enumerate()
            .filter_map(|(i, r)| matches!(r, Resource::ServiceAccount(_)).then_some(i))
            .collect();
        if accounts.is_empty() {
            return Ok(());
        }
        let mut p = pipe();
        for &i in &accounts {
            if let Resource::ServiceAccount(sa) = &resources[i] {
                p.cmd("ZRANGE").arg(self.account_key(&sa.id)).arg(0).arg(-1);
            }
        }
        let keys: Vec<Vec<String>> = p.query_async(conn).await.map_err(redis_error)?;
        let mut p = pipe();
        let mut count = 0;
        for id in keys.iter().flatten() {
            p.cmd("HGET").arg(self.res_name(&format!("key:{id}"))).arg("last_used_at");
            count += 1;
        }
        let times: Vec<Option<String>> =
            if count == 0 { Vec::new() } else { p.query_async(conn).await.map_err(redis_error)? };
        let mut times = times.into_iter();
        for (&i, ids) in accounts.iter().zip(&keys) {
            let mut latest: Option<i64> = None;
            for t in times.by_ref().take(ids.len()).flatten() {
                let t = t
                    .parse::<i64>()
                    .map_err(|_| StoreError::Corrupt("field `last_used_at` is not an integer".into()))?;
                latest = latest.max(Some(t));
            }
            if let Resource::ServiceAccount(sa) = &mut resources[i] {
                sa.last_authenticated_at = latest.map(Timestamp::from_unix_nanos);
            }
        }
        Ok(())
    }

    /// [`KeyStore::commit_resource`](crate::KeyStore::commit_resource).
    pub(super) async fn commit_resource_redis(
        &self,
        change: ResourceChange,
        log: &ResourceLogEntry,
    ) -> Result<ResourceCommit, StoreError> {
        let target = change.target();
        if let ResourceChange::BindAccessPolicy { binding, .. } = &change {
            crate::resource::check_policy_change(&target, Some(binding))?;
        }
        if let ResourceChange::UnbindAccessPolicy { .. } = &change {
            crate::resource::check_policy_change(&target, None)?;
        }
        for _ in 0..CAS_ATTEMPTS {
            let attempt = match &change {
                ResourceChange::BindAccessPolicy { binding, .. } => {
                    let params = to_json(&binding.parameters)?;
                    self.commit_policy(&target, &binding.access_policy_template_id, Some(params), log).await?
                }
                ResourceChange::UnbindAccessPolicy { template_id, .. } => {
                    self.commit_policy(&target, template_id, None, log).await?
                }
                ResourceChange::UpdateAccessBindings { deltas, replace, .. } => {
                    self.commit_access(&target, deltas, *replace, log).await?
                }
                _ => timed(self.timeout, self.commit_attempt(&change, log)).await?,
            };
            match attempt {
                Attempt::Done(commit) => return Ok(commit),
                Attempt::Again => {}
                Attempt::SetUp => self.upgrade_resources().await?,
            }
        }
        Err(StoreError::unavailable(format!("{target} is being changed concurrently; try again")))
    }

    /// What `change` depends on, read from the store; `None` if the store
    /// is not set up.
    async fn plan(&self, conn: &mut C, change: &ResourceChange) -> Result<Option<Plan>, StoreError> {
        let target = change.target();
        let record = self.res_key(target.kind(), target.id());
        let mut plan = Plan {
            slot6: record.clone(),
            slot7: record,
            expected: String::new(),
            json: String::new(),
            old_name: String::new(),
            new_name: String::new(),
            mode: String::new(),
            parent: String::new(),
            scope: String::new(),
            left: None,
            keys_gone: Vec::new(),
        };
        match change {
            ResourceChange::Create(resource) => {
                let resource = resource.clone().as_written();
                match &resource {
                    Resource::Organization(_) => {}
                    Resource::Cloud(c) => {
                        plan.mode = "-".to_owned();
                        (plan.parent, plan.scope) = (c.organization_id.to_string(), c.organization_id.to_string());
                    }
                    Resource::Folder(f) => {
                        plan.mode = "-".to_owned();
                        (plan.parent, plan.scope) = (f.cloud_id.to_string(), f.cloud_id.to_string());
                    }
                    Resource::ServiceAccount(sa) => {
                        // Its name is unique in its folder's cloud.
                        let mut p = pipe();
                        p.cmd("EXISTS").arg(self.res_mark());
                        p.cmd("HGET").arg(self.res_key(ResourceKind::Folder, sa.folder_id.as_str())).arg("parent");
                        let (built, cloud): (bool, Option<String>) = p.query_async(conn).await.map_err(redis_error)?;
                        if !built {
                            return Ok(None);
                        }
                        let cloud = cloud.ok_or_else(|| ResourceError::ParentNotFound {
                            kind: ResourceKind::Folder,
                            id: sa.folder_id.to_string(),
                        })?;
                        // The script checks the folder is still in it.
                        (plan.mode, plan.parent, plan.scope) = (cloud.clone(), sa.folder_id.to_string(), cloud);
                    }
                }
                if let Some(p) = resource.parent() {
                    plan.slot6 = self.res_key(p.kind(), p.id());
                }
                plan.json = to_json(&resource)?;
                plan.new_name = resource.name().as_str().to_owned();
                plan.left = Some(resource);
            }
            ResourceChange::Update { target, patch } => {
                let (built, stored) = self.read_record(conn, target).await?;
                if !built {
                    return Ok(None);
                }
                let stored = stored.ok_or_else(|| target.not_found())?;
                let new = stored.resource.clone().patched(patch)?;
                plan.json = to_json(&new)?;
                plan.old_name = stored.resource.name().as_str().to_owned();
                plan.new_name = new.name().as_str().to_owned();
                (plan.expected, plan.parent, plan.scope) = (stored.json, stored.parent, stored.scope);
                plan.left = Some(new);
            }
            ResourceChange::Delete(target) => {
                let (built, stored) = self.read_record(conn, target).await?;
                if !built {
                    return Ok(None);
                }
                let stored = stored.ok_or_else(|| target.not_found())?;
                if let Some((children, _)) = children_of(target) {
                    plan.slot6 = self.index_keys(&children)[1].clone();
                    plan.mode = "c".to_owned();
                } else if let ResourceRef::ServiceAccount(account) = target {
                    // Its keys, which the script checks are still these.
                    plan.slot7 = self.account_key(account);
                    let ids: Vec<String> =
                        cmd("ZRANGE").arg(&plan.slot7).arg(0).arg(-1).query_async(conn).await.map_err(redis_error)?;
                    plan.keys_gone = ids
                        .iter()
                        .map(|id| {
                            KeyId::parse(id)
                                .map_err(|_| StoreError::Corrupt("an account index member is not a key id".into()))
                        })
                        .collect::<Result<_, _>>()?;
                    plan.keys_gone.sort();
                    plan.mode = "k".to_owned();
                }
                plan.old_name = stored.resource.name().as_str().to_owned();
                (plan.expected, plan.parent, plan.scope) = (stored.json, stored.parent, stored.scope);
            }
            // Written by `commit_policy` and `commit_access`, never planned.
            ResourceChange::BindAccessPolicy { .. }
            | ResourceChange::UnbindAccessPolicy { .. }
            | ResourceChange::UpdateAccessBindings { .. } => {
                return Err(StoreError::Corrupt("a policy change reached the resource plan".to_owned()));
            }
        }
        Ok(Some(plan))
    }

    /// One read of what `change` depends on ([`Self::plan`]) and one
    /// script ([`COMMIT_LUA`]).
    async fn commit_attempt(&self, change: &ResourceChange, log: &ResourceLogEntry) -> Result<Attempt, StoreError> {
        let mut conn = self.conn.clone();
        let target = change.target();
        let kind = change.operation_kind();
        let Some(plan) = self.plan(&mut conn, change).await? else { return Ok(Attempt::SetUp) };
        let Plan { slot6, slot7, expected, json, old_name, new_name, mode, parent, scope, left, keys_gone } = plan;
        let record = self.res_key(target.kind(), target.id());
        let listings = listings_of(target.kind(), &parent, &scope)?;
        let stored_op = StoredOperation {
            id: log.id,
            kind,
            actor: log.actor.clone(),
            created_at: log.created_at,
            response: left.clone(),
        };
        let mut call = Call::default()
            .key(&record)
            .key(self.res_ops_key(&target))
            .key(self.res_name("resopids"))
            .key(self.res_name("resseq"))
            .key(self.res_mark())
            .key(slot6)
            .key(slot7)
            .key(&*self.digests)
            .key(&*self.ext_index);
        for l in &listings {
            let [name, id] = self.index_keys(l);
            call = call.key(name).key(id);
        }
        for k in &keys_gone {
            call = call.key(self.record_key(k));
        }
        call = call.key(self.res_name("policies")).key(self.res_name("access"));
        call = call
            .arg(match kind {
                ResourceOperationKind::Create => "create",
                ResourceOperationKind::Update => "update",
                _ => "delete",
            })
            .arg(target.id())
            .arg(expected)
            .arg(json)
            .arg(old_name)
            .arg(new_name.clone())
            .arg(mode)
            .arg(log.id.as_str())
            .arg(to_json(&stored_op)?)
            .arg(parent)
            .arg(scope)
            .arg(listings.len().to_string())
            .arg(keys_gone.len().to_string());
        for k in &keys_gone {
            call = call.arg(k.as_str());
        }
        call = call.arg(policy_prefix(&target)).arg(access_field(&target)).arg(match &target {
            ResourceRef::ServiceAccount(account) if kind == ResourceOperationKind::Delete => account.as_str(),
            _ => "",
        });
        let (feed, entries, account) = match &target {
            ResourceRef::ServiceAccount(account) => {
                let feed: Vec<FeedChange> = keys_gone.iter().map(|k| FeedChange::new(*k, true)).collect();
                let entries = log.key_deletes(&keys_gone)?;
                (feed, entries, account.clone())
            }
            // No key entries: the account only names them.
            _ => (Vec::new(), Vec::new(), ServiceAccountId::from_valid(DEFAULT_FOLDER_ID)),
        };
        let log_args: LogArgs = self.log_args_of(&feed, &entries, &account, log.claim())?;
        let reply = self.run(&mut conn, &SCRIPTS.commit, &call, &log_args).await?;
        let id = target.id().to_owned();
        let refused = |e: ResourceError| Err(StoreError::Resource(e));
        match reply.as_str() {
            "ok" => Ok(Attempt::Done(ResourceCommit::new(left, keys_gone))),
            "upgrade" => Ok(Attempt::SetUp),
            "changed" | "keys" => Ok(Attempt::Again),
            "resdup" => Err(StoreError::DuplicateOperation(log.id)),
            "exists" => refused(ResourceError::AlreadyExists { kind: target.kind(), id }),
            "gone" => refused(target.not_found()),
            "taken" => {
                let name = ResourceName::new(&new_name).map_err(StoreError::from)?;
                refused(name_taken(target.kind(), &name))
            }
            "parent" => {
                let parent = match change {
                    ResourceChange::Create(r) => r.parent(),
                    _ => None,
                };
                let parent =
                    parent.ok_or_else(|| StoreError::Corrupt("redis returned an unexpected script reply".into()))?;
                refused(ResourceError::ParentNotFound { kind: parent.kind(), id: parent.id().to_owned() })
            }
            "children" => {
                let child = children_of(&target).map_or(ResourceKind::ServiceAccount, |(_, k)| k);
                refused(ResourceError::HasChildren { kind: target.kind(), id, child })
            }
            other => Err(log_reply(other, &log_args)),
        }
    }

    /// Runs `read` under the timeout (`None`: the store is not set up), and
    /// once more after setting the store up if it was not.
    async fn set_up_then<T, Fut>(&self, read: impl Fn() -> Fut) -> Result<T, StoreError>
    where
        Fut: std::future::Future<Output = Result<Option<T>, StoreError>>,
    {
        for _ in 0..2 {
            match timed(self.timeout, read()).await? {
                Some(found) => return Ok(found),
                None => self.upgrade_resources().await?,
            }
        }
        Err(StoreError::unavailable("the store's resources could not be set up"))
    }

    /// [`KeyStore::resource`](crate::KeyStore::resource).
    pub(super) async fn resource_redis(&self, target: &ResourceRef) -> Result<Option<Resource>, StoreError> {
        self.set_up_then(move || async move {
            let mut conn = self.conn.clone();
            let (built, stored) = self.read_record(&mut conn, target).await?;
            if !built {
                return Ok(None);
            }
            let mut found: Vec<Resource> = stored.map(|s| s.resource).into_iter().collect();
            self.with_last_use(&mut conn, &mut found).await?;
            Ok(Some(found.pop()))
        })
        .await
    }

    /// The resources of kind `kind` with these ids, in order, leaving out
    /// any deleted since the ids were read; with their last use.
    async fn resources_of(
        &self,
        conn: &mut C,
        kind: ResourceKind,
        ids: &[String],
    ) -> Result<Vec<Resource>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = pipe();
        for id in ids {
            p.cmd("HGET").arg(self.res_key(kind, id)).arg("json");
        }
        let found: Vec<Option<String>> = p.query_async(conn).await.map_err(redis_error)?;
        found.iter().flatten().map(|json| decode_resource(json)).collect()
    }

    /// [`KeyStore::list_resources`](crate::KeyStore::list_resources).
    pub(super) async fn list_resources_redis(
        &self,
        listing: &ResourceListing,
        order: ResourceOrder,
        page: PageRequest<ResourceCursor>,
    ) -> Result<ResourcePage, StoreError> {
        let limit = page.effective_limit();
        let [by_name, by_id] = self.index_keys(listing);
        let (index, min) = match (order, &page.after) {
            (ResourceOrder::Id, Some(c)) => (by_id, format!("({}", c.id)),
            (ResourceOrder::Id, None) => (by_id, "-".to_owned()),
            (_, Some(c)) => (by_name, format!("({}", by_name_member(&c.name, &c.id))),
            (_, None) => (by_name, "-".to_owned()),
        };
        let (index, min) = (&index, &min);
        self.set_up_then(move || async move {
            let mut conn = self.conn.clone();
            let mut p = pipe();
            p.cmd("EXISTS").arg(self.res_mark());
            p.add_command(zrange_by_lex(index, min, "+", limit + 1));
            let (built, members): (bool, Vec<String>) = p.query_async(&mut conn).await.map_err(redis_error)?;
            if !built {
                return Ok(None);
            }
            let ids: Vec<String> = members
                .into_iter()
                .map(|m| match m.split_once('\0') {
                    Some((_, id)) => id.to_owned(),
                    None => m,
                })
                .collect();
            let mut items = self.resources_of(&mut conn, listing.kind(), &ids).await?;
            let next = next_after(&mut items, limit, |last| last.map(ResourceCursor::after));
            self.with_last_use(&mut conn, &mut items).await?;
            Ok(Some(Page::new(items, next)))
        })
        .await
    }

    /// [`KeyStore::find_resource`](crate::KeyStore::find_resource): a lex
    /// range of the listing's by-name index.
    pub(super) async fn find_resource_redis(
        &self,
        listing: &ResourceListing,
        name: &ResourceName,
    ) -> Result<Option<Resource>, StoreError> {
        let [by_name, _] = self.index_keys(listing);
        let (min, max) = (format!("[{}\0", name.as_str()), format!("({}\u{1}", name.as_str()));
        let (by_name, min, max) = (&by_name, &min, &max);
        self.set_up_then(move || async move {
            let mut conn = self.conn.clone();
            let mut p = pipe();
            p.cmd("EXISTS").arg(self.res_mark());
            p.add_command(zrange_by_lex(by_name, min, max, 1));
            let (built, members): (bool, Vec<String>) = p.query_async(&mut conn).await.map_err(redis_error)?;
            if !built {
                return Ok(None);
            }
            let ids: Vec<String> =
                members.iter().filter_map(|m| m.split_once('\0').map(|(_, id)| id.to_owned())).collect();
            let mut found = self.resources_of(&mut conn, listing.kind(), &ids).await?;
            self.with_last_use(&mut conn, &mut found).await?;
            Ok(Some(found.pop()))
        })
        .await
    }

    /// Binds (`params` given) or unbinds the policy of `template` on
    /// `target` with [`POLICY_LUA`], logged as an update that leaves the
    /// resource as read.
    async fn commit_policy(
        &self,
        target: &ResourceRef,
        template: &str,
        params: Option<String>,
        log: &ResourceLogEntry,
    ) -> Result<Attempt, StoreError> {
        let mut conn = self.conn.clone();
        timed(self.timeout, async {
            let (built, stored) = self.read_record(&mut conn, target).await?;
            if !built {
                return Ok(Attempt::SetUp);
            }
            let stored = stored.ok_or_else(|| target.not_found())?;
            let left = Some(stored.resource);
            let (call, op) = self.update_call(target, "policies", log, &left)?;
            let call = call
                .arg(if params.is_some() { "bind" } else { "unbind" })
                .arg(policy_field(target, template))
                .arg(params.unwrap_or_default())
                .arg(log.id.as_str())
                .arg(op);
            let log_args = self.log_args_of(&[], &[], &ServiceAccountId::from_valid(DEFAULT_FOLDER_ID), log.claim())?;
            let reply = self.run(&mut conn, &SCRIPTS.policy, &call, &log_args).await?;
            match reply.as_str() {
                "ok" => Ok(Attempt::Done(ResourceCommit::new(left, Vec::new()))),
                "upgrade" => Ok(Attempt::SetUp),
                "resdup" => Err(StoreError::DuplicateOperation(log.id)),
                "gone" => Err(target.not_found().into()),
                "unbound" => Err(crate::resource::policy_not_bound(target, template).into()),
                other => Err(log_reply(other, &log_args)),
            }
        })
        .await
    }

    /// The first keys of a script that logs an update of `target` (its
    /// record, its log, `{p}:resopids`, the sequence counter, the set-up
    /// mark, then `{p}:<index>`), and the update's log entry, leaving
    /// `left`, as stored (JSON).
    fn update_call(
        &self,
        target: &ResourceRef,
        index: &str,
        log: &ResourceLogEntry,
        left: &Option<Resource>,
    ) -> Result<(Call, String), StoreError> {
        let op = StoredOperation {
            id: log.id,
            kind: ResourceOperationKind::Update,
            actor: log.actor.clone(),
            created_at: log.created_at,
            response: left.clone(),
        };
        let call = Call::default()
            .key(self.res_key(target.kind(), target.id()))
            .key(self.res_ops_key(target))
            .key(self.res_name("resopids"))
            .key(self.res_name("resseq"))
            .key(self.res_mark())
            .key(self.res_name(index));
        Ok((call, to_json(&op)?))
    }

    /// One attempt at changing the access bindings on `target` with
    /// [`ACCESS_LUA`]: the bindings read, the new ones computed, written if
    /// unchanged meanwhile.
    async fn commit_access(
        &self,
        target: &ResourceRef,
        deltas: &[AccessBindingDelta],
        replace: bool,
        log: &ResourceLogEntry,
    ) -> Result<Attempt, StoreError> {
        let mut conn = self.conn.clone();
        timed(self.timeout, async {
            let (built, stored) = self.read_record(&mut conn, target).await?;
            if !built {
                return Ok(Attempt::SetUp);
            }
            let stored = stored.ok_or_else(|| target.not_found())?;
            let field = access_field(target);
            let raw: Option<String> = cmd("HGET")
                .arg(self.res_name("access"))
                .arg(&field)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            let current: Vec<AccessBinding> = match &raw {
                Some(json) => serde_json::from_str(json).map_err(|_| corrupt("access bindings"))?,
                None => Vec::new(),
            };
            let next = crate::access_binding::apply(target, &current, deltas, replace).map_err(ResourceError::from)?;
            let added: Vec<&AccessBindingDelta> =
                deltas.iter().filter(|d| d.action == crate::access_binding::DeltaAction::Add).collect();
            let left = Some(stored.resource);
            let (mut call, op) = self.update_call(target, "access", log, &left)?;
            for d in &added {
                let subject = d.binding.subject.resource();
                call = call.key(self.res_key(subject.kind(), subject.id()));
            }
            call = call
                .arg(field)
                .arg(raw.unwrap_or_default())
                .arg(if next.is_empty() { String::new() } else { to_json(&next)? })
                .arg(log.id.as_str())
                .arg(op)
                .arg(added.len().to_string());
            let log_args = self.log_args_of(&[], &[], &ServiceAccountId::from_valid(DEFAULT_FOLDER_ID), log.claim())?;
            let reply = self.run(&mut conn, &SCRIPTS.access, &call, &log_args).await?;
            match reply.as_str() {
                "ok" => Ok(Attempt::Done(ResourceCommit::new(left, Vec::new()))),
                "upgrade" => Ok(Attempt::SetUp),
                "changed" => Ok(Attempt::Again),
                "resdup" => Err(StoreError::DuplicateOperation(log.id)),
                "gone" => Err(target.not_found().into()),
                other => match other.strip_prefix("subject:").and_then(|i| i.parse::<usize>().ok()) {
                    Some(i) if (1..=added.len()).contains(&i) => {
                        Err(ResourceError::from(crate::access_binding::AccessBindingError::SubjectNotFound(
                            added[i - 1].binding.subject.to_string(),
                        ))
                        .into())
                    }
                    _ => Err(log_reply(other, &log_args)),
                },
            }
        })
        .await
    }

    /// [`KeyStore::access_bindings`](crate::KeyStore::access_bindings): one
    /// `HGET` or `HGETALL` of `{p}:access` (bindings are few), ordered.
    pub(super) async fn access_bindings_redis(
        &self,
        on: Option<&ResourceRef>,
    ) -> Result<Vec<(ResourceRef, AccessBinding)>, StoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = timed(self.timeout, async {
            match on {
                Some(r) => {
                    let one: Option<String> = cmd("HGET")
                        .arg(self.res_name("access"))
                        .arg(access_field(r))
                        .query_async(&mut conn)
                        .await
                        .map_err(redis_error)?;
                    Ok(one.map(|json| (access_field(r), json)).into_iter().collect())
                }
                None => cmd("HGETALL").arg(self.res_name("access")).query_async(&mut conn).await.map_err(redis_error),
            }
        })
        .await?;
        let mut found = Vec::new();
        for (field, json) in all {
            let (kind, id) = field.split_once(':').ok_or_else(|| corrupt("access field"))?;
            let kind = ResourceKind::parse(kind).ok_or_else(|| corrupt("access kind"))?;
            let r = ResourceRef::parse(kind, id).map_err(|_| corrupt("access resource"))?;
            let bound: Vec<AccessBinding> = serde_json::from_str(&json).map_err(|_| corrupt("access bindings"))?;
            found.extend(bound.into_iter().map(|b| (r.clone(), b)));
        }
        found.sort();
        Ok(found)
    }

    /// [`KeyStore::access_policy_bindings`](crate::KeyStore::access_policy_bindings):
    /// one `HGETALL` of `{p}:policies` (bindings are few), ordered.
    pub(super) async fn access_policy_bindings_redis(
        &self,
        on: Option<&ResourceRef>,
    ) -> Result<Vec<(ResourceRef, AccessPolicyBinding)>, StoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = timed(self.timeout, async {
            cmd("HGETALL").arg(self.res_name("policies")).query_async(&mut conn).await.map_err(redis_error)
        })
        .await?;
        let mut found = Vec::new();
        for (field, params) in all {
            let mut parts = field.splitn(3, ':');
            let (Some(kind), Some(id), Some(template)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(corrupt("policy field"));
            };
            let kind = ResourceKind::parse(kind).ok_or_else(|| corrupt("policy kind"))?;
            let r = ResourceRef::parse(kind, id).map_err(|_| corrupt("policy resource"))?;
            if on.is_some_and(|o| *o != r) {
                continue;
            }
            let mut binding = AccessPolicyBinding::new(template);
            binding.parameters = serde_json::from_str(&params).map_err(|_| corrupt("policy parameters"))?;
            found.push((r, binding));
        }
        found.sort_by(|(a, x), (b, y)| (a, &x.access_policy_template_id).cmp(&(b, &y.access_policy_template_id)));
        Ok(found)
    }

    /// [`KeyStore::resource_operation`](crate::KeyStore::resource_operation):
    /// `{p}:resopids` names the entry's log and sequence number.
    pub(super) async fn resource_operation_redis(
        &self,
        id: &OperationId,
    ) -> Result<Option<ResourceOperation>, StoreError> {
        let mut conn = self.conn.clone();
        timed(self.timeout, async {
            let at: Option<String> = cmd("HGET")
                .arg(self.res_name("resopids"))
                .arg(id.as_str())
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            let Some(at) = at else { return Ok(None) };
            let (seq, log) = at.split_once('@').ok_or_else(|| corrupt("log entry index"))?;
            let prefix = format!("{{{}}}:resops:", self.prefix);
            let (kind, rid) = log
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split_once(':'))
                .ok_or_else(|| corrupt("log entry index"))?;
            let kind = ResourceKind::parse(kind).ok_or_else(|| corrupt("log entry index"))?;
            let target = ResourceRef::parse(kind, rid).map_err(|_| corrupt("log entry index"))?;
            let entries: Vec<String> =
                cmd("ZRANGEBYSCORE").arg(log).arg(seq).arg(seq).query_async(&mut conn).await.map_err(redis_error)?;
            let Some(json) = entries.first() else { return Ok(None) };
            let op: StoredOperation = serde_json::from_str(json).map_err(|_| corrupt("log entry"))?;
            Ok(Some(ResourceOperation {
                id: op.id,
                resource: target,
                kind: op.kind,
                actor: op.actor,
                created_at: op.created_at,
                response: op.response,
            }))
        })
        .await
    }

    /// [`KeyStore::resource_head`](crate::KeyStore::resource_head): `{p}:resseq`.
    pub(super) async fn resource_head_redis(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let head: Option<u64> = timed(self.timeout, async {
            cmd("GET").arg(self.res_name("resseq")).query_async(&mut conn).await.map_err(redis_error)
        })
        .await?;
        Ok(head.unwrap_or(0))
    }

    /// [`KeyStore::resource_operations`](crate::KeyStore::resource_operations):
    /// the resource's log, newest first by sequence number.
    pub(super) async fn resource_operations_redis(
        &self,
        target: &ResourceRef,
        page: PageRequest<OperationCursor>,
    ) -> Result<ResourceOperationPage, StoreError> {
        let limit = page.effective_limit();
        let mut conn = self.conn.clone();
        timed(self.timeout, async {
            let entries = super::redis::log_page(&mut conn, &self.res_ops_key(target), &page).await?;
            let mut items = entries
                .into_iter()
                .map(|(json, seq)| {
                    let op: StoredOperation = serde_json::from_str(&json).map_err(|_| corrupt("log entry"))?;
                    Ok((
                        seq,
                        ResourceOperation {
                            id: op.id,
                            resource: target.clone(),
                            kind: op.kind,
                            actor: op.actor,
                            created_at: op.created_at,
                            response: op.response,
                        },
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let next = next_after(&mut items, limit, |last| last.map(|(seq, _)| OperationCursor::new(*seq)));
            Ok(Page::new(items.into_iter().map(|(_, op)| op).collect(), next))
        })
        .await
    }
}

/// A record's JSON as a resource.
fn decode_resource(json: &str) -> Result<Resource, StoreError> {
    serde_json::from_str(json).map_err(|_| corrupt("record"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::operation::OperationKind;
    use crate::resource::DEFAULT_ORGANIZATION_ID;
    use crate::store::KeyStore as _;
    use crate::{CreateRequest, KeyKind, KeyManager, KeyRecord, ManualClock, Pepper, Peppers, VerifyError};

    /// A store on the live server under `prefix` that sets nothing up when
    /// made (no `connect`).
    fn lazy(prefix: &str) -> RedisStore {
        let url = std::env::var("API_KEYS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        RedisStore::builder(url).prefix(prefix).connect_lazy().unwrap()
    }

    /// `store` connected as a new node: `connect` sets it up.
    async fn connected(store: &RedisStore) -> RedisStore {
        let url = std::env::var("API_KEYS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        RedisStore::builder(url)
            .prefix(store.prefix())
            .connect()
            .await
            .unwrap_or_else(|e| panic!("Redis at 127.0.0.1:6379 unreachable ({e}); this test needs it"))
    }

    /// Runs `test` on a fresh prefix, which is purged after.
    async fn on_fresh_prefix<F, Fut>(test: F)
    where
        F: FnOnce(RedisStore) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let store = lazy(&format!("api-keys-test-{}", KeyId::generate().unwrap()));
        let outcome = tokio::spawn(test(store.clone())).await;
        store.purge().await.unwrap();
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    async fn exists(store: &RedisStore, key: &str) -> bool {
        cmd("EXISTS").arg(key).query_async(&mut store.conn.clone()).await.unwrap()
    }

    async fn zcard(store: &RedisStore, key: &str) -> u64 {
        cmd("ZCARD").arg(key).query_async(&mut store.conn.clone()).await.unwrap()
    }

    fn entry() -> ResourceLogEntry {
        ResourceLogEntry::new(OperationId::generate().unwrap(), Actor::new("ops").unwrap(), Timestamp::now())
    }

    fn account(id: &str) -> ResourceRef {
        ResourceRef::ServiceAccount(ServiceAccountId::new(id).unwrap())
    }

    /// Against the live server: keys written as the release before
    /// resources wrote them (key records and `{p}:sa:<id>` indexes through
    /// the unchanged key scripts, nothing set up) get their service
    /// accounts when three nodes start on the store at once (one through
    /// `connect`, two through their first resource call): in the default
    /// folder, named by their id where it fits and `sa-` + 16 hex digits
    /// otherwise, created with their earliest key, each exactly once; every
    /// key reads back equal and still verifies. After the mark no `SCAN`
    /// runs (a later key's account is not made) until the mark is deleted;
    /// a flushed store gets its defaults back.
    #[tokio::test]
    #[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
    async fn keys_of_the_release_before_resources_get_their_accounts() {
        on_fresh_prefix(|old| async move {
            let t0 = Timestamp::from_unix_seconds(1_800_000_000).unwrap();
            let clock = Arc::new(ManualClock::new(t0));
            let peppers = Peppers::single(Pepper::new(1, [7u8; 32]).unwrap());
            let manager = KeyManager::builder(Arc::new(old.clone()), peppers.clone(), crate::testing::scope_catalog())
                .clock(clock.clone())
                .build();
            let first = manager.create(CreateRequest::new("robot")).await.unwrap();
            clock.advance(Duration::from_secs(10));
            let second = manager.create(CreateRequest::new("robot")).await.unwrap();
            let ci = manager.create(CreateRequest::new("CI_Robot")).await.unwrap();
            clock.advance(Duration::from_secs(10));
            let foreign = crate::Secret::from("AQVNUPGRADEFOREIGNSECRET0123456789".to_owned());
            let imported = manager.import(CreateRequest::new("svc.deploy"), &foreign).await.unwrap();
            let gone = manager.create(CreateRequest::new("gone")).await.unwrap();
            manager.delete(&gone.api_key.id).await.unwrap();
            let used = Timestamp::from_unix_nanos(1_800_000_100_000_000_007);
            old.touch_last_used(&[(first.api_key.id, used)]).await.unwrap();
            let secrets = [
                (first.api_key.id, first.secret),
                (second.api_key.id, second.secret),
                (ci.api_key.id, ci.secret),
                (imported.id, foreign),
            ];
            let mut records = Vec::new();
            for (id, _) in &secrets {
                records.push(old.get(id).await.unwrap().unwrap());
            }
            // As the previous release left it: no resources at all.
            assert!(!exists(&old, &old.res_mark()).await);
            assert!(!exists(&old, &old.res_key(ResourceKind::Organization, DEFAULT_ORGANIZATION_ID)).await);

            // Three nodes start at once.
            let (a, b) = (lazy(old.prefix()), lazy(old.prefix()));
            let folder = ResourceListing::ServiceAccounts(ResourceId::default_folder());
            let page = || PageRequest::<ResourceCursor>::starting(100, None);
            let robot_ref = account("robot");
            let (new, found, listed) = tokio::join!(
                connected(&old),
                a.resource(&robot_ref),
                b.list_resources(&folder, ResourceOrder::Id, page()),
            );
            assert!(found.unwrap().is_some());
            assert!(listed.unwrap().items.len() <= 3);
            let listed = new.list_resources(&folder, ResourceOrder::Id, page()).await.unwrap().items;
            let accounts: Vec<ServiceAccount> = listed.into_iter().map(|r| r.into_service_account().unwrap()).collect();
            let ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
            assert_eq!(ids, ["CI_Robot", "robot", "svc.deploy"], "every account the keys name, once");
            let [ci_account, robot, svc] = &accounts[..] else { unreachable!() };
            assert_eq!(robot.name.as_str(), "robot", "a fitting id is its own name");
            assert_eq!(robot.created_at, t0, "created with its earliest key");
            assert_eq!(robot.last_authenticated_at, Some(used), "its keys' last use");
            assert_eq!(ci_account.created_at, t0.saturating_add(Duration::from_secs(10)));
            assert_eq!(svc.created_at, t0.saturating_add(Duration::from_secs(20)));
            for odd in [ci_account, svc] {
                let name = odd.name.as_str();
                let hex = name.strip_prefix("sa-").unwrap_or_else(|| panic!("{name}"));
                assert!(hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            }
            assert_ne!(ci_account.name, svc.name);
            for a in &accounts {
                assert_eq!(a.folder_id, ResourceId::default_folder());
            }
            let cloud = ResourceListing::ServiceAccountsOfCloud(ResourceId::default_cloud());
            let [by_name, by_id] = new.index_keys(&cloud);
            assert_eq!((zcard(&new, &by_name).await, zcard(&new, &by_id).await), (3, 3), "no account twice");
            let by_name = new.find_resource(&cloud, &svc.name).await.unwrap().unwrap();
            assert_eq!(by_name.reference(), account("svc.deploy"));
            for r in [
                ResourceRef::Organization(ResourceId::default_organization()),
                ResourceRef::Cloud(ResourceId::default_cloud()),
                ResourceRef::Folder(ResourceId::default_folder()),
            ] {
                assert_eq!(new.resource(&r).await.unwrap().unwrap().name().as_str(), "default");
            }
            // Every key is as it was, and verifies.
            let manager = KeyManager::builder(Arc::new(new.clone()), peppers, crate::testing::scope_catalog())
                .clock(clock.clone())
                .build();
            let verifier = manager.verifier().accept_imported(true).build();
            for ((id, secret), record) in secrets.iter().zip(&records) {
                assert_eq!(&new.get(id).await.unwrap().unwrap(), record, "{id} changed in the upgrade");
                let header = format!("Api-Key {}", secret.expose_secret());
                let p = verifier.verify(header.as_bytes(), None).await.unwrap_or_else(|e| panic!("{id}: {e:?}"));
                assert_eq!(p.key_id(), id);
            }

            // Set up: a key written now (by a node of the earlier release,
            // say) gets no account, since nothing scans any more.
            let late = manager.create(CreateRequest::new("late")).await.unwrap();
            assert!(new.resource(&account("late")).await.unwrap().is_none());
            let () = cmd("DEL").arg(new.res_mark()).query_async(&mut new.conn.clone()).await.unwrap();
            let again = new.resource(&account("late")).await.unwrap().unwrap().into_service_account().unwrap();
            assert_eq!((again.name.as_str(), again.created_at), ("late", late.api_key.created_at));
            let svc_again = new.resource(&account("svc.deploy")).await.unwrap().unwrap();
            assert_eq!(svc_again.name(), &svc.name, "a second upgrade changes nothing made");

            // An upgraded account is deleted with its keys.
            let done = new.commit_resource(ResourceChange::Delete(account("robot")), &entry()).await.unwrap();
            let mut robot_keys = vec![secrets[0].0, secrets[1].0];
            robot_keys.sort();
            assert_eq!(done.deleted_keys, robot_keys);
            for (id, secret) in &secrets[..2] {
                let header = format!("Api-Key {}", secret.expose_secret());
                let e = verifier.verify(header.as_bytes(), None).await.unwrap_err();
                assert!(matches!(e, VerifyError::UnknownKey(Some(k)) if k == *id), "{e:?}");
            }
            assert!(!exists(&new, &new.account_key(&ServiceAccountId::new("robot").unwrap())).await);

            // A flushed store gets its defaults back.
            new.purge().await.unwrap();
            let org = ResourceRef::Organization(ResourceId::default_organization());
            assert!(new.resource(&org).await.unwrap().is_some());
        })
        .await;
    }

    /// Against the live server: deleting a service account takes its keys
    /// out of every index the key scripts keep (the account's, the id,
    /// expiry, external-id and digest indexes), in the one script that logs
    /// the delete; `{p}:resseq` is the last sequence number given.
    #[tokio::test]
    async fn deleting_an_account_clears_its_keys_from_every_index() {
        on_fresh_prefix(|store| async move {
            store.set_up_resources().await.unwrap();
            let id: ServiceAccountId = ResourceId::generate().unwrap().into();
            let name = ResourceName::new("indexed").unwrap();
            let sa = ServiceAccount::new(id.clone(), ResourceId::default_folder(), Timestamp::now(), name);
            store.commit_resource(ResourceChange::Create(Resource::ServiceAccount(sa)), &entry()).await.unwrap();
            let mut native = KeyRecord::new(
                KeyId::parse("nnnnnnnnnnnnnnnnnnnn").unwrap(),
                id.clone(),
                KeyKind::Native,
                1,
                crate::Digest::from_bytes([1; 32]),
                crate::secret::MaskedKey::from_tail(b"abcdef"),
                Timestamp::now(),
            );
            native.expires_at = Some(Timestamp::now().saturating_add(Duration::from_secs(3600)));
            native.set_controls(
                crate::controls::KeyControls::new().external_id(crate::controls::ExternalId::new("cust_9").unwrap()),
            );
            let imported = KeyRecord {
                id: KeyId::parse("iiiiiiiiiiiiiiiiiiii").unwrap(),
                kind: KeyKind::Imported,
                digest: crate::Digest::from_bytes([2; 32]),
                controls: None,
                expires_at: None,
                ..native.clone()
            };
            store.insert(native.clone()).await.unwrap();
            store.insert(imported.clone()).await.unwrap();
            let mut conn = store.conn.clone();
            let [feed, expiry, ids] = ["feed", "expiry", "ids"].map(|k| store.res_name(k));
            assert_eq!(zcard(&store, &expiry).await, 1);
            assert_eq!(zcard(&store, &ids).await, 2);
            assert_eq!(zcard(&store, &store.ext_index).await, 1);
            let feed_before: u64 = cmd("XLEN").arg(&feed).query_async(&mut conn).await.unwrap();
            let done = store.commit_resource(ResourceChange::Delete(account(id.as_str())), &entry()).await.unwrap();
            assert_eq!(done.deleted_keys, [imported.id, native.id]);
            for k in [&native, &imported] {
                assert!(!exists(&store, &store.record_key(&k.id)).await);
                let log = store.operations(&k.id, PageRequest::starting(10, None)).await.unwrap().items;
                assert_eq!(log.first().map(|op| op.kind), Some(OperationKind::Delete));
            }
            assert!(!exists(&store, &store.account_key(&id)).await);
            assert_eq!((zcard(&store, &expiry).await, zcard(&store, &ids).await), (0, 0));
            assert_eq!(zcard(&store, &store.ext_index).await, 0);
            let digests: u64 = cmd("HLEN").arg(&*store.digests).query_async(&mut conn).await.unwrap();
            assert_eq!(digests, 0);
            let feed_after: u64 = cmd("XLEN").arg(&feed).query_async(&mut conn).await.unwrap();
            assert_eq!(feed_after, feed_before + 2, "a feed entry per key");
            let seq: String = cmd("GET").arg(store.res_name("resseq")).query_async(&mut conn).await.unwrap();
            assert_eq!(seq, "2", "the account's create and delete");
        })
        .await;
    }
}
