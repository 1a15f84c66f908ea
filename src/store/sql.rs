//! The one SQL implementation behind [`SqliteStore`](crate::SqliteStore) and
//! [`PostgresStore`](crate::PostgresStore).
//!
//! Both stores keep the same table with the same columns (see
//! [`backend`](super::backend) for the encodings) and run the same
//! statements; both drivers accept `$N` placeholders. What differs is small
//! and lives in a [`Dialect`] each store file implements: the scope column's
//! type, the statement that reads the old row of a reissue (PostgreSQL locks
//! it with `FOR UPDATE`; SQLite takes the write lock up front with
//! `BEGIN IMMEDIATE`), and the batched last-used update.
//!
//! [`sql_key_store!`] writes the [`KeyStore`](crate::KeyStore) impl for a store
//! type with `pool` and `timeout` fields from those pieces. It is a macro,
//! not a generic, because every sqlx call then names one concrete database
//! and needs none of the higher-ranked bounds a generic over
//! `sqlx::Database` drags along; the body reads as ordinary code over the
//! alias `Db`.
//!
//! # Extending
//! - A new statement: a `const` here (with `$N` placeholders, built with
//!   `select!` if it reads whole rows) and a call in the macro — or, if
//!   the dialects need different text, one more associated item on
//!   [`Dialect`].
//! - A change that must be logged: a [`Change`](crate::Change) variant,
//!   handled in `apply_change` (in the macro), which runs inside
//!   `commit`'s transaction before the log rows are written.
//! - A new key control: nothing here (it is kept in the `controls` JSON
//!   column; see [`backend`](super::backend)) unless a statement must query
//!   it, which makes it a column.
//! - Resources (organizations, clouds, folders, service accounts): their
//!   statements and methods are in [`sql_resources`](super::sql_resources),
//!   expanded inside the same macro.
//! - A new column: a new migration file per dialect (never edit an applied
//!   one: their checksums are recorded), the column in [`columns!`] and
//!   [`INSERT`], one `.bind` in `insert_row` and one `try_get` in `decode`
//!   (in the macro), and the field in [`Row`](super::backend::Row).

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::key_store::StoreError;
use crate::clock::Timestamp;
use crate::scope::ScopeSet;
use crate::token::KeyId;

/// The table in which the SQL stores track applied schema versions (not
/// sqlx's default `_sqlx_migrations`, so an application's own sqlx
/// migrations in the same database never clash with these).
pub const MIGRATIONS_TABLE: &str = "_api_keys_migrations";

/// What one SQL database does differently from the other.
/// Appends one change feed row (`$1` key id, `$2` deleted, `$3` time).
pub(super) const FEED_APPEND: &str = "INSERT INTO api_key_changes (key_id, gone, created_at) VALUES ($1, $2, $3)";

/// An `i64` column read as the `u64` it stores, bit for bit.
pub(super) fn bits(n: i64) -> u64 {
    u64::from_ne_bytes(n.to_ne_bytes())
}

/// A feed position from its stored parts.
pub(super) fn position(epoch: u64, (major, minor): (i64, i64)) -> crate::store::feed::FeedPosition {
    crate::store::feed::FeedPosition::new(epoch, bits(major), bits(minor))
}

/// A feed position's parts as stored (positions come from stored `i64`s).
pub(super) fn parts(at: crate::store::feed::FeedPosition) -> (i64, i64) {
    let (major, minor) = at.parts();
    (i64::from_ne_bytes(major.to_ne_bytes()), i64::from_ne_bytes(minor.to_ne_bytes()))
}

/// Feed rows decoded: the changes, and the stored position of the last one.
pub(super) type FeedRows = (Vec<crate::store::feed::FeedChange>, Option<(i64, i64)>);

/// Feed rows as changes, and the position of the last one.
pub(super) fn decode_feed<R: sqlx::Row>(rows: &[R]) -> Result<FeedRows, StoreError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let mut changes = Vec::with_capacity(rows.len());
    let mut last = None;
    for r in rows {
        let id: String = r.try_get("key_id").map_err(sqlx_error)?;
        let key_id =
            KeyId::parse(&id).map_err(|_| StoreError::Corrupt("a change feed row's key id is invalid".into()))?;
        changes.push(crate::store::feed::FeedChange::new(key_id, r.try_get("gone").map_err(sqlx_error)?));
        last = Some((r.try_get("major").map_err(sqlx_error)?, r.try_get("minor").map_err(sqlx_error)?));
    }
    Ok((changes, last))
}

pub(super) trait Dialect {
    /// The sqlx database.
    type Db: sqlx::Database;
    /// How the `scopes` column is bound.
    type Scopes<'a>;

    /// Statement that begins a reissue's transaction.
    const BEGIN_WRITE: &'static str;
    /// Statement that reads the old row of a reissue inside it.
    const SELECT_FOR_REISSUE: &'static str;
    /// The schema versions in order (`migrations/<dialect>/NNNN_*.sql`).
    const SCHEMA: &'static [SchemaVersion];
    /// Statement that purges expired idempotency records (`$1` the time,
    /// `$2` how many at most).
    const PURGE_IDEMPOTENCY: &'static str = PURGE_IDEMPOTENCY;
    /// Statement reading the change feed's state: `epoch`, the newest
    /// readable position (`top_major`, `top_minor`) and how far pruning
    /// went (`pruned_major`, `pruned_minor`).
    const FEED_META: &'static str;
    /// Statement deleting up to `$2` feed rows written before `$1`,
    /// returning each one's position major or minor part as `mark`.
    const FEED_PRUNE: &'static str;
    /// Statement raising the pruning mark to `$1` (never lowering it).
    const FEED_MARK: &'static str;

    /// The feed rows after `after`, up to `top`, at most `limit`, in order,
    /// with columns `major`, `minor`, `key_id`, `gone`.
    fn feed_rows(
        after: (i64, i64),
        top: (i64, i64),
        limit: i64,
    ) -> sqlx::query::Query<'static, Self::Db, <Self::Db as sqlx::Database>::Arguments>;

    /// The value bound to the `scopes` column.
    fn encode_scopes(scopes: &ScopeSet) -> Self::Scopes<'_>;

    /// Reads the `scopes` column as scope names.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the column does not decode.
    fn decode_scopes(row: &<Self::Db as sqlx::Database>::Row) -> Result<Vec<String>, StoreError>;

    /// One statement that records a batch of last-used times; the newest
    /// time per id wins and no time moves backwards.
    fn touch(
        updates: &[(KeyId, Timestamp)],
    ) -> sqlx::query::Query<'_, Self::Db, <Self::Db as sqlx::Database>::Arguments>;

    /// One statement that reads the rows of every id in `ids` (in any
    /// order; absent ids have no row).
    fn select_many(ids: &[KeyId]) -> sqlx::query::Query<'static, Self::Db, <Self::Db as sqlx::Database>::Arguments>;
}

/// The column list, once, for every statement that names all columns.
macro_rules! columns {
    () => {
        "id, service_account_id, description, created_at, last_used_at, scopes, expires_at, \
         masked_key, pepper_version, digest, status, kind, replaced_by, reissued_from, \
         enabled, external_id, credits_remaining, credits_refill_amount, \
         credits_refill_period, credits_refill_at, credits_refilled_at, controls"
    };
}

/// `SELECT <every column> FROM api_keys <clause>`.
macro_rules! select {
    ($clause:literal) => {
        concat!("SELECT ", $crate::store::sql::columns!(), " FROM api_keys ", $clause)
    };
}
pub(crate) use columns;
pub(super) use select;

/// Inserts one row; a duplicate id or imported digest writes nothing.
pub(super) const INSERT: &str = concat!(
    "INSERT INTO api_keys (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
     $15, $16, $17, $18, $19, $20, $21, $22) ON CONFLICT DO NOTHING"
);
pub(super) const SELECT_BY_ID: &str = select!("WHERE id = $1");
/// [`SELECT_BY_ID`], locking the row until the transaction ends (PostgreSQL).
#[cfg(feature = "postgres")]
pub(super) const SELECT_BY_ID_FOR_UPDATE: &str = select!("WHERE id = $1 FOR UPDATE");
pub(super) const SELECT_BY_DIGEST: &str = select!("WHERE digest = $1 AND kind = 'imported'");
pub(super) const LIST_FIRST: &str = select!("WHERE service_account_id = $1 ORDER BY id LIMIT $2");
pub(super) const LIST_AFTER: &str = select!("WHERE service_account_id = $1 AND id > $2 ORDER BY id LIMIT $3");
/// Every id after `$1` (`''` sorts before every id), for the flood shield.
pub(super) const IDS_AFTER: &str = "SELECT id FROM api_keys WHERE id > $1 ORDER BY id LIMIT $2";
pub(super) const REVOKE: &str = "UPDATE api_keys SET status = 'revoked' WHERE id = $1";
pub(super) const DELETE: &str = "DELETE FROM api_keys WHERE id = $1";
/// Links a reissued key to its successor and revokes or limits it.
pub(super) const RELINK: &str = "UPDATE api_keys SET replaced_by = $2, status = $3, expires_at = $4 WHERE id = $1";
/// A key's owner, which its log entries record.
pub(super) const SELECT_ACCOUNT: &str = "SELECT service_account_id FROM api_keys WHERE id = $1";
/// Writes the fields an update may change, but the credits.
pub(super) const UPDATE: &str = "UPDATE api_keys SET description = $2, scopes = $3, expires_at = $4, enabled = $5, \
     external_id = $6, controls = $7 WHERE id = $1";
/// Replaces the credits (only for an update that sets them: other updates
/// never write the count a concurrent spend may have changed).
pub(super) const UPDATE_CREDITS: &str = "UPDATE api_keys SET credits_remaining = $2, credits_refill_amount = $3, \
     credits_refill_period = $4, credits_refill_at = $5, credits_refilled_at = $6 WHERE id = $1";
/// Whether a refill is due, given the due instant `$3` (unix nanos or NULL).
macro_rules! refill_due {
    () => {
        "(credits_refill_amount IS NOT NULL AND $3 IS NOT NULL \
          AND (credits_refilled_at IS NULL OR credits_refilled_at < $3))"
    };
}
/// The count a spend checks: the refill amount when one is due, else what remains.
macro_rules! available {
    () => {
        concat!("(CASE WHEN ", refill_due!(), " THEN credits_refill_amount ELSE credits_remaining END)")
    };
}
/// Spends `$2` credits of key `$1` in one statement, refilling first when a
/// refill is due at `$3`: a row comes back (the count left) only if the
/// credits were spent. Each dialect runs it atomically (PostgreSQL locks
/// the row and re-checks the condition on the newest version of a row a
/// concurrent spend changed; SQLite has one writer).
pub(super) const SPEND: &str = concat!(
    "UPDATE api_keys SET credits_remaining = ",
    available!(),
    " - $2, credits_refilled_at = CASE WHEN ",
    refill_due!(),
    " THEN $3 ELSE credits_refilled_at END WHERE id = $1 AND credits_remaining IS NOT NULL AND ",
    available!(),
    " >= $2 RETURNING credits_remaining"
);
pub(super) const LIST_EXTERNAL_FIRST: &str = select!("WHERE external_id = $1 ORDER BY id LIMIT $2");
pub(super) const LIST_EXTERNAL_AFTER: &str = select!("WHERE external_id = $1 AND id > $2 ORDER BY id LIMIT $3");
pub(super) const LIST_EXPIRING_FIRST: &str =
    select!("WHERE status = 'active' AND expires_at >= $1 AND expires_at < $2 ORDER BY id LIMIT $3");
pub(super) const LIST_EXPIRING_AFTER: &str =
    select!("WHERE status = 'active' AND expires_at >= $1 AND expires_at < $2 AND id > $3 ORDER BY id LIMIT $4");
/// The newest schema version recorded in the database.
pub(super) const NEWEST_VERSION: &str = "SELECT MAX(version) FROM _api_keys_migrations";
/// Appends one operations log entry; an id already logged writes nothing.
pub(super) const LOG: &str = "INSERT INTO api_key_operations \
     (id, key_id, service_account_id, kind, actor, created_at, changes, response) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";
/// One key's log entries before sequence `$2`, newest first.
pub(super) const OPERATIONS: &str = "SELECT seq, id, key_id, service_account_id, kind, actor, created_at, changes, \
     response FROM api_key_operations WHERE key_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3";
/// One log entry by its id.
pub(super) const OPERATION: &str = "SELECT seq, id, key_id, service_account_id, kind, actor, created_at, changes, \
     response FROM api_key_operations WHERE id = $1";

/// Records an idempotency claim, replacing the key's record only if it has
/// expired by the claim's time: no row changed means the key is taken.
pub(super) const CLAIM: &str = "INSERT INTO api_key_idempotency \
     (actor, key_hash, fingerprint, operation_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (actor, key_hash) DO UPDATE SET fingerprint = excluded.fingerprint, \
     operation_id = excluded.operation_id, created_at = excluded.created_at, expires_at = excluded.expires_at \
     WHERE api_key_idempotency.expires_at <= excluded.created_at";
/// A live idempotency record.
pub(super) const IDEMPOTENCY: &str = "SELECT fingerprint, operation_id, created_at, expires_at \
     FROM api_key_idempotency WHERE actor = $1 AND key_hash = $2 AND expires_at > $3";
/// Deletes up to `$2` records expired by `$1` (SQLite: writers are
/// serialised, nothing to skip).
pub(super) const PURGE_IDEMPOTENCY: &str = "DELETE FROM api_key_idempotency WHERE (actor, key_hash) IN \
     (SELECT actor, key_hash FROM api_key_idempotency WHERE expires_at <= $1 LIMIT $2)";

