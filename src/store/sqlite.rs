//! The SQLite [`KeyStore`] (feature `sqlite`): sqlx with a bundled SQLite, no
//! system library needed. The embedded default for the CLI and single-node
//! services.
//!
//! ```no_run
//! use std::sync::Arc;
//! use api_keys::{CreateRequest, KeyManager, Pepper, Peppers, ScopeCatalog, SqliteStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Creates the file if missing, switches it to WAL and applies the schema.
//! let store = Arc::new(SqliteStore::connect("sqlite:api-keys.db").await?);
//! let manager = KeyManager::builder(store, Peppers::single(Pepper::generate(1)?), ScopeCatalog::yandex_cloud())
//!     .build();
//! let created = manager.create(CreateRequest::new("my-robot")).await?;
//! # let _ = created; Ok(()) }
//! ```
//!
//! # Schema and migrations
//! One `STRICT` table, `api_keys`, with the id as primary key, a partial
//! unique index on `digest` for imported keys and an index on
//! `(service_account_id, id)` for listing. The schema ships inside the crate
//! as versioned SQL applied by sqlx's [`Migrator`] (each version in its own
//! transaction, checksummed) and tracked in the table
//! [`MIGRATIONS_TABLE`](crate::store::MIGRATIONS_TABLE), so it never collides with an application's own
//! `_sqlx_migrations`. [`SqliteStore::connect`] migrates;
//! [`SqliteStore::from_pool`] does not (call [`SqliteStore::migrate`]).
//!
//! # Durability and concurrency
//! [`SqliteStore::connect`] opens the database in WAL mode (readers never
//! block the writer) with `synchronous = FULL` (a committed revoke survives
//! power loss) and a busy timeout equal to the store timeout. A reissue reads
//! and writes inside one `BEGIN IMMEDIATE` transaction, so concurrent writers
//! queue on the busy timeout instead of failing to upgrade a read lock.
//! `touch_last_used` is one `UPDATE … FROM json_each(?)` statement per batch.
//!
//! # Failures
//! Every call is bounded by the store timeout ([`DEFAULT_TIMEOUT`] unless set
//! with [`SqliteStore::with_timeout`]) and fails with [`StoreError::Timeout`]
//! after it; driver errors are [`StoreError::Unavailable`]; rows that do not
//! decode are [`StoreError::Corrupt`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row as _, SqlSafeStr as _};

use super::backend::{DEFAULT_TIMEOUT, MIGRATIONS_TABLE, Row, join_scopes, split_scopes, sqlx_error, timed};
use super::{KeyStore, OldKeyFate, Page, PageRequest, StoreError, apply_reissue};
use crate::clock::Timestamp;
use crate::digest::Digest;
use crate::record::{KeyRecord, ServiceAccountId};
use crate::token::KeyId;

macro_rules! select {
    ($clause:literal) => {
        concat!(
            "SELECT id, service_account_id, description, created_at, last_used_at, scopes, expires_at, ",
            "masked_key, pepper_version, digest, status, kind, replaced_by, reissued_from FROM api_keys ",
            $clause
        )
    };
}

const INSERT: &str = "INSERT INTO api_keys (id, service_account_id, description, created_at, last_used_at, scopes, \
     expires_at, masked_key, pepper_version, digest, status, kind, replaced_by, reissued_from) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) ON CONFLICT DO NOTHING";

/// One statement for a whole batch: `?1` is a JSON array of `[id, nanos]`
/// pairs; the newest time per id wins and no time moves backwards.
const TOUCH: &str = "UPDATE api_keys SET last_used_at = u.at \
     FROM (SELECT json_extract(value, '$[0]') AS id, MAX(json_extract(value, '$[1]')) AS at \
           FROM json_each(?1) GROUP BY 1) AS u \
     WHERE api_keys.id = u.id AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < u.at)";

