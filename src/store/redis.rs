//! The Redis [`KeyStore`] (feature `redis`), over redis-rs with a Tokio
//! [`ConnectionManager`] (reconnects on its own), held in a
//! [`RedisConnection`] that replaces it if it stops trying.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use api_keys::{KeyManager, Pepper, Peppers, RedisStore, ScopeCatalog};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::builder("redis://127.0.0.1:6379")
//!     .prefix("myapp")                     // every key is `{myapp}:…`
//!     .timeout(Duration::from_millis(500)) // per call; defaults to 2 s
//!     .connect()
//!     .await?;
//! let manager =
//!     KeyManager::builder(Arc::new(store), Peppers::single(Pepper::generate(1)?), ScopeCatalog::builder().build()?)
//!         .build();
//! # let _ = manager; Ok(()) }
//! ```
//!
//! Needs Redis 6.2 or later (streams with `XTRIM MINID`, `ZRANGE … BYSCORE`);
//! the tests run on 7.0.
//!
//! # Layout
//! With prefix `p`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:key:<id>` | hash | one record: the same fields as the SQL columns, times as decimal unix nanoseconds, scopes joined by `,`, the digest as base64; absent optional fields are absent hash fields |
//! | `{p}:sa:<service account>` | sorted set | the account's key ids, all with score 0, so `ZRANGEBYLEX (<after> + LIMIT 0 n` is id-ordered keyset pagination |
//! | `{p}:digests` | hash | base64 digest → id, for imported keys only |
//! | `{p}:ops:<id>` | sorted set | the key's operations log: each entry as JSON, scored by its sequence number; kept after the key is deleted |
//! | `{p}:opids` | hash | operation id → `seq@log`: its sequence number and its key's `ops:` set, so an id is logged once and found by id (ids logged before this format hold `seq` alone and are not found by id) |
//! | `{p}:opseq` | string | the last sequence number given to a log entry |
//! | `{p}:idem:<hex>` | string | one idempotency record (the hex: a SHA-256 of the actor and the key's stored form): `1 <created> <expires> <fingerprint hex> <operation id>`, expiring (`PX`) with the record; written by the commit script of its change |
//! | `{p}:extids` | sorted set | one member `<external id> <key id>` (space-separated; neither contains a space) per key whose controls name an external owner, all with score 0, so one owner's keys are a lexicographic range paged by id |
//! | `{p}:feed` | stream | the change feed (see [`feed`](super::feed)): one entry `c = <key id> <1 if deleted, else 0>` per key a change touched, appended by the change's script; pruned by age with `prune_feed` |
//! | `{p}:feed:epoch` | string | the feed's epoch: a random number set on the first feed read, so a flushed or replaced Redis is told apart |
//! | `{p}:feed:pruned` | string | the id of the newest feed entry pruned: a reader behind it must load everything again |
//! | `{p}:expiry` | sorted set | the expiry index: the id of each active key that expires, scored by its expiry in unix milliseconds |
//! | `{p}:expiry:built` | string | `1` once the expiry index holds every key (see below) |
//! | `{p}:ids` | sorted set | the id index: every key id, all with score 0, so the flood shield's full load pages through it in id order (`ZRANGEBYLEX`) |
//! | `{p}:ids:built` | string | `1` once the id index holds every key (built once, as the expiry index) |
//! | `{p}:res:<kind>:<id>` | hash | one resource ([`crate::resource`]; kind `organization`, `cloud`, `folder` or `serviceAccount`): `json` (the resource as written, as JSON), `name`, `parent` (its parent's id; `''` for an organization) and `scope` (the id of the resource its name is unique in: a cloud's organization, a folder's or a service account's cloud; `''` for an organization) |
//! | `{p}:resix:<listing>:name` | sorted set | a listing's members by name: `<name>\0<id>`, all with score 0, so `ZRANGEBYLEX` pages it in (name, id) order, and a name is a lexicographic range (`[<name>\0` to `(<name>\1`): the find by name and the uniqueness check. The listings: `organizations`, `clouds:<organization>`, `folders:<cloud>`, `accounts:<folder>`, `cloudaccounts:<cloud>` (a service account is in the last two, the last one being where its name is unique) |
//! | `{p}:resix:<listing>:id` | sorted set | the same listing by id: `<id>`, all with score 0; also what a delete checks for children |
//! | `{p}:resops:<kind>:<id>` | sorted set | a resource's operations log: each entry as JSON, scored by its sequence number; kept after the resource is deleted |
//! | `{p}:resopids` | hash | resource log entry id → `seq@log`, so an id is logged once |
//! | `{p}:resseq` | string | the last sequence number given to a resource log entry (one counter for the store) |
//! | `{p}:policies` | hash | the access policy bindings: field `<kind>:<id>:<template>`, value the parameters as a JSON object; written by the bind and unbind scripts with their log entry, and a deleted resource's dropped by its delete script |
//! | `{p}:resources:built` | string | `1` once the default organization, cloud and folder and the service accounts of keys written before resources are in place (see below) |
//!
//! ## Record layouts
//! A record hash has a layout version, per record (not per store, so a store
//! upgrades record by record and old records stay readable by old
//! binaries):
//!
//! | layout | marked by | holds |
//! |---|---|---|
//! | 1 | no `v` field | the fields above; the id in field `id` |
//! | 2 | `v = 2` | layout 1, the id moved to field `key_id`, and the optional `enabled` (`0` when disabled), `metadata`, `external_id`, `allowed_ips`, `rate_limits`, `credits_remaining`, `credits_refill_amount`, `credits_refill_period`, `credits_refill_at`, `credits_refilled_at` (encodings as in [`backend`](super::backend)); read, no longer written |
//! | 3 | `v = 3` | layout 2 with `metadata`, `allowed_ips` and `rate_limits` replaced by one field `controls`: every control without a column of its own, as one JSON object (see [`backend`](super::backend)), so a new control needs no new field |
//!
//! A record is written in layout 3 as soon as it is disabled or carries a
//! control (and stays so); an update of its enabled flag or controls moves a
//! layout 2 record to layout 3 in the same script. The id moves because the
//! layout 1 decoder ignores fields it does not know: it would read a
//! disabled key with an allow-list as an enabled key without one. Finding no
//! `id` it refuses the record as corrupt instead, which fails closed (a
//! test keeps that old decoder and shows it). The layout 2 decoder refuses
//! layout 3 by its number, and this decoder refuses any layout above 3 the
//! same way. Plain keys stay in layout 1, readable by every release.
//!
//! Credit counts stay exact: the spend script compares decimal strings (as
//! `touch_last_used` does) and decrements with `HINCRBY` (64-bit integers on
//! the server), reading the result back as text, so no count passes through
//! a Lua number (a double); counts go up to `Credits::MAX` as in every store.
//!
//! `list_expiring` reads the expiry index (`{p}:expiry`), kept by every
//! change script: O(keys due in the window) per page, whatever the number
//! of keys. A store written by a release before the index gets it built
//! once, by the first listing (a `SCAN` of the records), and marked
//! (`{p}:expiry:built`). Keys written after that by a node of the older
//! release (during a rolling upgrade) are not in it: delete the mark once
//! every node runs this release, and the next listing builds it again. The
//! id index (`{p}:ids`, read by `ids_after`) is built and marked
//! (`{p}:ids:built`) the same way, by the first `ids_after`.
//!
//! Resources are set up once per store, by [`RedisStoreBuilder::connect`]
//! or the first resource call: the defaults are written and every service
//! account the keys name (`{p}:sa:*`, one `SCAN`) becomes a service
//! account in the default folder, named by its id where the id is a valid
//! name (else `sa-` and 16 random hex digits, as the SQL migration names
//! it), created when its earliest key was; then `{p}:resources:built` is
//! set. Every resource call checks the mark and sets up first where it is
//! missing; each step writes only what is missing, so nodes starting
//! together agree. Keys written by a node of the older release after the
//! mark get no account until the mark is deleted (as for the indexes
//! above).
//!
//! # Atomicity, and why every key shares one hash tag
//! Redis Cluster hashes only the first `{…}` of a key name, so every key of a
//! store carries the hash tag `{p}` and lives in one slot. That is what lets
//! each write be a single Lua script over declared keys, atomic on a single
//! server and on Cluster alike:
//! - `insert`: checks the id and (imported) digest, then writes the hash, the
//!   account index entry and the digest index entry — or nothing;
//! - `reissue`: reads the old record, applies the shared
//!   [`apply_reissue`] rules, then one script re-checks that the fields the
//!   decision used (status, `replaced_by`, expiry) are unchanged, refuses a
//!   duplicate new id or digest, and writes the new record, both indexes and
//!   the old record's link and fate together. If the old record changed in
//!   between, nothing is written and the read is repeated, so a concurrent
//!   revoke or reissue turns into [`StoreError::Conflict`];
//! - `revoke` and `delete` are one script each (delete re-checks the account
//!   it read so the right index entry goes);
//! - `commit` runs the same script as the change's own method, wrapped so
//!   that it first refuses an operation id already logged and, once the
//!   change succeeded, appends the log entries — change and log in one
//!   script; an update is a script of its own that checks the rules of
//!   [`apply_update`](crate::store::apply_update) before it writes;
//! - every change script also appends its change-feed entries, so a
//!   change, its log entries and its feed entries land together or not at
//!   all; the feed is a stream whose ids (milliseconds, sequence) only grow;
//! - a note (`commit` of [`Change::Note`]) is the logged form of a script
//!   that only checks the key exists;
//! - `get_many` is one pipeline of `HGETALL`s;
//! - `spend_credits` is one script: refill if due, check and decrement;
//! - `commit_resource` is one script (wrapped as the key changes are):
//!   it checks the log entry id, the resource's id, parent, name (in the
//!   by-name index of its uniqueness scope) and children, and the record
//!   and key set as read, then writes the record, its listing indexes and
//!   its log entry (`{p}:resseq` gives the sequence number); a service
//!   account's delete also deletes its keys as `delete` does, with a log
//!   and a feed entry each. A service account's `last_authenticated_at`
//!   is read from its keys, never written;
//! - `touch_last_used` is one script for the whole batch, comparing the
//!   decimal nanosecond strings exactly (Lua numbers are doubles and would
//!   round them), so no time moves backwards.
//!
//! Per-key hash tags (`p:key:{<id>}`) would spread one store over the
//! cluster, but a reissue or insert touches the record, the account index and
//! the digest index, which would then sit in different slots, and no script
//! or `MULTI` may span slots: atomicity would be lost. To spread load across
//! shards, give independent tenants their own prefixes instead. (The layout is
//! Cluster-safe; this crate's tests run against a single server.)
//! [`RedisStore`] is generic over the connection, so a cluster connection can
//! be plugged in with [`RedisStore::from_connection`].
//!
//! # Failures
//! Every call is bounded by the store timeout and fails with
//! [`StoreError::Timeout`] after it. A write whose script was already sent
//! when the timeout fired may still have been applied; the caller sees a
//! failure either way and writes are safe to repeat or inspect. Driver errors
//! are [`StoreError::Unavailable`]; records that do not decode are
//! [`StoreError::Corrupt`]. After a lost connection the store reconnects on
//! its next calls, also when a reconnection attempt was refused (see
//! [`RedisConnection`]).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Script, ServerErrorKind, Value, cmd, pipe};

use super::backend::{
    ConfigError, ControlColumns, DEFAULT_TIMEOUT, Row, controls_json, join_scopes, legacy_controls_json, split_scopes,
    timed,
};
use super::feed::{FeedBreak, FeedChange, FeedPosition, FeedRead, entries_of, random_epoch};
use super::idempotency::{IdempotencyClaim, IdempotencyKey, IdempotencyRecord, hex};
use super::key_store::{KeyStore, OldKeyFate, OperationPage, Page, PageRequest, StoreError, apply_reissue};
use crate::clock::Timestamp;
use crate::controls::{CreditSpend, ExternalId, KeyControls};
use crate::digest::Digest;
use crate::operation::{Actor, Change, KeyUpdate, LogEntry, Operation, OperationCursor, OperationId};
use crate::record::{KeyKind, KeyRecord, ServiceAccountId};
use crate::token::KeyId;

/// The prefix used unless one is configured.
const DEFAULT_PREFIX: &str = "api-keys";

/// How often a reissue or delete re-reads a record that changed between its
/// read and its write before giving up with a conflict.
pub(super) const CAS_ATTEMPTS: usize = 5;