/// Records a pepper fingerprint unless the version has one.
pub(super) const INSERT_PEPPER: &str =
    "INSERT INTO api_key_peppers (version, fingerprint) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING";
/// The fingerprint recorded for a pepper version.
pub(super) const SELECT_PEPPER: &str = "SELECT fingerprint FROM api_key_peppers WHERE version = $1";

/// One embedded schema version: applied once, in its own transaction, and
/// never edited afterwards (its checksum is recorded).
pub(super) struct SchemaVersion {
    /// Version number (the file's `NNNN` prefix).
    pub(super) version: i64,
    /// What it does.
    pub(super) description: &'static str,
    /// The SQL.
    pub(super) sql: &'static str,
}

/// Every schema version of a dialect, in order, from its directory under
/// `src/store/migrations/` (one list for both dialects: a new version is a
/// file per dialect and one line here).
macro_rules! schema_versions {
    ($dialect:literal) => {{
        // One version: number, description, file name without `.sql`.
        macro_rules! v {
            ($version:literal, $description:literal, $file:literal) => {
                SchemaVersion {
                    version: $version,
                    description: $description,
                    sql: include_str!(concat!("migrations/", $dialect, "/", $file, ".sql")),
                }
            };
        }
        &[
            v!(1, "create api_keys", "0001_create_api_keys"),
            v!(2, "pepper fingerprints; imported keys masked by digest", "0002_pepper_fingerprints"),
            v!(3, "create api_key_operations", "0003_create_api_key_operations"),
            v!(4, "operations log: leak entries", "0004_leak_operations"),
            v!(5, "enabled flag and key controls", "0005_key_controls"),
            v!(6, "operations log: response snapshots", "0006_operation_responses"),
            v!(7, "idempotency records", "0007_idempotency"),
            v!(8, "key controls without a column of their own in one JSON column", "0008_controls_column"),
            v!(9, "the change feed", "0009_change_feed"),
            v!(10, "organizations, clouds, folders and service accounts", "0010_resources"),
            v!(11, "access policy bindings", "0011_access_policies"),
            v!(12, "access bindings", "0012_access_bindings"),
        ]
    }};
}
pub(super) use schema_versions;

/// The embedded schema versions of a dialect, tracked in [`MIGRATIONS_TABLE`].
pub(super) fn migrator<D: Dialect>() -> Migrator {
    migrator_of(D::SCHEMA)
}

/// A migrator for some schema versions (the upgrade tests build the
/// previous release's schema with it).
pub(super) fn migrator_of(versions: &[SchemaVersion]) -> Migrator {
    let versions = versions
        .iter()
        .map(|v| Migration::new(v.version, v.description.into(), MigrationType::Simple, v.sql.into_sql_str(), false));
    let mut m = Migrator::with_migrations(versions.collect());
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

/// Maps a failed migration: statement errors as [`sqlx_error`], anything
/// else (an unknown applied version, a checksum mismatch) as
/// [`StoreError::Unavailable`].
pub(super) fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => sqlx_error(e),
        other => StoreError::unavailable(other),
    }
}

/// The newest schema version this build knows.
pub(super) fn supported_version(versions: &[SchemaVersion]) -> i64 {
    versions.last().map_or(0, |v| v.version)
}

/// Refuses a database whose newest applied version (`found`, `None` for a
/// new database) is newer than this build's: it was migrated by a newer
/// version of the crate, whose rows this one would misread.
///
/// # Errors
/// [`StoreError::SchemaTooNew`] naming both versions.
pub(super) fn check_not_newer(found: Option<i64>, versions: &[SchemaVersion]) -> Result<(), StoreError> {
    let supported = supported_version(versions);
    match found {
        Some(found) if found > supported => Err(StoreError::SchemaTooNew { found, supported }),
        _ => Ok(()),
    }
}

/// Maps a sqlx error: database errors lose everything but their code,
/// constraint name and message (PostgreSQL's `detail` can quote whole rows,
/// digests included, and `Debug` would print it); decode errors become
/// [`StoreError::Corrupt`] naming the column; everything else is
/// [`StoreError::Unavailable`] with the driver error as its source.
pub(crate) fn sqlx_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) => StoreError::Unavailable(Box::new(DatabaseError {
            code: db.code().map(|c| c.into_owned()),
            constraint: db.constraint().map(str::to_owned),
            message: db.message().to_owned(),
        })),
        sqlx::Error::ColumnDecode { index, .. } => StoreError::Corrupt(format!("column {index} could not be decoded")),
        sqlx::Error::ColumnNotFound(name) => StoreError::Corrupt(format!("column {name} is missing")),
        sqlx::Error::Decode(_) => StoreError::Corrupt("a value could not be decoded".to_owned()),
        other => StoreError::Unavailable(Box::new(other)),
    }
}