/// The embedded schema versions.
fn migrator() -> Migrator {
    let mut m = Migrator::with_migrations(vec![Migration::new(
        1,
        "create api_keys".into(),
        MigrationType::Simple,
        include_str!("migrations/sqlite/0001_create_api_keys.sql").into_sql_str(),
        false,
    )]);
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

/// A [`KeyStore`] in a SQLite database. Cheap to clone (shares the pool).
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    timeout: Duration,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite:path.db`,
    /// `sqlite://path.db`, `sqlite::memory:`) in WAL mode with
    /// `synchronous = FULL`, and applies the schema.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the URL is invalid, the file cannot be
    /// opened or a migration fails; [`StoreError::Timeout`] if opening takes
    /// longer than [`DEFAULT_TIMEOUT`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url).map_err(sqlx_error)?;
        Self::connect_with(options).await
    }

    /// Like [`SqliteStore::connect`] with prepared options; WAL mode,
    /// `synchronous = FULL`, create-if-missing and the busy timeout are set on
    /// top of them.
    ///
    /// # Errors
    /// As [`SqliteStore::connect`].
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(DEFAULT_TIMEOUT);
        let pool = timed(DEFAULT_TIMEOUT, async {
            SqlitePoolOptions::new().acquire_timeout(DEFAULT_TIMEOUT).connect_with(options).await.map_err(sqlx_error)
        })
        .await?;
        let store = Self::from_pool(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// Wraps an existing pool without touching the schema; call
    /// [`SqliteStore::migrate`] once before use.
    #[must_use]
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { pool, timeout: DEFAULT_TIMEOUT }
    }

    /// Sets how long each call may take before it fails with
    /// [`StoreError::Timeout`]. Defaults to [`DEFAULT_TIMEOUT`] (2 s). A zero
    /// timeout fails every call that does not complete at once.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The per-call timeout.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The connection pool.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Applies the embedded schema versions not yet applied, each in its own
    /// transaction. Safe to call on every start.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the database fails or holds a schema
    /// version this build does not know.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator().run(&self.pool).await.map_err(migrate_error)
    }

    async fn fetch_one(
        &self,
        query: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let row = query.fetch_optional(&self.pool).await.map_err(sqlx_error)?;
        row.map(|r| decode(&r).map(Arc::new)).transpose()
    }
}

fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => sqlx_error(e),
        other => StoreError::unavailable(other),
    }
}

fn decode(r: &SqliteRow) -> Result<KeyRecord, StoreError> {
    let scopes: String = r.try_get("scopes").map_err(sqlx_error)?;
    let row = Row {
        id: r.try_get("id").map_err(sqlx_error)?,
        service_account_id: r.try_get("service_account_id").map_err(sqlx_error)?,
        description: r.try_get("description").map_err(sqlx_error)?,
        created_at: r.try_get("created_at").map_err(sqlx_error)?,
        last_used_at: r.try_get("last_used_at").map_err(sqlx_error)?,
        scopes: split_scopes(&scopes),
        expires_at: r.try_get("expires_at").map_err(sqlx_error)?,
        masked_key: r.try_get("masked_key").map_err(sqlx_error)?,
        pepper_version: r.try_get("pepper_version").map_err(sqlx_error)?,
        digest: r.try_get("digest").map_err(sqlx_error)?,
        status: r.try_get("status").map_err(sqlx_error)?,
        kind: r.try_get("kind").map_err(sqlx_error)?,
        replaced_by: r.try_get("replaced_by").map_err(sqlx_error)?,
        reissued_from: r.try_get("reissued_from").map_err(sqlx_error)?,
    };
    row.into_record()
}

/// Inserts `r`; `Ok(false)` when its id or imported digest already exists
/// (nothing written then).
async fn insert_row<'e, E>(executor: E, r: &KeyRecord) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let done = sqlx::query(INSERT)
        .bind(r.id.as_str())
        .bind(r.service_account_id.as_str())
        .bind(r.description.as_str())
        .bind(r.created_at.unix_nanos())
        .bind(r.last_used_at.map(Timestamp::unix_nanos))
        .bind(join_scopes(&r.scopes))
        .bind(r.expires_at.map(Timestamp::unix_nanos))
        .bind(r.masked_key.tail())
        .bind(i64::from(r.pepper_version))
        .bind(&r.digest.as_bytes()[..])
        .bind(r.status.as_str())
        .bind(r.kind.as_str())
        .bind(r.links.replaced_by.as_ref().map(KeyId::as_str))
        .bind(r.links.reissued_from.as_ref().map(KeyId::as_str))
        .execute(executor)
        .await
        .map_err(sqlx_error)?;
    Ok(done.rows_affected() == 1)
}

/// `[["id",nanos],…]`: ids are `[a-z0-9]` and times integers, so no escaping
/// is needed.
fn touch_json(updates: &[(KeyId, Timestamp)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(2 + updates.len() * 48);
    out.push('[');
    for (i, (id, at)) in updates.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "[\"{}\",{}]", id.as_str(), at.unix_nanos());
    }
    out.push(']');
    out
}