/// Exact comparison of decimal `i64` strings (Lua numbers are doubles).
const LUA_LESS: &str = r"
local function less(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then return na end
  if na then a, b = string.sub(b, 2), string.sub(a, 2) end
  if #a ~= #b then return #a < #b end
  return a < b
end
";

/// KEYS: record, account index, digest index, external-id index. ARGV: id,
/// digest or '', then field/value pairs. Returns 1, or 0 for a duplicate (nothing written).
const INSERT_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[2] ~= '' and redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[3], ARGV[2], ARGV[1]) end
local ext = redis.call('HGET', KEYS[1], 'external_id')
if ext then redis.call('ZADD', KEYS[4], 0, ext .. ' ' .. ARGV[1]) end
return 1
";

/// KEYS: old record, new record, new record's account index, digest index,
/// external-id index.
/// ARGV: expected old expiry or '', new id, new digest or '', old's new
/// status, old's new expiry or '' (unchanged), then the new record's
/// field/value pairs. Returns ok | gone | changed | dup.
const REISSUE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if redis.call('HGET', KEYS[1], 'status') ~= 'active'
  or redis.call('HEXISTS', KEYS[1], 'replaced_by') == 1
  or (redis.call('HGET', KEYS[1], 'expires_at') or '') ~= ARGV[1] then
  return 'changed'
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'dup' end
if ARGV[3] ~= '' and redis.call('HEXISTS', KEYS[4], ARGV[3]) == 1 then return 'dup' end
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
redis.call('ZADD', KEYS[3], 0, ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[4], ARGV[3], ARGV[2]) end
local ext = redis.call('HGET', KEYS[2], 'external_id')
if ext then redis.call('ZADD', KEYS[5], 0, ext .. ' ' .. ARGV[2]) end
redis.call('HSET', KEYS[1], 'replaced_by', ARGV[2], 'status', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'expires_at', ARGV[5]) end
return 'ok'
";

/// KEYS: record. Returns 1, or 0 if absent.
const REVOKE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'revoked')
return 1
";

/// KEYS: record, account index, digest index, external-id index. ARGV: id,
/// expected account. Returns 1, 0 if absent, -1 if the account differs
/// (re-read).
const DELETE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'service_account_id') ~= ARGV[2] then return -1 end
local ext = redis.call('HGET', KEYS[1], 'external_id')
if ext then redis.call('ZREM', KEYS[4], ext .. ' ' .. ARGV[1]) end
local kind = redis.call('HGET', KEYS[1], 'kind')
local digest = redis.call('HGET', KEYS[1], 'digest')
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if kind == 'imported' and digest and redis.call('HGET', KEYS[3], digest) == ARGV[1] then
  redis.call('HDEL', KEYS[3], digest)
end
return 1
";

/// KEYS: record. Returns 1, or 0 if absent; writes nothing (the logged form
/// of this script appends a note's log entries to an existing key).
const NOTE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return 1
";

/// KEYS: records. ARGV: the matching decimal times. Returns how many moved.
const TOUCH_LUA: &str = r"
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local cur = redis.call('HGET', key, 'last_used_at')
    if not cur or less(cur, ARGV[i]) then
      redis.call('HSET', key, 'last_used_at', ARGV[i])
      n = n + 1
    end
  end
end
return n
";

/// KEYS: record, external-id index. ARGV: set description (1/0),
/// description, set scopes (1/0), scopes, expiry mode (keep | none | set),
/// expiry, id, layout 3 (1/0), a count of field/expected value pairs, the
/// pairs (`''`: absent), then a count of field/value pairs to set, the
/// pairs, and the fields to delete. Returns ok | gone | revoked | reissued
/// | changed (an expected value differs: nothing written); checks
/// everything before writing, and moves the key in the external-id index if
/// its external id changed.
const UPDATE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if redis.call('HGET', KEYS[1], 'status') == 'revoked' then return 'revoked' end
if ARGV[5] ~= 'keep' and redis.call('HEXISTS', KEYS[1], 'replaced_by') == 1 then return 'reissued' end
local m = tonumber(ARGV[9])
for i = 0, m - 1 do
  if (redis.call('HGET', KEYS[1], ARGV[10 + 2 * i]) or '') ~= ARGV[11 + 2 * i] then return 'changed' end
end
local at = 10 + 2 * m
local old_ext = redis.call('HGET', KEYS[1], 'external_id')
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'description', ARGV[2]) end
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'scopes', ARGV[4]) end
if ARGV[5] == 'none' then redis.call('HDEL', KEYS[1], 'expires_at') end
if ARGV[5] == 'set' then redis.call('HSET', KEYS[1], 'expires_at', ARGV[6]) end
if ARGV[8] == '1' then
  if redis.call('HEXISTS', KEYS[1], 'v') == 0 then redis.call('HDEL', KEYS[1], 'id') end
  redis.call('HSET', KEYS[1], 'v', '3', 'key_id', ARGV[7])
end
local n = tonumber(ARGV[at])
for i = 0, n - 1 do redis.call('HSET', KEYS[1], ARGV[at + 1 + 2 * i], ARGV[at + 2 + 2 * i]) end
for i = at + 1 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
local new_ext = redis.call('HGET', KEYS[1], 'external_id')
if old_ext ~= new_ext then
  if old_ext then redis.call('ZREM', KEYS[2], old_ext .. ' ' .. ARGV[7]) end
  if new_ext then redis.call('ZADD', KEYS[2], 0, new_ext .. ' ' .. ARGV[7]) end
end
return 'ok'
";

/// KEYS: record. ARGV: cost (decimal), refill due (decimal unix nanos or
/// ''). Returns {'spent', left} | {'exhausted', available} | {'unlimited'} |
/// {'gone'}; counts as exact decimal text (see the module docs).
const SPEND_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local rem = redis.call('HGET', KEYS[1], 'credits_remaining')
if not rem then return {'unlimited'} end
local amount = redis.call('HGET', KEYS[1], 'credits_refill_amount')
local at = redis.call('HGET', KEYS[1], 'credits_refilled_at')
local refill = amount and ARGV[2] ~= '' and ((not at) or less(at, ARGV[2]))
local avail = rem
if refill then avail = amount end
if less(avail, ARGV[1]) then return {'exhausted', avail} end
if refill then redis.call('HSET', KEYS[1], 'credits_remaining', amount, 'credits_refilled_at', ARGV[2]) end
if ARGV[1] ~= '0' then redis.call('HINCRBY', KEYS[1], 'credits_remaining', '-' .. ARGV[1]) end
return {'spent', redis.call('HGET', KEYS[1], 'credits_remaining')}
";

/// Turns a change script into one that also appends log entries, in the
/// same script: the log's keys and arguments come first (KEYS: the entry-id
/// index, the sequence counter, one log per entry; ARGV: the entry count,
/// then id and JSON per entry), the change's own follow (the body sees them
/// as `K` and `A`). An entry id already logged returns `opdup:<i>` before
/// anything is written; after a successful change (`1` or `ok`) every entry
/// gets the next sequence number as its score. Returns the change's reply
/// as a string.
///
/// Idempotency claims follow the entries (KEYS: one record key per claim;
/// ARGV: the claim count, then value, claim time and time to live in
/// milliseconds per claim): a claim of a key whose record is live at the
/// claim's time (its expiry, the value's third word, is later) returns
/// `idem` before anything is written; after a successful change each
/// record is `SET` with its expiry (`PX`), replacing an expired one.
fn logged(body: &str) -> String {
    let body = body.replace("KEYS[", "K[").replace("ARGV", "A");
    format!(
        r"{LUA_LESS}
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2 + 2 * n])
local K = {{unpack(KEYS, 3 + n + m)}}
local A = {{unpack(ARGV, 3 + 2 * n + 3 * m)}}
for i = 1, n do
  if redis.call('HEXISTS', KEYS[1], ARGV[2 * i]) == 1 then return 'opdup:' .. i end
end
for j = 1, m do
  local cur = redis.call('GET', KEYS[2 + n + j])
  if cur then
    local exp = string.match(cur, '^1 %-?%d+ (%-?%d+) ')
    if (not exp) or less(ARGV[2 + 2 * n + 3 * j - 1], exp) then return 'idem' end
  end
end
local function change()
{body}
end
local r = tostring(change())
if r == '1' or r == 'ok' then
  for i = 1, n do
    local seq = redis.call('INCR', KEYS[2])
    redis.call('ZADD', KEYS[2 + i], seq, ARGV[2 * i + 1])
    redis.call('HSET', KEYS[1], ARGV[2 * i], seq .. '@' .. KEYS[2 + i])
  end
  for j = 1, m do
    local b = 2 + 2 * n + 3 * (j - 1)
    redis.call('SET', KEYS[2 + n + j], ARGV[b + 1], 'PX', ARGV[b + 3])
  end
end
return r
"
    )
}

/// Turns a (logged) change script into one that also appends the change's
/// feed entries and keeps the id and expiry indexes, in the same script:
/// KEYS[1] is the feed stream, KEYS[2] the expiry index, KEYS[3] the id
/// index, then the record of each changed key; ARGV[1] the entry count,
/// then one entry per changed key (`<key id> <1 if the key is gone, else
/// 0>`); the wrapped script sees the keys and arguments after these as its
/// own. After a successful change (`1` or `ok`) each entry is one stream
/// entry (`XADD * c <entry>`), so the stream id, which grows with every
/// entry, is the feed's sequence; each changed key joins or leaves the id
/// index; and it is put in the expiry index with its expiry in
/// milliseconds if it is active and expires, or taken out.
fn fed(body: &str) -> String {
    format!(
        r"local f = tonumber(ARGV[1])
local r = (function(KEYS, ARGV)
{body}
end)({{unpack(KEYS, 4 + f)}}, {{unpack(ARGV, 2 + f)}})
if r == '1' or r == 'ok' then
  for i = 1, f do
    redis.call('XADD', KEYS[1], '*', 'c', ARGV[1 + i])
    local id, gone = string.match(ARGV[1 + i], '^(%S+) (%d)$')
    if gone == '1' then
      redis.call('ZREM', KEYS[3], id)
    else
      redis.call('ZADD', KEYS[3], 0, id)
    end
    local row = redis.call('HMGET', KEYS[3 + i], 'status', 'expires_at')
    local ms = row[2] and string.match(row[2], '^(%d+)%d%d%d%d%d%d$')
    if row[1] == 'active' and row[2] then
      redis.call('ZADD', KEYS[2], tonumber(ms or '0'), id)
    else
      redis.call('ZREM', KEYS[2], id)
    end
  end
end
return r
"
    )
}

/// A change script as it runs: the change, its log entries and
/// idempotency records ([`logged`]) and its feed entries ([`fed`]).
pub(super) fn change_script(body: &str) -> Script {
    Script::new(&fed(&logged(body)))
}

/// KEYS: feed stream, epoch, pruned mark. ARGV: a fresh random epoch (kept
/// only if the store has none yet), the stream id to read after (`''`:
/// none, only the head), the entry count. Returns {epoch, last id, pruned
/// id, entries}: the last id is the newest entry's or the pruned mark
/// (`0-0` for an empty feed), entries are `{id, {'c', change}}` after the
/// given id, oldest first, all read in one script so they agree.
const FEED_READ_LUA: &str = r"
redis.call('SET', KEYS[2], ARGV[1], 'NX')
local epoch = redis.call('GET', KEYS[2])
local pruned = redis.call('GET', KEYS[3]) or '0-0'
local last = pruned
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if newest[1] then last = newest[1][1] end
local entries = {}
if ARGV[2] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+', 'COUNT', ARGV[3])
end
return {epoch, last, pruned, entries}
";

/// KEYS: feed stream, pruned mark. ARGV: a time in unix milliseconds, the
/// most entries to remove. Removes up to that many entries older than the
/// time, oldest first, and moves the pruned mark to the newest removed.
/// Returns how many were removed.
const FEED_PRUNE_LUA: &str = r"
local old = redis.call('XRANGE', KEYS[1], '-', '(' .. ARGV[1] .. '-0', 'COUNT', ARGV[2])
if #old == 0 then return 0 end
local newest = old[#old][1]
local ms, seq = string.match(newest, '^(%d+)-(%d+)$')
redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. (tonumber(seq) + 1))
redis.call('SET', KEYS[2], newest)
return #old
";

struct Scripts {
    insert: Script,
    reissue: Script,
    revoke: Script,
    delete: Script,
    update: Script,
    note: Script,
    touch: Script,
    spend: Script,
    feed_read: Script,
    feed_prune: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    insert: change_script(INSERT_LUA),
    reissue: change_script(REISSUE_LUA),
    revoke: change_script(REVOKE_LUA),
    delete: change_script(DELETE_LUA),
    update: change_script(UPDATE_LUA),
    note: change_script(NOTE_LUA),
    touch: Script::new(&format!("{LUA_LESS}{TOUCH_LUA}")),
    spend: Script::new(&format!("{LUA_LESS}{SPEND_LUA}")),
    feed_read: Script::new(FEED_READ_LUA),
    feed_prune: Script::new(FEED_PRUNE_LUA),
});