/// Whether `e` is SQLite's "database is locked" (`SQLITE_BUSY` and its
/// extended codes).
#[cfg(feature = "sqlite")]
pub(crate) fn is_busy(e: &StoreError) -> bool {
    let StoreError::Unavailable(source) = e else { return false };
    source
        .downcast_ref::<DatabaseError>()
        .and_then(|d| d.code.as_deref())
        .and_then(|c| c.parse::<i64>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

/// An error reported by the database server, without the row data some
/// servers attach to it.
#[derive(Debug)]
pub(crate) struct DatabaseError {
    code: Option<String>,
    constraint: Option<String>,
    message: String,
}

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database error")?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(c) = &self.constraint {
            write!(f, " (constraint {c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DatabaseError {}

/// Defines the store type `$store` (a pool and the per-call timeout, with
/// `from_pool`, `timeout`, `pool`, `migrate` and a `Debug` that shows only
/// the timeout) and its `impl KeyStore` from the statements above and the
/// dialect `$dialect`.
macro_rules! sql_key_store {
    ($(#[$attr:meta])* pub struct $store:ident { pool: $pool:ty } dialect: $dialect:ty) => {
        $(#[$attr])*
        #[derive(Clone)]
        pub struct $store {
            pool: $pool,
            timeout: std::time::Duration,
        }

        const _: () = {
            use std::ops::Range;
            use std::sync::Arc;
            use std::time::Duration;

            use sqlx::Row as _;

            use $crate::clock::Timestamp;
            use $crate::digest::Digest;
            use $crate::operation::{
                Actor, Change, LogEntry, Operation, OperationCursor, OperationId, OperationKind, apply_update,
            };
            use $crate::record::{KeyRecord, ServiceAccountId};
            use $crate::controls::{CreditSpend, ExternalId};
            use $crate::store::backend::{ControlColumns, Row, timed};
            use $crate::store::key_store::{KeyStore, OldKeyFate, OperationPage, Page, PageRequest, StoreError, apply_reissue};
            use $crate::store::sql::{self, Dialect, sqlx_error};
            use $crate::store::idempotency::{
                IdempotencyClaim, IdempotencyKey, IdempotencyRecord, PURGE_BATCH as IDEMPOTENCY_PURGE_BATCH,
            };
            use $crate::token::KeyId;

            type D = $dialect;
            type Db = <D as Dialect>::Db;
            type Query<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>;

            /// The query of one page and its length: `first` for the first
            /// page, `after` (the last id seen bound after `bind`'s values)
            /// for the next; both end with the row count, one more than the
            /// page holds, which tells whether another page follows.
            fn paged<'q>(
                page: &'q PageRequest,
                (first, after): (&'static str, &'static str),
                bind: impl Fn(Query<'q>) -> Query<'q>,
            ) -> (Query<'q>, usize) {
                let limit = page.effective_limit();
                let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
                let query = match &page.after {
                    None => bind(sqlx::query(first)).bind(fetch),
                    Some(last) => bind(sqlx::query(after)).bind(last.as_str()).bind(fetch),
                };
                (query, limit)
            }

            fn decode(r: &<Db as sqlx::Database>::Row) -> Result<KeyRecord, StoreError> {
                let row = Row {
                    id: r.try_get("id").map_err(sqlx_error)?,
                    service_account_id: r.try_get("service_account_id").map_err(sqlx_error)?,
                    description: r.try_get("description").map_err(sqlx_error)?,
                    created_at: r.try_get("created_at").map_err(sqlx_error)?,
                    last_used_at: r.try_get("last_used_at").map_err(sqlx_error)?,
                    scopes: D::decode_scopes(r)?,
                    expires_at: r.try_get("expires_at").map_err(sqlx_error)?,
                    masked_key: r.try_get("masked_key").map_err(sqlx_error)?,
                    pepper_version: r.try_get("pepper_version").map_err(sqlx_error)?,
                    digest: r.try_get("digest").map_err(sqlx_error)?,
                    status: r.try_get("status").map_err(sqlx_error)?,
                    kind: r.try_get("kind").map_err(sqlx_error)?,
                    replaced_by: r.try_get("replaced_by").map_err(sqlx_error)?,
                    reissued_from: r.try_get("reissued_from").map_err(sqlx_error)?,
                    controls: ControlColumns {
                        enabled: r.try_get("enabled").map_err(sqlx_error)?,
                        external_id: r.try_get("external_id").map_err(sqlx_error)?,
                        controls: r.try_get("controls").map_err(sqlx_error)?,
                        credits_remaining: r.try_get("credits_remaining").map_err(sqlx_error)?,
                        credits_refill_amount: r.try_get("credits_refill_amount").map_err(sqlx_error)?,
                        credits_refill_period: r.try_get("credits_refill_period").map_err(sqlx_error)?,
                        credits_refill_at: r.try_get::<Option<i32>, _>("credits_refill_at").map_err(sqlx_error)?.map(i64::from),
                        credits_refilled_at: r.try_get("credits_refilled_at").map_err(sqlx_error)?,
                    },
                };
                row.into_record()
            }

            /// Inserts `r`; `Ok(false)` when its id or imported digest
            /// already exists (nothing written then).
            async fn insert_row<'e, E>(executor: E, r: &KeyRecord) -> Result<bool, StoreError>
            where
                E: sqlx::Executor<'e, Database = Db>,
            {
                let c = ControlColumns::of(r);
                let done = sqlx::query(sql::INSERT)
                    .bind(r.id.as_str())
                    .bind(r.service_account_id.as_str())
                    .bind(r.description.as_str())
                    .bind(r.created_at.unix_nanos())
                    .bind(r.last_used_at.map(Timestamp::unix_nanos))
                    .bind(D::encode_scopes(&r.scopes))
                    .bind(r.expires_at.map(Timestamp::unix_nanos))
                    .bind(r.masked_key.tail())
                    .bind(i64::from(r.pepper_version))
                    .bind(&r.digest.as_bytes()[..])
                    .bind(r.status.as_str())
                    .bind(r.kind.as_str())
                    .bind(r.links.replaced_by.as_ref().map(KeyId::as_str))
                    .bind(r.links.reissued_from.as_ref().map(KeyId::as_str))
                    .bind(c.enabled)
                    .bind(c.external_id)
                    .bind(c.credits_remaining)
                    .bind(c.credits_refill_amount)
                    .bind(c.credits_refill_period)
                    .bind(c.credits_refill_at.and_then(|s| i32::try_from(s).ok()))
                    .bind(c.credits_refilled_at)
                    .bind(c.controls)
                    .execute(executor)
                    .await
                    .map_err(sqlx_error)?;
                Ok(done.rows_affected() == 1)
            }

            type Tx = sqlx::Transaction<'static, Db>;

            /// Runs a statement that changes one row by id;
            /// [`StoreError::NotFound`] if it changed none.
            async fn change_one_in<'e, E>(executor: E, statement: &'static str, id: &KeyId) -> Result<(), StoreError>
            where
                E: sqlx::Executor<'e, Database = Db>,
            {
                let done = sqlx::query(statement).bind(id.as_str()).execute(executor).await.map_err(sqlx_error)?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound(*id)) } else { Ok(()) }
            }

            /// Reads a row for a change, locked until the transaction ends.
            async fn locked(tx: &mut Tx, id: &KeyId) -> Result<KeyRecord, StoreError> {
                let row = sqlx::query(D::SELECT_FOR_REISSUE)
                    .bind(id.as_str())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(sqlx_error)?;
                decode(&row.ok_or(StoreError::NotFound(*id))?)
            }

            async fn reissue_in(tx: &mut Tx, old: &KeyId, new: &KeyRecord, fate: OldKeyFate) -> Result<(), StoreError> {
                let mut updated = locked(tx, old).await?;
                apply_reissue(&mut updated, new.id, fate)?;
                if !insert_row(&mut **tx, new).await? {
                    return Err(StoreError::Duplicate(new.id));
                }
                sqlx::query(sql::RELINK)
                    .bind(old.as_str())
                    .bind(new.id.as_str())
                    .bind(updated.status.as_str())
                    .bind(updated.expires_at.map(Timestamp::unix_nanos))
                    .execute(&mut **tx)
                    .await
                    .map_err(sqlx_error)?;
                Ok(())
            }

            async fn update_in(
                tx: &mut Tx,
                id: &KeyId,
                update: &$crate::operation::KeyUpdate,
            ) -> Result<KeyRecord, StoreError> {
                let mut updated = locked(tx, id).await?;
                apply_update(&mut updated, update)?;
                let c = ControlColumns::of(&updated);
                sqlx::query(sql::UPDATE)
                    .bind(id.as_str())
                    .bind(updated.description.as_str())
                    .bind(D::encode_scopes(&updated.scopes))
                    .bind(updated.expires_at.map(Timestamp::unix_nanos))
                    .bind(c.enabled)
                    .bind(c.external_id)
                    .bind(c.controls)
                    .execute(&mut **tx)
                    .await
                    .map_err(sqlx_error)?;
                if update.controls.credits.is_some() {
                    sqlx::query(sql::UPDATE_CREDITS)
                        .bind(id.as_str())
                        .bind(c.credits_remaining)
                        .bind(c.credits_refill_amount)
                        .bind(c.credits_refill_period)
                        .bind(c.credits_refill_at.and_then(|s| i32::try_from(s).ok()))
                        .bind(c.credits_refilled_at)
                        .execute(&mut **tx)
                        .await
                        .map_err(sqlx_error)?;
                }
                Ok(updated)
            }

            /// Applies one change inside `tx`.
            async fn apply_change(tx: &mut Tx, change: Change) -> Result<Option<KeyRecord>, StoreError> {
                match change {
                    Change::Insert(r) => {
                        if insert_row(&mut **tx, &r).await? { Ok(None) } else { Err(StoreError::Duplicate(r.id)) }
                    }
                    Change::Update { id, update } => update_in(tx, &id, &update).await.map(Some),
                    Change::Revoke(id) => change_one_in(&mut **tx, sql::REVOKE, &id).await.map(|()| None),
                    Change::Delete(id) => change_one_in(&mut **tx, sql::DELETE, &id).await.map(|()| None),
                    Change::Reissue { old, new, fate } => reissue_in(tx, &old, &new, fate).await.map(|()| None),
                    // Only the log rows: the key must exist, and is locked
                    // (PostgreSQL) so a concurrent delete waits.
                    Change::Note(id) => locked(tx, &id).await.map(|_| None),
                }
            }

            /// The owner of the key a change is about, read inside `tx`.
            async fn account_in(tx: &mut Tx, change: &Change) -> Result<String, StoreError> {
                if let Change::Insert(r) = change {
                    return Ok(r.service_account_id.as_str().to_owned());
                }
                let id = change.key_id();
                let account: Option<String> = sqlx::query_scalar(sql::SELECT_ACCOUNT)
                    .bind(id.as_str())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(sqlx_error)?;
                account.ok_or(StoreError::NotFound(id))
            }

            /// Appends the change feed's rows inside `tx`.
            async fn feed_in(tx: &mut Tx, entries: &[$crate::store::feed::FeedChange]) -> Result<(), StoreError> {
                let now = Timestamp::now().unix_nanos();
                for e in entries {
                    sqlx::query(sql::FEED_APPEND)
                        .bind(e.key_id.as_str())
                        .bind(e.gone)
                        .bind(now)
                        .execute(&mut **tx)
                        .await
                        .map_err(sqlx_error)?;
                }
                Ok(())
            }

            /// The feed's state: epoch, readable top, pruning mark.
            async fn feed_meta(pool: &$pool) -> Result<(u64, (i64, i64), (i64, i64)), StoreError> {
                let r = sqlx::query(D::FEED_META).fetch_one(pool).await.map_err(sqlx_error)?;
                let get = |c: &str| -> Result<i64, StoreError> { r.try_get(c).map_err(sqlx_error) };
                Ok((
                    sql::bits(get("epoch")?),
                    (get("top_major")?, get("top_minor")?),
                    (get("pruned_major")?, get("pruned_minor")?),
                ))
            }

            /// Appends one log entry inside `tx`.
            async fn log_in(tx: &mut Tx, e: &LogEntry, account: &str) -> Result<(), StoreError> {
                let changes = serde_json::to_string(&e.changes)
                    .map_err(|_| StoreError::Corrupt("operation changes do not serialise".to_owned()))?;
                let response = e
                    .response
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|_| StoreError::Corrupt("an operation response does not serialise".to_owned()))?;
                let done = sqlx::query(sql::LOG)
                    .bind(e.id.as_str())
                    .bind(e.key_id.as_str())
                    .bind(account)
                    .bind(e.kind.as_str())
                    .bind(e.actor.as_str())
                    .bind(e.created_at.unix_nanos())
                    .bind(changes)
                    .bind(response)
                    .execute(&mut **tx)
                    .await
                    .map_err(sqlx_error)?;
                if done.rows_affected() == 1 { Ok(()) } else { Err(StoreError::DuplicateOperation(e.id)) }
            }

            /// Records the entry's idempotency claim inside `tx`, then
            /// purges a few expired records;
            /// [`StoreError::IdempotencyKeyTaken`] if the key has a live
            /// record.
            async fn claim_in(
                tx: &mut Tx,
                claim: Option<(&$crate::store::idempotency::IdempotencyClaim, OperationId)>,
            ) -> Result<(), StoreError> {
                let Some((c, id)) = claim else { return Ok(()) };
                let done = sqlx::query(sql::CLAIM)
                    .bind(c.actor.as_str())
                    .bind(&c.key.as_bytes()[..])
                    .bind(&c.fingerprint[..])
                    .bind(id.as_str())
                    .bind(c.created_at.unix_nanos())
                    .bind(c.expires_at.unix_nanos())
                    .execute(&mut **tx)
                    .await
                    .map_err(sqlx_error)?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::IdempotencyKeyTaken);
                }
                sqlx::query(D::PURGE_IDEMPOTENCY)
                    .bind(c.created_at.unix_nanos())
                    .bind(i64::from(IDEMPOTENCY_PURGE_BATCH))
                    .execute(&mut **tx)
                    .await
                    .map_err(sqlx_error)?;
                Ok(())
            }

            /// A row of `api_key_idempotency` for `actor` and `key`.
            fn decode_idempotency(
                r: &<Db as sqlx::Database>::Row,
                actor: &Actor,
                key: &IdempotencyKey,
            ) -> Result<IdempotencyRecord, StoreError> {
                fn bad(column: &str) -> StoreError {
                    StoreError::Corrupt(format!("idempotency column `{column}` is invalid"))
                }
                let fingerprint: Vec<u8> = r.try_get("fingerprint").map_err(sqlx_error)?;
                let operation: String = r.try_get("operation_id").map_err(sqlx_error)?;
                let created_at: i64 = r.try_get("created_at").map_err(sqlx_error)?;
                let expires_at: i64 = r.try_get("expires_at").map_err(sqlx_error)?;
                let claim = IdempotencyClaim {
                    actor: actor.clone(),
                    key: *key,
                    fingerprint: fingerprint.try_into().map_err(|_| bad("fingerprint"))?,
                    created_at: Timestamp::from_unix_nanos(created_at),
                    expires_at: Timestamp::from_unix_nanos(expires_at),
                };
                Ok(IdempotencyRecord::new(claim, OperationId::parse(&operation).map_err(|_| bad("operation_id"))?))
            }

            fn decode_operation(r: &<Db as sqlx::Database>::Row) -> Result<(i64, Operation), StoreError> {
                fn bad(column: &str) -> StoreError {
                    StoreError::Corrupt(format!("operations column `{column}` is invalid"))
                }
                let seq: i64 = r.try_get("seq").map_err(sqlx_error)?;
                let text = |c: &'static str| -> Result<String, StoreError> { r.try_get(c).map_err(sqlx_error) };
                let created_at: i64 = r.try_get("created_at").map_err(sqlx_error)?;
                let op = Operation {
                    id: OperationId::parse(&text("id")?).map_err(|_| bad("id"))?,
                    key_id: KeyId::parse(&text("key_id")?).map_err(|_| bad("key_id"))?,
                    service_account_id: ServiceAccountId::new(&text("service_account_id")?)
                        .map_err(|_| bad("service_account_id"))?,
                    kind: OperationKind::parse(&text("kind")?).ok_or_else(|| bad("kind"))?,
                    actor: Actor::new(&text("actor")?).map_err(|_| bad("actor"))?,
                    created_at: Timestamp::from_unix_nanos(created_at),
                    changes: serde_json::from_str(&text("changes")?).map_err(|_| bad("changes"))?,
                    response: r
                        .try_get::<Option<String>, _>("response")
                        .map_err(sqlx_error)?
                        .map(|json| serde_json::from_str(&json))
                        .transpose()
                        .map_err(|_| bad("response"))?,
                };
                Ok((seq, op))
            }

            $crate::store::sql_resources::sql_resources!($store);

            impl std::fmt::Debug for $store {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.debug_struct(stringify!($store)).field("timeout", &self.timeout).finish_non_exhaustive()
                }
            }

            impl $store {
                /// Wraps an existing pool without touching the schema; call
                #[doc = concat!("[`", stringify!($store), "::migrate`]")]
                /// once before use. Each call may take `timeout`
                /// ([`DEFAULT_TIMEOUT`](crate::store::DEFAULT_TIMEOUT) is the
                /// usual choice); a zero timeout fails every call that does
                /// not complete at once.
                #[must_use]
                pub fn from_pool(pool: $pool, timeout: Duration) -> Self {
                    Self { pool, timeout }
                }

                /// The per-call timeout.
                #[must_use]
                pub fn timeout(&self) -> Duration {
                    self.timeout
                }

                /// The connection pool.
                #[must_use]
                pub fn pool(&self) -> &$pool {
                    &self.pool
                }

                /// Applies the embedded schema versions not yet applied, each
                /// in its own transaction (PostgreSQL: under sqlx's advisory
                /// lock, so several nodes can start at once). Safe to call on
                /// every start.
                ///
                /// # Errors
                /// [`StoreError::SchemaTooNew`] if a newer version of this
                /// crate migrated the database (nothing is changed then);
                /// [`StoreError::Unavailable`] if the database fails or holds
                /// a schema version this build does not know.
                pub async fn migrate(&self) -> Result<(), StoreError> {
                    // On a connection of its own: sqlx takes PostgreSQL's
                    // session-level advisory lock and, when it refuses the
                    // applied versions, returns without releasing it, so a
                    // refused connection is closed rather than given back to
                    // the pool (where it would block every later migrate).
                    let mut conn = self.pool.acquire().await.map_err(sqlx_error)?;
                    // (`run_direct` is what `run` calls after acquiring; sqlx's own
                    // way around `Acquire` not being general enough for a
                    // `Send` future.)
                    let refused = match sql::migrator::<D>().run_direct(None, &mut *conn, false).await {
                        Ok(()) => return Ok(()),
                        Err(e) => e,
                    };
                    let found = match &refused {
                        // sqlx checks the applied versions before applying
                        // any: an unknown one is reported before a change.
                        sqlx::migrate::MigrateError::VersionMissing(_) => {
                            sqlx::query_scalar::<_, Option<i64>>(sql::NEWEST_VERSION).fetch_one(&mut *conn).await.ok().flatten()
                        }
                        _ => None,
                    };
                    let _ = conn.close().await;
                    sql::check_not_newer(found, D::SCHEMA)?;
                    Err(sql::migrate_error(refused))
                }

                /// A page of rows by id, one extra row telling whether
                /// another page follows.
                async fn page_of(&self, query: Query<'_>, limit: usize) -> Result<Page<KeyRecord>, StoreError> {
                    let rows = query.fetch_all(&self.pool).await.map_err(sqlx_error)?;
                    let mut items = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
                    let next = $crate::store::key_store::next_after(&mut items, limit, |last| last.map(|r| r.id));
                    Ok(Page { items, next })
                }

                /// The spend: one statement, then (only when nothing was
                /// spent) a read telling exhausted, unlimited and absent
                /// keys apart.
                async fn spend(&self, id: &KeyId, cost: u64, due: Option<Timestamp>) -> Result<CreditSpend, StoreError> {
                    // A cost above every count can never be spent.
                    if let Ok(cost) = i64::try_from(cost) {
                        let left: Option<i64> = sqlx::query_scalar(sql::SPEND)
                            .bind(id.as_str())
                            .bind(cost)
                            .bind(due.map(Timestamp::unix_nanos))
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(sqlx_error)?;
                        if let Some(left) = left {
                            let remaining = u64::try_from(left)
                                .map_err(|_| StoreError::Corrupt("field `credits_remaining` is negative".into()))?;
                            return Ok(CreditSpend::Spent { remaining });
                        }
                    }
                    let record = self
                        .fetch_one(sqlx::query(sql::SELECT_BY_ID).bind(id.as_str()))
                        .await?
                        .ok_or(StoreError::NotFound(*id))?;
                    Ok(match record.controls().credits {
                        None => CreditSpend::Unlimited,
                        Some(c) => CreditSpend::Exhausted { remaining: c.available(due) },
                    })
                }

                async fn fetch_one(&self, query: Query<'_>) -> Result<Option<Arc<KeyRecord>>, StoreError> {
                    let row = query.fetch_optional(&self.pool).await.map_err(sqlx_error)?;
                    row.map(|r| decode(&r).map(Arc::new)).transpose()
                }
            }

            impl KeyStore for $store {

                async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
                    timed(self.timeout, self.fetch_one(sqlx::query(sql::SELECT_BY_ID).bind(id.as_str()))).await
                }

                async fn get_by_digest(&self, digest: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
                    let query = sqlx::query(sql::SELECT_BY_DIGEST).bind(&digest.as_bytes()[..]);
                    timed(self.timeout, self.fetch_one(query)).await
                }

                /// One statement for the whole batch.
                async fn get_many(&self, ids: &[KeyId]) -> Result<Vec<Option<Arc<KeyRecord>>>, StoreError> {
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let query = D::select_many(ids);
                    timed(self.timeout, async {
                        let rows = query.fetch_all(&self.pool).await.map_err(sqlx_error)?;
                        let mut found = std::collections::HashMap::with_capacity(rows.len());
                        for row in &rows {
                            let record = decode(row)?;
                            found.insert(record.id, Arc::new(record));
                        }
                        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
                    })
                    .await
                }

                async fn list(
                    &self,
                    service_account: &ServiceAccountId,
                    page: PageRequest,
                ) -> Result<Page<KeyRecord>, StoreError> {
                    let (query, limit) =
                        paged(&page, (sql::LIST_FIRST, sql::LIST_AFTER), |q| q.bind(service_account.as_str()));
                    timed(self.timeout, self.page_of(query, limit)).await
                }

                async fn commit(&self, change: Change, log: &[LogEntry]) -> Result<Option<KeyRecord>, StoreError> {
                    timed(self.timeout, async {
                        // Dropping `tx` without commit (any `?` below) rolls
                        // back the change with the log rows.
                        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(sqlx_error)?;
                        // Claims first: a twin claiming the same key waits
                        // here (PostgreSQL) until this one ends.
                        for entry in log {
                            claim_in(&mut tx, entry.idempotency.as_ref().map(|c| (c, entry.id))).await?;
                        }
                        let account = account_in(&mut tx, &change).await?;
                        let fed = $crate::store::feed::entries_of(&change);
                        let out = apply_change(&mut tx, change).await?;
                        feed_in(&mut tx, &fed).await?;
                        for entry in log {
                            log_in(&mut tx, entry, &account).await?;
                        }
                        tx.commit().await.map_err(sqlx_error)?;
                        Ok(out)
                    })
                    .await
                }

                async fn operations(
                    &self,
                    key: &KeyId,
                    page: PageRequest<OperationCursor>,
                ) -> Result<OperationPage, StoreError> {
                    let limit = page.effective_limit();
                    let before = page.after.map_or(i64::MAX, |c| i64::try_from(c.get()).unwrap_or(i64::MAX));
                    let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
                    let query = sqlx::query(sql::OPERATIONS).bind(key.as_str()).bind(before).bind(fetch);
                    timed(self.timeout, async {
                        let rows = query.fetch_all(&self.pool).await.map_err(sqlx_error)?;
                        let mut items = rows.iter().map(decode_operation).collect::<Result<Vec<_>, _>>()?;
                        let next = $crate::store::key_store::next_after(&mut items, limit, |last| last.and_then(|(seq, _)| u64::try_from(*seq).ok()).map(OperationCursor::new));
                        Ok(Page::new(items.into_iter().map(|(_, op)| op).collect(), next))

                    })
                    .await
                }

                async fn feed_head(&self) -> Result<Option<$crate::store::feed::FeedPosition>, StoreError> {
                    let (epoch, top, _) = timed(self.timeout, feed_meta(&self.pool)).await?;
                    Ok(Some(sql::position(epoch, top)))
                }

                /// The state, then the rows up to the readable top, then the
                /// pruning mark again (so rows pruned during the read are
                /// noticed).
                async fn changes_after(
                    &self,
                    at: $crate::store::feed::FeedPosition,
                    limit: u32,
                ) -> Result<$crate::store::feed::FeedRead, StoreError> {
                    use $crate::store::feed::{FeedBreak, FeedRead};
                    timed(self.timeout, async {
                        let (epoch, top, _) = feed_meta(&self.pool).await?;
                        let after = sql::parts(at);
                        if epoch != at.epoch() {
                            return Ok(FeedRead::Broken(FeedBreak::OtherStore));
                        }
                        if after > top {
                            return Ok(FeedRead::Broken(FeedBreak::Backwards));
                        }
                        let rows = D::feed_rows(after, top, i64::from(limit))
                            .fetch_all(&self.pool)
                            .await
                            .map_err(sqlx_error)?;
                        let (_, _, pruned) = feed_meta(&self.pool).await?;
                        if after < pruned {
                            return Ok(FeedRead::Broken(FeedBreak::Pruned));
                        }
                        let (changes, last) = sql::decode_feed(&rows)?;
                        let next = match last {
                            Some(last) if rows.len() >= limit as usize => last,
                            _ => top,
                        };
                        Ok(FeedRead::Changes { changes, next: sql::position(epoch, next) })
                    })
                    .await
                }

                async fn prune_feed(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
                    timed(self.timeout, async {
                        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(sqlx_error)?;
                        let marks: Vec<i64> = sqlx::query_scalar(D::FEED_PRUNE)
                            .bind(before.unix_nanos())
                            .bind(i64::from(limit))
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(sqlx_error)?;
                        if let Some(mark) = marks.iter().max() {
                            sqlx::query(D::FEED_MARK).bind(*mark).execute(&mut *tx).await.map_err(sqlx_error)?;
                        }
                        tx.commit().await.map_err(sqlx_error)?;
                        Ok(marks.len() as u64)
                    })
                    .await
                }

                /// One indexed range query per page (`id` is the primary key).
                async fn ids_after(&self, after: Option<KeyId>, limit: u32) -> Result<Vec<KeyId>, StoreError> {
                    let after = after.map_or(String::new(), |id| id.as_str().to_owned());
                    let query = sqlx::query_scalar::<_, String>(sql::IDS_AFTER).bind(after).bind(i64::from(limit));
                    let rows = timed(self.timeout, async {
                        query.fetch_all(&self.pool).await.map_err(sqlx_error)
                    })
                    .await?;
                    rows.iter()
                        .map(|s| KeyId::parse(s).map_err(|_| StoreError::Corrupt("a stored id is not a key id".into())))
                        .collect()
                }

                async fn operation(&self, id: &OperationId) -> Result<Option<Operation>, StoreError> {
                    let query = sqlx::query(sql::OPERATION).bind(id.as_str());
                    timed(self.timeout, async {
                        let row = query.fetch_optional(&self.pool).await.map_err(sqlx_error)?;
                        row.as_ref().map(decode_operation).transpose().map(|found| found.map(|(_, op)| op))
                    })
                    .await
                }

                async fn idempotency(
                    &self,
                    actor: &Actor,
                    key: &IdempotencyKey,
                    now: Timestamp,
                ) -> Result<Option<IdempotencyRecord>, StoreError> {
                    let query = sqlx::query(sql::IDEMPOTENCY)
                        .bind(actor.as_str())
                        .bind(&key.as_bytes()[..])
                        .bind(now.unix_nanos());
                    timed(self.timeout, async {
                        let row = query.fetch_optional(&self.pool).await.map_err(sqlx_error)?;
                        row.as_ref().map(|r| decode_idempotency(r, actor, key)).transpose()
                    })
                    .await
                }

                async fn pepper_fingerprint(&self, version: u32, proposed: Digest) -> Result<Digest, StoreError> {
                    timed(self.timeout, async {
                        sqlx::query(sql::INSERT_PEPPER)
                            .bind(i64::from(version))
                            .bind(proposed.as_bytes().as_slice())
                            .execute(&self.pool)
                            .await
                            .map_err(sqlx_error)?;
                        let row = sqlx::query(sql::SELECT_PEPPER)
                            .bind(i64::from(version))
                            .fetch_one(&self.pool)
                            .await
                            .map_err(sqlx_error)?;
                        let bytes: Vec<u8> = row.try_get("fingerprint").map_err(sqlx_error)?;
                        let bytes: [u8; 32] = bytes
                            .try_into()
                            .map_err(|_| StoreError::Corrupt("pepper fingerprint is not 32 bytes".into()))?;
                        Ok(Digest::from_bytes(bytes))
                    })
                    .await
                }

                async fn spend_credits(&self, id: &KeyId, cost: u64, due: Option<Timestamp>) -> Result<CreditSpend, StoreError> {
                    timed(self.timeout, self.spend(id, cost, due)).await
                }

                async fn list_by_external_id(
                    &self,
                    external_id: &ExternalId,
                    page: PageRequest,
                ) -> Result<Page<KeyRecord>, StoreError> {
                    let (query, limit) = paged(&page, (sql::LIST_EXTERNAL_FIRST, sql::LIST_EXTERNAL_AFTER), |q| {
                        q.bind(external_id.as_str())
                    });
                    timed(self.timeout, self.page_of(query, limit)).await
                }

                async fn list_expiring(&self, window: Range<Timestamp>, page: PageRequest) -> Result<Page<KeyRecord>, StoreError> {
                    let (from, until) = (window.start.unix_nanos(), window.end.unix_nanos());
                    let (query, limit) =
                        paged(&page, (sql::LIST_EXPIRING_FIRST, sql::LIST_EXPIRING_AFTER), |q| q.bind(from).bind(until));
                    timed(self.timeout, self.page_of(query, limit)).await
                }

                async fn commit_resource(
                    &self,
                    change: ResourceChange,
                    log: &ResourceLogEntry,
                ) -> Result<ResourceCommit, StoreError> {
                    timed(self.timeout, self.commit_resource_sql(change, log)).await
                }

                async fn resource(&self, target: &ResourceRef) -> Result<Option<Resource>, StoreError> {
                    timed(self.timeout, self.resource_sql(target)).await
                }

                async fn list_resources(
                    &self,
                    listing: &ResourceListing,
                    order: ResourceOrder,
                    page: PageRequest<ResourceCursor>,
                ) -> Result<ResourcePage, StoreError> {
                    timed(self.timeout, self.list_resources_sql(listing, order, page)).await
                }

                async fn find_resource(
                    &self,
                    listing: &ResourceListing,
                    name: &ResourceName,
                ) -> Result<Option<Resource>, StoreError> {
                    timed(self.timeout, self.find_resource_sql(listing, name)).await
                }

                async fn resource_operations(
                    &self,
                    target: &ResourceRef,
                    page: PageRequest<OperationCursor>,
                ) -> Result<ResourceOperationPage, StoreError> {
                    timed(self.timeout, self.resource_operations_sql(target, page)).await
                }

                async fn access_policy_bindings(
                    &self,
                    on: Option<&ResourceRef>,
                ) -> Result<Vec<(ResourceRef, $crate::access_policy::AccessPolicyBinding)>, StoreError> {
                    timed(self.timeout, self.access_policy_bindings_sql(on)).await
                }

                async fn access_bindings(
                    &self,
                    on: Option<&ResourceRef>,
                ) -> Result<Vec<(ResourceRef, $crate::access_binding::AccessBinding)>, StoreError> {
                    timed(self.timeout, self.access_bindings_sql(on)).await
                }

                async fn resource_operation(
                    &self,
                    id: &OperationId,
                ) -> Result<Option<$crate::resource::ResourceOperation>, StoreError> {
                    timed(self.timeout, self.resource_operation_sql(id)).await
                }

                async fn resource_head(&self) -> Result<u64, StoreError> {
                    timed(self.timeout, self.resource_head_sql()).await
                }

                async fn touch_last_used(&self, updates: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
                    if updates.is_empty() {
                        return Ok(());
                    }
                    let query = D::touch(updates);
                    timed(self.timeout, async {
                        query.execute(&self.pool).await.map_err(sqlx_error)?;
                        Ok(())
                    })
                    .await
                }
            }
        };
    };
}
pub(crate) use sql_key_store;

