//! Pieces shared by the persistent stores (SQL and Redis): the timeout
//! wrapper, the configuration error, and the conversion between
//! [`KeyRecord`] and the primitive column values every backend stores. What
//! only the SQL stores share is in [`sql`](super::sql).
//!
//! Every backend keeps the same columns (Redis: hash fields) with the same
//! encodings:
//!
//! | field | encoding |
//! |---|---|
//! | `id`, `replaced_by`, `reissued_from` | text, 20 characters of `[a-z0-9]` |
//! | `service_account_id`, `description`, `masked_key` | text (masked key: the last six characters only) |
//! | `created_at`, `last_used_at`, `expires_at` | `i64` nanoseconds since the Unix epoch (exact, no rounding) |
//! | `scopes` | a list of scope names (PostgreSQL `TEXT[]`; SQLite and Redis: names joined by `,`, which no scope contains) |
//! | `pepper_version` | integer (`0..=u32::MAX`) |
//! | `digest` | the 32 raw bytes (SQLite `BLOB`, PostgreSQL `BYTEA`; Redis: standard base64) |
//! | `status`, `kind` | [`KeyStatus::as_str`] / [`KeyKind::as_str`] |
//!
//! Reading a row back validates every field with the same constructors the
//! rest of the crate uses; anything invalid is [`StoreError::Corrupt`], whose
//! text names the field but never its value.

use std::future::Future;
use std::time::Duration;

use super::StoreError;
use crate::clock::Timestamp;
use crate::digest::Digest;
use crate::record::{Description, KeyKind, KeyRecord, KeyStatus, ReissueLinks, ServiceAccountId};
use crate::scope::{Scope, ScopeSet};
use crate::secret::MaskedKey;
use crate::token::KeyId;

/// How long a persistent store waits for its backend before giving up with
/// [`StoreError::Timeout`], unless configured otherwise: 2 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A store's configuration is unusable. Returned as the source of
/// [`StoreError::Unavailable`] by the stores' constructors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A PostgreSQL schema name must be 1 to 63 characters of `[a-z0-9_]`,
    /// not starting with a digit.
    #[error("schema name must be 1 to 63 characters of a-z 0-9 _, not starting with a digit")]
    SchemaName,
    /// A Redis key prefix must be 1 to 64 characters of `[A-Za-z0-9_.:-]`.
    #[error("key prefix must be 1 to 64 characters of A-Z a-z 0-9 _ . : -")]
    KeyPrefix,
}

/// Runs `fut`, turning an overrun of `limit` into [`StoreError::Timeout`].
/// The future is dropped on timeout, which does not cancel a statement or
/// script the server already received: an open SQL transaction rolls back,
/// but a single statement, a commit or a Redis script already sent may still
/// take effect. Callers see a failure either way and must assume nothing and
/// everything: a later read tells (a create may leave an unusable orphan
/// whose secret was never shown).
pub(crate) async fn timed<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, fut).await {
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        Ok(Err(StoreError::Unavailable(e)))
            if e.downcast_ref::<sqlx::Error>().is_some_and(|e| matches!(e, sqlx::Error::PoolTimedOut)) =>
        {
            // The pool gave up waiting for a connection within the same limit.
            Err(StoreError::Timeout(limit))
        }
        Ok(result) => result,
        Err(_) => Err(StoreError::Timeout(limit)),
    }
}

/// A record as primitive column values, as read from a backend.
#[derive(Default)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) service_account_id: String,
    pub(crate) description: String,
    pub(crate) created_at: i64,
    pub(crate) last_used_at: Option<i64>,
    pub(crate) scopes: Vec<String>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) masked_key: String,
    pub(crate) pepper_version: i64,
    pub(crate) digest: Vec<u8>,
    pub(crate) status: String,
    pub(crate) kind: String,
    pub(crate) replaced_by: Option<String>,
    pub(crate) reissued_from: Option<String>,
}

fn corrupt(field: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("field `{field}` {what}"))
}

fn key_id(field: &str, text: &str) -> Result<KeyId, StoreError> {
    KeyId::parse(text).map_err(|_| corrupt(field, "is not a key id"))
}

