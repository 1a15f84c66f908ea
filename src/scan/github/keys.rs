//! GitHub's secret-scanning signing keys: the set of public keys, where it
//! comes from, and the signature check.
//!
//! GitHub publishes its keys at
//! `https://api.github.com/meta/public_keys/secret_scanning` as
//! `{"public_keys": [{"key_identifier": "…", "key": "-----BEGIN PUBLIC KEY-----…", "is_current": true}]}`.
//! [`PublicKeys::from_json`] reads that document (from a file, say, with
//! [`KeyFile`]); an application that may reach the network implements
//! [`PublicKeySource`] with its HTTP client and gives it to a [`KeyRing`],
//! which keeps the last good set and refetches when a report names a key it
//! does not know (GitHub rotates keys that way), at most once per
//! [`KeyRing::min_refresh`], and whenever the application calls
//! [`KeyRing::reload`] (on a timer, or when its file changes).
//!
//! A key listed with `"is_current": false` is retired: it is kept only to
//! answer [`SignatureError::RetiredKey`], and no signature made with it is
//! accepted. A key removed from the source, or marked retired there, stops
//! being trusted as soon as the ring holds the new set: at the next
//! [`KeyRing::reload`], or the next refresh a report with an unknown key
//! triggers.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

/// Longest `Github-Public-Key-Identifier` looked at (GitHub's are 64 hex
/// characters).
pub const MAX_KEY_IDENTIFIER_LEN: usize = 256;
/// Longest base64 signature looked at (a DER P-256 signature is at most 72
/// bytes, 96 in base64).
pub const MAX_SIGNATURE_LEN: usize = 256;

/// Why a public-key document is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublicKeysError {
    /// The file could not be read.
    #[error("cannot read the public-keys file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not the JSON shape of GitHub's public-keys response.
    #[error("public keys: not the shape of GitHub's `meta/public_keys/secret_scanning` response: {0}")]
    Shape(#[source] serde_json::Error),
    /// A key is not a PEM P-256 public key.
    #[error("public key `{identifier}` is not a PEM P-256 public key")]
    Key {
        /// Its identifier.
        identifier: String,
    },
    /// An identifier is empty, too long, or not printable ASCII.
    #[error("a key identifier is empty, longer than {MAX_KEY_IDENTIFIER_LEN} characters or not printable ASCII")]
    Identifier,
    /// The document lists no key, or none that is current.
    #[error("the public-keys document lists no current key")]
    Empty,
    /// An application's [`PublicKeySource`] failed.
    #[error("fetching the public keys failed")]
    Fetch(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why a report's signature was not accepted. Every variant is a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// `Github-Public-Key-Identifier` or `Github-Public-Key-Signature` is
    /// missing, not ASCII, or too long.
    #[error("missing or malformed signature headers")]
    MissingHeaders,
    /// The identifier names no key we hold (after a refresh, if allowed).
    #[error("unknown signing key identifier")]
    UnknownKey,
    /// The identifier names a key GitHub lists as no longer current.
    #[error("the signing key is retired")]
    RetiredKey,
    /// The signature is not base64 of a DER ECDSA signature.
    #[error("the signature is not base64 DER")]
    Malformed,
    /// The signature does not verify over the body.
    #[error("the signature does not verify")]
    Invalid,
}

/// One entry of GitHub's document.
#[derive(serde::Deserialize)]
struct Entry {
    key_identifier: String,
    key: String,
    /// Absent: current (a document that does not say is not second-guessed).
    #[serde(default)]
    is_current: Option<bool>,
}

#[derive(serde::Deserialize)]
struct Document {
    public_keys: Vec<Entry>,
}

/// A set of GitHub's public keys by identifier: the current ones, which
/// verify, and the retired ones, which are only recognised.
#[derive(Clone)]
pub struct PublicKeys {
    keys: HashMap<String, VerifyingKey>,
    retired: Vec<String>,
}

impl fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("PublicKeys").field("current", &ids).field("retired", &self.retired).finish()
    }
}

