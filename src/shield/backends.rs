//! [`KeyIds`] for the persistent stores: one indexed range query per page
//! (`id` is each table's primary key) or, for Redis, a `SCAN` of the record
//! keys.

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
use std::time::Duration;

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
use super::KeyIds;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
use crate::store::StoreError;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
use crate::token::KeyId;

/// Runs `fut` under the store's timeout.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
async fn timed<T>(limit: Duration, fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(limit, fut).await.unwrap_or(Err(StoreError::Timeout(limit)))
}

/// Parses ids read from a store; anything else is corruption.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
fn parse_ids(rows: &[String]) -> Result<Vec<KeyId>, StoreError> {
    rows.iter()
        .map(|s| KeyId::parse(s).map_err(|_| StoreError::Corrupt("a stored id is not a key id".into())))
        .collect()
}

/// The range query, with `$1`/`$2` placeholders (PostgreSQL and SQLite both
/// accept them); the lower bound `''` sorts before every id.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
const PAGE_SQL: &str = "SELECT id FROM api_keys WHERE id > $1 ORDER BY id LIMIT $2";

/// The SQL stores share one table and one range query: one impl body.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! sql_key_ids {
    ($store:ty) => {
        impl KeyIds for $store {
            async fn ids_after(&self, after: Option<KeyId>, limit: u32) -> Result<Vec<KeyId>, StoreError> {
                let after = after.map_or(String::new(), |id| id.as_str().to_owned());
                let rows = timed(self.timeout(), async {
                    sqlx::query_scalar::<_, String>(PAGE_SQL)
                        .bind(after)
                        .bind(i64::from(limit))
                        .fetch_all(self.pool())
                        .await
                        .map_err(StoreError::unavailable)
                })
                .await?;
                parse_ids(&rows)
            }
        }
    };
}

#[cfg(feature = "sqlite")]
sql_key_ids!(crate::SqliteStore);
#[cfg(feature = "postgres")]
sql_key_ids!(crate::PostgresStore);

#[cfg(feature = "redis")]
impl KeyIds for crate::RedisStore {
    /// Redis keeps no ordered index of all ids: every call scans the record
    /// keys under the prefix and returns all ids after `after`, sorted (more
    /// than `limit`, so one call loads everything).
    async fn ids_after(&self, after: Option<KeyId>, _limit: u32) -> Result<Vec<KeyId>, StoreError> {
        let pattern = format!("{{{}}}:key:*", self.prefix());
        let strip = pattern.len() - 1;
        let mut conn = self.connection().clone();
        let keys = timed(self.timeout() * 10, async {
            let mut cursor: u64 = 0;
            let mut keys = Vec::new();
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(StoreError::unavailable)?;
                keys.extend(batch.into_iter().map(|k| k.get(strip..).unwrap_or("").to_owned()));
                if next == 0 {
                    return Ok(keys);
                }
                cursor = next;
            }
        })
        .await?;
        let mut ids = parse_ids(&keys)?;
        ids.sort_unstable();
        ids.dedup();
        let start = after.map_or(0, |a| ids.partition_point(|id| *id <= a));
        Ok(ids.split_off(start))
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
impl KeyIds for crate::config::AnyStore {
    async fn ids_after(&self, after: Option<KeyId>, limit: u32) -> Result<Vec<KeyId>, StoreError> {
        match self {
            Self::Memory(s) => s.ids_after(after, limit).await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(s) => s.ids_after(after, limit).await,
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s.ids_after(after, limit).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.ids_after(after, limit).await,
        }
    }
}