/// Asserts that the migrator of the release at schema version `$at` (the
/// first `$at` of `$schema`) refuses the database on `$pool`, naming the
/// version after it as missing: an older binary never runs over a newer
/// schema. On a connection of its own, closed after (sqlx keeps
/// PostgreSQL's advisory lock when it refuses).
#[cfg(test)]
macro_rules! assert_release_refuses {
    ($pool:expr, $schema:expr, $at:literal) => {{
        let mut conn = $pool.acquire().await.unwrap();
        let refused =
            $crate::store::sql::migrator_of(&$schema[..$at]).run_direct(None, &mut *conn, false).await.unwrap_err();
        assert!(matches!(refused, sqlx::migrate::MigrateError::VersionMissing(v) if v == $at + 1), "{refused:?}");
        conn.close().await.unwrap();
    }};
}
#[cfg(test)]
pub(super) use assert_release_refuses;

/// Asserts that every schema version is recorded as applied, in
/// [`MIGRATIONS_TABLE`], on `$pool` (either dialect's pool).
#[cfg(test)]
macro_rules! assert_all_versions_applied {
    ($pool:expr) => {{
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _api_keys_migrations ORDER BY version")
            .fetch_all($pool)
            .await
            .unwrap();
        let all: Vec<i64> = (1..=12).collect();
        assert_eq!(versions, all);
    }};
}
#[cfg(test)]
pub(super) use assert_all_versions_applied;

/// The body both dialects' upgrade tests share, over a store whose schema
/// is at version 1: writes the previous release's rows with `$insert` (the
/// dialect's `INSERT` binding id, masked key, digest and kind), migrates, and
/// checks versions, rows and the new tables; a second migration changes
/// nothing.
#[cfg(test)]
macro_rules! check_v1_upgrade {
    ($store:expr, $insert:expr) => {{
        let store = $store;
        let rows = [
            ("aaaaaaaaaaaaaaaaaaaa", "Xy12Z9", "native", [1u8; 32]),
            ("bbbbbbbbbbbbbbbbbbbb", "SECRET", "imported", [0xAB; 32]),
        ];
        for (id, masked, kind, digest) in rows {
            sqlx::query($insert)
                .bind(id)
                .bind(masked)
                .bind(digest.as_slice())
                .bind(kind)
                .execute(store.pool())
                .await
                .unwrap();
        }
        store.migrate().await.unwrap();
        $crate::store::sql::assert_all_versions_applied!(store.pool());
        let stored: Vec<String> =
            sqlx::query_scalar("SELECT masked_key FROM api_keys ORDER BY id").fetch_all(store.pool()).await.unwrap();
        $crate::store::sql::upgrade_tests::check_upgraded(&store, &stored).await;
        // Opened again (a restart): nothing to apply, nothing changes.
        store.migrate().await.unwrap();
        let again = store.get(&KeyId::parse("bbbbbbbbbbbbbbbbbbbb").unwrap()).await.unwrap().unwrap();
        assert_eq!(again.masked_key.tail(), "ababab");
        store
    }};
}
#[cfg(test)]
pub(super) use check_v1_upgrade;

