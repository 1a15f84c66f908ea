#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod header;

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;

mod checksum;
mod clock;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))))]
pub mod config;
mod digest;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod http;
mod last_used;
mod manager;
mod record;
pub mod scan;
mod scope;
mod secret;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod shield;
pub mod store;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
mod token;
mod verify;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp, TimestampError};
pub use digest::{Digest, DigestError, MIN_PEPPER_LEN, Pepper, PepperError, Peppers};
pub use header::{Credentials, HeaderError};
pub use manager::{
    AllowAll, CreateRequest, CreationPolicy, DenyAll, KeyManager, KeyManagerBuilder, KeyOperation, KeyRequest,
    MAX_IMPORTED_LEN, MIN_IMPORTED_LEN, ManageError, PolicyDenied,
};
pub use record::{
    ApiKeySummary, CreatedKey, Description, FieldError, KeyInfo, KeyKind, KeyRecord, KeyStatus, MAX_DESCRIPTION_CHARS,
    MAX_SERVICE_ACCOUNT_LEN, ReissueLinks, ServiceAccountId,
};
pub use scope::{
    MAX_SCOPE_LEN, MAX_SCOPES_PER_KEY, RequiredScope, Scope, ScopeCatalog, ScopeCatalogBuilder, ScopeError, ScopeInfo,
    ScopeSet,
};
pub use secret::{MaskedKey, Secret};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use store::SqliteStore;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use store::{CacheConfig, CachedStore};
pub use store::{KeyStore, MemoryStore, OldKeyFate, Page, PageRequest, StoreError};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use store::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use store::{RedisStore, RedisStoreBuilder};
pub use token::{
    BODY_LEN, GeneratedKey, KEY_ID_LEN, KeyId, KeyIdError, MAX_PREFIX_LEN, PrefixError, RandomError, SECRET_LEN, Token,
    TokenError, TokenFormat, token_checksum,
};
pub use verify::{ClientClass, Principal, Verifier, VerifierBuilder, VerifierConfig, VerifyError};