impl PublicKeys {
    /// Reads GitHub's `meta/public_keys/secret_scanning` JSON. Unknown
    /// fields are ignored; every listed key must parse; a key with
    /// `"is_current": false` is retired (recognised, never trusted), and at
    /// least one key must be current.
    ///
    /// # Errors
    /// [`PublicKeysError`] naming the first problem.
    pub fn from_json(json: &[u8]) -> Result<Self, PublicKeysError> {
        let doc: Document = serde_json::from_slice(json).map_err(PublicKeysError::Shape)?;
        let mut keys = HashMap::new();
        let mut retired = Vec::new();
        for e in doc.public_keys {
            if !valid_identifier(&e.key_identifier) {
                return Err(PublicKeysError::Identifier);
            }
            let key = VerifyingKey::from_public_key_pem(e.key.trim())
                .map_err(|_| PublicKeysError::Key { identifier: e.key_identifier.clone() })?;
            if e.is_current == Some(false) {
                retired.push(e.key_identifier);
            } else {
                keys.insert(e.key_identifier, key);
            }
        }
        retired.retain(|id| !keys.contains_key(id));
        if keys.is_empty() {
            return Err(PublicKeysError::Empty);
        }
        retired.sort();
        Ok(Self { keys, retired })
    }

    /// A set from keys an application already holds (tests, pinned keys);
    /// all of them current.
    #[must_use]
    pub fn from_keys(keys: impl IntoIterator<Item = (String, VerifyingKey)>) -> Self {
        Self { keys: keys.into_iter().collect(), retired: Vec::new() }
    }

    /// How many keys the set holds, current and retired.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len() + self.retired.len()
    }

    /// How many of them are current (the ones that verify).
    #[must_use]
    pub fn current_len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.retired.is_empty()
    }

    /// Whether a key with this identifier is held, current or retired.
    #[must_use]
    pub fn contains(&self, identifier: &str) -> bool {
        self.keys.contains_key(identifier) || self.is_retired(identifier)
    }

    /// Whether the set lists this identifier as retired.
    #[must_use]
    pub fn is_retired(&self, identifier: &str) -> bool {
        self.retired.iter().any(|id| id == identifier)
    }

    /// Checks `signature_b64` (base64 of a DER ECDSA P-256/SHA-256
    /// signature) over the raw `body` under the key `identifier`.
    ///
    /// # Errors
    /// [`SignatureError::UnknownKey`], [`SignatureError::RetiredKey`],
    /// [`SignatureError::Malformed`] or [`SignatureError::Invalid`].
    pub fn verify(&self, identifier: &str, signature_b64: &str, body: &[u8]) -> Result<(), SignatureError> {
        if self.is_retired(identifier) {
            return Err(SignatureError::RetiredKey);
        }
        let key = self.keys.get(identifier).ok_or(SignatureError::UnknownKey)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature_b64.trim())
            .map_err(|_| SignatureError::Malformed)?;
        let signature = Signature::from_der(&der).map_err(|_| SignatureError::Malformed)?;
        key.verify(body, &signature).map_err(|_| SignatureError::Invalid)
    }
}

fn valid_identifier(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_KEY_IDENTIFIER_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The future a [`PublicKeySource`] returns.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<PublicKeys, PublicKeysError>> + Send + 'a>>;

/// Where a [`KeyRing`] gets a fresh set of keys: a file ([`KeyFile`]) or,
/// in an application that may reach the network, GitHub's
/// `GET https://api.github.com/meta/public_keys/secret_scanning` through the
/// application's own HTTP client, parsed with [`PublicKeys::from_json`].
/// This crate ships no HTTP client.
pub trait PublicKeySource: Send + Sync + 'static {
    /// Fetches the current set.
    fn fetch(&self) -> FetchFuture<'_>;
}

/// A JSON file in the shape of GitHub's response, re-read on every fetch
/// (so an operator can add a rotated key without a restart).
#[derive(Debug, Clone)]
pub struct KeyFile(pub PathBuf);