/// The body both dialects' tests of the upgrade from the previous release
/// (schema version 3) share, over a store `$store` whose schema is at
/// version 3. It writes the previous release's rows
/// ([`previous_release`](upgrade_tests::previous_release)) with
/// `$insert_key` and `$insert_op` (the old columns, `$N` placeholders, the
/// scopes as names joined by `,`): keys made by a
/// [`KeyManager`](crate::KeyManager) (scopes, expiry, last use, a revoked,
/// a reissued pair, an imported key) and their operations log, then a key
/// whose log was written as that release wrote it, the log's newest entry
/// pruned. It migrates and checks:
/// - the key controls: nothing was lost (every record, verification and
///   log entry; see [`check_v3_upgraded`](upgrade_tests::check_v3_upgraded));
/// - the log (version 4): every entry survives with its `seq`, the index is
///   there (`$index` counts it), the kind check still refuses unknown kinds,
///   and a leak entry can be written after — with a `seq` above every one
///   given before, the pruned one included;
/// - a second migration (a restart) applies nothing;
/// - the previous release's migrator refuses the upgraded database, and
///   this one refuses a database newer than it knows.
#[cfg(test)]
macro_rules! check_previous_release_upgrade {
    ($store:expr, $schema:expr, $insert_key:expr, $insert_op:expr, $index:expr) => {{
        use $crate::operation::{Actor, Change, LeakDetails, LogEntry, OperationChanges, OperationId, OperationKind};
        let store = $store;
        let old = $crate::store::sql::upgrade_tests::previous_release().await;
        for r in old.records.iter().chain([&old.logged]) {
            sqlx::query($insert_key)
                .bind(r.id.as_str())
                .bind(r.service_account_id.as_str())
                .bind(r.description.as_str())
                .bind(r.created_at.unix_nanos())
                .bind(r.last_used_at.map($crate::clock::Timestamp::unix_nanos))
                .bind($crate::store::backend::join_scopes(&r.scopes))
                .bind(r.expires_at.map($crate::clock::Timestamp::unix_nanos))
                .bind(r.masked_key.tail())
                .bind(i64::from(r.pepper_version))
                .bind(&r.digest.as_bytes()[..])
                .bind(r.status.as_str())
                .bind(r.kind.as_str())
                .bind(r.links.replaced_by.as_ref().map($crate::token::KeyId::as_str))
                .bind(r.links.reissued_from.as_ref().map($crate::token::KeyId::as_str))
                .execute(store.pool())
                .await
                .unwrap();
        }
        for op in &old.log_rows {
            sqlx::query($insert_op)
                .bind(op.id.as_str())
                .bind(op.key_id.as_str())
                .bind(op.service_account_id.as_str())
                .bind(op.kind.as_str())
                .bind(op.actor.as_str())
                .bind(op.created_at)
                .bind(op.changes.as_str())
                .execute(store.pool())
                .await
                .unwrap();
        }
        // The newest entry is pruned: its seq must never be given again.
        let seq_of = "SELECT seq FROM api_key_operations WHERE id = $1";
        let pruned: i64 = sqlx::query_scalar(seq_of).bind(old.pruned).fetch_one(store.pool()).await.unwrap();
        sqlx::query("DELETE FROM api_key_operations WHERE id = $1")
            .bind(old.pruned)
            .execute(store.pool())
            .await
            .unwrap();
        let seqs = "SELECT seq FROM api_key_operations ORDER BY seq";
        let before: Vec<i64> = sqlx::query_scalar(seqs).fetch_all(store.pool()).await.unwrap();
        assert!(before.iter().all(|&s| s < pruned), "the pruned entry {pruned} is the newest: {before:?}");
        store.migrate().await.unwrap();
        $crate::store::sql::assert_all_versions_applied!(store.pool());
        let after: Vec<i64> = sqlx::query_scalar(seqs).fetch_all(store.pool()).await.unwrap();
        assert_eq!(after, before, "every entry keeps its seq");
        let indexes: i64 = sqlx::query_scalar($index).fetch_one(store.pool()).await.unwrap();
        assert_eq!(indexes, 1, "the log's index is there");
        let bogus = sqlx::query(
            "INSERT INTO api_key_operations (id, key_id, service_account_id, kind, actor, created_at, changes) \
             VALUES ('op000000000000000009', 'cccccccccccccccccccc', 'robot', 'drop', 'x', 0, '{}')",
        )
        .execute(store.pool())
        .await;
        assert!(bogus.is_err(), "unknown kinds are still refused");
        // The key controls: nothing was lost.
        $crate::store::sql::upgrade_tests::check_v3_upgraded(&store, &old).await;
        // The log written as that release wrote it reads back, newest first.
        let key = old.logged.id;
        let page = || $crate::store::PageRequest::starting(10, None);
        let log = store.operations(&key, page()).await.unwrap().items;
        let kinds: Vec<_> = log.iter().map(|o| (o.id.as_str().to_owned(), o.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("op000000000000000002".to_owned(), OperationKind::Revoke),
                ("op000000000000000001".to_owned(), OperationKind::Create)
            ]
        );
        assert_eq!(log[0].changes.status, Some($crate::KeyStatus::Revoked));
        assert_eq!(log[1].changes.description.as_ref().map(|d| d.as_str()), Some("old key"));
        // A leak entry now goes in, newest first, after every earlier seq.
        let place = LeakDetails::new(Some("content"), Some("https://github.com/o/r/blob/1/x"), "");
        let mut leak = LogEntry::new(
            key,
            OperationKind::Leak,
            Actor::new("github-secret-scanning").unwrap(),
            $crate::clock::Timestamp::from_unix_nanos(1_800_000_000_000_000_000),
            OperationChanges::of_leak(place.clone()),
        )
        .unwrap();
        leak.id = OperationId::of_leak(&key, &place);
        assert_eq!(store.commit(Change::Note(key), std::slice::from_ref(&leak)).await.unwrap(), None);
        let log = store.operations(&key, page()).await.unwrap().items;
        let robot = $crate::ServiceAccountId::new("robot").unwrap();
        assert_eq!((log.len(), &log[0]), (3, &leak.recorded(&robot)));
        let seq: i64 = sqlx::query_scalar(seq_of).bind(leak.id.as_str()).fetch_one(store.pool()).await.unwrap();
        assert!(seq > pruned, "seq {seq} was given before (the pruned entry had {pruned})");
        // Opened again (a restart): nothing to apply.
        store.migrate().await.unwrap();
        assert_eq!(store.operations(&key, page()).await.unwrap().items.len(), 3);
        // The previous release's migrator refuses the upgraded database.
        $crate::store::sql::assert_release_refuses!(store.pool(), $schema, 3);
        // This build refuses a database migrated by a newer one, naming both.
        sqlx::query(
            "INSERT INTO _api_keys_migrations (version, description, success, checksum, execution_time) \
             VALUES (99, 'from the future', TRUE, $1, 0)",
        )
        .bind(&[0u8; 48][..])
        .execute(store.pool())
        .await
        .unwrap();
        let e = store.migrate().await.unwrap_err();
        assert!(matches!(e, $crate::store::StoreError::SchemaTooNew { found: 99, supported: 12 }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("version 99") && text.contains("version 12 "), "{text}");
        assert!(e.is_unavailable(), "a refused schema fails closed");
        // A refused migrate leaves no lock behind: refused again, at once.
        let again = tokio::time::timeout(std::time::Duration::from_secs(10), store.migrate()).await;
        assert!(matches!(again, Ok(Err($crate::store::StoreError::SchemaTooNew { .. }))), "{again:?}");
        store
    }};
}
#[cfg(test)]
pub(super) use check_previous_release_upgrade;

/// The body both dialects' tests of the upgrade from the release before the
/// `controls` column (schema version 6) share, over a store `$store` whose
/// schema is at version 6. It writes keys with every kind of control in the
/// old columns with `$insert_key` (the 24 columns of that release, `$N`
/// placeholders, scopes as names joined by `,`) as that release encoded
/// them, migrates, and checks that nothing was lost: every record reads back
/// equal (the metadata's exact text included: numbers, key order, nested
/// nulls), `controls` holds exactly the controls without a column of their
/// own, the old columns are gone, and the keys still list by external id,
/// spend credits and update. Returns the store.
#[cfg(test)]
macro_rules! check_v6_controls_upgrade {
    ($store:expr, $insert_key:expr) => {{
        use $crate::controls::{Credits, ExternalId, KeyControls, Metadata, Refill, RefillPeriod};
        use $crate::store::KeyStore as _;
        let store = $store;
        let base = |id: &str| {
            let mut r = $crate::KeyRecord::new(
                $crate::token::KeyId::parse(id).unwrap(),
                $crate::ServiceAccountId::new("robot").unwrap(),
                $crate::KeyKind::Native,
                1,
                $crate::Digest::from_bytes([id.as_bytes()[0]; 32]),
                $crate::secret::MaskedKey::from_tail(b"Xy12Z9"),
                $crate::clock::Timestamp::from_unix_nanos(1_700_000_000_000_000_001),
            );
            r.scopes = $crate::ScopeSet::new([$crate::Scope::new("a.read").unwrap()]).unwrap();
            r
        };
        let metadata = r#"{"z":[],"b":1e2,"a":{"x":null},"s":"é \"q\""}"#;
        let mut full = base("aaaaaaaaaaaaaaaaaaaa");
        full.enabled = false;
        let refill = Refill::new(50, RefillPeriod::Monthly).unwrap().at(6, 30).unwrap();
        full.set_controls(
            KeyControls::new()
                .metadata(Metadata::parse(metadata).unwrap())
                .external_id(ExternalId::new("cust_1").unwrap())
                .allowed_ips("10.0.0.0/8,2001:db8::/32".parse().unwrap())
                .rate_limits("api=100/1s:burst=20,day=5000/1d".parse().unwrap())
                .credits(Credits::new(40).unwrap().refill(refill, $crate::clock::Timestamp::from_unix_nanos(-7))),
        );
        let mut columns_only = base("bbbbbbbbbbbbbbbbbbbb");
        columns_only.set_controls(
            KeyControls::new().external_id(ExternalId::new("cust_1").unwrap()).credits(Credits::new(3).unwrap()),
        );
        let plain = base("cccccccccccccccccccc");
        let mut limits_only = base("dddddddddddddddddddd");
        limits_only.set_controls(KeyControls::new().rate_limits("api=1/1s".parse().unwrap()));
        let records = [full, columns_only, plain, limits_only];
        for r in &records {
            // The previous release's encodings of its control columns.
            let c = r.controls();
            let refill = c.credits.and_then(|c| c.refill);
            sqlx::query($insert_key)
                .bind(r.id.as_str())
                .bind(r.service_account_id.as_str())
                .bind(r.description.as_str())
                .bind(r.created_at.unix_nanos())
                .bind(r.last_used_at.map($crate::clock::Timestamp::unix_nanos))
                .bind($crate::store::backend::join_scopes(&r.scopes))
                .bind(r.expires_at.map($crate::clock::Timestamp::unix_nanos))
                .bind(r.masked_key.tail())
                .bind(i64::from(r.pepper_version))
                .bind(&r.digest.as_bytes()[..])
                .bind(r.status.as_str())
                .bind(r.kind.as_str())
                .bind(r.links.replaced_by.as_ref().map($crate::token::KeyId::as_str))
                .bind(r.links.reissued_from.as_ref().map($crate::token::KeyId::as_str))
                .bind(r.enabled)
                .bind(c.metadata.as_ref().map(|_| metadata))
                .bind(c.external_id.as_ref().map(|e| e.as_str().to_owned()))
                .bind(c.allowed_ips.as_ref().map(ToString::to_string))
                .bind(c.rate_limits.as_ref().map(ToString::to_string))
                .bind(c.credits.map(|c| i64::try_from(c.remaining).unwrap()))
                .bind(refill.map(|r| i64::try_from(r.amount).unwrap()))
                .bind(refill.map(|r| r.period.as_str()))
                .bind(refill.map(|r| i32::try_from(r.at_second).unwrap()))
                .bind(c.credits.and_then(|c| c.refilled_at).map($crate::clock::Timestamp::unix_nanos))
                .execute(store.pool())
                .await
                .unwrap();
        }
        store.migrate().await.unwrap();
        $crate::store::sql::assert_all_versions_applied!(store.pool());
        for r in &records {
            let got = store.get(&r.id).await.unwrap().unwrap();
            assert_eq!(&*got, r, "{} changed in the upgrade", r.id);
        }
        let got = store.get(&records[0].id).await.unwrap().unwrap();
        assert_eq!(
            got.controls().metadata.as_ref().unwrap(),
            &Metadata::parse(metadata).unwrap(),
            "the metadata is read from its exact text"
        );
        let stored: Vec<Option<String>> =
            sqlx::query_scalar("SELECT controls FROM api_keys ORDER BY id").fetch_all(store.pool()).await.unwrap();
        let stored: Vec<Option<serde_json::Value>> =
            stored.iter().map(|t| t.as_deref().map(|t| serde_json::from_str(t).unwrap())).collect();
        assert_eq!(
            stored,
            [
                Some(serde_json::json!({
                    "metadata": serde_json::from_str::<serde_json::Value>(metadata).unwrap(),
                    "allowedIps": ["10.0.0.0/8", "2001:db8::/32"],
                    "rateLimits": ["api=100/1s:burst=20", "day=5000/1d"],
                })),
                None,
                None,
                Some(serde_json::json!({"rateLimits": ["api=1/1s"]})),
            ]
        );
        for gone in ["metadata", "allowed_ips", "rate_limits"] {
            let read = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {gone} FROM api_keys"))).fetch_all(store.pool()).await;
            assert!(read.is_err(), "column {gone} is dropped");
        }
        // The keys still work: listed by external id, credits spent, updated.
        let owner = ExternalId::new("cust_1").unwrap();
        let listed = store.list_by_external_id(&owner, $crate::store::PageRequest::starting(10, None)).await.unwrap();
        assert_eq!(listed.items.iter().map(|r| r.id).collect::<Vec<_>>(), [records[0].id, records[1].id]);
        let spent = store.spend_credits(&records[1].id, 2, None).await.unwrap();
        assert!(matches!(spent, $crate::controls::CreditSpend::Spent { remaining: 1 }), "{spent:?}");
        let list: $crate::controls::IpAllowList = "192.0.2.0/24".parse().unwrap();
        let update = $crate::operation::KeyUpdate::new().allowed_ips(Some(list.clone()));
        let entry = $crate::operation::LogEntry::new(
            records[0].id,
            $crate::operation::OperationKind::Update,
            $crate::operation::Actor::system(),
            $crate::clock::Timestamp::from_unix_nanos(1),
            $crate::operation::OperationChanges::of_update(&update),
        )
        .unwrap();
        let change = $crate::operation::Change::Update { id: records[0].id, update };
        let updated = store.commit(change, &[entry]).await.unwrap().unwrap();
        let mut expected = records[0].clone();
        expected.set_controls(KeyControls { allowed_ips: Some(list), ..records[0].controls().clone() });
        assert_eq!(updated, expected);
        assert_eq!(&*store.get(&records[0].id).await.unwrap().unwrap(), &expected);
        // Opened again (a restart): nothing to apply, nothing changes.
        store.migrate().await.unwrap();
        assert_eq!(&*store.get(&records[0].id).await.unwrap().unwrap(), &expected);
        store
    }};
}
#[cfg(test)]
pub(super) use check_v6_controls_upgrade;

/// What both dialects' tests check of the idempotency table once a store
/// `$store` holding the previous release's rows (schema version 6) was
/// upgraded (by [`check_v6_controls_upgrade`], which checks that the rows
/// read back exactly), with the dialect's versions `$schema`: a claimed
/// create is recorded, a second claim of the key is refused and writes
/// nothing, a second migration applies nothing, and the previous release's
/// migrator refuses the upgraded database.
#[cfg(test)]
macro_rules! check_v6_upgrade {
    ($store:expr, $schema:expr) => {{
        use std::sync::Arc;
        use std::time::Duration;

        use $crate::store::idempotency::{IdempotencyClaim, IdempotencyKey, IdempotencyRecord};
        use $crate::{Actor, Clock as _, CreateRequest, KeyManager};
        let store = $store;
        let clock = Arc::new($crate::ManualClock::new($crate::Timestamp::from_unix_seconds(1_800_000_000).unwrap()));
        let manager = KeyManager::builder(
            Arc::new(store.clone()),
            $crate::store::sql::upgrade_tests::peppers(),
            $crate::testing::scope_catalog(),
        )
        .clock(clock.clone())
        .build();
        let sa = "v6-robot";
        let page = || $crate::PageRequest::starting(100, None);
        // The new table: a claimed create is recorded with its change.
        let actor = Actor::new("ops").unwrap();
        let key = IdempotencyKey::of("8e0f6b53-6a40-4c1e-9e3c-3f0b2d6f1a11");
        let claim = IdempotencyClaim::new(actor.clone(), key, [3; 32], clock.now(), Duration::from_secs(86_400));
        let made = manager.with_idempotency(claim.clone()).create(CreateRequest::new(sa)).await.unwrap();
        let record = store.idempotency(&actor, &key, clock.now()).await.unwrap().unwrap();
        let created = store.operations(&made.api_key.id, page()).await.unwrap().items;
        assert_eq!(record, IdempotencyRecord::new(claim.clone(), created[0].id));
        let again = manager.with_idempotency(claim).create(CreateRequest::new(sa)).await.unwrap_err();
        assert!(matches!(again, $crate::ManageError::Store($crate::StoreError::IdempotencyKeyTaken)), "{again:?}");
        let listed = store.list(&$crate::ServiceAccountId::new(sa).unwrap(), $crate::PageRequest::first(100)).await;
        assert_eq!(listed.unwrap().items.len(), 1, "the refused create wrote nothing");
        // Opened again (a restart): nothing to apply, the record is there.
        store.migrate().await.unwrap();
        assert!(store.idempotency(&actor, &key, clock.now()).await.unwrap().is_some());
        // The previous release's migrator refuses the upgraded database.
        $crate::store::sql::assert_release_refuses!(store.pool(), $schema, 6);
        store
    }};
}
#[cfg(test)]
pub(super) use check_v6_upgrade;

/// The body both dialects' tests of the upgrade from the release before
/// resources (schema version 9) share, over a store `$store` whose schema is
/// at version 9, with the dialect's versions `$schema`. It writes that
/// release's keys through the store (the key tables are unchanged since):
/// the previous release's keys of account `upgrade-robot` and keys of two
/// accounts whose ids are not valid names (`CI_Robot`, `svc.deploy`),
/// migrates, and checks: every key reads back equal and still verifies
/// (the revoked one is still refused); the defaults exist; every account
/// the keys named is a service account in the default folder, created when
/// its first key was, named by its id where it fits and `sa-…` otherwise,
/// and no other account exists; the new accounts work (renamed, deleted
/// with their keys); a second migration changes nothing; the previous
/// release's migrator refuses the upgraded database.
#[cfg(test)]
macro_rules! check_v9_upgrade {
    ($store:expr, $schema:expr) => {{
        use $crate::resource::{
            ResourceChange, ResourceId, ResourceListing, ResourceLogEntry, ResourceOrder, ResourcePatch, ResourceRef,
        };
        use $crate::store::KeyStore as _;
        use $crate::{ServiceAccountId, VerifyError};
        let store = $store;
        let old = $crate::store::sql::upgrade_tests::previous_release().await;
        let odd = |id: &str, account: &str, at: i64| {
            $crate::KeyRecord::new(
                $crate::token::KeyId::parse(id).unwrap(),
                ServiceAccountId::new(account).unwrap(),
                $crate::KeyKind::Native,
                1,
                $crate::Digest::from_bytes([id.as_bytes()[0]; 32]),
                $crate::secret::MaskedKey::from_tail(b"Xy12Z9"),
                $crate::clock::Timestamp::from_unix_nanos(at),
            )
        };
        let extra = [
            odd("dddddddddddddddddddd", "CI_Robot", 1_700_000_000_000_000_009),
            odd("eeeeeeeeeeeeeeeeeeee", "CI_Robot", 1_700_000_000_000_000_003),
            odd("ffffffffffffffffffff", "svc.deploy", 1_700_000_000_000_000_005),
        ];
        for r in old.records.iter().chain(&extra) {
            store.insert(r.clone()).await.unwrap();
        }
        store.migrate().await.unwrap();
        $crate::store::sql::assert_all_versions_applied!(store.pool());
        // Every key is as it was, and the ones that verified still do.
        for r in old.records.iter().chain(&extra) {
            assert_eq!(&*store.get(&r.id).await.unwrap().unwrap(), r, "{} changed in the upgrade", r.id);
        }
        let verifier = $crate::store::sql::upgrade_tests::verifier_of(&store, &old).await;
        let header = format!("Api-Key {}", old.revoked.1.expose_secret());
        let e = verifier.verify(header.as_bytes(), None).await.unwrap_err();
        assert!(matches!(e, VerifyError::Revoked(_)), "{e:?}");
        // The defaults.
        for r in [
            ResourceRef::Organization(ResourceId::default_organization()),
            ResourceRef::Cloud(ResourceId::default_cloud()),
            ResourceRef::Folder(ResourceId::default_folder()),
        ] {
            let found = store.resource(&r).await.unwrap().unwrap_or_else(|| panic!("{r} is missing"));
            assert_eq!(found.name().as_str(), "default");
        }
        // Every account the keys named, and nothing else.
        let folder = ResourceListing::ServiceAccounts(ResourceId::default_folder());
        let page = $crate::PageRequest::starting(100, None);
        let listed = store.list_resources(&folder, ResourceOrder::Id, page.clone()).await.unwrap();
        let accounts: Vec<_> = listed.items.into_iter().map(|r| r.into_service_account().unwrap()).collect::<Vec<_>>();
        let ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["CI_Robot", "svc.deploy", "upgrade-robot"]);
        let first_key = |account: &str| {
            old.records
                .iter()
                .chain(&extra)
                .filter(|r| r.service_account_id.as_str() == account)
                .map(|r| r.created_at)
                .min()
        };
        for a in &accounts {
            assert_eq!(a.folder_id, ResourceId::default_folder());
            assert_eq!(Some(a.created_at), first_key(a.id.as_str()), "{}: created with its first key", a.id);
        }
        assert_eq!(accounts[2].name.as_str(), "upgrade-robot", "a fitting id is its own name");
        let last_used = old.records.iter().filter_map(|r| r.last_used_at).max();
        assert_eq!(accounts[2].last_authenticated_at, last_used, "its keys' last use");
        for a in &accounts[..2] {
            assert!(a.name.as_str().starts_with("sa-"), "{}: {}", a.id, a.name);
            assert!($crate::resource::ResourceName::new(a.name.as_str()).is_ok());
        }
        assert_ne!(accounts[0].name, accounts[1].name);
        // The accounts work: found by name, renamed, deleted with their keys.
        let cloud = ResourceListing::ServiceAccountsOfCloud(ResourceId::default_cloud());
        let found = store.find_resource(&cloud, &accounts[2].name).await.unwrap().unwrap();
        assert_eq!(found.reference(), ResourceRef::ServiceAccount(accounts[2].id.clone()));
        let entry = || {
            ResourceLogEntry::new(
                $crate::OperationId::generate().unwrap(),
                $crate::Actor::system(),
                $crate::clock::Timestamp::from_unix_nanos(1_900_000_000_000_000_000),
            )
        };
        let ci = ResourceRef::ServiceAccount(accounts[0].id.clone());
        let patch = ResourcePatch::new().name($crate::resource::ResourceName::new("ci-robot").unwrap());
        store.commit_resource(ResourceChange::Update { target: ci.clone(), patch }, &entry()).await.unwrap();
        let done = store.commit_resource(ResourceChange::Delete(ci), &entry()).await.unwrap();
        assert_eq!(done.deleted_keys, [extra[0].id, extra[1].id]);
        assert!(store.get(&extra[0].id).await.unwrap().is_none());
        // Opened again (a restart): nothing to apply, nothing changes.
        store.migrate().await.unwrap();
        let listed = store.list_resources(&folder, ResourceOrder::Id, page.clone()).await.unwrap();
        assert_eq!(listed.items.len(), 2);
        // The previous release's migrator refuses the upgraded database.
        $crate::store::sql::assert_release_refuses!(store.pool(), $schema, 9);
        store
    }};
}
#[cfg(test)]
pub(super) use check_v9_upgrade;

