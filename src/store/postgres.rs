//! The PostgreSQL [`KeyStore`] (feature `postgres`), over a sqlx `PgPool`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use api_keys::{KeyManager, Pepper, Peppers, PostgresStore, ScopeCatalog};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::builder("postgres://app@127.0.0.1:5432/app")
//!     .schema("api_keys")                  // optional: keep the tables in their own schema
//!     .timeout(Duration::from_millis(500)) // per call; defaults to 2 s
//!     .connect()                           // connects and applies the schema
//!     .await?;
//! let manager =
//!     KeyManager::builder(Arc::new(store), Peppers::single(Pepper::generate(1)?), ScopeCatalog::yandex_cloud())
//!         .build();
//! let verifier = manager.verifier().build();
//! # let _ = verifier; Ok(()) }
//! ```
//!
//! # Schema and migrations
//! One table, `api_keys`: primary key on `id`; a partial unique index on
//! `digest` `WHERE kind = 'imported'` (the lookup index for imported keys,
//! and at most one imported key per digest); an index on
//! `(service_account_id, id)` for keyset pagination; ids compare byte-wise
//! (`COLLATE "C"`) so the listing order matches every other store. The
//! schema ships inside the crate as versioned SQL applied by sqlx's
//! [`Migrator`] (each version in a transaction, checksummed, under sqlx's
//! advisory lock so several nodes can start at once) and tracked in
//! [`MIGRATIONS_TABLE`](crate::store::MIGRATIONS_TABLE).
//!
//! With [`PostgresStoreBuilder::schema`] the builder creates the schema if
//! missing and sets every pooled connection's `search_path` to it in
//! `after_connect`, so the tables, the migrations table and every query
//! live in that schema (tests use a fresh schema each).
//!
//! # Atomicity
//! `insert` is one `INSERT … ON CONFLICT DO NOTHING` (a duplicate id or
//! imported digest writes nothing). `revoke` and `delete` are one statement
//! each. `reissue` runs in one transaction: `SELECT … FOR UPDATE` on the old
//! row, the shared [`apply_reissue`] rules, the insert of the new row, the
//! update of the old one, commit — a concurrent reissue waits on the row lock
//! and then sees the old key as already reissued. `touch_last_used` is one
//! `UPDATE … FROM UNNEST($1::text[], $2::bigint[])` statement per batch and
//! never moves a time backwards.
//!
//! # Failures
//! Every call is bounded by the store timeout and fails with
//! [`StoreError::Timeout`] after it (the transaction, if any, is rolled
//! back); driver errors are [`StoreError::Unavailable`] (server error
//! details, which can quote row data, are dropped); rows that do not decode
//! are [`StoreError::Corrupt`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection as _, Row as _, SqlSafeStr as _};

use super::backend::{ConfigError, DEFAULT_TIMEOUT, MIGRATIONS_TABLE, Row, sqlx_error, timed};
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
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING";

/// One statement for a whole batch; the newest time per id wins (several
/// source rows for one target row would otherwise leave the choice to the
/// planner) and no time moves backwards.
const TOUCH: &str = "UPDATE api_keys AS k SET last_used_at = GREATEST(k.last_used_at, u.at) \
     FROM (SELECT t.id, max(t.at) AS at FROM UNNEST($1::text[], $2::bigint[]) AS t(id, at) GROUP BY t.id) AS u \
     WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)";