impl PublicKeySource for KeyFile {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            let path = self.0.clone();
            let read = tokio::task::spawn_blocking(move || std::fs::read(&path))
                .await
                .map_err(|e| PublicKeysError::Fetch(Box::new(e)))?;
            let bytes = read.map_err(|source| PublicKeysError::Read { path: self.0.clone(), source })?;
            PublicKeys::from_json(&bytes)
        })
    }
}

/// The keys the endpoint checks signatures with: the last good set, and
/// optionally a source to refresh it from when a report names an unknown
/// key (at most once per [`KeyRing::min_refresh`]) or when the application
/// calls [`KeyRing::reload`]; a failed refresh keeps the last good set.
///
/// Cheap to clone: clones share the set, so an application can keep one to
/// reload while the endpoint verifies with another.
#[derive(Clone)]
pub struct KeyRing {
    shared: Arc<Shared>,
    min_refresh: Duration,
}

/// What the clones of a [`KeyRing`] share.
struct Shared {
    current: RwLock<Arc<PublicKeys>>,
    source: Option<Box<dyn PublicKeySource>>,
    last_refresh: Mutex<Option<Instant>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.snapshot())
            .field("refreshable", &self.shared.source.is_some())
            .field("min_refresh", &self.min_refresh)
            .finish()
    }
}

impl KeyRing {
    /// Shortest time between two refreshes. Defaults to 60 s.
    pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(60);

    /// A fixed set, never refreshed.
    #[must_use]
    pub fn fixed(keys: PublicKeys) -> Self {
        let shared = Shared { current: RwLock::new(Arc::new(keys)), source: None, last_refresh: Mutex::new(None) };
        Self { shared: Arc::new(shared), min_refresh: Self::DEFAULT_MIN_REFRESH }
    }

    /// Fetches a first set from `source` (which must succeed) and keeps the
    /// source for refreshes.
    ///
    /// # Errors
    /// The source's error.
    pub async fn from_source(source: impl PublicKeySource) -> Result<Self, PublicKeysError> {
        let keys = source.fetch().await?;
        let shared = Shared {
            current: RwLock::new(Arc::new(keys)),
            source: Some(Box::new(source)),
            last_refresh: Mutex::new(Some(Instant::now())),
        };
        Ok(Self { shared: Arc::new(shared), min_refresh: Self::DEFAULT_MIN_REFRESH })
    }

    /// Sets the shortest time between two refreshes.
    #[must_use]
    pub fn min_refresh(mut self, every: Duration) -> Self {
        self.min_refresh = every;
        self
    }