/// The body both dialects' tests of the upgrade from the release before
/// access policies (schema version 10) share, over a store `$store` whose
/// schema is at version 10, with the dialect's versions `$schema`. It
/// writes that release's data through the store (a folder, a service
/// account in it, the previous release's keys of that account, renamed
/// once), migrates, and checks: the resources, their logs and every key are
/// as they were and the keys still verify; access policies bind, list and
/// unbind on the old folder and move the resource head; a second migration
/// changes nothing; the previous release's migrator refuses the upgraded
/// database.
#[cfg(test)]
macro_rules! check_v10_upgrade {
    ($store:expr, $schema:expr) => {{
        use $crate::ServiceAccountId;
        use $crate::access_policy::{AccessPolicyBinding, DENY_KEY_CREATION};
        use $crate::resource::{
            Folder, Resource, ResourceChange, ResourceId, ResourceLogEntry, ResourceName, ResourcePatch, ResourceRef,
            ServiceAccount,
        };
        use $crate::store::KeyStore as _;
        let store = $store;
        let old = $crate::store::sql::upgrade_tests::previous_release().await;
        let entry = || {
            ResourceLogEntry::new(
                $crate::OperationId::generate().unwrap(),
                $crate::Actor::system(),
                $crate::clock::Timestamp::from_unix_nanos(1_750_000_000_000_000_000),
            )
        };
        let folder_id = ResourceId::new("upgradefolder0000010").unwrap();
        let created = $crate::clock::Timestamp::from_unix_nanos(1_750_000_000_000_000_001);
        let folder = Folder::new(folder_id, ResourceId::default_cloud(), created, ResourceName::new("web").unwrap());
        store.commit_resource(ResourceChange::Create(Resource::Folder(folder)), &entry()).await.unwrap();
        let account = ServiceAccountId::new("upgrade-robot").unwrap();
        let robot = ServiceAccount::new(account.clone(), folder_id, created, ResourceName::new("robot").unwrap());
        store.commit_resource(ResourceChange::Create(Resource::ServiceAccount(robot)), &entry()).await.unwrap();
        let robot_ref = ResourceRef::ServiceAccount(account);
        let patch = ResourcePatch::new().name(ResourceName::new("upgrade-robot").unwrap());
        store.commit_resource(ResourceChange::Update { target: robot_ref.clone(), patch }, &entry()).await.unwrap();
        for r in &old.records {
            store.insert(r.clone()).await.unwrap();
        }
        let before = store.resource(&robot_ref).await.unwrap().unwrap();
        let log_before = store.resource_operations(&robot_ref, $crate::PageRequest::starting(10, None)).await.unwrap();
        store.migrate().await.unwrap();
        $crate::store::sql::assert_all_versions_applied!(store.pool());
        assert_eq!(store.resource(&robot_ref).await.unwrap().unwrap(), before, "the account is as it was");
        let log_after = store.resource_operations(&robot_ref, $crate::PageRequest::starting(10, None)).await.unwrap();
        assert_eq!(log_after, log_before, "its log is as it was");
        for r in &old.records {
            assert_eq!(&*store.get(&r.id).await.unwrap().unwrap(), r, "{} changed in the upgrade", r.id);
        }
        $crate::store::sql::upgrade_tests::verifier_of(&store, &old).await;
        // Access policies work on the old folder.
        let on = ResourceRef::Folder(folder_id);
        let head = store.resource_head().await.unwrap();
        let bind = ResourceChange::BindAccessPolicy {
            target: on.clone(),
            binding: AccessPolicyBinding::new(DENY_KEY_CREATION),
        };
        store.commit_resource(bind, &entry()).await.unwrap();
        assert!(store.resource_head().await.unwrap() > head);
        assert_eq!(
            store.access_policy_bindings(None).await.unwrap(),
            [(on.clone(), AccessPolicyBinding::new(DENY_KEY_CREATION))]
        );
        let unbind = ResourceChange::UnbindAccessPolicy { target: on, template_id: DENY_KEY_CREATION.to_owned() };
        store.commit_resource(unbind, &entry()).await.unwrap();
        // Opened again (a restart): nothing to apply, nothing changes.
        store.migrate().await.unwrap();
        assert!(store.access_policy_bindings(None).await.unwrap().is_empty());
        // The previous release's migrator refuses the upgraded database.
        $crate::store::sql::assert_release_refuses!(store.pool(), $schema, 10);
        store
    }};
}
#[cfg(test)]
pub(super) use check_v10_upgrade;

