//! Classifying a found token against the store: is it one of our keys, and
//! is it still accepted?

use std::fmt;

use crate::clock::Timestamp;
use crate::digest::Peppers;
use crate::record::{KeyKind, KeyRecord};
use crate::store::{KeyStore, StoreError};
use crate::token::{KeyId, Token};

/// What the store says about a found token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Liveness {
    /// A stored key whose secret matches, neither revoked nor expired: it
    /// is accepted today.
    Active,
    /// A stored key whose secret matches and whose expiry has passed.
    Expired,
    /// A stored key whose secret matches and which is revoked.
    Revoked,
    /// Not one of our keys: no record with this id, or a record whose
    /// digest does not match this secret (a look-alike with a real id).
    Unknown,
}

impl Liveness {
    /// `"active"`, `"expired"`, `"revoked"` or `"unknown"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
        }
    }

    /// Whether the token is one of our keys (any state but
    /// [`Liveness::Unknown`]): a leak of it is real.
    #[must_use]
    pub fn is_ours(self) -> bool {
        self != Self::Unknown
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a found token could not be classified. Never contains the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeakCheckError {
    /// The store could not answer.
    #[error("key store unavailable")]
    Store(#[source] StoreError),
    /// The key's digest was made with a pepper this process does not hold,
    /// so whether the secret matches cannot be decided.
    #[error("key {key} uses pepper version {version}, which is not configured")]
    UnknownPepper {
        /// The key.
        key: KeyId,
        /// The missing version.
        version: u32,
    },
}

/// Looks `token` up and checks its secret against the stored digest.
pub(crate) async fn leak_status<S: KeyStore>(
    store: &S,
    peppers: &Peppers,
    token: &Token<'_>,
    now: Timestamp,
) -> Result<Liveness, LeakCheckError> {
    let record = store.get(token.id()).await.map_err(LeakCheckError::Store)?;
    classify(record.as_deref(), peppers, token, now)
}

/// [`leak_status`] for a batch: one [`KeyStore::get_many`], then each token
/// against its record; one answer per token, in order.
pub(crate) async fn leak_statuses<S: KeyStore>(
    store: &S,
    peppers: &Peppers,
    tokens: &[Token<'_>],
    now: Timestamp,
) -> Result<Vec<Liveness>, LeakCheckError> {
    let ids: Vec<KeyId> = tokens.iter().map(|t| *t.id()).collect();
    let records = store.get_many(&ids).await.map_err(LeakCheckError::Store)?;
    if records.len() != tokens.len() {
        return Err(LeakCheckError::Store(StoreError::Corrupt("a batch lookup answered the wrong count".to_owned())));
    }
    tokens.iter().zip(&records).map(|(token, record)| classify(record.as_deref(), peppers, token, now)).collect()
}

/// A token against the record stored under its id (`None`: no record).
fn classify(
    record: Option<&KeyRecord>,
    peppers: &Peppers,
    token: &Token<'_>,
    now: Timestamp,
) -> Result<Liveness, LeakCheckError> {
    let Some(record) = record else {
        return Ok(Liveness::Unknown);
    };
    if record.kind != KeyKind::Native {
        return Ok(Liveness::Unknown);
    }
    let matches = peppers
        .verify(record.pepper_version, token.secret_bytes(), &record.digest)
        .ok_or(LeakCheckError::UnknownPepper { key: record.id, version: record.pepper_version })?;
    Ok(if !matches {
        Liveness::Unknown
    } else if record.is_revoked() {
        Liveness::Revoked
    } else if record.is_expired(now) {
        Liveness::Expired
    } else {
        Liveness::Active
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::{Clock, CreateRequest, KeyManager, ManualClock, MemoryStore, Pepper, TokenFormat, token_checksum};

    fn manager(clock: Arc<ManualClock>) -> KeyManager<MemoryStore> {
        let peppers = Peppers::single(Pepper::generate(1).unwrap());
        KeyManager::builder(Arc::new(MemoryStore::new()), peppers, crate::testing::scope_catalog()).clock(clock).build()
    }

    async fn status(m: &KeyManager<MemoryStore>, key: &str) -> Liveness {
        let token = Token::parse(key.as_bytes(), &TokenFormat::default()).unwrap();
        m.leak_status(&token).await.unwrap()
    }

    #[tokio::test]
    async fn every_state_is_told_apart() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_000_000).unwrap()));
        let m = manager(Arc::clone(&clock));
        let live = m.create(CreateRequest::new("sa")).await.unwrap();
        let revoked = m.create(CreateRequest::new("sa")).await.unwrap();
        m.revoke(&revoked.api_key.id).await.unwrap();
        let soon = clock.now().saturating_add(Duration::from_secs(60));
        let expiring = m.create(CreateRequest::new("sa").expires_at(soon)).await.unwrap();
        let stranger = TokenFormat::default().generate().unwrap();

        assert_eq!(status(&m, live.secret.expose_secret()).await, Liveness::Active);
        assert_eq!(status(&m, revoked.secret.expose_secret()).await, Liveness::Revoked);
        assert_eq!(status(&m, expiring.secret.expose_secret()).await, Liveness::Active);
        clock.advance(Duration::from_secs(60));
        assert_eq!(status(&m, expiring.secret.expose_secret()).await, Liveness::Expired);
        assert_eq!(status(&m, stranger.secret.expose_secret()).await, Liveness::Unknown);
        assert!(!Liveness::Unknown.is_ours() && Liveness::Revoked.is_ours());
    }

    #[tokio::test]
    async fn a_batch_answers_like_single_lookups_in_order() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_000_000).unwrap()));
        let m = manager(clock);
        let live = m.create(CreateRequest::new("sa")).await.unwrap();
        let revoked = m.create(CreateRequest::new("sa")).await.unwrap();
        m.revoke(&revoked.api_key.id).await.unwrap();
        let stranger = TokenFormat::default().generate().unwrap();
        let secrets = [&live.secret, &stranger.secret, &revoked.secret, &live.secret];
        let tokens: Vec<Token<'_>> = secrets
            .iter()
            .map(|s| Token::parse(s.expose_secret().as_bytes(), &TokenFormat::default()).unwrap())
            .collect();
        let batch = m.leak_statuses(&tokens).await.unwrap();
        assert_eq!(batch, [Liveness::Active, Liveness::Unknown, Liveness::Revoked, Liveness::Active]);
        for (token, status) in tokens.iter().zip(&batch) {
            assert_eq!(m.leak_status(token).await.unwrap(), *status);
        }
        assert!(m.leak_statuses(&[]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_real_id_with_an_invented_secret_is_unknown() {
        let m = manager(Arc::new(ManualClock::new(Timestamp::from_unix_seconds(0).unwrap())));
        let live = m.create(CreateRequest::new("sa")).await.unwrap();
        let real = live.secret.expose_secret();
        // Same prefix and id, another secret, a checksum recomputed to match.
        let mut forged = real[..24].to_owned();
        forged.push_str(&"Q".repeat(43));
        let check = token_checksum(&forged.as_bytes()[3..]);
        forged.push_str(std::str::from_utf8(&check).unwrap());
        assert_eq!(status(&m, &forged).await, Liveness::Unknown);
    }

    #[tokio::test]
    async fn a_missing_pepper_version_is_an_error_not_a_verdict() {
        let store = Arc::new(MemoryStore::new());
        let old = Peppers::single(Pepper::generate(1).unwrap());
        let writer = KeyManager::builder(Arc::clone(&store), old, crate::testing::scope_catalog()).build();
        let key = writer.create(CreateRequest::new("sa")).await.unwrap();
        let reader =
            KeyManager::builder(store, Peppers::single(Pepper::generate(2).unwrap()), crate::testing::scope_catalog())
                .build();
        let token = Token::parse(key.secret.expose_secret().as_bytes(), &TokenFormat::default()).unwrap();
        let e = reader.leak_status(&token).await.unwrap_err();
        assert!(matches!(e, LeakCheckError::UnknownPepper { version: 1, .. }), "{e}");
        assert!(!e.to_string().contains(key.secret.expose_secret()));
    }
}