/// The keys and arguments of one script call.
#[derive(Default)]
pub(super) struct Call {
    keys: Vec<String>,
    args: Vec<String>,
}

impl Call {
    /// With one more key.
    pub(super) fn key(mut self, k: impl Into<String>) -> Self {
        self.keys.push(k.into());
        self
    }

    /// With one more argument.
    pub(super) fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    fn fields(mut self, fields: Vec<(&'static str, String)>) -> Self {
        for (f, v) in fields {
            self.args.push(f.to_owned());
            self.args.push(v);
        }
        self
    }
}

/// A script's reply as text (integers in decimal).
pub(super) fn reply_text(v: Value) -> Result<String, StoreError> {
    match v {
        Value::Int(i) => Ok(i.to_string()),
        Value::BulkString(b) => String::from_utf8(b).map_err(|_| corrupt_reply()),
        Value::SimpleString(s) => Ok(s),
        Value::Okay => Ok("OK".to_owned()),
        _ => Err(corrupt_reply()),
    }
}

fn corrupt_reply() -> StoreError {
    StoreError::Corrupt("redis returned a reply of an unexpected type".to_owned())
}

fn valid_prefix(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Maps a redis-rs error: a reply of the wrong shape is
/// [`StoreError::Corrupt`] (its text, which can quote the reply, is
/// dropped); everything else is [`StoreError::Unavailable`].
pub(super) fn redis_error(e: RedisError) -> StoreError {
    if e.kind() == ErrorKind::UnexpectedReturnType {
        StoreError::Corrupt("redis returned a reply of an unexpected type".to_owned())
    } else {
        StoreError::Unavailable(Box::new(e))
    }
}

/// The connection of a store made by [`RedisStoreBuilder`]: a
/// [`ConnectionManager`], replaced by a fresh one (same client, same
/// settings) when it stops reconnecting. Cheap to clone (shared).
///
/// A `ConnectionManager` reconnects by itself after I/O errors. But when a
/// reconnection attempt fails for another reason — authentication refused (a
/// rotated password, an ACL user disabled for a while), `-LOADING` while the
/// server starts, `-ERR max number of clients reached` — it keeps that failed
/// attempt and answers every later call with its error without trying again,
/// so the store would stay unavailable after the server is healthy. This
/// wrapper starts a new manager after any error other than an I/O error
/// (which the manager handles) or `NOSCRIPT` (which script invocation
/// handles); when several calls fail on the same manager it is replaced once.
/// The new manager connects on its next use.
#[derive(Clone)]
pub struct RedisConnection {
    shared: Arc<Renewing>,
}

struct Renewing {
    client: Client,
    config: ConnectionManagerConfig,
    /// How many times the manager was replaced, and the manager in use.
    current: RwLock<(u64, ConnectionManager)>,
}

impl std::fmt::Debug for RedisConnection {
    /// Omits the client, whose connection info may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection").field("renewals", &self.renewals()).finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// A renewing connection with default manager settings that connects on
    /// first use (for example a [`RedisBus`](crate::store::invalidation::RedisBus)
    /// publisher). Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// The driver's error when no Tokio runtime is available.
    pub fn lazy(client: Client) -> Result<Self, RedisError> {
        Self::new_lazy(client, ConnectionManagerConfig::new())
    }

    /// A connection that connects on first use. Must be called inside a
    /// Tokio runtime.
    fn new_lazy(client: Client, config: ConnectionManagerConfig) -> Result<Self, RedisError> {
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Self { shared: Arc::new(Renewing { client, config, current: RwLock::new((0, manager)) }) })
    }

    /// The connection manager in use now.
    #[must_use]
    pub fn manager(&self) -> ConnectionManager {
        self.checkout().1
    }

    /// How many times the connection manager was replaced.
    #[must_use]
    pub fn renewals(&self) -> u64 {
        self.checkout().0
    }

    fn checkout(&self) -> (u64, ConnectionManager) {
        let current = self.shared.current.read().unwrap_or_else(PoisonError::into_inner);
        (current.0, current.1.clone())
    }

    /// Replaces manager number `generation` after `error`, unless the error
    /// is one the manager or the caller handles, or it was replaced already.
    fn after_error(&self, generation: u64, error: &RedisError) {
        if error.is_io_error() || error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) {
            return;
        }
        let mut current = self.shared.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.0 != generation {
            return;
        }
        // Creating a lazy manager does no I/O; it fails only outside a runtime.
        if let Ok(fresh) =
            ConnectionManager::new_lazy_with_config(self.shared.client.clone(), self.shared.config.clone())
        {
            *current = (generation + 1, fresh);
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let (generation, mut manager) = self.checkout();
        Box::pin(async move {
            let result = manager.req_packed_command(cmd).await;
            if let Err(e) = &result {
                self.after_error(generation, e);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let (generation, mut manager) = self.checkout();
        Box::pin(async move {
            let result = manager.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &result {
                self.after_error(generation, e);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.checkout().1.get_db()
    }
}

/// Builds a [`RedisStore`] over a [`RedisConnection`]; see
/// [`RedisStore::builder`].
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStoreBuilder {
    /// Omits the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_prefix_and_timeout(f, "RedisStoreBuilder", &self.prefix, self.timeout)
    }
}

/// The `Debug` form of the builder and the store: the prefix and the
/// timeout only (never the URL or a connection).
fn debug_prefix_and_timeout(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    prefix: &str,
    timeout: Duration,
) -> std::fmt::Result {
    f.debug_struct(name).field("prefix", &prefix).field("timeout", &timeout).finish_non_exhaustive()
}

impl RedisStoreBuilder {
    /// The key prefix (`[A-Za-z0-9_.:-]{1,64}`); every key is `{prefix}:…`.
    /// Defaults to `api-keys`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long each call may take before it fails with
    /// [`StoreError::Timeout`]; also the connection and response timeout of
    /// the connection manager. Defaults to [`DEFAULT_TIMEOUT`] (2 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn manager(&self) -> Result<RedisConnection, StoreError> {
        if !valid_prefix(&self.prefix) {
            return Err(StoreError::unavailable(ConfigError::KeyPrefix));
        }
        let client = Client::open(self.url.as_str()).map_err(redis_error)?;
        // Fail fast while the server is down (the verifier fails closed);
        // the manager reconnects on the next call.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        RedisConnection::new_lazy(client, config).map_err(redis_error)
    }

    /// Connects, checks the server answers (`PING`) and sets up the
    /// store's resources if it never was (the defaults, and the service
    /// accounts of keys an earlier release wrote: see the module docs).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] for an invalid URL or prefix
    /// ([`ConfigError`] as the source) or an unreachable server;
    /// [`StoreError::Timeout`] if the server does not answer in time.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let store = RedisStore::from_connection(self.manager()?, &self.prefix, self.timeout)?;
        let mut conn = store.conn.clone();
        timed(self.timeout, async { cmd("PING").query_async::<()>(&mut conn).await.map_err(redis_error) }).await?;
        store.set_up_resources().await?;
        Ok(store)
    }

    /// A store that connects on first use; calls fail with
    /// [`StoreError::Unavailable`] or [`StoreError::Timeout`] while the
    /// server cannot be reached. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] for an invalid URL or prefix.
    pub fn connect_lazy(self) -> Result<RedisStore, StoreError> {
        RedisStore::from_connection(self.manager()?, &self.prefix, self.timeout)
    }
}

/// A [`KeyStore`] in Redis. Cheap to clone (shares the connection).
#[derive(Clone)]
pub struct RedisStore<C = RedisConnection> {
    pub(super) conn: C,
    pub(super) prefix: Arc<str>,
    /// `{prefix}:key:`
    record_prefix: Arc<str>,
    /// `{prefix}:sa:`
    account_prefix: Arc<str>,
    /// `{prefix}:digests`
    pub(super) digests: Arc<str>,
    /// `{prefix}:ops:`
    ops_prefix: Arc<str>,
    /// `{prefix}:extids`
    pub(super) ext_index: Arc<str>,
    /// `{prefix}:peppers`: pepper version → base64 fingerprint.
    peppers: Arc<str>,
    /// The change feed's and the indexes' key names.
    names: Arc<IndexNames>,
    pub(super) timeout: Duration,
}

/// The key names of a store's change feed and indexes (one allocation
/// shared by the store's clones).
struct IndexNames {
    /// `{prefix}:feed`, `{prefix}:feed:epoch`, `{prefix}:feed:pruned`: the
    /// change feed.
    feed: [String; 3],
    /// `{prefix}:expiry`, `{prefix}:expiry:built`: the expiry index.
    expiry: [String; 2],
    /// `{prefix}:ids`, `{prefix}:ids:built`: the id index.
    ids: [String; 2],
}

impl<C> std::fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_prefix_and_timeout(f, "RedisStore", &self.prefix, self.timeout)
    }
}

impl RedisStore {
    /// Starts configuring a store for `url` (`redis://[user:password@]host[:port][/db]`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder { url: url.into(), prefix: DEFAULT_PREFIX.to_owned(), timeout: DEFAULT_TIMEOUT }
    }

    /// Connects to `url` with the default prefix and timeout.
    ///
    /// # Errors
    /// As [`RedisStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store over any redis-rs async connection (a [`ConnectionManager`],
    /// a cluster connection, …) with keys under `{prefix}:`, each call
    /// bounded by `timeout` ([`DEFAULT_TIMEOUT`] is the usual choice; a zero
    /// timeout fails every call that does not complete at once).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] with [`ConfigError::KeyPrefix`] as the
    /// source if the prefix is not `[A-Za-z0-9_.:-]{1,64}`.
    pub fn from_connection(conn: C, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        if !valid_prefix(prefix) {
            return Err(StoreError::unavailable(ConfigError::KeyPrefix));
        }
        Ok(Self {
            conn,
            prefix: Arc::from(prefix),
            record_prefix: Arc::from(format!("{{{prefix}}}:key:")),
            account_prefix: Arc::from(format!("{{{prefix}}}:sa:")),
            digests: Arc::from(format!("{{{prefix}}}:digests")),
            ext_index: Arc::from(format!("{{{prefix}}}:extids")),
            ops_prefix: Arc::from(format!("{{{prefix}}}:ops:")),
            peppers: Arc::from(format!("{{{prefix}}}:peppers")),
            names: Arc::new(IndexNames {
                feed: ["feed", "feed:epoch", "feed:pruned"].map(|k| format!("{{{prefix}}}:{k}")),
                expiry: ["expiry", "expiry:built"].map(|k| format!("{{{prefix}}}:{k}")),
                ids: ["ids", "ids:built"].map(|k| format!("{{{prefix}}}:{k}")),
            }),
            timeout,
        })
    }

    /// The per-call timeout.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The key prefix (without braces).
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The connection.
    #[must_use]
    pub fn connection(&self) -> &C {
        &self.conn
    }

    /// Deletes every key of this store (`SCAN MATCH {prefix}:*` and `DEL` in
    /// batches) and returns how many were deleted. Meant for tests and for
    /// removing a tenant; keys written concurrently may survive. With a
    /// cluster connection, `SCAN` must reach the node that owns the prefix's
    /// slot (all of a store's keys share it).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if Redis fails. Not bounded by the store
    /// timeout, since it may run long.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{{{}}}:*", self.prefix);
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) =
                scan(cursor, &pattern, 500).query_async(&mut conn).await.map_err(redis_error)?;
            if !keys.is_empty() {
                let n: u64 = cmd("DEL").arg(&keys).query_async(&mut conn).await.map_err(redis_error)?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// `{prefix}:key:<id>`: a key's record.
    pub(super) fn record_key(&self, id: &KeyId) -> String {
        let mut k = String::with_capacity(self.record_prefix.len() + id.as_str().len());
        k.push_str(&self.record_prefix);
        k.push_str(id.as_str());
        k
    }

    /// `{prefix}:sa:<id>`: an account's key ids.
    pub(super) fn account_key(&self, sa: &ServiceAccountId) -> String {
        let mut k = String::with_capacity(self.account_prefix.len() + sa.as_str().len());
        k.push_str(&self.account_prefix);
        k.push_str(sa.as_str());
        k
    }

    /// The page of `ids` (up to `limit + 1`, in id order; the extra one
    /// tells whether another page follows): their records, leaving out any
    /// deleted or changed (no longer `still`) since the ids were read.
    async fn page_of(
        &self,
        conn: &mut C,
        mut ids: Vec<KeyId>,
        limit: usize,
        still: impl Fn(&KeyRecord) -> bool,
    ) -> Result<Page<KeyRecord>, StoreError> {
        let next = if ids.len() > limit {
            ids.truncate(limit);
            ids.last().copied()
        } else {
            None
        };
        if ids.is_empty() {
            return Ok(Page { items: Vec::new(), next });
        }
        let mut p = pipe();
        for id in &ids {
            p.cmd("HGETALL").arg(self.record_key(id));
        }
        let hashes: Vec<HashMap<String, String>> = p.query_async(conn).await.map_err(redis_error)?;
        let items = hashes
            .into_iter()
            .filter(|h| !h.is_empty())
            .map(decode)
            .filter(|r| r.as_ref().map_or(true, &still))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next })
    }

    /// The ids of keys in the expiry index due within `[from, until)`
    /// (to the millisecond, so a few outside may come too: the caller
    /// checks each record) and after `after`, sorted. Builds the index
    /// first if this store has never had one ([`Self::build_expiry_index`]).
    async fn expiring_ids(
        &self,
        conn: &mut C,
        from: Timestamp,
        until: Timestamp,
        after: Option<KeyId>,
    ) -> Result<Vec<KeyId>, StoreError> {
        let built: bool = cmd("EXISTS").arg(&*self.names.expiry[1]).query_async(conn).await.map_err(redis_error)?;
        if !built {
            self.build_expiry_index(conn).await?;
        }
        let ms = |t: Timestamp| t.unix_nanos().div_euclid(1_000_000);
        let min = if from.unix_nanos() < 0 { "-inf".to_owned() } else { ms(from).to_string() };
        let members: Vec<String> = cmd("ZRANGE")
            .arg(&*self.names.expiry[0])
            .arg(min)
            .arg(ms(until).max(0))
            .arg("BYSCORE")
            .query_async(conn)
            .await
            .map_err(redis_error)?;
        let mut ids = members.iter().map(|m| parse_id(m)).collect::<Result<Vec<_>, _>>()?;
        ids.retain(|id| after.is_none_or(|a| *id > a));
        ids.sort_unstable();
        Ok(ids)
    }

    /// Puts every active expiring key in the expiry index (`SCAN` over the
    /// records, once per store: for records written by a release before the
    /// index), then marks the index built. Change scripts keep it from
    /// then on; deleting the mark makes the next listing build it again.
    /// Puts every record's id in the id index (`SCAN` over the records,
    /// once per store: for records written by a release before the index),
    /// then marks the index built; change scripts keep it from then on. A
    /// key deleted while this runs may stay in the index: the flood shield
    /// then asks the store about it (a query, never a refusal of a real
    /// key).
    async fn build_id_index(&self, conn: &mut C) -> Result<(), StoreError> {
        let pattern = format!("{}*", self.record_prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = timed(self.timeout, async {
                scan(cursor, &pattern, 1000).query_async(conn).await.map_err(redis_error)
            })
            .await?;
            if !keys.is_empty() {
                let mut add = pipe();
                for key in &keys {
                    let id = key.strip_prefix(&*self.record_prefix).unwrap_or(key);
                    add.cmd("ZADD").arg(&*self.names.ids[0]).arg(0).arg(id).ignore();
                }
                timed(self.timeout, async { add.query_async::<()>(conn).await.map_err(redis_error) }).await?;
            }
            if next == 0 {
                let () = cmd("SET").arg(&*self.names.ids[1]).arg("1").query_async(conn).await.map_err(redis_error)?;
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn build_expiry_index(&self, conn: &mut C) -> Result<(), StoreError> {
        let pattern = format!("{}*", self.record_prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) =
                scan(cursor, &pattern, 1000).query_async(conn).await.map_err(redis_error)?;
            if !keys.is_empty() {
                let mut p = pipe();
                for k in &keys {
                    p.cmd("HMGET").arg(k).arg("status").arg("expires_at");
                }
                let rows: Vec<(Option<String>, Option<String>)> = p.query_async(conn).await.map_err(redis_error)?;
                let mut add = pipe();
                for (key, (status, expires)) in keys.iter().zip(rows) {
                    let due = expires.and_then(|e| e.parse::<i64>().ok());
                    if let (Some("active"), Some(due)) = (status.as_deref(), due) {
                        let id = key.strip_prefix(&*self.record_prefix).unwrap_or(key);
                        add.cmd("ZADD")
                            .arg(&*self.names.expiry[0])
                            .arg(due.div_euclid(1_000_000).max(0))
                            .arg(id)
                            .ignore();
                    }
                }
                let () = add.query_async(conn).await.map_err(redis_error)?;
            }
            if next == 0 {
                let () =
                    cmd("SET").arg(&*self.names.expiry[1]).arg("1").query_async(conn).await.map_err(redis_error)?;
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn fetch(&self, conn: &mut C, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let fields: HashMap<String, String> =
            cmd("HGETALL").arg(self.record_key(id)).query_async(conn).await.map_err(redis_error)?;
        if fields.is_empty() { Ok(None) } else { decode(fields).map(Some) }
    }
}

/// `ZRANGEBYLEX key min max LIMIT 0 count`: one page of an index.
pub(super) fn zrange_by_lex(key: &str, min: &str, max: &str, count: usize) -> redis::Cmd {
    let mut range = cmd("ZRANGEBYLEX");
    range.arg(key).arg(min).arg(max).arg("LIMIT").arg(0).arg(count);
    range
}

/// `SCAN cursor MATCH pattern COUNT count`, one step of a key scan.
pub(super) fn scan(cursor: u64, pattern: &str, count: usize) -> redis::Cmd {
    let mut scan = cmd("SCAN");
    scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(count);
    scan
}

/// Whether `r` is written in record layout 3 (see the module docs).
fn needs_layout_3(r: &KeyRecord) -> bool {
    !r.enabled || r.controls.is_some()
}

/// The fields of record layout 2 that layout 3 keeps in `controls`.
const LAYOUT_2_CONTROLS: [&str; 3] = ["metadata", "allowed_ips", "rate_limits"];

/// The layout 3 fields of a record's enabled flag and controls, as
/// field/value pairs to set (present) and fields to delete (absent).
fn control_fields(c: ControlColumns) -> (Vec<(&'static str, String)>, Vec<&'static str>) {
    let mut set = Vec::new();
    let mut del = Vec::new();
    let mut put = |name: &'static str, v: Option<String>| match v {
        Some(v) => set.push((name, v)),
        None => del.push(name),
    };
    put("enabled", (!c.enabled).then(|| "0".to_owned()));
    put("external_id", c.external_id);
    put("controls", c.controls);
    put("credits_remaining", c.credits_remaining.map(|n| n.to_string()));
    put("credits_refill_amount", c.credits_refill_amount.map(|n| n.to_string()));
    put("credits_refill_period", c.credits_refill_period);
    put("credits_refill_at", c.credits_refill_at.map(|n| n.to_string()));
    put("credits_refilled_at", c.credits_refilled_at.map(|n| n.to_string()));
    (set, del)
}

/// The record as hash field/value pairs; absent optional fields are left
/// out. Layout 1 for a plain enabled key, else layout 3.
fn encode(r: &KeyRecord) -> Vec<(&'static str, String)> {
    let mut f = Vec::with_capacity(16);
    if needs_layout_3(r) {
        f.push(("v", "3".to_owned()));
        f.push(("key_id", r.id.as_str().to_owned()));
        f.extend(control_fields(ControlColumns::of(r)).0);
    } else {
        f.push(("id", r.id.as_str().to_owned()));
    }
    f.push(("service_account_id", r.service_account_id.as_str().to_owned()));
    f.push(("description", r.description.as_str().to_owned()));
    f.push(("created_at", r.created_at.unix_nanos().to_string()));
    if let Some(t) = r.last_used_at {
        f.push(("last_used_at", t.unix_nanos().to_string()));
    }
    f.push(("scopes", join_scopes(&r.scopes)));
    if let Some(t) = r.expires_at {
        f.push(("expires_at", t.unix_nanos().to_string()));
    }
    f.push(("masked_key", r.masked_key.tail().to_owned()));
    f.push(("pepper_version", r.pepper_version.to_string()));
    f.push(("digest", r.digest.to_base64()));
    f.push(("status", r.status.as_str().to_owned()));
    f.push(("kind", r.kind.as_str().to_owned()));
    if let Some(id) = r.links.replaced_by {
        f.push(("replaced_by", id.as_str().to_owned()));
    }
    if let Some(id) = r.links.reissued_from {
        f.push(("reissued_from", id.as_str().to_owned()));
    }
    f
}

fn decode(mut f: HashMap<String, String>) -> Result<KeyRecord, StoreError> {
    let layout = f.remove("v");
    let controls = match layout.as_deref() {
        None => ControlColumns::default(),
        Some("2") => take_layout_2_controls(&mut f)?,
        Some("3") => take_controls(&mut f)?,
        Some(v) => {
            let v = v.parse::<u64>().map_or_else(|_| "unknown".to_owned(), |n| n.to_string());
            return Err(StoreError::Corrupt(format!(
                "record layout version {v} is newer than this version of api-keys reads (up to 3)"
            )));
        }
    };
    decode_core(f, if layout.is_some() { "key_id" } else { "id" }, controls)
}

/// The fields every record layout has, the id read from `id_field`, with
/// `controls` (already taken) completing the record. Fields it does not
/// know are ignored, as every release's decoder did.
fn decode_core(
    mut f: HashMap<String, String>,
    id_field: &'static str,
    controls: ControlColumns,
) -> Result<KeyRecord, StoreError> {
    fn missing(field: &str) -> StoreError {
        StoreError::Corrupt(format!("field `{field}` is missing"))
    }
    fn int(field: &str, text: &str) -> Result<i64, StoreError> {
        text.parse().map_err(|_| StoreError::Corrupt(format!("field `{field}` is not an integer")))
    }
    let mut take = |field: &'static str| f.remove(field).ok_or_else(|| missing(field));
    let id = take(id_field)?;
    let service_account_id = take("service_account_id")?;
    let description = take("description")?;
    let created_at = int("created_at", &take("created_at")?)?;
    let scopes = split_scopes(&take("scopes")?);
    let masked_key = take("masked_key")?;
    let pepper_version = int("pepper_version", &take("pepper_version")?)?;
    let digest = Digest::from_base64(&take("digest")?)
        .map_err(|_| StoreError::Corrupt("field `digest` is not base64 of 32 bytes".to_owned()))?;
    let status = take("status")?;
    let kind = take("kind")?;
    let last_used_at = f.remove("last_used_at").map(|t| int("last_used_at", &t)).transpose()?;
    let expires_at = f.remove("expires_at").map(|t| int("expires_at", &t)).transpose()?;
    Row {
        id,
        service_account_id,
        description,
        created_at,
        last_used_at,
        scopes,
        expires_at,
        masked_key,
        pepper_version,
        digest: digest.as_bytes().to_vec(),
        status,
        kind,
        replaced_by: f.remove("replaced_by"),
        reissued_from: f.remove("reissued_from"),
        controls,
    }
    .into_record()
}

/// The control fields of a layout 2 record hash: its one field per
/// control read as layout 3's `controls`.
fn take_layout_2_controls(f: &mut HashMap<String, String>) -> Result<ControlColumns, StoreError> {
    let [metadata, allowed_ips, rate_limits] = LAYOUT_2_CONTROLS.map(|name| f.remove(name));
    let controls = legacy_controls_json(metadata.as_deref(), allowed_ips.as_deref(), rate_limits.as_deref())?;
    Ok(ControlColumns { controls, ..take_controls(f)? })
}

/// The layout 3 control fields of a record hash.
fn take_controls(f: &mut HashMap<String, String>) -> Result<ControlColumns, StoreError> {
    fn int(f: &mut HashMap<String, String>, field: &str) -> Result<Option<i64>, StoreError> {
        f.remove(field)
            .map(|t| t.parse().map_err(|_| StoreError::Corrupt(format!("field `{field}` is not an integer"))))
            .transpose()
    }
    let enabled = match f.remove("enabled").as_deref() {
        None | Some("1") => true,
        Some("0") => false,
        Some(_) => return Err(StoreError::Corrupt("field `enabled` is not 0 or 1".to_owned())),
    };
    Ok(ControlColumns {
        enabled,
        external_id: f.remove("external_id"),
        controls: f.remove("controls"),
        credits_remaining: int(f, "credits_remaining")?,
        credits_refill_amount: int(f, "credits_refill_amount")?,
        credits_refill_period: f.remove("credits_refill_period"),
        credits_refill_at: int(f, "credits_refill_at")?,
        credits_refilled_at: int(f, "credits_refilled_at")?,
    })
}

fn parse_id(text: &str) -> Result<KeyId, StoreError> {
    KeyId::parse(text).map_err(|_| StoreError::Corrupt("an account index member is not a key id".to_owned()))
}

/// The feed and log part of a change script call (see [`fed`] and
/// [`logged`]).
pub(super) struct LogArgs {
    keys: Vec<String>,
    args: Vec<String>,
    /// The index in `args` of the log entry count.
    log_at: usize,
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn log_args(&self, change: &Change, log: &[LogEntry], account: &ServiceAccountId) -> Result<LogArgs, StoreError> {
        self.log_args_of(&entries_of(change), log, account, None)
    }

    /// The feed and log part of a change script call whose feed entries are
    /// `feed` and whose log entries (all of keys of `account`) are `log`.
    pub(super) fn log_args_of(
        &self,
        feed: &[FeedChange],
        log: &[LogEntry],
        account: &ServiceAccountId,
        resource_claim: Option<(&IdempotencyClaim, OperationId)>,
    ) -> Result<LogArgs, StoreError> {
        let mut keys =
            vec![self.names.feed[0].to_string(), self.names.expiry[0].to_string(), self.names.ids[0].to_string()];
        keys.extend(feed.iter().map(|c| self.record_key(&c.key_id)));
        keys.push(format!("{{{}}}:opids", self.prefix));
        keys.push(format!("{{{}}}:opseq", self.prefix));
        let mut args = vec![feed.len().to_string()];
        args.extend(feed.iter().map(|c| format!("{} {}", c.key_id.as_str(), u8::from(c.gone))));
        let log_at = args.len();
        args.push(log.len().to_string());
        for e in log {
            keys.push(format!("{}{}", self.ops_prefix, e.key_id.as_str()));
            args.push(e.id.as_str().to_owned());
            args.push(
                serde_json::to_string(&e.recorded(account))
                    .map_err(|_| StoreError::Corrupt("an operation does not serialise".to_owned()))?,
            );
        }
        let claims: Vec<_> =
            log.iter().filter_map(|e| e.idempotency.as_ref().map(|c| (c, e.id))).chain(resource_claim).collect();
        args.push(claims.len().to_string());
        for (c, operation) in claims {
            keys.push(self.idempotency_key(&c.actor, &c.key));
            args.push(idempotency_value(c, &operation));
            args.push(c.created_at.unix_nanos().to_string());
            let ttl = c.expires_at.duration_since(c.created_at).as_millis().max(1);
            args.push(ttl.to_string());
        }
        Ok(LogArgs { keys, args, log_at })
    }

    /// The key of `actor`'s idempotency record of `key`: one string per
    /// record, `{p}:idem:<hex>`, the hex a SHA-256 of the actor and key.
    fn idempotency_key(&self, actor: &Actor, key: &IdempotencyKey) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"api-keys idempotency record v1\0");
        h.update(actor.as_str().as_bytes());
        h.update(b"\0");
        h.update(key.as_bytes());
        format!("{{{}}}:idem:{}", self.prefix, hex(&h.finalize()))
    }

    /// The owner of the key `change` is about. A key's owner never changes,
    /// so reading it before the change's script is safe: if the key goes
    /// in between, the script finds it gone and logs nothing.
    async fn account_of(&self, change: &Change) -> Result<ServiceAccountId, StoreError> {
        if let Change::Insert(r) = change {
            return Ok(r.service_account_id.clone());
        }
        let id = change.key_id();
        let mut conn = self.conn.clone();
        let sa: Option<String> = cmd("HGET")
            .arg(self.record_key(&id))
            .arg("service_account_id")
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        let sa = sa.ok_or(StoreError::NotFound(id))?;
        ServiceAccountId::new(&sa)
            .map_err(|_| StoreError::Corrupt("field `service_account_id` is not a valid service account id".to_owned()))
    }

    /// Runs the change script `script` with the feed and log's keys and
    /// arguments first, then `call`'s.
    pub(super) async fn run(
        &self,
        conn: &mut C,
        script: &Script,
        call: &Call,
        log: &LogArgs,
    ) -> Result<String, StoreError> {
        let mut inv = script.prepare_invoke();
        for k in log.keys.iter().chain(&call.keys) {
            inv.key(k);
        }
        for a in log.args.iter().chain(&call.args) {
            inv.arg(a);
        }
        let reply: Value = inv.invoke_async(conn).await.map_err(redis_error)?;
        reply_text(reply)
    }

    async fn insert_with(&self, record: &KeyRecord, log: &LogArgs) -> Result<(), StoreError> {
        let imported = record.kind == KeyKind::Imported;
        let call = Call::default()
            .key(self.record_key(&record.id))
            .key(self.account_key(&record.service_account_id))
            .key(&*self.digests)
            .key(&*self.ext_index)
            .arg(record.id.as_str())
            .arg(if imported { record.digest.to_base64() } else { String::new() })
            .fields(encode(record));
        let mut conn = self.conn.clone();
        let reply = self.run(&mut conn, &SCRIPTS.insert, &call, log).await?;
        match reply.as_str() {
            "1" => Ok(()),
            "0" => Err(StoreError::Duplicate(record.id)),
            other => Err(log_reply(other, log)),
        }
    }

    async fn note_with(&self, id: &KeyId, log: &LogArgs) -> Result<(), StoreError> {
        let call = Call::default().key(self.record_key(id));
        let mut conn = self.conn.clone();
        let reply = self.run(&mut conn, &SCRIPTS.note, &call, log).await?;
        match reply.as_str() {
            "1" => Ok(()),
            "0" => Err(StoreError::NotFound(*id)),
            other => Err(log_reply(other, log)),
        }
    }

    async fn revoke_with(&self, id: &KeyId, log: &LogArgs) -> Result<(), StoreError> {
        let call = Call::default().key(self.record_key(id));
        let mut conn = self.conn.clone();
        let reply = self.run(&mut conn, &SCRIPTS.revoke, &call, log).await?;
        match reply.as_str() {
            "1" => Ok(()),
            "0" => Err(StoreError::NotFound(*id)),
            other => Err(log_reply(other, log)),
        }
    }

    async fn delete_with(&self, id: &KeyId, log: &LogArgs) -> Result<(), StoreError> {
        let key = self.record_key(id);
        let mut conn = self.conn.clone();
        for _ in 0..CAS_ATTEMPTS {
            let sa: Option<String> =
                cmd("HGET").arg(&key).arg("service_account_id").query_async(&mut conn).await.map_err(redis_error)?;
            let Some(sa) = sa else {
                let exists: bool = cmd("EXISTS").arg(&key).query_async(&mut conn).await.map_err(redis_error)?;
                return Err(if exists {
                    StoreError::Corrupt("field `service_account_id` is missing".to_owned())
                } else {
                    StoreError::NotFound(*id)
                });
            };
            let account = ServiceAccountId::new(&sa).map_err(|_| {
                StoreError::Corrupt("field `service_account_id` is not a valid service account id".to_owned())
            })?;
            let call = Call::default()
                .key(&key)
                .key(self.account_key(&account))
                .key(&*self.digests)
                .key(&*self.ext_index)
                .arg(id.as_str())
                .arg(&sa);
            match self.run(&mut conn, &SCRIPTS.delete, &call, log).await?.as_str() {
                "1" => return Ok(()),
                "0" => return Err(StoreError::NotFound(*id)),
                "-1" => {} // replaced under another account meanwhile: read again
                other => return Err(log_reply(other, log)),
            }
        }
        Err(StoreError::Conflict { id: *id, reason: "the key is being changed concurrently" })
    }

    async fn reissue_with(
        &self,
        old: &KeyId,
        new: &KeyRecord,
        fate: OldKeyFate,
        log: &LogArgs,
    ) -> Result<(), StoreError> {
        let old_key = self.record_key(old);
        let new_digest = if new.kind == KeyKind::Imported { new.digest.to_base64() } else { String::new() };
        let mut conn = self.conn.clone();
        for _ in 0..CAS_ATTEMPTS {
            let current = self.fetch(&mut conn, old).await?.ok_or(StoreError::NotFound(*old))?;
            let mut updated = current.clone();
            apply_reissue(&mut updated, new.id, fate)?;
            let expected_expiry = current.expires_at.map(|t| t.unix_nanos().to_string()).unwrap_or_default();
            let new_expiry = if updated.expires_at == current.expires_at {
                String::new()
            } else {
                updated.expires_at.map(|t| t.unix_nanos().to_string()).unwrap_or_default()
            };
            let call = Call::default()
                .key(&old_key)
                .key(self.record_key(&new.id))
                .key(self.account_key(&new.service_account_id))
                .key(&*self.digests)
                .key(&*self.ext_index)
                .arg(expected_expiry)
                .arg(new.id.as_str())
                .arg(&new_digest)
                .arg(updated.status.as_str())
                .arg(new_expiry)
                .fields(encode(new));
            match self.run(&mut conn, &SCRIPTS.reissue, &call, log).await?.as_str() {
                "ok" => return Ok(()),
                "dup" => return Err(StoreError::Duplicate(new.id)),
                // Gone or changed since the read: decide again on fresh data.
                "gone" | "changed" => {}
                other => return Err(log_reply(other, log)),
            }
        }
        Err(StoreError::Conflict { id: *old, reason: "the key is being changed concurrently" })
    }

    async fn update_logged(&self, id: &KeyId, update: &KeyUpdate, log: &LogArgs) -> Result<KeyRecord, StoreError> {
        let flag = |set: bool| if set { "1" } else { "0" };
        let (mode, expiry) = match update.expires_at {
            None => ("keep", String::new()),
            Some(None) => ("none", String::new()),
            Some(Some(t)) => ("set", t.unix_nanos().to_string()),
        };
        // An update of the enabled flag or controls writes layout 3, whose
        // `controls` field it rewrites whole: from the fields read here,
        // written only if they are still what was read.
        let moves = update.enabled.is_some() || update.changes_controls();
        let mut conn = self.conn.clone();
        for _ in 0..CAS_ATTEMPTS {
            let (expected, current) =
                if moves { self.controls_state(&mut conn, id).await? } else { (Vec::new(), None) };
            let (set, del) = update_control_fields(update, current.as_ref());
            let mut call = Call::default()
                .key(self.record_key(id))
                .key(&*self.ext_index)
                .arg(flag(update.description.is_some()))
                .arg(update.description.as_ref().map(|d| d.as_str().to_owned()).unwrap_or_default())
                .arg(flag(update.scopes.is_some()))
                .arg(update.scopes.as_ref().map(join_scopes).unwrap_or_default())
                .arg(mode)
                .arg(expiry.clone())
                .arg(id.as_str())
                .arg(flag(moves))
                .arg(expected.len().to_string())
                .fields(expected)
                .arg(set.len().to_string())
                .fields(set);
            for field in del {
                call = call.arg(field);
            }
            let reply = self.run(&mut conn, &SCRIPTS.update, &call, log).await?;
            return match reply.as_str() {
                // Read back after the script: a change made just after it may
                // already show.
                "ok" => self.fetch(&mut conn, id).await?.ok_or(StoreError::NotFound(*id)),
                "gone" => Err(StoreError::NotFound(*id)),
                "revoked" => Err(StoreError::Conflict { id: *id, reason: "the key is revoked" }),
                "reissued" => Err(StoreError::Conflict {
                    id: *id,
                    reason: "the key was reissued: its expiry is its grace period",
                }),
                // Changed since the read: read again.
                "changed" => continue,
                other => Err(log_reply(other, log)),
            };
        }
        Err(StoreError::Conflict { id: *id, reason: "the key is being changed concurrently" })
    }

    /// One read of the change feed ([`FEED_READ_LUA`]): the head, the
    /// pruned mark and, with `after`, up to `limit` entries after it.
    async fn read_feed(&self, after: Option<FeedPosition>, limit: u32) -> Result<FeedState, StoreError> {
        type Reply = (String, String, String, Vec<(String, Vec<String>)>);
        let mut inv = SCRIPTS.feed_read.prepare_invoke();
        inv.key(&*self.names.feed[0])
            .key(&*self.names.feed[1])
            .key(&*self.names.feed[2])
            .arg(random_epoch().to_string())
            .arg(after.map(|a| format!("{}-{}", a.parts().0, a.parts().1)).unwrap_or_default())
            .arg(limit);
        let mut conn = self.conn.clone();
        let (epoch, last, pruned, entries): Reply =
            timed(self.timeout, async { inv.invoke_async(&mut conn).await.map_err(redis_error) }).await?;
        let epoch = epoch.parse::<u64>().map_err(|_| StoreError::Corrupt("the feed epoch is not a number".into()))?;
        let (ms, seq) = stream_id(&last)?;
        let entries = entries
            .into_iter()
            .map(|(id, fields)| Ok((stream_id(&id)?, feed_entry(&fields)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(FeedState { last: FeedPosition::new(epoch, ms, seq), pruned: stream_id(&pruned)?, entries })
    }

    /// The fields an update of the controls depends on, as `(field,
    /// value or '')` pairs for the script to compare, and the record's
    /// controls without a column of their own as they read now.
    async fn controls_state(
        &self,
        conn: &mut C,
        id: &KeyId,
    ) -> Result<(Vec<(&'static str, String)>, Option<KeyControls>), StoreError> {
        const FIELDS: [&str; 5] = ["v", "controls", "metadata", "allowed_ips", "rate_limits"];
        let values: Vec<Option<String>> =
            cmd("HMGET").arg(self.record_key(id)).arg(&FIELDS[..]).query_async(conn).await.map_err(redis_error)?;
        let value = |i: usize| values.get(i).cloned().flatten();
        let controls = match value(0).as_deref() {
            Some("2") => legacy_controls_json(value(2).as_deref(), value(3).as_deref(), value(4).as_deref())?,
            None | Some("3") => value(1),
            Some(_) => {
                return Err(StoreError::Corrupt("record layout version is newer than this version reads".into()));
            }
        };
        let (_, current) = ControlColumns { controls, ..ControlColumns::default() }.into_controls()?;
        let expected = FIELDS.iter().enumerate().map(|(i, f)| (*f, value(i).unwrap_or_default())).collect();
        Ok((expected, Some(current)))
    }
}

/// What one read of the feed saw.
struct FeedState {
    /// The head: the newest entry, or the pruned mark.
    last: FeedPosition,
    /// Entries up to here were pruned.
    pruned: (u64, u64),
    /// The entries read, by stream id.
    entries: Vec<((u64, u64), FeedChange)>,
}

/// A stream id `<ms>-<seq>` as its two parts.
fn stream_id(text: &str) -> Result<(u64, u64), StoreError> {
    let bad = || StoreError::Corrupt("a feed entry id is not a stream id".to_owned());
    let (ms, seq) = text.split_once('-').ok_or_else(bad)?;
    Ok((ms.parse().map_err(|_| bad())?, seq.parse().map_err(|_| bad())?))
}

/// A feed entry's fields (`c`, `<key id> <0|1>`) as a change.
fn feed_entry(fields: &[String]) -> Result<FeedChange, StoreError> {
    let bad = || StoreError::Corrupt("a feed entry does not decode".to_owned());
    let [name, value] = fields else { return Err(bad()) };
    let (id, gone) = value.split_once(' ').ok_or_else(bad)?;
    if name != "c" {
        return Err(bad());
    }
    let gone = match gone {
        "0" => false,
        "1" => true,
        _ => return Err(bad()),
    };
    Ok(FeedChange::new(KeyId::parse(id).map_err(|_| bad())?, gone))
}

/// The control fields an update writes (set) and removes (del): only the
/// ones it changes, so an update that leaves the credits alone never
/// writes the count a concurrent spend may have changed. With the
/// `current` controls (read for an update that moves the record to layout
/// 3), also the whole `controls` field, and the layout 2 fields removed.
fn update_control_fields(
    update: &KeyUpdate,
    current: Option<&KeyControls>,
) -> (Vec<(&'static str, String)>, Vec<&'static str>) {
    let patch = &update.controls;
    let mut columns = ControlColumns::from_parts(update.enabled.unwrap_or(true), &patch.apply_to(&KeyControls::NONE));
    columns.controls = current.and_then(|c| controls_json(&patch.apply_to(c)));
    let (set, mut del) = control_fields(columns);
    let wanted = |name: &str| match name {
        "enabled" => update.enabled.is_some(),
        "controls" => current.is_some(),
        "external_id" => patch.external_id.is_some(),
        _ => patch.credits.is_some(),
    };
    del.retain(|n| wanted(n));
    if current.is_some() {
        del.extend(LAYOUT_2_CONTROLS);
    }
    (set.into_iter().filter(|(n, _)| wanted(n)).collect(), del)
}

/// An idempotency record as stored: `1 <created> <expires> <fingerprint
/// hex> <operation id>` (the version, decimal unix nanoseconds).
fn idempotency_value(c: &IdempotencyClaim, operation: &OperationId) -> String {
    format!(
        "1 {} {} {} {}",
        c.created_at.unix_nanos(),
        c.expires_at.unix_nanos(),
        hex(&c.fingerprint),
        operation.as_str()
    )
}

/// Reads [`idempotency_value`]'s text back for `actor` and `key`.
fn decode_idempotency(text: &str, actor: &Actor, key: &IdempotencyKey) -> Result<IdempotencyRecord, StoreError> {
    let bad = || StoreError::Corrupt("an idempotency record does not decode".to_owned());
    let words: Vec<&str> = text.split(' ').collect();
    let [version, created, expires, fingerprint, operation] = words[..] else { return Err(bad()) };
    let nanos = |w: &str| w.parse::<i64>().map(Timestamp::from_unix_nanos).map_err(|_| bad());
    if version != "1" || fingerprint.len() != 64 {
        return Err(bad());
    }
    let mut print = [0u8; 32];
    for (i, b) in print.iter_mut().enumerate() {
        *b = u8::from_str_radix(fingerprint.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    let claim = IdempotencyClaim {
        actor: actor.clone(),
        key: *key,
        fingerprint: print,
        created_at: nanos(created)?,
        expires_at: nanos(expires)?,
    };
    Ok(IdempotencyRecord::new(claim, OperationId::parse(operation).map_err(|_| bad())?))
}

/// The error for a script reply outside the change's own replies: a
/// refused operation id (`opdup:<i>`), a taken idempotency key (`idem`) or
/// garbage.
pub(super) fn log_reply(reply: &str, log: &LogArgs) -> StoreError {
    if reply == "idem" {
        return StoreError::IdempotencyKeyTaken;
    }
    let entry = reply
        .strip_prefix("opdup:")
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| log.args.get((log.log_at + 2 * i).checked_sub(1)?))
        .and_then(|id| crate::operation::OperationId::parse(id).ok());
    match entry {
        Some(id) => StoreError::DuplicateOperation(id),
        None => StoreError::Corrupt("redis returned an unexpected script reply".to_owned()),
    }
}

impl<C> KeyStore for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn spend_credits(&self, id: &KeyId, cost: u64, due: Option<Timestamp>) -> Result<CreditSpend, StoreError> {
        let mut inv = SCRIPTS.spend.prepare_invoke();
        inv.key(self.record_key(id))
            .arg(cost.to_string())
            .arg(due.map(|t| t.unix_nanos().to_string()).unwrap_or_default());
        let mut conn = self.conn.clone();
        let reply: Vec<String> =
            timed(self.timeout, async { inv.invoke_async(&mut conn).await.map_err(redis_error) }).await?;
        let count = |text: Option<&String>| {
            text.and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| StoreError::Corrupt("field `credits_remaining` is not a credit count".to_owned()))
        };
        match reply.first().map(String::as_str) {
            Some("spent") => Ok(CreditSpend::Spent { remaining: count(reply.get(1))? }),
            Some("exhausted") => Ok(CreditSpend::Exhausted { remaining: count(reply.get(1))? }),
            Some("unlimited") => Ok(CreditSpend::Unlimited),
            Some("gone") => Err(StoreError::NotFound(*id)),
            _ => Err(corrupt_reply()),
        }
    }

    async fn list_by_external_id(&self, owner: &ExternalId, page: PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        let limit = page.effective_limit();
        let ext = owner.as_str();
        let min = page.after.map_or_else(|| format!("[{ext} "), |a| format!("({ext} {}", a.as_str()));
        let mut conn = self.conn.clone();
        timed(self.timeout, async {
            let members: Vec<String> = zrange_by_lex(&self.ext_index, &min, &format!("[{ext} ~"), limit + 1)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            let prefix = format!("{ext} ");
            let ids = members
                .iter()
                .map(|m| m.strip_prefix(&prefix).map_or_else(|| Err(corrupt_reply()), parse_id))
                .collect::<Result<Vec<_>, _>>()?;
            self.page_of(&mut conn, ids, limit, |r| r.controls().external_id.as_ref() == Some(owner)).await
        })
        .await
    }

    async fn list_expiring(&self, window: Range<Timestamp>, page: PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        let Range { start: from, end: until } = window;
        let limit = page.effective_limit();
        let mut conn = self.conn.clone();
        let expiring = move |r: &KeyRecord| !r.is_revoked() && r.expires_at.is_some_and(|e| from <= e && e < until);
        timed(self.timeout, async {
            let mut ids = self.expiring_ids(&mut conn, from, until, page.after).await?;
            ids.truncate(limit + 1);
            self.page_of(&mut conn, ids, limit, expiring).await
        })
        .await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let mut conn = self.conn.clone();
        timed(self.timeout, async { Ok(self.fetch(&mut conn, id).await?.map(Arc::new)) }).await
    }

    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let mut conn = self.conn.clone();
        timed(self.timeout, async {
            let id: Option<String> = cmd("HGET")
                .arg(&*self.digests)
                .arg(digest.to_base64())
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            let Some(id) = id else { return Ok(None) };
            let id = KeyId::parse(&id)
                .map_err(|_| StoreError::Corrupt("a digest index entry is not a key id".to_owned()))?;
            // The index is only a pointer: the record must still be an
            // imported key with this digest.
            Ok(self
                .fetch(&mut conn, &id)
                .await?
                .filter(|r| r.kind == KeyKind::Imported && r.digest == *digest)
                .map(Arc::new))
        })
        .await
    }

    /// One pipeline of `HGETALL`s: one round trip for the batch.
    async fn get_many(&self, ids: &[KeyId]) -> Result<Vec<Option<Arc<KeyRecord>>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = pipe();
        for id in ids {
            p.cmd("HGETALL").arg(self.record_key(id));
        }
        let mut conn = self.conn.clone();
        timed(self.timeout, async {
            let hashes: Vec<HashMap<String, String>> = p.query_async(&mut conn).await.map_err(redis_error)?;
            if hashes.len() != ids.len() {
                return Err(corrupt_reply());
            }
            hashes
                .into_iter()
                .map(|h| if h.is_empty() { Ok(None) } else { decode(h).map(|r| Some(Arc::new(r))) })
                .collect()
        })
        .await
    }

    async fn list(&self, service_account: &ServiceAccountId, page: PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        let limit = page.effective_limit();
        let min = page.after.map_or_else(|| "-".to_owned(), |a| format!("({}", a.as_str()));
        let mut conn = self.conn.clone();
        timed(self.timeout, async {
            // One extra id tells whether another page follows.
            let ids: Vec<String> = zrange_by_lex(&self.account_key(service_account), &min, "+", limit + 1)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            let ids = ids.iter().map(|s| parse_id(s)).collect::<Result<Vec<_>, _>>()?;
            // A key deleted between the two reads is simply not listed.
            self.page_of(&mut conn, ids, limit, |_| true).await
        })
        .await
    }

    /// A page of the id index (`ZRANGEBYLEX`), built first if this store
    /// has never had one (see the module docs).
    async fn ids_after(&self, after: Option<KeyId>, limit: u32) -> Result<Vec<KeyId>, StoreError> {
        let mut conn = self.conn.clone();
        let built: bool = timed(self.timeout, async {
            cmd("EXISTS").arg(&*self.names.ids[1]).query_async(&mut conn).await.map_err(redis_error)
        })
        .await?;
        if !built {
            self.build_id_index(&mut conn).await?;
        }
        let min = after.map_or_else(|| "-".to_owned(), |a| format!("({}", a.as_str()));
        let count = limit.max(1) as usize;
        timed(self.timeout, async {
            let members: Vec<String> = zrange_by_lex(&self.names.ids[0], &min, "+", count)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            members.iter().map(|m| parse_id(m)).collect()
        })
        .await
    }

    async fn pepper_fingerprint(&self, version: u32, proposed: Digest) -> Result<Digest, StoreError> {
        let mut conn = self.conn.clone();
        let (_, stored): (i64, String) = timed(self.timeout, async {
            redis::pipe()
                .atomic()
                .hset_nx(&*self.peppers, version, proposed.to_base64())
                .hget(&*self.peppers, version)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)
        })
        .await?;
        Digest::from_base64(&stored)
            .map_err(|_| StoreError::Corrupt("pepper fingerprint is not base64 of 32 bytes".into()))
    }

    async fn touch_last_used(&self, updates: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut inv = SCRIPTS.touch.prepare_invoke();
        for (id, at) in updates {
            inv.key(self.record_key(id)).arg(at.unix_nanos());
        }
        let mut conn = self.conn.clone();
        timed(self.timeout, async {
            let _moved: i64 = inv.invoke_async(&mut conn).await.map_err(redis_error)?;
            Ok(())
        })
        .await
    }

    async fn commit(&self, change: Change, log: &[LogEntry]) -> Result<Option<KeyRecord>, StoreError> {
        timed(self.timeout, async {
            let account = self.account_of(&change).await?;
            let log = &self.log_args(&change, log, &account)?;
            match change {
                Change::Insert(r) => self.insert_with(&r, log).await.map(|()| None),
                Change::Update { id, update } => self.update_logged(&id, &update, log).await.map(Some),
                Change::Revoke(id) => self.revoke_with(&id, log).await.map(|()| None),
                Change::Delete(id) => self.delete_with(&id, log).await.map(|()| None),
                Change::Reissue { old, new, fate } => self.reissue_with(&old, &new, fate, log).await.map(|()| None),
                Change::Note(id) => self.note_with(&id, log).await.map(|()| None),
            }
        })
        .await
    }

    async fn feed_head(&self) -> Result<Option<FeedPosition>, StoreError> {
        let read = self.read_feed(None, 0).await?;
        Ok(Some(read.last))
    }

    async fn changes_after(&self, at: FeedPosition, limit: u32) -> Result<FeedRead, StoreError> {
        let read = self.read_feed(Some(at), limit.max(1)).await?;
        let at_parts = at.parts();
        if at.epoch() != read.last.epoch() {
            return Ok(FeedRead::Broken(FeedBreak::OtherStore));
        }
        if at_parts > read.last.parts() {
            return Ok(FeedRead::Broken(FeedBreak::Backwards));
        }
        if at_parts < read.pruned {
            return Ok(FeedRead::Broken(FeedBreak::Pruned));
        }
        let next = read.entries.last().map_or(at, |(id, _)| FeedPosition::new(at.epoch(), id.0, id.1));
        Ok(FeedRead::Changes { changes: read.entries.into_iter().map(|(_, c)| c).collect(), next })
    }

    async fn prune_feed(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let millis = before.unix_nanos().div_euclid(1_000_000).max(0);
        let mut inv = SCRIPTS.feed_prune.prepare_invoke();
        inv.key(&*self.names.feed[0]).key(&*self.names.feed[2]).arg(millis).arg(limit.max(1));
        let mut conn = self.conn.clone();
        timed(self.timeout, async { inv.invoke_async(&mut conn).await.map_err(redis_error) }).await
    }

    async fn operations(&self, key: &KeyId, page: PageRequest<OperationCursor>) -> Result<OperationPage, StoreError> {
        let limit = page.effective_limit();
        let mut conn = self.conn.clone();
        timed(self.timeout, async {
            let log = format!("{}{}", self.ops_prefix, key.as_str());
            let entries = log_page(&mut conn, &log, &page).await?;
            let mut items = entries
                .into_iter()
                .map(|(json, seq)| {
                    serde_json::from_str::<Operation>(&json)
                        .map(|op| (seq, op))
                        .map_err(|_| StoreError::Corrupt("an operations log entry does not decode".to_owned()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let next = crate::store::key_store::next_after(&mut items, limit, |last| {
                last.map(|(seq, _)| OperationCursor::new(*seq))
            });
            Ok(Page::new(items.into_iter().map(|(_, op)| op).collect(), next))
        })
        .await
    }

    async fn commit_resource(
        &self,
        change: crate::resource::ResourceChange,
        log: &crate::resource::ResourceLogEntry,
    ) -> Result<crate::resource::ResourceCommit, StoreError> {
        self.commit_resource_redis(change, log).await
    }

    async fn resource(
        &self,
        target: &crate::resource::ResourceRef,
    ) -> Result<Option<crate::resource::Resource>, StoreError> {
        self.resource_redis(target).await
    }

    async fn list_resources(
        &self,
        listing: &crate::resource::ResourceListing,
        order: crate::resource::ResourceOrder,
        page: PageRequest<crate::resource::ResourceCursor>,
    ) -> Result<crate::resource::ResourcePage, StoreError> {
        self.list_resources_redis(listing, order, page).await
    }

    async fn find_resource(
        &self,
        listing: &crate::resource::ResourceListing,
        name: &crate::resource::ResourceName,
    ) -> Result<Option<crate::resource::Resource>, StoreError> {
        self.find_resource_redis(listing, name).await
    }

    async fn resource_operations(
        &self,
        target: &crate::resource::ResourceRef,
        page: PageRequest<OperationCursor>,
    ) -> Result<crate::resource::ResourceOperationPage, StoreError> {
        self.resource_operations_redis(target, page).await
    }

    async fn access_policy_bindings(
        &self,
        on: Option<&crate::resource::ResourceRef>,
    ) -> Result<Vec<(crate::resource::ResourceRef, crate::access_policy::AccessPolicyBinding)>, StoreError> {
        self.access_policy_bindings_redis(on).await
    }

    async fn access_bindings(
        &self,
        on: Option<&crate::resource::ResourceRef>,
    ) -> Result<Vec<(crate::resource::ResourceRef, crate::access_binding::AccessBinding)>, StoreError> {
        self.access_bindings_redis(on).await
    }

    async fn resource_operation(
        &self,
        id: &OperationId,
    ) -> Result<Option<crate::resource::ResourceOperation>, StoreError> {
        self.resource_operation_redis(id).await
    }

    async fn resource_head(&self) -> Result<u64, StoreError> {
        self.resource_head_redis().await
    }

    async fn idempotency(
        &self,
        actor: &Actor,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let name = self.idempotency_key(actor, key);
        timed(self.timeout, async {
            let text: Option<String> = cmd("GET").arg(name).query_async(&mut conn).await.map_err(redis_error)?;
            let record = text.map(|t| decode_idempotency(&t, actor, key)).transpose()?;
            Ok(record.filter(|r| r.claim.is_live_at(now)))
        })
        .await
    }

    async fn operation(&self, id: &OperationId) -> Result<Option<Operation>, StoreError> {
        let mut conn = self.conn.clone();
        timed(self.timeout, async {
            let at: Option<String> = cmd("HGET")
                .arg(format!("{{{}}}:opids", self.prefix))
                .arg(id.as_str())
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            // `seq@log`; an id logged by an earlier version holds `seq` alone.
            let Some((seq, log)) = at.as_deref().and_then(|a| a.split_once('@')) else { return Ok(None) };
            if !log.starts_with(&*self.ops_prefix) || seq.parse::<u64>().is_err() {
                return Err(StoreError::Corrupt("an operation id index entry is invalid".to_owned()));
            }
            let found: Vec<String> =
                cmd("ZRANGEBYSCORE").arg(log).arg(seq).arg(seq).query_async(&mut conn).await.map_err(redis_error)?;
            found
                .first()
                .map(|json| serde_json::from_str::<Operation>(json))
                .transpose()
                .map_err(|_| StoreError::Corrupt("an operations log entry does not decode".to_owned()))
        })
        .await
    }
}

/// A page of an operations log (a sorted set of JSON entries scored by
/// sequence number), newest first, after the page's cursor: one entry more
/// than the page, which tells whether another follows.
pub(super) async fn log_page<C: ConnectionLike>(
    conn: &mut C,
    log: &str,
    page: &PageRequest<OperationCursor>,
) -> Result<Vec<(String, u64)>, StoreError> {
    let max = page.after.map_or_else(|| "+inf".to_owned(), |c| format!("({}", c.get()));
    cmd("ZREVRANGEBYSCORE")
        .arg(log)
        .arg(max)
        .arg("-inf")
        .arg("WITHSCORES")
        .arg("LIMIT")
        .arg(0)
        .arg(page.effective_limit() + 1)
        .query_async(conn)
        .await
        .map_err(redis_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::KeyStatus;

    #[test]
    fn prefixes_are_validated() {
        for ok in ["api-keys", "a", "tenant:42", "x_y.z", &"p".repeat(64)] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in ["", "a{b", "a}b", "a b", "a*", "a?", "a[b]", &"p".repeat(65)] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn builder_refuses_bad_prefixes_and_hides_the_url() {
        let b = RedisStore::builder("redis://:hunter2@127.0.0.1:1").prefix("{x}");
        assert!(!format!("{b:?}").contains("hunter2"));
        let e = b.connect_lazy().unwrap_err();
        assert_eq!(std::error::Error::source(&e).unwrap().to_string(), ConfigError::KeyPrefix.to_string());
    }

    #[test]
    fn fields_round_trip_and_absent_options_stay_absent() {
        let r = KeyRecord {
            id: KeyId::parse("aaaaaaaaaaaaaaaaaaaa").unwrap(),
            service_account_id: ServiceAccountId::new("robot").unwrap(),
            description: crate::record::Description::new("").unwrap(),
            created_at: Timestamp::from_unix_nanos(1_743_762_188_722_440_521),
            last_used_at: None,
            scopes: crate::scope::ScopeSet::default(),
            expires_at: Some(Timestamp::from_unix_nanos(-1)),
            masked_key: crate::secret::MaskedKey::from_tail(b"abc"),
            pepper_version: 7,
            digest: Digest::from_bytes([9; 32]),
            status: KeyStatus::Active,
            enabled: true,
            kind: KeyKind::Native,
            controls: None,
            links: crate::record::ReissueLinks::default(),
        };
        let fields = encode(&r);
        let names: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
        assert!(!names.contains(&"last_used_at") && !names.contains(&"replaced_by"));
        let map = fields.into_iter().map(|(f, v)| (f.to_owned(), v)).collect();
        assert_eq!(decode(map).unwrap(), r);
    }

    /// The record decoder of the previous release (record layout 1): what
    /// it did is [`decode_core`] with the `id` field and no controls — it
    /// knew no `v` field (unknown fields were ignored), always read the id
    /// from `id`, and its `Row` had no controls, so what it built is a
    /// record enabled and without controls. The layout check and
    /// [`take_controls`] in [`decode`] are what this release added.
    fn decode_layout_1(f: HashMap<String, String>) -> Result<KeyRecord, StoreError> {
        decode_core(f, "id", ControlColumns::default())
    }

    fn layout_3_record() -> KeyRecord {
        let mut r = KeyRecord::new(
            KeyId::parse("cccccccccccccccccccc").unwrap(),
            ServiceAccountId::new("robot").unwrap(),
            KeyKind::Native,
            1,
            Digest::from_bytes([3; 32]),
            crate::secret::MaskedKey::from_tail(b"abcdef"),
            Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
        );
        r.enabled = false;
        r.set_controls(
            crate::controls::KeyControls::new()
                .allowed_ips("10.0.0.0/8".parse().unwrap())
                .metadata(crate::controls::Metadata::parse(r#"{"plan":"pro"}"#).unwrap())
                .credits(crate::controls::Credits::new(crate::controls::Credits::MAX).unwrap()),
        );
        r
    }

    fn as_map(fields: Vec<(&'static str, String)>) -> HashMap<String, String> {
        fields.into_iter().map(|(f, v)| (f.to_owned(), v)).collect()
    }

    /// What an older binary does with a record carrying controls: the
    /// layout 1 decoder refuses it (no `id`), rather than reading a
    /// disabled key with an allow-list as an enabled key without one; the
    /// layout 2 decoder refuses layout 3 by its number. Plain keys stay
    /// readable.
    #[test]
    fn the_previous_decoder_refuses_a_layout_3_record() {
        let r = layout_3_record();
        let map = as_map(encode(&r));
        assert_eq!(map.get("v").map(String::as_str), Some("3"));
        assert!(!map.contains_key("allowed_ips") && !map.contains_key("metadata"), "{map:?}");
        assert_eq!(
            map.get("controls").map(String::as_str),
            Some(r#"{"metadata":{"plan":"pro"},"allowedIps":["10.0.0.0/8"]}"#)
        );
        let e = decode_layout_1(map.clone()).unwrap_err();
        assert!(matches!(&e, StoreError::Corrupt(m) if m.contains("`id`")), "{e:?}");
        assert!(e.is_unavailable(), "fails closed");
        assert_eq!(decode(map).unwrap(), r);
        let plain = KeyRecord { enabled: true, controls: None, ..r };
        let map = as_map(encode(&plain));
        assert!(!map.contains_key("v"), "a plain key stays in layout 1");
        assert_eq!(decode_layout_1(map.clone()).unwrap(), plain);
        assert_eq!(decode(map).unwrap(), plain);
    }

    /// A layout 2 record (one field per control, as the previous release
    /// wrote it) reads as the same record; a bad legacy field is corrupt.
    #[test]
    fn layout_2_records_still_read() {
        let r = layout_3_record();
        let mut map = as_map(encode(&r));
        map.remove("controls");
        map.insert("v".to_owned(), "2".to_owned());
        map.insert("metadata".to_owned(), r#"{"plan":"pro"}"#.to_owned());
        map.insert("allowed_ips".to_owned(), "10.0.0.0/8".to_owned());
        assert_eq!(decode(map.clone()).unwrap(), r);
        map.insert("rate_limits".to_owned(), "SECRET".to_owned());
        let e = decode(map).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(text.contains("rate_limits") && !text.contains("SECRET"), "{text}");
    }

    /// A layout this version does not know is refused, naming it.
    #[test]
    fn unknown_layouts_are_refused() {
        let mut map = as_map(encode(&layout_3_record()));
        for (v, shown) in [("4", "4"), ("x SECRET", "unknown")] {
            map.insert("v".to_owned(), v.to_owned());
            let e = decode(map.clone()).unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(matches!(e, StoreError::Corrupt(_)) && text.contains(&format!("version {shown}")), "{text}");
            assert!(!text.contains("SECRET"));
        }
        let mut map = as_map(encode(&layout_3_record()));
        map.insert("enabled".to_owned(), "yes".to_owned());
        assert!(matches!(decode(map), Err(StoreError::Corrupt(m)) if m.contains("enabled")));
    }

    /// A store on the live server under a fresh prefix, `test` run on it,
    /// the prefix purged after.
    async fn on_live_server<F, Fut>(test: F)
    where
        F: FnOnce(RedisStore) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let url = std::env::var("API_KEYS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let prefix = format!("api-keys-test-{}", KeyId::generate().unwrap());
        let store = RedisStore::builder(url)
            .prefix(prefix)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("Redis at 127.0.0.1:6379 unreachable ({e}); this test needs it"));
        let outcome = tokio::spawn(test(store.clone())).await;
        store.purge().await.unwrap();
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    async fn raw(s: &RedisStore, id: &KeyId) -> HashMap<String, String> {
        let mut conn = s.conn.clone();
        cmd("HGETALL").arg(s.record_key(id)).query_async(&mut conn).await.unwrap()
    }

    async fn logged_update(s: &RedisStore, id: KeyId, update: KeyUpdate) -> KeyRecord {
        let entry = crate::operation::LogEntry::new(
            id,
            crate::operation::OperationKind::Update,
            crate::operation::Actor::system(),
            Timestamp::from_unix_nanos(1),
            crate::operation::OperationChanges::default(),
        )
        .unwrap();
        s.commit(Change::Update { id, update }, &[entry]).await.unwrap().unwrap()
    }

    /// Against the live server: `list_expiring` reads the expiry index, not
    /// the keyspace. Records written before the index (raw `HSET`, as the
    /// previous release wrote them) are indexed by the first listing; a
    /// record written behind the scripts' back after that is not seen
    /// (proof that no `SCAN` ran) until the mark is deleted; revoked and
    /// deleted keys leave the index.
    #[tokio::test]
    async fn expiring_keys_are_listed_from_the_index() {
        on_live_server(|store| async move {
            let base = Timestamp::from_unix_nanos(1_800_000_000_000_000_000);
            let at = |hours: u64| base.saturating_add(Duration::from_secs(hours * 3600));
            let key = |n: u8, expires: Option<Timestamp>| KeyRecord {
                id: KeyId::parse(&format!("{}", char::from(b'a' + n)).repeat(20)).unwrap(),
                enabled: true,
                controls: None,
                expires_at: expires,
                ..layout_3_record()
            };
            let raw_write = |r: KeyRecord| {
                let store = store.clone();
                async move {
                    let mut conn = store.conn.clone();
                    let mut c = cmd("HSET");
                    c.arg(store.record_key(&r.id));
                    for (f, v) in encode(&r) {
                        c.arg(f).arg(v);
                    }
                    let () = c.query_async(&mut conn).await.unwrap();
                }
            };
            let listed = |from: Timestamp, until: Timestamp| {
                let store = store.clone();
                async move {
                    let page = store.list_expiring(from..until, PageRequest::first(100)).await.unwrap();
                    page.items.iter().map(|r| r.id).collect::<Vec<_>>()
                }
            };
            let (a, b, never) = (key(0, Some(at(1))), key(1, Some(at(2))), key(2, None));
            let (old, behind) = (key(3, Some(at(1))), key(4, Some(at(1))));
            for r in [&a, &b, &never] {
                store.insert(r.clone()).await.unwrap();
            }
            raw_write(old.clone()).await;
            assert_eq!(listed(at(0), at(3)).await, vec![a.id, b.id, old.id], "built once, with the older record");
            assert_eq!(listed(at(1), at(2)).await, vec![a.id, old.id], "the window is half-open");
            raw_write(behind.clone()).await;
            assert_eq!(listed(at(0), at(3)).await, vec![a.id, b.id, old.id], "read from the index, no scan");
            let mut conn = store.conn.clone();
            let () = cmd("DEL").arg(&*store.names.expiry[1]).query_async(&mut conn).await.unwrap();
            assert_eq!(listed(at(0), at(3)).await, vec![a.id, b.id, old.id, behind.id], "rebuilt without the mark");
            store.revoke(&a.id).await.unwrap();
            store.delete(&b.id).await.unwrap();
            assert_eq!(listed(at(0), at(3)).await, vec![old.id, behind.id]);
            let indexed: u64 = cmd("ZCARD").arg(&*store.names.expiry[0]).query_async(&mut conn).await.unwrap();
            assert_eq!(indexed, 2, "revoked and deleted keys left the index");
        })
        .await;
    }

    /// Against the live server: `ids_after` pages through the id index.
    /// A record written before the index (raw `HSET`, as the previous
    /// release wrote it) is indexed by the first call; one written behind
    /// the scripts' back after that is not seen (no `SCAN` ran); inserted
    /// keys join and deleted keys leave it.
    #[tokio::test]
    async fn ids_are_paged_from_the_index() {
        on_live_server(|store| async move {
            let key = |c: char| KeyRecord {
                id: KeyId::parse(&c.to_string().repeat(20)).unwrap(),
                enabled: true,
                controls: None,
                ..layout_3_record()
            };
            let mut conn = store.conn.clone();
            let raw = |r: &KeyRecord| {
                let mut c = cmd("HSET");
                c.arg(store.record_key(&r.id));
                for (f, v) in encode(r) {
                    c.arg(f).arg(v);
                }
                c
            };
            let (a, b, old, behind) = (key('a'), key('b'), key('o'), key('z'));
            store.insert(a.clone()).await.unwrap();
            store.insert(b.clone()).await.unwrap();
            let () = raw(&old).query_async(&mut conn).await.unwrap();
            assert_eq!(store.ids_after(None, 2).await.unwrap(), vec![a.id, b.id], "a page of two, built first");
            assert_eq!(store.ids_after(Some(b.id), 2).await.unwrap(), vec![old.id], "the older record too");
            let () = raw(&behind).query_async(&mut conn).await.unwrap();
            assert_eq!(store.ids_after(Some(b.id), 10).await.unwrap(), vec![old.id], "read from the index, no scan");
            store.delete(&a.id).await.unwrap();
            assert_eq!(store.ids_after(None, 10).await.unwrap(), vec![b.id, old.id]);
        })
        .await;
    }

    /// Against the live server: disabling a plain (layout 1) key through a
    /// commit moves it to layout 3 in the same script, which the previous
    /// decoder refuses.
    #[tokio::test]
    async fn disabling_a_layout_1_key_moves_it_to_layout_3() {
        on_live_server(|store| async move {
            let plain = KeyRecord { enabled: true, controls: None, ..layout_3_record() };
            store.insert(plain.clone()).await.unwrap();
            assert_eq!(decode_layout_1(raw(&store, &plain.id).await).unwrap(), plain);
            logged_update(&store, plain.id, KeyUpdate::new().enabled(false)).await;
            let map = raw(&store, &plain.id).await;
            assert_eq!((map.get("v").map(String::as_str), map.get("id")), (Some("3"), None));
            assert!(decode_layout_1(map.clone()).is_err(), "the previous decoder refuses it");
            assert!(!decode(map).unwrap().enabled);
        })
        .await;
    }

    /// Against the live server: a record written by the previous release
    /// (layout 2, raw `HSET` of its fields, its external-id index entry)
    /// reads back whole, is listed by its external id and spends its
    /// credits; an update of one control moves it to layout 3 keeping every
    /// other control and the credits as the spend left them.
    #[tokio::test]
    async fn a_layout_2_record_reads_and_moves_to_layout_3_on_update() {
        on_live_server(|store| async move {
            let id = KeyId::parse("dddddddddddddddddddd").unwrap();
            let digest = Digest::from_bytes([3; 32]).to_base64();
            let fields: [(&str, &str); 19] = [
                ("v", "2"),
                ("key_id", id.as_str()),
                ("service_account_id", "robot"),
                ("description", "old"),
                ("created_at", "1700000000000000000"),
                ("scopes", "a.read,b.manage"),
                ("expires_at", "1900000000000000000"),
                ("masked_key", "abcdef"),
                ("pepper_version", "1"),
                ("digest", digest.as_str()),
                ("status", "active"),
                ("kind", "native"),
                ("enabled", "0"),
                ("metadata", r#"{"plan":"pro","n":[1,null]}"#),
                ("external_id", "cust_7"),
                ("allowed_ips", "10.0.0.0/8,2001:db8::/32"),
                ("rate_limits", "api=100/1s:burst=20"),
                ("credits_remaining", "10"),
                ("credits_refilled_at", "5"),
            ];
            let mut conn = store.conn.clone();
            let mut hset = cmd("HSET");
            hset.arg(store.record_key(&id));
            for (f, v) in fields {
                hset.arg(f).arg(v);
            }
            let _: i64 = hset.query_async(&mut conn).await.unwrap();
            let account = store.account_key(&ServiceAccountId::new("robot").unwrap());
            let _: i64 = cmd("ZADD").arg(account).arg(0).arg(id.as_str()).query_async(&mut conn).await.unwrap();
            let member = format!("cust_7 {}", id.as_str());
            let _: i64 = cmd("ZADD").arg(&*store.ext_index).arg(0).arg(member).query_async(&mut conn).await.unwrap();
            let r = store.get(&id).await.unwrap().unwrap();
            let c = r.controls();
            assert!(!r.enabled);
            assert_eq!(c.metadata.as_ref().unwrap().to_json(), r#"{"n":[1,null],"plan":"pro"}"#);
            assert_eq!(c.external_id.as_ref().unwrap().as_str(), "cust_7");
            assert_eq!(c.allowed_ips.as_ref().unwrap().to_string(), "10.0.0.0/8,2001:db8::/32");
            assert_eq!(c.rate_limits.as_ref().unwrap().to_string(), "api=100/1s:burst=20");
            assert_eq!(c.credits.unwrap().remaining, 10);
            let owner = ExternalId::new("cust_7").unwrap();
            let listed = store.list_by_external_id(&owner, PageRequest::starting(10, None)).await.unwrap();
            assert_eq!(listed.items.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
            assert!(matches!(store.spend_credits(&id, 3, None).await.unwrap(), CreditSpend::Spent { remaining: 7 }));
            let before = KeyRecord::clone(&store.get(&id).await.unwrap().unwrap());
            let list: crate::controls::IpAllowList = "192.0.2.0/24".parse().unwrap();
            let got = logged_update(&store, id, KeyUpdate::new().allowed_ips(Some(list.clone()))).await;
            let mut expected = before.clone();
            expected
                .set_controls(crate::controls::KeyControls { allowed_ips: Some(list), ..before.controls().clone() });
            assert_eq!(got, expected, "only the allow-list changed");
            let map = raw(&store, &id).await;
            assert_eq!(map.get("v").map(String::as_str), Some("3"));
            for gone in ["metadata", "allowed_ips", "rate_limits"] {
                assert!(!map.contains_key(gone), "{gone} moved into `controls`: {map:?}");
            }
            assert_eq!(map.get("credits_remaining").map(String::as_str), Some("7"));
            assert_eq!(decode(map).unwrap(), expected);
        })
        .await;
    }

    #[test]
    fn missing_or_bad_fields_are_corrupt() {
        let e = decode(HashMap::from([("id".to_owned(), "aaaaaaaaaaaaaaaaaaaa".to_owned())])).unwrap_err();
        assert!(matches!(&e, StoreError::Corrupt(m) if m.contains("service_account_id")), "{e:?}");
    }
}