/// The embedded schema versions.
fn migrator() -> Migrator {
    let mut m = Migrator::with_migrations(vec![Migration::new(
        1,
        "create api_keys".into(),
        MigrationType::Simple,
        include_str!("migrations/postgres/0001_create_api_keys.sql").into_sql_str(),
        false,
    )]);
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

/// Whether `name` is a schema name we accept: `[a-z_][a-z0-9_]{0,62}`. It is
/// interpolated (quoted) into `CREATE SCHEMA` and `SET search_path`, so the
/// alphabet is deliberately narrow.
fn valid_schema(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && !b[0].is_ascii_digit()
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Builds a [`PostgresStore`]; see [`PostgresStore::builder`].
pub struct PostgresStoreBuilder {
    url: String,
    schema: Option<String>,
    timeout: Duration,
    max_connections: u32,
}

impl std::fmt::Debug for PostgresStoreBuilder {
    /// Omits the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStoreBuilder")
            .field("schema", &self.schema)
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl PostgresStoreBuilder {
    /// Keeps the tables in this schema (`[a-z_][a-z0-9_]{0,62}`), created
    /// if missing; every pooled connection's `search_path` is set to it.
    /// Defaults to the server's `search_path` (normally `public`).
    #[must_use]
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = Some(name.into());
        self
    }

    /// How long each call may take (including waiting for a pooled
    /// connection) before it fails with [`StoreError::Timeout`]. Defaults to
    /// [`DEFAULT_TIMEOUT`] (2 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest number of pooled connections. Defaults to 10.
    #[must_use]
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    fn pool_options(&self) -> Result<(PgPoolOptions, PgConnectOptions), StoreError> {
        let connect = PgConnectOptions::from_str(&self.url).map_err(sqlx_error)?;
        let mut pool = PgPoolOptions::new().max_connections(self.max_connections).acquire_timeout(self.timeout);
        if let Some(schema) = &self.schema {
            if !valid_schema(schema) {
                return Err(StoreError::unavailable(ConfigError::SchemaName));
            }
            let set_path: Arc<str> = Arc::from(format!("SET search_path TO \"{schema}\""));
            pool = pool.after_connect(move |conn, _meta| {
                let sql = Arc::clone(&set_path);
                Box::pin(async move {
                    sqlx::query(AssertSqlSafe(sql)).execute(conn).await?;
                    Ok(())
                })
            });
        }
        Ok((pool, connect))
    }

    /// Connects, creates the schema if one was named, and applies the
    /// embedded schema versions.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] for an invalid URL or schema name
    /// ([`ConfigError`] as the source), an unreachable server or a failed
    /// migration; [`StoreError::Timeout`] if connecting takes longer than the
    /// timeout.
    pub async fn connect(self) -> Result<PostgresStore, StoreError> {
        let (pool, connect) = self.pool_options()?;
        // One direct connection first: the pool retries refused connections
        // until its timeout, which would hide the cause ("connection
        // refused", "password authentication failed") behind a timeout.
        timed(self.timeout, async {
            let probe = PgConnection::connect_with(&connect).await.map_err(sqlx_error)?;
            probe.close().await.map_err(sqlx_error)
        })
        .await?;
        let pool = timed(self.timeout, async { pool.connect_with(connect).await.map_err(sqlx_error) }).await?;
        if let Some(schema) = &self.schema {
            // Validated in `pool_options`.
            sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
                .execute(&pool)
                .await
                .map_err(sqlx_error)?;
        }
        let store = PostgresStore { pool, timeout: self.timeout };
        store.migrate().await?;
        Ok(store)
    }

    /// A store whose pool connects on first use; nothing is checked or
    /// migrated now (call [`PostgresStore::migrate`] once the server is up).
    /// Calls fail with [`StoreError::Unavailable`] or
    /// [`StoreError::Timeout`] while the server cannot be reached. Must be
    /// called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] for an invalid URL or schema name.
    pub fn connect_lazy(self) -> Result<PostgresStore, StoreError> {
        let (pool, connect) = self.pool_options()?;
        Ok(PostgresStore { pool: pool.connect_lazy_with(connect), timeout: self.timeout })
    }
}

/// A [`KeyStore`] in PostgreSQL. Cheap to clone (shares the pool).
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    timeout: Duration,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Starts configuring a store for `url`
    /// (`postgres://user[:password]@host[:port]/database`).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder { url: url.into(), schema: None, timeout: DEFAULT_TIMEOUT, max_connections: 10 }
    }

    /// Connects to `url` with the defaults and applies the schema.
    ///
    /// # Errors
    /// As [`PostgresStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// Wraps an existing pool without touching the schema; call
    /// [`PostgresStore::migrate`] once before use.
    #[must_use]
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool, timeout: DEFAULT_TIMEOUT }
    }

    /// Sets the per-call timeout. Defaults to [`DEFAULT_TIMEOUT`] (2 s). A
    /// zero timeout fails every call that does not complete at once.
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
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded schema versions not yet applied, each in its own
    /// transaction, under sqlx's advisory lock. Safe to call on every start
    /// and from several nodes at once.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the database fails or holds a schema
    /// version this build does not know.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator().run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => sqlx_error(e),
            other => StoreError::unavailable(other),
        })
    }

    async fn fetch_one(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let row = query.fetch_optional(&self.pool).await.map_err(sqlx_error)?;
        row.map(|r| decode(&r).map(Arc::new)).transpose()
    }
}