/// Checks that a store whose schema stopped at version 11 (access policies)
/// upgrades to access bindings losing nothing: its resources, their
/// access policy bindings and the previous release's keys are as they
/// were, and access bindings then work on the old resources.
#[cfg(test)]
macro_rules! check_v11_upgrade {
    ($store:expr, $schema:expr) => {{
        use $crate::ServiceAccountId;
        use $crate::access_binding::{AccessBinding, AccessBindingDelta, Role, Subject};
        use $crate::access_policy::{AccessPolicyBinding, REQUIRE_EXPIRY};
        use $crate::resource::{
            Folder, Resource, ResourceChange, ResourceId, ResourceLogEntry, ResourceName, ResourceRef, ServiceAccount,
        };
        use $crate::store::KeyStore as _;
        let store = $store;
        let old = $crate::store::sql::upgrade_tests::previous_release().await;
        let entry = || {
            ResourceLogEntry::new(
                $crate::OperationId::generate().unwrap(),
                $crate::Actor::system(),
                $crate::clock::Timestamp::from_unix_nanos(1_760_000_000_000_000_000),
            )
        };
        let folder_id = ResourceId::new("upgradefolder0000011").unwrap();
        let created = $crate::clock::Timestamp::from_unix_nanos(1_760_000_000_000_000_001);
        let folder = Folder::new(folder_id, ResourceId::default_cloud(), created, ResourceName::new("team").unwrap());
        store.commit_resource(ResourceChange::Create(Resource::Folder(folder)), &entry()).await.unwrap();
        let account = ServiceAccountId::new("upgrade-robot-11").unwrap();
        let robot = ServiceAccount::new(account.clone(), folder_id, created, ResourceName::new("robot").unwrap());
        store.commit_resource(ResourceChange::Create(Resource::ServiceAccount(robot)), &entry()).await.unwrap();
        let on = ResourceRef::Folder(folder_id);
        let policy = AccessPolicyBinding::new(REQUIRE_EXPIRY);
        store
            .commit_resource(ResourceChange::BindAccessPolicy { target: on.clone(), binding: policy.clone() }, &entry())
            .await
            .unwrap();
        for r in &old.records {
            store.insert(r.clone()).await.unwrap();
        }
        let robot_ref = ResourceRef::ServiceAccount(account.clone());
        let before = store.resource(&robot_ref).await.unwrap().unwrap();
        let log_before = store.resource_operations(&on, $crate::PageRequest::starting(10, None)).await.unwrap();
        store.migrate().await.unwrap();
        $crate::store::sql::assert_all_versions_applied!(store.pool());
        assert_eq!(store.resource(&robot_ref).await.unwrap().unwrap(), before, "the account is as it was");
        let log_after = store.resource_operations(&on, $crate::PageRequest::starting(10, None)).await.unwrap();
        assert_eq!(log_after, log_before, "the folder's log is as it was");
        assert_eq!(store.access_policy_bindings(None).await.unwrap(), [(on.clone(), policy)], "policies kept");
        for r in &old.records {
            assert_eq!(&*store.get(&r.id).await.unwrap().unwrap(), r, "{} changed in the upgrade", r.id);
        }
        $crate::store::sql::upgrade_tests::verifier_of(&store, &old).await;
        // Access bindings work on the old folder, for the old account.
        let binding = AccessBinding::new(Role::Editor, Subject::service_account(account));
        let change = ResourceChange::UpdateAccessBindings {
            target: on.clone(),
            deltas: vec![AccessBindingDelta::add(binding.clone())],
            replace: false,
        };
        store.commit_resource(change, &entry()).await.unwrap();
        assert_eq!(store.access_bindings(None).await.unwrap(), [(on.clone(), binding)]);
        // Opened again (a restart): nothing to apply, nothing changes.
        store.migrate().await.unwrap();
        assert_eq!(store.access_bindings(Some(&on)).await.unwrap().len(), 1);
        // The previous release's migrator refuses the upgraded database.
        $crate::store::sql::assert_release_refuses!(store.pool(), $schema, 11);
        store
    }};
}
#[cfg(test)]
pub(super) use check_v11_upgrade;

/// What the dialects' upgrade tests check once the previous release's rows
/// (an active native key `aaaa…` masked `Xy12Z9`, an imported key `bbbb…`
/// masked with its secret's tail `SECRET`, digest `0xAB…`) went through the
/// new schema versions.
#[cfg(test)]
pub(super) mod upgrade_tests {
    use crate::clock::Timestamp;
    use crate::store::KeyStore;
    use crate::token::KeyId;

    /// A verifier over `store` on the previous release's clock, after
    /// checking that every key of `old` that verified still does.
    pub(crate) async fn verifier_of<S: KeyStore + Clone>(store: &S, old: &PreviousRelease) -> crate::Verifier<S> {
        let manager =
            crate::KeyManager::builder(std::sync::Arc::new(store.clone()), peppers(), crate::testing::scope_catalog())
                .clock(old.clock.clone())
                .build();
        let verifier = manager.verifier().accept_imported(true).build();
        for (id, secret) in &old.secrets {
            let header = format!("Api-Key {}", secret.expose_secret());
            let p = verifier.verify(header.as_bytes(), None).await.unwrap_or_else(|e| panic!("{id}: {e:?}"));
            assert_eq!(p.key_id(), id);
        }
        verifier
    }

    /// The previous release's keys, their secrets and log, as its
    /// [`KeyManager`](crate::KeyManager) made them.
    pub(crate) struct PreviousRelease {
        pub(crate) records: Vec<crate::KeyRecord>,
        pub(crate) operations: Vec<crate::Operation>,
        /// Secrets of the keys that still verify.
        pub(crate) secrets: Vec<(KeyId, crate::Secret)>,
        /// The key that was revoked, and its secret.
        pub(crate) revoked: (KeyId, crate::Secret),
        pub(crate) clock: std::sync::Arc<crate::ManualClock>,
        /// A revoked key of account `robot` whose log rows are written as
        /// that release wrote them (the last of [`Self::log_rows`]).
        pub(crate) logged: crate::KeyRecord,
        /// Every log row to write, oldest first: [`Self::operations`], then
        /// `logged`'s entries, the newest of which is [`Self::pruned`].
        pub(crate) log_rows: Vec<LogRow>,
        /// The id of the log's newest entry, which the test prunes before
        /// migrating.
        pub(crate) pruned: &'static str,
    }

    /// One row of the previous release's `api_key_operations`, as bound.
    pub(crate) struct LogRow {
        pub(crate) id: String,
        pub(crate) key_id: String,
        pub(crate) service_account_id: String,
        pub(crate) kind: String,
        pub(crate) actor: String,
        pub(crate) created_at: i64,
        pub(crate) changes: String,
    }

    pub(crate) fn peppers() -> crate::Peppers {
        crate::Peppers::single(crate::Pepper::new(1, [7u8; 32]).unwrap())
    }

