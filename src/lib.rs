#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod access_binding;
pub mod access_policy;
#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
pub mod header;

mod checksum;
mod clock;
pub mod controls;
mod digest;
mod error;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod http;
mod last_used;
mod manager;
mod operation;
#[cfg(feature = "pgp")]
#[cfg_attr(docsrs, doc(cfg(feature = "pgp")))]
pub mod pgp;
mod random;
mod record;
pub mod resource;
pub mod scan;
mod scope;
mod secret;
mod setters;
mod shard;
pub mod store;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
// The unit tests share `testing::scope_catalog` with or without `test-util`.
#[cfg(all(test, not(feature = "test-util")))]
mod testing {
    #[allow(unreachable_pub, reason = "public under `test-util`")]
    mod catalog;
    pub(crate) use catalog::scope_catalog;
}
mod token;
mod verify;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp, TimestampError, parse_duration};
pub use digest::{Digest, DigestError, Pepper, PepperError, Peppers};
pub use error::BoxError;
pub use manager::{
    AllowAll, CreateRequest, CreationPolicy, DenyAll, KeyDirectory, KeyManager, KeyManagerBuilder, KeyRequest,
    LeakRecorded, ManageError, NewResource, PepperCheckError, PolicyDenied, UpdateRequest,
};
pub use operation::{
    Actor, ActorError, Change, KeyUpdate, LeakDetails, LogEntry, Operation, OperationChanges, OperationCursor,
    OperationId, OperationKind,
};
pub use random::RandomError;
pub use record::{
    ApiKeySummary, CreatedKey, Description, FieldError, KeyInfo, KeyKind, KeyRecord, KeyStatus, ReissueLinks,
    ServiceAccountId,
};
pub use scope::{RequiredScope, Scope, ScopeCatalog, ScopeCatalogBuilder, ScopeError, ScopeInfo, ScopeSet};
pub use secret::{MaskedKey, Secret};
pub use store::key_store::{KeyStore, OldKeyFate, OperationPage, Page, PageRequest, StoreError};
pub use store::memory::MemoryStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use store::postgres::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use store::redis::{RedisStore, RedisStoreBuilder};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use store::sqlite::{SqliteStore, SqliteStoreBuilder};
pub use store::view::RecordView;
pub use token::{GeneratedKey, KeyId, KeyIdError, PrefixError, Token, TokenError, TokenFormat, token_checksum};
pub use verify::{ClientClass, Principal, Verifier, VerifierBuilder, VerifierConfig, VerifyContext, VerifyError};