fn decode(r: &PgRow) -> Result<KeyRecord, StoreError> {
    let row = Row {
        id: r.try_get("id").map_err(sqlx_error)?,
        service_account_id: r.try_get("service_account_id").map_err(sqlx_error)?,
        description: r.try_get("description").map_err(sqlx_error)?,
        created_at: r.try_get("created_at").map_err(sqlx_error)?,
        last_used_at: r.try_get("last_used_at").map_err(sqlx_error)?,
        scopes: r.try_get("scopes").map_err(sqlx_error)?,
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
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let scopes: Vec<&str> = r.scopes.iter().map(|s| s.as_str()).collect();
    let done = sqlx::query(INSERT)
        .bind(r.id.as_str())
        .bind(r.service_account_id.as_str())
        .bind(r.description.as_str())
        .bind(r.created_at.unix_nanos())
        .bind(r.last_used_at.map(Timestamp::unix_nanos))
        .bind(scopes)
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

impl KeyStore for PostgresStore {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        timed(self.timeout, async {
            if insert_row(&self.pool, &record).await? { Ok(()) } else { Err(StoreError::Duplicate(record.id)) }
        })
        .await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        timed(self.timeout, self.fetch_one(sqlx::query(select!("WHERE id = $1")).bind(id.as_str()))).await
    }

    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let query = sqlx::query(select!("WHERE digest = $1 AND kind = 'imported'")).bind(&digest.as_bytes()[..]);
        timed(self.timeout, self.fetch_one(query)).await
    }

    async fn list(&self, service_account: &ServiceAccountId, page: PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        let limit = page.effective_limit();
        // One extra row tells whether another page follows.
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let query = match &page.after {
            None => sqlx::query(select!("WHERE service_account_id = $1 ORDER BY id LIMIT $2"))
                .bind(service_account.as_str())
                .bind(fetch),
            Some(after) => sqlx::query(select!("WHERE service_account_id = $1 AND id > $2 ORDER BY id LIMIT $3"))
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
            let done = sqlx::query("UPDATE api_keys SET status = 'revoked' WHERE id = $1")
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
            let done = sqlx::query("DELETE FROM api_keys WHERE id = $1")
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
            // Dropping `tx` without commit (any `?` below) rolls back.
            let mut tx = self.pool.begin().await.map_err(sqlx_error)?;
            let row = sqlx::query(select!("WHERE id = $1 FOR UPDATE"))
                .bind(old.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(sqlx_error)?;
            let mut updated = decode(&row.ok_or(StoreError::NotFound(*old))?)?;
            apply_reissue(&mut updated, new.id, fate)?;
            if !insert_row(&mut *tx, &new).await? {
                return Err(StoreError::Duplicate(new.id));
            }
            sqlx::query("UPDATE api_keys SET replaced_by = $2, status = $3, expires_at = $4 WHERE id = $1")
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
        let ids: Vec<&str> = updates.iter().map(|(id, _)| id.as_str()).collect();
        let times: Vec<i64> = updates.iter().map(|(_, at)| at.unix_nanos()).collect();
        timed(self.timeout, async {
            sqlx::query(TOUCH).bind(ids).bind(times).execute(&self.pool).await.map_err(sqlx_error)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_narrow() {
        for ok in ["api_keys", "_x", "t_0123456789abcdef", &"a".repeat(63)] {
            assert!(valid_schema(ok), "{ok}");
        }
        for bad in ["", "0abc", "Api", "a-b", "a\"b", "a;drop", "public.x", &"a".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn invalid_schema_names_are_refused_before_connecting() {
        let e = PostgresStore::builder("postgres://postgres@127.0.0.1:1/test")
            .schema("x\"; DROP TABLE api_keys; --")
            .connect_lazy()
            .unwrap_err();
        let source = std::error::Error::source(&e).unwrap();
        assert_eq!(source.to_string(), ConfigError::SchemaName.to_string());
    }

    #[test]
    fn builder_debug_omits_the_url() {
        let b = PostgresStore::builder("postgres://app:hunter2@db/app");
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