impl Row {
    /// Validates every field into a [`KeyRecord`].
    pub(crate) fn into_record(self) -> Result<KeyRecord, StoreError> {
        let scopes = self
            .scopes
            .iter()
            .map(|s| Scope::new(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| corrupt("scopes", "holds an invalid scope name"))?;
        let masked = self.masked_key.as_bytes();
        if masked.len() > 6 || !masked.iter().all(u8::is_ascii_graphic) {
            return Err(corrupt("masked_key", "is not at most six visible ASCII characters"));
        }
        let digest: [u8; 32] =
            self.digest.as_slice().try_into().map_err(|_| corrupt("digest", "is not exactly 32 bytes"))?;
        let mut record = KeyRecord::new(
            key_id("id", &self.id)?,
            ServiceAccountId::new(&self.service_account_id)
                .map_err(|_| corrupt("service_account_id", "is not a valid service account id"))?,
            KeyKind::parse(&self.kind).ok_or_else(|| corrupt("kind", "is not native or imported"))?,
            u32::try_from(self.pepper_version).map_err(|_| corrupt("pepper_version", "is outside 0..=4294967295"))?,
            Digest::from_bytes(digest),
            MaskedKey::from_tail(masked),
            Timestamp::from_unix_nanos(self.created_at),
        );
        record.description =
            Description::new(&self.description).map_err(|_| corrupt("description", "is not a valid description"))?;
        record.last_used_at = self.last_used_at.map(Timestamp::from_unix_nanos);
        record.scopes = ScopeSet::new(scopes).map_err(|_| corrupt("scopes", "holds too many scopes"))?;
        record.expires_at = self.expires_at.map(Timestamp::from_unix_nanos);
        record.status = KeyStatus::parse(&self.status).ok_or_else(|| corrupt("status", "is not active or revoked"))?;
        record.links = ReissueLinks {
            replaced_by: self.replaced_by.as_deref().map(|t| key_id("replaced_by", t)).transpose()?,
            reissued_from: self.reissued_from.as_deref().map(|t| key_id("reissued_from", t)).transpose()?,
        };
        Ok(record)
    }
}

/// Scope names joined by `,` (SQLite and Redis). Scope names never contain
/// a comma, so the list splits back unambiguously.
#[cfg(any(feature = "sqlite", feature = "redis"))]
pub(crate) fn join_scopes(scopes: &ScopeSet) -> String {
    let mut out = String::with_capacity(scopes.iter().map(|s| s.as_str().len() + 1).sum());
    for (i, s) in scopes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(s.as_str());
    }
    out
}

/// Inverse of [`join_scopes`]; the empty text is the empty list.
#[cfg(any(feature = "sqlite", feature = "redis"))]
pub(crate) fn split_scopes(text: &str) -> Vec<String> {
    if text.is_empty() { Vec::new() } else { text.split(',').map(str::to_owned).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Row {
        Row {
            id: "ajeuo7ng2p6u00000000".into(),
            service_account_id: "robot".into(),
            description: "d".into(),
            created_at: 1_743_762_188_722_440_521,
            last_used_at: Some(-5),
            scopes: vec!["b.read".into(), "a.read".into()],
            expires_at: Some(i64::MAX),
            masked_key: "rCG02w".into(),
            pepper_version: i64::from(u32::MAX),
            digest: vec![7; 32],
            status: "revoked".into(),
            kind: "imported".into(),
            replaced_by: Some("bbbbbbbbbbbbbbbbbbbb".into()),
            reissued_from: None,
        }
    }

    #[test]
    fn valid_rows_convert_exactly() {
        let r = good().into_record().unwrap();
        assert_eq!(r.created_at.unix_nanos(), 1_743_762_188_722_440_521);
        assert_eq!(r.last_used_at.unwrap().unix_nanos(), -5);
        assert_eq!(r.expires_at.unwrap().unix_nanos(), i64::MAX);
        assert_eq!(r.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(), ["a.read", "b.read"]);
        // An imported row shows six hex digits of its digest, whatever its
        // masked_key column holds (issue 17 finding 9).
        assert_eq!(r.masked_key.tail(), "070707");
        assert_eq!(r.pepper_version, u32::MAX);
        assert_eq!(r.digest.as_bytes(), &[7; 32]);
        assert_eq!((r.status, r.kind), (KeyStatus::Revoked, KeyKind::Imported));
        assert_eq!(r.links.replaced_by.unwrap().as_str(), "bbbbbbbbbbbbbbbbbbbb");
    }

    #[cfg(any(feature = "sqlite", feature = "redis"))]
    #[test]
    fn scope_lists_join_and_split() {
        let r = good().into_record().unwrap();
        assert_eq!(join_scopes(&r.scopes), "a.read,b.read");
        assert_eq!(split_scopes("a.read,b.read"), ["a.read", "b.read"]);
        assert!(split_scopes("").is_empty());
        assert_eq!(join_scopes(&ScopeSet::default()), "");
    }

    #[test]
    fn invalid_fields_are_corrupt_and_never_echo_the_value() {
        type Spoil = Box<dyn Fn(&mut Row)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("id", Box::new(|r| r.id = "SECRETVALUE".into())),
            ("service_account_id", Box::new(|r| r.service_account_id = "SECRET VALUE".into())),
            ("description", Box::new(|r| r.description = "SECRET\nVALUE".into())),
            ("scopes", Box::new(|r| r.scopes = vec!["SECRET VALUE".into()])),
            ("masked_key", Box::new(|r| r.masked_key = "SECRETVALUE".into())),
            ("pepper_version", Box::new(|r| r.pepper_version = -1)),
            ("digest", Box::new(|r| r.digest = b"SECRETVALUE".to_vec())),
            ("status", Box::new(|r| r.status = "SECRETVALUE".into())),
            ("kind", Box::new(|r| r.kind = "SECRETVALUE".into())),
            ("replaced_by", Box::new(|r| r.replaced_by = Some("SECRETVALUE".into()))),
            ("reissued_from", Box::new(|r| r.reissued_from = Some("SECRETVALUE".into()))),
        ];
        for (field, spoil) in cases {
            let mut row = good();
            spoil(&mut row);
            let e = row.into_record().unwrap_err();
            assert!(matches!(e, StoreError::Corrupt(_)), "{field}: {e:?}");
            let text = format!("{e} {e:?}");
            assert!(text.contains(field), "{field}: {text}");
            assert!(!text.contains("SECRET"), "{field}: {text}");
        }
    }
}