    /// The set in use now.
    #[must_use]
    pub fn snapshot(&self) -> Arc<PublicKeys> {
        match self.shared.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Checks a report's signature; an unknown identifier triggers one
    /// refresh (rate-limited) before the answer.
    ///
    /// # Errors
    /// [`SignatureError`].
    pub async fn verify(&self, identifier: &str, signature_b64: &str, body: &[u8]) -> Result<(), SignatureError> {
        let keys = self.snapshot();
        if keys.contains(identifier) || !self.refresh().await {
            return keys.verify(identifier, signature_b64, body);
        }
        self.snapshot().verify(identifier, signature_b64, body)
    }

    /// Fetches the set from the source now (not rate-limited) and installs
    /// it: a key gone from the source, or retired there, is no longer
    /// trusted from this call on. Returns the set installed; without a
    /// source, the set held.
    ///
    /// # Errors
    /// The source's error; the last good set stays in use.
    pub async fn reload(&self) -> Result<Arc<PublicKeys>, PublicKeysError> {
        let Some(source) = &self.shared.source else { return Ok(self.snapshot()) };
        let keys = Arc::new(source.fetch().await?);
        if let Ok(mut g) = self.shared.current.write() {
            *g = Arc::clone(&keys);
        }
        Ok(keys)
    }

    /// Refetches if a source exists and the last refresh is old enough;
    /// whether a new set was installed.
    async fn refresh(&self) -> bool {
        if self.shared.source.is_none() {
            return false;
        }
        {
            let Ok(mut last) = self.shared.last_refresh.lock() else { return false };
            if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.reload().await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "secret scanning: refreshing GitHub's public keys failed; keeping the last good set");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;
    use p256::elliptic_curve::Generate as _;
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};

    use super::*;

    fn pem(key: &SigningKey) -> String {
        key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap()
    }

    fn sign(key: &SigningKey, body: &[u8]) -> String {
        let sig: Signature = key.sign(body);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }

    fn document(entries: &[(&str, &SigningKey, Option<bool>)]) -> Vec<u8> {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|(id, key, current)| match current {
                Some(c) => serde_json::json!({"key_identifier": id, "key": pem(key), "is_current": c}),
                None => serde_json::json!({"key_identifier": id, "key": pem(key)}),
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "public_keys": list })).unwrap()
    }

    #[test]
    fn a_retired_key_is_recognised_but_never_trusted() {
        let (old, new) = (SigningKey::try_generate().unwrap(), SigningKey::try_generate().unwrap());
        let keys = PublicKeys::from_json(&document(&[("old", &old, Some(false)), ("new", &new, Some(true))])).unwrap();
        assert_eq!((keys.len(), keys.current_len()), (2, 1));
        assert!(keys.contains("old") && keys.is_retired("old") && !keys.is_retired("new"));
        assert_eq!(keys.verify("old", &sign(&old, b"r"), b"r"), Err(SignatureError::RetiredKey));
        assert_eq!(keys.verify("new", &sign(&new, b"r"), b"r"), Ok(()));
        // A document that does not say is not second-guessed.
        let unsaid = PublicKeys::from_json(&document(&[("k", &old, None)])).unwrap();
        assert_eq!(unsaid.verify("k", &sign(&old, b"r"), b"r"), Ok(()));
        // Only retired keys: nothing could ever verify, so the document is refused.
        let none = PublicKeys::from_json(&document(&[("old", &old, Some(false))]));
        assert!(matches!(none, Err(PublicKeysError::Empty)), "{none:?}");
    }

    /// A source serving whatever document the test last put in it.
    struct Doc(Arc<Mutex<Vec<u8>>>, Arc<AtomicUsize>);

    impl PublicKeySource for Doc {
        fn fetch(&self) -> FetchFuture<'_> {
            self.1.fetch_add(1, Ordering::Relaxed);
            let doc = self.0.lock().unwrap().clone();
            Box::pin(async move { PublicKeys::from_json(&doc) })
        }
    }

    #[tokio::test]
    async fn reload_drops_a_removed_or_retired_key_at_once_and_keeps_the_last_good_set_on_failure() {
        let (a, b) = (SigningKey::try_generate().unwrap(), SigningKey::try_generate().unwrap());
        let doc = Arc::new(Mutex::new(document(&[("a", &a, Some(true)), ("b", &b, Some(true))])));
        let fetches = Arc::new(AtomicUsize::new(0));
        let ring = KeyRing::from_source(Doc(Arc::clone(&doc), Arc::clone(&fetches))).await.unwrap();
        let endpoint = ring.clone();
        assert_eq!(endpoint.verify("a", &sign(&a, b"x"), b"x").await, Ok(()));
        // Retired in the source: refused after the next reload, with no
        // report needed to trigger it (and no rate limit in the way).
        *doc.lock().unwrap() = document(&[("a", &a, Some(false)), ("b", &b, Some(true))]);
        ring.reload().await.unwrap();
        assert_eq!(endpoint.verify("a", &sign(&a, b"x"), b"x").await, Err(SignatureError::RetiredKey));
        // Removed: unknown (one rate-limited refresh is not allowed yet).
        *doc.lock().unwrap() = document(&[("b", &b, Some(true))]);
        ring.reload().await.unwrap();
        assert_eq!(endpoint.verify("a", &sign(&a, b"x"), b"x").await, Err(SignatureError::UnknownKey));
        // A broken source: the reload fails and the last good set stays.
        *doc.lock().unwrap() = b"not json".to_vec();
        assert!(ring.reload().await.is_err());
        assert_eq!(endpoint.verify("b", &sign(&b, b"x"), b"x").await, Ok(()));
        assert_eq!(fetches.load(Ordering::Relaxed), 4);
    }
}