    /// Makes the keys in a memory store (records are what every store
    /// stores): scopes and expiry, a last use, a revoked key, a reissued
    /// pair in its grace period, an imported key.
    pub(crate) async fn previous_release() -> PreviousRelease {
        use std::sync::Arc;
        use std::time::Duration;

        use crate::{CreateRequest, KeyManager, MemoryStore};
        let clock = Arc::new(crate::ManualClock::new(Timestamp::from_unix_seconds(1_800_000_000).unwrap()));
        let memory = Arc::new(MemoryStore::new());
        let manager = KeyManager::builder(Arc::clone(&memory), peppers(), crate::testing::scope_catalog())
            .clock(clock.clone())
            .build();
        let sa = "upgrade-robot";
        let expiring = CreateRequest::new(sa)
            .description("with scopes and expiry")
            .scopes(["yc.monitoring.read", "yc.postbox.send"])
            .expires_at("2030-01-01T00:00:00.123456789Z".parse().unwrap());
        let a = manager.create(expiring).await.unwrap();
        let b = manager.create(CreateRequest::new(sa).scopes(["yc.monitoring.manage"])).await.unwrap();
        let revoked = manager.create(CreateRequest::new(sa)).await.unwrap();
        manager.revoke(&revoked.api_key.id).await.unwrap();
        let reissued = manager.reissue(&b.api_key.id, Duration::from_secs(3600)).await.unwrap();
        let foreign = crate::Secret::from("AQVNUPGRADEFOREIGNSECRET0123456789".to_owned());
        let imported = manager.import(CreateRequest::new(sa).scopes(["yc.postbox.send"]), &foreign).await.unwrap();
        let used = Timestamp::from_unix_nanos(1_800_000_100_000_000_007);
        memory.touch_last_used(&[(a.api_key.id, used)]).await.unwrap();
        let ids = [a.api_key.id, b.api_key.id, revoked.api_key.id, reissued.api_key.id, imported.id];
        let mut records = Vec::new();
        let mut operations = Vec::new();
        for id in ids {
            records.push(crate::KeyRecord::clone(&memory.get(&id).await.unwrap().unwrap()));
            operations.extend(memory.operations(&id, crate::PageRequest::starting(100, None)).await.unwrap().items);
        }
        let secrets = vec![
            (a.api_key.id, a.secret),
            (b.api_key.id, b.secret),
            (reissued.api_key.id, reissued.secret),
            (imported.id, foreign),
        ];
        let mut log_rows: Vec<LogRow> = operations
            .iter()
            .rev()
            .map(|op| LogRow {
                id: op.id.as_str().to_owned(),
                key_id: op.key_id.as_str().to_owned(),
                service_account_id: op.service_account_id.as_str().to_owned(),
                kind: op.kind.as_str().to_owned(),
                actor: op.actor.as_str().to_owned(),
                created_at: op.created_at.unix_nanos(),
                changes: serde_json::to_string(&op.changes).unwrap(),
            })
            .collect();
        let mut logged = crate::KeyRecord::new(
            KeyId::parse("cccccccccccccccccccc").unwrap(),
            crate::ServiceAccountId::new("robot").unwrap(),
            crate::KeyKind::Native,
            1,
            crate::Digest::from_bytes([2; 32]),
            crate::secret::MaskedKey::from_tail(b"Xy12Z9"),
            Timestamp::from_unix_nanos(1_700_000_000_000_000_001),
        );
        logged.description = crate::record::Description::new("old key").unwrap();
        logged.scopes = crate::ScopeSet::new([crate::Scope::new("a.read").unwrap()]).unwrap();
        logged.status = crate::KeyStatus::Revoked;
        let written = [
            ("op000000000000000001", "create", r#"{"description":"old key"}"#),
            ("op000000000000000002", "revoke", r#"{"status":"revoked"}"#),
            ("op000000000000000003", "update", r#"{"description":"pruned"}"#),
        ];
        for (i, (id, kind, changes)) in (0i64..).zip(written) {
            log_rows.push(LogRow {
                id: id.to_owned(),
                key_id: logged.id.as_str().to_owned(),
                service_account_id: "robot".to_owned(),
                kind: kind.to_owned(),
                actor: "keyctl".to_owned(),
                created_at: 1_700_000_000_000_000_000 + i,
                changes: changes.to_owned(),
            });
        }
        PreviousRelease {
            records,
            operations,
            secrets,
            revoked: (revoked.api_key.id, revoked.secret),
            clock,
            logged,
            log_rows,
            pruned: "op000000000000000003",
        }
    }

    /// Every old record reads back exactly (scopes, expiry, last use and
    /// links intact, enabled, no controls), every key that verified still
    /// verifies through a manager's verifier, the revoked one is still
    /// refused, and the log reads back.
    pub(crate) async fn check_v3_upgraded<S: KeyStore + Clone>(store: &S, old: &PreviousRelease) {
        use std::sync::Arc;

        use crate::{KeyManager, VerifyError};
        for r in &old.records {
            let got = store.get(&r.id).await.unwrap().unwrap();
            assert_eq!(&*got, r, "an old key changed in the upgrade");
            assert!(got.enabled && got.controls.is_none(), "old keys are enabled, without controls");
        }
        let manager = KeyManager::builder(Arc::new(store.clone()), peppers(), crate::testing::scope_catalog())
            .clock(old.clock.clone())
            .build();
        let verifier = manager.verifier().accept_imported(true).build();
        for (id, secret) in &old.secrets {
            let header = format!("Api-Key {}", secret.expose_secret());
            let p = verifier.verify(header.as_bytes(), None).await.unwrap_or_else(|e| panic!("{id}: {e:?}"));
            assert_eq!(p.key_id(), id);
            let r = old.records.iter().find(|r| r.id == *id).unwrap();
            assert_eq!(p.scopes(), &r.scopes, "{id}: scopes after the upgrade");
        }
        let (id, secret) = &old.revoked;
        let header = format!("Api-Key {}", secret.expose_secret());
        let e = verifier.verify(header.as_bytes(), None).await.unwrap_err();
        assert!(matches!(e, VerifyError::Revoked(k) if k == *id), "{e:?}");
        let mut ops = Vec::new();
        for r in &old.records {
            ops.extend(store.operations(&r.id, crate::PageRequest::starting(100, None)).await.unwrap().items);
        }
        // The previous release kept no response snapshots: its entries read back without one.
        let expected: Vec<crate::Operation> =
            old.operations.iter().cloned().map(|op| crate::Operation { response: None, ..op }).collect();
        assert_eq!(ops, expected, "the operations log after the upgrade");
    }

    /// Every field survives; the imported key shows, and the table now
    /// holds (`stored`), six hex digits of its digest; the new pepper
    /// table works.
    pub(crate) async fn check_upgraded<S: KeyStore>(store: &S, stored: &[String]) {
        for (id, tail) in [("aaaaaaaaaaaaaaaaaaaa", "Xy12Z9"), ("bbbbbbbbbbbbbbbbbbbb", "ababab")] {
            let r = store.get(&KeyId::parse(id).unwrap()).await.unwrap().unwrap();
            assert_eq!((r.service_account_id.as_str(), r.description.as_str()), ("robot", "old key"));
            assert_eq!(r.created_at.unix_nanos(), 1_700_000_000_000_000_001);
            assert_eq!(r.last_used_at.map(Timestamp::unix_nanos), Some(1_700_000_000_000_000_002));
            assert_eq!(r.expires_at.map(Timestamp::unix_nanos), Some(1_900_000_000_000_000_003));
            assert_eq!(r.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["a.read", "b.manage"]);
            assert_eq!((r.pepper_version, r.status), (1, crate::KeyStatus::Active));
            assert_eq!(r.masked_key.tail(), tail);
        }
        assert_eq!(stored, ["Xy12Z9", "ababab"], "the secret's tail is gone from the table");
        let fp = crate::Digest::from_bytes([5; 32]);
        assert!(store.pepper_fingerprint(1, fp).await.unwrap() == fp);
    }
}

/// Runs every listing and lookup a large store must answer from an index,
/// each under `$explain` (the dialect's `EXPLAIN`) with sample arguments
/// that fit the rows [`explain_fill`] writes, through `$plan`: an async fn
/// `(pool, name, query)` that checks the plan.
#[cfg(test)]
macro_rules! explain_listings {
    ($pool:expr, $explain:literal, $plan:path) => {{
        use $crate::store::sql::{
            IDEMPOTENCY, IDS_AFTER, LIST_AFTER, LIST_EXPIRING_AFTER, LIST_EXPIRING_FIRST, LIST_EXTERNAL_AFTER,
            LIST_EXTERNAL_FIRST, LIST_FIRST, OPERATION, OPERATIONS, SELECT_BY_DIGEST, SELECT_BY_ID,
        };
        let q = |sql: &str| sqlx::query(sqlx::AssertSqlSafe(format!(concat!($explain, " {}"), sql)));
        let id = "fx00000000000000abcd";
        // 1.8e18 + 5,000..6,000 s: about 100 of the 10,000 expiring keys.
        let (from, until) = (1_800_005_000_000_000_000_i64, 1_800_006_000_000_000_000_i64);
        $plan($pool, "list", q(LIST_FIRST).bind("scale-7").bind(101_i64)).await;
        $plan($pool, "list after", q(LIST_AFTER).bind("scale-7").bind(id).bind(101_i64)).await;
        $plan($pool, "by owner", q(LIST_EXTERNAL_FIRST).bind("owner-7").bind(101_i64)).await;
        $plan($pool, "by owner after", q(LIST_EXTERNAL_AFTER).bind("owner-7").bind(id).bind(101_i64)).await;
        $plan($pool, "expiring", q(LIST_EXPIRING_FIRST).bind(from).bind(until).bind(101_i64)).await;
        $plan($pool, "expiring after", q(LIST_EXPIRING_AFTER).bind(from).bind(until).bind(id).bind(101_i64)).await;
        $plan($pool, "ids after", q(IDS_AFTER).bind(id).bind(1000_i64)).await;
        $plan($pool, "operations", q(OPERATIONS).bind(id).bind(i64::MAX).bind(101_i64)).await;
        $plan($pool, "operation", q(OPERATION).bind("op00000000000000abcd")).await;
        $plan($pool, "by id", q(SELECT_BY_ID).bind(id)).await;
        $plan($pool, "by digest", q(SELECT_BY_DIGEST).bind(vec![7_u8; 32])).await;
        $plan($pool, "idempotency", q(IDEMPOTENCY).bind("system").bind(vec![7_u8; 32]).bind(0_i64)).await;
    }};
}
#[cfg(test)]
pub(super) use explain_listings;

/// Rows for [`explain_listings`]: `n` keys over 1,000 service accounts (one
/// in ten expiring, one in a hundred with an owner), `n` log entries and
/// `n` idempotency records, with `id`, `op_id`, `digest` and `scopes` the
/// dialect's expressions for row `g`; `g` counts from 1 (a
/// `generate_series` or a recursive `WITH`, written by the caller after
/// these).
#[cfg(test)]
pub(super) fn explain_fill(id: &str, op_id: &str, digest: &str, scopes: &str) -> [String; 3] {
    [
        format!(
            "INSERT INTO api_keys (id, service_account_id, created_at, scopes, expires_at, masked_key, \
             pepper_version, digest, status, kind, external_id) \
             SELECT {id}, 'scale-' || (g % 1000), 1700000000000000000, {scopes}, \
             CASE WHEN g % 10 = 0 THEN 1800000000000000000 + CAST(g AS BIGINT) * 1000000000 ELSE NULL END, 'abcdef', 1, \
             {digest}, 'active', 'native', CASE WHEN g % 100 = 0 THEN 'owner-' || (g % 5000) ELSE NULL END"
        ),
        format!(
            "INSERT INTO api_key_operations (id, key_id, service_account_id, kind, actor, created_at, changes) \
             SELECT {op_id}, {id}, 'scale-1', 'create', 'system', 1, '{{}}'"
        ),
        format!(
            "INSERT INTO api_key_idempotency (actor, key_hash, fingerprint, operation_id, created_at, expires_at) \
             SELECT 'actor-' || (g % 100), {digest}, {digest}, {op_id}, 1, 2"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_every_column_once() {
        let n = columns!().split(',').count();
        assert_eq!(n, 22);
        assert!(INSERT.contains(&format!("${n})")));
        assert!(!INSERT.contains(&format!("${}", n + 1)));
        assert!(SELECT_BY_ID.starts_with(concat!("SELECT ", columns!(), " FROM api_keys WHERE")));
    }

    fn checksums<D: Dialect>() -> Vec<(i64, String)> {
        use std::fmt::Write as _;
        migrator::<D>()
            .iter()
            .map(|m| {
                (
                    m.version,
                    m.checksum.iter().fold(String::new(), |mut h, b| {
                        let _ = write!(h, "{b:02x}");
                        h
                    }),
                )
            })
            .collect()
    }

    /// Applied versions are recorded with these checksums; a changed file
    /// would make every existing database refuse to open.
    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_schema_versions_keep_their_checksums() {
        assert_eq!(
            checksums::<crate::store::sqlite::Sqlite>(),
            [
                (
                    1,
                    "084ae9ae954bdfa20485b0c2e9b1adb51f66460a6e6649eb63ae5ffc4b22566ec4b5e18042cabf4cb0cd5c725554eb03"
                        .to_owned()
                ),
                (
                    2,
                    "b7cdf399cab513aafbb5dbb6e008bc585199744f1c5fbdac4e7fe385e7b908853c89b20eca861c2515dc5db1cda80b93"
                        .to_owned()
                ),
                (
                    3,
                    "47d03540b53a4f1d0d8fd3141f61ddded030af6d80b68948ba76187d6ffc1ce4f7a63d338d46a8e42c17a9101a9dd97c"
                        .to_owned()
                ),
                (
                    4,
                    "1443a90e05a5373c45bb4bd533cf13e9abb183d9449c1c4f17cedd6cdf5e41682b4400298b78928462d93bd305f26870"
                        .to_owned()
                ),
                (
                    5,
                    "9d32dfa88a5f6d1b756d7d350e89be61dd1a17c90a363404feefbb1425e8682a1d99ed82d098fbb4004f300153f47941"
                        .to_owned()
                ),
                (
                    6,
                    "d27538bede8deae2b6019f9407efdb2aeb002bd1ce250fe5bbb7c5f09a946350f1647ccfbbcca90c4741fa65b6b76b68"
                        .to_owned()
                ),
                (
                    7,
                    "0f86e7a97d57d246e24b6be719c5c7afad9417ebca43c68de45077d9318fba98188eacb0bffb14ce21f2400af8be1512"
                        .to_owned()
                ),
                (
                    8,
                    "5558e86b537ba2eddc5198477d8c199ae9001338b3fecba152ba9108a9cbab8a65ca998ac2992bd56806ed8f220879e0"
                        .to_owned()
                ),
                (
                    9,
                    "6baf75831d8e7c18e17ceeffd47713349ebdd78667ae030ef9f594dd5086abee774d882755d42a14eda5ae1541a95aac"
                        .to_owned()
                ),
                (
                    10,
                    "dc207365bf01b5e150204a91b0b91b77a0cc841b3847085105e3b4a57738a1f4c188b21e950a98dfe8d2fbfc956aad35"
                        .to_owned()
                ),
                (
                    11,
                    "ea07e2a4230ed0eabb947eef6f3d4c5cc8683f22c8de0acd9b4bea7b422d787657ae17ac51c3a050d3d770f82f6a511a"
                        .to_owned()
                ),
                (
                    12,
                    "9105815d10063e1617d2ec1e549a5586434294af1e1755b4549fb820b1777579b8e518f02f6e605bfebfdb3111ae0770"
                        .to_owned()
                )
            ]
        );
    }

    /// As for SQLite.
    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_schema_versions_keep_their_checksums() {
        assert_eq!(
            checksums::<crate::store::postgres::Postgres>(),
            [
                (
                    1,
                    "0f8a2901fb15efb5d5ac8803e123a02852590302928f9a4abab9671601eb76d4e413d85c791f7826abac74a35fba8a7b"
                        .to_owned()
                ),
                (
                    2,
                    "d3b2ffdd73ab0c322e4f773a1a886f6a36e7e1445c738f51a93ea245b5e0eefee59d9b71d1347972a5e1942ebe75f860"
                        .to_owned()
                ),
                (
                    3,
                    "0c876dc0eb6cbc44dd07ca085e3c8df87521da8895750d16945270fe07d9d0353082a8cef3057e4067a2cf0be0b7616b"
                        .to_owned()
                ),
                (
                    4,
                    "bc374e6581a20ce4afa0f112aa87577d370f68a7539f5b3f0fa953d0edcfcf4a68f0800ede2fdb0a028fea67124f7c59"
                        .to_owned()
                ),
                (
                    5,
                    "fa6698005d7f32983d16821a9a0c75a1bfa3a927c2721aa7123b2bdac864443c1cf8856e1414877405886c2a32bf49a1"
                        .to_owned()
                ),
                (
                    6,
                    "71a55744bd16a3745871b5547a63db25dfed49fc0b74a30de3e76b45eaea1fa1349a6495e483ef627daa7980f1e6b56c"
                        .to_owned()
                ),
                (
                    7,
                    "0771251d4c47e74ba4b24ea578bcbf59a654616fc89de5ac346e1f0b4a98d28a3a1ea8f4486bf6269c34ca3e7554b2de"
                        .to_owned()
                ),
                (
                    8,
                    "40b29343d57fd0de1c854cb1ad3d0900a6450c17abe0893de37f5eb5478d867d4f6955a13085137bd803bbcc5a290759"
                        .to_owned()
                ),
                (
                    9,
                    "f67f6ba317e18b64b2daa87af8b1f70391e5a216ca9793d6e43304ddfc70736c96e68eaccfaa89c54975d584d7a52fda"
                        .to_owned()
                ),
                (
                    10,
                    "d170596a76e1740dd54c2fc6f80485c783af9ff0ac3a9ca8041c4dea4742e02a223dde9dba33aef1ee24fa1cd8377296"
                        .to_owned()
                ),
                (
                    11,
                    "ea07e2a4230ed0eabb947eef6f3d4c5cc8683f22c8de0acd9b4bea7b422d787657ae17ac51c3a050d3d770f82f6a511a"
                        .to_owned()
                ),
                (
                    12,
                    "9105815d10063e1617d2ec1e549a5586434294af1e1755b4549fb820b1777579b8e518f02f6e605bfebfdb3111ae0770"
                        .to_owned()
                )
            ]
        );
    }
}
