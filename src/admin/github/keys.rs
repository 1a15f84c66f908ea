//! GitHub's secret-scanning signing keys: the set of public keys, where it
//! comes from, and the signature check.
//!
//! GitHub publishes its keys at
//! `https://api.github.com/meta/public_keys/secret_scanning` as
//! `{"public_keys": [{"key_identifier": "…", "key": "-----BEGIN PUBLIC KEY-----…", "is_current": true}]}`.
//! [`PublicKeys::from_json`] reads that document (from a file, say, with
//! [`KeyFile`]); an application that may reach the network implements
//! [`PublicKeySource`] with its HTTP client and gives it to a [`KeyRing`],
//! which keeps the last good set and refetches only when a report names a
//! key it does not know (GitHub rotates keys that way), at most once per
//! [`KeyRing::min_refresh`].

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
    /// The document lists no key.
    #[error("the public-keys document lists no key")]
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
    #[serde(default)]
    is_current: bool,
}

#[derive(serde::Deserialize)]
struct Document {
    public_keys: Vec<Entry>,
}

/// A set of GitHub's public keys by identifier.
#[derive(Clone)]
pub struct PublicKeys {
    keys: HashMap<String, VerifyingKey>,
    current: Vec<String>,
}

impl fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("PublicKeys").field("identifiers", &ids).field("current", &self.current).finish()
    }
}

impl PublicKeys {
    /// Reads GitHub's `meta/public_keys/secret_scanning` JSON. Unknown
    /// fields are ignored; every listed key must parse.
    ///
    /// # Errors
    /// [`PublicKeysError`] naming the first problem.
    pub fn from_json(json: &[u8]) -> Result<Self, PublicKeysError> {
        let doc: Document = serde_json::from_slice(json).map_err(PublicKeysError::Shape)?;
        if doc.public_keys.is_empty() {
            return Err(PublicKeysError::Empty);
        }
        let mut keys = HashMap::new();
        let mut current = Vec::new();
        for e in doc.public_keys {
            if !valid_identifier(&e.key_identifier) {
                return Err(PublicKeysError::Identifier);
            }
            let key = VerifyingKey::from_public_key_pem(e.key.trim())
                .map_err(|_| PublicKeysError::Key { identifier: e.key_identifier.clone() })?;
            if e.is_current {
                current.push(e.key_identifier.clone());
            }
            keys.insert(e.key_identifier, key);
        }
        Ok(Self { keys, current })
    }

    /// A set from keys an application already holds (tests, pinned keys).
    #[must_use]
    pub fn from_keys(keys: impl IntoIterator<Item = (String, VerifyingKey)>) -> Self {
        Self { keys: keys.into_iter().collect(), current: Vec::new() }
    }

    /// How many keys the set holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this identifier is held.
    #[must_use]
    pub fn contains(&self, identifier: &str) -> bool {
        self.keys.contains_key(identifier)
    }

    /// Checks `signature_b64` (base64 of a DER ECDSA P-256/SHA-256
    /// signature) over the raw `body` under the key `identifier`.
    ///
    /// # Errors
    /// [`SignatureError::UnknownKey`], [`SignatureError::Malformed`] or
    /// [`SignatureError::Invalid`].
    pub fn verify(&self, identifier: &str, signature_b64: &str, body: &[u8]) -> Result<(), SignatureError> {
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
/// key (at most once per [`KeyRing::min_refresh`]; a failed refresh keeps
/// the last good set).
pub struct KeyRing {
    current: RwLock<Arc<PublicKeys>>,
    source: Option<Box<dyn PublicKeySource>>,
    last_refresh: Mutex<Option<Instant>>,
    min_refresh: Duration,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.snapshot())
            .field("refreshable", &self.source.is_some())
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
        Self {
            current: RwLock::new(Arc::new(keys)),
            source: None,
            last_refresh: Mutex::new(None),
            min_refresh: Self::DEFAULT_MIN_REFRESH,
        }
    }

    /// Fetches a first set from `source` (which must succeed) and keeps the
    /// source for refreshes.
    ///
    /// # Errors
    /// The source's error.
    pub async fn from_source(source: impl PublicKeySource) -> Result<Self, PublicKeysError> {
        let keys = source.fetch().await?;
        Ok(Self {
            current: RwLock::new(Arc::new(keys)),
            source: Some(Box::new(source)),
            last_refresh: Mutex::new(Some(Instant::now())),
            min_refresh: Self::DEFAULT_MIN_REFRESH,
        })
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
        match self.current.read() {
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

    /// Refetches if a source exists and the last refresh is old enough;
    /// whether a new set was installed.
    async fn refresh(&self) -> bool {
        let Some(source) = &self.source else { return false };
        {
            let Ok(mut last) = self.last_refresh.lock() else { return false };
            if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match source.fetch().await {
            Ok(keys) => {
                if let Ok(mut g) = self.current.write() {
                    *g = Arc::new(keys);
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "secret scanning: refreshing GitHub's public keys failed; keeping the last good set");
                false
            }
        }
    }
}