impl KeyStore for SqliteStore {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        timed(self.timeout, async {
            if insert_row(&self.pool, &record).await? { Ok(()) } else { Err(StoreError::Duplicate(record.id)) }
        })
        .await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        timed(self.timeout, self.fetch_one(sqlx::query(select!("WHERE id = ?1")).bind(id.as_str()))).await
    }

    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let query = sqlx::query(select!("WHERE digest = ?1 AND kind = 'imported'")).bind(&digest.as_bytes()[..]);
        timed(self.timeout, self.fetch_one(query)).await
    }

    async fn list(&self, service_account: &ServiceAccountId, page: PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        let limit = page.effective_limit();
        // One extra row tells whether another page follows.
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let query = match &page.after {
            None => sqlx::query(select!("WHERE service_account_id = ?1 ORDER BY id LIMIT ?2"))
                .bind(service_account.as_str())
                .bind(fetch),
            Some(after) => sqlx::query(select!("WHERE service_account_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"))
                .bind(service_account.as_str())
                .bind(after.as_str())
                .bind(fetch),
        };
        timed(self.timeout, async {
            let rows = query.fetch_all(&self.pool).await.map_err(sqlx_error)?;
            let mut items = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|r| r.id)
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn revoke(&self, id: &KeyId) -> Result<(), StoreError> {
        timed(self.timeout, async {
            let done = sqlx::query("UPDATE api_keys SET status = 'revoked' WHERE id = ?1")
                .bind(id.as_str())
                .execute(&self.pool)
                .await
                .map_err(sqlx_error)?;
            if done.rows_affected() == 0 { Err(StoreError::NotFound(*id)) } else { Ok(()) }
        })
        .await
    }

    async fn delete(&self, id: &KeyId) -> Result<(), StoreError> {
        timed(self.timeout, async {
            let done = sqlx::query("DELETE FROM api_keys WHERE id = ?1")
                .bind(id.as_str())
                .execute(&self.pool)
                .await
                .map_err(sqlx_error)?;
            if done.rows_affected() == 0 { Err(StoreError::NotFound(*id)) } else { Ok(()) }
        })
        .await
    }

    async fn reissue(&self, old: &KeyId, new: KeyRecord, fate: OldKeyFate) -> Result<(), StoreError> {
        timed(self.timeout, async {
            // The write lock is taken up front; dropping `tx` rolls back.
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(sqlx_error)?;
            let row = sqlx::query(select!("WHERE id = ?1"))
                .bind(old.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(sqlx_error)?;
            let mut updated = decode(&row.ok_or(StoreError::NotFound(*old))?)?;
            apply_reissue(&mut updated, new.id, fate)?;
            if !insert_row(&mut *tx, &new).await? {
                return Err(StoreError::Duplicate(new.id));
            }
            sqlx::query("UPDATE api_keys SET replaced_by = ?2, status = ?3, expires_at = ?4 WHERE id = ?1")
                .bind(old.as_str())
                .bind(new.id.as_str())
                .bind(updated.status.as_str())
                .bind(updated.expires_at.map(Timestamp::unix_nanos))
                .execute(&mut *tx)
                .await
                .map_err(sqlx_error)?;
            tx.commit().await.map_err(sqlx_error)
        })
        .await
    }

    async fn touch_last_used(&self, updates: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let json = touch_json(updates);
        timed(self.timeout, async {
            sqlx::query(TOUCH).bind(json).execute(&self.pool).await.map_err(sqlx_error)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_json_is_a_plain_array_of_pairs() {
        let a = KeyId::parse("aaaaaaaaaaaaaaaaaaaa").unwrap();
        let b = KeyId::parse("bbbbbbbbbbbbbbbbbbbb").unwrap();
        let json = touch_json(&[(a, Timestamp::from_unix_nanos(1)), (b, Timestamp::from_unix_nanos(-2))]);
        assert_eq!(json, r#"[["aaaaaaaaaaaaaaaaaaaa",1],["bbbbbbbbbbbbbbbbbbbb",-2]]"#);
        assert_eq!(touch_json(&[]), "[]");
    }

    #[tokio::test]
    async fn migrations_are_idempotent_and_tracked_in_their_own_table() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _api_keys_migrations").fetch_all(store.pool()).await.unwrap();
        assert_eq!(versions, [1]);
        let sqlx_default: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name = '_sqlx_migrations'")
                .fetch_optional(store.pool())
                .await
                .unwrap();
        assert_eq!(sqlx_default, None);
    }

    #[tokio::test]
    async fn corrupt_rows_are_reported_without_their_values() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        sqlx::query(
            "INSERT INTO api_keys (id, service_account_id, description, created_at, scopes, masked_key, \
             pepper_version, digest, status, kind) VALUES ('aaaaaaaaaaaaaaaaaaaa', 'sa', '', 0, 'SECRET SCOPE', \
             'abcdef', 1, zeroblob(32), 'active', 'native')",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let e = store.get(&KeyId::parse("aaaaaaaaaaaaaaaaaaaa").unwrap()).await.unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        assert!(e.is_unavailable());
        assert!(!format!("{e} {e:?}").contains("SECRET"));
    }
}
